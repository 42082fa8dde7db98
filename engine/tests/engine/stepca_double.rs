//! A double of step-ca's documented API (no step-ca binary can be installed
//! here): HTTPS with a root, intermediate and server certificate;
//! `GET /root/{sha256}`; `GET /provisioners`; and `POST /1.0/sign`, which, as
//! step-ca does, verifies the one-time token's ES256 signature against the
//! JWK provisioner's public key (with an independent JWT library), checks its
//! audience, issuer, expiry, replay and names, then signs the CSR with rcgen.
//! Shared by the engine's step-ca tests and the end-to-end deployment test
//! (`tests/e2e/issuers.rs` includes this file by path).

// Each of the two test binaries that include this file uses part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub const PROVISIONER: &str = "certctl@example.com";
pub const KID: &str = "Wc0Q2GqRY0H2SbUTDwbOsd5JNUcNZ0-5Ho0UdnLkW4k";
pub const UNAUTHORIZED: &str = "The request lacked necessary authorization to be completed. Please see the certificate authority logs for more info.";

struct DoubleState {
    aud: String,
    x: String,
    y: String,
    root_pem: String,
    intermediate: CertifiedIssuer<'static, KeyPair>,
    used_jti: Mutex<HashSet<String>>,
}

pub struct StepCaDouble {
    pub url: String,
    pub root_pem: String,
    pub root_fingerprint: String,
    /// The provisioner's private key, PKCS#8 PEM.
    pub provisioner_key_pem: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StepCaDouble {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

async fn root_handler(
    State(st): State<Arc<DoubleState>>,
    axum::extract::Path(sha): axum::extract::Path<String>,
) -> Response {
    let der = ::pem::parse(&st.root_pem).expect("root").into_contents();
    let fp = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der));
    if sha.to_ascii_lowercase() != fp {
        return error(
            StatusCode::NOT_FOUND,
            "certificate with fingerprint not found",
        );
    }
    Json(serde_json::json!({ "ca": st.root_pem })).into_response()
}

async fn provisioners(State(st): State<Arc<DoubleState>>) -> Response {
    Json(serde_json::json!({ "provisioners": [{
        "type": "JWK", "name": PROVISIONER,
        "key": { "use": "sig", "kty": "EC", "kid": KID, "crv": "P-256", "alg": "ES256", "x": st.x, "y": st.y },
        "encryptedKey": "not-used-by-certctl",
    }]}))
    .into_response()
}

async fn sign(State(st): State<Arc<DoubleState>>, Json(body): Json<serde_json::Value>) -> Response {
    let (Some(ott), Some(csr_pem)) = (body["ott"].as_str(), body["csr"].as_str()) else {
        return error(StatusCode::BAD_REQUEST, "missing csr or ott");
    };
    let Ok(header) = jsonwebtoken::decode_header(ott) else {
        return error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    };
    if header.kid.as_deref() != Some(KID) || header.alg != jsonwebtoken::Algorithm::ES256 {
        return error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_ec_components(&st.x, &st.y) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "bad provisioner key");
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[st.aud.as_str()]);
    v.set_issuer(&[PROVISIONER]);
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    let claims = match jsonwebtoken::decode::<serde_json::Value>(ott, &key, &v) {
        Ok(t) => t.claims,
        Err(_) => return error(StatusCode::UNAUTHORIZED, UNAUTHORIZED),
    };
    let jti = claims["jti"].as_str().unwrap_or_default().to_owned();
    if jti.is_empty() || !st.used_jti.lock().expect("lock").insert(jti) {
        return error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    let Ok(csr) = rcgen::CertificateSigningRequestParams::from_pem(csr_pem) else {
        return error(StatusCode::BAD_REQUEST, "invalid certificate request");
    };
    let allowed: Vec<String> = claims["sans"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for san in &csr.params.subject_alt_names {
        if let rcgen::SanType::DnsName(d) = san
            && !allowed.iter().any(|a| a == d.as_str())
        {
            return error(
                StatusCode::FORBIDDEN,
                &format!("certificate request does not contain the valid DNS names - got {d}"),
            );
        }
    }
    let mut csr = csr;
    let now = time::OffsetDateTime::now_utc();
    csr.params.not_before = now - time::Duration::minutes(1);
    csr.params.not_after = now + time::Duration::days(1);
    let Ok(cert) = csr.signed_by(&st.intermediate) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "signing failed");
    };
    let crt = cert.pem();
    let ca = st.intermediate.pem();
    (
        StatusCode::CREATED,
        Json(serde_json::json!({ "crt": crt, "ca": ca, "certChain": [crt, ca] })),
    )
        .into_response()
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    p
}

pub fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

impl StepCaDouble {
    pub async fn start() -> StepCaDouble {
        let root = CertifiedIssuer::self_signed(ca_params("Double Root CA"), p256()).expect("root");
        let intermediate =
            CertifiedIssuer::signed_by(ca_params("Double Intermediate CA"), p256(), &root)
                .expect("intermediate");
        let server_key = p256();
        let mut sp = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        sp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp
            .signed_by(&server_key, &intermediate)
            .expect("server cert");
        let provisioner = p256();
        let point = provisioner.public_key_raw().to_vec();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = format!("https://127.0.0.1:{port}");
        let root_pem = root.pem();
        let root_der = root.der().to_vec();
        let state = Arc::new(DoubleState {
            aud: format!("{url}/1.0/sign"),
            x: B64URL.encode(&point[1..33]),
            y: B64URL.encode(&point[33..65]),
            root_pem: root_pem.clone(),
            intermediate,
            used_jti: Mutex::default(),
        });
        let chain = vec![server_cert.der().clone(), state.intermediate.der().clone()];
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                chain,
                rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let app = axum::Router::new()
            .route("/root/{sha}", axum::routing::get(root_handler))
            .route("/provisioners", axum::routing::get(provisioners))
            .route("/1.0/sign", axum::routing::post(sign))
            .route(
                "/health",
                axum::routing::get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
            )
            .with_state(state);
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(tls),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                    }
                });
            }
        });
        StepCaDouble {
            url,
            root_fingerprint: hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                &root_der,
            )),
            root_pem,
            provisioner_key_pem: provisioner.serialize_pem(),
            server,
        }
    }

    pub fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "provisioner": PROVISIONER,
            "provisioner_kid": KID,
            "root_fingerprint": self.root_fingerprint,
        })
    }
}
