//! Issuance from CSRs by the local CA and by an imported sub-CA, checked
//! with OpenSSL; profile rules; server-side key generation.

use std::process::Command;

use certctl_engine::Error;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeyAlgorithm, KeygenMode, Role};
use certctl_engine::ops::{self, Outcome};
use x509_parser::prelude::*;

use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    csr_issuance_verifies_with_openssl,
    sub_ca_chains_to_imported_root,
    profile_refuses_bad_requests_and_leaves_nothing,
    server_keygen_needs_profile_and_config,
);

fn openssl_verify(root: &str, intermediates: &str, leaf: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("root.pem"), root).expect("write");
    std::fs::write(p("inter.pem"), intermediates).expect("write");
    std::fs::write(p("leaf.pem"), leaf).expect("write");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(p("root.pem"))
        .arg("-untrusted")
        .arg(p("inter.pem"))
        .arg(p("leaf.pem"))
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.contains(": OK"), text)
}

async fn csr_issuance_verifies_with_openssl(h: &Harness) {
    let c = h
        .create_cert("api.example.com", &["www.example.com", "192.0.2.10"])
        .await;
    let key_csr = csr(
        KeyAlgorithm::EcdsaP384,
        "api.example.com",
        &["api.example.com", "www.example.com"],
    );
    let ttl = 60 * 86400;
    let out = h
        .done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(key_csr),
                ttl_seconds: Some(ttl),
            },
        )
        .await;
    let issuer = h
        .get::<certctl_engine::domain::Issuer>(&h.admin(), "issuer", "iss-local")
        .await;
    let root = issuer.ca_chain_pem.expect("chain");
    let inter = issuer.ca_cert_pem.expect("ca cert");
    let (ok, text) = openssl_verify(
        &root,
        &inter,
        &out.version.as_ref().expect("version").cert_pem,
    );
    assert!(ok, "openssl verify failed: {text}");
    // The stored chain is what a server needs to send.
    let (ok, text) = openssl_verify(
        &root,
        &out.version.as_ref().expect("version").chain_pem,
        &out.version.as_ref().expect("version").cert_pem,
    );
    assert!(ok, "chain_pem does not verify: {text}");

    let der = ::pem::parse(&out.version.as_ref().expect("version").cert_pem)
        .expect("pem")
        .into_contents();
    let (_, x) = X509Certificate::from_der(&der).expect("parse leaf");
    let san = x
        .subject_alternative_name()
        .expect("ext")
        .expect("san present");
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) => format!("ip:{b:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert!(names.contains(&"api.example.com".to_owned()), "{names:?}");
    assert!(names.contains(&"www.example.com".to_owned()), "{names:?}");
    assert!(
        names.contains(&"ip:[192, 0, 2, 10]".to_owned()),
        "{names:?}"
    );
    let eku = x.extended_key_usage().expect("ext").expect("eku present");
    assert!(eku.value.server_auth);
    let nb = x.validity().not_before.timestamp();
    let na = x.validity().not_after.timestamp();
    assert_eq!(
        na,
        h.clock_now() + ttl,
        "validity follows the requested ttl"
    );
    assert!(nb <= h.clock_now());
    assert_eq!(
        out.version.as_ref().expect("version").key_algorithm,
        KeyAlgorithm::EcdsaP384
    );
    assert_eq!(out.certificate.status.as_str(), "valid");
    assert_eq!(
        out.certificate.serial.as_deref(),
        Some(out.version.as_ref().expect("version").serial.as_str())
    );
}

impl Harness {
    pub fn clock_now(&self) -> i64 {
        use certctl_engine::clock::Clock;
        self.clock.now()
    }
}

/// An "enterprise" root and an intermediate it signed, as ADCS would hand over.
fn external_root_and_sub_ca() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let mut rp = CertificateParams::new(Vec::<String>::new()).expect("params");
    rp.distinguished_name
        .push(DnType::CommonName, "Example Corp Root CA");
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = rcgen::CertifiedIssuer::self_signed(rp, root_key).expect("root");

    let sub_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut sp = CertificateParams::new(Vec::<String>::new()).expect("params");
    sp.distinguished_name
        .push(DnType::CommonName, "Example Corp certctl Sub CA");
    sp.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    sp.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    sp.use_authority_key_identifier_extension = true;
    let sub = sp.signed_by(&sub_key, &root).expect("sub");
    (root.pem(), sub.pem(), sub_key.serialize_pem())
}

