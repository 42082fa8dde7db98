//! Deployment work for agents: what a job asks for (the names and key type
//! for a CSR, the target and the issued certificate for a deployment), the
//! agent's reports as it works, and the verification of what the target
//! serves. Deployment jobs are made here, in one place, when an agent's CSR
//! yields a new version, whichever issuer signed it and whenever: one per
//! target of the certificate that this agent serves (only it holds the key).
//!
//! Private keys never pass through: the agent sends CSRs and receives
//! certificates and chains.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agents_work::ensure_agent_self;
use super::{Ctx, OpMeta, Operation, Risk, Subject};
use crate::domain::{Job, JobKind, JobStatus, KeyAlgorithm, Target, TargetConfig};
use crate::error::{Error, Result};
use crate::store::Verification;

/// How long an agent holds a deployment job before it is given back.
const AGENT_LEASE_SECONDS: i64 = 600;
/// Longest reason or verification error kept.
const MAX_MESSAGE: usize = 8000;

/// Queues a deployment job for each target of `certificate_id` served by
/// `agent_id`, for a version just issued from that agent's CSR. Called
/// wherever a version is recorded (`issue_version` when the CA signs at
/// once, the issuer job worker when an external CA signed later), in the
/// transaction that records it, so every issuer's certificates deploy.
pub(crate) async fn queue_deployments(
    tx: &mut crate::store::Tx,
    engine: &crate::Engine,
    now: crate::clock::UnixTime,
    certificate_id: &str,
    version_id: &str,
    agent_id: &str,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for t in tx.certificate_targets(certificate_id).await? {
        // The target's agent, or any member of the target's agent group.
        if !super::agent_groups::serves(tx, &t, agent_id).await? {
            continue;
        }
        let job = Job {
            id: crate::ids::new_id("job", engine.clock()),
            kind: JobKind::Deployment,
            status: JobStatus::Pending,
            certificate_id: Some(certificate_id.to_owned()),
            target_id: Some(t.id.clone()),
            agent_id: Some(agent_id.to_owned()),
            attempts: 0,
            max_attempts: 1,
            run_after: now,
            last_error: None,
            payload: serde_json::json!({ "version_id": version_id }),
            created_at: now,
            updated_at: now,
        };
        tx.insert_job(&job).await?;
        ids.push(job.id);
    }
    Ok(ids)
}

/// The agent's own job, or not found (another agent's job looks missing).
async fn own_job(ctx: &mut Ctx<'_>, agent_id: &str, job_id: &str) -> Result<Job> {
    ensure_agent_self(ctx.principal, agent_id)?;
    ctx.tx
        .job(job_id)
        .await?
        .filter(|j| j.agent_id.as_deref() == Some(agent_id))
        .ok_or_else(|| Error::not_found("job", job_id))
}

