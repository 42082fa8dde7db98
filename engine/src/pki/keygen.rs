//! Server-side key generation, for profiles whose `keygen_mode` is `server`
//! (demos, PKCS#12 export) and for tests that need a key and a CSR.
//!
//! Normally the agent generates keys next to the service that uses them and
//! the control plane only ever sees a CSR.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData, RsaKeySize, SanType,
};
use zeroize::Zeroizing;

use crate::domain::KeyAlgorithm;
use crate::pki::csr::SubjectNames;
use crate::{Error, Result};

/// A freshly generated private key.
pub struct GeneratedKey {
    pub algorithm: KeyAlgorithm,
    /// The private key as PKCS#8 PEM (`PRIVATE KEY`). Zeroized on drop.
    pub pkcs8_pem: Zeroizing<String>,
    /// The public key as SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("algorithm", &self.algorithm)
            .field("pkcs8_pem", &"<redacted>")
            .field("spki_der", &hex::encode(&self.spki_der))
            .finish()
    }
}

/// Generates a key pair of the given algorithm with aws-lc-rs.
pub fn generate_key(alg: KeyAlgorithm) -> Result<GeneratedKey> {
    let pair = generate_key_pair(alg)?;
    Ok(GeneratedKey {
        algorithm: alg,
        pkcs8_pem: Zeroizing::new(pair.serialize_pem()),
        spki_der: pair.subject_public_key_info(),
    })
}

/// The DER of a PKCS#8 PEM private key (`PRIVATE KEY`).
pub fn pkcs8_der(pkcs8_pem: &str) -> Result<Zeroizing<Vec<u8>>> {
    let pair = KeyPair::from_pem(pkcs8_pem)
        .map_err(|e| Error::internal(format!("generated key could not be loaded: {e}")))?;
    Ok(Zeroizing::new(pair.serialize_der()))
}

/// An rcgen key pair of the given algorithm (also used for CA keys).
pub(crate) fn generate_key_pair(alg: KeyAlgorithm) -> Result<KeyPair> {
    let generated = match alg {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Ed25519 => KeyPair::generate_for(&PKCS_ED25519),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    generated.map_err(|e| Error::internal(format!("{alg} key generation failed: {e}")))
}

/// Builds a PEM CSR for `key` with the given CN and SANs. Used by tests
/// (here and in the engine's integration tests) and by server-side keygen,
/// which goes through the same CSR path as an agent.
pub fn csr_for(key: &GeneratedKey, common_name: &str, names: &SubjectNames) -> Result<String> {
    let pair = KeyPair::from_pem(&key.pkcs8_pem)
        .map_err(|e| Error::internal(format!("generated key could not be loaded: {e}")))?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if !common_name.is_empty() {
        dn.push(DnType::CommonName, common_name);
    }
    params.distinguished_name = dn;

    for dns in &names.dns {
        let ia5 = dns
            .as_str()
            .try_into()
            .map_err(|_| Error::invalid(format!("DNS name '{dns}' is not an ASCII string")))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    for ip in &names.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    for email in &names.emails {
        let ia5 = email.as_str().try_into().map_err(|_| {
            Error::invalid(format!("e-mail address '{email}' is not an ASCII string"))
        })?;
        params.subject_alt_names.push(SanType::Rfc822Name(ia5));
    }

    let csr = params
        .serialize_request(&pair)
        .map_err(|e| Error::internal(format!("CSR could not be built: {e}")))?;
    csr.pem()
        .map_err(|e| Error::internal(format!("CSR could not be encoded: {e}")))
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::FromDer;
    use x509_parser::x509::SubjectPublicKeyInfo;

    use super::*;
    use crate::pki::csr::{key_algorithm_of, parse_csr};

    #[test]
    fn generates_all_algorithms() {
        for alg in KeyAlgorithm::ALL {
            let key = generate_key(alg).unwrap();
            assert_eq!(key.algorithm, alg);
            assert!(
                key.pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
                "{alg}"
            );
            let (rest, spki) = SubjectPublicKeyInfo::from_der(&key.spki_der).unwrap();
            assert!(rest.is_empty());
            assert_eq!(key_algorithm_of(&spki).unwrap(), alg);
            // The PEM loads back and has the same public key.
            let again = KeyPair::from_pem(&key.pkcs8_pem).unwrap();
            assert_eq!(again.subject_public_key_info(), key.spki_der, "{alg}");
            assert!(!format!("{key:?}").contains("PRIVATE"));
        }
    }

    #[test]
    fn csr_carries_names_and_key() {
        let key = generate_key(KeyAlgorithm::EcdsaP384).unwrap();
        let names = SubjectNames {
            dns: vec!["a.example.com".into()],
            ips: vec!["::1".parse().unwrap()],
            emails: vec!["a@example.com".into()],
        };
        let csr = parse_csr(&csr_for(&key, "a.example.com", &names).unwrap()).unwrap();
        assert_eq!(csr.names, names);
        assert_eq!(csr.common_name.as_deref(), Some("a.example.com"));
        assert_eq!(csr.spki_der, key.spki_der);
        assert_eq!(csr.key_algorithm, KeyAlgorithm::EcdsaP384);
    }
}
