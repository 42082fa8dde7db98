//! Signed checkpoints of the audit chain: write one now, export them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::EmptyInput;
use crate::audit_anchor::{self, When};
use crate::domain::{AuditCheckpoint, AuditCheckpointExport};
use crate::error::Error;

operation! {
    CheckpointAuditLog {
        name: "checkpoint_audit_log",
        title: "Checkpoint the audit log",
        description: "Sign a checkpoint of the audit chain's head now (the scheduler also writes one every N events or T seconds).",
        risk: Write,
        permission: Admin,
        idempotent: true,
        resource: "audit",
        // It only seals what is already there; a gate would add nothing.
        gateable: false,
        input: EmptyInput,
        output: AuditCheckpoint,
        subject: |_i| (None, "Checkpoint the audit log".to_owned()),
    }
    |ctx, _input| {
        let prepared = audit_anchor::prepare(ctx.engine, ctx.now, When::Now)
            .await?
            .ok_or_else(|| Error::conflict("the audit log is empty: there is nothing to checkpoint"))?;
        let cp = audit_anchor::write(ctx.engine, ctx.tx, prepared, ctx.now)
            .await?
            .ok_or_else(|| Error::conflict("another checkpoint was written at the same time; try again"))?;
        ctx.note("checkpoint", cp.number);
        ctx.note("head_seq", cp.head_seq);
        Ok(cp)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpointsInput {
    /// Only checkpoints numbered above this (an incremental export).
    #[serde(default)]
    pub after: Option<i64>,
}

operation! {
    GetAuditCheckpoints {
        name: "get_audit_checkpoints",
        title: "Export audit checkpoints",
        description: "Export the audit log's signed checkpoints and public key, to keep outside the database for verify_audit_log.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "audit",
        input: AuditCheckpointsInput,
        output: AuditCheckpointExport,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let x = audit_anchor::export(ctx.engine, input.after.unwrap_or(0)).await?;
        ctx.note("checkpoints", x.checkpoints.len());
        Ok(x)
    }
}
