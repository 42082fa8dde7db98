//! EST (RFC 7030) under `/.well-known/est/`: `cacerts`, `simpleenroll`,
//! `simplereenroll`, `csrattrs`, `serverkeygen`. Enrollment runs the engine's
//! `enroll_certificate` / `reenroll_certificate` operations, so profile
//! rules, the approval gate and the audit log apply as everywhere else.
//!
//! Authentication: HTTP Basic, where the password is a certctl API key (any
//! user name) or a configured EST user's password; or the TLS client
//! certificate (see `tls.rs`), which the engine accepts only while it is
//! the current, valid, unrevoked version in the inventory, and which enrolls
//! only its own names unless the profile allows more. `simplereenroll`
//! always needs the client certificate being renewed.
//!
//! Statuses: 415 for a body that is not `application/pkcs10`, 400 for bad
//! base64 or a malformed CSR, 403 for a CSR the profile refuses, 401 without
//! credentials, 202 with `Retry-After` when the request waits for approval.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use certctl_engine::domain::{Principal, Role};
use certctl_engine::ops::{self, Outcome};
use certctl_engine::pki::pkcs7;

use crate::AppState;
use crate::tls::ClientCertificate;

/// Which issuer and profile EST enrolls under, and its Basic users.
#[derive(Clone, Default)]
pub struct EstConfig {
    /// Defaults to the local CA.
    pub issuer_id: Option<String>,
    /// Defaults to the default profile.
    pub profile_id: Option<String>,
    /// Extra HTTP Basic users (`user`, `password`); API keys work as passwords too.
    pub users: Vec<(String, String)>,
}

impl std::fmt::Debug for EstConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EstConfig")
            .field("issuer_id", &self.issuer_id)
            .field("profile_id", &self.profile_id)
            .field(
                "users",
                &self.users.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl EstConfig {
    fn issuer(&self) -> &str {
        self.issuer_id
            .as_deref()
            .unwrap_or(certctl_engine::bootstrap::LOCAL_ISSUER_ID)
    }
}

const PKCS7_CERTS: &str = "application/pkcs7-mime; smime-type=certs-only";

/// An EST failure: a status and a short plain-text reason.
struct EstError(StatusCode, String);

impl IntoResponse for EstError {
    fn into_response(self) -> Response {
        let mut res = (self.0, self.1).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"certctl EST\""),
            );
        }
        res
    }
}

impl From<certctl_engine::Error> for EstError {
    fn from(e: certctl_engine::Error) -> Self {
        use certctl_engine::Error as E;
        let status = match &e {
            E::InvalidInput(_) => StatusCode::BAD_REQUEST,
            E::PolicyViolation(_) | E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Unauthenticated => StatusCode::UNAUTHORIZED,
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::Conflict(_) | E::StaleApproval(_) => StatusCode::CONFLICT,
            E::IssuerRejected(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let text = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "EST request failed");
            "internal error".to_owned()
        } else {
            e.to_string()
        };
        EstError(status, text)
    }
}

fn base64_body(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 1);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

fn pkcs7_response(der: &[u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, PKCS7_CERTS),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                "base64",
            ),
        ],
        base64_body(der),
    )
        .into_response()
}

/// `GET /.well-known/est/cacerts`: the issuing CA and its parents.
pub async fn cacerts(State(state): State<AppState>) -> Response {
    match state.engine.issuer_chain_pem(state.est.issuer()).await {
        Ok(chain) => match pkcs7::certs_only_from_pem(&chain) {
            Ok(der) => pkcs7_response(&der),
            Err(e) => EstError::from(e).into_response(),
        },
        Err(e) => EstError::from(e).into_response(),
    }
}

/// `GET /.well-known/est/csrattrs`: the attributes certctl wants in a CSR
/// (RFC 7030 4.5.2): here, an ECDSA-with-SHA256 signature.
pub async fn csrattrs() -> Response {
    // SEQUENCE { OID ecdsa-with-SHA256 }
    let der = [
        0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
    ];
    (
        [
            (header::CONTENT_TYPE, "application/csrattrs"),
            (
                header::HeaderName::from_static("content-transfer-encoding"),
                "base64",
            ),
        ],
        base64_body(&der),
    )
        .into_response()
}

/// The caller, from HTTP Basic or the TLS client certificate.
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    client: Option<&ClientCertificate>,
) -> Result<Principal, EstError> {
    if let Some((user, password)) = basic(headers) {
        if let Ok(p) = state.engine.authenticate(&password).await {
            return Ok(p);
        }
        let known = state.est.users.iter().any(|(u, p)| {
            constant_time_eq(u.as_bytes(), user.as_bytes())
                & constant_time_eq(p.as_bytes(), password.as_bytes())
        });
        if known {
            return Ok(Principal {
                id: format!("est:{user}"),
                name: format!("EST user {user}"),
                role: Role::Operator,
                agent_id: None,
                address: None,
            });
        }
        return Err(EstError(
            StatusCode::UNAUTHORIZED,
            "the EST credentials are not valid".into(),
        ));
    }
    if let Some(cert) = client {
        // The TLS layer proved the chain; whether the certificate is still
        // a credential (and which names it may enroll) is the engine's rule.
        return Ok(state
            .engine
            .authenticate_client_certificate(&cert.0)
            .await?);
    }
    Err(EstError(
        StatusCode::UNAUTHORIZED,
        "authenticate with HTTP Basic or a client certificate".into(),
    ))
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CSR of an enrollment body: `application/pkcs10`, base64 DER.
fn csr_body(headers: &HeaderMap, body: &[u8]) -> Result<String, EstError> {
    let ok_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/pkcs10")
        });
    if !ok_type {
        return Err(EstError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the CSR as application/pkcs10 (base64 DER)".into(),
        ));
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| {
            EstError(
                StatusCode::BAD_REQUEST,
                "the body is not valid base64".into(),
            )
        })?;
    if der.is_empty() {
        return Err(EstError(
            StatusCode::BAD_REQUEST,
            "the body is empty".into(),
        ));
    }
    Ok(text)
}

