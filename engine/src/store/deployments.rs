//! What agents report about their jobs: taking a job with a lease, ending it,
//! and the verification of what a deployment serves.

use super::{Tx, with_tx};
use crate::error::Result;

/// The agent's check of what a target serves after a deployment.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Verification {
    pub job_id: String,
    pub agent_id: String,
    pub target_id: Option<String>,
    /// `host:port` the agent connected to.
    pub endpoint: String,
    /// SHA-256 (lower-case hex) of the leaf the agent deployed.
    pub expected_fingerprint: String,
    /// SHA-256 of the leaf the endpoint served, when the agent got one.
    pub served_fingerprint: Option<String>,
    /// Whether the served leaf is the deployed one.
    pub verified: bool,
    /// Why the check could not be made (connection refused, handshake failed).
    pub error: Option<String>,
    pub verified_at: i64,
}

#[derive(sqlx::FromRow)]
struct VerificationRow {
    job_id: String,
    agent_id: String,
    target_id: Option<String>,
    endpoint: String,
    expected_fingerprint: String,
    served_fingerprint: Option<String>,
    verified: i64,
    error: Option<String>,
    verified_at: i64,
}

impl Tx {
    /// Takes a pending job (or renews the lease of one this worker already
    /// runs) for `worker` until `lease_until`. Returns whether it did.
    pub async fn start_job_for(
        &mut self,
        id: &str,
        worker: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
                 attempts = CASE WHEN status = 'pending' THEN attempts + 1 ELSE attempts END, \
                 updated_at = $3 \
                 WHERE id = $4 AND (status = 'pending' OR (status = 'running' AND lease_owner = $1))",
            )
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Ends a job `worker` runs (or one waiting for its CSR) as completed or
    /// failed, for good: agent-side failures are not retried on their own,
    /// since a broken configuration fails the same way again.
    pub async fn end_job_for(
        &mut self,
        id: &str,
        worker: &str,
        completed: bool,
        error: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        let status = if completed { "completed" } else { "failed" };
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE jobs SET status = $1, last_error = $2, lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = $3 \
                 WHERE id = $4 AND ((status = 'running' AND lease_owner = $5) \
                   OR (status IN ('awaiting_csr', 'pending') AND $1 = 'failed'))",
            )
            .bind(status)
            .bind(error)
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn upsert_verification(&mut self, v: &Verification) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO deployment_verifications (job_id, agent_id, target_id, endpoint, \
                 expected_fingerprint, served_fingerprint, verified, error, verified_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (job_id) DO UPDATE SET endpoint = excluded.endpoint, \
                 expected_fingerprint = excluded.expected_fingerprint, \
                 served_fingerprint = excluded.served_fingerprint, verified = excluded.verified, \
                 error = excluded.error, verified_at = excluded.verified_at",
            )
            .bind(&v.job_id)
            .bind(&v.agent_id)
            .bind(&v.target_id)
            .bind(&v.endpoint)
            .bind(&v.expected_fingerprint)
            .bind(&v.served_fingerprint)
            .bind(i64::from(v.verified))
            .bind(&v.error)
            .bind(v.verified_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn verification(&mut self, job_id: &str) -> Result<Option<Verification>> {
        let row: Option<VerificationRow> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT job_id, agent_id, target_id, endpoint, expected_fingerprint, \
                 served_fingerprint, verified, error, verified_at \
                 FROM deployment_verifications WHERE job_id = $1",
            )
            .bind(job_id)
            .fetch_optional(c)
            .await?
        });
        Ok(row.map(|r| Verification {
            job_id: r.job_id,
            agent_id: r.agent_id,
            target_id: r.target_id,
            endpoint: r.endpoint,
            expected_fingerprint: r.expected_fingerprint,
            served_fingerprint: r.served_fingerprint,
            verified: r.verified != 0,
            error: r.error,
            verified_at: r.verified_at,
        }))
    }
}
