//! Revocation (single and bulk, through the gate), CRLs and OCSP responses
//! checked with the real `openssl`, and export (PEM, DER, PKCS#12 links).

use std::path::Path;
use std::process::Command;

use certctl_engine::Error;
use certctl_engine::bootstrap::LOCAL_ISSUER_ID;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeygenMode, RevocationReason, Role};
use certctl_engine::ops::{self, Outcome};

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    crl_follows_revocations_and_openssl_checks_it,
    ocsp_answers_good_revoked_unknown_with_nonce,
    bulk_revocation_by_filter_is_gated_and_skips,
    short_lived_and_unissued_are_not_revoked,
    export_formats_and_single_use_links,
);

/// Revokes through the gate: the requester confirms in chat, as the default
/// policy allows for destructive operations.
pub async fn revoke_now(h: &Harness, id: &str, reason: RevocationReason) {
    let out = h
        .call::<ops::RevokeCertificate>(
            &h.admin(),
            ops::RevokeCertificateInput {
                id: id.to_owned(),
                reason,
            },
        )
        .await
        .expect("revoke");
    let Outcome::ApprovalRequired(t) = out else {
        panic!("revocation must pass the approval gate")
    };
    h.engine
        .confirm_in_chat(&h.admin(), &t.approval_id)
        .await
        .expect("confirm")
        .completed()
        .expect("completed");
}

pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Writes the local CA's issuing certificate and root into `dir`.
async fn write_ca(h: &Harness, dir: &Path) {
    let issuer = h
        .get::<certctl_engine::domain::Issuer>(&h.admin(), "issuer", LOCAL_ISSUER_ID)
        .await;
    std::fs::write(dir.join("issuing.pem"), issuer.ca_cert_pem.unwrap()).unwrap();
    std::fs::write(dir.join("root.pem"), issuer.ca_chain_pem.unwrap()).unwrap();
}

async fn write_crl(h: &Harness, dir: &Path) -> i64 {
    let crl = h.engine.crl(LOCAL_ISSUER_ID).await.expect("crl");
    std::fs::write(dir.join("crl.der"), crl.der.as_slice()).unwrap();
    let (ok, out) = openssl(
        dir,
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    assert!(ok, "openssl crl: {out}");
    crl.number
}

fn verify_with_crl(dir: &Path, leaf: &str) -> (bool, String) {
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    openssl(
        dir,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "-CRLfile",
            "crl.pem",
            "leaf.pem",
        ],
    )
}

