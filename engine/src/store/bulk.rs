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

impl Tx {
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
