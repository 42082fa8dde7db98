//! Importing certificates issued by a CA certctl does not manage.

use certctl_engine::Error;
use certctl_engine::domain::{EffectiveStatus, IssuerKind, KeyAlgorithm};
use certctl_engine::ops::{self, ImportOutcome};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};

use super::support::{Harness, csr};
use crate::backend_tests;

backend_tests!(import_is_idempotent_and_external, bad_bundles_leave_nothing);

/// An outside CA and `n` leaves it signed with serials 1, 2, 3... (as old
/// in-house CAs do), as one PEM bundle: each leaf followed by the CA
/// certificate, as servers usually keep them.
fn outside_bundle(n: usize) -> (String, Vec<String>) {
    outside_bundle_from("Outside Issuing CA", "legacy", n)
}

fn outside_bundle_from(ca_name: &str, prefix: &str, n: usize) -> (String, Vec<String>) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let mut bundle = String::from("# exported from an old load balancer\n");
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}{i}.example.com");
        let mut p = CertificateParams::new(vec![name.clone()]).expect("params");
        p.serial_number = Some(SerialNumber::from(i as u64 + 1));
        p.distinguished_name.push(DnType::CommonName, name.clone());
        let key = KeyPair::generate().expect("key");
        let leaf = p.signed_by(&key, &issuer).expect("leaf");
        bundle.push_str(&leaf.pem());
        bundle.push_str(&ca_cert.pem());
        names.push(name);
    }
    (bundle, names)
}

fn import(pem: &str) -> ops::ImportCertificatesInput {
    serde_json::from_value(serde_json::json!({ "pem": pem, "environment": "legacy" }))
        .expect("input")
}

async fn certificate_count(h: &Harness) -> usize {
    h.done::<ops::ListCertificates>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({ "per_page": 1000 })).expect("list"),
    )
    .await
    .data
    .len()
}

async fn import_is_idempotent_and_external(h: &Harness) {
    let (bundle, names) = outside_bundle(3);
    let report = h
        .done::<ops::ImportCertificates>(&h.admin(), import(&bundle))
        .await;
    assert_eq!(
        (report.imported, report.existing, report.skipped),
        (3, 0, 0)
    );
    let first_ids: Vec<String> = report
        .items
        .iter()
        .map(|i| i.certificate_id.clone().expect("id"))
        .collect();

    // Each is managed, valid, recorded as issued by its outside CA (an
    // issuer of kind External), with its chain.
    let issuers = h
        .done::<ops::ListIssuers>(&h.admin(), Default::default())
        .await;
    let outside: Vec<_> = issuers
        .data
        .iter()
        .filter(|i| i.kind == IssuerKind::External)
        .collect();
    assert_eq!(outside.len(), 1, "{issuers:?}");
    let outside_id = outside[0].id.clone();
    assert!(outside_id.starts_with(ops::EXTERNAL_ISSUER_PREFIX));
    assert!(
        outside[0].name.contains("Outside Issuing CA"),
        "{}",
        outside[0].name
    );
    for (id, name) in first_ids.iter().zip(&names) {
        let details = h
            .done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: id.clone() })
            .await;
        let c = &details.certificate;
        assert_eq!(&c.common_name, name);
        assert_eq!(c.status, EffectiveStatus::Valid);
        assert_eq!(c.issuer_id, outside_id);
        assert_eq!(c.environment, "legacy");
        let v = &details.versions[0];
        assert_eq!(v.issuer_id, outside_id);
        assert!(v.chain_pem.contains("BEGIN CERTIFICATE"), "chain kept");
        assert!(!v.has_private_key);
    }
    // Re-running changes nothing and names the same certificates.
    let again = h
        .done::<ops::ImportCertificates>(&h.admin(), import(&bundle))
        .await;
    assert_eq!((again.imported, again.existing, again.skipped), (0, 3, 0));
    let again_ids: Vec<String> = again
        .items
        .iter()
        .map(|i| i.certificate_id.clone().expect("id"))
        .collect();
    assert_eq!(again_ids, first_ids);
    assert!(
        again
            .items
            .iter()
            .all(|i| i.outcome == ImportOutcome::Exists)
    );
    assert_eq!(certificate_count(h).await, 3);

    // Nothing is issued from the external issuer: renewal asks for a real one.
    let id = first_ids[0].clone();
    let err = h
        .call::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, &names[0], &[&names[0]])),
            },
        )
        .await
        .expect_err("external issuer cannot issue");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains("imported"), "{err}");
    let err = h
        .call::<ops::UpdateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": id, "issuer_id": outside_id }))
                .expect("input"),
        )
        .await
        .expect_err("cannot move to the external issuer");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    // Once moved to the local CA it renews from there.
    h.done::<ops::UpdateCertificate>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({ "id": id, "issuer_id": "iss-local" }))
            .expect("input"),
    )
    .await;
    let renewed = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, &names[0], &[&names[0]])),
            },
        )
        .await;
    let version = renewed.version.expect("issued now");
    assert_eq!(version.issuer_id, "iss-local");

    // Another outside CA that also numbers its certificates 1, 2, 3: its
    // serials do not collide with the first CA's.
    let (other, _) = outside_bundle_from("Other Corp CA", "other", 3);
    let report = h
        .done::<ops::ImportCertificates>(&h.admin(), import(&other))
        .await;
    assert_eq!((report.imported, report.skipped), (3, 0), "{report:?}");
    assert_eq!(certificate_count(h).await, 6);
}

async fn bad_bundles_leave_nothing(h: &Harness) {
    let (bundle, _) = outside_bundle(1);
    let key = KeyPair::generate().expect("key").serialize_pem();
    let ca_only = bundle
        .split_inclusive("-----END CERTIFICATE-----\n")
        .nth(1)
        .expect("ca block")
        .to_owned();
    for (what, pem) in [
        ("a private key", format!("{bundle}{key}")),
        (
            "garbage",
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_owned(),
        ),
        ("no certificate", "hello".to_owned()),
        ("only a CA", ca_only),
        ("a truncated block", bundle[..bundle.len() - 40].to_owned()),
    ] {
        let err = h
            .call::<ops::ImportCertificates>(&h.admin(), import(&pem))
            .await
            .expect_err(what);
        assert!(matches!(err, Error::InvalidInput(_)), "{what}: {err:?}");
    }
    assert_eq!(certificate_count(h).await, 0);
    // A viewer may not import.
    let viewer = super::support::principal("pr-viewer", certctl_engine::domain::Role::Viewer);
    let err = h
        .call::<ops::ImportCertificates>(&viewer, import(&bundle))
        .await
        .expect_err("viewer");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(certificate_count(h).await, 0);
}
