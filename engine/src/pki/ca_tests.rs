//! Tests of the CA module: issuance checked with x509-parser and the
//! `openssl verify` CLI, sub-CA import and its refusals, sealed key round trips.

use std::path::Path;
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::*;
use crate::pki::csr::parse_csr;
use crate::pki::keygen::{csr_for, generate_key};

/// 2026-01-01T00:00:00Z. Fixed so the tests do not depend on the clock;
/// openssl is told the same time with `-attime`.
const NOW: i64 = 1_767_225_600;
const CTX: &str = "iss-test";
const CRL_URL: &str = "http://ca.example.com/crl/iss-test.crl";
const OCSP_URL: &str = "http://ca.example.com/ocsp";

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// Runs openssl in `dir`; returns (success, stdout + stderr).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl verify` of leaf.pem against root.pem with intermediate.pem untrusted.
fn openssl_verify(dir: &Path, at: i64) -> String {
    let at = at.to_string();
    let (ok, text) = openssl(
        dir,
        &[
            "verify",
            "-attime",
            &at,
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "leaf.pem",
        ],
    );
    assert!(
        ok && text.contains("leaf.pem: OK"),
        "openssl verify failed: {text}"
    );
    text
}

fn web_names() -> SubjectNames {
    SubjectNames {
        dns: vec!["www.example.com".into(), "example.com".into()],
        ips: vec!["192.0.2.10".parse().unwrap()],
        emails: vec![],
    }
}

fn leaf_request<'a>(
    csr: &'a crate::pki::ParsedCsr,
    ekus: &'a [ExtendedKeyUsage],
) -> LeafRequest<'a> {
    LeafRequest {
        spki_der: &csr.spki_der,
        key_algorithm: csr.key_algorithm,
        common_name: csr.common_name.as_deref().unwrap_or(""),
        names: &csr.names,
        not_before: NOW - 300,
        not_after: NOW + 30 * DAY,
        ekus,
        crl_distribution_url: Some(CRL_URL),
        ocsp_url: Some(OCSP_URL),
    }
}

#[test]
fn local_ca_issues_verifiable_leaves_for_all_key_algorithms() {
    let master = MasterKey::generate().unwrap();
    let material = create_local_ca(&master, "Example Corp", NOW, CTX).unwrap();
    let ca = SigningCa::load(&material, &master, CTX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "root.pem", &material.root_cert_pem);
    write(d, "intermediate.pem", &material.cert_pem);
    let ekus = [ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth];

    for alg in KeyAlgorithm::ALL {
        let key = generate_key(alg).unwrap();
        let csr = parse_csr(&csr_for(&key, "www.example.com", &web_names()).unwrap()).unwrap();
        let leaf = ca.issue(&leaf_request(&csr, &ekus)).unwrap();
        write(d, "leaf.pem", &leaf.cert_pem);
        openssl_verify(d, NOW);

        let cert = parse_x509(&leaf.cert_der, "leaf").unwrap();
        assert_eq!(
            cert.public_key().raw,
            csr.spki_der.as_slice(),
            "{alg}: SPKI differs from the CSR"
        );
        assert_eq!(unix(cert.validity().not_before), NOW - 300);
        assert_eq!(unix(cert.validity().not_after), NOW + 30 * DAY);
        assert_eq!(
            (leaf.not_before, leaf.not_after),
            (NOW - 300, NOW + 30 * DAY)
        );
        assert_eq!(cert.subject().to_string(), "CN=www.example.com");
        assert_eq!(
            cert.issuer().as_raw(),
            parse_x509(ca.cert_der(), "ca").unwrap().subject().as_raw()
        );

        let info = super::super::cert::parse_certificate_der(&leaf.cert_der).unwrap();
        assert_eq!(info.names, web_names(), "{alg}");
        assert_eq!(info.key_algorithm, Some(alg));
        assert!(!info.is_ca);
        assert_eq!(info.serial_hex, leaf.serial_hex);
        assert_eq!(info.fingerprint_sha256, leaf.fingerprint_sha256);
        assert_eq!(leaf.fingerprint_sha256, fingerprint_sha256(&leaf.cert_der));
        assert!(leaf.serial_hex.len() == 32 && !leaf.serial_hex.starts_with("00"));

        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth && !eku.code_signing);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_cert_sign());
        let is_rsa = matches!(
            alg,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
        );
        assert_eq!(ku.value.key_encipherment(), is_rsa, "{alg}");
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && !bc.value.ca);

        let mut ocsp = None;
        let mut has_aki = false;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::AuthorityInfoAccess(aia) => {
                    let desc = &aia.accessdescs[0];
                    assert_eq!(desc.access_method.to_id_string(), "1.3.6.1.5.5.7.48.1");
                    if let GeneralName::URI(uri) = desc.access_location {
                        ocsp = Some(uri.to_string());
                    }
                }
                ParsedExtension::AuthorityKeyIdentifier(_) => has_aki = true,
                _ => {}
            }
        }
        assert_eq!(ocsp.as_deref(), Some(OCSP_URL));
        assert!(has_aki);
    }

    // OpenSSL reads the AIA and CRL extensions the same way.
    let (ok, text) = openssl(d, &["x509", "-in", "leaf.pem", "-noout", "-ocsp_uri"]);
    assert!(ok && text.trim() == OCSP_URL, "{text}");
    let (ok, text) = openssl(
        d,
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-ext",
            "crlDistributionPoints",
        ],
    );
    assert!(ok && text.contains(&format!("URI:{CRL_URL}")), "{text}");
    assert_eq!(
        ca.chain_pem(),
        format!("{}{}", material.cert_pem, material.root_cert_pem)
    );
    assert_eq!(ca.root_pem(), material.root_cert_pem);
}

