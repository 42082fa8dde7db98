//! The audit chain. Appends are serialized (SQLite's write lock, a PostgreSQL
//! transaction-scoped advisory lock) so each event links to the one before.

use std::collections::{BTreeSet, HashMap};

use super::{Backend, Store, Tx, TxInner, enum_col, json_col, safe, with_db, with_tx};
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

    /// Recomputes every hash and link, in batches, from the first event
    /// (the chain alone; `verify_audit_log` adds the signed checkpoints).
    pub async fn verify_audit_chain(&self) -> Result<ChainVerification> {
        let walk = self.walk_audit_chain(&Default::default()).await?;
        Ok(ChainVerification {
            valid: walk.first_broken.is_none(),
            checked: walk.checked,
            first_broken_seq: walk.first_broken.map(|(s, _)| s),
            reason: walk.first_broken.map(|(_, r)| r.to_owned()),
            findings: Vec::new(),
            checkpoints_verified: 0,
            anchored_through_seq: None,
            unanchored_events: 0,
        })
    }

    /// Walks the whole chain in batches, recomputing every hash and link,
    /// and keeps the id and hash of the events at `positions` (the heads of
    /// checkpoints). It goes on past a broken link, so a checkpoint beyond
    /// it is still compared with what is stored.
    pub async fn walk_audit_chain(&self, positions: &BTreeSet<i64>) -> Result<ChainWalk> {
        self.walk_audit_range(0, GENESIS_HASH, None, positions)
            .await
    }

    /// [`Store::walk_audit_chain`] over the events after `after_seq`, the
    /// first of which must link to `prev_hash`, up to `until` (inclusive).
    pub async fn walk_audit_range(
        &self,
        after_seq: i64,
        prev_hash: &str,
        until: Option<i64>,
        positions: &BTreeSet<i64>,
    ) -> Result<ChainWalk> {
        const BATCH: i64 = 5000;
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 AND ($2 IS NULL OR seq <= $2) \
             ORDER BY seq LIMIT $3"
        );
        let mut walk = ChainWalk {
            last_seq: after_seq,
            ..Default::default()
        };
        let mut prev = prev_hash.to_owned();
        loop {
            let rows: Vec<AuditRow> = with_db!(&self.db, |p| {
                sqlx::query_as(safe(&sql))
                    .bind(walk.last_seq)
                    .bind(until)
                    .bind(BATCH)
                    .fetch_all(p)
                    .await?
            });
            if rows.is_empty() {
                return Ok(walk);
            }
            for r in rows {
                let broken = if r.seq != walk.last_seq + 1 {
                    Some("an event is missing before this one")
                } else if r.prev_hash != prev {
                    Some("prev_hash does not match the previous event's hash")
                } else if r.hash != r.expected_hash() {
                    Some("the event's content does not match its hash")
                } else {
                    None
                };
                match (broken, walk.first_broken) {
                    (Some(reason), None) => walk.first_broken = Some((r.seq, reason)),
                    (None, None) => walk.checked += 1,
                    _ => {}
                }
                if positions.contains(&r.seq) {
                    walk.at_positions
                        .insert(r.seq, (r.id.clone(), r.hash.clone()));
                }
                walk.last_seq = r.seq;
                prev = r.hash;
            }
        }
    }
}

/// What a walk of the chain saw.
#[derive(Debug, Clone, Default)]
pub struct ChainWalk {
    /// Events that verified before the first broken link.
    pub checked: i64,
    /// The first broken link: the event and why.
    pub first_broken: Option<(i64, &'static str)>,
    /// The last event walked (the start when there was none; 0 for an empty log).
    pub last_seq: i64,
    /// `(id, hash)` of the events at the positions asked for that exist.
    pub at_positions: HashMap<i64, (String, String)>,
}

impl Tx {
    /// Takes the chain's append lock (PostgreSQL; SQLite's write lock already
    /// serializes writers) and reads the last link: `(next seq, prev hash)`.
    async fn audit_chain_tip(&mut self) -> Result<(i64, String)> {
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
        Ok(match last {
            Some((s, h)) => (s + 1, h),
            None => (1, GENESIS_HASH.to_owned()),
        })
    }

