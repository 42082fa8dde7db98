//! Jobs: storage, claiming with leases, completion, retries with backoff,
//! and reclaiming the work of crashed workers.
//!
//! A claimed job carries `lease_owner` and `lease_expires_at`. Only the
//! owner can finish it, and only while its lease holds; a worker that dies
//! leaves a lease that runs out, and `reclaim_expired_leases` puts the job
//! back to pending (or failed, when its attempts are used up). Claiming uses
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never claim the same
//! job; on SQLite the write lock serializes claims.

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
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    /// Keyset: only jobs after this cursor in newest-first order.
    pub after_cursor: Option<super::Cursor>,
    /// Rows to skip (offset pages).
    pub offset: i64,
}

impl JobFilter {
    fn apply(&self, w: &mut Where) -> Result<()> {
        if let Some(s) = self.status {
            let p = w.arg(Arg::Text(s.as_str().into()));
            w.push(format!("status = {p}"));
        }
        if let Some(k) = self.kind {
            let p = w.arg(Arg::Text(k.as_str().into()));
            w.push(format!("kind = {p}"));
        }
        if let Some(c) = &self.certificate_id {
            let p = w.arg(Arg::Text(c.clone()));
            w.push(format!("certificate_id = {p}"));
        }
        if let Some(a) = &self.agent_id {
            let p = w.arg(Arg::Text(a.clone()));
            w.push(format!("agent_id = {p}"));
        }
        if let Some(t) = self.created_after {
            let p = w.arg(Arg::Int(t));
            w.push(format!("created_at > {p}"));
        }
        if let Some(t) = self.created_before {
            let p = w.arg(Arg::Int(t));
            w.push(format!("created_at < {p}"));
        }
        if let Some(c) = &self.after_cursor {
            let key =
                c.k.as_i64()
                    .filter(|_| c.s == JOB_SORT)
                    .ok_or_else(|| crate::Error::invalid("cursor is not valid for jobs"))?;
            let k = w.arg(Arg::Int(key));
            let id = w.arg(Arg::Text(c.id.clone()));
            w.push(format!("(created_at, id) < ({k}, {id})"));
        }
        Ok(())
    }
}

/// The one order jobs are listed in.
const JOB_SORT: &str = "-created_at";

impl Store {
    /// Newest first.
    pub async fn list_jobs(&self, f: &JobFilter, limit: i64) -> Result<Vec<Job>> {
        Ok(self.list_jobs_page(f, limit).await?.0)
    }

    /// One page, newest first, with the cursor of the next page.
    pub async fn list_jobs_page(
        &self,
        f: &JobFilter,
        limit: i64,
    ) -> Result<(Vec<Job>, Option<String>)> {
        let mut w = Where::default();
        f.apply(&mut w)?;
        let lim = w.arg(Arg::Int(limit + 1));
        let off = w.arg(Arg::Int(f.offset.max(0)));
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs{} ORDER BY created_at DESC, id DESC LIMIT {lim} OFFSET {off}",
            w.sql()
        );
        let mut rows: Vec<JobRow> = with_db!(&self.db, |p| {
            bind_args!(sqlx::query_as(safe(&sql)), &w.args)
                .fetch_all(p)
                .await?
        });
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| {
                super::Cursor {
                    s: JOB_SORT.into(),
                    k: r.created_at.into(),
                    id: r.id.clone(),
                }
                .encode()
            })
        } else {
            None
        };
        let jobs = rows
            .into_iter()
            .map(JobRow::into_domain)
            .collect::<Result<_>>()?;
        Ok((jobs, next))
    }
}

/// How a worker's attempt at a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Completed,
    /// Failed this time; retried after a backoff unless attempts are used up.
    Failed(String),
    /// Failed for good (the CA refused the request): no retry.
    FailedPermanently(String),
}

