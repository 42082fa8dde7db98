//! Inventory operations: targets, agents, jobs, owners, teams, profiles,
//! renewal policies and policy rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{IdInput, List, ListParams, paginate};
use crate::auth;
use crate::domain::{
    Agent, AgentStatus, ExtendedKeyUsage, Job, JobKind, JobStatus, KeyAlgorithm, KeygenMode, Owner,
    PolicyKind, PolicyMode, PolicyRule, PolicyViolation, Profile, RenewalPolicy, Role, SanRules,
    Severity, Target, TargetKind, Team,
};
use crate::error::{Error, Result};
use crate::store::JobFilter;

fn non_empty(field: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if v.is_empty() || v.len() > 200 {
        return Err(Error::invalid(format!(
            "{field} must be 1 to 200 characters"
        )));
    }
    Ok(v.to_owned())
}

// ---------------------------------------------------------------- targets

list_input! {
    ListTargetsInput {
        /// Only targets served by this agent.
        agent_id: Option<String>,
        /// Only targets of this kind.
        kind: Option<TargetKind>,
    }
}

list_input! {
    ListAgentsInput {
        /// Only agents with this status.
        status: Option<AgentStatus>,
    }
}

/// Fields the small inventory lists sort by.
const SORT_NAMED: &[&str] = &["name", "created_at", "updated_at", "id"];

operation! {
    ListTargets {
        name: "list_targets",
        title: "List targets",
        description: "List deployment targets (NGINX, Apache, HAProxy, Traefik, Caddy, ...) and the agents that serve them.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "target",
        input: ListTargetsInput,
        output: List<Target>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let mut rows = ctx.engine.store().list_targets(input.agent_id.as_deref()).await?;
        rows.retain(|t| input.kind.is_none_or(|k| t.kind == k));
        paginate(rows, &input.list_params(), "name", SORT_NAMED)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetInput {
    /// Set to update an existing target; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub kind: TargetKind,
    /// The agent that deploys to this target.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Or: an agent group whose members deploy to it (not with `agent_id`).
    #[serde(default)]
    pub agent_group_id: Option<String>,
    /// Connector settings: certificate and key paths, reload command, admin API URL.
    #[serde(default)]
    pub config: serde_json::Map<String, serde_json::Value>,
}

async fn save_target(ctx: &mut super::Ctx<'_>, input: TargetInput) -> Result<Target> {
    let name = non_empty("name", &input.name)?;
    let config = serde_json::Value::Object(input.config);
    crate::domain::TargetConfig::parse(input.kind, &config)?;
    if let Some(a) = &input.agent_id
        && ctx.tx.agent(a).await?.is_none()
    {
        return Err(Error::invalid(format!("unknown agent_id '{a}'")));
    }
    if let Some(g) = &input.agent_group_id {
        if input.agent_id.is_some() {
            return Err(Error::invalid("give agent_id or agent_group_id, not both"));
        }
        if ctx.tx.agent_group(g).await?.is_none() {
            return Err(Error::invalid(format!("unknown agent_group_id '{g}'")));
        }
    }
    let existing = match &input.id {
        Some(id) => Some(
            ctx.tx
                .target(id)
                .await?
                .ok_or_else(|| Error::not_found("target", id))?,
        ),
        None => None,
    };
    let t = Target {
        id: existing
            .as_ref()
            .map(|t| t.id.clone())
            .unwrap_or_else(|| ctx.new_id("tgt")),
        name,
        kind: input.kind,
        agent_id: input.agent_id,
        agent_group_id: input.agent_group_id,
        config,
        created_at: existing.as_ref().map(|t| t.created_at).unwrap_or(ctx.now),
        updated_at: ctx.now,
    };
    ctx.tx.upsert_target(&t).await?;
    ctx.audit_resource_id = Some(t.id.clone());
    Ok(t)
}

operation! {
    SaveTarget {
        name: "save_target",
        title: "Create or update a target",
        description: "Add a deployment target served by an agent, with its connector settings. Give `id` to update one.",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "target",
        input: TargetInput,
        output: Target,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create {} target '{}'", i.kind.as_str(), i.name),
            Some(id) => format!("Update target {id}"),
        }),
    }
    |ctx, input| {
        save_target(ctx, input).await
    }
}

// ---------------------------------------------------------------- agents

