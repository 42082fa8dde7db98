//! Reads for agents and dashboards: an agent's open work (polled by every
//! agent, so one indexed query, and a cache in front of it) and the time
//! series behind the statistics routes (one grouped query each).

use std::sync::Arc;

use super::{Store, json_col, safe, with_db};
use crate::clock::UnixTime;
use crate::error::Result;

/// How long an agent's open work is served from memory, in seconds of the
/// engine's clock: work read at second `t` serves while the clock still
/// reads `t`, and never longer than one second of real time. Every write
/// transaction this process commits (other than
/// audit appends) clears the cache, so this process's own job changes show
/// at once; another replica's show here within this bound. Agents poll
/// every few seconds and act through the job state machine, which refuses a
/// job that is no longer open, so a poll a second late changes nothing.
pub const WORK_CACHE_SECONDS: i64 = 1;

/// Most agents remembered at once; past it the cache starts over.
const WORK_CACHE_ENTRIES: usize = 10_000;

/// Recent answers of [`Store::agent_work`], by agent id.
pub(crate) type WorkCache = super::second_cache::SecondCache<Arc<Vec<WorkItem>>>;

pub(crate) fn work_cache() -> WorkCache {
    WorkCache::new(WORK_CACHE_ENTRIES)
}

/// One job an agent must act on, with the names its CSR must carry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct WorkItem {
    pub job_id: String,
    /// issuance, renewal, deployment or validation.
    pub kind: String,
    /// `pending` (deploy or validate) or `awaiting_csr` (send a CSR).
    pub status: String,
    pub certificate_id: Option<String>,
    pub target_id: Option<String>,
    /// The certificate's common name and SANs, for the CSR.
    pub common_name: Option<String>,
    pub sans: Vec<String>,
    pub run_after: UnixTime,
    pub created_at: UnixTime,
}

#[derive(sqlx::FromRow)]
struct WorkRow {
    id: String,
    kind: String,
    status: String,
    certificate_id: Option<String>,
    target_id: Option<String>,
    common_name: Option<String>,
    sans: Option<String>,
    run_after: i64,
    created_at: i64,
}

/// Most open jobs one poll returns.
const WORK_LIMIT: i64 = 100;

impl Store {
    /// [`Store::agent_work`] through the cache (see [`WORK_CACHE_SECONDS`]
    /// for how fresh it is); `now` is the engine's clock.
    pub async fn agent_work_cached(&self, agent_id: &str, now: UnixTime) -> Result<Vec<WorkItem>> {
        if let Some(work) = self.work.get(agent_id, now) {
            return Ok(work.as_ref().clone());
        }
        let _fill = self.work.fill_lock(agent_id).lock().await;
        if let Some(work) = self.work.get(agent_id, now) {
            return Ok(work.as_ref().clone());
        }
        let generation = self.work.generation();
        let work = self.agent_work(agent_id).await?;
        self.work
            .put(agent_id, now, Arc::new(work.clone()), generation);
        Ok(work)
    }

    /// Open jobs of one agent, oldest first (index `jobs_agent`).
    pub async fn agent_work(&self, agent_id: &str) -> Result<Vec<WorkItem>> {
        let rows: Vec<WorkRow> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT j.id, j.kind, j.status, j.certificate_id, j.target_id, \
                   c.common_name, c.sans, j.run_after, j.created_at \
                 FROM jobs j LEFT JOIN certificates c ON c.id = j.certificate_id \
                 WHERE j.agent_id = $1 AND j.status IN ('pending', 'awaiting_csr') \
                 ORDER BY j.created_at, j.id LIMIT $2",
            )
            .bind(agent_id)
            .bind(WORK_LIMIT)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(WorkItem {
                    sans: match &r.sans {
                        Some(s) => json_col(s, "certificate sans")?,
                        None => Vec::new(),
                    },
                    job_id: r.id,
                    kind: r.kind,
                    status: r.status,
                    certificate_id: r.certificate_id,
                    target_id: r.target_id,
                    common_name: r.common_name,
                    run_after: r.run_after,
                    created_at: r.created_at,
                })
            })
            .collect()
    }

    /// Active certificates expiring in `[from, to)`, counted per bucket of
    /// `bucket` seconds starting at `from`: `(bucket index, count)`.
    pub async fn expiry_histogram(
        &self,
        from: UnixTime,
        to: UnixTime,
        bucket: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let sql = "SELECT (not_after - $1) / $3 AS b, COUNT(*) FROM certificates \
             WHERE status = 'active' AND not_after >= $1 AND not_after < $2 GROUP BY b ORDER BY b";
        let rows: Vec<(i64, i64)> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(sql))
                .bind(from)
                .bind(to)
                .bind(bucket.max(1))
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    /// Jobs created in `[from, to)` per bucket and status: `(bucket, status, count)`.
    pub async fn job_histogram(
        &self,
        from: UnixTime,
        to: UnixTime,
        bucket: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let sql = "SELECT (created_at - $1) / $3 AS b, status, COUNT(*) FROM jobs \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY b, status ORDER BY b";
        let rows: Vec<(i64, String, i64)> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(sql))
                .bind(from)
                .bind(to)
                .bind(bucket.max(1))
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }

    /// Certificate versions issued in `[from, to)` per bucket: `(bucket, count)`.
    pub async fn issuance_histogram(
        &self,
        from: UnixTime,
        to: UnixTime,
        bucket: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let sql = "SELECT (created_at - $1) / $3 AS b, COUNT(*) FROM certificate_versions \
             WHERE created_at >= $1 AND created_at < $2 GROUP BY b ORDER BY b";
        let rows: Vec<(i64, i64)> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(sql))
                .bind(from)
                .bind(to)
                .bind(bucket.max(1))
                .fetch_all(p)
                .await?
        });
        Ok(rows)
    }
}
