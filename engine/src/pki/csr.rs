//! Certificate signing requests: parse, verify the proof of possession, and
//! extract what the profile checks need (key type and names).
//!
//! We parse with x509-parser rather than rcgen's CSR parser because rcgen
//! refuses CSRs carrying extensions it does not know, and real clients
//! (Windows, EST devices, OpenSSL configs) routinely add some. Requested
//! extensions other than subjectAltName are ignored: the CA, not the
//! requester, decides what goes into a certificate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::pem;
use crate::domain::KeyAlgorithm;
use crate::{Error, Result};

/// The subject alternative names of a request or certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectNames {
    /// DNS names, lower-cased.
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// rfc822Name (e-mail) entries.
    pub emails: Vec<String>,
}

impl SubjectNames {
    /// Total number of names, as counted against a profile's `max_names`.
    pub fn len(&self) -> usize {
        self.dns.len() + self.ips.len() + self.emails.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A CSR whose signature has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCsr {
    /// The CSR as DER.
    pub der: Vec<u8>,
    /// Determined from the public key, not the signature algorithm.
    pub key_algorithm: KeyAlgorithm,
    /// The subject CN, if any. Not lower-cased: it need not be a DNS name.
    pub common_name: Option<String>,
    /// The requested subjectAltName entries (DNS, IP, e-mail).
    pub names: SubjectNames,
    /// The SubjectPublicKeyInfo DER, copied verbatim into the certificate.
    pub spki_der: Vec<u8>,
}

/// Parses a CSR given as PEM (`CERTIFICATE REQUEST` or `NEW CERTIFICATE
/// REQUEST`) or as bare base64 of the DER (as EST sends it, possibly wrapped).
pub fn parse_csr(input: &str) -> Result<ParsedCsr> {
    let der = if pem::looks_like_pem(input) {
        let blocks = pem::parse_blocks(input, "CSR")?;
        let block = blocks
            .into_iter()
            .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
            .ok_or_else(|| Error::invalid("CSR: no CERTIFICATE REQUEST PEM block found"))?;
        block.der
    } else {
        pem::decode_base64(input)
            .ok_or_else(|| Error::invalid("CSR is neither PEM nor base64-encoded DER"))?
    };
    parse_csr_der(&der)
}

/// Parses and verifies a DER-encoded CSR.
pub fn parse_csr_der(der: &[u8]) -> Result<ParsedCsr> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|_| Error::invalid("CSR is not a valid PKCS#10 certification request"))?;
    if !rest.is_empty() {
        return Err(Error::invalid("CSR has trailing data after the request"));
    }
    let info = &csr.certification_request_info;

    // Key type first, so an unsupported key (RSA-1024, P-521) gets a message about
    // the key rather than a generic signature failure.
    let key_algorithm = key_algorithm_of(&info.subject_pki)?;

    csr.verify_signature().map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => Error::invalid(format!(
            "CSR signature algorithm {} is not supported",
            csr.signature_algorithm.algorithm
        )),
        _ => Error::invalid("CSR signature does not verify"),
    })?;

    let common_name = info
        .subject
        .iter_common_name()
        .next()
        .map(|cn| {
            cn.as_str()
                .map(|s| s.trim().to_string())
                .map_err(|_| Error::invalid("CSR subject CN is not a readable string"))
        })
        .transpose()?
        .filter(|cn| !cn.is_empty());

    let mut names = SubjectNames::default();
    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                add_general_names(&mut names, &san.general_names, "CSR")?;
            }
        }
    }

    Ok(ParsedCsr {
        der: der.to_vec(),
        key_algorithm,
        common_name,
        names,
        spki_der: info.subject_pki.raw.to_vec(),
    })
}

