//! API principals. Keys are stored as SHA-256 hashes: they are long random
//! secrets, so a fast hash is enough and lookups stay O(1).

use super::{Store, Tx, enum_col, safe, with_db, with_tx};
use crate::clock::UnixTime;
use crate::domain::{ApiPrincipal, Role};
use crate::error::Result;

/// How long a looked-up key is trusted without asking the database again,
/// in seconds of the engine's clock: an entry read at second `t` serves
/// while the clock still reads `t`, and never longer than one second of real
/// time (see `second_cache`). A key revoked through this process stops
/// working at once (its commit clears the cache); one revoked through
/// another replica stops working here within this bound.
pub const PRINCIPAL_CACHE_SECONDS: i64 = 1;

/// Most keys remembered at once; past it the cache starts over.
const PRINCIPAL_CACHE_ENTRIES: usize = 10_000;

/// Principals of recently presented keys, by key hash. Every API request
/// authenticates; without the cache that is a database round trip per
/// request for a row that almost never changes.
pub(crate) type PrincipalCache = super::second_cache::SecondCache<ApiPrincipal>;

pub(crate) fn principal_cache() -> PrincipalCache {
    PrincipalCache::new(PRINCIPAL_CACHE_ENTRIES)
}

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

    /// [`Store::principal_by_key_hash`] through the cache (see
    /// [`PRINCIPAL_CACHE_SECONDS`] for how fresh it is); `now` is the engine's clock.
    pub async fn principal_by_key_hash_cached(
        &self,
        key_hash: &str,
        now: UnixTime,
    ) -> Result<Option<ApiPrincipal>> {
        if let Some(p) = self.principals.get(key_hash, now) {
            return Ok(Some(p));
        }
        let generation = self.principals.generation();
        let p = self.principal_by_key_hash(key_hash).await?;
        if let Some(p) = &p {
            self.principals.put(key_hash, now, p.clone(), generation);
        }
        Ok(p)
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
        self.touch_principals();
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(id: &str) -> ApiPrincipal {
        ApiPrincipal {
            id: id.into(),
            name: id.into(),
            role: Role::Viewer,
            agent_id: None,
            key_prefix: "cck_".into(),
            created_at: 0,
            revoked_at: None,
            last_used_at: None,
        }
    }

    #[test]
    fn entries_serve_within_their_second_and_die_on_invalidation() {
        let c = principal_cache();
        let g = c.generation();
        c.put("h", 100, principal("pr-a"), g);
        assert_eq!(c.get("h", 100).map(|p| p.id), Some("pr-a".into()));
        assert!(c.get("h", 101).is_none(), "older than the bound");
        c.invalidate();
        assert!(c.get("h", 100).is_none(), "a revocation clears the cache");
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_stored() {
        let c = principal_cache();
        // The lookup read the row, then a revocation committed.
        let g = c.generation();
        c.invalidate();
        c.put("h", 100, principal("pr-a"), g);
        assert!(c.get("h", 100).is_none());
    }
}
