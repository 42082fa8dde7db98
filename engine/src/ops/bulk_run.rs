//! How a bulk operation runs once it is allowed to (at once, or after its
//! one approval): in committed chunks, so its record shows progress as it
//! goes and a crash loses at most the chunk in flight.
//!
//! The operation's own call selects the certificates and stores the record
//! (`running`, the ids still to do, the principal it runs as, and a lease
//! held by the call). After that transaction commits, the call runs the
//! chunks ([`super::Operation::after_commit`]); each chunk is one write
//! transaction that takes the record's lease, does the next ids through the
//! same per-certificate rules as before (revocation, renewal, reassignment
//! with their policy checks and notifications), appends the results, moves
//! the counts, and appends an audit event. Results and the ids left commit
//! together, so no certificate is done twice. When the process dies, the
//! lease runs out and the jobs loop of any process resumes the record
//! ([`Engine::resume_bulk_operations`]).

use super::Ctx;
use super::bulk::{reassign_item, reassign_targets, renew_item};
use super::revocation::{BulkRevokeInput, BulkRevokeOutput, SkippedRevocation, revoke_item};
use crate::Engine;
use crate::domain::{
    BulkItem, BulkItemOutcome, BulkKind, BulkOperation, Outcome as AuditOutcome, Principal,
};
use crate::error::{Error, Result};

/// What one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkStep {
    /// A chunk ran; more ids are left.
    Progressed,
    /// The last chunk ran (or there was nothing left): the record is `completed`.
    Completed,
    /// Not running, or another process holds its lease: nothing done.
    NotHeld,
}

/// The lease a call holds on the record of the bulk operation it started.
pub(crate) fn call_owner(bulk_id: &str) -> String {
    format!("call:{bulk_id}")
}

fn lease_seconds(engine: &Engine) -> i64 {
    engine.config().scheduler.job_lease_seconds.max(1)
}

/// The operation every bulk run belongs to (its kind is the action).
const OPERATION: &str = "bulk_certificates";

/// Stores the record of a bulk run that is about to start, in the call's
/// transaction, and returns its id. With nothing selected it is completed
/// at once.
pub(crate) async fn start(
    ctx: &mut Ctx<'_>,
    kind: BulkKind,
    request: serde_json::Value,
    ids: Vec<String>,
) -> Result<String> {
    let b = BulkOperation {
        id: ctx.new_id("bulk"),
        kind,
        status: if ids.is_empty() {
            "completed"
        } else {
            "running"
        }
        .into(),
        run_by: ctx.principal.id.clone(),
        total: ids.len() as i64,
        succeeded: 0,
        skipped: 0,
        request,
        results: Vec::new(),
        created_at: ctx.now,
        finished_at: ids.is_empty().then_some(ctx.now),
    };
    let principal =
        serde_json::to_value(ctx.principal).map_err(|e| Error::internal(e.to_string()))?;
    // The call runs the chunks itself once it committed, so it holds the
    // lease from the start; otherwise the jobs loop takes it at once.
    let owner = call_owner(&b.id);
    let lease = ctx
        .engine
        .config()
        .scheduler
        .bulk_runs_in_call
        .then(|| (owner.as_str(), ctx.now + lease_seconds(ctx.engine)));
    ctx.tx.insert_bulk_run(&b, &ids, &principal, lease).await?;
    ctx.note("bulk_operation_id", b.id.clone());
    ctx.note("total", b.total);
    Ok(b.id)
}

impl Engine {
    /// Runs the next chunk of a running bulk operation as `owner` (a process
    /// or a call), in one transaction. Chunks have
    /// `scheduler.bulk_chunk_size` certificates.
    pub async fn run_bulk_chunk(&self, bulk_id: &str, owner: &str) -> Result<BulkStep> {
        let now = self.now();
        let _slot = self.call_slot().await?;
        let mut tx = self.store().begin_write().await?;
        let Some(mut run) = tx
            .claim_bulk_run(bulk_id, owner, now, now + lease_seconds(self))
            .await?
        else {
            return Ok(BulkStep::NotHeld);
        };
        let principal: Principal = serde_json::from_value(run.principal.clone())
            .map_err(|e| Error::internal(format!("stored bulk principal: {e}")))?;
        let size = self.config().scheduler.bulk_chunk_size.max(1);
        let rest = run.pending.split_off(size.min(run.pending.len()));
        let chunk = std::mem::replace(&mut run.pending, rest);
        let first = run.results.len();
        let mut ctx = Ctx {
            engine: self,
            principal: &principal,
            tx: &mut tx,
            now,
            audit_details: serde_json::Map::new(),
            audit_resource_id: None,
            followup: None,
            refusals: Vec::new(),
            operation: OPERATION,
            memo: Default::default(),
        };
        let items = run_items(&mut ctx, &run.kind, &run.request, chunk).await?;
        let done = items
            .iter()
            .filter(|i| i.outcome == BulkItemOutcome::Done)
            .count() as i64;
        run.succeeded += done;
        run.skipped += items.len() as i64 - done;
        run.results.extend(items);
        ctx.tx.save_bulk_progress(bulk_id, &run, now).await?;
        let completed = run.pending.is_empty();
        let mut details = serde_json::Map::new();
        details.insert("operation".into(), OPERATION.into());
        details.insert("action".into(), run.kind.as_str().into());
        details.insert("from".into(), first.into());
        details.insert("to".into(), run.results.len().into());
        details.insert(
            "certificates".into(),
            run.results[first..]
                .iter()
                .map(|i| serde_json::Value::from(i.id.clone()))
                .collect::<Vec<_>>()
                .into(),
        );
        details.insert("succeeded".into(), run.succeeded.into());
        details.insert("skipped".into(), run.skipped.into());
        details.insert(
            "status".into(),
            if completed { "completed" } else { "running" }.into(),
        );
        self.append(
            ctx.tx,
            &principal,
            "bulk_operation.chunk",
            "bulk_operation",
            Some(bulk_id.to_owned()),
            AuditOutcome::Success,
            details,
            now,
        )
        .await?;
        drop(ctx);
        tx.commit().await?;
        Ok(if completed {
            BulkStep::Completed
        } else {
            BulkStep::Progressed
        })
    }

