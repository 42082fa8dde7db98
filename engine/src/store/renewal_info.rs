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
    /// due, the longest-waiting first. The ACME issuers are looked up first
    /// and each is searched through the `(issuer_id, ari_next_check_at)`
    /// index: a join driven from the certificates would walk every active
    /// one (seconds at a million), and a fleet without ACME costs one tiny query.
    pub async fn ari_due(&self, now: i64, limit: i64) -> Result<Vec<AriDue>> {
        const ISSUERS: &str = "SELECT id FROM issuers WHERE kind = 'acme' ORDER BY id";
        const DUE: &str = "SELECT c.id AS certificate_id, c.issuer_id, v.id AS version_id, \
             v.cert_pem, c.renew_after \
             FROM certificates c JOIN certificate_versions v ON v.id = c.current_version_id \
             WHERE c.issuer_id = $1 AND c.ari_next_check_at <= $2 AND c.status = 'active' \
             ORDER BY c.ari_next_check_at, c.id LIMIT $3";
        let issuers: Vec<(String,)> =
            with_db!(&self.db, |p| sqlx::query_as(ISSUERS).fetch_all(p).await?);
        let mut due: Vec<AriDue> = Vec::new();
        for (issuer,) in issuers {
            let left = limit - due.len() as i64;
            if left <= 0 {
                break;
            }
            let rows: Vec<AriDue> = with_db!(&self.db, |p| sqlx::query_as(DUE)
                .bind(&issuer)
                .bind(now)
                .bind(left)
                .fetch_all(p)
                .await?);
            due.extend(rows);
        }
        Ok(due)
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
