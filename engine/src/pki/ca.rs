//! The local CA: creating a root and issuing intermediate, importing a
//! sub-CA signed by an external root, and issuing leaf certificates.
//!
//! CA keys only ever leave this module sealed with the master key. A
//! [`SigningCa`] is the decrypted form, built once when the engine loads an
//! issuer; it pre-parses everything so that issuing a leaf costs one
//! signature plus some DER writing.

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData,
    SanType, SignatureAlgorithm,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

pub use super::cert::{CertificateInfo, fingerprint_sha256, parse_certificate_pem};
use super::cert::{certificate_ders, parse_x509, unix};
use super::csr::{SubjectNames, key_algorithm_of};
use super::keygen::generate_key_pair;
use super::pem;
use super::seal::MasterKey;
use crate::domain::{ExtendedKeyUsage, KeyAlgorithm};
use crate::{Error, Result};

/// Validity backdating for clock skew between certctl and relying parties.
const BACKDATE_SECONDS: i64 = 3600;
const DAY: i64 = 86_400;
const ROOT_VALIDITY: i64 = 3650 * DAY;
const ISSUING_VALIDITY: i64 = 1825 * DAY;
/// ub-common-name is 64; " Issuing CA" takes 11 of it.
const MAX_ORGANIZATION_LEN: usize = 53;
/// Longest CRL/OCSP URL we put into certificates.
const MAX_URL_LEN: usize = 2048;
/// id-pe-authorityInfoAccess.
const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
/// DER of the OID id-ad-ocsp (1.3.6.1.5.5.7.48.1), tag and length included.
const DER_OID_AD_OCSP: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];

/// A CA as stored: certificates in PEM and the private keys sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaMaterial {
    /// The issuing CA certificate.
    pub cert_pem: String,
    /// The issuing certificate's parents, nearest first, up to and including the root.
    pub chain_pem: String,
    pub root_cert_pem: String,
    /// The issuing key, sealed with context `{context}/issuing`.
    pub key_sealed: String,
    /// The root key (local CA only), sealed with context `{context}/root`.
    pub root_key_sealed: Option<String>,
    /// Subject DN of the issuing certificate.
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    /// Key algorithm of the issuing key.
    pub key_algorithm: KeyAlgorithm,
}

/// Creates a local CA: an ECDSA P-384 root (10 years) and an ECDSA P-256
/// issuing intermediate (5 years) signed by it.
pub fn create_local_ca(
    master: &MasterKey,
    organization: &str,
    now: i64,
    context: &str,
) -> Result<CaMaterial> {
    let org = organization.trim();
    if org.is_empty() || org.chars().count() > MAX_ORGANIZATION_LEN {
        return Err(Error::invalid(format!(
            "organization must be 1 to {MAX_ORGANIZATION_LEN} characters"
        )));
    }
    if org.chars().any(char::is_control) {
        return Err(Error::invalid(
            "organization must not contain control characters",
        ));
    }
    let not_before = now - BACKDATE_SECONDS;

    let root_key = generate_key_pair(KeyAlgorithm::EcdsaP384)?;
    let mut root = CertificateParams::default();
    root.distinguished_name = ca_name(org, &format!("{org} Root CA"));
    root.not_before = datetime(not_before)?;
    root.not_after = datetime(now + ROOT_VALIDITY)?;
    root.serial_number = Some(random_serial()?.into());
    // rcgen marks basicConstraints and keyUsage critical and adds the SKI for CAs.
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root
        .self_signed(&root_key)
        .map_err(crypto("root certificate"))?;
    let root_issuer = Issuer::from_params(&root, &root_key);

    let issuing_key = generate_key_pair(KeyAlgorithm::EcdsaP256)?;
    let mut issuing = CertificateParams::default();
    issuing.distinguished_name = ca_name(org, &format!("{org} Issuing CA"));
    issuing.not_before = datetime(not_before)?;
    issuing.not_after = datetime(now + ISSUING_VALIDITY)?;
    issuing.serial_number = Some(random_serial()?.into());
    issuing.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    issuing.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    issuing.use_authority_key_identifier_extension = true;
    let issuing_cert = issuing
        .signed_by(&issuing_key, &root_issuer)
        .map_err(crypto("issuing CA certificate"))?;

    let root_pem = pem::encode("CERTIFICATE", root_cert.der());
    let issuing_der = issuing_cert.der().to_vec();
    let parsed = parse_x509(&issuing_der, "issuing CA certificate")?;
    Ok(CaMaterial {
        cert_pem: pem::encode("CERTIFICATE", &issuing_der),
        chain_pem: root_pem.clone(),
        root_cert_pem: root_pem,
        key_sealed: master.seal(issuing_key.serialized_der(), &format!("{context}/issuing"))?,
        root_key_sealed: Some(master.seal(root_key.serialized_der(), &format!("{context}/root"))?),
        subject: parsed.subject().to_string(),
        not_before: unix(parsed.validity().not_before),
        not_after: unix(parsed.validity().not_after),
        key_algorithm: KeyAlgorithm::EcdsaP256,
    })
}

