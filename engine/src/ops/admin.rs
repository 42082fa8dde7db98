//! Audit, statistics and principal operations.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::List;
use super::{Ctx, EmptyInput, IdInput, OpMeta, Operation, Risk, Subject};
use crate::auth;
use crate::domain::approval::GateReason;
use crate::domain::{ApiPrincipal, AuditEvent, ChainVerification, Permission, Role};
use crate::error::{Error, Result};
use crate::store::AuditFilter;

list_input! {
    /// The audit log pages in SQL, newest first (`sort` may only be `-seq`);
    /// `created_after`/`created_before` bound the event time; no total is counted.
    AuditLogInput {
        /// Only events by this principal id.
        actor: Option<String>,
        /// Only events about this resource id.
        resource_id: Option<String>,
        /// Only this action (operation name), e.g. `revoke_certificate`.
        action: Option<String>,
        /// Only events before this sequence number (for paging back).
        before_seq: Option<i64>,
    }
}

/// The one order the audit log is listed in.
const AUDIT_SORT: &str = "-seq";

operation! {
    GetAuditLog {
        name: "get_audit_log",
        title: "Read the audit log",
        description: "Read the append-only audit trail, newest first: who did what, when, and with what outcome.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "audit",
        input: AuditLogInput,
        output: List<AuditEvent>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let p = input.list_params();
        let sort = super::SortKey::parse(p.sort.as_deref(), AUDIT_SORT, &["seq"])?;
        if !sort.desc {
            return Err(Error::invalid("the audit log is listed newest first; sort may only be -seq"));
        }
        let (size, offset) = p.window()?;
        let cursor_seq = match &p.cursor {
            Some(c) => Some(crate::store::Cursor::decode(c)?.k.as_i64().ok_or_else(|| Error::invalid("cursor is not valid for the audit log"))?),
            None => None,
        };
        let before_seq = match (input.before_seq, cursor_seq) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let f = AuditFilter {
            actor: input.actor, resource_id: input.resource_id, action: input.action, before_seq,
            at_after: p.created_after, at_before: p.created_before, offset,
        };
        let mut data = ctx.engine.store().list_audit(&f, size + 1).await?;
        let next_cursor = if data.len() as i64 > size {
            data.truncate(size as usize);
            data.last().map(|e| crate::store::Cursor { s: AUDIT_SORT.into(), k: e.seq.into(), id: e.id.clone() }.encode())
        } else {
            None
        };
        Ok(List { data, total: None, next_cursor })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAuditLogInput {
    /// A copy of get_audit_checkpoints' output kept elsewhere: also catches
    /// checkpoints deleted from the database.
    #[serde(default)]
    pub checkpoints: Option<serde_json::Value>,
}

operation! {
    VerifyAuditLog {
        name: "verify_audit_log",
        title: "Verify the audit log",
        description: "Check the audit trail's hash chain against its signed checkpoints: reports broken links, truncation, rewrites, bad or missing checkpoints and unanchored events.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "audit",
        input: VerifyAuditLogInput,
        output: ChainVerification,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let export = input
            .checkpoints
            .map(|v| {
                serde_json::from_value::<crate::domain::AuditCheckpointExport>(v).map_err(|e| {
                    Error::invalid(format!("checkpoints is not an export of get_audit_checkpoints: {e}"))
                })
            })
            .transpose()?;
        ctx.note("with_export", export.is_some());
        let v = crate::audit_anchor::verify(ctx.engine, export).await?;
        ctx.note("valid", v.valid);
        ctx.note("checked", v.checked);
        let found: Vec<&str> = v.findings.iter().map(|f| f.kind.as_str()).collect();
        ctx.note("findings", found);
        Ok(v)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatsSummary {
    pub total_certificates: i64,
    /// Counts by effective status (pending, valid, expiring, expired, revoked, failed, archived).
    pub by_status: serde_json::Map<String, serde_json::Value>,
    /// Days before expiry at which a certificate counts as expiring.
    pub expiring_window_days: i64,
    pub issuers: i64,
    pub agents: i64,
    pub pending_approvals: i64,
}

operation! {
    GetStatsSummary {
        name: "get_stats_summary",
        title: "Inventory summary",
        description: "Summarize the fleet: certificates by status (valid, expiring, expired, revoked, ...), issuers, agents and pending approvals.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "stats",
        input: EmptyInput,
        output: StatsSummary,
        subject: |_i| (None, String::new()),
    }
    |ctx, _input| {
        let store = ctx.engine.store();
        let view = ctx.engine.status_view(ctx.now);
        let counts = store.certificate_counts(view).await?;
        let get = |k: &str| counts.iter().find(|(s, _)| s == k).map(|(_, n)| *n).unwrap_or(0);
        let active = get("active");
        let expired = get("expired");
        let expiring = get("expiring");
        let mut by_status = serde_json::Map::new();
        for s in ["pending", "revoked", "failed", "archived"] {
            by_status.insert(s.into(), get(s).into());
        }
        by_status.insert("valid".into(), (active - expired - expiring).into());
        by_status.insert("expiring".into(), expiring.into());
        by_status.insert("expired".into(), expired.into());
        let total = counts.iter().filter(|(s, _)| s != "expired" && s != "expiring").map(|(_, n)| n).sum();
        let pending = store.count_pending_approvals(ctx.now).await?;
        Ok(StatsSummary {
            total_certificates: total,
            by_status,
            expiring_window_days: ctx.engine.config().expiring_window_seconds / 86400,
            issuers: store.list_issuers().await?.len() as i64,
            agents: store.list_agents().await?.len() as i64,
            pending_approvals: pending,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrincipalInput {
    pub name: String,
    pub role: Role,
    /// Required for (and only for) the agent role.
    #[serde(default)]
    pub agent_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedPrincipal {
    pub principal: ApiPrincipal,
    /// The API key: shown once, stored only as a hash.
    pub api_key: String,
}

/// Whether a principal that may approve needs another person's approval to
/// be created: some rule demands a second person, and one exists.
async fn second_person_required(ctx: &mut Ctx<'_>) -> Result<bool> {
    let store = ctx.engine.store();
    let rule = ctx.engine.config().approvals.four_eyes()
        || store
            .list_profiles()
            .await?
            .iter()
            .any(|p| p.requires_approval);
    if !rule {
        return Ok(false);
    }
    Ok(store.list_principals().await?.iter().any(|p| {
        p.id != ctx.principal.id && p.revoked_at.is_none() && p.role.allows(Permission::Approve)
    }))
}

pub struct CreatePrincipal;

impl Operation for CreatePrincipal {
    type Input = CreatePrincipalInput;
    type Output = CreatedPrincipal;
    const META: OpMeta = OpMeta {
        name: "create_principal",
        title: "Create an API principal",
        description: "Create an API principal with a role and mint its key (shown once).",
        risk: Risk::Write,
        permission: Permission::Admin,
        idempotent: false,
        open_world: false,
        resource: "principal",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        // Wherever a second person is required (the four-eyes policy, or any
        // profile that requires approval), a principal that may approve is
        // itself approved by another person: otherwise an admin mints a
        // second key and approves their own requests with it. A sole admin
        // (nobody else may approve) is the one exception: there is no second
        // person to ask, and `--first-approver` is how an install avoids that.
        let grants_approval = input.role.allows(Permission::Approve);
        let four_eyes = grants_approval && second_person_required(ctx).await?;
        Ok(Subject {
            resource_id: None,
            summary: format!(
                "Create {} principal '{}'{}",
                input.role.as_str(),
                input.name,
                if grants_approval {
                    " (it may approve requests)"
                } else {
                    ""
                }
            ),
            profile_requires_approval: false,
            four_eyes: four_eyes.then_some(GateReason::FourEyes),
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let name = input.name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(Error::invalid("name must be 1 to 200 characters"));
        }
        if let Some(a) = &input.agent_id
            && ctx.tx.agent(a).await?.is_none()
        {
            return Err(Error::invalid(format!("unknown agent_id '{a}'")));
        }
        let key = auth::mint(
            ctx.tx,
            ctx.engine,
            name,
            input.role,
            input.agent_id,
            ctx.now,
        )
        .await?;
        ctx.audit_resource_id = Some(key.principal.id.clone());
        ctx.note("role", input.role.as_str());
        Ok(CreatedPrincipal {
            api_key: key.key.to_string(),
            principal: key.principal,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Revoked {
    pub id: String,
    pub revoked: bool,
}

operation! {
    RevokePrincipal {
        name: "revoke_principal",
        title: "Revoke an API principal",
        description: "Revoke an API principal's key immediately; requests with it fail from then on.",
        risk: Destructive,
        permission: Admin,
        idempotent: false,
        resource: "principal",
        input: IdInput,
        output: Revoked,
        subject: |i| (Some(i.id.clone()), format!("Revoke API principal {}", i.id)),
    }
    |ctx, input| {
        if input.id == ctx.principal.id {
            return Err(Error::conflict("a principal cannot revoke its own key"));
        }
        if !ctx.tx.revoke_principal(&input.id, ctx.now).await? {
            return Err(Error::not_found("principal", input.id));
        }
        Ok(Revoked { id: input.id, revoked: true })
    }
}