async fn sub_ca_chains_to_imported_root(h: &Harness) {
    let (root_pem, sub_pem, sub_key) = external_root_and_sub_ca();
    let issuer = h
        .done::<ops::CreateIssuer>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "Example Corp sub-CA",
                "kind": "local_sub_ca",
                "ca_cert_pem": sub_pem,
                "ca_chain_pem": root_pem,
                "ca_key_pem": sub_key,
            }))
            .expect("input"),
        )
        .await;
    assert!(issuer.id.starts_with("iss-"));
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "intranet.example.com",
                "issuer_id": issuer.id,
            }))
            .expect("input"),
        )
        .await;
    let out = h
        .done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id,
                csr_pem: Some(csr(KeyAlgorithm::Rsa2048, "intranet.example.com", &[])),
                ttl_seconds: None,
            },
        )
        .await;
    let (ok, text) = openssl_verify(
        &root_pem,
        &sub_pem,
        &out.version.as_ref().expect("version").cert_pem,
    );
    assert!(ok, "leaf does not chain to the imported root: {text}");
    // Without a ttl the profile's default validity applies (47 days).
    assert_eq!(
        out.version.as_ref().expect("version").not_after,
        h.clock_now() + 47 * 86400
    );
    assert_eq!(
        out.version.as_ref().expect("version").key_algorithm,
        KeyAlgorithm::Rsa2048
    );
    // The CA key is never shown.
    let shown = serde_json::to_string(&issuer).expect("json");
    assert!(!shown.contains("PRIVATE KEY") && !shown.contains(&sub_key[30..60]));

    // A key that does not match the certificate is refused, and nothing is created.
    let (_, other_sub, _) = external_root_and_sub_ca();
    let err = h
        .call::<ops::CreateIssuer>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "mismatched",
                "kind": "local_sub_ca",
                "ca_cert_pem": other_sub,
                "ca_chain_pem": root_pem,
                "ca_key_pem": sub_key,
            }))
            .expect("input"),
        )
        .await
        .expect_err("mismatched key refused");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    let issuers = h
        .done::<ops::ListIssuers>(&h.admin(), Default::default())
        .await;
    assert!(issuers.data.iter().all(|i| i.name != "mismatched"));
}

