//! Approval operations. Approving runs the stored input of the gated
//! operation exactly once, inside the approver's transaction; rejecting,
//! cancelling and expiry never run it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::List;
use super::approval_secrets;
use super::registry::DynOperation;
use super::{Ctx, EmptyInput, Followup, IdInput, OpMeta, Operation, Risk, Subject};
use crate::domain::approval::GateReason;
use crate::domain::{Approval, ApprovalStatus, Outcome as AuditOutcome, Permission, Role};
use crate::error::{Error, Result};

async fn load(ctx: &mut Ctx<'_>, id: &str) -> Result<Approval> {
    ctx.tx
        .approval(id)
        .await?
        .ok_or_else(|| Error::not_found("approval", id))
}

/// Pending approvals past their deadline read as expired even before the
/// sweep marks them.
fn effective(mut a: Approval, now: i64) -> Approval {
    if a.status == ApprovalStatus::Pending && a.expires_at <= now {
        a.status = ApprovalStatus::Expired;
    }
    a
}

fn ensure_pending(a: &Approval, now: i64) -> Result<()> {
    if a.status != ApprovalStatus::Pending {
        return Err(Error::conflict(format!(
            "approval {} is already {}",
            a.id,
            a.status.as_str()
        )));
    }
    if a.expires_at <= now {
        return Err(Error::conflict(format!(
            "approval {} expired at {}; the operation was not run",
            a.id,
            crate::clock::to_rfc3339(a.expires_at)
        )));
    }
    Ok(())
}

list_input! {
    ListApprovalsInput {
        status: Option<ApprovalStatus>,
    }
}

/// Most approvals one list reads before paging (they are few; expired ones are swept).
const APPROVAL_SCAN: i64 = 10_000;

operation! {
    ListApprovals {
        name: "list_approvals",
        title: "List approvals",
        description: "List approval requests (default: all, newest first); use status=pending to see what waits for a decision.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "approval",
        input: ListApprovalsInput,
        output: List<Approval>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        // Expired-but-unswept approvals are stored as pending; ask for both
        // and refine, so the status filter matches what callers see.
        let stored = match input.status {
            Some(ApprovalStatus::Expired) => None,
            other => other,
        };
        let rows = ctx.engine.store().list_approvals(stored, APPROVAL_SCAN).await?;
        let now = ctx.now;
        let data = rows
            .into_iter()
            .map(|a| effective(a, now))
            .filter(|a| input.status.is_none_or(|s| a.status == s))
            .collect::<Vec<_>>();
        super::paginate(data, &input.list_params(), "-created_at", &["created_at", "expires_at", "status", "operation", "id"])
    }
}