/// Imports a CA certificate and key signed by an external root (sub-CA mode).
/// `chain_pem` holds the certificate's parents, nearest first, ending with
/// the self-signed root. Every check failure is an [`Error::InvalidInput`].
pub fn import_sub_ca(
    master: &MasterKey,
    cert_pem: &str,
    chain_pem: &str,
    key_pem: &str,
    now: i64,
    context: &str,
) -> Result<CaMaterial> {
    let cert_der = certificate_ders(cert_pem, "CA certificate")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid("CA certificate: no CERTIFICATE PEM block found"))?;
    let cert = parse_x509(&cert_der, "CA certificate")?;
    check_ca_cert(&cert, "the CA certificate", now)?;
    if let Some(ku) = cert
        .key_usage()
        .map_err(|_| Error::invalid("CA certificate: malformed keyUsage"))?
        && !ku.value.key_cert_sign()
    {
        return Err(Error::invalid(
            "the CA certificate's keyUsage does not include keyCertSign",
        ));
    }
    let key_algorithm = key_algorithm_of(cert.public_key())
        .map_err(|e| Error::invalid(format!("the CA certificate's key is not supported: {e}")))?;

    let key = parse_private_key(key_pem)?;
    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(Error::invalid(
            "the private key does not match the CA certificate's public key",
        ));
    }

    let chain = certificate_ders(chain_pem, "CA chain")?;
    if chain.is_empty() {
        return Err(Error::invalid(
            "the CA chain is empty; provide the issuing certificate's parents up to the root",
        ));
    }
    let parsed_chain = chain
        .iter()
        .enumerate()
        .map(|(i, der)| parse_x509(der, &format!("CA chain certificate {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let mut child = &cert;
    for (i, parent) in parsed_chain.iter().enumerate() {
        let which = format!("CA chain certificate {} ({})", i + 1, parent.subject());
        if parent.subject().as_raw() != child.issuer().as_raw() {
            return Err(Error::invalid(format!(
                "{which} is not the issuer of {}: expected subject {}",
                child.subject(),
                child.issuer()
            )));
        }
        if child.verify_signature(Some(parent.public_key())).is_err() {
            return Err(Error::invalid(format!(
                "the signature on {} does not verify with {which}",
                child.subject()
            )));
        }
        check_ca_cert(parent, &which, now)?;
        child = parent;
    }
    let root = child;
    if root.subject().as_raw() != root.issuer().as_raw() || root.verify_signature(None).is_err() {
        return Err(Error::invalid(format!(
            "the CA chain does not end at a self-signed root ({} is issued by {})",
            root.subject(),
            root.issuer()
        )));
    }

    let chain_pem_norm: String = chain
        .iter()
        .map(|der| pem::encode("CERTIFICATE", der))
        .collect();
    let root_pem = chain
        .last()
        .map(|der| pem::encode("CERTIFICATE", der))
        .unwrap_or_default();
    let cert_pem_norm = pem::encode("CERTIFICATE", &cert_der);

    let key_sealed = master.seal(key.serialized_der(), &format!("{context}/issuing"))?;
    // Build the signer once now, so a CA that rcgen cannot sign for exactly (see
    // `SigningCa::self_test`) is refused at import rather than at first issuance.
    SigningCa::from_parts(key, &cert_der, &chain_pem_norm, &root_pem)?;

    Ok(CaMaterial {
        cert_pem: cert_pem_norm,
        chain_pem: chain_pem_norm,
        root_cert_pem: root_pem,
        key_sealed,
        root_key_sealed: None,
        subject: cert.subject().to_string(),
        not_before: unix(cert.validity().not_before),
        not_after: unix(cert.validity().not_after),
        key_algorithm,
    })
}

/// A certificate to issue. Names are assumed to have passed the profile checks.
#[derive(Debug, Clone, Copy)]
pub struct LeafRequest<'a> {
    /// SubjectPublicKeyInfo DER (from the CSR or the generated key).
    pub spki_der: &'a [u8],
    pub key_algorithm: KeyAlgorithm,
    /// Empty for no CN.
    pub common_name: &'a str,
    pub names: &'a SubjectNames,
    pub not_before: i64,
    pub not_after: i64,
    pub ekus: &'a [ExtendedKeyUsage],
    pub crl_distribution_url: Option<&'a str>,
    pub ocsp_url: Option<&'a str>,
}

/// An issued leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedLeaf {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// The issuing CA certificate and its parents, up to the root.
    pub chain_pem: String,
    /// Lower-case hex, no leading zero byte.
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub fingerprint_sha256: String,
}

