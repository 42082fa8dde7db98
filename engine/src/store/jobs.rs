//! Jobs. The claiming, leases and retries arrive with the scheduler; this
//! file stores and reads them.

use super::query::{Arg, Where, bind_args};
use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::domain::{Job, JobKind, JobStatus};
use crate::error::Result;

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    status: String,
    certificate_id: Option<String>,
    target_id: Option<String>,
    agent_id: Option<String>,
    attempts: i64,
    max_attempts: i64,
    run_after: i64,
    last_error: Option<String>,
    payload: String,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, kind, status, certificate_id, target_id, agent_id, attempts, \
    max_attempts, run_after, last_error, payload, created_at, updated_at";

impl JobRow {
    fn into_domain(self) -> Result<Job> {
        Ok(Job {
            kind: enum_col(&self.kind, JobKind::parse, "job kind")?,
            status: enum_col(&self.status, JobStatus::parse, "job status")?,
            payload: json_col(&self.payload, "job payload")?,
            id: self.id,
            certificate_id: self.certificate_id,
            target_id: self.target_id,
            agent_id: self.agent_id,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            run_after: self.run_after,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    pub certificate_id: Option<String>,
    pub agent_id: Option<String>,
}

impl Store {
    /// Newest first.
    pub async fn list_jobs(&self, f: &JobFilter, limit: i64) -> Result<Vec<Job>> {
        let mut w = Where::default();
        if let Some(s) = f.status {
            let p = w.arg(Arg::Text(s.as_str().into()));
            w.push(format!("status = {p}"));
        }
        if let Some(k) = f.kind {
            let p = w.arg(Arg::Text(k.as_str().into()));
            w.push(format!("kind = {p}"));
        }
        if let Some(c) = &f.certificate_id {
            let p = w.arg(Arg::Text(c.clone()));
            w.push(format!("certificate_id = {p}"));
        }
        if let Some(a) = &f.agent_id {
            let p = w.arg(Arg::Text(a.clone()));
            w.push(format!("agent_id = {p}"));
        }
        let lim = w.arg(Arg::Int(limit));
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs{} ORDER BY created_at DESC, id DESC LIMIT {lim}",
            w.sql()
        );
        let rows: Vec<JobRow> = with_db!(&self.db, |p| {
            bind_args!(sqlx::query_as(safe(&sql)), &w.args)
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(JobRow::into_domain).collect()
    }
}

impl Tx {
    pub async fn job(&mut self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(JobRow::into_domain).transpose()
    }

    pub async fn insert_job(&mut self, j: &Job) -> Result<()> {
        let payload = to_json(&j.payload)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO jobs (id, kind, status, certificate_id, target_id, agent_id, attempts, \
                 max_attempts, run_after, last_error, payload, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&j.id)
            .bind(j.kind.as_str())
            .bind(j.status.as_str())
            .bind(&j.certificate_id)
            .bind(&j.target_id)
            .bind(&j.agent_id)
            .bind(j.attempts)
            .bind(j.max_attempts)
            .bind(j.run_after)
            .bind(&j.last_error)
            .bind(&payload)
            .bind(j.created_at)
            .bind(j.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Moves a job to a new status only if it is in `from`; returns whether it moved.
    pub async fn transition_job(
        &mut self,
        id: &str,
        from: JobStatus,
        to: JobStatus,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET status = $1, last_error = COALESCE($2, last_error), updated_at = $3 \
                 WHERE id = $4 AND status = $5",
            )
            .bind(to.as_str())
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(from.as_str())
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }
}
