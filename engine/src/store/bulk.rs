//! Bulk operation records.

use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::domain::{BulkKind, BulkOperation};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    kind: String,
    status: String,
    requested_by: String,
    total: i64,
    succeeded: i64,
    skipped: i64,
    request: String,
    results: String,
    created_at: i64,
    finished_at: Option<i64>,
}

impl Row {
    fn into_domain(self) -> Result<BulkOperation> {
        Ok(BulkOperation {
            kind: enum_col(&self.kind, BulkKind::parse, "bulk kind")?,
            request: json_col(&self.request, "bulk request")?,
            results: json_col(&self.results, "bulk results")?,
            id: self.id,
            status: self.status,
            run_by: self.requested_by,
            total: self.total,
            succeeded: self.succeeded,
            skipped: self.skipped,
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

/// The list leaves the per-item results out (they can be 10,000 long).
const SUMMARY_COLUMNS: &str = "id, kind, status, requested_by, total, succeeded, skipped, request, \
    '[]' AS results, created_at, finished_at";
const COLUMNS: &str = "id, kind, status, requested_by, total, succeeded, skipped, request, \
    results, created_at, finished_at";

impl Store {
    /// The latest bulk operations, newest first, without their per-item results.
    pub async fn list_bulk_operations(&self, limit: i64) -> Result<Vec<BulkOperation>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM bulk_operations ORDER BY created_at DESC, id DESC LIMIT $1"
        );
        let rows: Vec<Row> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .bind(limit)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(Row::into_domain).collect()
    }
}

/// A bulk operation being run in chunks: what the next chunk needs.
#[derive(Debug, Clone)]
pub struct BulkRun {
    pub kind: BulkKind,
    pub request: serde_json::Value,
    /// Certificate ids still to do, in selection order.
    pub pending: Vec<String>,
    /// Results so far, in selection order.
    pub results: Vec<crate::domain::BulkItem>,
    /// The principal it runs as (JSON of [`crate::domain::Principal`]).
    pub principal: serde_json::Value,
    pub succeeded: i64,
    pub skipped: i64,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    kind: String,
    request: String,
    pending: String,
    results: String,
    principal: Option<String>,
    succeeded: i64,
    skipped: i64,
}

impl Store {
    /// Running bulk operations nobody holds (never claimed, or the holder's
    /// lease ran out: it crashed or stopped), oldest first.
    pub async fn bulk_operations_to_resume(&self, now: i64, limit: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = with_db!(&self.db, |p| sqlx::query_scalar(
            "SELECT id FROM bulk_operations WHERE status = 'running' \
             AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
             ORDER BY created_at, id LIMIT $2"
        )
        .bind(now)
        .bind(limit)
        .fetch_all(p)
        .await?);
        Ok(ids)
    }
}

impl Tx {
    /// Stores a bulk operation that runs in chunks: `b` (status `running`,
    /// no results yet), the ids to do, the principal it runs as, and its
    /// first holder's lease (none: any process may take it at once).
    pub async fn insert_bulk_run(
        &mut self,
        b: &BulkOperation,
        pending: &[String],
        principal: &serde_json::Value,
        lease: Option<(&str, i64)>,
    ) -> Result<()> {
        self.insert_bulk_operation(b).await?;
        let pending = to_json(&pending)?;
        let principal = to_json(principal)?;
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE bulk_operations SET pending = $1, principal = $2, lease_owner = $3, \
                 lease_expires_at = $4 WHERE id = $5",
            )
            .bind(&pending)
            .bind(&principal)
            .bind(lease.map(|l| l.0))
            .bind(lease.map(|l| l.1))
            .bind(&b.id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Takes (or keeps) the lease of a running bulk operation for `owner`
    /// and reads what its next chunk needs; `None` when it is not running
    /// or another holder's lease is still valid. The UPDATE comes first, so
    /// on PostgreSQL it locks the row until this transaction ends: two
    /// processes never run chunks of one operation at once.
    pub async fn claim_bulk_run(
        &mut self,
        id: &str,
        owner: &str,
        now: i64,
        lease_expires_at: i64,
    ) -> Result<Option<BulkRun>> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE bulk_operations SET lease_owner = $1, lease_expires_at = $2 \
                 WHERE id = $3 AND status = 'running' AND (lease_owner IS NULL \
                 OR lease_owner = $1 OR lease_expires_at IS NULL OR lease_expires_at <= $4)",
            )
            .bind(owner)
            .bind(lease_expires_at)
            .bind(id)
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        if n != 1 {
            return Ok(None);
        }
        let row: RunRow = with_tx!(self, |c| sqlx::query_as(
            "SELECT kind, request, pending, results, principal, succeeded, skipped \
             FROM bulk_operations WHERE id = $1"
        )
        .bind(id)
        .fetch_one(c)
        .await?);
        Ok(Some(BulkRun {
            kind: enum_col(&row.kind, BulkKind::parse, "bulk kind")?,
            request: json_col(&row.request, "bulk request")?,
            pending: json_col(&row.pending, "bulk pending ids")?,
            results: json_col(&row.results, "bulk results")?,
            principal: json_col(row.principal.as_deref().unwrap_or("null"), "bulk principal")?,
            succeeded: row.succeeded,
            skipped: row.skipped,
        }))
    }

    /// Saves the progress of one chunk: what is left, the results so far and
    /// the counts; with nothing left the operation is `completed` and its
    /// lease is dropped.
    pub async fn save_bulk_progress(&mut self, id: &str, run: &BulkRun, now: i64) -> Result<()> {
        let pending = to_json(&run.pending)?;
        let results = to_json(&run.results)?;
        let done = run.pending.is_empty();
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE bulk_operations SET pending = $1, results = $2, succeeded = $3, \
                 skipped = $4, status = $5, finished_at = $6, \
                 lease_owner = CASE WHEN $7 THEN NULL ELSE lease_owner END, \
                 lease_expires_at = CASE WHEN $7 THEN NULL ELSE lease_expires_at END \
                 WHERE id = $8",
            )
            .bind(&pending)
            .bind(&results)
            .bind(run.succeeded)
            .bind(run.skipped)
            .bind(if done { "completed" } else { "running" })
            .bind(done.then_some(now))
            .bind(done)
            .bind(id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn insert_bulk_operation(&mut self, b: &BulkOperation) -> Result<()> {
        let request = to_json(&b.request)?;
        let results = to_json(&b.results)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO bulk_operations (id, kind, status, requested_by, total, succeeded, skipped, \
                 request, results, created_at, finished_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&b.id)
            .bind(b.kind.as_str())
            .bind(&b.status)
            .bind(&b.run_by)
            .bind(b.total)
            .bind(b.succeeded)
            .bind(b.skipped)
            .bind(&request)
            .bind(&results)
            .bind(b.created_at)
            .bind(b.finished_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn bulk_operation(&mut self, id: &str) -> Result<Option<BulkOperation>> {
        let sql = format!("SELECT {COLUMNS} FROM bulk_operations WHERE id = $1");
        let row: Option<Row> = with_tx!(self, |c| sqlx::query_as(safe(&sql))
            .bind(id)
            .fetch_optional(c)
            .await?);
        row.map(Row::into_domain).transpose()
    }
}
