//! step-ca (Smallstep): the native `POST /1.0/sign` API, authorized by a
//! one-time token (OTT) that certctl signs with a JWK provisioner's private
//! key, as `step ca token` does. The CA's root is pinned by its SHA-256
//! fingerprint: certctl trusts only a root whose fingerprint matches (given
//! as `root_pem`, or fetched from `/root/{fingerprint}` and checked, like
//! `step ca bootstrap`).
//!
//! No step-ca binary can be installed on the project's machines; the tests
//! run against a double of its documented API (see docs/issuers.md).

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde::{Deserialize, Serialize};

use super::http::{reqwest_client, transport};
use super::{Checkpoint, Connector, IssueRequest, Issued, IssuerError};
use crate::error::{Error, Result};
use crate::net_guard::OutboundPolicy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCaConfig {
    /// The CA's URL, e.g. `https://ca.internal:9000`.
    pub url: String,
    /// The JWK provisioner's name (the token's issuer).
    pub provisioner: String,
    /// The provisioner key's id (`kid`), as `step ca provisioner list` shows it.
    pub provisioner_kid: String,
    /// SHA-256 fingerprint of the CA's root certificate (hex), as `step certificate fingerprint` prints it.
    pub root_fingerprint: String,
    /// The root certificate, PEM; fetched from the CA and checked against the fingerprint when absent.
    #[serde(default)]
    pub root_pem: Option<String>,
}

fn normalize_fingerprint(f: &str) -> String {
    f.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

impl StepCaConfig {
    pub fn check(&self) -> Result<()> {
        if !self.url.starts_with("https://") {
            return Err(Error::invalid("step-ca issuer: url must be https://..."));
        }
        if normalize_fingerprint(&self.root_fingerprint).len() != 64 {
            return Err(Error::invalid(
                "step-ca issuer: root_fingerprint must be a SHA-256 fingerprint (64 hex digits)",
            ));
        }
        if self.provisioner.trim().is_empty() || self.provisioner_kid.trim().is_empty() {
            return Err(Error::invalid(
                "step-ca issuer: provisioner and provisioner_kid are required",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepCaSecrets {
    /// The JWK provisioner's private key (P-256), PKCS#8 PEM, decrypted.
    #[serde(default)]
    pub provisioner_key_pem: Option<String>,
}

pub struct StepCaConnector {
    config: StepCaConfig,
    key: EcdsaKeyPair,
    fingerprint: String,
    outbound: OutboundPolicy,
}

/// step-ca's error document: `{"status": N, "message": "..."}`.
async fn stepca_error(what: &str, rsp: reqwest::Response) -> IssuerError {
    let status = rsp.status();
    let body: serde_json::Value = rsp.json().await.unwrap_or_default();
    let text = match body["message"].as_str() {
        Some(m) => format!("{what}: step-ca answered HTTP {status}: {m}"),
        None => format!("{what}: step-ca answered HTTP {status}"),
    };
    if status.is_server_error() || status.as_u16() == 429 {
        IssuerError::transient(text)
    } else {
        IssuerError::rejected(text)
    }
}

/// Accepts any server certificate: used only to fetch the root from
/// `/root/{fingerprint}`, whose answer is then checked against the pinned
/// fingerprint, so a substituted root is refused.
#[derive(Debug)]
struct FetchRootOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for FetchRootOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

impl StepCaConnector {
    pub fn new(
        config: StepCaConfig,
        secrets: StepCaSecrets,
        outbound: OutboundPolicy,
    ) -> Result<Self> {
        config.check()?;
        super::http::check_url("step-ca issuer: url", &config.url, outbound)?;
        let pem = secrets.provisioner_key_pem.ok_or_else(|| {
            Error::invalid("step-ca issuer: secrets.provisioner_key_pem is required")
        })?;
        let blocks = crate::pki::pem::parse_blocks(&pem, "provisioner key")?;
        let der = blocks
            .iter()
            .find(|b| b.label == "PRIVATE KEY")
            .ok_or_else(|| {
                Error::invalid(
                    "step-ca issuer: the provisioner key must be a PKCS#8 PRIVATE KEY PEM",
                )
            })?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der.der).map_err(|_| {
                Error::invalid("step-ca issuer: the provisioner key is not a P-256 (ES256) key")
            })?;
        let fingerprint = normalize_fingerprint(&config.root_fingerprint);
        Ok(Self {
            config,
            key,
            fingerprint,
            outbound,
        })
    }

    fn base(&self) -> &str {
        self.config.url.trim_end_matches('/')
    }

    /// The pinned root: the configured PEM, or the CA's answer at
    /// `/root/{fingerprint}`; either way its fingerprint must match.
    async fn root(&self) -> Result<rustls::pki_types::CertificateDer<'static>, IssuerError> {
        let pem = match &self.config.root_pem {
            Some(p) => p.clone(),
            None => {
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| IssuerError::transient(format!("TLS setup: {e}")))?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(FetchRootOnly(provider)))
                    .with_no_client_auth();
                let http = crate::net_guard::reqwest_builder(self.outbound)
                    .tls_backend_preconfigured(tls)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| IssuerError::transient(format!("HTTP client: {e}")))?;
                let rsp = http
                    .get(format!("{}/root/{}", self.base(), self.fingerprint))
                    .send()
                    .await
                    .map_err(|e| transport("step-ca root", e))?;
                if !rsp.status().is_success() {
                    return Err(stepca_error("step-ca root", rsp).await);
                }
                let body: serde_json::Value =
                    rsp.json().await.map_err(|e| transport("step-ca root", e))?;
                body["ca"]
                    .as_str()
                    .ok_or_else(|| {
                        IssuerError::rejected("step-ca root: no certificate in the answer")
                    })?
                    .to_owned()
            }
        };
        let der = crate::pki::cert::certificate_ders(&pem, "step-ca root")
            .map_err(|e| IssuerError::rejected(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| IssuerError::rejected("step-ca root: no certificate"))?;
        let got = sha256_hex(&der);
        if got != self.fingerprint {
            return Err(IssuerError::rejected(format!(
                "the step-ca root's fingerprint is {got}, not the pinned {}",
                self.fingerprint
            )));
        }
        Ok(rustls::pki_types::CertificateDer::from(der))
    }

    async fn client(&self) -> Result<reqwest::Client, IssuerError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.root().await?)
            .map_err(|e| IssuerError::rejected(format!("step-ca root: {e}")))?;
        reqwest_client(roots, Duration::from_secs(60), self.outbound)
            .map_err(|e| IssuerError::transient(e.to_string()))
    }

    /// A one-time token for `aud`, signed with the provisioner key (ES256).
    fn token(
        &self,
        now: i64,
        subject: &str,
        sans: &[String],
        aud: &str,
    ) -> Result<String, IssuerError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti)
            .map_err(|_| IssuerError::transient("random number generator failed"))?;
        let header = serde_json::json!({
            "alg": "ES256", "typ": "JWT", "kid": self.config.provisioner_kid,
        });
        let claims = serde_json::json!({
            "iss": self.config.provisioner,
            "aud": aud,
            "sub": subject,
            "sans": sans,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": hex::encode(jti),
            "sha": self.fingerprint,
        });
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self
            .key
            .sign(&rng, input.as_bytes())
            .map_err(|_| IssuerError::transient("signing the step-ca token failed"))?;
        Ok(format!("{input}.{}", B64URL.encode(sig.as_ref())))
    }
}