/// A CA with its key decrypted, ready to sign. Cheap to share across threads.
pub struct SigningCa {
    issuer: Issuer<'static, KeyPair>,
    /// Only write an AKI when the CA certificate has an SKI it can refer to.
    use_aki: bool,
    /// The issuing certificate followed by its parents.
    full_chain_pem: String,
    root_pem: String,
    cert_der: Vec<u8>,
    not_before: i64,
    not_after: i64,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("issuer", &self.issuer)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl SigningCa {
    /// Decrypts the issuing key (context `{context}/issuing`) and prepares the signer.
    pub fn load(material: &CaMaterial, master: &MasterKey, context: &str) -> Result<Self> {
        let key_der = master.open(&material.key_sealed, &format!("{context}/issuing"))?;
        // The key decrypted, so it is authentic; failing to parse it is our bug.
        let key = KeyPair::try_from(key_der.as_slice()).map_err(|e| {
            Error::internal(format!("sealed CA key is not a usable private key: {e}"))
        })?;
        let cert_der = certificate_ders(&material.cert_pem, "CA certificate")?
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("CA certificate: no CERTIFICATE PEM block found"))?;
        SigningCa::from_parts(key, &cert_der, &material.chain_pem, &material.root_cert_pem)
    }

    fn from_parts(
        key: KeyPair,
        cert_der: &[u8],
        parents_pem: &str,
        root_pem: &str,
    ) -> Result<Self> {
        let cert = parse_x509(cert_der, "CA certificate")?;
        if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
            return Err(Error::invalid(
                "the CA key does not match the CA certificate",
            ));
        }
        let use_aki = has_subject_key_id(&cert);
        let issuer = Issuer::from_ca_cert_der(&cert_der.to_vec().into(), key).map_err(|_| {
            Error::invalid(
                "the CA certificate's subject name cannot be used for issuing (multi-valued RDNs or unsupported string types)",
            )
        })?;
        let ca = SigningCa {
            issuer,
            use_aki,
            full_chain_pem: format!("{}{}", pem::encode("CERTIFICATE", cert_der), parents_pem),
            root_pem: root_pem.to_string(),
            cert_der: cert_der.to_vec(),
            not_before: unix(cert.validity().not_before),
            not_after: unix(cert.validity().not_after),
        };
        ca.self_test(&cert)?;
        Ok(ca)
    }

    /// Issues one throwaway certificate and checks that it names and verifies
    /// against the CA certificate byte-for-byte. rcgen rebuilds the issuer name
    /// from parsed attributes and keeps one value per attribute type, so a
    /// subject such as `CN=X, DC=corp, DC=example` would otherwise produce
    /// leaves whose issuer does not match their CA.
    fn self_test(&self, cert: &X509Certificate<'_>) -> Result<()> {
        let algorithm = key_algorithm_of(cert.public_key())?;
        let leaf = self.issue(&LeafRequest {
            spki_der: cert.public_key().raw,
            key_algorithm: algorithm,
            common_name: "certctl self-test",
            names: &SubjectNames::default(),
            not_before: self.not_before,
            not_after: self.not_after,
            ekus: &[],
            crl_distribution_url: None,
            ocsp_url: None,
        })?;
        let test = parse_x509(&leaf.cert_der, "self-test certificate")?;
        if test.issuer().as_raw() != cert.subject().as_raw() {
            return Err(Error::invalid(format!(
                "the CA certificate's subject ({}) cannot be reproduced exactly in issued certificates (repeated attribute types such as several DC or OU values are not supported)",
                cert.subject()
            )));
        }
        test.verify_signature(Some(cert.public_key())).map_err(|_| {
            Error::internal("self-test certificate does not verify with the CA certificate")
        })
    }

    /// Signs a leaf certificate.
    pub fn issue(&self, req: &LeafRequest<'_>) -> Result<IssuedLeaf> {
        if req.not_after <= req.not_before {
            return Err(Error::invalid("not_after must be later than not_before"));
        }
        if req.not_after > self.not_after {
            return Err(Error::policy(format!(
                "the requested validity ends after the CA certificate expires ({}); shorten it or renew the CA",
                self.not_after
            )));
        }
        let key = SpkiKey::parse(req.spki_der, req.key_algorithm)?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if !req.common_name.is_empty() {
            dn.push(DnType::CommonName, req.common_name);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = san_list(req.names)?;
        params.not_before = datetime(req.not_before)?;
        params.not_after = datetime(req.not_after)?;
        let serial = random_serial()?;
        let serial_hex = hex::encode(&serial);
        params.serial_number = Some(serial.into());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = match req.key_algorithm {
            // RSA TLS key exchange (TLS 1.2 RSA kx) needs keyEncipherment.
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ]
            }
            _ => vec![KeyUsagePurpose::DigitalSignature],
        };
        params.extended_key_usages = req.ekus.iter().map(|e| eku(*e)).collect();
        params.use_authority_key_identifier_extension = self.use_aki;
        if let Some(url) = req.crl_distribution_url {
            check_url(url, "CRL distribution URL")?;
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.to_string()],
            }];
        }
        if let Some(url) = req.ocsp_url {
            check_url(url, "OCSP URL")?;
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(
                    OID_AUTHORITY_INFO_ACCESS,
                    aia_ocsp(url),
                ));
        }

        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(crypto("leaf certificate"))?;
        let der = cert.der().to_vec();
        Ok(IssuedLeaf {
            cert_pem: pem::encode("CERTIFICATE", &der),
            fingerprint_sha256: fingerprint_sha256(&der),
            cert_der: der,
            chain_pem: self.full_chain_pem.clone(),
            serial_hex,
            not_before: req.not_before,
            not_after: req.not_after,
        })
    }

    /// The issuing CA certificate followed by its parents up to the root.
    pub fn chain_pem(&self) -> String {
        self.full_chain_pem.clone()
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The issuing CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// End of the issuing CA certificate's validity (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Signs `message` with the issuing key (CRLs and OCSP responses).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        use rcgen::SigningKey;
        self.issuer
            .key()
            .sign(message)
            .map_err(|e| Error::internal(format!("signing with the CA key failed: {e}")))
    }

    /// DER of the AlgorithmIdentifier of [`SigningCa::sign`]'s signatures.
    pub fn signature_algorithm_der(&self) -> Result<&'static [u8]> {
        let alg = self.issuer.key().algorithm();
        if alg == &PKCS_ECDSA_P256_SHA256 {
            // ecdsa-with-SHA256
            Ok(&[
                0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
            ])
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            // ecdsa-with-SHA384
            Ok(&[
                0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
            ])
        } else if alg == &PKCS_RSA_SHA256 {
            // sha256WithRSAEncryption, NULL parameters
            Ok(&[
                0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
                0x00,
            ])
        } else if alg == &PKCS_ED25519 {
            Ok(&[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70])
        } else {
            Err(Error::internal(
                "the CA key's signature algorithm is not supported for CRLs and OCSP",
            ))
        }
    }
}