#[test]
fn local_ca_certificates_have_the_right_shape() {
    let master = MasterKey::generate().unwrap();
    let m = create_local_ca(&master, "Example Corp", NOW, CTX).unwrap();
    let root_der = certificate_ders(&m.root_cert_pem, "root")
        .unwrap()
        .remove(0);
    let int_der = certificate_ders(&m.cert_pem, "int").unwrap().remove(0);
    let root = parse_x509(&root_der, "root").unwrap();
    let int = parse_x509(&int_der, "int").unwrap();

    assert_eq!(
        root.subject().to_string(),
        "O=Example Corp, CN=Example Corp Root CA"
    );
    assert_eq!(
        int.subject().to_string(),
        "O=Example Corp, CN=Example Corp Issuing CA"
    );
    assert_eq!(m.subject, int.subject().to_string());
    assert_eq!(
        key_algorithm_of(root.public_key()).unwrap(),
        KeyAlgorithm::EcdsaP384
    );
    assert_eq!(
        key_algorithm_of(int.public_key()).unwrap(),
        KeyAlgorithm::EcdsaP256
    );
    assert_eq!(m.key_algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(unix(root.validity().not_before), NOW - 3600);
    assert_eq!(unix(root.validity().not_after), NOW + 3650 * DAY);
    assert_eq!((m.not_before, m.not_after), (NOW - 3600, NOW + 1825 * DAY));
    root.verify_signature(None).unwrap();
    int.verify_signature(Some(root.public_key())).unwrap();

    let rbc = root.basic_constraints().unwrap().unwrap();
    assert!(rbc.critical && rbc.value.ca && rbc.value.path_len_constraint.is_none());
    let rku = root.key_usage().unwrap().unwrap();
    assert!(
        rku.critical
            && rku.value.key_cert_sign()
            && rku.value.crl_sign()
            && !rku.value.digital_signature()
    );
    let ibc = int.basic_constraints().unwrap().unwrap();
    assert!(ibc.critical && ibc.value.ca && ibc.value.path_len_constraint == Some(0));
    let iku = int.key_usage().unwrap().unwrap().value;
    assert!(iku.key_cert_sign() && iku.crl_sign() && iku.digital_signature());

    // The intermediate's AKI is the root's SKI.
    let ski = |c: &X509Certificate<'_>| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
    };
    let aki = int
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    assert!(ski(&root).is_some() && ski(&int).is_some());
    assert_eq!(aki, ski(&root));
    // Serials are random, positive, 16 bytes.
    assert_ne!(root.raw_serial(), int.raw_serial());
    assert!(int.raw_serial().len() == 16 && int.raw_serial()[0] & 0x80 == 0);

    assert!(matches!(
        create_local_ca(&master, "  ", NOW, CTX),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        create_local_ca(&master, &"x".repeat(54), NOW, CTX),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn sealed_keys_round_trip_through_load() {
    let master = MasterKey::generate().unwrap();
    let m = create_local_ca(&master, "Example Corp", NOW, CTX).unwrap();
    assert!(!m.key_sealed.contains("PRIVATE"));
    // Survives storage as JSON.
    let stored: CaMaterial = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(stored, m);
    let ca = SigningCa::load(&stored, &master, CTX).unwrap();
    let int = certificate_ders(&m.cert_pem, "int").unwrap().remove(0);
    assert_eq!(ca.cert_der(), int.as_slice());

    // The root key opens under its own context and matches the root certificate.
    let root_key = master
        .open(
            m.root_key_sealed.as_deref().unwrap(),
            &format!("{CTX}/root"),
        )
        .unwrap();
    let root_pair = KeyPair::try_from(root_key.as_slice()).unwrap();
    let root_der = certificate_ders(&m.root_cert_pem, "root")
        .unwrap()
        .remove(0);
    let root = parse_x509(&root_der, "root").unwrap();
    assert_eq!(
        root_pair.der_bytes(),
        root.public_key().subject_public_key.data.as_ref()
    );

    // Wrong context, wrong master key, or the root key in the issuing slot: refused.
    assert!(matches!(
        SigningCa::load(&m, &master, "other"),
        Err(Error::InvalidInput(_))
    ));
    let other = MasterKey::generate().unwrap();
    assert!(matches!(
        SigningCa::load(&m, &other, CTX),
        Err(Error::InvalidInput(_))
    ));
    let mut swapped = m.clone();
    swapped.key_sealed = m.root_key_sealed.clone().unwrap();
    assert!(SigningCa::load(&swapped, &master, CTX).is_err());
}

#[test]
fn issue_refuses_bad_requests() {
    let master = MasterKey::generate().unwrap();
    let m = create_local_ca(&master, "Example Corp", NOW, CTX).unwrap();
    let ca = SigningCa::load(&m, &master, CTX).unwrap();
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = parse_csr(&csr_for(&key, "www.example.com", &web_names()).unwrap()).unwrap();
    let ekus = [ExtendedKeyUsage::ServerAuth];
    let good = leaf_request(&csr, &ekus);

    let too_long = LeafRequest {
        not_after: m.not_after + 1,
        ..good
    };
    assert!(matches!(
        ca.issue(&too_long),
        Err(Error::PolicyViolation(_))
    ));
    let backwards = LeafRequest {
        not_after: good.not_before,
        ..good
    };
    assert!(matches!(ca.issue(&backwards), Err(Error::InvalidInput(_))));
    let wrong_alg = LeafRequest {
        key_algorithm: KeyAlgorithm::EcdsaP384,
        ..good
    };
    assert!(
        matches!(ca.issue(&wrong_alg), Err(Error::InvalidInput(m)) if m.contains("ecdsa-p256"))
    );
    let garbage = LeafRequest {
        spki_der: b"not a key",
        ..good
    };
    assert!(matches!(ca.issue(&garbage), Err(Error::InvalidInput(_))));
    let bad_url = LeafRequest {
        ocsp_url: Some("http://a b"),
        ..good
    };
    assert!(matches!(ca.issue(&bad_url), Err(Error::InvalidInput(_))));
    // No URLs and no CN are fine.
    let bare = LeafRequest {
        crl_distribution_url: None,
        ocsp_url: None,
        common_name: "",
        ..good
    };
    let leaf = ca.issue(&bare).unwrap();
    let cert = parse_x509(&leaf.cert_der, "leaf").unwrap();
    assert!(cert.subject().as_raw().len() <= 2, "empty subject expected");
    // With an empty subject the SAN extension must be critical (RFC 5280 4.2.1.6).
    assert!(cert.subject_alternative_name().unwrap().unwrap().critical);
}

/// An external root (CN "Corp Root") and an intermediate under it, made with rcgen.
struct External {
    root_pem: String,
    root_issuer: Issuer<'static, KeyPair>,
}

fn external_root(cn: &str) -> External {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = ca_name("Corp", cn);
    p.not_before = datetime(NOW - 365 * DAY).unwrap();
    p.not_after = datetime(NOW + 3650 * DAY).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    External {
        root_pem: cert.pem(),
        root_issuer: Issuer::new(p, key),
    }
}

/// A certificate for `key` named `cn`, signed by `issuer`.
fn sub_cert(
    issuer: &Issuer<'_, KeyPair>,
    key: &KeyPair,
    cn: &str,
    ca: bool,
    until: i64,
) -> (String, CertificateParams) {
    let mut p = CertificateParams::default();
    p.distinguished_name = ca_name("Corp", cn);
    p.not_before = datetime(NOW - DAY).unwrap();
    p.not_after = datetime(until).unwrap();
    p.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    p.key_usages = if ca {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    p.use_authority_key_identifier_extension = true;
    (p.signed_by(key, issuer).unwrap().pem(), p)
}

/// Converts a PKCS#8 PEM key to the traditional (SEC1 / PKCS#1) PEM with openssl.
fn traditional_pem(dir: &Path, pkcs8: &str) -> String {
    write(dir, "pkcs8.pem", pkcs8);
    let (ok, text) = openssl(dir, &["pkey", "-in", "pkcs8.pem", "-traditional"]);
    assert!(ok, "{text}");
    text
}

fn issue_and_verify_under(
    material: &CaMaterial,
    master: &MasterKey,
    ext_root_pem: &str,
    dir: &Path,
) {
    let ca = SigningCa::load(material, master, CTX).unwrap();
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let csr = parse_csr(&csr_for(&key, "app.corp.example", &web_names()).unwrap()).unwrap();
    let leaf = ca
        .issue(&leaf_request(&csr, &[ExtendedKeyUsage::ServerAuth]))
        .unwrap();
    write(dir, "root.pem", ext_root_pem);
    // -untrusted gets everything below the root: the imported CA and any middle CAs.
    write(dir, "intermediate.pem", &leaf.chain_pem);
    write(dir, "leaf.pem", &leaf.cert_pem);
    openssl_verify(dir, NOW);
}

#[test]
fn imports_a_sub_ca_with_pkcs8_sec1_and_pkcs1_keys() {
    let master = MasterKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ext = external_root("Corp Root");

    for (alg, traditional_label) in [
        (&rcgen::PKCS_ECDSA_P384_SHA384, "EC PRIVATE KEY"),
        (&rcgen::PKCS_ECDSA_P256_SHA256, "EC PRIVATE KEY"),
        (&rcgen::PKCS_RSA_SHA256, "RSA PRIVATE KEY"),
    ] {
        let key = KeyPair::generate_for(alg).unwrap();
        let (cert_pem, _) = sub_cert(
            &ext.root_issuer,
            &key,
            "Corp Issuing CA",
            true,
            NOW + 365 * DAY,
        );
        let traditional = traditional_pem(d, &key.serialize_pem());
        assert!(traditional.contains(traditional_label), "{traditional}");
        for key_pem in [key.serialize_pem(), traditional] {
            let m = import_sub_ca(&master, &cert_pem, &ext.root_pem, &key_pem, NOW, CTX).unwrap();
            assert_eq!(m.root_key_sealed, None);
            assert_eq!(m.subject, "O=Corp, CN=Corp Issuing CA");
            assert_eq!(m.root_cert_pem.trim(), ext.root_pem.trim());
            issue_and_verify_under(&m, &master, &ext.root_pem, d);
        }
    }
}

#[test]
fn imports_a_sub_ca_under_a_two_level_chain() {
    let master = MasterKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ext = external_root("Corp Root");
    let policy_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let (policy_pem, policy_params) = sub_cert(
        &ext.root_issuer,
        &policy_key,
        "Corp Policy CA",
        true,
        NOW + 900 * DAY,
    );
    let policy_issuer = Issuer::new(policy_params, policy_key);
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let (cert_pem, _) = sub_cert(
        &policy_issuer,
        &key,
        "Corp Issuing CA",
        true,
        NOW + 365 * DAY,
    );

    let chain = format!("{policy_pem}{}", ext.root_pem);
    let m = import_sub_ca(&master, &cert_pem, &chain, &key.serialize_pem(), NOW, CTX).unwrap();
    assert_eq!(m.key_algorithm, KeyAlgorithm::Ed25519);
    issue_and_verify_under(&m, &master, &ext.root_pem, dir.path());

    // The chain without its root does not end at a self-signed certificate.
    let err = import_sub_ca(
        &master,
        &cert_pem,
        &policy_pem,
        &key.serialize_pem(),
        NOW,
        CTX,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("self-signed root")),
        "{err:?}"
    );
}

fn import_error(cert: &str, chain: &str, key: &str, now: i64) -> String {
    let master = MasterKey::generate().unwrap();
    match import_sub_ca(&master, cert, chain, key, now, CTX) {
        Err(Error::InvalidInput(m)) => m,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn sub_ca_import_refusals() {
    let ext = external_root("Corp Root");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key_pem = key.serialize_pem();
    let (cert_pem, _) = sub_cert(
        &ext.root_issuer,
        &key,
        "Corp Issuing CA",
        true,
        NOW + 365 * DAY,
    );

    let other_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let m = import_error(&cert_pem, &ext.root_pem, &other_key, NOW);
    assert!(m.contains("does not match"), "{m}");

    let (leaf_pem, _) = sub_cert(&ext.root_issuer, &key, "not a ca", false, NOW + 365 * DAY);
    let m = import_error(&leaf_pem, &ext.root_pem, &key_pem, NOW);
    assert!(m.contains("not a CA certificate"), "{m}");

    // Same root name, different key: the name matches but the signature does not.
    let impostor = external_root("Corp Root");
    let m = import_error(&cert_pem, &impostor.root_pem, &key_pem, NOW);
    assert!(m.contains("does not verify"), "{m}");
    // A different root altogether.
    let unrelated = external_root("Someone Else Root");
    let m = import_error(&cert_pem, &unrelated.root_pem, &key_pem, NOW);
    assert!(m.contains("is not the issuer"), "{m}");

    let m = import_error(&cert_pem, "", &key_pem, NOW);
    assert!(m.contains("chain is empty"), "{m}");
    let m = import_error(&cert_pem, &ext.root_pem, &key_pem, NOW + 400 * DAY);
    assert!(m.contains("not valid now"), "{m}");
    let m = import_error(
        &cert_pem,
        &ext.root_pem,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        NOW,
    );
    assert!(m.contains("encrypted"), "{m}");
    let m = import_error("garbage", &ext.root_pem, &key_pem, NOW);
    assert!(m.contains("CA certificate"), "{m}");
}

/// ADCS-style names repeat attribute types (DC=corp, DC=example). rcgen keeps
/// one value per type, so such a CA must be refused at import instead of
/// issuing leaves whose issuer name does not match it.
#[test]
fn sub_ca_with_repeated_name_attributes_is_refused_not_mis_issued() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ext = external_root("Corp Root");
    write(d, "root.pem", &ext.root_pem);
    write(d, "root.key", &ext.root_issuer.key().serialize_pem());
    write(
        d,
        "ext.cnf",
        "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    );
    let (ok, t) = openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "sub.key",
        ],
    );
    assert!(ok, "{t}");
    let (ok, t) = openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "sub.key",
            "-subj",
            "/DC=com/DC=example/CN=Sub CA",
            "-out",
            "sub.csr",
        ],
    );
    assert!(ok, "{t}");
    let (ok, t) = openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "sub.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-set_serial",
            "7",
            "-days",
            "36500",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3",
            "-out",
            "sub.pem",
        ],
    );
    assert!(ok, "{t}");
    let cert = std::fs::read_to_string(d.join("sub.pem")).unwrap();
    let key = std::fs::read_to_string(d.join("sub.key")).unwrap();
    // The openssl-made certificate starts now (real clock); import at a time inside it.
    let info = parse_certificate_pem(&cert).unwrap();
    let m = import_error(&cert, &ext.root_pem, &key, info.not_before + 60);
    assert!(m.contains("cannot be reproduced exactly"), "{m}");
}

#[test]
fn parse_certificate_pem_reads_a_ca_certificate() {
    let master = MasterKey::generate().unwrap();
    let m = create_local_ca(&master, "Example Corp", NOW, CTX).unwrap();
    let info = parse_certificate_pem(&format!("some text before\n{}", m.cert_pem)).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.subject_cn.as_deref(), Some("Example Corp Issuing CA"));
    assert_eq!(info.issuer_dn, "O=Example Corp, CN=Example Corp Root CA");
    assert_eq!(info.subject_dn, m.subject);
    assert_eq!(info.key_algorithm, Some(KeyAlgorithm::EcdsaP256));
    assert_eq!(
        (info.not_before, info.not_after),
        (m.not_before, m.not_after)
    );
    assert!(info.names.is_empty());
    assert_eq!(info.serial_hex.len(), 32);
    let root = parse_certificate_pem(&m.root_cert_pem).unwrap();
    assert!(root.is_ca);
    assert_eq!(root.key_algorithm, Some(KeyAlgorithm::EcdsaP384));
    assert_eq!(root.issuer_dn, root.subject_dn);
}