impl Store {
    /// Claims up to `limit` pending jobs that are due, for `worker`, with a
    /// lease of `lease_seconds`. Returns the claimed jobs (now running).
    pub async fn claim_jobs(
        &self,
        worker: &str,
        now: i64,
        lease_seconds: i64,
        limit: i64,
    ) -> Result<Vec<Job>> {
        self.claim_jobs_of(worker, now, lease_seconds, limit, &[])
            .await
    }

    /// Like [`Store::claim_jobs`], restricted to jobs of the given kinds
    /// (all kinds when empty), so each worker claims only what it can do.
    pub async fn claim_jobs_of(
        &self,
        worker: &str,
        now: i64,
        lease_seconds: i64,
        limit: i64,
        kinds: &[JobKind],
    ) -> Result<Vec<Job>> {
        let skip_locked = match self.backend() {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        // The kinds are enum names, never user text, so they are inlined.
        let kind_filter = if kinds.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
            format!(" AND kind IN ({})", list.join(", "))
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             attempts = attempts + 1, updated_at = $3 WHERE id IN (SELECT id FROM jobs \
             WHERE status = 'pending' AND run_after <= $3{kind_filter} ORDER BY run_after, id LIMIT $4{skip_locked}) \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.begin_write().await?;
        let rows: Vec<JobRow> = with_tx!(tx, |c| {
            sqlx::query_as(safe(&sql))
                .bind(worker)
                .bind(now + lease_seconds)
                .bind(now)
                .bind(limit)
                .fetch_all(c)
                .await?
        });
        tx.commit().await?;
        let mut jobs: Vec<Job> = rows
            .into_iter()
            .map(JobRow::into_domain)
            .collect::<Result<_>>()?;
        jobs.sort_by(|a, b| (a.run_after, &a.id).cmp(&(b.run_after, &b.id)));
        Ok(jobs)
    }

    /// Ends `worker`'s attempt at a job. Returns false when the worker no
    /// longer holds the lease (it ran out and the job was reclaimed): the
    /// result is then discarded, so a job is never finished twice.
    pub async fn finish_job(
        &self,
        id: &str,
        worker: &str,
        result: &JobResult,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = match result {
            JobResult::Completed => with_tx!(tx, |c| {
                sqlx::query(
                    "UPDATE jobs SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL, \
                     last_error = NULL, updated_at = $1 \
                     WHERE id = $2 AND status = 'running' AND lease_owner = $3 AND lease_expires_at > $1",
                )
                .bind(now)
                .bind(id)
                .bind(worker)
                .execute(c)
                .await?
                .rows_affected()
            }),
            JobResult::FailedPermanently(error) => with_tx!(tx, |c| {
                sqlx::query(
                    "UPDATE jobs SET status = 'failed', lease_owner = NULL, lease_expires_at = NULL, \
                     last_error = $1, updated_at = $2 \
                     WHERE id = $3 AND status = 'running' AND lease_owner = $4 AND lease_expires_at > $2",
                )
                .bind(error)
                .bind(now)
                .bind(id)
                .bind(worker)
                .execute(c)
                .await?
                .rows_affected()
            }),
            JobResult::Failed(error) => {
                let attempts: Option<i64> = with_tx!(tx, |c| {
                    sqlx::query_scalar(
                        "SELECT attempts FROM jobs WHERE id = $1 AND status = 'running' \
                         AND lease_owner = $2 AND lease_expires_at > $3",
                    )
                    .bind(id)
                    .bind(worker)
                    .bind(now)
                    .fetch_optional(c)
                    .await?
                });
                let Some(attempts) = attempts else {
                    return Ok(false);
                };
                let retry_at = now + crate::domain::job::retry_backoff(attempts);
                with_tx!(tx, |c| {
                    sqlx::query(
                        "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, \
                         run_after = $1, lease_owner = NULL, lease_expires_at = NULL, last_error = $2, updated_at = $3 \
                         WHERE id = $4 AND status = 'running' AND lease_owner = $5",
                    )
                    .bind(retry_at)
                    .bind(error)
                    .bind(now)
                    .bind(id)
                    .bind(worker)
                    .execute(c)
                    .await?
                    .rows_affected()
                })
            }
        };
        if n == 1
            && let JobResult::Failed(error) = result
        {
            notify_if_failed(&mut tx, id, error, now).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Saves the payload of a running job (connector progress, such as an
    /// ACME order URL) while `worker` holds its lease; false when it does not.
    pub async fn save_job_payload(
        &self,
        id: &str,
        worker: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> Result<bool> {
        let payload = to_json(payload)?;
        let mut tx = self.begin_write().await?;
        let n = with_tx!(tx, |c| {
            sqlx::query(
                "UPDATE jobs SET payload = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'running' AND lease_owner = $4 AND lease_expires_at > $2",
            )
            .bind(&payload)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Whether the certificate has a renewal job that has not ended yet (so
    /// the renewal loop does not queue a second one).
    pub async fn has_open_renewal(&self, certificate_id: &str) -> Result<bool> {
        let n: i64 = with_db!(&self.db, |p| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM jobs WHERE certificate_id = $1 AND kind = 'renewal' \
                 AND status NOT IN ('completed', 'failed', 'cancelled')",
            )
            .bind(certificate_id)
            .fetch_one(p)
            .await?
        });
        Ok(n > 0)
    }

    /// Returns running jobs whose lease ran out to pending (retry now) or,
    /// when their attempts are used up, to failed. Returns how many.
    pub async fn reclaim_expired_leases(&self, now: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = with_tx!(tx, |c| {
            sqlx::query(
                "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END, \
                 run_after = $1, lease_owner = NULL, lease_expires_at = NULL, \
                 last_error = 'the worker holding this job stopped answering (lease expired)', updated_at = $1 \
                 WHERE status = 'running' AND lease_expires_at <= $1",
            )
            .bind(now)
            .execute(c)
            .await?
            .rows_affected()
        });
        tx.commit().await?;
        Ok(n)
    }
}

/// A renewal or deployment job that failed for good notifies its owners,
/// in the transaction that failed it.
async fn notify_if_failed(tx: &mut Tx, id: &str, error: &str, now: i64) -> Result<()> {
    let Some(job) = tx.job(id).await? else {
        return Ok(());
    };
    if job.status != JobStatus::Failed {
        return Ok(());
    }
    match (job.kind, job.certificate_id.as_deref()) {
        (JobKind::Renewal, Some(cert)) => {
            crate::notify::renewal_failed(tx, now, cert, error, format!("renewal_failed:{id}"))
                .await
        }
        (JobKind::Deployment, cert) => {
            crate::notify::deployment_failed(tx, now, id, cert, error).await
        }
        _ => Ok(()),
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

    /// Completes a running job held by `worker` inside this transaction (so
    /// the work it recorded and its completion commit together); false when
    /// the worker no longer holds the lease.
    pub async fn complete_running_job(
        &mut self,
        id: &str,
        worker: &str,
        payload: &serde_json::Value,
        now: i64,
    ) -> Result<bool> {
        let payload = to_json(payload)?;
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL, \
                 last_error = NULL, payload = $1, updated_at = $2 \
                 WHERE id = $3 AND status = 'running' AND lease_owner = $4 AND lease_expires_at > $2",
            )
            .bind(&payload)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Ends a job nobody will finish any more (an HTTP-01 challenge the CA
    /// no longer waits for): a pending one is cancelled, a running one
    /// (whoever holds it) fails, both with `reason`. Returns whether it ended.
    pub async fn end_open_job(&mut self, id: &str, reason: &str, now: i64) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE 'failed' END, \
                 last_error = $1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
                 WHERE id = $3 AND status IN ('pending', 'running')",
            )
            .bind(reason)
            .bind(now)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Moves a job to a new status only if it is in `from` and the transition
    /// table allows it; returns whether it moved.
    pub async fn transition_job(
        &mut self,
        id: &str,
        from: JobStatus,
        to: JobStatus,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        if !from.can_become(to) {
            return Err(crate::Error::conflict(format!(
                "a {} job cannot become {}",
                from.as_str(),
                to.as_str()
            )));
        }
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