    /// Appends an event to the chain inside this transaction.
    pub async fn append_audit(&mut self, e: &NewAuditEvent) -> Result<AuditEvent> {
        let (seq, prev_hash) = self.audit_chain_tip().await?;
        let row = AuditRow::link(e, seq, prev_hash);
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

    /// Appends events to the chain in order, as one statement: the group
    /// commits of reads and of API requests write hundreds of events at a
    /// time, and a statement per event is a round trip per event (on SQLite,
    /// to the connection's thread). The links are the same as `append_audit`
    /// one by one would make.
    pub async fn append_audit_batch(&mut self, events: &[NewAuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (mut seq, mut prev_hash) = self.audit_chain_tip().await?;
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            let row = AuditRow::link(e, seq, prev_hash);
            seq += 1;
            prev_hash = row.hash.clone();
            rows.push(row);
        }
        match &mut self.inner {
            TxInner::NotBegun(_) => {
                return Err(crate::Error::internal(
                    "the audit chain is only appended to in a write transaction",
                ));
            }
            TxInner::Sqlite(t) => {
                // One JSON array of rows, unpacked by json_each: a fixed
                // statement (prepared once) whatever the batch size.
                // Serialized straight from the rows (no `Value` per field).
                let rows: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        (
                            r.seq,
                            &r.id,
                            r.at,
                            &r.actor,
                            &r.actor_role,
                            &r.action,
                            &r.resource_type,
                            &r.resource_id,
                            &r.outcome,
                            &r.details,
                            &r.prev_hash,
                            &r.hash,
                        )
                    })
                    .collect();
                let json = serde_json::to_string(&rows)
                    .map_err(|e| crate::Error::internal(e.to_string()))?;
                // Each row's array is taken out of the batch once (json_each
                // turns an element back into JSON text every time `value`
                // is read, and twelve columns read it twelve times); the
                // twelve `->>` then share SQLite's parse of that one text.
                sqlx::query(
                    "WITH r(v) AS MATERIALIZED (SELECT value FROM json_each($1)) \
                         INSERT INTO audit_events (seq, id, at, actor, actor_role, action, \
                         resource_type, resource_id, outcome, details, prev_hash, hash) \
                         SELECT v ->> 0, v ->> 1, v ->> 2, v ->> 3, v ->> 4, v ->> 5, v ->> 6, \
                           v ->> 7, v ->> 8, v ->> 9, v ->> 10, v ->> 11 FROM r",
                )
                .bind(json)
                .execute(&mut **t)
                .await?;
            }
            TxInner::Postgres(t) => {
                let mut cols = AuditColumns::with_capacity(rows.len());
                for r in rows {
                    cols.push(r);
                }
                sqlx::query(
                        "INSERT INTO audit_events (seq, id, at, actor, actor_role, action, \
                         resource_type, resource_id, outcome, details, prev_hash, hash) \
                         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], \
                           $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                           $11::text[], $12::text[])",
                    )
                    .bind(cols.seq)
                    .bind(cols.id)
                    .bind(cols.at)
                    .bind(cols.actor)
                    .bind(cols.actor_role)
                    .bind(cols.action)
                    .bind(cols.resource_type)
                    .bind(cols.resource_id)
                    .bind(cols.outcome)
                    .bind(cols.details)
                    .bind(cols.prev_hash)
                    .bind(cols.hash)
                    .execute(&mut **t)
                    .await?;
            }
        }
        Ok(())
    }
}

impl AuditRow {
    /// The row of `e` as the chain's event number `seq`, after `prev_hash`.
    fn link(e: &NewAuditEvent, seq: i64, prev_hash: String) -> Self {
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
        AuditRow {
            hash: row.expected_hash(),
            ..row
        }
    }
}

/// Rows turned into column arrays, for PostgreSQL's `UNNEST`.
#[derive(Default)]
struct AuditColumns {
    seq: Vec<i64>,
    id: Vec<String>,
    at: Vec<i64>,
    actor: Vec<String>,
    actor_role: Vec<String>,
    action: Vec<String>,
    resource_type: Vec<String>,
    resource_id: Vec<Option<String>>,
    outcome: Vec<String>,
    details: Vec<String>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

impl AuditColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            seq: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
            actor: Vec::with_capacity(n),
            actor_role: Vec::with_capacity(n),
            action: Vec::with_capacity(n),
            resource_type: Vec::with_capacity(n),
            resource_id: Vec::with_capacity(n),
            outcome: Vec::with_capacity(n),
            details: Vec::with_capacity(n),
            prev_hash: Vec::with_capacity(n),
            hash: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, r: AuditRow) {
        self.seq.push(r.seq);
        self.id.push(r.id);
        self.at.push(r.at);
        self.actor.push(r.actor);
        self.actor_role.push(r.actor_role);
        self.action.push(r.action);
        self.resource_type.push(r.resource_type);
        self.resource_id.push(r.resource_id);
        self.outcome.push(r.outcome);
        self.details.push(r.details);
        self.prev_hash.push(r.prev_hash);
        self.hash.push(r.hash);
    }
}