/// A public key taken from a CSR, in the form rcgen writes into a
/// certificate: the algorithm identifier comes from `algorithm()` and the key
/// bits from `der_bytes()`. Only the `oids_sign_alg` part of the algorithm is
/// used for the SPKI; the leaf's signature algorithm is the CA key's.
struct SpkiKey {
    bits: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl SpkiKey {
    fn parse(spki_der: &[u8], declared: KeyAlgorithm) -> Result<Self> {
        let spki = match SubjectPublicKeyInfo::from_der(spki_der) {
            Ok(([], spki)) => spki,
            _ => {
                return Err(Error::invalid(
                    "the public key is not a valid SubjectPublicKeyInfo",
                ));
            }
        };
        let actual = key_algorithm_of(&spki)?;
        if actual != declared {
            return Err(Error::invalid(format!(
                "the public key is {actual}, but the request says {declared}"
            )));
        }
        let alg = match actual {
            KeyAlgorithm::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                &PKCS_RSA_SHA256
            }
            KeyAlgorithm::Ed25519 => &PKCS_ED25519,
        };
        let key = SpkiKey {
            bits: spki.subject_public_key.data.to_vec(),
            alg,
        };
        // rcgen re-encodes the SPKI; refuse rather than silently certify a key
        // whose encoding differs from what was requested (e.g. RSA without NULL params).
        if key.subject_public_key_info() != spki_der {
            return Err(Error::invalid(
                "the public key uses a non-standard encoding; re-create the CSR with a standard tool",
            ));
        }
        Ok(key)
    }
}

