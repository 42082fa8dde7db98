//! What agents call: heartbeats, their open work, and CSRs for jobs that wait
//! for one. These need the `agent_self` permission: an agent principal only
//! reaches its own agent id (checked here, against the input), an admin any.
//! They are never gated: the decision to renew was taken (and approved) when
//! the job was made.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::domain::{
    Agent, AgentStatus, CertificateVersion, Job, JobStatus, Permission, Principal, Role,
};
use crate::error::{Error, Result};
use crate::store::WorkItem;

/// Refuses an agent principal acting for another agent. Admins may act for any.
pub(crate) fn ensure_agent_self(principal: &Principal, agent_id: &str) -> Result<()> {
    match principal.role {
        Role::Admin => Ok(()),
        Role::Agent if principal.agent_id.as_deref() == Some(agent_id) => Ok(()),
        Role::Agent => Err(Error::forbidden(format!(
            "this agent key belongs to another agent and may not act for {agent_id}"
        ))),
        other => Err(Error::forbidden(format!(
            "role '{}' may not act as an agent",
            other.as_str()
        ))),
    }
}

async fn load_agent(ctx: &mut Ctx<'_>, id: &str) -> Result<Agent> {
    ensure_agent_self(ctx.principal, id)?;
    ctx.tx
        .agent(id)
        .await?
        .ok_or_else(|| Error::not_found("agent", id))
}

fn agent_subject(id: &str, summary: String) -> Subject {
    Subject {
        resource_id: Some(id.to_owned()),
        summary,
        profile_requires_approval: false,
        four_eyes: None,
        bound: Vec::new(),
    }
}

/// Metadata of an operation an agent calls for itself (`resource`: what
/// the audit event names, its agent or its job).
pub(super) const fn agent_meta(
    name: &'static str,
    title: &'static str,
    description: &'static str,
    risk: Risk,
    resource: &'static str,
) -> OpMeta {
    OpMeta {
        name,
        title,
        description,
        risk,
        permission: Permission::AgentSelf,
        idempotent: matches!(risk, Risk::Read),
        open_world: false,
        resource,
        gateable: false,
    }
}

// ---------------------------------------------------------------- heartbeat

/// What an agent reports about itself. The host name is shown as is; the
/// group-defining facts (OS, architecture, IP, version, labels) are stored
/// as *reported*, beside the ones an admin set or accepted, and never change
/// the agent's groups (see `update_agent`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatInput {
    /// The agent id (`ag-...`).
    pub id: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub ip_address: Option<String>,
    /// The agent's certctl version.
    #[serde(default)]
    pub version: Option<String>,
    /// Replaces the agent's reported labels when given (shown; agent groups
    /// match the labels an admin set or accepted).
    #[serde(default)]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
}

pub struct AgentHeartbeat;

impl Operation for AgentHeartbeat {
    type Input = HeartbeatInput;
    type Output = Agent;
    const META: OpMeta = agent_meta(
        "agent_heartbeat",
        "Agent heartbeat",
        "Record that an agent is alive, with what it reports about its host (hostname, OS, architecture, IP, version, labels) and the address the call came from; called by the agent itself. Reported facts never change agent group membership.",
        Risk::Write,
        "agent",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.id)?;
        Ok(agent_subject(
            &input.id,
            format!("Heartbeat of agent {}", input.id),
        ))
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        use super::agent_groups::{MAX_FACT_LEN, MAX_LABELS};
        let mut a = load_agent(ctx, &input.id).await?;
        if a.status == AgentStatus::Disabled {
            return Err(Error::forbidden(format!("agent {} is disabled", a.id)));
        }
        let fields = [
            (&mut a.hostname, input.hostname),
            (&mut a.reported.os, input.os),
            (&mut a.reported.arch, input.arch),
            (&mut a.reported.ip_address, input.ip_address),
            (&mut a.reported.version, input.version),
        ];
        for (slot, value) in fields {
            if let Some(v) = value {
                if v.len() > MAX_FACT_LEN {
                    return Err(Error::invalid(format!(
                        "host facts must be at most {MAX_FACT_LEN} characters"
                    )));
                }
                *slot = v;
            }
        }
        if let Some(labels) = input.labels {
            if labels.len() > MAX_LABELS {
                return Err(Error::invalid(format!(
                    "an agent has at most {MAX_LABELS} labels"
                )));
            }
            a.reported.labels = labels;
        }
        // The address the face saw, not one the agent claims: it is what an
        // admin compares with the reported IP before accepting it.
        a.observed_address = ctx.principal.address.clone();
        if let Some(addr) = &a.observed_address {
            ctx.note("observed_address", addr.clone());
        }
        let pending = a.unaccepted_facts();
        if !pending.is_empty() {
            ctx.note("unaccepted_facts", pending);
        }
        a.status = AgentStatus::Online;
        a.last_heartbeat_at = Some(ctx.now);
        a.updated_at = ctx.now;
        ctx.tx.upsert_agent(&a).await?;
        Ok(a)
    }
}