    /// Runs a bulk operation's chunks as `owner` until it completes or
    /// another holder has it; whether it completed.
    pub async fn drive_bulk_operation(&self, bulk_id: &str, owner: &str) -> Result<bool> {
        loop {
            match self.run_bulk_chunk(bulk_id, owner).await? {
                BulkStep::Progressed => continue,
                BulkStep::Completed => return Ok(true),
                BulkStep::NotHeld => return Ok(false),
            }
        }
    }

    /// Finishes running bulk operations nobody holds (their caller crashed
    /// or stopped): the jobs loop of every process calls it; the lease
    /// makes each chunk run on one process. Returns how many it completed.
    pub async fn resume_bulk_operations(&self, owner: &str) -> Result<usize> {
        let ids = self
            .store()
            .bulk_operations_to_resume(self.now(), 20)
            .await?;
        let mut completed = 0;
        for id in ids {
            tracing::info!(bulk_operation = %id, "resuming a bulk operation");
            if self.drive_bulk_operation(&id, owner).await? {
                completed += 1;
            }
        }
        Ok(completed)
    }
}

/// Does each id of a chunk through the rules of its kind.
async fn run_items(
    ctx: &mut Ctx<'_>,
    kind: &BulkKind,
    request: &serde_json::Value,
    ids: Vec<String>,
) -> Result<Vec<BulkItem>> {
    let mut items = Vec::with_capacity(ids.len());
    match kind {
        BulkKind::Revoke => {
            let input: BulkRevokeInput = super::registry::parse_input(request.clone())?;
            for id in ids {
                items.push(revoke_item(ctx, id, input.reason).await?);
            }
        }
        BulkKind::Renew => {
            for id in ids {
                items.push(renew_item(ctx, id).await?);
            }
        }
        BulkKind::Reassign => {
            let (owner, team) = reassign_targets(request)?;
            for id in ids {
                items.push(reassign_item(ctx, id, &owner, &team).await?);
            }
        }
    }
    Ok(items)
}

/// After the call that started a bulk operation committed: runs its chunks
/// (when the configuration says calls do) and returns its record. A failure
/// is logged; the record stays `running` and the jobs loop resumes it.
pub(crate) async fn finish(engine: &Engine, bulk_id: &str) -> Option<BulkOperation> {
    if engine.config().scheduler.bulk_runs_in_call
        && let Err(e) = engine
            .drive_bulk_operation(bulk_id, &call_owner(bulk_id))
            .await
    {
        tracing::warn!(bulk_operation = %bulk_id, error = %e, "bulk operation stopped; the jobs loop resumes it");
    }
    let read = async {
        let mut tx = engine.store().begin_read().await?;
        let b = tx.bulk_operation(bulk_id).await?;
        tx.rollback().await?;
        Ok::<_, Error>(b)
    };
    match read.await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(bulk_operation = %bulk_id, error = %e, "bulk operation record unreadable");
            None
        }
    }
}

/// The answer of a bulk renew or reassign, from its record.
pub(crate) fn bulk_output(b: BulkOperation) -> super::BulkOutput {
    super::BulkOutput {
        bulk_operation_id: Some(b.id),
        dry_run: false,
        total: b.total,
        succeeded: b.succeeded,
        skipped: b.skipped,
        items: b.results,
    }
}

/// The answer of a bulk revocation, from its record.
pub(crate) fn revoke_output(b: BulkOperation) -> BulkRevokeOutput {
    let mut out = BulkRevokeOutput {
        revoked: Vec::new(),
        skipped: Vec::new(),
        would_revoke: Vec::new(),
        dry_run: false,
        bulk_operation_id: Some(b.id),
    };
    for i in b.results {
        match i.outcome {
            BulkItemOutcome::Done => out.revoked.push(i.id),
            _ => out.skipped.push(SkippedRevocation {
                id: i.id,
                reason: i.detail.unwrap_or_default(),
            }),
        }
    }
    out
}

/// For an approved bulk operation: runs its chunks after the approval
/// committed and returns its final answer (for the approval's result), or
/// `None` when `operation` is not a bulk one or it did not complete.
pub(crate) async fn finish_approved(
    engine: &Engine,
    operation: &str,
    result: &serde_json::Value,
) -> Option<serde_json::Value> {
    // Approvals requested before the three actions were one operation name them.
    if !matches!(
        operation,
        OPERATION
            | "bulk_renew_certificates"
            | "bulk_revoke_certificates"
            | "bulk_reassign_certificates"
    ) {
        return None;
    }
    let id = result.get("bulk_operation_id")?.as_str()?.to_owned();
    let b = finish(engine, &id).await?;
    if b.status != "completed" {
        return None;
    }
    let out = match b.kind {
        BulkKind::Revoke => serde_json::to_value(revoke_output(b)),
        _ => serde_json::to_value(bulk_output(b)),
    };
    out.ok()
}