operation! {
    ListAgents {
        name: "list_agents",
        title: "List agents",
        description: "List registered agents with their status (online, offline, pending, disabled), host facts and last heartbeat.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "agent",
        input: ListAgentsInput,
        output: List<Agent>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let mut rows = ctx.engine.store().list_agents().await?;
        rows.retain(|a| input.status.is_none_or(|s| a.status == s));
        paginate(rows, &input.list_params(), "name", &["name", "hostname", "status", "last_heartbeat_at", "created_at", "updated_at", "id"])
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgentInput {
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub labels: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisteredAgent {
    pub agent: Agent,
    /// The agent's API key: shown once, give it to `certctl agent --api-key`.
    pub api_key: String,
}

operation! {
    RegisterAgent {
        name: "register_agent",
        title: "Register an agent",
        description: "Register a new agent and mint its API key (bound to that agent only); the key is shown once.",
        risk: Write,
        permission: Admin,
        idempotent: false,
        resource: "agent",
        input: RegisterAgentInput,
        output: RegisteredAgent,
        subject: |i| (None, format!("Register agent '{}'", i.name)),
    }
    |ctx, input| {
        let name = non_empty("name", &input.name)?;
        let agent = Agent {
            id: ctx.new_id("ag"),
            name: name.clone(),
            hostname: input.hostname,
            os: String::new(),
            arch: String::new(),
            ip_address: String::new(),
            version: String::new(),
            labels: input.labels,
            reported: Default::default(),
            observed_address: None,
            status: AgentStatus::Pending,
            last_heartbeat_at: None,
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        ctx.tx.upsert_agent(&agent).await?;
        let key = auth::mint(ctx.tx, ctx.engine, &format!("agent:{name}"), Role::Agent, Some(agent.id.clone()), ctx.now).await?;
        ctx.audit_resource_id = Some(agent.id.clone());
        ctx.note("principal_id", key.principal.id.clone());
        Ok(RegisteredAgent { agent, api_key: key.key.to_string() })
    }
}

operation! {
    DisableAgent {
        name: "disable_agent",
        title: "Disable an agent",
        description: "Disable an agent: it gets no more work. Revoke its key with revoke_principal to lock it out.",
        risk: Destructive,
        permission: Admin,
        idempotent: true,
        resource: "agent",
        input: IdInput,
        output: Agent,
        subject: |i| (Some(i.id.clone()), format!("Disable agent {}", i.id)),
    }
    |ctx, input| {
        let mut a = ctx.tx.agent(&input.id).await?.ok_or_else(|| Error::not_found("agent", &input.id))?;
        a.status = AgentStatus::Disabled;
        a.updated_at = ctx.now;
        ctx.tx.upsert_agent(&a).await?;
        Ok(a)
    }
}

// ---------------------------------------------------------------- jobs

list_input! {
    /// Jobs page in SQL, newest first (`sort` may only be `-created_at`);
    /// no total is counted.
    ListJobsInput {
        status: Option<JobStatus>,
        kind: Option<JobKind>,
        certificate_id: Option<String>,
        agent_id: Option<String>,
    }
}

operation! {
    ListJobs {
        name: "list_jobs",
        title: "List jobs",
        description: "List issuance, renewal, deployment and validation jobs, newest first.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "job",
        input: ListJobsInput,
        output: List<Job>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let p = input.list_params();
        super::SortKey::parse(p.sort.as_deref(), "-created_at", &["created_at"])
            .and_then(|s| if s.desc { Ok(()) } else { Err(Error::invalid("jobs are listed newest first; sort may only be -created_at")) })?;
        let (size, offset) = p.window()?;
        let f = JobFilter {
            status: input.status, kind: input.kind, certificate_id: input.certificate_id, agent_id: input.agent_id,
            created_after: p.created_after, created_before: p.created_before,
            after_cursor: p.cursor.as_deref().map(crate::store::Cursor::decode).transpose()?,
            offset,
        };
        let (data, next) = ctx.engine.store().list_jobs_page(&f, size).await?;
        Ok(List { data, total: None, next_cursor: next })
    }
}

operation! {
    CancelJob {
        name: "cancel_job",
        title: "Cancel a job",
        description: "Cancel a job that has not finished; a cancelled job never runs.",
        risk: Write,
        permission: Write,
        idempotent: true,
        resource: "job",
        input: IdInput,
        output: Job,
        subject: |i| (Some(i.id.clone()), format!("Cancel job {}", i.id)),
    }
    |ctx, input| {
        let job = ctx.tx.job(&input.id).await?.ok_or_else(|| Error::not_found("job", &input.id))?;
        if job.status.is_terminal() {
            return Err(Error::conflict(format!("job {} is already {}", job.id, job.status.as_str())));
        }
        // A revocation job tells the CA what certctl already records as
        // revoked (an approved decision): cancelling it would leave the
        // certificate trusted at the CA. It retries, then fails visibly.
        if job.kind == JobKind::Revocation {
            return Err(Error::conflict(format!(
                "job {} tells the CA about a revocation that was already decided; it cannot be cancelled (it retries with backoff and fails visibly if the CA keeps refusing)",
                job.id
            )));
        }
        if !ctx.tx.transition_job(&job.id, job.status, JobStatus::Cancelled, Some("cancelled"), ctx.now).await? {
            return Err(Error::conflict(format!("job {} changed state; try again", job.id)));
        }
        ctx.tx.job(&input.id).await?.ok_or_else(|| Error::internal("job vanished"))
    }
}

// ---------------------------------------------------------------- owners and teams

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnerInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub team_id: Option<String>,
}

async fn save_owner(ctx: &mut super::Ctx<'_>, input: OwnerInput) -> Result<Owner> {
    let name = non_empty("name", &input.name)?;
    let email = input.email.trim().to_owned();
    if !email.is_empty() && (!email.contains('@') || email.len() > 254) {
        return Err(Error::invalid(format!(
            "'{email}' is not an e-mail address"
        )));
    }
    if let Some(t) = &input.team_id
        && ctx.tx.team(t).await?.is_none()
    {
        return Err(Error::invalid(format!("unknown team_id '{t}'")));
    }
    let existing = existing(ctx, input.id.as_deref(), "owner").await?;
    let created_at = match existing.as_deref() {
        Some(id) => ctx
            .tx
            .owner(id)
            .await?
            .map(|o| o.created_at)
            .unwrap_or(ctx.now),
        None => ctx.now,
    };
    let o = Owner {
        id: existing.unwrap_or_else(|| ctx.new_id("own")),
        name,
        email,
        team_id: input.team_id,
        created_at,
        updated_at: ctx.now,
    };
    ctx.tx.upsert_owner(&o).await?;
    ctx.audit_resource_id = Some(o.id.clone());
    Ok(o)
}

/// The id to update (after checking it exists), or `None` to create.
async fn existing(
    ctx: &mut super::Ctx<'_>,
    id: Option<&str>,
    kind: &'static str,
) -> Result<Option<String>> {
    match id {
        None => Ok(None),
        Some(id) => {
            let found = match kind {
                "owner" => ctx.tx.owner(id).await?.is_some(),
                "team" => ctx.tx.team(id).await?.is_some(),
                "profile" => ctx.tx.profile(id).await?.is_some(),
                "renewal_policy" => ctx.tx.renewal_policy(id).await?.is_some(),
                "policy" => ctx.tx.policy_rule(id).await?.is_some(),
                _ => false,
            };
            if found {
                Ok(Some(id.to_owned()))
            } else {
                Err(Error::not_found(kind, id))
            }
        }
    }
}

operation! {
    SaveOwner {
        name: "save_owner",
        title: "Create or update an owner",
        description: "Add a person who owns certificates and hears about them. Give `id` to update one.",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "owner",
        input: OwnerInput,
        output: Owner,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create owner '{}'", i.name),
            Some(id) => format!("Update owner {id}"),
        }),
    }
    |ctx, input| {
        save_owner(ctx, input).await
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

async fn save_team(ctx: &mut super::Ctx<'_>, input: TeamInput) -> Result<Team> {
    let name = non_empty("name", &input.name)?;
    let existing = existing(ctx, input.id.as_deref(), "team").await?;
    let created_at = match existing.as_deref() {
        Some(id) => ctx
            .tx
            .team(id)
            .await?
            .map(|t| t.created_at)
            .unwrap_or(ctx.now),
        None => ctx.now,
    };
    let t = Team {
        id: existing.unwrap_or_else(|| ctx.new_id("team")),
        name,
        description: input.description,
        created_at,
        updated_at: ctx.now,
    };
    ctx.tx.upsert_team(&t).await?;
    ctx.audit_resource_id = Some(t.id.clone());
    Ok(t)
}

operation! {
    SaveTeam {
        name: "save_team",
        title: "Create or update a team",
        description: "Add a team that owns certificates. Give `id` to update one.",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "team",
        input: TeamInput,
        output: Team,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create team '{}'", i.name),
            Some(id) => format!("Update team {id}"),
        }),
    }
    |ctx, input| {
        save_team(ctx, input).await
    }
}

// ---------------------------------------------------------------- profiles

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Allowed key algorithms (default: all).
    #[serde(default)]
    pub allowed_key_types: Option<Vec<KeyAlgorithm>>,
    #[serde(default)]
    pub default_key_type: Option<KeyAlgorithm>,
    /// Maximum validity in seconds (default 398 days).
    #[serde(default)]
    pub max_ttl_seconds: Option<i64>,
    /// Default validity in seconds (default 47 days, capped at the maximum).
    #[serde(default)]
    pub default_ttl_seconds: Option<i64>,
    /// Extended key usages (default serverAuth).
    #[serde(default)]
    pub ekus: Option<Vec<ExtendedKeyUsage>>,
    #[serde(default)]
    pub san_rules: Option<SanRules>,
    /// Every issuance and renewal needs an approver's decision.
    #[serde(default)]
    pub requires_approval: bool,
    #[serde(default)]
    pub keygen_mode: KeygenMode,
    /// Short-lived certificates are never revoked; they expire.
    #[serde(default)]
    pub short_lived: bool,
    /// Let EST clients authenticated by a TLS client certificate enroll
    /// names their certificate does not hold (default: only their own names).
    #[serde(default)]
    pub allow_client_certificate_new_names: bool,
}

