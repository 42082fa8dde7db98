//! Lookups for importing certificates that were issued elsewhere.

use super::{Tx, with_tx};
use crate::error::Result;

impl Tx {
    /// The certificate that already holds a version with this SHA-256
    /// fingerprint, if any (imports are idempotent by fingerprint).
    pub async fn certificate_with_fingerprint(
        &mut self,
        fingerprint: &str,
    ) -> Result<Option<String>> {
        let id: Option<String> = with_tx!(self, |c| {
            sqlx::query_scalar(
                "SELECT certificate_id FROM certificate_versions WHERE fingerprint = $1 LIMIT 1",
            )
            .bind(fingerprint)
            .fetch_optional(c)
            .await?
        });
        Ok(id)
    }

    /// Whether `issuer_id` already has a version with this serial.
    pub async fn serial_taken(&mut self, issuer_id: &str, serial: &str) -> Result<bool> {
        let n: i64 = with_tx!(self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM certificate_versions WHERE issuer_id = $1 AND serial = $2",
            )
            .bind(issuer_id)
            .bind(serial)
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
    }
}
