//! A small key/value table for installation facts (bootstrap markers).

use super::{Store, Tx, with_db, with_tx};
use crate::error::Result;

impl Store {
    pub async fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(with_db!(&self.db, |p| {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await?
        }))
    }
}

impl Tx {
    /// Sets a key only if it is not set yet; returns whether this call set it.
    pub async fn meta_insert_once(&mut self, key: &str, value: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}
