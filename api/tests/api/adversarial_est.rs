//! Issue 17, point 4: an EST client certificate is a credential only while
//! the inventory holds it current. Revoked, superseded, expired and unknown
//! client certificates are refused by `simpleenroll`, `serverkeygen` and
//! `simplereenroll` (403 with the reason); a current one enrolls only the
//! names it holds unless the profile allows more. Every refusal issues
//! nothing and leaves the audit chain valid.
//!
//! The router runs in memory with the client certificate as the request
//! extension the TLS layer sets (`tls.rs`), so the certificates here need
//! not pass a handshake: what is tested is what the handlers and the engine
//! do with a certificate that chains to the CA.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use certctl_api::tls::ClientCertificate;
use certctl_api::{AppState, EstConfig};
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeyAlgorithm, KeygenMode};
use certctl_engine::pki::{self, SubjectNames};
use serde_json::{Value, json};

use crate::support::{Backend, Rig};

/// Runs each scenario on SQLite and PostgreSQL, with server-side key
/// generation allowed so `serverkeygen` reaches the credential check.
macro_rules! est_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let rig = super::rig(super::Backend::Sqlite).await.expect("rig");
                    super::$name(&rig).await;
                    rig.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(rig) = super::rig(super::Backend::Postgres).await else { return };
                    super::$name(&rig).await;
                    rig.finish().await;
                }
            )*
        }
    };
}

est_tests!(
    stale_client_certificates_enroll_nothing,
    a_client_certificate_enrolls_only_its_own_names,
    a_profile_may_let_client_certificates_enroll_new_names,
    a_client_certificate_principal_may_only_enroll,
);

async fn rig(backend: Backend) -> Option<Rig> {
    let config = EngineConfig {
        keygen_mode: KeygenMode::Server,
        ..Default::default()
    };
    Rig::on_with(backend, Default::default(), config).await
}

/// The EST profile (server keygen allowed, client auth EKU) and a router
/// enrolling under it.
struct Est {
    profile_id: String,
    router: axum::Router,
}

async fn est(rig: &Rig) -> Est {
    let profile = rig
        .op(
            "save_profile",
            json!({
                "name": "devices",
                "keygen_mode": "server",
                "ekus": ["server_auth", "client_auth"],
                "san_rules": { "allowed_dns_suffixes": ["devices.example.com"] }
            }),
        )
        .await;
    let profile_id = profile["id"].as_str().unwrap().to_owned();
    let mut state = AppState::new(rig.engine.clone());
    state.est = Arc::new(EstConfig {
        issuer_id: None,
        profile_id: Some(profile_id.clone()),
        users: Vec::new(),
    });
    Est {
        profile_id,
        router: certctl_api::app(state),
    }
}

