//! A small, strict-enough PEM reader shared by the CSR, key and certificate
//! parsers.
//!
//! We read PEM ourselves rather than through x509-parser's reader so that
//! every failure maps to a short message of our own, indented or CRLF input
//! from copy-paste is accepted, and `-----BEGIN X-----` / `-----END X-----`
//! labels are checked to match.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// One decoded PEM block.
pub(crate) struct PemBlock {
    pub label: String,
    /// Zeroized on drop: blocks may hold private keys.
    pub der: Zeroizing<Vec<u8>>,
}

/// Whether the text looks like PEM at all (as opposed to bare base64).
pub(crate) fn looks_like_pem(input: &str) -> bool {
    input.contains("-----BEGIN ")
}

/// All PEM blocks in `input`, in order. Text outside blocks is ignored (OpenSSL
/// writes human-readable dumps before certificates). `what` names the input in
/// error messages ("certificate chain", "private key").
pub(crate) fn parse_blocks(input: &str, what: &str) -> Result<Vec<PemBlock>> {
    let mut blocks = Vec::new();
    let mut lines = input.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for inner in lines.by_ref() {
            if inner == end {
                closed = true;
                break;
            }
            // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted key, which we
            // cannot use; say so instead of failing on base64.
            if inner.contains(':') {
                return Err(Error::invalid(format!(
                    "{what}: encrypted or header-carrying PEM is not supported; provide an unencrypted PEM"
                )));
            }
            body.push_str(inner);
        }
        if !closed {
            return Err(Error::invalid(format!(
                "{what}: PEM block \"{label}\" has no END line"
            )));
        }
        let der = decode_base64(&body).ok_or_else(|| {
            Error::invalid(format!("{what}: PEM block \"{label}\" is not valid base64"))
        })?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der,
        });
    }
    Ok(blocks)
}

/// Decodes standard base64, ignoring whitespace and line breaks anywhere
/// (EST clients wrap at 64 or 76 columns) and tolerating missing padding.
pub(crate) fn decode_base64(input: &str) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<String> =
        Zeroizing::new(input.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    if compact.is_empty() {
        return None;
    }
    STANDARD
        .decode(compact.as_bytes())
        .or_else(|_| STANDARD_NO_PAD.decode(compact.as_bytes()))
        .ok()
        .map(Zeroizing::new)
}

/// Encodes DER as a PEM block with 64-column lines and a trailing newline.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 output is ASCII, so splitting on byte boundaries is safe.
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tolerance() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        // Indented, CRLF, with text around it.
        let messy = format!(
            "subject=CN=x\r\n  {}\r\ntrailer",
            pem.replace('\n', "\r\n  ")
        );
        let blocks = parse_blocks(&messy, "test").unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der.as_slice(), der.as_slice());
        let two = format!("{pem}{}", encode("PRIVATE KEY", b"k"));
        let labels: Vec<_> = parse_blocks(&two, "t")
            .unwrap()
            .into_iter()
            .map(|b| b.label)
            .collect();
        assert_eq!(labels, ["CERTIFICATE", "PRIVATE KEY"]);
    }

    #[test]
    fn malformed_blocks_are_invalid_input() {
        let unclosed = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(matches!(
            parse_blocks(unclosed, "t"),
            Err(Error::InvalidInput(_))
        ));
        let mismatched = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            parse_blocks(mismatched, "t"),
            Err(Error::InvalidInput(_))
        ));
        let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_blocks(bad, "t"),
            Err(Error::InvalidInput(_))
        ));
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            parse_blocks(encrypted, "t"),
            Err(Error::InvalidInput(_))
        ));
        assert!(parse_blocks("no pem here", "t").unwrap().is_empty());
        assert!(decode_base64(" \n ").is_none());
        assert_eq!(decode_base64("AAE").unwrap().as_slice(), &[0, 1]);
    }
}
