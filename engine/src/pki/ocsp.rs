//! OCSP (RFC 6960): reading requests and signing responses.
//!
//! Requests are untrusted input and are decoded with RustCrypto's
//! `x509-ocsp` 0.2; responses have a fixed shape and are written with the
//! small DER writer, signed directly by the issuing CA (so relying parties
//! need no delegated responder certificate). The responder ID is the CA's
//! key hash; each single response echoes the request's CertID byte for byte.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use x509_ocsp::OcspRequest;

use super::SigningCa;
use super::crl::CaIdentity;
use super::der::{self as w, SEQUENCE};
use crate::domain::RevocationReason;
use crate::{Error, Result};

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
/// DER of OID id-pkix-ocsp-nonce.
const DER_OID_NONCE: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
];
/// DER of OID id-pkix-ocsp-basic.
const DER_OID_BASIC: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01,
];
/// DER of the SHA-1 AlgorithmIdentifier (with NULL parameters, as OpenSSL writes it).
const DER_ALG_SHA1: &[u8] = &[
    0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
];
/// Most certificates one request may ask about.
pub const MAX_REQUESTS: usize = 32;
/// Longest nonce accepted (RFC 8954 allows up to 32 octets; some clients send more).
const MAX_NONCE: usize = 128;

/// OCSPResponseStatus values other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspError {
    MalformedRequest,
    InternalError,
    TryLater,
    Unauthorized,
}

impl OcspError {
    fn code(self) -> u8 {
        match self {
            Self::MalformedRequest => 1,
            Self::InternalError => 2,
            Self::TryLater => 3,
            Self::Unauthorized => 6,
        }
    }

    /// The unsigned response carrying only this status.
    pub fn response(self) -> Vec<u8> {
        w::tlv(SEQUENCE, &w::tlv(w::ENUMERATED, &[self.code()]))
    }
}

/// One certificate a request asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertQuery {
    /// The request's CertID, re-encoded (DER is canonical, so byte-identical).
    pub cert_id_der: Vec<u8>,
    /// Lower-case hex of the serial, without leading zero bytes, as certctl stores it.
    pub serial_hex: String,
    sha256: bool,
    issuer_name_hash: Vec<u8>,
    issuer_key_hash: Vec<u8>,
}

impl CertQuery {
    /// Whether the CertID names this CA (by the hashes of its name and key).
    pub fn is_for(&self, ca: &CaIdentity) -> bool {
        let alg = if self.sha256 {
            &SHA256
        } else {
            &SHA1_FOR_LEGACY_USE_ONLY
        };
        digest(alg, &ca.name_der).as_ref() == self.issuer_name_hash.as_slice()
            && digest(alg, &ca.key_bits).as_ref() == self.issuer_key_hash.as_slice()
    }

    /// A query re-made from a cached response's CertID (issuer already checked).
    pub(crate) fn for_cert_id(cert_id_der: &[u8], serial_hex: &str) -> Self {
        Self {
            cert_id_der: cert_id_der.to_vec(),
            serial_hex: serial_hex.to_owned(),
            sha256: false,
            issuer_name_hash: Vec::new(),
            issuer_key_hash: Vec::new(),
        }
    }

    /// A SHA-1 query for `serial_hex` under `ca` (the `/ocsp/{issuer}/{serial}` form).
    pub fn for_serial(ca: &CaIdentity, serial_hex: &str) -> Result<Self> {
        let serial = hex::decode(serial_hex)
            .ok()
            .filter(|s| !s.is_empty() && s.len() <= 20)
            .ok_or_else(|| Error::invalid("the serial must be 1 to 20 bytes of hex"))?;
        let name_hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, &ca.name_der);
        let key_hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, &ca.key_bits);
        let serial_der = w::uint(&serial);
        let cert_id_der = w::tlv_of(
            SEQUENCE,
            &[
                DER_ALG_SHA1,
                &w::tlv(w::OCTET_STRING, name_hash.as_ref()),
                &w::tlv(w::OCTET_STRING, key_hash.as_ref()),
                &serial_der,
            ],
        );
        Ok(Self {
            cert_id_der,
            serial_hex: normalize_serial(&serial),
            sha256: false,
            issuer_name_hash: name_hash.as_ref().to_vec(),
            issuer_key_hash: key_hash.as_ref().to_vec(),
        })
    }
}

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub queries: Vec<CertQuery>,
    /// The nonce extension's extnValue, echoed in the response.
    pub nonce: Option<Vec<u8>>,
}