fn clip(s: String) -> String {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

// ---------------------------------------------------------------- job details

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentJobInput {
    /// The agent id (`ag-...`).
    pub id: String,
    /// One of its jobs (`job-...`).
    pub job_id: String,
}

/// The issued certificate a deployment installs (no private key: the agent has it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployableVersion {
    pub id: String,
    pub serial: String,
    /// SHA-256 of the leaf (DER), lower-case hex.
    pub fingerprint: String,
    pub cert_pem: String,
    /// Issuing chain, leaf excluded.
    pub chain_pem: String,
    pub not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentJob {
    pub job: Job,
    pub common_name: Option<String>,
    pub sans: Vec<String>,
    /// The key type to generate for a CSR (the profile's default).
    pub key_type: Option<KeyAlgorithm>,
    /// Deployment jobs: where to deploy, with its checked connector settings.
    pub target: Option<Target>,
    /// Deployment jobs: what to deploy.
    pub version: Option<DeployableVersion>,
}

pub struct GetAgentJob;

impl Operation for GetAgentJob {
    type Input = AgentJobInput;
    type Output = AgentJob;
    const META: OpMeta = super::agents_work::agent_meta(
        "get_agent_job",
        "Get an agent's job",
        "One job of an agent with what it needs: names and key type for a CSR, or the target and the certificate and chain to deploy; called by the agent itself.",
        Risk::Read,
        "job",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.id)?;
        Ok(Subject {
            resource_id: Some(input.job_id.clone()),
            summary: String::new(),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let job = own_job(ctx, &input.id, &input.job_id).await?;
        let cert = match &job.certificate_id {
            Some(id) => {
                ctx.tx
                    .certificate(id, ctx.engine.status_view(ctx.now))
                    .await?
            }
            None => None,
        };
        let key_type = match &cert {
            Some(c) => ctx
                .tx
                .profile(&c.profile_id)
                .await?
                .map(|p| p.default_key_type),
            None => None,
        };
        let target = match &job.target_id {
            Some(id) => ctx.tx.target(id).await?,
            None => None,
        };
        let version = match job.payload.get("version_id").and_then(|v| v.as_str()) {
            Some(vid) => ctx.tx.version(vid).await?.map(|v| DeployableVersion {
                id: v.id,
                serial: v.serial,
                fingerprint: v.fingerprint,
                cert_pem: v.cert_pem,
                chain_pem: v.chain_pem,
                not_after: v.not_after,
            }),
            None => None,
        };
        Ok(AgentJob {
            job,
            common_name: cert.as_ref().map(|c| c.common_name.clone()),
            sans: cert.map(|c| c.sans).unwrap_or_default(),
            key_type,
            target,
            version,
        })
    }
}

// ---------------------------------------------------------------- job reports

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentJobStep {
    /// The agent starts (or resumes) the job; it holds it for ten minutes.
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportAgentJobInput {
    /// The agent id (`ag-...`).
    pub id: String,
    pub job_id: String,
    pub status: AgentJobStep,
    /// What happened: the reason of a failure (validation output), or a note.
    #[serde(default)]
    pub message: Option<String>,
}

pub struct ReportAgentJob;

impl Operation for ReportAgentJob {
    type Input = ReportAgentJobInput;
    type Output = Job;
    const META: OpMeta = super::agents_work::agent_meta(
        "report_agent_job",
        "Report on an agent's job",
        "An agent reports a step of one of its jobs: running (it takes the job), completed, or failed with the reason; called by the agent itself.",
        Risk::Write,
        "job",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.id)?;
        Ok(Subject {
            resource_id: Some(input.job_id.clone()),
            summary: format!("Agent {} reports job {}", input.id, input.job_id),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let job = own_job(ctx, &input.id, &input.job_id).await?;
        let worker = format!("agent:{}", input.id);
        let message = input.message.map(clip);
        let moved = match input.status {
            AgentJobStep::Running => {
                ctx.tx
                    .start_job_for(&job.id, &worker, ctx.now, ctx.now + AGENT_LEASE_SECONDS)
                    .await?
            }
            AgentJobStep::Completed => {
                ctx.tx
                    .end_job_for(&job.id, &worker, true, None, ctx.now)
                    .await?
            }
            AgentJobStep::Failed => {
                let reason = message
                    .clone()
                    .unwrap_or_else(|| "the agent reported a failure".into());
                ctx.tx
                    .end_job_for(&job.id, &worker, false, Some(&reason), ctx.now)
                    .await?
            }
        };
        if !moved {
            return Err(Error::conflict(format!(
                "job {} is {}; it cannot become {:?} now",
                job.id,
                job.status.as_str(),
                input.status
            )));
        }
        ctx.audit_resource_id = Some(job.id.clone());
        ctx.note("agent_id", input.id.clone());
        ctx.note("step", format!("{:?}", input.status).to_ascii_lowercase());
        if let Some(m) = &message {
            ctx.note("message", m.clone());
        }
        ctx.tx
            .job(&job.id)
            .await?
            .ok_or_else(|| Error::internal("job vanished"))
    }
}

// ---------------------------------------------------------------- verification

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyJobInput {
    /// The deployment job (`job-...`).
    pub id: String,
    /// The agent reporting (`ag-...`); an agent key may only report for itself.
    pub agent_id: String,
    /// `host:port` the agent connected to.
    pub endpoint: String,
    /// SHA-256 of the leaf it deployed.
    pub expected_fingerprint: String,
    /// SHA-256 of the leaf the endpoint served, if the handshake got that far.
    #[serde(default)]
    pub served_fingerprint: Option<String>,
    /// Why no certificate could be read.
    #[serde(default)]
    pub error: Option<String>,
}

pub struct VerifyJob;

impl Operation for VerifyJob {
    type Input = VerifyJobInput;
    type Output = Verification;
    const META: OpMeta = super::agents_work::agent_meta(
        "verify_job",
        "Report a deployment's verification",
        "An agent reports what its target serves after a deployment: the served leaf's SHA-256 compared with the deployed one; called by the agent itself.",
        Risk::Write,
        "job",
    );

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        ensure_agent_self(ctx.principal, &input.agent_id)?;
        Ok(Subject {
            resource_id: Some(input.id.clone()),
            summary: format!("Verification of job {}", input.id),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let job = own_job(ctx, &input.agent_id, &input.id).await?;
        if job.kind != JobKind::Deployment {
            return Err(Error::invalid(format!(
                "job {} is a {} job; only deployments are verified",
                job.id,
                job.kind.as_str()
            )));
        }
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let expected = input.expected_fingerprint.to_ascii_lowercase();
        let served = input.served_fingerprint.map(|s| s.to_ascii_lowercase());
        if !hex(&expected) || served.as_deref().is_some_and(|s| !hex(s)) {
            return Err(Error::invalid(
                "fingerprints are SHA-256 digests in hex (64 characters)",
            ));
        }
        if input.endpoint.is_empty() || input.endpoint.len() > 300 {
            return Err(Error::invalid("endpoint must be 1 to 300 characters"));
        }
        let v = Verification {
            verified: served.as_deref() == Some(expected.as_str()),
            job_id: job.id.clone(),
            agent_id: input.agent_id,
            target_id: job.target_id.clone(),
            endpoint: input.endpoint,
            expected_fingerprint: expected,
            served_fingerprint: served,
            error: input.error.map(clip),
            verified_at: ctx.now,
        };
        ctx.tx.upsert_verification(&v).await?;
        ctx.audit_resource_id = Some(job.id);
        ctx.note("verified", v.verified);
        Ok(v)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationInput {
    /// The deployment job (`job-...`).
    pub id: String,
}

/// Checks a target's settings are complete for a deployment (used by the agent too).
pub fn deployable_config(target: &Target) -> Result<TargetConfig> {
    let c = TargetConfig::parse(target.kind, &target.config)?;
    c.require_complete(target.kind)?;
    Ok(c)
}
