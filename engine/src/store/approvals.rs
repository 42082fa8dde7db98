//! Approvals. Every state change is a conditional update from `pending`, so
//! two deciders racing cannot both win: that is what makes "executed exactly
//! once" hold across processes.

use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::domain::approval::GateReason;
use crate::domain::{Approval, ApprovalStatus};
use crate::error::Result;
use crate::ops::Risk;

/// The columns of an approval no reader sees.
#[derive(Debug, Default)]
pub struct ApprovalPrivate {
    /// The facts the approval is bound to (`None`: requested before binding).
    pub bound: Option<Vec<String>>,
    pub input_sealed: Option<String>,
    pub result_sealed: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    id: String,
    operation: String,
    input: String,
    summary: String,
    risk: String,
    gate_reason: String,
    resource_type: String,
    resource_id: Option<String>,
    requested_by: String,
    status: String,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    decision_note: Option<String>,
    result: Option<String>,
    created_at: i64,
    expires_at: i64,
}

const COLUMNS: &str = "id, operation, input, summary, risk, gate_reason, resource_type, resource_id, \
    requested_by, status, decided_by, decided_at, decision_note, result, created_at, expires_at";

impl ApprovalRow {
    fn into_domain(self) -> Result<Approval> {
        Ok(Approval {
            input: json_col(&self.input, "approval input")?,
            risk: enum_col(&self.risk, Risk::parse, "risk")?,
            gate_reason: enum_col(&self.gate_reason, GateReason::parse, "gate reason")?,
            status: enum_col(&self.status, ApprovalStatus::parse, "approval status")?,
            result: self
                .result
                .as_deref()
                .map(|r| json_col(r, "approval result"))
                .transpose()?,
            id: self.id,
            operation: self.operation,
            summary: self.summary,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            requested_by: self.requested_by,
            decided_by: self.decided_by,
            decided_at: self.decided_at,
            decision_note: self.decision_note,
            created_at: self.created_at,
            expires_at: self.expires_at,
        })
    }
}

impl Store {
    /// Newest first, optionally by status.
    pub async fn list_approvals(
        &self,
        status: Option<ApprovalStatus>,
        limit: i64,
    ) -> Result<Vec<Approval>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM approvals WHERE ($1 IS NULL OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows: Vec<ApprovalRow> = with_db!(&self.db, |p| {
            sqlx::query_as(safe(&sql))
                .bind(status.map(|s| s.as_str()))
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        rows.into_iter().map(ApprovalRow::into_domain).collect()
    }

    /// Whether `operation` on `resource_id` already waits for a decision (so
    /// scheduled work does not ask for the same approval again every round).
    pub async fn has_pending_approval(
        &self,
        operation: &str,
        resource_id: &str,
        now: i64,
    ) -> Result<bool> {
        let n: i64 = with_db!(&self.db, |p| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND operation = $1 \
                 AND resource_id = $2 AND expires_at > $3",
            )
            .bind(operation)
            .bind(resource_id)
            .bind(now)
            .fetch_one(p)
            .await?
        });
        Ok(n > 0)
    }

    /// How many approvals wait for a decision and have not expired.
    pub async fn count_pending_approvals(&self, now: i64) -> Result<i64> {
        Ok(with_db!(&self.db, |p| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > $1",
            )
            .bind(now)
            .fetch_one(p)
            .await?
        }))
    }

    /// Pending approvals whose time ran out (for the expiry sweep).
    pub async fn expired_pending_approvals(&self, now: i64) -> Result<Vec<String>> {
        Ok(with_db!(&self.db, |p| {
            sqlx::query_scalar(
                "SELECT id FROM approvals WHERE status = 'pending' AND expires_at <= $1 ORDER BY id",
            )
            .bind(now)
            .fetch_all(p)
            .await?
        }))
    }
}

impl Tx {
    /// Reads an approval and, on PostgreSQL, locks its row until the
    /// transaction ends, so a concurrent decision waits and then sees ours.
    pub async fn approval(&mut self, id: &str) -> Result<Option<Approval>> {
        let lock = if self.writable && self.backend == super::Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT {COLUMNS} FROM approvals WHERE id = $1{lock}");
        let row: Option<ApprovalRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(ApprovalRow::into_domain).transpose()
    }