/// Decodes a DER OCSPRequest. Signed requests are accepted and the signature
/// ignored (RFC 6960 makes checking it optional; nothing here is secret).
pub fn parse_request(der_bytes: &[u8]) -> std::result::Result<ParsedRequest, OcspError> {
    let req = OcspRequest::from_der(der_bytes).map_err(|_| OcspError::MalformedRequest)?;
    let list = &req.tbs_request.request_list;
    if list.is_empty() || list.len() > MAX_REQUESTS {
        return Err(OcspError::MalformedRequest);
    }
    let mut queries = Vec::with_capacity(list.len());
    for r in list {
        let id = &r.req_cert;
        let sha256 = match id.hash_algorithm.oid {
            OID_SHA1 => false,
            OID_SHA256 => true,
            _ => return Err(OcspError::MalformedRequest),
        };
        let serial = id.serial_number.as_bytes();
        if serial.is_empty() || serial.len() > 21 {
            return Err(OcspError::MalformedRequest);
        }
        queries.push(CertQuery {
            cert_id_der: id.to_der().map_err(|_| OcspError::MalformedRequest)?,
            serial_hex: normalize_serial(serial),
            sha256,
            issuer_name_hash: id.issuer_name_hash.as_bytes().to_vec(),
            issuer_key_hash: id.issuer_key_hash.as_bytes().to_vec(),
        });
    }
    let nonce = req
        .tbs_request
        .request_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == OID_NONCE)
        .map(|e| e.extn_value.as_bytes().to_vec());
    if nonce
        .as_ref()
        .is_some_and(|n| n.is_empty() || n.len() > MAX_NONCE)
    {
        return Err(OcspError::MalformedRequest);
    }
    Ok(ParsedRequest { queries, nonce })
}

fn normalize_serial(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    hex::encode(bytes.get(start..).unwrap_or_default())
}

/// The status of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Good,
    Revoked { at: i64, reason: RevocationReason },
    Unknown,
}

/// A response to sign.
#[derive(Debug, Clone, Copy)]
pub struct ResponseRequest<'a> {
    pub answers: &'a [(&'a [u8], CertStatus)],
    pub produced_at: i64,
    pub this_update: i64,
    pub next_update: i64,
    pub nonce: Option<&'a [u8]>,
}

/// Builds and signs a successful OCSPResponse with a BasicOCSPResponse.
pub fn build_response(
    ca: &SigningCa,
    identity: &CaIdentity,
    req: &ResponseRequest<'_>,
) -> Result<Vec<u8>> {
    let alg = ca.signature_algorithm_der()?;
    let key_hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, &identity.key_bits);
    let responder = w::tlv(w::ctx(2), &w::tlv(w::OCTET_STRING, key_hash.as_ref()));
    let produced = w::generalized_time(req.produced_at)?;
    let this_update = w::generalized_time(req.this_update)?;
    let next_update = w::tlv(w::ctx(0), &w::generalized_time(req.next_update)?);
    let mut singles = Vec::new();
    for (cert_id, status) in req.answers {
        let status = match status {
            CertStatus::Good => vec![0x80, 0x00],
            CertStatus::Unknown => vec![0x82, 0x00],
            CertStatus::Revoked { at, reason } => {
                let time = w::generalized_time(*at)?;
                let reason = w::tlv(w::ctx(0), &w::tlv(w::ENUMERATED, &[reason.code()]));
                w::tlv_of(w::ctx(1), &[&time, &reason])
            }
        };
        singles.extend(w::tlv_of(
            SEQUENCE,
            &[cert_id, &status, &this_update, &next_update],
        ));
    }
    let responses = w::tlv(SEQUENCE, &singles);
    let extensions = match req.nonce {
        Some(n) => {
            let ext = w::tlv_of(SEQUENCE, &[DER_OID_NONCE, &w::tlv(w::OCTET_STRING, n)]);
            w::tlv(w::ctx(1), &w::tlv(SEQUENCE, &ext))
        }
        None => Vec::new(),
    };
    let tbs = w::tlv_of(SEQUENCE, &[&responder, &produced, &responses, &extensions]);
    let signature = ca.sign(&tbs)?;
    let basic = w::tlv_of(SEQUENCE, &[&tbs, alg, &w::bit_string(&signature)]);
    let bytes = w::tlv_of(SEQUENCE, &[DER_OID_BASIC, &w::tlv(w::OCTET_STRING, &basic)]);
    Ok(w::tlv_of(
        SEQUENCE,
        &[&w::tlv(w::ENUMERATED, &[0]), &w::tlv(w::ctx(0), &bytes)],
    ))
}
