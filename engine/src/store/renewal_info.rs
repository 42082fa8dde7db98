//! Rows for ACME Renewal Information (RFC 9773): which ACME certificates are
//! due for a look at their CA's suggested renewal window, and recording what
//! the CA said.

use super::{Store, Tx, with_db, with_tx};
use crate::error::Result;

/// An ACME-issued certificate whose renewal window should be asked for.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AriDue {
    pub certificate_id: String,
    pub issuer_id: String,
    pub version_id: String,
    pub cert_pem: String,
    pub renew_after: Option<i64>,
}

impl Store {
    /// Up to `limit` active certificates of ACME issuers whose next check is
    /// due, the longest-waiting first (index on `(issuer_id, ari_next_check_at)`).
    pub async fn ari_due(&self, now: i64, limit: i64) -> Result<Vec<AriDue>> {
        const SQL: &str = "SELECT c.id AS certificate_id, c.issuer_id, v.id AS version_id, \
             v.cert_pem, c.renew_after \
             FROM issuers i \
             JOIN certificates c ON c.issuer_id = i.id \
             JOIN certificate_versions v ON v.id = c.current_version_id \
             WHERE i.kind = 'acme' AND c.status = 'active' AND c.ari_next_check_at <= $1 \
             ORDER BY c.ari_next_check_at, c.id LIMIT $2";
        Ok(with_db!(&self.db, |p| sqlx::query_as(SQL)
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await?))
    }
}

impl Tx {
    /// Records the outcome of one check for the version it was made for:
    /// the next check time and, when the CA suggested a window, the renewal
    /// time chosen in it. False when a new version was recorded meanwhile.
    pub async fn record_ari_check(
        &mut self,
        certificate_id: &str,
        version_id: &str,
        renew_after: Option<i64>,
        next_check_at: i64,
    ) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE certificates SET ari_next_check_at = $1, \
                 renew_after = COALESCE($2, renew_after) \
                 WHERE id = $3 AND current_version_id = $4",
            )
            .bind(next_check_at)
            .bind(renew_after)
            .bind(certificate_id)
            .bind(version_id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}
