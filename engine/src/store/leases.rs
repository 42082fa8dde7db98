//! Leases for singleton loops: several processes on one database, each loop
//! run by one of them at a time. A lease is a row (name, owner, expiry); it
//! is taken or renewed with one conditional upsert, so there is no
//! home-made consensus, only the database's own atomicity.

use super::{Store, with_tx};
use crate::error::Result;

impl Store {
    /// Takes or renews the lease `name` for `owner` until `now + ttl`.
    /// Succeeds when the lease is free, expired, or already `owner`'s.
    pub async fn acquire_lease(&self, name: &str, owner: &str, now: i64, ttl: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = with_tx!(tx, |c| {
            sqlx::query(
                "INSERT INTO loop_leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
                 WHERE loop_leases.owner = excluded.owner OR loop_leases.expires_at <= $4",
            )
            .bind(name)
            .bind(owner)
            .bind(now + ttl)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Gives the lease up (at shutdown), so another process can take it at once.
    pub async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        with_tx!(tx, |c| {
            sqlx::query("DELETE FROM loop_leases WHERE name = $1 AND owner = $2")
                .bind(name)
                .bind(owner)
                .execute(c)
                .await?;
        });
        tx.commit().await
    }
}