// ---------------------------------------------------------------- work

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentIdInput {
    /// The agent id (`ag-...`).
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentWork {
    pub agent_id: String,
    /// Open jobs, oldest first: `awaiting_csr` ones want a CSR for the names given.
    pub data: Vec<WorkItem>,
}

pub struct GetAgentWork;

impl Operation for GetAgentWork {
    type Input = AgentIdInput;
    type Output = AgentWork;
    const META: OpMeta = agent_meta(
        "get_agent_work",
        "Get an agent's work",
        "The open jobs of one agent (CSRs to send, deployments to do), oldest first; polled by the agent itself.",
        Risk::Read,
        "agent",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.id)?;
        Ok(agent_subject(&input.id, String::new()))
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        ensure_agent_self(ctx.principal, &input.id)?;
        // Served from the store's work cache (fresh within a second, see
        // `store::WORK_CACHE_SECONDS`): every agent polls, often.
        let data = ctx
            .engine
            .store()
            .agent_work_cached(&input.id, ctx.now)
            .await?;
        // An unknown agent and an idle one look the same to an agent (it can
        // only ask about itself); an admin asking about a typo gets a 404.
        if data.is_empty() && ctx.tx.agent(&input.id).await?.is_none() {
            return Err(Error::not_found("agent", input.id));
        }
        ctx.note("jobs", data.len());
        Ok(AgentWork {
            agent_id: input.id,
            data,
        })
    }
}

// ---------------------------------------------------------------- csr

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCsrInput {
    /// The agent id (`ag-...`).
    pub id: String,
    /// The `awaiting_csr` job this CSR answers.
    pub job_id: String,
    /// PKCS#10 CSR (PEM) made on the agent, where the key stays.
    pub csr_pem: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCsrOutput {
    pub job: Job,
    /// The new version, when the issuer signed at once (local CA kinds).
    pub version: Option<CertificateVersion>,
    /// The issuer job, when an external CA signs it later.
    pub issuer_job: Option<Job>,
}

pub struct SubmitAgentCsr;

impl Operation for SubmitAgentCsr {
    type Input = AgentCsrInput;
    type Output = AgentCsrOutput;
    const META: OpMeta = agent_meta(
        "submit_agent_csr",
        "Submit an agent's CSR",
        "Answer an agent's awaiting_csr job with a CSR: the certificate is issued from it (checked against its profile) and the job completes.",
        Risk::Write,
        "agent",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.id)?;
        Ok(agent_subject(
            &input.id,
            format!("CSR from agent {} for job {}", input.id, input.job_id),
        ))
    }

    // The CSR is parsed in `execute`, after `describe` has checked that the
    // caller is this agent: another agent's key gets 403 whatever it sends.
    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let agent = load_agent(ctx, &input.id).await?;
        if agent.status == AgentStatus::Disabled {
            return Err(Error::forbidden(format!("agent {} is disabled", agent.id)));
        }
        // Another agent's job is reported as missing, not as forbidden.
        let job = ctx
            .tx
            .job(&input.job_id)
            .await?
            .filter(|j| j.agent_id.as_deref() == Some(agent.id.as_str()))
            .ok_or_else(|| Error::not_found("job", &input.job_id))?;
        if job.status != JobStatus::AwaitingCsr {
            return Err(Error::conflict(format!(
                "job {} is {}, not awaiting a CSR",
                job.id,
                job.status.as_str()
            )));
        }
        let cert_id = job
            .certificate_id
            .clone()
            .ok_or_else(|| Error::conflict(format!("job {} has no certificate", job.id)))?;
        let cert = ctx
            .tx
            .certificate(&cert_id, ctx.engine.status_view(ctx.now))
            .await?
            .ok_or_else(|| Error::not_found("certificate", &cert_id))?;
        // The local CA signs now; an external CA signs later through an
        // issuer job. Either way the version is queued for deployment to
        // this agent's targets when it is recorded (see `queue_deployments`).
        ctx.memo.key_holder_agent = Some(agent.id.clone());
        let (version, issuer_job) = match super::certificates::issue_version(
            ctx,
            cert,
            Some(&input.csr_pem),
            None,
            job.kind,
        )
        .await?
        {
            super::certificates::Issuance::Now(issued) => (Some(issued.1), None),
            super::certificates::Issuance::Queued(j) => (None, Some(j)),
        };
        if !ctx
            .tx
            .transition_job(
                &job.id,
                JobStatus::AwaitingCsr,
                JobStatus::Completed,
                None,
                ctx.now,
            )
            .await?
        {
            return Err(Error::conflict(format!(
                "job {} changed state; try again",
                job.id
            )));
        }
        ctx.note("job_id", job.id.clone());
        ctx.audit_resource_id = Some(agent.id.clone());
        let job = ctx
            .tx
            .job(&job.id)
            .await?
            .ok_or_else(|| Error::internal("job vanished"))?;
        Ok(AgentCsrOutput {
            job,
            version,
            issuer_job,
        })
    }
}