impl PublicKeyData for SpkiKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// Loads a PKCS#8, SEC1 or PKCS#1 PEM private key.
fn parse_private_key(key_pem: &str) -> Result<KeyPair> {
    let blocks = pem::parse_blocks(key_pem, "private key")?;
    if blocks.iter().any(|b| b.label == "ENCRYPTED PRIVATE KEY") {
        return Err(Error::invalid(
            "the private key is encrypted; provide it unencrypted (it is sealed with the master key on import)",
        ));
    }
    let block = blocks
        .into_iter()
        .find(|b| {
            matches!(
                b.label.as_str(),
                "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY"
            )
        })
        .ok_or_else(|| {
            Error::invalid("no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY PEM block found")
        })?;
    KeyPair::try_from(block.der.as_slice()).map_err(|_| {
        Error::invalid(
            "the private key could not be read (supported: ECDSA P-256/P-384, RSA, Ed25519)",
        )
    })
}

/// Checks that a certificate is a CA (basicConstraints CA:TRUE) valid at `now`.
fn check_ca_cert(cert: &X509Certificate<'_>, which: &str, now: i64) -> Result<()> {
    let bc = cert.basic_constraints().map_err(|_| {
        Error::invalid(format!(
            "{which} has a malformed basicConstraints extension"
        ))
    })?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(Error::invalid(format!(
            "{which} is not a CA certificate (no basicConstraints CA:TRUE)"
        )));
    }
    let (from, until) = (
        unix(cert.validity().not_before),
        unix(cert.validity().not_after),
    );
    if now < from || now > until {
        return Err(Error::invalid(format!(
            "{which} is not valid now (valid from {from} to {until}, now is {now})"
        )));
    }
    Ok(())
}

fn has_subject_key_id(cert: &X509Certificate<'_>) -> bool {
    cert.iter_extensions().any(|ext| {
        matches!(
            ext.parsed_extension(),
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_)
        )
    })
}

fn ca_name(org: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    dn
}

fn san_list(names: &SubjectNames) -> Result<Vec<SanType>> {
    let mut sans = Vec::with_capacity(names.len());
    for dns in &names.dns {
        let ia5 = dns
            .as_str()
            .try_into()
            .map_err(|_| Error::invalid(format!("DNS name '{dns}' is not ASCII")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    for email in &names.emails {
        let ia5 = email
            .as_str()
            .try_into()
            .map_err(|_| Error::invalid(format!("e-mail address '{email}' is not ASCII")))?;
        sans.push(SanType::Rfc822Name(ia5));
    }
    Ok(sans)
}

fn eku(e: ExtendedKeyUsage) -> ExtendedKeyUsagePurpose {
    match e {
        ExtendedKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
        ExtendedKeyUsage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        ExtendedKeyUsage::TimeStamping => ExtendedKeyUsagePurpose::TimeStamping,
        ExtendedKeyUsage::OcspSigning => ExtendedKeyUsagePurpose::OcspSigning,
    }
}

/// URLs go into IA5String fields: printable ASCII only.
fn check_url(url: &str, what: &str) -> Result<()> {
    if url.is_empty() || url.len() > MAX_URL_LEN || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(format!(
            "{what} must be 1 to {MAX_URL_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// DER of AuthorityInfoAccessSyntax with one id-ad-ocsp AccessDescription
/// whose location is a uniformResourceIdentifier ([6] IMPLICIT IA5String).
fn aia_ocsp(url: &str) -> Vec<u8> {
    let location = der_tlv(0x86, url.as_bytes());
    let description = der_tlv(0x30, &[DER_OID_AD_OCSP, location.as_slice()].concat());
    der_tlv(0x30, &description)
}

/// One DER TLV with a definite-length header (contents < 64 KiB here).
fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 4);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// 16 random bytes as a positive serial with no leading zero byte, so the
/// DER INTEGER is exactly these bytes and `serial_hex` matches what tools show.
fn random_serial() -> Result<Vec<u8>> {
    let mut serial = vec![0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| Error::internal("random number generator failed"))?;
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01;
    }
    Ok(serial)
}

fn datetime(unix_seconds: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .map_err(|_| Error::invalid(format!("time {unix_seconds} is out of range")))
}

/// Maps an rcgen failure to an internal error naming what was being built.
fn crypto(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::internal(format!("signing the {what} failed: {e}"))
}

/// `SigningCa` is shared by request handlers across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SigningCa>();
};

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