/// The certctl key algorithm of a SubjectPublicKeyInfo, or a clear refusal.
pub(crate) fn key_algorithm_of(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyAlgorithm> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| Error::invalid("EC public key does not name a curve"))?;
        if curve == OID_EC_P256 {
            Ok(KeyAlgorithm::EcdsaP256)
        } else if curve == OID_NIST_EC_P384 {
            Ok(KeyAlgorithm::EcdsaP384)
        } else {
            Err(Error::invalid(format!(
                "EC curve {curve} is not supported; use P-256 (prime256v1) or P-384 (secp384r1)"
            )))
        }
    } else if *oid == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => return Err(Error::invalid("RSA public key is malformed")),
        };
        match bits {
            2048 => Ok(KeyAlgorithm::Rsa2048),
            3072 => Ok(KeyAlgorithm::Rsa3072),
            4096 => Ok(KeyAlgorithm::Rsa4096),
            other => Err(Error::invalid(format!(
                "RSA key size {other} is not supported; use 2048, 3072 or 4096"
            ))),
        }
    } else if *oid == OID_SIG_ED25519 {
        if spki.subject_public_key.data.len() != 32 {
            return Err(Error::invalid("Ed25519 public key must be 32 bytes"));
        }
        Ok(KeyAlgorithm::Ed25519)
    } else {
        Err(Error::invalid(format!(
            "public key algorithm {oid} is not supported; use ECDSA P-256/P-384, RSA or Ed25519"
        )))
    }
}

