//! Reading certificates: the summary certctl stores for an imported or
//! issued certificate, fingerprints, and PEM/DER helpers shared with the CA.

use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use super::csr::{SubjectNames, add_general_names, key_algorithm_of};
use super::pem;
use crate::domain::KeyAlgorithm;
use crate::{Error, Result};

/// What certctl records about a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    pub der: Vec<u8>,
    pub subject_cn: Option<String>,
    pub names: SubjectNames,
    /// Lower-case hex of the serial's magnitude, without a leading zero byte.
    pub serial_hex: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// RFC 4514-style string, e.g. `CN=Example Issuing CA, O=Example`.
    pub issuer_dn: String,
    pub subject_dn: String,
    pub fingerprint_sha256: String,
    /// `None` when the key type is one certctl does not issue for (e.g. P-521, DSA).
    pub key_algorithm: Option<KeyAlgorithm>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// Lower-case hex SHA-256 of `der` (the usual certificate fingerprint).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(digest(&SHA256, der))
}

/// Parses the first certificate in `pem` (text around it is ignored). Bare
/// base64 of the DER is accepted too, as some consoles export it that way.
pub fn parse_certificate_pem(pem_text: &str) -> Result<CertificateInfo> {
    let ders = certificate_ders(pem_text, "certificate")?;
    let der = ders
        .into_iter()
        .next()
        .ok_or_else(|| Error::invalid("certificate: no CERTIFICATE PEM block found"))?;
    parse_certificate_der(&der)
}

/// Parses every certificate of a PEM bundle, in order. Malformed PEM or a
/// block that is not a certificate fails the whole bundle.
pub fn parse_certificate_bundle(text: &str) -> Result<Vec<CertificateInfo>> {
    certificate_ders(text, "certificate bundle")?
        .iter()
        .map(|der| parse_certificate_der(der))
        .collect()
}

/// A DER certificate as a PEM `CERTIFICATE` block.
pub fn pem_certificate(der: &[u8]) -> String {
    pem::encode("CERTIFICATE", der)
}

/// Parses a DER certificate into a [`CertificateInfo`].
pub fn parse_certificate_der(der: &[u8]) -> Result<CertificateInfo> {
    let cert = parse_x509(der, "certificate")?;
    let mut names = SubjectNames::default();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            add_general_names(&mut names, &san.general_names, "certificate")?;
        }
    }
    Ok(CertificateInfo {
        der: der.to_vec(),
        subject_cn: common_name(&cert),
        names,
        serial_hex: serial_hex(&cert),
        not_before: unix(cert.validity().not_before),
        not_after: unix(cert.validity().not_after),
        issuer_dn: cert.issuer().to_string(),
        subject_dn: cert.subject().to_string(),
        fingerprint_sha256: fingerprint_sha256(der),
        key_algorithm: key_algorithm_of(cert.public_key()).ok(),
        is_ca: cert.is_ca(),
    })
}

/// The DER of every certificate in `input`: PEM `CERTIFICATE` blocks (other
/// blocks are ignored), or, if there is no PEM at all, one bare base64 DER.
pub(crate) fn certificate_ders(input: &str, what: &str) -> Result<Vec<Vec<u8>>> {
    if pem::looks_like_pem(input) {
        Ok(pem::parse_blocks(input, what)?
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| b.der.to_vec())
            .collect())
    } else if input.trim().is_empty() {
        Ok(Vec::new())
    } else {
        let der = pem::decode_base64(input).ok_or_else(|| {
            Error::invalid(format!("{what} is neither PEM nor base64-encoded DER"))
        })?;
        Ok(vec![der.to_vec()])
    }
}

/// Parses DER as an X.509 certificate; trailing bytes are refused.
pub(crate) fn parse_x509<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::invalid(format!(
            "{what} has trailing data after the certificate"
        ))),
        Err(_) => Err(Error::invalid(format!(
            "{what} is not a valid X.509 certificate"
        ))),
    }
}

pub(crate) fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

pub(crate) fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let raw = cert.raw_serial();
    // DER adds a 0x00 byte when the top bit is set; it is not part of the number.
    let start = raw
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(raw.get(start..).unwrap_or_default())
}

pub(crate) fn unix(t: ASN1Time) -> i64 {
    t.timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lower_hex_sha256() {
        assert_eq!(
            fingerprint_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn garbage_is_invalid_input() {
        for input in [
            "",
            "nonsense",
            "AAAA",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(
                matches!(parse_certificate_pem(input), Err(Error::InvalidInput(_))),
                "{input:?}"
            );
        }
    }
}