async fn profile_refuses_bad_requests_and_leaves_nothing(h: &Harness) {
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "strict",
                "allowed_key_types": ["ecdsa-p256"],
                "max_ttl_seconds": 7 * 86400,
                "san_rules": { "allowed_dns_suffixes": ["example.com"], "allow_wildcards": false,
                               "allow_ip_addresses": false, "allow_emails": false, "max_names": 5 }
            }))
            .expect("input"),
        )
        .await;
    // Names outside the profile's rules are refused at creation.
    let err = h
        .call::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "evilexample.com", "profile_id": profile.id,
            }))
            .expect("input"),
        )
        .await
        .expect_err("suffix rule");
    assert!(
        matches!(err, Error::PolicyViolation(ref m) if m.contains("evilexample.com")),
        "{err:?}"
    );

    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "app.example.com", "profile_id": profile.id,
            }))
            .expect("input"),
        )
        .await;
    let issue = |csr_pem: Option<String>, ttl: Option<i64>| ops::IssueCertificateInput {
        id: c.id.clone(),
        csr_pem,
        ttl_seconds: ttl,
    };
    // Wrong key type.
    let err = h
        .call::<ops::IssueCertificate>(
            &h.admin(),
            issue(
                Some(csr(
                    KeyAlgorithm::Rsa2048,
                    "app.example.com",
                    &["app.example.com"],
                )),
                None,
            ),
        )
        .await
        .expect_err("rsa refused");
    assert!(
        matches!(err, Error::PolicyViolation(ref m) if m.contains("rsa-2048")),
        "{err:?}"
    );
    // A CSR naming a host the certificate does not have.
    let err = h
        .call::<ops::IssueCertificate>(
            &h.admin(),
            issue(
                Some(csr(KeyAlgorithm::EcdsaP256, "x", &["other.example.com"])),
                None,
            ),
        )
        .await
        .expect_err("foreign name refused");
    assert!(
        matches!(err, Error::PolicyViolation(ref m) if m.contains("other.example.com")),
        "{err:?}"
    );
    // Too long.
    let err = h
        .call::<ops::IssueCertificate>(
            &h.admin(),
            issue(
                Some(csr(KeyAlgorithm::EcdsaP256, "app.example.com", &[])),
                Some(30 * 86400),
            ),
        )
        .await
        .expect_err("ttl refused");
    assert!(matches!(err, Error::PolicyViolation(_)), "{err:?}");
    // Malformed CSRs.
    for bad in [
        "not a csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "",
    ] {
        let err = h
            .call::<ops::IssueCertificate>(&h.admin(), issue(Some(bad.to_owned()), None))
            .await
            .expect_err("malformed refused");
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err:?}");
    }
    // A CSR whose signature was tampered with.
    let good = csr(KeyAlgorithm::EcdsaP256, "app.example.com", &[]);
    let mut der = ::pem::parse(&good).expect("pem").into_contents();
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let tampered = ::pem::encode(&::pem::Pem::new("CERTIFICATE REQUEST", der));
    let err = h
        .call::<ops::IssueCertificate>(&h.admin(), issue(Some(tampered), None))
        .await
        .expect_err("tampered refused");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    // Nothing half-written: no version, still pending; every refusal audited.
    let details = h
        .done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: c.id.clone() })
        .await;
    assert!(details.versions.is_empty());
    assert_eq!(details.certificate.status.as_str(), "pending");
    let failures = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, o, _)| a == "issue_certificate" && o == "failure")
        .count();
    assert_eq!(failures, 7);
}

async fn server_keygen_needs_profile_and_config(h: &Harness) {
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "demo-server-keys", "keygen_mode": "server",
                "allowed_key_types": ["ecdsa-p256"],
            }))
            .expect("input"),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "kiosk.example.com", "profile_id": profile.id,
            }))
            .expect("input"),
        )
        .await;
    let input = || ops::IssueCertificateInput {
        id: c.id.clone(),
        csr_pem: None,
        ttl_seconds: None,
    };
    // The installation runs with CERTCTL_KEYGEN_MODE=agent: refused.
    let err = h
        .call::<ops::IssueCertificate>(&h.admin(), input())
        .await
        .expect_err("refused in agent mode");
    assert!(
        matches!(err, Error::PolicyViolation(ref m) if m.contains("CERTCTL_KEYGEN_MODE")),
        "{err:?}"
    );
    // Default profile (agent keys): a CSR is required whatever the config.
    let other = h.create_cert("web.example.com", &[]).await;
    let server_engine = Harness::engine_on(
        &h.db,
        &h.clock,
        EngineConfig {
            keygen_mode: KeygenMode::Server,
            ..Default::default()
        },
        &h.master,
    )
    .await;
    let admin = principal("pr-admin-2", Role::Admin);
    let err = server_engine
        .call::<ops::IssueCertificate>(
            &admin,
            ops::IssueCertificateInput {
                id: other.id,
                csr_pem: None,
                ttl_seconds: None,
            },
        )
        .await
        .expect_err("agent profile needs a CSR");
    assert!(matches!(err, Error::PolicyViolation(_)), "{err:?}");
    // Both allow it: issued, and the control plane holds the key.
    let out = server_engine
        .call::<ops::IssueCertificate>(&admin, input())
        .await
        .expect("issued");
    let Outcome::Completed { result } = out else {
        panic!("gated")
    };
    assert!(result.version.as_ref().expect("version").has_private_key);
    server_engine.store().close().await;
}