/// Bit length of a big-endian unsigned integer, ignoring DER's leading zero
/// bytes. (x509-parser's own `key_size` is off for moduli without a sign byte.)
fn modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(modulus.len());
    match modulus.get(start) {
        Some(&first) => (modulus.len() - start) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// Adds DNS, IP and e-mail entries to `names`. Other name types (URI,
/// otherName such as a Windows UPN) are dropped: they are never put into a
/// certificate, so they need no checking. Duplicates are removed.
pub(crate) fn add_general_names(
    names: &mut SubjectNames,
    general_names: &[GeneralName<'_>],
    what: &str,
) -> Result<()> {
    for name in general_names {
        match name {
            GeneralName::DNSName(dns) => {
                let dns = dns.trim().to_ascii_lowercase();
                if !names.dns.contains(&dns) {
                    names.dns.push(dns);
                }
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
                    16 => {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(bytes);
                        IpAddr::V6(Ipv6Addr::from(octets))
                    }
                    n => {
                        return Err(Error::invalid(format!(
                            "{what}: IP address SAN has {n} bytes (expected 4 or 16)"
                        )));
                    }
                };
                if !names.ips.contains(&ip) {
                    names.ips.push(ip);
                }
            }
            GeneralName::RFC822Name(email) => {
                let email = email.trim().to_string();
                if !names.emails.contains(&email) {
                    names.emails.push(email);
                }
            }
            GeneralName::Invalid(..) => {
                return Err(Error::invalid(format!(
                    "{what}: a subjectAltName entry is malformed"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use base64::Engine as _;

    use super::*;
    use crate::pki::keygen::{csr_for, generate_key};

    fn names(dns: &[&str]) -> SubjectNames {
        SubjectNames {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_pem_and_bare_base64() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let mut requested = names(&["WWW.Example.com", "example.com"]);
        requested.ips.push("192.0.2.1".parse().unwrap());
        requested.ips.push("2001:db8::1".parse().unwrap());
        requested.emails.push("ops@example.com".into());
        let pem_csr = csr_for(&key, "www.example.com", &requested).unwrap();

        let parsed = parse_csr(&pem_csr).unwrap();
        assert_eq!(parsed.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(parsed.common_name.as_deref(), Some("www.example.com"));
        assert_eq!(parsed.names.dns, ["www.example.com", "example.com"]);
        assert_eq!(parsed.names.ips, requested.ips);
        assert_eq!(parsed.names.emails, ["ops@example.com"]);
        assert_eq!(parsed.spki_der, key.spki_der);

        // Bare base64 with EST-style line wrapping, and the "NEW" label.
        let b64 = base64::engine::general_purpose::STANDARD.encode(&parsed.der);
        let wrapped: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\r\n", String::from_utf8_lossy(c)))
            .collect();
        assert_eq!(parse_csr(&wrapped).unwrap(), parsed);
        let new_label = pem_csr.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
        assert_eq!(parse_csr(&new_label).unwrap(), parsed);
    }

    #[test]
    fn flipped_signature_byte_is_refused() {
        let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
        let parsed = parse_csr(&csr_for(&key, "a", &names(&["a.example.com"])).unwrap()).unwrap();
        let mut der = parsed.der.clone();
        // The signature BIT STRING is the last element; flip a byte inside it.
        let last = der.len() - 5;
        der[last] ^= 0x40;
        let err = parse_csr_der(&der).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m == "CSR signature does not verify"),
            "{err:?}"
        );

        // Tampering with the signed content (a name) is caught too.
        let mut der = parsed.der.clone();
        let pos = der.windows(9).position(|w| w == b"a.example").unwrap();
        der[pos] = b'b';
        assert!(
            matches!(parse_csr_der(&der), Err(Error::InvalidInput(m)) if m == "CSR signature does not verify")
        );
    }

    #[test]
    fn detects_all_key_algorithms_from_the_public_key() {
        for alg in KeyAlgorithm::ALL {
            let key = generate_key(alg).unwrap();
            let parsed =
                parse_csr(&csr_for(&key, "x", &names(&["x.example.com"])).unwrap()).unwrap();
            assert_eq!(parsed.key_algorithm, alg);
            assert_eq!(parsed.spki_der, key.spki_der);
        }
    }

    fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn openssl_p384_csr_signed_with_sha256_is_p384() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-out",
                "p384.pem",
            ],
        );
        let csr = openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "p384.pem",
                "-subj",
                "/CN=x",
                "-addext",
                "subjectAltName=DNS:a.example.com,IP:10.0.0.1",
                "-addext",
                "1.2.3.4.5=ASN1:UTF8String:unknown extension",
            ],
        );
        let parsed = parse_csr(&csr).unwrap();
        assert_eq!(parsed.key_algorithm, KeyAlgorithm::EcdsaP384);
        assert_eq!(parsed.common_name.as_deref(), Some("x"));
        assert_eq!(parsed.names.dns, ["a.example.com"]);
        assert_eq!(parsed.names.ips, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn openssl_rsa_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa.pem",
            ],
        );
        let csr = openssl(d, &["req", "-new", "-key", "rsa.pem", "-subj", "/CN=rsa"]);
        let parsed = parse_csr(&csr).unwrap();
        assert_eq!(parsed.key_algorithm, KeyAlgorithm::Rsa2048);
        assert!(parsed.names.is_empty());

        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2560",
                "-out",
                "odd.pem",
            ],
        );
        let csr = openssl(d, &["req", "-new", "-key", "odd.pem", "-subj", "/CN=odd"]);
        let err = parse_csr(&csr).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m == "RSA key size 2560 is not supported; use 2048, 3072 or 4096"),
            "{err:?}"
        );
    }

    #[test]
    fn unsupported_curve_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-521",
                "-out",
                "k.pem",
            ],
        );
        let csr = openssl(d, &["req", "-new", "-key", "k.pem", "-subj", "/CN=x"]);
        let err = parse_csr(&csr).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("1.3.132.0.35") && m.contains("not supported")),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_is_invalid_input() {
        for input in [
            "",
            "hello world",
            "AAAA",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n",
        ] {
            assert!(
                matches!(parse_csr(input), Err(Error::InvalidInput(_))),
                "{input:?}"
            );
        }
        // Every truncation of a valid CSR fails cleanly.
        let key = generate_key(KeyAlgorithm::Ed25519).unwrap();
        let der = parse_csr(&csr_for(&key, "x", &names(&["x.example.com"])).unwrap())
            .unwrap()
            .der;
        for len in 0..der.len() {
            assert!(
                matches!(parse_csr_der(&der[..len]), Err(Error::InvalidInput(_))),
                "len {len}"
            );
        }
    }

    #[test]
    fn modulus_bit_length() {
        assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(modulus_bits(&[0x7f, 0x00]), 15);
        assert_eq!(modulus_bits(&[0x00]), 0);
        assert_eq!(modulus_bits(&[]), 0);
    }
}
