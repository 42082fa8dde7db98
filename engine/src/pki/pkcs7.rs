//! PKCS#7 / CMS "certs-only" bundles (RFC 5652 SignedData without signers),
//! as EST's `/cacerts` and enrollment responses carry them (RFC 7030).

use super::cert::certificate_ders;
use super::der::{self as w, SEQUENCE, SET};
use crate::{Error, Result};

/// DER of OID id-signedData.
const OID_SIGNED_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
];
/// DER of OID id-data.
const OID_DATA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01,
];

/// A degenerate SignedData holding `certs` (DER), in the order given.
pub fn certs_only(certs: &[Vec<u8>]) -> Vec<u8> {
    let all: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
    let signed = w::tlv_of(
        SEQUENCE,
        &[
            &w::uint_u64(1),
            &w::tlv(SET, &[]),
            &w::tlv(SEQUENCE, OID_DATA),
            &w::tlv_of(w::ctx(0), &all),
            &w::tlv(SET, &[]),
        ],
    );
    w::tlv_of(SEQUENCE, &[OID_SIGNED_DATA, &w::tlv(w::ctx(0), &signed)])
}

/// [`certs_only`] of every certificate in a PEM text.
pub fn certs_only_from_pem(pem_text: &str) -> Result<Vec<u8>> {
    let ders = certificate_ders(pem_text, "certificate chain")?;
    if ders.is_empty() {
        return Err(Error::internal(
            "no certificate to put into the PKCS#7 bundle",
        ));
    }
    Ok(certs_only(&ders))
}