async fn save_profile(ctx: &mut super::Ctx<'_>, input: ProfileInput) -> Result<Profile> {
    let name = non_empty("name", &input.name)?;
    let existing = existing(ctx, input.id.as_deref(), "profile").await?;
    let created_at = match existing.as_deref() {
        Some(id) => ctx
            .tx
            .profile(id)
            .await?
            .map(|p| p.created_at)
            .unwrap_or(ctx.now),
        None => ctx.now,
    };
    let allowed = input
        .allowed_key_types
        .unwrap_or_else(|| KeyAlgorithm::ALL.to_vec());
    if allowed.is_empty() {
        return Err(Error::invalid("allowed_key_types must not be empty"));
    }
    let default_key_type = input.default_key_type.unwrap_or(allowed[0]);
    if !allowed.contains(&default_key_type) {
        return Err(Error::invalid(
            "default_key_type must be one of allowed_key_types",
        ));
    }
    let max_ttl = input.max_ttl_seconds.unwrap_or(398 * 86400);
    if !(60..=100 * 365 * 86400).contains(&max_ttl) {
        return Err(Error::invalid(
            "max_ttl_seconds must be between 60 seconds and 100 years",
        ));
    }
    let default_ttl = input
        .default_ttl_seconds
        .unwrap_or((47 * 86400).min(max_ttl));
    if default_ttl <= 0 || default_ttl > max_ttl {
        return Err(Error::invalid(
            "default_ttl_seconds must be positive and at most max_ttl_seconds",
        ));
    }
    let ekus = input
        .ekus
        .unwrap_or_else(|| vec![ExtendedKeyUsage::ServerAuth]);
    if ekus.is_empty() {
        return Err(Error::invalid("ekus must not be empty"));
    }
    let p = Profile {
        id: existing.unwrap_or_else(|| ctx.new_id("prof")),
        name,
        description: input.description,
        allowed_key_types: allowed,
        default_key_type,
        max_ttl_seconds: max_ttl,
        default_ttl_seconds: default_ttl,
        ekus,
        san_rules: input.san_rules.unwrap_or_default(),
        requires_approval: input.requires_approval,
        keygen_mode: input.keygen_mode,
        short_lived: input.short_lived,
        allow_client_certificate_new_names: input.allow_client_certificate_new_names,
        created_at,
        updated_at: ctx.now,
    };
    if p.keygen_mode == KeygenMode::Server {
        tracing::warn!(profile = %p.name, "profile generates private keys on the control plane");
    }
    ctx.tx.upsert_profile(&p).await?;
    ctx.audit_resource_id = Some(p.id.clone());
    Ok(p)
}

