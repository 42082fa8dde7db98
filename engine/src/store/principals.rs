//! API principals. Keys are stored as SHA-256 hashes: they are long random
//! secrets, so a fast hash is enough and lookups stay O(1).

use super::{Store, Tx, enum_col, safe, with_db, with_tx};
use crate::domain::{ApiPrincipal, Role};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct PrincipalRow {
    id: String,
    name: String,
    role: String,
    agent_id: Option<String>,
    key_prefix: String,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, name, role, agent_id, key_prefix, created_at, revoked_at, last_used_at";

impl PrincipalRow {
    fn into_domain(self) -> Result<ApiPrincipal> {
        Ok(ApiPrincipal {
            role: enum_col(&self.role, Role::parse, "role")?,
            id: self.id,
            name: self.name,
            agent_id: self.agent_id,
            key_prefix: self.key_prefix,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        })
    }
}

impl Store {
    /// The unrevoked principal whose key hashes to `key_hash`.
    pub async fn principal_by_key_hash(&self, key_hash: &str) -> Result<Option<ApiPrincipal>> {
        let sql =
            format!("SELECT {COLUMNS} FROM principals WHERE key_hash = $1 AND revoked_at IS NULL");
        let row: Option<PrincipalRow> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(&sql))
                .bind(key_hash)
                .fetch_optional(p)
                .await?
        });
        row.map(PrincipalRow::into_domain).transpose()
    }

    pub async fn list_principals(&self) -> Result<Vec<ApiPrincipal>> {
        let sql = format!("SELECT {COLUMNS} FROM principals ORDER BY name, id");
        let rows: Vec<PrincipalRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(PrincipalRow::into_domain).collect()
    }
}

impl Tx {
    pub async fn insert_principal(&mut self, p: &ApiPrincipal, key_hash: &str) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO principals (id, name, role, agent_id, key_hash, key_prefix, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&p.id)
            .bind(&p.name)
            .bind(p.role.as_str())
            .bind(&p.agent_id)
            .bind(key_hash)
            .bind(&p.key_prefix)
            .bind(p.created_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn revoke_principal(&mut self, id: &str, now: i64) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE principals SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}
