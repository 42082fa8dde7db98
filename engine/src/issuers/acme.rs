//! ACME v2 (RFC 8555) on instant-acme: account registration (with External
//! Account Binding when the CA wants it), orders for several names and
//! wildcards, HTTP-01 and DNS-01 challenges, finalization with the agent's
//! CSR, chain download, and revocation.
//!
//! The order URL is saved into the job as soon as the CA creates the order,
//! so an attempt that dies (a crash, a restart, a lease that ran out)
//! resumes the same order on the next attempt (`Account::order(url)`).
//! The account's credentials are sealed with the master key on the issuer.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::net_guard::OutboundPolicy;
use base64::Engine as _;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
    RevocationRequest,
};
use serde::{Deserialize, Serialize};

use super::acme_dns::{BuiltinHttp01, Dns01Solver, HookDns01, Http01Solver};
use super::http::{client_config, roots};
use super::rfc2136::{Rfc2136Dns01, TsigKey};
use super::{Checkpoint, Connector, IssueRequest, Issued, IssuerError, RenewalWindow};
use crate::domain::RevocationReason;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Contact e-mail for the account.
    #[serde(default)]
    pub email: Option<String>,
    /// Trusted root(s) for the ACME server's TLS, PEM (a private ACME CA);
    /// the system roots otherwise.
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    /// `http-01` (default) or `dns-01`. Wildcards always use `dns-01`.
    #[serde(default = "default_challenge")]
    pub challenge: String,
    /// Who answers HTTP-01: `builtin` (default), the control plane's own
    /// responder on `http01_listen`, for names that point at it; or `agent`,
    /// the agent of the certificate's target, which writes the token into
    /// the target's `acme_webroot` or serves it on its `--http01-listen`.
    #[serde(default = "default_http01_solver")]
    pub http01_solver: String,
    /// Where the built-in HTTP-01 responder listens (e.g. `0.0.0.0:80`).
    #[serde(default)]
    pub http01_listen: Option<String>,
    /// `http01_solver = agent`: how long to wait for the agent to report the
    /// challenge in place before the attempt fails (default 120 s).
    #[serde(default = "default_agent_challenge_timeout")]
    pub agent_challenge_timeout_seconds: u64,
    /// DNS-01 hook script (absolute path): `HOOK present|cleanup FQDN VALUE`.
    #[serde(default)]
    pub dns01_hook: Option<String>,
    /// Seconds to wait after the hook published a TXT record (default 0).
    #[serde(default)]
    pub dns_propagation_seconds: u64,
    /// RFC 2136 DNS-01: the primary DNS server accepting TSIG-signed updates (`host:port`).
    #[serde(default)]
    pub rfc2136_server: Option<String>,
    /// RFC 2136: the zone to update (e.g. `example.com`).
    #[serde(default)]
    pub rfc2136_zone: Option<String>,
    /// RFC 2136: the TSIG key's name; its secret goes in `secrets.rfc2136_tsig_secret`.
    #[serde(default)]
    pub rfc2136_tsig_key: Option<String>,
    /// RFC 2136: `hmac-sha256` (default) or `hmac-sha512`.
    #[serde(default = "default_tsig_algorithm")]
    pub rfc2136_tsig_algorithm: String,
    /// RFC 2136: how long to wait for the server to serve the record (default 60 s).
    #[serde(default = "default_propagation_timeout")]
    pub dns_propagation_timeout_seconds: u64,
    /// How long one attempt waits for the CA to validate and issue (default 120 s).
    #[serde(default = "default_validation_timeout")]
    pub validation_timeout_seconds: u64,
    /// External Account Binding key id (ZeroSSL, Google Trust Services);
    /// its HMAC key goes in `secrets.eab_hmac_key`.
    #[serde(default)]
    pub eab_kid: Option<String>,
    /// Fetch EAB credentials for `email` before registering, as ZeroSSL
    /// offers (`POST eab_credentials_url` with `email=`).
    #[serde(default)]
    pub eab_from_email: bool,
    /// Where EAB credentials are fetched from (default ZeroSSL's endpoint).
    #[serde(default)]
    pub eab_credentials_url: Option<String>,
    /// An ACME profile to ask for, where the CA offers profiles.
    #[serde(default)]
    pub profile: Option<String>,
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// ZeroSSL's endpoint that hands out EAB credentials for an e-mail address.
const ZEROSSL_EAB_URL: &str = "https://api.zerossl.com/acme/eab-credentials-email";

