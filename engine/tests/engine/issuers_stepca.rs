//! The step-ca issuer against a double of step-ca's documented API (no
//! step-ca binary can be installed here): HTTPS with a root, intermediate
//! and server certificate; `GET /root/{sha256}`; `GET /provisioners`; and
//! `POST /1.0/sign`, which, as step-ca does, verifies the one-time token's
//! ES256 signature against the JWK provisioner's public key (with an
//! independent JWT library), checks its audience, issuer, expiry, replay and
//! names, then signs the CSR with rcgen.

use certctl_engine::domain::{Issuer, JobStatus, KeyAlgorithm};
use certctl_engine::ops;

use super::stepca_double::{StepCaDouble, p256};
use super::support::{Harness, csr, run_jobs, sh};
use crate::backend_tests;

backend_tests!(
    stepca_issues_with_a_pinned_root_and_a_jwk_token,
    stepca_wrong_provisioner_key_is_a_clear_error,
    stepca_root_fingerprint_is_pinned,
);

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
        .get::<certctl_engine::domain::Job>(&h.admin(), "job", &out.job.expect("job").id)
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
