//! The step-ca issuer against a double of step-ca's documented API (no
//! step-ca binary can be installed here): HTTPS with a root, intermediate
//! and server certificate; `GET /root/{sha256}`; `GET /provisioners`; and
//! `POST /1.0/sign`, which, as step-ca does, verifies the one-time token's
//! ES256 signature against the JWK provisioner's public key (with an
//! independent JWT library), checks its audience, issuer, expiry, replay and
//! names, then signs the CSR with rcgen.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use certctl_engine::domain::{Issuer, JobStatus, KeyAlgorithm};
use certctl_engine::ops;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

use super::support::{Harness, csr, run_jobs, sh};
use crate::backend_tests;

backend_tests!(
    stepca_issues_with_a_pinned_root_and_a_jwk_token,
    stepca_wrong_provisioner_key_is_a_clear_error,
    stepca_root_fingerprint_is_pinned,
);

const PROVISIONER: &str = "certctl@example.com";
const KID: &str = "Wc0Q2GqRY0H2SbUTDwbOsd5JNUcNZ0-5Ho0UdnLkW4k";
const UNAUTHORIZED: &str = "The request lacked necessary authorization to be completed. Please see the certificate authority logs for more info.";

struct DoubleState {
    aud: String,
    x: String,
    y: String,
    root_pem: String,
    intermediate: CertifiedIssuer<'static, KeyPair>,
    used_jti: Mutex<HashSet<String>>,
}

struct StepCaDouble {
    url: String,
    root_pem: String,
    root_fingerprint: String,
    /// The provisioner's private key, PKCS#8 PEM.
    provisioner_key_pem: String,
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

fn p256() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

impl StepCaDouble {
    async fn start() -> StepCaDouble {
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

    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "provisioner": PROVISIONER,
            "provisioner_kid": KID,
            "root_fingerprint": self.root_fingerprint,
        })
    }
}

async fn create_issuer(
    h: &Harness,
    name: &str,
    config: serde_json::Value,
    key_pem: &str,
) -> Issuer {
    h.done::<ops::CreateIssuer>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "step_ca", "config": config,
            "secrets": { "provisioner_key_pem": key_pem },
        }))
        .expect("input"),
    )
    .await
}

async fn issue(h: &Harness, issuer: &str, cn: &str) -> (String, certctl_engine::domain::Job) {
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "common_name": cn, "issuer_id": issuer }))
                .expect("input"),
        )
        .await;
    let out = h
        .done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[cn])),
                ttl_seconds: Some(86400),
            },
        )
        .await;
    run_jobs(h).await;
    let job = h
        .done::<ops::GetJob>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": out.job.expect("job").id }))
                .expect("input"),
        )
        .await;
    (c.id, job)
}

async fn stepca_issues_with_a_pinned_root_and_a_jwk_token(h: &Harness) {
    let ca = StepCaDouble::start().await;
    let issuer = create_issuer(h, "step", ca.config(), &ca.provisioner_key_pem).await;
    let t = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: issuer.id.clone(),
            },
        )
        .await;
    assert!(t.ok, "{t:?}");
    let (cert, job) = issue(h, &issuer.id, "svc.internal.example.com").await;
    assert_eq!(job.status, JobStatus::Completed, "{job:?}");
    // A renewal gets a fresh token (a new jti) and completes in the job loop.
    h.clock.advance(60);
    let renewed = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: cert.clone(),
                csr_pem: Some(csr(
                    KeyAlgorithm::EcdsaP256,
                    "svc.internal.example.com",
                    &["svc.internal.example.com"],
                )),
            },
        )
        .await;
    let s = std::sync::Arc::new(certctl_engine::scheduler::Scheduler::new(
        h.engine.clone(),
        "proc-step",
    ));
    s.tick().await;
    let mut versions = h
        .done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: cert })
        .await
        .versions;
    assert_eq!(versions.len(), 2, "renewal job: {:?}", renewed.job.id);
    let v = versions.remove(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let w = |n: &str, t: &str| {
        let p = dir.path().join(n);
        std::fs::write(&p, t).expect("write");
        p.display().to_string()
    };
    let (r, c, l) = (
        w("root.pem", &ca.root_pem),
        w("chain.pem", &v.chain_pem),
        w("leaf.pem", &v.cert_pem),
    );
    sh("openssl", &["verify", "-CAfile", &r, "-untrusted", &c, &l]);
}

async fn stepca_wrong_provisioner_key_is_a_clear_error(h: &Harness) {
    let ca = StepCaDouble::start().await;
    let other = p256().serialize_pem();
    let issuer = create_issuer(h, "step-wrong-key", ca.config(), &other).await;
    let t = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: issuer.id.clone(),
            },
        )
        .await;
    assert!(
        !t.ok && t.detail.contains("is not the key of provisioner"),
        "{t:?}"
    );
    let (cert, job) = issue(h, &issuer.id, "nope.internal.example.com").await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let err = job.last_error.unwrap_or_default();
    assert!(
        err.contains("step-ca answered HTTP 401") && err.contains("lacked necessary authorization"),
        "{err}"
    );
    let versions = h
        .done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: cert })
        .await
        .versions;
    assert!(versions.is_empty());
}

async fn stepca_root_fingerprint_is_pinned(h: &Harness) {
    let ca = StepCaDouble::start().await;
    // The CA's real root given as PEM, but another fingerprint pinned.
    let mut config = ca.config();
    config["root_pem"] = ca.root_pem.clone().into();
    config["root_fingerprint"] = "ab".repeat(32).into();
    let issuer = create_issuer(h, "step-pinned", config, &ca.provisioner_key_pem).await;
    let t = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: issuer.id.clone(),
            },
        )
        .await;
    assert!(!t.ok && t.detail.contains("not the pinned"), "{t:?}");
    // Fetched from the CA, an unknown fingerprint gets no root at all.
    let mut config = ca.config();
    config["root_fingerprint"] = "cd".repeat(32).into();
    let issuer = create_issuer(h, "step-unknown", config, &ca.provisioner_key_pem).await;
    let (_, job) = issue(h, &issuer.id, "pin.internal.example.com").await;
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert!(job.last_error.unwrap_or_default().contains("404"));
}
