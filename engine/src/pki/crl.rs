//! Certificate revocation lists (RFC 5280 section 5).
//!
//! Each revoked certificate's entry is encoded once, when it is revoked
//! ([`encode_entry`]), and stored. Building a CRL ([`build_crl`]) then only
//! concatenates the stored entries and signs: no per-entry work, so its cost
//! is a copy of the bytes, and a revocation's cost does not depend on how
//! many entries the CRL already has.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use x509_parser::extensions::ParsedExtension;

use super::SigningCa;
use super::cert::parse_x509;
use super::der::{self, SEQUENCE};
use crate::domain::RevocationReason;
use crate::{Error, Result};

/// DER of OID 2.5.29.21 (id-ce-cRLReasons).
const OID_REASON_CODE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x15];
/// DER of OID 2.5.29.20 (id-ce-cRLNumber).
const OID_CRL_NUMBER: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x14];
/// DER of OID 2.5.29.35 (id-ce-authorityKeyIdentifier).
const OID_AKI: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x23];

/// What certctl needs to know about an issuing CA to speak for it in CRLs
/// and OCSP: its name and key as they appear in its certificate.
#[derive(Debug, Clone)]
pub struct CaIdentity {
    /// The DER of the CA certificate's subject Name.
    pub name_der: Vec<u8>,
    /// The CA's public key bits (subjectPublicKey contents).
    pub key_bits: Vec<u8>,
    /// The CA's key identifier: its SubjectKeyIdentifier when present, else
    /// the SHA-1 of its key bits (RFC 5280 method 1).
    pub key_id: Vec<u8>,
    /// The CA certificate.
    pub cert_der: Vec<u8>,
}

impl CaIdentity {
    pub fn of(ca: &SigningCa) -> Result<Self> {
        let cert_der = ca.cert_der().to_vec();
        let cert = parse_x509(&cert_der, "CA certificate")?;
        let key_bits = cert.public_key().subject_public_key.data.to_vec();
        let ski = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let key_id = ski.unwrap_or_else(|| {
            digest(&SHA1_FOR_LEGACY_USE_ONLY, &key_bits)
                .as_ref()
                .to_vec()
        });
        Ok(Self {
            name_der: cert.subject().as_raw().to_vec(),
            key_bits,
            key_id,
            cert_der: cert_der.clone(),
        })
    }
}

/// Encodes one revokedCertificates entry: serial, revocation date and, unless
/// it is `unspecified` (RFC 5280 says to leave that out), the reason code.
pub fn encode_entry(
    serial_hex: &str,
    revoked_at: i64,
    reason: RevocationReason,
) -> Result<Vec<u8>> {
    let serial = hex::decode(serial_hex)
        .map_err(|_| Error::internal(format!("stored serial '{serial_hex}' is not hex")))?;
    let serial = der::uint(&serial);
    let date = der::x509_time(revoked_at)?;
    if reason == RevocationReason::Unspecified {
        return Ok(der::tlv_of(SEQUENCE, &[&serial, &date]));
    }
    let value = der::tlv(der::ENUMERATED, &[reason.code()]);
    let ext = der::tlv_of(
        SEQUENCE,
        &[OID_REASON_CODE, &der::tlv(der::OCTET_STRING, &value)],
    );
    let exts = der::tlv(SEQUENCE, &ext);
    Ok(der::tlv_of(SEQUENCE, &[&serial, &date, &exts]))
}

/// A CRL to sign.
#[derive(Debug, Clone, Copy)]
pub struct CrlRequest<'a> {
    pub number: u64,
    pub this_update: i64,
    pub next_update: i64,
    /// The concatenated DER of the entries (see [`encode_entry`]).
    pub entries: &'a [u8],
}

/// Builds and signs a version 2 CRL with the CRL number and authority key
/// identifier extensions. Returns the DER.
pub fn build_crl(ca: &SigningCa, identity: &CaIdentity, req: &CrlRequest<'_>) -> Result<Vec<u8>> {
    let alg = ca.signature_algorithm_der()?;
    let version = der::uint_u64(1);
    let this_update = der::x509_time(req.this_update)?;
    let next_update = der::x509_time(req.next_update)?;
    let aki_value = der::tlv(SEQUENCE, &der::tlv(0x80, &identity.key_id));
    let aki = der::tlv_of(
        SEQUENCE,
        &[OID_AKI, &der::tlv(der::OCTET_STRING, &aki_value)],
    );
    let number = der::tlv_of(
        SEQUENCE,
        &[
            OID_CRL_NUMBER,
            &der::tlv(der::OCTET_STRING, &der::uint_u64(req.number)),
        ],
    );
    let extensions = der::tlv(der::ctx(0), &der::tlv_of(SEQUENCE, &[&aki, &number]));
    // An empty revokedCertificates is left out, as RFC 5280 requires.
    let mut revoked_header = Vec::new();
    if !req.entries.is_empty() {
        der::header(&mut revoked_header, SEQUENCE, req.entries.len());
    }
    let tbs = der::tlv_of(
        SEQUENCE,
        &[
            &version,
            alg,
            &identity.name_der,
            &this_update,
            &next_update,
            &revoked_header,
            req.entries,
            &extensions,
        ],
    );
    let signature = ca.sign(&tbs)?;
    Ok(der::tlv_of(
        SEQUENCE,
        &[&tbs, alg, &der::bit_string(&signature)],
    ))
}
