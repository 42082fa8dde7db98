//! The audit chain. Appends are serialized (SQLite's write lock, a PostgreSQL
//! transaction-scoped advisory lock) so each event links to the one before.

use super::{Backend, Store, Tx, enum_col, json_col, safe, with_db, with_tx};
use crate::domain::audit::{GENESIS_HASH, chain_hash};
use crate::domain::{AuditEvent, ChainVerification, Outcome};
use crate::error::Result;

/// Advisory lock key for the audit chain on PostgreSQL ("certctl" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x0063_6572_7463_746c;

/// An event to append; the store assigns `seq` and the hashes.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub actor_role: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    seq: i64,
    id: String,
    at: i64,
    actor: String,
    actor_role: String,
    action: String,
    resource_type: String,
    resource_id: Option<String>,
    outcome: String,
    details: String,
    prev_hash: String,
    hash: String,
}

const COLUMNS: &str = "seq, id, at, actor, actor_role, action, resource_type, resource_id, \
    outcome, details, prev_hash, hash";

impl AuditRow {
    fn expected_hash(&self) -> String {
        chain_hash(
            self.seq,
            &self.id,
            self.at,
            &self.actor,
            &self.actor_role,
            &self.action,
            &self.resource_type,
            self.resource_id.as_deref(),
            &self.outcome,
            &self.details,
            &self.prev_hash,
        )
    }

    fn into_domain(self) -> Result<AuditEvent> {
        Ok(AuditEvent {
            outcome: enum_col(&self.outcome, Outcome::parse, "audit outcome")?,
            details: json_col(&self.details, "audit details")?,
            seq: self.seq,
            id: self.id,
            at: self.at,
            actor: self.actor,
            actor_role: self.actor_role,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// Filters for reading the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    /// Only events with `seq` below this (for paging backwards).
    pub before_seq: Option<i64>,
    /// Only events at or after this time.
    pub at_after: Option<i64>,
    /// Only events before this time.
    pub at_before: Option<i64>,
    /// Rows to skip (offset pages).
    pub offset: i64,
}

impl Store {
    /// Newest first.
    pub async fn list_audit(&self, f: &AuditFilter, limit: i64) -> Result<Vec<AuditEvent>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE ($1 IS NULL OR actor = $1) \
             AND ($2 IS NULL OR resource_id = $2) AND ($3 IS NULL OR action = $3) \
             AND ($4 IS NULL OR seq < $4) AND ($5 IS NULL OR at >= $5) \
             AND ($6 IS NULL OR at < $6) ORDER BY seq DESC LIMIT $7 OFFSET $8"
        );
        let rows: Vec<AuditRow> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(&sql))
                .bind(&f.actor)
                .bind(&f.resource_id)
                .bind(&f.action)
                .bind(f.before_seq)
                .bind(f.at_after)
                .bind(f.at_before)
                .bind(limit)
                .bind(f.offset.max(0))
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(AuditRow::into_domain).collect()
    }

    /// Recomputes every hash and link, in batches, from the first event.
    pub async fn verify_audit_chain(&self) -> Result<ChainVerification> {
        const BATCH: i64 = 5000;
        let sql =
            format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        let mut last_seq = 0i64;
        let mut prev = GENESIS_HASH.to_owned();
        let mut checked = 0i64;
        loop {
            let rows: Vec<AuditRow> = with_db!(&self.db, |p| {
                sqlx::query_as(safe(&sql))
                    .bind(last_seq)
                    .bind(BATCH)
                    .fetch_all(p)
                    .await?
            });
            if rows.is_empty() {
                return Ok(ChainVerification {
                    valid: true,
                    checked,
                    first_broken_seq: None,
                    reason: None,
                });
            }
            for r in &rows {
                let broken = |reason: &str| ChainVerification {
                    valid: false,
                    checked,
                    first_broken_seq: Some(r.seq),
                    reason: Some(reason.to_owned()),
                };
                if r.seq != last_seq + 1 {
                    return Ok(broken("an event is missing before this one"));
                }
                if r.prev_hash != prev {
                    return Ok(broken("prev_hash does not match the previous event's hash"));
                }
                if r.hash != r.expected_hash() {
                    return Ok(broken("the event's content does not match its hash"));
                }
                checked += 1;
                last_seq = r.seq;
                prev = r.hash.clone();
            }
        }
    }
}

impl Tx {
    /// Appends an event to the chain inside this transaction.
    pub async fn append_audit(&mut self, e: &NewAuditEvent) -> Result<AuditEvent> {
        if self.backend == Backend::Postgres {
            with_tx!(self, |c| {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(AUDIT_LOCK_KEY)
                    .execute(c)
                    .await?;
            });
        }
        let last: Option<(i64, String)> = with_tx!(self, |c| {
            sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(c)
                .await?
        });
        let (seq, prev_hash) = match last {
            Some((s, h)) => (s + 1, h),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let details = serde_json::to_string(&e.details).unwrap_or_else(|_| "{}".into());
        let row = AuditRow {
            seq,
            id: e.id.clone(),
            at: e.at,
            actor: e.actor.clone(),
            actor_role: e.actor_role.clone(),
            action: e.action.clone(),
            resource_type: e.resource_type.clone(),
            resource_id: e.resource_id.clone(),
            outcome: e.outcome.as_str().to_owned(),
            details,
            prev_hash,
            hash: String::new(),
        };
        let row = AuditRow {
            hash: row.expected_hash(),
            ..row
        };
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO audit_events (seq, id, at, actor, actor_role, action, resource_type, \
                 resource_id, outcome, details, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(row.seq)
            .bind(&row.id)
            .bind(row.at)
            .bind(&row.actor)
            .bind(&row.actor_role)
            .bind(&row.action)
            .bind(&row.resource_type)
            .bind(&row.resource_id)
            .bind(&row.outcome)
            .bind(&row.details)
            .bind(&row.prev_hash)
            .bind(&row.hash)
            .execute(c)
            .await?;
        });
        row.into_domain()
    }
}