async fn crl_follows_revocations_and_openssl_checks_it(h: &Harness) {
    let dir = tempfile::tempdir().unwrap();
    write_ca(h, dir.path()).await;
    let a = h.issued_cert("a.example.com").await;
    let b = h.issued_cert("b.example.com").await;

    let n1 = write_crl(h, dir.path()).await;
    let (ok, out) = openssl(
        dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(ok && out.contains("No Revoked Certificates"), "{out}");
    assert!(
        out.contains("X509v3 CRL Number") && out.contains("Next Update"),
        "{out}"
    );
    let (ok, out) = verify_with_crl(dir.path(), &a.version.as_ref().expect("version").cert_pem);
    assert!(ok && out.contains(": OK"), "good before revocation: {out}");
    // Unchanged inventory: the same CRL is served, not re-signed.
    assert_eq!(h.engine.crl(LOCAL_ISSUER_ID).await.unwrap().number, n1);

    revoke_now(h, &a.certificate.id, RevocationReason::KeyCompromise).await;
    let n2 = write_crl(h, dir.path()).await;
    assert!(n2 > n1, "a revocation makes a new CRL ({n1} -> {n2})");
    let (ok, out) = openssl(
        dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(ok, "{out}");
    assert!(
        out.to_ascii_uppercase().contains(
            &a.version
                .as_ref()
                .expect("version")
                .serial
                .to_ascii_uppercase()
        ),
        "the CRL lists the serial {}: {out}",
        a.version.as_ref().expect("version").serial
    );
    assert!(out.contains("Key Compromise"), "{out}");
    let (ok, out) = verify_with_crl(dir.path(), &a.version.as_ref().expect("version").cert_pem);
    assert!(!ok && out.contains("revoked"), "revoked is rejected: {out}");
    let (ok, out) = verify_with_crl(dir.path(), &b.version.as_ref().expect("version").cert_pem);
    assert!(ok, "the other certificate still verifies: {out}");

    // Revoking again is a conflict, and changes nothing.
    let out = h
        .call::<ops::RevokeCertificate>(
            &h.admin(),
            ops::RevokeCertificateInput {
                id: a.certificate.id.clone(),
                reason: RevocationReason::Superseded,
            },
        )
        .await
        .expect("gated");
    let Outcome::ApprovalRequired(t) = out else {
        panic!("gated")
    };
    let err = h
        .engine
        .confirm_in_chat(&h.admin(), &t.approval_id)
        .await
        .expect_err("already revoked");
    assert!(
        matches!(err, Error::Conflict(ref m) if m.contains("already revoked")),
        "{err:?}"
    );
    assert_eq!(h.engine.crl(LOCAL_ISSUER_ID).await.unwrap().number, n2);

    // The scheduler's loop keeps it current too.
    assert_eq!(h.engine.refresh_revocation_data().await.unwrap(), 1);
}

async fn ocsp_answers_good_revoked_unknown_with_nonce(h: &Harness) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ca(h, d).await;
    let a = h.issued_cert("ocsp.example.com").await;
    std::fs::write(
        d.join("leaf.pem"),
        &a.version.as_ref().expect("version").cert_pem,
    )
    .unwrap();

    let ask = |nonce: bool| {
        let mut args = vec![
            "ocsp",
            "-issuer",
            "issuing.pem",
            "-cert",
            "leaf.pem",
            "-reqout",
            "req.der",
        ];
        args.push(if nonce { "-nonce" } else { "-no_nonce" });
        let (ok, out) = openssl(d, &args);
        assert!(ok, "{out}");
        std::fs::read(d.join("req.der")).unwrap()
    };
    let check = |resp: &[u8]| {
        std::fs::write(d.join("resp.der"), resp).unwrap();
        openssl(
            d,
            &[
                "ocsp",
                "-reqin",
                "req.der",
                "-respin",
                "resp.der",
                "-issuer",
                "issuing.pem",
                "-CAfile",
                "root.pem",
                "-resp_text",
            ],
        )
    };

    let resp = h.engine.ocsp_response(LOCAL_ISSUER_ID, &ask(false)).await;
    let (ok, out) = check(&resp);
    assert!(ok && out.contains(": good"), "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    // Cached: the same bytes again.
    assert_eq!(
        h.engine.ocsp_response(LOCAL_ISSUER_ID, &ask(false)).await,
        resp
    );

    let with_nonce = h.engine.ocsp_response(LOCAL_ISSUER_ID, &ask(true)).await;
    let (ok, out) = check(&with_nonce);
    assert!(
        ok && out.contains("OCSP Nonce"),
        "the nonce is echoed: {out}"
    );
    assert!(!out.contains("Nonce Verify error"), "{out}");

    revoke_now(h, &a.certificate.id, RevocationReason::Superseded).await;
    let resp = h.engine.ocsp_response(LOCAL_ISSUER_ID, &ask(false)).await;
    let (ok, out) = check(&resp);
    assert!(ok && out.contains(": revoked"), "{out}");
    assert!(out.contains("Reason: superseded"), "{out}");

    // A serial this issuer never issued: unknown.
    let by_serial = h
        .engine
        .ocsp_response_for_serial(LOCAL_ISSUER_ID, "0123456789abcdef")
        .await
        .expect("response");
    std::fs::write(d.join("resp.der"), &by_serial).unwrap();
    let (ok, out) = openssl(
        d,
        &["ocsp", "-respin", "resp.der", "-resp_text", "-noverify"],
    );
    assert!(ok && out.contains("Cert Status: unknown"), "{out}");

    // Garbage is a malformedRequest response, not an error.
    let bad = h.engine.ocsp_response(LOCAL_ISSUER_ID, b"not der").await;
    assert_eq!(bad, vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
    // Another issuer's id: unauthorized.
    let other = h.engine.ocsp_response("iss-nope", &ask(false)).await;
    assert_eq!(other, vec![0x30, 0x03, 0x0a, 0x01, 0x06]);
}

async fn bulk_revocation_by_filter_is_gated_and_skips(h: &Harness) {
    let mut staging = Vec::new();
    for i in 0..3 {
        let c = h
            .done::<ops::CreateCertificate>(
                &h.admin(),
                serde_json::from_value(serde_json::json!({
                    "common_name": format!("s{i}.example.com"), "environment": "staging",
                }))
                .unwrap(),
            )
            .await;
        h.done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(super::support::csr(
                    certctl_engine::domain::KeyAlgorithm::EcdsaP256,
                    &c.common_name,
                    &[&c.common_name],
                )),
                ttl_seconds: None,
            },
        )
        .await;
        staging.push(c.id);
    }
    let prod = h.issued_cert("prod.example.com").await;
    let pending = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "later.example.com", "environment": "staging",
            }))
            .unwrap(),
        )
        .await;

    // No filter at all is refused.
    let err = h
        .call::<ops::BulkCertificates>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "action": "revoke" })).unwrap(),
        )
        .await
        .expect_err("needs a filter");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    let input: ops::BulkCertificatesInput = serde_json::from_value(serde_json::json!({
        "action": "revoke", "filter": { "environment": "staging" }, "reason": "cessationOfOperation",
    }))
    .unwrap();
    let operator = principal("pr-op", Role::Operator);
    let out = h
        .call::<ops::BulkCertificates>(&operator, input.clone())
        .await
        .expect("gated");
    let Outcome::ApprovalRequired(t) = out else {
        panic!("bulk revocation must be gated")
    };
    assert!(
        t.summary.contains("Revoke 4 certificate(s)"),
        "{}",
        t.summary
    );
    let approver = principal("pr-approver", Role::Approver);
    let decided = h
        .done::<ops::ApproveRequest>(
            &approver,
            serde_json::from_value(serde_json::json!({ "approval_id": t.approval_id })).unwrap(),
        )
        .await;
    let result: ops::BulkRevokeOutput =
        serde_json::from_value(decided.approval.result.clone().expect("executed")).expect("output");
    let mut revoked = result.revoked.clone();
    revoked.sort();
    let mut want = staging.clone();
    want.sort();
    assert_eq!(revoked, want);
    assert_eq!(result.skipped.len(), 1);
    assert_eq!(result.skipped[0].id, pending.id);

    let crl = h.engine.crl(LOCAL_ISSUER_ID).await.unwrap();
    assert_eq!(crl.entries, 3);
    let c = h
        .done::<ops::GetCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": prod.certificate.id })).unwrap(),
        )
        .await;
    assert_eq!(c.certificate.status.as_str(), "valid");
}