fn default_challenge() -> String {
    "http-01".into()
}

fn default_http01_solver() -> String {
    "builtin".into()
}

fn default_agent_challenge_timeout() -> u64 {
    120
}

fn default_validation_timeout() -> u64 {
    120
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".into()
}

fn default_propagation_timeout() -> u64 {
    60
}

impl AcmeConfig {
    /// Checks the CA URLs against the outbound address policy.
    pub(crate) fn check_urls(&self, outbound: OutboundPolicy) -> Result<()> {
        super::http::check_url("acme issuer: directory_url", &self.directory_url, outbound)?;
        if let Some(u) = &self.eab_credentials_url {
            super::http::check_url("acme issuer: eab_credentials_url", u, outbound)?;
        }
        Ok(())
    }

    pub fn check(&self) -> Result<()> {
        if !self.directory_url.starts_with("https://") {
            return Err(Error::invalid(
                "acme issuer: directory_url must be an https:// URL",
            ));
        }
        match self.challenge.as_str() {
            "http-01" => match self.http01_solver.as_str() {
                "builtin" if self.http01_listen.is_none() => {
                    return Err(Error::invalid(
                        "acme issuer: http-01 needs http01_listen (the built-in responder's address) or http01_solver = agent",
                    ));
                }
                "builtin" | "agent" => {}
                other => {
                    return Err(Error::invalid(format!(
                        "acme issuer: http01_solver '{other}' is not supported (builtin or agent)"
                    )));
                }
            },
            "dns-01" => {}
            other => {
                return Err(Error::invalid(format!(
                    "acme issuer: challenge '{other}' is not supported (http-01 or dns-01)"
                )));
            }
        }
        let rfc2136 = [
            self.rfc2136_server.is_some(),
            self.rfc2136_zone.is_some(),
            self.rfc2136_tsig_key.is_some(),
        ];
        if rfc2136.iter().any(|b| *b) && !rfc2136.iter().all(|b| *b) {
            return Err(Error::invalid(
                "acme issuer: RFC 2136 needs rfc2136_server, rfc2136_zone and rfc2136_tsig_key",
            ));
        }
        if rfc2136[0] && self.dns01_hook.is_some() {
            return Err(Error::invalid(
                "acme issuer: choose one DNS-01 provider: dns01_hook or rfc2136_server",
            ));
        }
        if !(1..=3600).contains(&self.agent_challenge_timeout_seconds) {
            return Err(Error::invalid(
                "acme issuer: agent_challenge_timeout_seconds must be 1 to 3600",
            ));
        }
        if !matches!(
            self.rfc2136_tsig_algorithm.as_str(),
            "hmac-sha256" | "hmac-sha512"
        ) {
            return Err(Error::invalid(
                "acme issuer: rfc2136_tsig_algorithm must be hmac-sha256 or hmac-sha512",
            ));
        }
        if let Some(h) = &self.dns01_hook
            && !std::path::Path::new(h).is_absolute()
        {
            return Err(Error::invalid(
                "acme issuer: dns01_hook must be an absolute path",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSecrets {
    /// The EAB HMAC key, base64url as the CA shows it.
    #[serde(default)]
    pub eab_hmac_key: Option<String>,
    /// Extra environment for the DNS-01 hook (a DNS provider's API token).
    #[serde(default)]
    pub dns01_hook_env: BTreeMap<String, String>,
    /// The RFC 2136 TSIG secret, base64 (as `keymgr -t` or `tsig-keygen` print it).
    #[serde(default)]
    pub rfc2136_tsig_secret: Option<String>,
}

pub struct AcmeConnector {
    config: AcmeConfig,
    secrets: AcmeSecrets,
    account: Option<serde_json::Value>,
    tls: rustls::ClientConfig,
    outbound: OutboundPolicy,
}

/// The order progress saved in the job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OrderProgress {
    order_url: Option<String>,
}

/// The CA's problem document (or the transport failure) as the job's error.
fn acme_error(what: &str, e: instant_acme::Error) -> IssuerError {
    match e {
        instant_acme::Error::Api(p) => {
            let kind = p.r#type.clone().unwrap_or_default();
            let retry = kind.ends_with(":rateLimited")
                || kind.ends_with(":badNonce")
                || kind.ends_with(":serverInternal")
                || p.status.is_some_and(|s| s >= 500);
            let text = format!("{what}: the ACME CA answered: {p}");
            if retry {
                IssuerError::transient(text)
            } else {
                IssuerError::rejected(text)
            }
        }
        instant_acme::Error::Timeout(_) => IssuerError::transient(format!(
            "{what}: the ACME CA did not finish in time; the order is resumed on the next attempt"
        )),
        other => IssuerError::transient(format!("{what}: {other}")),
    }
}

fn acme_reason(r: RevocationReason) -> instant_acme::RevocationReason {
    use instant_acme::RevocationReason as A;
    match r {
        RevocationReason::Unspecified => A::Unspecified,
        RevocationReason::KeyCompromise => A::KeyCompromise,
        RevocationReason::CaCompromise => A::CaCompromise,
        RevocationReason::AffiliationChanged => A::AffiliationChanged,
        RevocationReason::Superseded => A::Superseded,
        RevocationReason::CessationOfOperation => A::CessationOfOperation,
        RevocationReason::CertificateHold => A::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => A::PrivilegeWithdrawn,
        RevocationReason::AaCompromise => A::AaCompromise,
    }
}

impl AcmeConnector {
    pub fn new(
        config: AcmeConfig,
        secrets: AcmeSecrets,
        account: Option<serde_json::Value>,
        outbound: OutboundPolicy,
    ) -> Result<Self> {
        config.check()?;
        config.check_urls(outbound)?;
        if config.eab_from_email && (config.email.is_none() || config.eab_kid.is_some()) {
            return Err(Error::invalid(
                "acme issuer: eab_from_email needs config.email and no eab_kid",
            ));
        }
        if config.eab_kid.is_some() != secrets.eab_hmac_key.is_some() {
            return Err(Error::invalid(
                "acme issuer: External Account Binding needs both config.eab_kid and secrets.eab_hmac_key",
            ));
        }
        let tls = client_config(roots(config.ca_cert_pem.as_deref())?)?;
        Ok(Self {
            config,
            secrets,
            account,
            tls,
            outbound,
        })
    }

    /// instant-acme's HTTP client on hyper with our TLS settings (the
    /// aws-lc-rs provider passed explicitly) and the outbound address guard:
    /// names are filtered when resolved and literal hosts checked, so no URL
    /// the directory hands out can reach a refused address.
    fn builder(&self) -> instant_acme::AccountBuilder {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
            crate::net_guard::GuardedResolver::new(self.outbound),
        );
        http.enforce_http(false);
        let guarded = crate::net_guard::GuardedConnector::new(http, self.outbound);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone())
            .https_only()
            .enable_http1()
            .wrap_connector(guarded);
        let client: hyper_util::client::legacy::Client<_, instant_acme::BodyWrapper<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Account::builder_with_http(Box::new(client))
    }

    /// The stored account, or a new one registered now (terms agreed, EAB
    /// when configured) and stored through the checkpoint.
    async fn account(&self, checkpoint: &dyn Checkpoint) -> Result<Account, IssuerError> {
        if let Some(stored) = &self.account {
            let creds: AccountCredentials = serde_json::from_value(stored.clone())
                .map_err(|e| IssuerError::rejected(format!("stored ACME account: {e}")))?;
            return self
                .builder()
                .from_credentials(creds)
                .await
                .map_err(|e| acme_error("ACME account", e));
        }
        let contact: Vec<String> = self
            .config
            .email
            .iter()
            .map(|e| format!("mailto:{e}"))
            .collect();
        let contact_refs: Vec<&str> = contact.iter().map(String::as_str).collect();
        let fetched = if self.config.eab_from_email {
            Some(self.eab_from_email().await?)
        } else {
            None
        };
        let configured = match (&self.config.eab_kid, &self.secrets.eab_hmac_key) {
            (Some(kid), Some(hmac)) => Some((kid.clone(), hmac.clone())),
            _ => None,
        };
        let eab = match fetched.or(configured) {
            Some((kid, hmac)) => {
                let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(hmac.trim().trim_end_matches('='))
                    .map_err(|_| IssuerError::rejected("the EAB HMAC key is not base64url"))?;
                Some(ExternalAccountKey::new(kid, &key))
            }
            None => None,
        };
        let (account, creds) = self
            .builder()
            .create(
                &NewAccount {
                    contact: &contact_refs,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.directory_url.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(|e| acme_error("ACME account registration", e))?;
        let value = serde_json::to_value(&creds)
            .map_err(|e| IssuerError::transient(format!("ACME account: {e}")))?;
        let kept = checkpoint.save_account(value.clone()).await?;
        if kept == value {
            return Ok(account);
        }
        // Another worker registered first; use the stored account.
        let creds: AccountCredentials = serde_json::from_value(kept)
            .map_err(|e| IssuerError::rejected(format!("stored ACME account: {e}")))?;
        self.builder()
            .from_credentials(creds)
            .await
            .map_err(|e| acme_error("ACME account", e))
    }

    /// EAB credentials for the account's e-mail address, from the CA's API
    /// (ZeroSSL: `{"success": true, "eab_kid": ..., "eab_hmac_key": ...}`).
    async fn eab_from_email(&self) -> Result<(String, String), IssuerError> {
        let url = self
            .config
            .eab_credentials_url
            .as_deref()
            .unwrap_or(ZEROSSL_EAB_URL);
        let email = self.config.email.clone().unwrap_or_default();
        let http = super::http::reqwest_client(
            roots(self.config.ca_cert_pem.as_deref())
                .map_err(|e| IssuerError::rejected(e.to_string()))?,
            Duration::from_secs(30),
            self.outbound,
        )
        .map_err(|e| IssuerError::transient(e.to_string()))?;
        let rsp = http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("email={}", form_encode(&email)))
            .send()
            .await
            .map_err(|e| super::http::transport("EAB credentials", e))?;
        let status = rsp.status();
        let body: serde_json::Value = rsp.json().await.unwrap_or_default();
        match (
            body["success"].as_bool(),
            body["eab_kid"].as_str(),
            body["eab_hmac_key"].as_str(),
        ) {
            (Some(true), Some(kid), Some(hmac)) => Ok((kid.to_owned(), hmac.to_owned())),
            _ => {
                let why = body["error"]["type"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("no credentials in the answer");
                let text = format!("EAB credentials for {email}: HTTP {status}: {why}");
                Err(if status.is_server_error() {
                    IssuerError::transient(text)
                } else {
                    IssuerError::rejected(text)
                })
            }
        }
    }

    fn http01(&self) -> Option<BuiltinHttp01> {
        self.config.http01_listen.as_deref().map(BuiltinHttp01::new)
    }

    fn dns01(&self, now: i64) -> Result<Option<Box<dyn Dns01Solver>>, IssuerError> {
        if let (Some(server), Some(zone), Some(key)) = (
            &self.config.rfc2136_server,
            &self.config.rfc2136_zone,
            &self.config.rfc2136_tsig_key,
        ) {
            let secret = self.secrets.rfc2136_tsig_secret.as_deref().ok_or_else(|| {
                IssuerError::rejected("RFC 2136 needs secrets.rfc2136_tsig_secret")
            })?;
            let secret = base64::engine::general_purpose::STANDARD
                .decode(secret.trim())
                .map_err(|_| IssuerError::rejected("the TSIG secret is not base64"))?;
            return Ok(Some(Box::new(Rfc2136Dns01 {
                server: server.clone(),
                zone: zone.clone(),
                key: TsigKey {
                    name: key.clone(),
                    algorithm: self.config.rfc2136_tsig_algorithm.clone(),
                    secret,
                },
                ttl: 60,
                now,
                propagation_timeout: Duration::from_secs(
                    self.config.dns_propagation_timeout_seconds,
                ),
            })));
        }
        Ok(self.config.dns01_hook.as_ref().map(|c| {
            Box::new(HookDns01 {
                command: c.clone(),
                env: self.secrets.dns01_hook_env.clone(),
                timeout: Duration::from_secs(60),
                propagation: Duration::from_secs(self.config.dns_propagation_seconds),
            }) as Box<dyn Dns01Solver>
        }))
    }
}

/// The ARI identifier of a certificate (RFC 9773 §4.1): its Authority Key
/// Identifier and its DER serial. `None` for a certificate without an AKI,
/// which no CA can identify that way.
fn ari_identifier(cert_der: &[u8]) -> Option<CertificateIdentifier<'static>> {
    use rustls::pki_types::Der;
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })?;
    Some(
        CertificateIdentifier::new(
            Der::from_slice(aki),
            Der::from_slice(cert.tbs_certificate.raw_serial()),
        )
        .into_owned(),
    )
}

enum Presented {
    Http(String, String),
    Dns(String, String),
}

#[async_trait::async_trait]
impl Connector for AcmeConnector {
    async fn issue(
        &self,
        req: &IssueRequest,
        resume: Option<serde_json::Value>,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Issued, IssuerError> {
        let account = self.account(checkpoint).await?;
        let progress: OrderProgress = resume
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let mut order = match progress.order_url {
            Some(url) => {
                tracing::info!(order = %url, job = %req.job_id, "resuming the ACME order");
                account
                    .order(url)
                    .await
                    .map_err(|e| acme_error("ACME order (resumed)", e))?
            }
            None => {
                let mut ids: Vec<Identifier> = req
                    .names
                    .dns
                    .iter()
                    .map(|d| Identifier::Dns(d.clone()))
                    .collect();
                ids.extend(req.names.ips.iter().map(|ip| Identifier::Ip(*ip)));
                let new = || {
                    let order = NewOrder::new(&ids);
                    match &self.config.profile {
                        Some(p) => order.profile(p),
                        None => order,
                    }
                };
                let replaces = req.replaces_der.as_deref().and_then(ari_identifier);
                let order = match replaces {
                    Some(id) => match account.new_order(&new().replaces(id)).await {
                        // A CA without ARI takes the order without `replaces`.
                        Err(instant_acme::Error::Unsupported(_)) => account.new_order(&new()).await,
                        other => other,
                    },
                    None => account.new_order(&new()).await,
                }
                .map_err(|e| acme_error("ACME new order", e))?;
                checkpoint
                    .save_state(serde_json::json!({ "order_url": order.url() }))
                    .await?;
                order
            }
        };

        let builtin = self.http01();
        let by_agent = match self.config.http01_solver.as_str() {
            "agent" => checkpoint.agent_http01(Duration::from_secs(
                self.config.agent_challenge_timeout_seconds,
            )),
            _ => None,
        };
        let http: Option<&dyn Http01Solver> = match self.config.http01_solver.as_str() {
            "agent" => by_agent.as_deref(),
            _ => builtin.as_ref().map(|b| b as &dyn Http01Solver),
        };
        let dns = self.dns01(req.now)?;
        let mut presented = Vec::new();
        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(Duration::from_secs(self.config.validation_timeout_seconds));
        if order.state().status == OrderStatus::Pending {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| acme_error("ACME authorization", e))?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                let wildcard = authz.wildcard;
                let use_dns = wildcard || self.config.challenge == "dns-01";
                let kind = if use_dns {
                    ChallengeType::Dns01
                } else {
                    ChallengeType::Http01
                };
                let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                    IssuerError::rejected(format!("the ACME CA offers no {kind:?} challenge"))
                })?;
                let name = challenge.identifier().identifier.clone();
                let Identifier::Dns(domain) = &name else {
                    return Err(IssuerError::rejected(
                        "only DNS identifiers can be validated by this issuer",
                    ));
                };
                let key_auth = challenge.key_authorization();
                if use_dns {
                    let solver = dns.as_ref().ok_or_else(|| {
                        IssuerError::rejected(
                            "a DNS-01 challenge (wildcard or dns-01) needs config.dns01_hook or the rfc2136_* settings",
                        )
                    })?;
                    let fqdn = format!("_acme-challenge.{domain}");
                    let value = key_auth.dns_value();
                    solver.present(&fqdn, &value).await?;
                    presented.push(Presented::Dns(fqdn, value));
                } else {
                    let solver = http.ok_or_else(|| {
                        IssuerError::rejected(if self.config.http01_solver == "agent" {
                            "HTTP-01 by the agent is only answered inside an issuer job"
                        } else {
                            "an HTTP-01 challenge needs config.http01_listen"
                        })
                    })?;
                    let token = challenge.token.clone();
                    solver.present(domain, &token, key_auth.as_str()).await?;
                    presented.push(Presented::Http(domain.clone(), token));
                }
                challenge
                    .set_ready()
                    .await
                    .map_err(|e| acme_error("ACME challenge", e))?;
            }
        }
        let status = match order.state().status {
            OrderStatus::Pending => order.poll_ready(&retries).await,
            s => Ok(s),
        };
        for p in presented {
            match p {
                Presented::Http(name, token) => {
                    if let Some(s) = http {
                        s.cleanup(&name, &token).await;
                    }
                }
                Presented::Dns(fqdn, value) => {
                    if let Some(s) = &dns {
                        s.cleanup(&fqdn, &value).await;
                    }
                }
            }
        }
        let status = status.map_err(|e| acme_error("ACME validation", e))?;
        match status {
            OrderStatus::Invalid => {
                let detail = order
                    .state()
                    .error
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "an authorization failed".into());
                return Err(IssuerError::rejected(format!(
                    "the ACME order is invalid: {detail}"
                )));
            }
            OrderStatus::Ready => {
                order
                    .finalize_csr(&req.csr_der)
                    .await
                    .map_err(|e| acme_error("ACME finalize", e))?;
            }
            _ => {}
        }
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(|e| acme_error("ACME certificate", e))?;
        super::split_leaf(&chain)
    }

    async fn revoke(
        &self,
        cert_der: &[u8],
        reason: RevocationReason,
        checkpoint: &dyn Checkpoint,
    ) -> Result<(), IssuerError> {
        let account = self.account(checkpoint).await?;
        let der = rustls::pki_types::CertificateDer::from(cert_der.to_vec());
        account
            .revoke(&RevocationRequest {
                certificate: &der,
                reason: Some(acme_reason(reason)),
            })
            .await
            .map_err(|e| acme_error("ACME revocation", e))
    }

    async fn renewal_window(
        &self,
        cert_der: &[u8],
        checkpoint: &dyn Checkpoint,
    ) -> Result<Option<RenewalWindow>, IssuerError> {
        let Some(id) = ari_identifier(cert_der) else {
            return Ok(None);
        };
        let account = self.account(checkpoint).await?;
        match account.renewal_info(&id).await {
            Ok((info, retry_after)) => Ok(Some(RenewalWindow {
                start: info.suggested_window.start.unix_timestamp(),
                end: info.suggested_window.end.unix_timestamp(),
                retry_after: retry_after.as_secs(),
                explanation_url: info.explanation_url,
            })),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(acme_error("ACME renewal information", e)),
        }
    }

    async fn test(&self) -> Result<String, IssuerError> {
        let http = super::http::reqwest_client(
            roots(self.config.ca_cert_pem.as_deref())
                .map_err(|e| IssuerError::rejected(e.to_string()))?,
            Duration::from_secs(30),
            self.outbound,
        )
        .map_err(|e| IssuerError::transient(e.to_string()))?;
        let rsp = http
            .get(&self.config.directory_url)
            .send()
            .await
            .map_err(|e| super::http::transport("ACME directory", e))?;
        if !rsp.status().is_success() {
            return Err(IssuerError::rejected(format!(
                "ACME directory: HTTP {}",
                rsp.status()
            )));
        }
        let dir: serde_json::Value = rsp
            .json()
            .await
            .map_err(|e| super::http::transport("ACME directory", e))?;
        if dir["newOrder"].as_str().is_none() {
            return Err(IssuerError::rejected(
                "the directory URL does not answer with an ACME directory",
            ));
        }
        let eab_required = dir["meta"]["externalAccountRequired"]
            .as_bool()
            .unwrap_or(false);
        if eab_required && self.config.eab_kid.is_none() && !self.config.eab_from_email {
            return Err(IssuerError::rejected(
                "the ACME CA requires External Account Binding: set config.eab_kid and secrets.eab_hmac_key",
            ));
        }
        let account = match &self.account {
            Some(_) => {
                let a = self.account(&super::NoCheckpoint).await?;
                format!("; account {} restored", a.id())
            }
            None => "; no account registered yet (the first order registers it)".into(),
        };
        Ok(format!(
            "ACME directory at {} answered{}{account}",
            self.config.directory_url,
            if eab_required {
                " (External Account Binding required and configured)"
            } else {
                ""
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> Result<AcmeConfig> {
        let mut c = serde_json::json!({"directory_url": "https://ca.example/dir"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        let c: AcmeConfig = serde_json::from_value(c).map_err(|e| Error::invalid(e.to_string()))?;
        c.check().map(|()| c)
    }

    #[test]
    fn http01_is_answered_by_the_builtin_responder_or_the_agent() {
        let e = config(serde_json::json!({})).unwrap_err();
        assert!(e.to_string().contains("http01_listen"), "{e}");
        let c = config(serde_json::json!({"http01_listen": "127.0.0.1:80"})).unwrap();
        assert_eq!(c.http01_solver, "builtin");
        let c = config(serde_json::json!({"http01_solver": "agent"})).unwrap();
        assert_eq!(c.agent_challenge_timeout_seconds, 120);
        let e = config(serde_json::json!({"http01_solver": "somebody"})).unwrap_err();
        assert!(e.to_string().contains("builtin or agent"), "{e}");
        for t in [0, 3601] {
            let e = config(
                serde_json::json!({"http01_solver": "agent", "agent_challenge_timeout_seconds": t}),
            )
            .unwrap_err();
            assert!(
                e.to_string().contains("agent_challenge_timeout_seconds"),
                "{e}"
            );
        }
    }
}
