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

    /// Records that `owner` runs tick `tick` of loop `name` (a durable
    /// trace of which process ran which tick), and prunes that loop's rows
    /// older than a day.
    pub async fn record_loop_run(
        &self,
        name: &str,
        tick: i64,
        owner: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        with_tx!(tx, |c| {
            sqlx::query("DELETE FROM loop_runs WHERE loop_name = $1 AND started_at < $2")
                .bind(name)
                .bind(now - LOOP_RUNS_KEPT_SECONDS)
                .execute(&mut *c)
                .await?;
            sqlx::query(
                "INSERT INTO loop_runs (loop_name, tick, owner, started_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(name)
            .bind(tick)
            .bind(owner)
            .bind(now)
            .execute(&mut *c)
            .await?;
        });
        tx.commit().await
    }
}

/// How long loop run records are kept.
const LOOP_RUNS_KEPT_SECONDS: i64 = 86_400;