    /// Stores a new approval: `a.input` is what readers see (secrets
    /// replaced), `input_sealed` the full input when it holds a secret, and
    /// `bound` the facts its summary described.
    pub async fn insert_approval(
        &mut self,
        a: &Approval,
        input_hash: &str,
        bound: &[String],
        input_sealed: Option<&str>,
    ) -> Result<()> {
        let input = to_json(&a.input)?;
        let bound = to_json(&bound)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO approvals (id, operation, input, input_hash, summary, risk, gate_reason, resource_type, \
                 resource_id, requested_by, status, created_at, expires_at, bound_state, input_sealed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&a.id)
            .bind(&a.operation)
            .bind(&input)
            .bind(input_hash)
            .bind(&a.summary)
            .bind(a.risk.as_str())
            .bind(a.gate_reason.as_str())
            .bind(&a.resource_type)
            .bind(&a.resource_id)
            .bind(&a.requested_by)
            .bind(a.status.as_str())
            .bind(a.created_at)
            .bind(a.expires_at)
            .bind(&bound)
            .bind(input_sealed)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// What an approval keeps from its readers: the facts it is bound to
    /// and its sealed input and result.
    pub async fn approval_private(&mut self, id: &str) -> Result<ApprovalPrivate> {
        let row: Option<(Option<String>, Option<String>, Option<String>)> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT bound_state, input_sealed, result_sealed FROM approvals WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        });
        let (bound, input_sealed, result_sealed) = row.unwrap_or_default();
        Ok(ApprovalPrivate {
            bound: bound
                .as_deref()
                .map(|b| json_col(b, "approval bound state"))
                .transpose()?,
            input_sealed,
            result_sealed,
        })
    }

    /// Replaces what readers see of an approval stored before secrets were
    /// sealed, keeping the full values sealed beside it.
    pub async fn reseal_approval(
        &mut self,
        id: &str,
        input: &serde_json::Value,
        input_sealed: Option<&str>,
        result: Option<&serde_json::Value>,
        result_sealed: Option<&str>,
    ) -> Result<()> {
        let input = to_json(input)?;
        let result = result.map(to_json).transpose()?;
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE approvals SET input = $1, input_sealed = COALESCE($2, input_sealed), \
                 result = $3, result_sealed = COALESCE($4, result_sealed) WHERE id = $5",
            )
            .bind(&input)
            .bind(input_sealed)
            .bind(&result)
            .bind(result_sealed)
            .bind(id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Keeps an executed approval's full result sealed for its requester.
    pub async fn set_approval_result_sealed(&mut self, id: &str, sealed: &str) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query("UPDATE approvals SET result_sealed = $1 WHERE id = $2")
                .bind(sealed)
                .bind(id)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Takes the sealed result away (its requester collected it). Returns it,
    /// or `None` when there was none or someone took it first.
    pub async fn take_approval_result_sealed(&mut self, id: &str) -> Result<Option<String>> {
        let sealed = self.approval_private(id).await?.result_sealed;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE approvals SET result_sealed = NULL WHERE id = $1 AND result_sealed = $2",
            )
            .bind(id)
            .bind(&sealed)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok((n == 1).then_some(sealed))
    }

    /// Moves a pending approval to a decided status. Returns false when it was
    /// no longer pending (someone else decided first).
    pub async fn decide_approval(
        &mut self,
        id: &str,
        to: ApprovalStatus,
        decided_by: &str,
        note: Option<&str>,
        result: Option<&serde_json::Value>,
        now: i64,
    ) -> Result<bool> {
        let result = result.map(to_json).transpose()?;
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4, \
                 result = $5 WHERE id = $6 AND status = 'pending'",
            )
            .bind(to.as_str())
            .bind(decided_by)
            .bind(now)
            .bind(note)
            .bind(&result)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Replaces the recorded result of an executed approval (a bulk
    /// operation's final counts once its chunks have run).
    pub async fn set_approval_result(
        &mut self,
        id: &str,
        result: &serde_json::Value,
    ) -> Result<()> {
        let result = to_json(result)?;
        with_tx!(self, |c| {
            sqlx::query("UPDATE approvals SET result = $1 WHERE id = $2 AND status = 'executed'")
                .bind(&result)
                .bind(id)
                .execute(c)
                .await?;
        });
        Ok(())
    }
}