/// A CSR for `name` as an EST body (base64 DER).
fn csr_body(name: &str) -> String {
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let names = SubjectNames {
        dns: vec![name.to_owned()],
        ..SubjectNames::default()
    };
    pki::csr_for(&key, name, &names)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// A certificate under the EST profile for `name`, issued now; its id.
async fn holder(rig: &Rig, est: &Est, name: &str) -> String {
    let c = rig
        .op(
            "create_certificate",
            json!({ "common_name": name, "profile_id": est.profile_id }),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_owned();
    issue(rig, &id, name).await;
    id
}

async fn issue(rig: &Rig, id: &str, name: &str) {
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let names = SubjectNames {
        dns: vec![name.to_owned()],
        ..SubjectNames::default()
    };
    let csr = pki::csr_for(&key, name, &names).unwrap();
    rig.op("issue_certificate", json!({ "id": id, "csr_pem": csr }))
        .await;
}

/// The DER of a certificate's current version.
async fn der_of(rig: &Rig, id: &str) -> Vec<u8> {
    let out = rig
        .op("export_certificate", json!({ "id": id, "format": "der" }))
        .await;
    base64::engine::general_purpose::STANDARD
        .decode(out["der_base64"].as_str().unwrap())
        .unwrap()
}

/// POSTs an EST request presenting `client` as the TLS client certificate.
async fn post(rig: &Rig, est: &Est, endpoint: &str, client: &[u8], body: &str) -> (u16, String) {
    let req = Request::post(format!("/.well-known/est/{endpoint}"))
        .header("content-type", "application/pkcs10")
        .extension(ClientCertificate(client.to_vec()))
        .body(Body::from(body.to_owned()))
        .unwrap();
    let reply = rig.send_via(&est.router, req).await;
    let text = match reply.body {
        Value::String(s) => s,
        other => other.to_string(),
    };
    (reply.status.as_u16(), text)
}

async fn certificate_total(rig: &Rig) -> i64 {
    rig.op("list_certificates", json!({})).await["total"]
        .as_i64()
        .unwrap()
}

async fn assert_chain_valid(rig: &Rig) {
    let v = rig.op("verify_audit_log", json!({})).await;
    assert_eq!(v["valid"], true, "{v}");
}

/// Revokes through the gate, confirmed in chat by the admin.
async fn revoke(rig: &Rig, id: &str) {
    crate::pki::revoke(rig, id, "keyCompromise").await;
}

/// Every EST endpoint refuses `client` with 403 and `reason`, for its own
/// name and for a new one, and nothing is issued.
async fn assert_refused_everywhere(rig: &Rig, est: &Est, client: &[u8], own: &str, reason: &str) {
    let before = certificate_total(rig).await;
    for endpoint in ["simpleenroll", "serverkeygen", "simplereenroll"] {
        for name in [own, "attacker.devices.example.com"] {
            let (status, text) = post(rig, est, endpoint, client, &csr_body(name)).await;
            assert_eq!(
                status, 403,
                "{endpoint} for {name} with a certificate that {reason}: {text}"
            );
            assert!(text.contains(reason), "{endpoint}: {text}");
        }
    }
    assert_eq!(before, certificate_total(rig).await, "nothing was issued");
    assert_chain_valid(rig).await;
}

async fn stale_client_certificates_enroll_nothing(rig: &Rig) {
    let est = est(rig).await;

    // Revoked: the key may be in an attacker's hands.
    let revoked = holder(rig, &est, "revoked.devices.example.com").await;
    let revoked_der = der_of(rig, &revoked).await;
    revoke(rig, &revoked).await;
    assert_refused_everywhere(
        rig,
        &est,
        &revoked_der,
        "revoked.devices.example.com",
        "revoked",
    )
    .await;

    // Superseded: an older version after the certificate was renewed.
    let renewed = holder(rig, &est, "renewed.devices.example.com").await;
    let old_der = der_of(rig, &renewed).await;
    issue(rig, &renewed, "renewed.devices.example.com").await;
    assert_ne!(old_der, der_of(rig, &renewed).await);
    assert_refused_everywhere(
        rig,
        &est,
        &old_der,
        "renewed.devices.example.com",
        "superseded",
    )
    .await;

    // Expired in the inventory (its dates moved into the past).
    let expired = holder(rig, &est, "expired.devices.example.com").await;
    let expired_der = der_of(rig, &expired).await;
    rig.sql(&[
        "UPDATE certificates SET not_after = 1 WHERE common_name = 'expired.devices.example.com'",
        "UPDATE certificate_versions SET not_after = 1 WHERE certificate_id IN \
         (SELECT id FROM certificates WHERE common_name = 'expired.devices.example.com')",
    ])
    .await;
    assert_refused_everywhere(
        rig,
        &est,
        &expired_der,
        "expired.devices.example.com",
        "expired",
    )
    .await;

    // Unknown to the inventory, though signed by certctl's CA chain: the
    // issuing CA's own certificate.
    let issuer = rig
        .op("get_object", json!({ "kind": "issuer", "id": "iss-local" }))
        .await;
    let ca = pki::parse_certificate_pem(issuer["ca_cert_pem"].as_str().unwrap()).unwrap();
    assert_refused_everywhere(
        rig,
        &est,
        &ca.der,
        "issuing.devices.example.com",
        "not in certctl's inventory",
    )
    .await;

    // The refusals are in the trail, as denied, naming the reason.
    let log = rig
        .op(
            "get_audit_log",
            json!({ "action": "authenticate_client_certificate" }),
        )
        .await;
    let events = log["data"].as_array().unwrap();
    assert!(!events.is_empty(), "{log}");
    assert!(events.iter().all(|e| e["outcome"] == "denied"), "{log}");
}

async fn a_client_certificate_enrolls_only_its_own_names(rig: &Rig) {
    let est = est(rig).await;
    let id = holder(rig, &est, "dev1.devices.example.com").await;
    let der = der_of(rig, &id).await;

    // Its own name: enrolled (a new key for what the device already is).
    let (status, text) = post(
        rig,
        &est,
        "simpleenroll",
        &der,
        &csr_body("dev1.devices.example.com"),
    )
    .await;
    assert_eq!(status, 200, "{text}");

    // A name it does not hold: refused on both enrollment endpoints, nothing issued.
    let before = certificate_total(rig).await;
    for endpoint in ["simpleenroll", "serverkeygen"] {
        let (status, text) = post(
            rig,
            &est,
            endpoint,
            &der,
            &csr_body("payments.devices.example.com"),
        )
        .await;
        assert_eq!(status, 403, "{endpoint}: {text}");
        assert!(text.contains("may not enroll"), "{endpoint}: {text}");
    }
    assert_eq!(before, certificate_total(rig).await);
    assert_chain_valid(rig).await;
    let log = rig
        .op("get_audit_log", json!({ "action": "enroll_certificate" }))
        .await;
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "denied" && e["actor"].as_str().unwrap().starts_with("mtls:")),
        "the refusal is audited as denied: {log}"
    );
}

