//! `POST /jobs/{id}/approve|reject`: a job waiting for approval is decided
//! through its approval request, by the same rules as `approve_request` and
//! `reject_request` (another approver, never the requester; the stored input
//! runs once). The job names its approval in `payload.approval_id`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Subject;
use super::{ApproveRequest, ApproveRequestInput, Ctx, DecisionOutput, OpMeta, Operation, Risk};
use crate::domain::{Job, JobStatus, Permission};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDecisionInput {
    /// The job id (`job-...`).
    pub id: String,
    /// The reason, recorded with the decision.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobDecisionOutput {
    pub job: Job,
    pub approval: crate::domain::Approval,
}

/// The job and its approval id, or why it cannot be decided.
async fn awaiting(ctx: &mut Ctx<'_>, id: &str) -> Result<(Job, String)> {
    let job = ctx
        .tx
        .job(id)
        .await?
        .ok_or_else(|| Error::not_found("job", id))?;
    if job.status != JobStatus::AwaitingApproval {
        return Err(Error::conflict(format!(
            "job {} is {}, not awaiting approval",
            job.id,
            job.status.as_str()
        )));
    }
    let approval_id = job
        .payload
        .get("approval_id")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::conflict(format!("job {} names no approval request", job.id)))?;
    Ok((job, approval_id))
}

const fn meta(name: &'static str, title: &'static str, description: &'static str) -> OpMeta {
    OpMeta {
        name,
        title,
        description,
        risk: Risk::Write,
        permission: Permission::Approve,
        idempotent: false,
        open_world: false,
        resource: "job",
        gateable: false,
    }
}

async fn subject(ctx: &mut Ctx<'_>, id: &str, verb: &str) -> Result<Subject> {
    let (job, approval) = awaiting(ctx, id).await?;
    Ok(Subject {
        resource_id: Some(job.id.clone()),
        summary: format!("{verb} job {} (approval {approval})", job.id),
        profile_requires_approval: false,
        four_eyes: None,
        bound: Vec::new(),
    })
}

pub struct ApproveJob;

impl Operation for ApproveJob {
    type Input = JobDecisionInput;
    type Output = JobDecisionOutput;
    const META: OpMeta = meta(
        "approve_job",
        "Approve a job",
        "Approve a job that waits for approval: its approval request is approved (by another approver than the requester) and the job becomes pending.",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        subject(ctx, &input.id, "Approve").await
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let (job, approval_id) = awaiting(ctx, &input.id).await?;
        let decision: DecisionOutput = ApproveRequest::execute(
            ctx,
            ApproveRequestInput {
                approval_id,
                note: input.note,
                in_chat: false,
            },
        )
        .await?;
        finish(ctx, job, JobStatus::Pending, decision).await
    }
}

pub struct RejectJob;

impl Operation for RejectJob {
    type Input = JobDecisionInput;
    type Output = JobDecisionOutput;
    const META: OpMeta = meta(
        "reject_job",
        "Reject a job",
        "Reject a job that waits for approval: its approval request is rejected, nothing runs, and the job is cancelled.",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        subject(ctx, &input.id, "Reject").await
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let (job, approval_id) = awaiting(ctx, &input.id).await?;
        if !ctx.principal.role.allows(Permission::Approve) {
            return Err(Error::forbidden("only an approver or admin may reject"));
        }
        let decision = super::RejectRequest::execute(
            ctx,
            super::DecideInput {
                approval_id,
                note: input.note,
            },
        )
        .await?;
        finish(ctx, job, JobStatus::Cancelled, decision).await
    }
}

async fn finish(
    ctx: &mut Ctx<'_>,
    job: Job,
    to: JobStatus,
    decision: DecisionOutput,
) -> Result<JobDecisionOutput> {
    if !ctx
        .tx
        .transition_job(&job.id, job.status, to, None, ctx.now)
        .await?
    {
        return Err(Error::conflict(format!(
            "job {} changed state; try again",
            job.id
        )));
    }
    ctx.audit_resource_id = Some(job.id.clone());
    ctx.note("approval_id", decision.approval.id.clone());
    let job = ctx
        .tx
        .job(&job.id)
        .await?
        .ok_or_else(|| Error::internal("job vanished"))?;
    Ok(JobDecisionOutput {
        job,
        approval: decision.approval,
    })
}
