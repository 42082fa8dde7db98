//! A minimal DER writer for the structures certctl signs itself (CRLs, OCSP
//! responses, PKCS#7 certs-only bundles). They have fixed shapes, and the CRL
//! splices pre-encoded entries in as raw bytes, which a typed encoder would
//! re-encode one by one. Parsing untrusted DER is never done here: requests
//! are read with the RustCrypto `x509-ocsp`/`der` crates and x509-parser.

use time::OffsetDateTime;

use crate::{Error, Result};

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const ENUMERATED: u8 = 0x0a;
pub(crate) const UTC_TIME: u8 = 0x17;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;

/// Context-specific constructed tag `[n]`.
pub(crate) const fn ctx(n: u8) -> u8 {
    0xa0 | n
}

/// Appends a tag and a definite length.
pub(crate) fn header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// One TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    header(&mut out, tag, content.len());
    out.extend_from_slice(content);
    out
}

/// A TLV whose content is several pieces, concatenated.
pub(crate) fn tlv_of(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    header(&mut out, tag, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes.
pub(crate) fn uint(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let m = magnitude.get(start..).unwrap_or(&[0]);
    let m = if m.is_empty() { &[0u8][..] } else { m };
    if m[0] & 0x80 != 0 {
        tlv_of(INTEGER, &[&[0], m])
    } else {
        tlv(INTEGER, m)
    }
}

pub(crate) fn uint_u64(n: u64) -> Vec<u8> {
    uint(&n.to_be_bytes())
}

/// A BIT STRING with no unused bits.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv_of(BIT_STRING, &[&[0], bytes])
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ`.
pub(crate) fn generalized_time(unix: i64) -> Result<Vec<u8>> {
    let t = datetime(unix)?;
    let s = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    Ok(tlv(GENERALIZED_TIME, s.as_bytes()))
}

/// RFC 5280 Time: UTCTime through 2049, GeneralizedTime from 2050.
pub(crate) fn x509_time(unix: i64) -> Result<Vec<u8>> {
    let t = datetime(unix)?;
    if (1950..2050).contains(&t.year()) {
        let s = format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year() % 100,
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        Ok(tlv(UTC_TIME, s.as_bytes()))
    } else {
        generalized_time(unix)
    }
}

fn datetime(unix: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|_| Error::invalid(format!("time {unix} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers() {
        assert_eq!(tlv(OCTET_STRING, &[1, 2]), vec![4, 2, 1, 2]);
        let long = tlv(OCTET_STRING, &[0; 300]);
        assert_eq!(&long[..4], &[4, 0x82, 0x01, 0x2c]);
        let huge = tlv(OCTET_STRING, &vec![0; 70_000]);
        assert_eq!(&huge[..5], &[4, 0x83, 0x01, 0x11, 0x70]);
        assert_eq!(uint(&[0x00, 0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(uint(&[0x00, 0x00, 0x01]), vec![2, 1, 1]);
        assert_eq!(uint_u64(0), vec![2, 1, 0]);
        assert_eq!(uint_u64(256), vec![2, 2, 1, 0]);
    }

    #[test]
    fn times() {
        assert_eq!(
            x509_time(0).unwrap(),
            tlv(UTC_TIME, b"700101000000Z").to_vec()
        );
        assert_eq!(
            generalized_time(2_524_608_000).unwrap(),
            tlv(GENERALIZED_TIME, b"20500101000000Z").to_vec()
        );
        assert_eq!(
            x509_time(2_524_608_000).unwrap(),
            tlv(GENERALIZED_TIME, b"20500101000000Z").to_vec()
        );
    }
}
