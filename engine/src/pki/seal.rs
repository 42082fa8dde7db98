//! Private keys at rest.
//!
//! CA keys are stored in the database sealed with a master key that lives
//! outside the database (a file or a secret store). A stolen database backup
//! alone therefore does not yield a usable CA key.
//!
//! The format is deliberately simple and versioned: `"v1:" + base64(nonce ||
//! ciphertext || tag)`, AES-256-GCM with a random 96-bit nonce. The caller's
//! `context` string is the additional authenticated data, so a sealed key
//! copied into another row (say, the root key into the issuing key's slot)
//! fails to open instead of silently being used for the wrong purpose.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// Length of the master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// Prefix of the current sealing format. A future format gets a new prefix so
/// old rows keep opening.
const V1_PREFIX: &str = "v1:";

/// Length of the GCM authentication tag appended to the ciphertext.
const TAG_LEN: usize = 16;

/// The one message for every failure to open: telling an attacker (or a log
/// reader) *which* check failed would not help the operator either, since the
/// fix is the same: use the right master key or restore the data.
const OPEN_FAILED: &str = "sealed key could not be decrypted: wrong master key or corrupted data";

/// The key that seals CA private keys at rest.
pub struct MasterKey(Zeroizing<[u8; MASTER_KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A new random master key (for first start-up or tests).
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        aws_lc_rs::rand::fill(bytes.as_mut())
            .map_err(|_| Error::internal("random number generator failed"))?;
        Ok(Self(bytes))
    }

    /// A master key from exactly 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != MASTER_KEY_LEN {
            return Err(Error::invalid(format!(
                "master key must be exactly {MASTER_KEY_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// A master key from standard base64 (as written by [`MasterKey::to_base64`]).
    /// Surrounding whitespace (a trailing newline in a key file) is ignored.
    pub fn from_base64(encoded: &str) -> Result<Self> {
        let bytes = Zeroizing::new(
            B64.decode(encoded.trim())
                .map_err(|_| Error::invalid("master key is not valid base64"))?,
        );
        Self::from_bytes(&bytes)
    }

    /// The key as standard base64, for writing a key file. Zeroized on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.0.as_ref()))
    }

    /// A subkey for one purpose: HMAC-SHA256(master, "certctl/" + purpose).
    /// Distinct purposes give independent keys; the master key stays here.
    pub fn derive(&self, purpose: &str) -> Zeroizing<Vec<u8>> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.0.as_ref());
        let tag = aws_lc_rs::hmac::sign(&key, format!("certctl/{purpose}").as_bytes());
        Zeroizing::new(tag.as_ref().to_vec())
    }

    fn aead_key(&self) -> Result<LessSafeKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, self.0.as_ref())
            .map_err(|_| Error::internal("AES-256-GCM key setup failed"))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. `"iss-local/issuing"`).
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Result<String> {
        let key = self.aead_key()?;
        let mut nonce_bytes = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce_bytes)
            .map_err(|_| Error::internal("random number generator failed"))?;

        // The buffer briefly holds the plaintext, so it is zeroized like the key, and
        // sized up front so appending the tag never reallocates and leaves a stray copy.
        let mut body = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        body.extend_from_slice(plaintext);
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(context.as_bytes()),
            &mut *body,
        )
        .map_err(|_| Error::internal("AES-256-GCM sealing failed"))?;

        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&body);
        Ok(format!("{V1_PREFIX}{}", B64.encode(out)))
    }

    /// Decrypts a value produced by [`MasterKey::seal`] with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Zeroizing<Vec<u8>>> {
        let encoded = sealed
            .trim()
            .strip_prefix(V1_PREFIX)
            .ok_or_else(|| Error::invalid("sealed key has an unknown format (expected \"v1:\")"))?;
        let raw = B64
            .decode(encoded)
            .map_err(|_| Error::invalid(OPEN_FAILED))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::invalid(OPEN_FAILED));
        }
        let (nonce_bytes, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes)
            .map_err(|_| Error::invalid(OPEN_FAILED))?;

        let key = self.aead_key()?;
        let mut buf = Zeroizing::new(ciphertext.to_vec());
        let plain_len = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| Error::invalid(OPEN_FAILED))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_open_failure(err: &Error) -> bool {
        matches!(err, Error::InvalidInput(m) if m == OPEN_FAILED)
    }

    #[test]
    fn round_trip() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"secret key bytes", "iss-local/issuing").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("secret"));
        let opened = key.open(&sealed, "iss-local/issuing").unwrap();
        assert_eq!(opened.as_slice(), b"secret key bytes");
        // Nonces are random, so sealing twice gives different output.
        assert_ne!(
            sealed,
            key.seal(b"secret key bytes", "iss-local/issuing").unwrap()
        );
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"", "ctx").unwrap();
        assert!(key.open(&sealed, "ctx").unwrap().is_empty());
    }

    #[test]
    fn wrong_context_fails() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"k", "iss-local/root").unwrap();
        let err = key.open(&sealed, "iss-local/issuing").unwrap_err();
        assert!(is_open_failure(&err), "{err:?}");
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"some private key", "ctx").unwrap();
        let mut raw = B64.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 0x01;
            let tampered = format!("v1:{}", B64.encode(&raw));
            let err = key.open(&tampered, "ctx").unwrap_err();
            assert!(is_open_failure(&err), "byte {i}: {err:?}");
            raw[i] ^= 0x01;
        }
        // Truncation and garbage never panic.
        assert!(is_open_failure(&key.open("v1:AAAA", "ctx").unwrap_err()));
        assert!(is_open_failure(&key.open("v1:%%%", "ctx").unwrap_err()));
        assert!(matches!(
            key.open("v2:AAAA", "ctx"),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn wrong_key_fails() {
        let key = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let sealed = key.seal(b"k", "ctx").unwrap();
        assert!(is_open_failure(&other.open(&sealed, "ctx").unwrap_err()));
    }

    #[test]
    fn base64_round_trip_and_validation() {
        let key = MasterKey::generate().unwrap();
        let encoded = key.to_base64();
        let again = MasterKey::from_base64(&format!("  {}\n", encoded.as_str())).unwrap();
        let sealed = key.seal(b"x", "c").unwrap();
        assert_eq!(again.open(&sealed, "c").unwrap().as_slice(), b"x");

        assert!(matches!(
            MasterKey::from_bytes(&[0u8; 31]),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            MasterKey::from_base64("AAAA"),
            Err(Error::InvalidInput(_))
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }
}