pub struct SaveProfile;

impl super::Operation for SaveProfile {
    type Input = ProfileInput;
    type Output = Profile;
    const META: super::OpMeta = super::OpMeta {
        name: "save_profile",
        title: "Create or update a profile",
        description: "Add a certificate profile: allowed key types, maximum and default validity, EKUs, name rules, approval and key generation mode. Give `id` to update one.",
        risk: super::Risk::Write,
        permission: crate::domain::Permission::Admin,
        idempotent: false,
        open_world: false,
        resource: "profile",
        gateable: true,
    };

    async fn describe(ctx: &mut super::Ctx<'_>, input: &Self::Input) -> Result<super::Subject> {
        let Some(id) = &input.id else {
            return Ok(super::Subject {
                summary: format!("Create profile '{}'", input.name),
                ..Default::default()
            });
        };
        let current = ctx
            .tx
            .profile(id)
            .await?
            .ok_or_else(|| Error::not_found("profile", id))?;
        // Turning approval off for a profile lowers what every certificate
        // under it needs: that change is approved under the rule it lifts.
        let lowers = current.requires_approval && !input.requires_approval;
        Ok(super::Subject {
            resource_id: Some(id.clone()),
            summary: if lowers {
                format!(
                    "Update profile {id} ({}) so that its certificates no longer need approval to be issued",
                    current.name
                )
            } else {
                format!("Update profile {id} ({})", current.name)
            },
            profile_requires_approval: lowers,
            four_eyes: None,
            bound: vec![format!(
                "profile {id} requires_approval={}",
                current.requires_approval
            )],
        })
    }