async fn a_profile_may_let_client_certificates_enroll_new_names(rig: &Rig) {
    let est = est(rig).await;
    let id = holder(rig, &est, "gateway.devices.example.com").await;
    let der = der_of(rig, &id).await;
    rig.op(
        "save_profile",
        json!({
            "id": est.profile_id,
            "name": "devices",
            "keygen_mode": "server",
            "ekus": ["server_auth", "client_auth"],
            "san_rules": { "allowed_dns_suffixes": ["devices.example.com"] },
            "allow_client_certificate_new_names": true
        }),
    )
    .await;
    let (status, text) = post(
        rig,
        &est,
        "simpleenroll",
        &der,
        &csr_body("sensor7.devices.example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK.as_u16(), "{text}");
    // The flag widens names, not credentials: a revoked certificate stays refused.
    revoke(rig, &id).await;
    let (status, text) = post(
        rig,
        &est,
        "simpleenroll",
        &der,
        &csr_body("sensor8.devices.example.com"),
    )
    .await;
    assert_eq!(status, 403, "{text}");
}

async fn a_client_certificate_principal_may_only_enroll(rig: &Rig) {
    let est = est(rig).await;
    let id = holder(rig, &est, "kiosk.devices.example.com").await;
    let der = der_of(rig, &id).await;
    let principal = rig
        .engine
        .authenticate_client_certificate(&der)
        .await
        .expect("a current certificate authenticates");
    assert!(principal.client_certificate_version().is_some());
    let err = certctl_engine::ops::find("list_certificates")
        .unwrap()
        .call_json(&rig.engine, &principal, json!({}))
        .await
        .expect_err("a client certificate only enrolls");
    assert!(
        matches!(err, certctl_engine::Error::Forbidden(_)),
        "{err:?}"
    );
    // Revoked after authentication: the enrollment's own check refuses it.
    revoke(rig, &id).await;
    let err = rig
        .engine
        .call::<certctl_engine::ops::EnrollCertificate>(
            &principal,
            certctl_engine::ops::EnrollCertificateInput {
                csr_pem: csr_body("kiosk.devices.example.com"),
                issuer_id: None,
                profile_id: Some(est.profile_id.clone()),
                environment: None,
                labels: Default::default(),
                server_keygen: false,
            },
        )
        .await
        .expect_err("revoked since authentication");
    assert!(
        matches!(&err, certctl_engine::Error::Forbidden(m) if m.contains("revoked")),
        "{err:?}"
    );
    assert_chain_valid(rig).await;
}