async fn short_lived_and_unissued_are_not_revoked(h: &Harness) {
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "short", "short_lived": true, "default_ttl_seconds": 3600,
                "max_ttl_seconds": 86400,
            }))
            .unwrap(),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "short.example.com", "profile_id": profile.id,
            }))
            .unwrap(),
        )
        .await;
    let pending = h.create_cert("pending.example.com", &[]).await;
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: c.id.clone(),
            csr_pem: Some(super::support::csr(
                certctl_engine::domain::KeyAlgorithm::EcdsaP256,
                "short.example.com",
                &["short.example.com"],
            )),
            ttl_seconds: None,
        },
    )
    .await;
    for (id, want_policy) in [(&c.id, true), (&pending.id, false)] {
        let out = h
            .call::<ops::RevokeCertificate>(
                &h.admin(),
                ops::RevokeCertificateInput {
                    id: id.clone(),
                    reason: RevocationReason::Unspecified,
                },
            )
            .await
            .expect("gated");
        let Outcome::ApprovalRequired(t) = out else {
            panic!("gated")
        };
        let err = h
            .engine
            .confirm_in_chat(&h.admin(), &t.approval_id)
            .await
            .expect_err("refused");
        if want_policy {
            assert!(
                matches!(err, Error::PolicyViolation(ref m) if m.contains("short-lived")),
                "{err:?}"
            );
        } else {
            assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        }
    }
    assert_eq!(h.engine.crl(LOCAL_ISSUER_ID).await.unwrap().entries, 0);
}