fn issued(out: Outcome<ops::IssueOutput>) -> Result<Response, EstError> {
    match out {
        Outcome::Completed { result } => {
            // EST enrollment refuses issuers that do not sign at once, so a
            // completed call carries its version.
            let version = result.version.ok_or_else(|| {
                EstError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the issuer did not return a certificate".into(),
                )
            })?;
            let der = pkcs7::certs_only_from_pem(&version.cert_pem)?;
            Ok(pkcs7_response(&der))
        }
        Outcome::ApprovalRequired(t) => Ok(accepted(&t.approval_id)),
    }
}

/// 202 with `Retry-After` (RFC 7030 4.2.3) while the request waits for approval.
fn accepted(approval_id: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::RETRY_AFTER, "60")],
        format!("the request waits for approval {approval_id}; retry later"),
    )
        .into_response()
}

/// `POST /.well-known/est/simpleenroll`.
pub async fn simpleenroll(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let principal = authenticate(&state, &headers, client.as_deref()).await?;
        let csr = csr_body(&headers, &body)?;
        let mut labels = serde_json::Map::new();
        labels.insert("enrolled_via".into(), "est".into());
        let out = state
            .engine
            .call::<ops::EnrollCertificate>(
                &principal,
                ops::EnrollCertificateInput {
                    csr_pem: csr,
                    issuer_id: state.est.issuer_id.clone(),
                    profile_id: state.est.profile_id.clone(),
                    environment: None,
                    labels,
                    server_keygen: false,
                },
            )
            .await?;
        issued(out)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /.well-known/est/simplereenroll`: needs the current certificate as
/// the TLS client certificate.
pub async fn simplereenroll(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let Some(cert) = client.as_deref() else {
            return Err(EstError(
                StatusCode::FORBIDDEN,
                "re-enrollment needs the current certificate as the TLS client certificate".into(),
            ));
        };
        let principal = authenticate(&state, &headers, Some(cert)).await?;
        let csr = csr_body(&headers, &body)?;
        let out = state
            .engine
            .call::<ops::ReenrollCertificate>(
                &principal,
                ops::ReenrollCertificateInput {
                    current_cert_pem: base64::engine::general_purpose::STANDARD.encode(&cert.0),
                    csr_pem: csr,
                },
            )
            .await?;
        issued(out)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /.well-known/est/serverkeygen` (RFC 7030 4.4): the CSR names the
/// certificate; the control plane generates the key pair (the EST profile's
/// key type, and only where the profile and installation allow server-side
/// key generation), issues through `enroll_certificate`, and answers
/// `multipart/mixed`: the key as `application/pkcs8` and the certificate as
/// PKCS#7 certs-only, both base64. The key is kept only sealed, for a later
/// PKCS#12 export.
pub async fn serverkeygen(
    State(state): State<AppState>,
    client: Option<axum::Extension<ClientCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let run = async {
        let principal = authenticate(&state, &headers, client.as_deref()).await?;
        let csr = csr_body(&headers, &body)?;
        let mut labels = serde_json::Map::new();
        labels.insert("enrolled_via".into(), "est-serverkeygen".into());
        let out = state
            .engine
            .enroll_with_server_key(
                &principal,
                ops::EnrollCertificateInput {
                    csr_pem: csr,
                    issuer_id: state.est.issuer_id.clone(),
                    profile_id: state.est.profile_id.clone(),
                    environment: None,
                    labels,
                    server_keygen: true,
                },
            )
            .await?;
        match out {
            Outcome::Completed { result } => {
                let version = result.issued.version.ok_or_else(|| {
                    EstError(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the issuer did not return a certificate".into(),
                    )
                })?;
                let p7 = pkcs7::certs_only_from_pem(&version.cert_pem)?;
                Ok(multipart_key_and_cert(&result.private_key_pkcs8_der, &p7))
            }
            Outcome::ApprovalRequired(t) => Ok::<_, EstError>(accepted(&t.approval_id)),
        }
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

/// The `multipart/mixed` body of a serverkeygen answer (RFC 7030 4.4.2).
fn multipart_key_and_cert(key_der: &[u8], p7_der: &[u8]) -> Response {
    let mut raw = [0u8; 12];
    // A boundary that cannot occur in base64 text (it has `=_` inside).
    let boundary = match aws_lc_rs::rand::fill(&mut raw) {
        Ok(()) => format!("est=_{}", hex::encode(raw)),
        Err(_) => "est=_certctl_serverkeygen".to_owned(),
    };
    let key_part = zeroize::Zeroizing::new(base64_body(key_der));
    let body = zeroize::Zeroizing::new(format!(
        "--{boundary}\r\n\
         Content-Type: application/pkcs8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         {key}\
         --{boundary}\r\n\
         Content-Type: {PKCS7_CERTS}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         {cert}\
         --{boundary}--\r\n",
        key = key_part.as_str(),
        cert = base64_body(p7_der),
    ));
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/mixed; boundary=\"{boundary}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body.to_string(),
    )
        .into_response()
}