operation! {
    GetApproval {
        name: "get_approval",
        title: "Get an approval",
        description: "Get one approval request: the operation, its exact input, the summary, who asked, its status and result; poll it after a call returned approval_required.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "approval",
        input: IdInput,
        output: Approval,
        subject: |i| (Some(i.id.clone()), String::new()),
    }
    |ctx, input| {
        let a = load(ctx, &input.id).await?;
        Ok(effective(a, ctx.now))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequestInput {
    /// The approval id (`ap-...`).
    pub approval_id: String,
    /// Why it was approved (recorded in the audit log).
    #[serde(default)]
    pub note: Option<String>,
    /// Set only by the engine's in-chat confirmation path; never deserialized.
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) in_chat: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionOutput {
    pub approval: Approval,
}

pub struct ApproveRequest;

impl Operation for ApproveRequest {
    type Input = ApproveRequestInput;
    type Output = DecisionOutput;
    const META: OpMeta = OpMeta {
        name: "approve_request",
        title: "Approve a request",
        description: "Approve a pending request: its stored operation runs exactly once, as it was asked. Only an approver or admin other than the requester may approve.",
        risk: Risk::Write,
        permission: Permission::Read,
        idempotent: false,
        open_world: false,
        resource: "approval",
        gateable: false,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let a = load(ctx, &input.approval_id).await?;
        Ok(Subject {
            resource_id: Some(a.id.clone()),
            summary: format!("Approve {}: {}", a.id, a.summary),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let a = load(ctx, &input.approval_id).await?;
        ensure_pending(&a, ctx.now)?;
        let own = a.requested_by == ctx.principal.id;
        if input.in_chat {
            // In-chat confirmation: the requester's own request, where the
            // policy allows it for this risk class and no profile demanded
            // a second person.
            if !own {
                return Err(Error::forbidden(
                    "in-chat confirmation is only for the requester's own request",
                ));
            }
            if a.gate_reason != GateReason::Risk
                || !ctx.engine.config().approvals.allows_in_chat(a.risk)
            {
                return Err(Error::forbidden(format!(
                    "approval {} needs a decision by another approver; in-chat confirmation is not allowed for it",
                    a.id
                )));
            }
        } else {
            if !ctx.principal.role.allows(Permission::Approve) {
                return Err(Error::forbidden(format!(
                    "role '{}' may not approve requests; an approver or admin must",
                    ctx.principal.role.as_str()
                )));
            }
            if own {
                return Err(Error::forbidden(format!(
                    "{} requested {} and cannot approve it; another approver must",
                    ctx.principal.id, a.id
                )));
            }
        }
        if ctx.principal.role == Role::Agent {
            return Err(Error::forbidden("agents cannot approve requests"));
        }
        // The input to run is the full one (sealed when it holds a secret),
        // not the copy readers see.
        let private = ctx.tx.approval_private(&a.id).await?;
        let full_input = match &private.input_sealed {
            Some(sealed) => approval_secrets::open(ctx.engine, "input", &a.id, sealed)?,
            None => a.input.clone(),
        };
        let (op, stored_input) = super::registry::stored(&a.operation, &full_input)
            .ok_or_else(|| Error::internal(format!("approval {} names unknown operation", a.id)))?;
        ctx.note("operation", a.operation.clone());
        ctx.note("requested_by", a.requested_by.clone());
        ctx.note("in_chat", input.in_chat);
        if let Some(n) = &input.note {
            ctx.note("note", n.clone());
        }
        // Run the stored input. Its own audit event is written in this
        // transaction, attributed to the approver and naming the approval.
        let mut inner = Ctx {
            engine: ctx.engine,
            principal: ctx.principal,
            tx: &mut *ctx.tx,
            now: ctx.now,
            audit_details: serde_json::Map::new(),
            audit_resource_id: None,
            followup: None,
            refusals: Vec::new(),
            operation: op.meta().name,
            memo: Default::default(),
        };
        let result =
            match still_holds(&mut inner, op, &stored_input, &a, &private, input.in_chat).await {
                Ok(()) => op.execute_approved(&mut inner, stored_input).await,
                Err(e) => Err(e),
            };
        let mut details = std::mem::take(&mut inner.audit_details);
        let resource_id = inner.audit_resource_id.take().or(a.resource_id.clone());
        let output = match result {
            Ok(v) => v,
            Err(e) => {
                ctx.refusals.append(&mut inner.refusals);
                ctx.followup = Some(Followup::ApprovalFailed {
                    approval_id: a.id.clone(),
                    error: e.to_string(),
                });
                return Err(e);
            }
        };
        details.insert("approval_id".into(), a.id.clone().into());
        details.insert("requested_by".into(), a.requested_by.clone().into());
        ctx.engine
            .append(
                ctx.tx,
                ctx.principal,
                &a.operation,
                &a.resource_type,
                resource_id,
                AuditOutcome::Success,
                details,
                ctx.now,
            )
            .await?;
        // Readers of the approval see the result with its secrets sealed;
        // the requester gets them once: now, when confirming in chat, or
        // later through claim_approval_result.
        let (shown, secret) = approval_secrets::redact(&a.operation, &output, true);
        if !ctx
            .tx
            .decide_approval(
                &a.id,
                ApprovalStatus::Executed,
                &ctx.principal.id,
                input.note.as_deref(),
                Some(&shown),
                ctx.now,
            )
            .await?
        {
            return Err(Error::conflict(format!(
                "approval {} was decided by someone else first",
                a.id
            )));
        }
        if secret && !input.in_chat {
            let sealed = approval_secrets::seal(ctx.engine, "result", &a.id, &output)?;
            ctx.tx.set_approval_result_sealed(&a.id, &sealed).await?;
            ctx.note("result_sealed_for_requester", true);
        }
        ctx.audit_resource_id = Some(a.id.clone());
        let mut approval = load(ctx, &a.id).await?;
        if secret && input.in_chat {
            approval.result = Some(output);
        }
        Ok(DecisionOutput { approval })
    }

    /// An approved bulk operation runs its chunks once the approval has
    /// committed; its final answer becomes the approval's result.
    async fn after_commit(engine: &crate::Engine, mut out: Self::Output) -> Self::Output {
        let Some(result) = out.approval.result.as_ref() else {
            return out;
        };
        let Some(done) =
            super::bulk_run::finish_approved(engine, &out.approval.operation, result).await
        else {
            return out;
        };
        let saved = async {
            let mut tx = engine.store().begin_write().await?;
            tx.set_approval_result(&out.approval.id, &done).await?;
            tx.commit().await
        };
        if let Err(e) = saved.await {
            tracing::warn!(approval = %out.approval.id, error = %e, "could not record the bulk operation's final result");
        }
        out.approval.result = Some(done);
        out
    }
}

/// Checks, in the approver's transaction, that what the approval showed
/// still holds: the same facts (versions, serials, selection, profile,
/// issuer), and no second person required now where the requester is
/// confirming alone. Otherwise the approval is stale and nothing runs.
async fn still_holds(
    ctx: &mut Ctx<'_>,
    op: &dyn DynOperation,
    input: &serde_json::Value,
    a: &Approval,
    private: &crate::store::ApprovalPrivate,
    in_chat: bool,
) -> Result<()> {
    let now = op.describe_approved(ctx, input.clone()).await?;
    if let Some(bound) = &private.bound
        && *bound != now.bound
    {
        return Err(Error::StaleApproval(format!(
            "approval {} is stale: it was requested for {}, and now it is {}; nothing was done",
            a.id,
            facts(bound),
            facts(&now.bound)
        )));
    }
    if in_chat && (now.profile_requires_approval || now.four_eyes.is_some()) {
        return Err(Error::StaleApproval(format!(
            "approval {} is stale: the call now needs a decision by another approver, so it cannot be confirmed in chat; nothing was done",
            a.id
        )));
    }
    Ok(())
}

/// A short rendering of bound facts for a stale-approval message.
fn facts(f: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut s = f.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if f.len() > SHOWN {
        s.push_str(&format!(", ... ({} facts)", f.len()));
    }
    if s.is_empty() {
        s.push_str("nothing");
    }
    s
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimResultInput {
    /// The approval id (`ap-...`) of your own executed request.
    pub approval_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedResult {
    pub approval_id: String,
    pub operation: String,
    /// The operation's full result, secrets included (a new API key, an
    /// export link's URL). Given once; the approval keeps only a sealed-out copy.
    pub result: serde_json::Value,
}

operation! {
    ClaimApprovalResult {
        name: "claim_approval_result",
        title: "Collect an approved request's secret result",
        description: "Get, once, the full result of your own executed request whose result holds a secret (a new API key, an export link); the approval record shows it as [sealed].",
        risk: Write,
        permission: Read,
        idempotent: false,
        resource: "approval",
        gateable: false,
        input: ClaimResultInput,
        output: ClaimedResult,
        subject: |i| (Some(i.approval_id.clone()), format!("Collect the result of {}", i.approval_id)),
    }
    |ctx, input| {
        let a = load(ctx, &input.approval_id).await?;
        if a.requested_by != ctx.principal.id {
            return Err(Error::forbidden(format!(
                "only {} requested {}; only they may collect its result",
                a.requested_by, a.id
            )));
        }
        if a.status != ApprovalStatus::Executed {
            return Err(Error::conflict(format!("approval {} is {}, not executed", a.id, a.status.as_str())));
        }
        let Some(sealed) = ctx.tx.take_approval_result_sealed(&a.id).await? else {
            return Err(Error::conflict(format!(
                "approval {} has no secret result to collect (it held none, or it was collected already)",
                a.id
            )));
        };
        let result = approval_secrets::open(ctx.engine, "result", &a.id, &sealed)?;
        ctx.note("operation", a.operation.clone());
        Ok(ClaimedResult { approval_id: a.id, operation: a.operation, result })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideInput {
    /// The approval id (`ap-...`).
    pub approval_id: String,
    /// The reason, recorded with the decision.
    #[serde(default)]
    pub note: Option<String>,
}

operation! {
    RejectRequest {
        name: "reject_request",
        title: "Reject a request",
        description: "Reject a pending request; its operation never runs. Approvers and admins may reject.",
        risk: Write,
        permission: Approve,
        idempotent: false,
        resource: "approval",
        gateable: false,
        input: DecideInput,
        output: DecisionOutput,
        subject: |i| (Some(i.approval_id.clone()), format!("Reject {}", i.approval_id)),
    }
    |ctx, input| { decide(ctx, input, ApprovalStatus::Rejected).await }
}

operation! {
    CancelRequest {
        name: "cancel_request",
        title: "Cancel a request",
        description: "Withdraw your own pending request (or any, as admin); its operation never runs.",
        risk: Write,
        permission: Read,
        idempotent: false,
        resource: "approval",
        gateable: false,
        input: DecideInput,
        output: DecisionOutput,
        subject: |i| (Some(i.approval_id.clone()), format!("Cancel {}", i.approval_id)),
    }
    |ctx, input| {
        let a = load(ctx, &input.approval_id).await?;
        if a.requested_by != ctx.principal.id && ctx.principal.role != Role::Admin {
            return Err(Error::forbidden("only the requester or an admin may cancel a request"));
        }
        decide(ctx, input, ApprovalStatus::Cancelled).await
    }
}

async fn decide(
    ctx: &mut Ctx<'_>,
    input: DecideInput,
    to: ApprovalStatus,
) -> Result<DecisionOutput> {
    let a = load(ctx, &input.approval_id).await?;
    if a.status != ApprovalStatus::Pending {
        return Err(Error::conflict(format!(
            "approval {} is already {}",
            a.id,
            a.status.as_str()
        )));
    }
    if !ctx
        .tx
        .decide_approval(
            &a.id,
            to,
            &ctx.principal.id,
            input.note.as_deref(),
            None,
            ctx.now,
        )
        .await?
    {
        return Err(Error::conflict(format!(
            "approval {} was decided by someone else first",
            a.id
        )));
    }
    ctx.note("operation", a.operation.clone());
    if let Some(n) = &input.note {
        ctx.note("note", n.clone());
    }
    Ok(DecisionOutput {
        approval: load(ctx, &a.id).await?,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExpiredApprovals {
    /// The approvals marked expired.
    pub expired: Vec<String>,
}

operation! {
    ExpireApprovals {
        name: "expire_approvals",
        title: "Expire stale approvals",
        description: "Mark pending approvals past their deadline as expired (the scheduler runs this; their operations never run).",
        risk: Write,
        permission: Admin,
        idempotent: true,
        resource: "approval",
        gateable: false,
        input: EmptyInput,
        output: ExpiredApprovals,
        subject: |_i| (None, "Expire stale approvals".to_owned()),
    }
    |ctx, _input| {
        let ids = ctx.engine.store().expired_pending_approvals(ctx.now).await?;
        let mut expired = Vec::new();
        for id in ids {
            if ctx.tx.decide_approval(&id, ApprovalStatus::Expired, &ctx.principal.id, Some("expired"), None, ctx.now).await? {
                ctx.engine.append(ctx.tx, ctx.principal, "approval.expired", "approval", Some(id.clone()), AuditOutcome::Success, serde_json::Map::new(), ctx.now).await?;
                expired.push(id);
            }
        }
        Ok(ExpiredApprovals { expired })
    }
}
