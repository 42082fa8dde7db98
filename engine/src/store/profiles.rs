//! Certificate profiles, stored as JSON bodies (they are read whole and rarely).

use super::{Store, Tx, json_col, to_json, with_db, with_tx};
use crate::domain::Profile;
use crate::error::Result;

impl Store {
    pub async fn list_profiles(&self) -> Result<Vec<Profile>> {
        let rows: Vec<String> = with_db!(&self.db, |p| {
            sqlx::query_scalar("SELECT body FROM profiles ORDER BY name, id")
                .fetch_all(p)
                .await?
        });
        rows.iter().map(|b| json_col(b, "profile")).collect()
    }
}

impl Tx {
    pub async fn profile(&mut self, id: &str) -> Result<Option<Profile>> {
        let row: Option<String> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT body FROM profiles WHERE id = $1")
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(|b| json_col(&b, "profile")).transpose()
    }

    /// Inserts or replaces a profile.
    pub async fn upsert_profile(&mut self, p: &Profile) -> Result<()> {
        let body = to_json(p)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO profiles (id, name, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, body = excluded.body, \
                 updated_at = excluded.updated_at",
            )
            .bind(&p.id)
            .bind(&p.name)
            .bind(&body)
            .bind(p.created_at)
            .bind(p.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn profile_in_use(&mut self, id: &str) -> Result<bool> {
        let n: i64 = with_tx!(self, |c| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM (SELECT 1 FROM certificates WHERE profile_id = $1 LIMIT 1) t",
            )
            .bind(id)
            .fetch_one(c)
            .await?
        });
        Ok(n > 0)
    }

    pub async fn delete_profile(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query("DELETE FROM profiles WHERE id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