async fn export_formats_and_single_use_links(h: &Harness) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = h.issued_cert("export.example.com").await;
    let pem = h
        .done::<ops::ExportCertificate>(
            &h.admin(),
            ops::ExportCertificateInput {
                id: a.certificate.id.clone(),
                format: ops::ExportFormat::Pem,
            },
        )
        .await;
    let text = pem.pem.expect("pem");
    assert_eq!(
        text.matches("BEGIN CERTIFICATE").count(),
        3,
        "leaf, issuing, root"
    );
    let der = h
        .done::<ops::ExportCertificate>(
            &h.admin(),
            ops::ExportCertificateInput {
                id: a.certificate.id.clone(),
                format: ops::ExportFormat::Der,
            },
        )
        .await;
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(der.der_base64.expect("der"))
        .unwrap();
    std::fs::write(d.join("c.der"), der).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "x509", "-inform", "DER", "-in", "c.der", "-noout", "-subject",
        ],
    );
    assert!(ok && out.contains("export.example.com"), "{out}");

    // PKCS#12 of a server-generated key, through a link, with openssl.
    let server = Harness::engine_on(
        &h.db,
        &h.clock,
        EngineConfig {
            keygen_mode: KeygenMode::Server,
            ..Default::default()
        },
        &h.master,
    )
    .await;
    let admin = h.admin();
    let profile = h
        .done::<ops::SaveProfile>(
            &admin,
            serde_json::from_value(serde_json::json!({
                "name": "kiosk-keys", "keygen_mode": "server", "allowed_key_types": ["ecdsa-p256"],
            }))
            .unwrap(),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &admin,
            serde_json::from_value(serde_json::json!({
                "common_name": "kiosk.example.com", "profile_id": profile.id,
            }))
            .unwrap(),
        )
        .await;
    server
        .call::<ops::IssueCertificate>(
            &admin,
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: None,
                ttl_seconds: None,
            },
        )
        .await
        .unwrap()
        .completed()
        .unwrap();
    let link = server
        .call::<ops::CreateExportLink>(
            &admin,
            ops::CreateExportLinkInput {
                id: c.id.clone(),
                format: ops::ExportFormat::Pkcs12,
            },
        )
        .await
        .unwrap()
        .completed()
        .unwrap();
    assert!(link.includes_private_key);
    assert!(link.url.starts_with("/api/v1/exports/"), "{}", link.url);
    let token = ops::export_token_of(&link.url);
    // A too-short password is refused without using the link up.
    let err = server
        .download_export(token, Some("short"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let p12 = server
        .download_export(token, Some("correct horse battery"))
        .await
        .expect("download");
    assert_eq!(p12.content_type, "application/x-pkcs12");
    std::fs::write(d.join("k.p12"), &p12.bytes).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "pkcs12",
            "-info",
            "-in",
            "k.p12",
            "-passin",
            "pass:correct horse battery",
            "-nodes",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("BEGIN PRIVATE KEY") && out.contains("kiosk.example.com"),
        "{out}"
    );
    assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 3, "{out}");
    let (ok, _) = openssl(
        d,
        &[
            "pkcs12",
            "-info",
            "-in",
            "k.p12",
            "-passin",
            "pass:wrong password",
            "-nodes",
        ],
    );
    assert!(!ok, "a wrong password does not open it");
    // Single use.
    let err = server
        .download_export(token, Some("correct horse battery"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let downloads = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "download_export")
        .count();
    assert_eq!(downloads, 1);
    server.store().close().await;
}