    async fn execute(ctx: &mut super::Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        save_profile(ctx, input).await
    }
}

// ---------------------------------------------------------------- renewal policies

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewalPolicyInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// Renew this many days before expiry.
    #[serde(default)]
    pub renew_before_days: Option<i64>,
    /// Or: renew once this fraction of the lifetime has passed (0 < f < 1).
    #[serde(default)]
    pub renew_at_fraction: Option<f64>,
    /// Random spread, in percent of the renewal window (default 10).
    #[serde(default)]
    pub jitter_percent: Option<i64>,
    /// Attempts before a renewal is reported failed (default 5).
    #[serde(default)]
    pub max_retries: Option<i64>,
}

async fn save_renewal(
    ctx: &mut super::Ctx<'_>,
    input: RenewalPolicyInput,
) -> Result<RenewalPolicy> {
    let name = non_empty("name", &input.name)?;
    if input.renew_before_days.is_none() == input.renew_at_fraction.is_none() {
        return Err(Error::invalid(
            "give exactly one of renew_before_days and renew_at_fraction",
        ));
    }
    if let Some(d) = input.renew_before_days
        && !(0..=3650).contains(&d)
    {
        return Err(Error::invalid(
            "renew_before_days must be between 0 and 3650",
        ));
    }
    if let Some(f) = input.renew_at_fraction
        && !(f > 0.0 && f < 1.0)
    {
        return Err(Error::invalid("renew_at_fraction must be between 0 and 1"));
    }
    let jitter = input.jitter_percent.unwrap_or(10);
    if !(0..=50).contains(&jitter) {
        return Err(Error::invalid("jitter_percent must be between 0 and 50"));
    }
    let retries = input.max_retries.unwrap_or(5);
    if !(0..=100).contains(&retries) {
        return Err(Error::invalid("max_retries must be between 0 and 100"));
    }
    let existing = existing(ctx, input.id.as_deref(), "renewal_policy").await?;
    let updating = existing.is_some();
    let created_at = match existing.as_deref() {
        Some(id) => ctx
            .tx
            .renewal_policy(id)
            .await?
            .map(|p| p.created_at)
            .unwrap_or(ctx.now),
        None => ctx.now,
    };
    let r = RenewalPolicy {
        id: existing.unwrap_or_else(|| ctx.new_id("rp")),
        name,
        renew_before_days: input.renew_before_days,
        renew_at_fraction: input.renew_at_fraction,
        jitter_percent: jitter,
        max_retries: retries,
        created_at,
        updated_at: ctx.now,
    };
    ctx.tx.upsert_renewal_policy(&r).await?;
    if updating {
        // Certificates under the policy renew by its new timing.
        let n = crate::notify::reschedule(ctx, None, Some(&r.id)).await?;
        ctx.note("certificates_rescheduled", n);
    }
    ctx.audit_resource_id = Some(r.id.clone());
    Ok(r)
}