#[async_trait::async_trait]
impl Connector for StepCaConnector {
    async fn issue(
        &self,
        req: &IssueRequest,
        _resume: Option<serde_json::Value>,
        _checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError> {
        let http = self.client().await?;
        let mut sans: Vec<String> = req.names.dns.clone();
        sans.extend(req.names.ips.iter().map(|i| i.to_string()));
        let aud = format!("{}/1.0/sign", self.base());
        let ott = self.token(req.now, &req.common_name, &sans, &aud)?;
        let rsp = http
            .post(&aud)
            .json(&serde_json::json!({
                "csr": req.csr_pem,
                "ott": ott,
                "notAfter": format!("{}s", req.ttl_seconds),
            }))
            .send()
            .await
            .map_err(|e| transport("step-ca sign", e))?;
        if !rsp.status().is_success() {
            return Err(stepca_error("step-ca sign", rsp).await);
        }
        let body: serde_json::Value = rsp.json().await.map_err(|e| transport("step-ca sign", e))?;
        let crt = body["crt"]
            .as_str()
            .ok_or_else(|| IssuerError::rejected("step-ca sign: no certificate in the answer"))?;
        let mut issued = super::split_leaf(crt)?;
        let chain: Vec<&str> = body["certChain"]
            .as_array()
            .map(|a| a.iter().skip(1).filter_map(|c| c.as_str()).collect())
            .unwrap_or_default();
        if chain.is_empty() {
            if let Some(ca) = body["ca"].as_str() {
                issued.chain_pem.push_str(&format!("{}\n", ca.trim()));
            }
        } else {
            for c in chain {
                issued.chain_pem.push_str(&format!("{}\n", c.trim()));
            }
        }
        Ok(issued)
    }

    async fn test(&self) -> Result<String, IssuerError> {
        let http = self.client().await?;
        let rsp = http
            .get(format!("{}/provisioners", self.base()))
            .send()
            .await
            .map_err(|e| transport("step-ca provisioners", e))?;
        if !rsp.status().is_success() {
            return Err(stepca_error("step-ca provisioners", rsp).await);
        }
        let body: serde_json::Value = rsp
            .json()
            .await
            .map_err(|e| transport("step-ca provisioners", e))?;
        let found = body["provisioners"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["type"] == "JWK"
                    && p["name"] == self.config.provisioner.as_str()
                    && p["key"]["kid"] == self.config.provisioner_kid.as_str()
            })
            .ok_or_else(|| {
                IssuerError::rejected(format!(
                    "step-ca has no JWK provisioner '{}' with key id {}",
                    self.config.provisioner, self.config.provisioner_kid
                ))
            })?;
        // The provisioner's public key must be the one of certctl's private key.
        let point = self.key.public_key().as_ref();
        let (x, y) = (B64URL.encode(&point[1..33]), B64URL.encode(&point[33..65]));
        if found["key"]["x"] != x.as_str() || found["key"]["y"] != y.as_str() {
            return Err(IssuerError::rejected(format!(
                "the provisioner key certctl holds is not the key of provisioner '{}'",
                self.config.provisioner
            )));
        }
        Ok(format!(
            "step-ca at {} answered over TLS pinned to root {}; provisioner '{}' matches certctl's key",
            self.config.url,
            &self.fingerprint[..16],
            self.config.provisioner
        ))
    }
}
