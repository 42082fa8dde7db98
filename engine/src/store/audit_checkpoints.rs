//! Signed checkpoints of the audit chain (append-only, like the events).
//! Writers of checkpoints are serialized (SQLite's write lock, a PostgreSQL
//! advisory lock of their own, never the events' append lock, so appends do
//! not wait for a checkpoint).

use super::{Backend, Store, Tx, with_db, with_tx};
use crate::domain::AuditCheckpoint;
use crate::error::Result;

/// Advisory lock key for writing checkpoints on PostgreSQL ("certckpt").
const CHECKPOINT_LOCK_KEY: i64 = 0x6365_7274_636b_7074;

const COLUMNS: &str =
    "number, at, head_seq, head_event_id, head_hash, prev_hash, hash, key_id, signature";

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    number: i64,
    at: i64,
    head_seq: i64,
    head_event_id: String,
    head_hash: String,
    prev_hash: String,
    hash: String,
    key_id: String,
    signature: String,
}

impl From<CheckpointRow> for AuditCheckpoint {
    fn from(r: CheckpointRow) -> Self {
        AuditCheckpoint {
            number: r.number,
            at: r.at,
            head_seq: r.head_seq,
            head_event_id: r.head_event_id,
            head_hash: r.head_hash,
            prev_hash: r.prev_hash,
            hash: r.hash,
            key_id: r.key_id,
            signature: r.signature,
        }
    }
}

/// The newest event: `(seq, id, hash)`.
pub type AuditHead = (i64, String, String);

impl Store {
    /// Checkpoints numbered above `after`, oldest first, at most `limit`.
    pub async fn audit_checkpoints(&self, after: i64, limit: i64) -> Result<Vec<AuditCheckpoint>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_checkpoints WHERE number > $1 ORDER BY number LIMIT $2"
        );
        let rows: Vec<CheckpointRow> = with_db!(&self.db, |p| {
            sqlx::query_as(super::safe(&sql))
                .bind(after)
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The newest checkpoint.
    pub async fn last_audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>> {
        let sql = format!("SELECT {COLUMNS} FROM audit_checkpoints ORDER BY number DESC LIMIT 1");
        let row: Option<CheckpointRow> = with_db!(&self.db, |p| {
            sqlx::query_as(super::safe(&sql)).fetch_optional(p).await?
        });
        Ok(row.map(Into::into))
    }

    /// The newest event (committed), if any.
    pub async fn audit_head(&self) -> Result<Option<AuditHead>> {
        Ok(with_db!(&self.db, |p| {
            sqlx::query_as("SELECT seq, id, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(p)
                .await?
        }))
    }
}

impl Tx {
    /// Serializes checkpoint writers (PostgreSQL; SQLite's write lock
    /// already does) and reads the newest checkpoint and the newest event.
    pub async fn audit_checkpoint_tip(
        &mut self,
    ) -> Result<(Option<AuditCheckpoint>, Option<AuditHead>)> {
        if self.backend == Backend::Postgres {
            with_tx!(self, |c| {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CHECKPOINT_LOCK_KEY)
                    .execute(c)
                    .await?;
            });
        }
        let sql = format!("SELECT {COLUMNS} FROM audit_checkpoints ORDER BY number DESC LIMIT 1");
        let last: Option<CheckpointRow> = with_tx!(self, |c| {
            sqlx::query_as(super::safe(&sql)).fetch_optional(c).await?
        });
        // Events commit in `seq` order (their append lock is held to the
        // commit), so the newest visible event has every earlier one before it.
        let head: Option<AuditHead> = with_tx!(self, |c| {
            sqlx::query_as("SELECT seq, id, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                .fetch_optional(c)
                .await?
        });
        Ok((last.map(Into::into), head))
    }

    pub async fn insert_audit_checkpoint(&mut self, cp: &AuditCheckpoint) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO audit_checkpoints (number, at, head_seq, head_event_id, head_hash, \
                 prev_hash, hash, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(cp.number)
            .bind(cp.at)
            .bind(cp.head_seq)
            .bind(&cp.head_event_id)
            .bind(&cp.head_hash)
            .bind(&cp.prev_hash)
            .bind(&cp.hash)
            .bind(&cp.key_id)
            .bind(&cp.signature)
            .execute(c)
            .await?;
        });
        Ok(())
    }
}