operation! {
    SaveRenewalPolicy {
        name: "save_renewal_policy",
        title: "Create or update a renewal policy",
        description: "Add a renewal policy (days before expiry or fraction of lifetime, jitter, retries). Give `id` to update one.",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "renewal_policy",
        input: RenewalPolicyInput,
        output: RenewalPolicy,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create renewal policy '{}'", i.name),
            Some(id) => format!("Update renewal policy {id}"),
        }),
    }
    |ctx, input| {
        save_renewal(ctx, input).await
    }
}

// ---------------------------------------------------------------- policy rules

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub kind: PolicyKind,
    /// Rule parameters, e.g. `{"domains": ["example.com"]}` or `{"max_days": 90}`.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub severity: Severity,
    pub mode: PolicyMode,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

async fn save_policy(ctx: &mut super::Ctx<'_>, input: PolicyInput) -> Result<PolicyRule> {
    let name = non_empty("name", &input.name)?;
    let params = serde_json::Value::Object(input.params);
    crate::policy::validate(input.kind, &params)?;
    let existing = existing(ctx, input.id.as_deref(), "policy").await?;
    let created_at = match existing.as_deref() {
        Some(id) => ctx
            .tx
            .policy_rule(id)
            .await?
            .map(|p| p.created_at)
            .unwrap_or(ctx.now),
        None => ctx.now,
    };
    let r = PolicyRule {
        id: existing.unwrap_or_else(|| ctx.new_id("pol")),
        name,
        kind: input.kind,
        params,
        severity: input.severity,
        mode: input.mode,
        enabled: input.enabled,
        created_at,
        updated_at: ctx.now,
    };
    ctx.tx.upsert_policy_rule(&r).await?;
    ctx.audit_resource_id = Some(r.id.clone());
    Ok(r)
}

operation! {
    SavePolicy {
        name: "save_policy",
        title: "Create or update a policy rule",
        description: "Add a policy rule with a severity and a mode: warn records violations, enforce refuses operations. Give `id` to update one.",
        risk: Write,
        permission: Admin,
        idempotent: false,
        resource: "policy",
        input: PolicyInput,
        output: PolicyRule,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create policy rule '{}'", i.name),
            Some(id) => format!("Update policy rule {id}"),
        }),
    }
    |ctx, input| {
        save_policy(ctx, input).await
    }
}

// ---------------------------------------------------------------- policy violations

list_input! {
    /// Violations are listed newest first (`sort` may only be `-created_at`).
    ListPolicyViolationsInput {
        /// Only this certificate's violations.
        certificate_id: Option<String>,
        /// Only this rule's violations.
        rule_id: Option<String>,
        kind: Option<PolicyKind>,
        severity: Option<Severity>,
        /// true: only refused operations (enforce); false: only warnings.
        refused: Option<bool>,
    }
}

/// Most violations one list reads before paging.
const MAX_VIOLATIONS_LISTED: i64 = 10_000;

operation! {
    ListPolicyViolations {
        name: "list_policy_violations",
        title: "List policy violations",
        description: "List the times a policy rule did not hold, newest first: refused operations (enforce) and warnings (warn).",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "policy_violation",
        input: ListPolicyViolationsInput,
        output: List<PolicyViolation>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let p = input.list_params();
        super::SortKey::parse(p.sort.as_deref(), "-created_at", &["created_at"])
            .and_then(|s| if s.desc { Ok(()) } else { Err(Error::invalid("violations are listed newest first; sort may only be -created_at")) })?;
        let f = crate::store::ViolationFilter {
            certificate_id: input.certificate_id,
            rule_id: input.rule_id,
            kind: input.kind,
            severity: input.severity,
            refused: input.refused,
            created_after: p.created_after,
            created_before: p.created_before,
        };
        let rows = ctx.engine.store().list_policy_violations(&f, MAX_VIOLATIONS_LISTED).await?;
        paginate(rows, &ListParams { sort: Some("-created_at".into()), ..p }, "-created_at", &["created_at"])
    }
}
