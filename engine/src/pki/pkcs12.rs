//! PKCS#12 export with the `p12-keystore` crate: AES-256-CBC with PBKDF2
//! (PBES2) and an HMAC-SHA256 MAC, which OpenSSL 3 opens without the legacy
//! provider.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};

use super::cert::certificate_ders;
use super::pem;
use crate::{Error, Result};

/// Shortest password accepted for a PKCS#12 file.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted (bounds the key-derivation input).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Checks a caller-chosen export password.
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(Error::invalid(format!(
            "the PKCS#12 password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// A PKCS#12 file with the leaf, its chain and, when given, its private key
/// (a PKCS#8 PEM). `alias` becomes the friendly name.
pub fn build(
    cert_pem: &str,
    chain_pem: &str,
    key_pkcs8_pem: Option<&str>,
    alias: &str,
    password: &str,
) -> Result<Vec<u8>> {
    check_password(password)?;
    let mut ders = certificate_ders(cert_pem, "certificate")?;
    ders.extend(certificate_ders(chain_pem, "certificate chain")?);
    let certs = ders
        .iter()
        .map(|d| Certificate::from_der(d))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::internal("a stored certificate could not be read for PKCS#12"))?;
    let mut store = KeyStore::new();
    match key_pkcs8_pem {
        Some(key_pem) => {
            let block = pem::parse_blocks(key_pem, "private key")?
                .into_iter()
                .find(|b| b.label == "PRIVATE KEY")
                .ok_or_else(|| Error::internal("the stored private key is not PKCS#8"))?;
            let key = PrivateKey::from_der(&block.der)
                .map_err(|_| Error::internal("the stored private key could not be read"))?;
            let key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &ders[0]);
            let chain = PrivateKeyChain::new(key_id.as_ref(), key, certs);
            store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(chain));
        }
        None => {
            for (i, cert) in certs.into_iter().enumerate() {
                let name = if i == 0 {
                    alias.to_owned()
                } else {
                    format!("{alias}-ca{i}")
                };
                store.add_entry(&name, KeyStoreEntry::Certificate(cert));
            }
        }
    }
    store
        .writer(password)
        .write()
        .map_err(|e| Error::internal(format!("writing the PKCS#12 file failed: {e}")))
}
