//! Agent groups with dynamic membership: a group is criteria (OS,
//! architecture, IP CIDR, version, labels) matched against the facts an
//! admin set or accepted for each agent (`register_agent`, `update_agent`),
//! never against what an agent reports in heartbeats: a group hands its
//! members CSR work, so a stolen agent key must not be able to join one. A
//! target may point at a group instead of one agent; then only the group's
//! members get its renewal and deployment work.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{IdInput, List};
use crate::domain::{Agent, AgentCriteria, AgentGroup, AgentStatus, Target};
use crate::error::{Error, Result};
use crate::store::Tx;

/// The members of `g` among `agents`.
fn members<'a>(g: &AgentGroup, agents: &'a [Agent]) -> Vec<&'a Agent> {
    agents.iter().filter(|a| g.criteria.matches(a)).collect()
}

/// Whether `agent_id` deploys to `t`: it is the target's agent, or a member
/// of the target's group.
pub(crate) async fn serves(tx: &mut Tx, t: &Target, agent_id: &str) -> Result<bool> {
    if let Some(a) = &t.agent_id {
        return Ok(a == agent_id);
    }
    let Some(gid) = &t.agent_group_id else {
        return Ok(false);
    };
    let (Some(g), Some(a)) = (tx.agent_group(gid).await?, tx.agent(agent_id).await?) else {
        return Ok(false);
    };
    Ok(g.criteria.matches(&a))
}

/// The agent that gets a certificate's key work (CSR for a renewal): the
/// first target's agent, or for a target pointing at a group the first
/// member that is not disabled (online ones first), by id.
pub(crate) async fn key_agent(tx: &mut Tx, targets: &[Target]) -> Result<Option<String>> {
    let mut agents: Option<Vec<Agent>> = None;
    for t in targets {
        if let Some(a) = &t.agent_id {
            return Ok(Some(a.clone()));
        }
        let Some(gid) = &t.agent_group_id else {
            continue;
        };
        let Some(g) = tx.agent_group(gid).await? else {
            continue;
        };
        if agents.is_none() {
            agents = Some(tx.all_agents().await?);
        }
        let all = agents.as_deref().unwrap_or_default();
        let usable: Vec<&Agent> = members(&g, all)
            .into_iter()
            .filter(|a| a.status != AgentStatus::Disabled)
            .collect();
        if let Some(a) = usable
            .iter()
            .find(|a| a.status == AgentStatus::Online)
            .or(usable.first())
        {
            return Ok(Some(a.id.clone()));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentGroupInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Who belongs: every criterion given must hold.
    #[serde(default)]
    pub criteria: AgentCriteria,
}

async fn save(ctx: &mut super::Ctx<'_>, input: AgentGroupInput) -> Result<AgentGroup> {
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(Error::invalid("name must be 1 to 200 characters"));
    }
    input.criteria.validate().map_err(Error::invalid)?;
    let existing = match &input.id {
        Some(id) => Some(
            ctx.tx
                .agent_group(id)
                .await?
                .ok_or_else(|| Error::not_found("agent_group", id))?,
        ),
        None => None,
    };
    let g = AgentGroup {
        id: existing
            .as_ref()
            .map(|g| g.id.clone())
            .unwrap_or_else(|| ctx.new_id("agg")),
        name,
        description: input.description,
        criteria: input.criteria,
        created_at: existing.as_ref().map(|g| g.created_at).unwrap_or(ctx.now),
        updated_at: ctx.now,
    };
    ctx.tx.upsert_agent_group(&g).await.map_err(|e| match e {
        Error::Conflict(_) => {
            Error::conflict(format!("an agent group named '{}' exists already", g.name))
        }
        e => e,
    })?;
    ctx.audit_resource_id = Some(g.id.clone());
    Ok(g)
}

operation! {
    SaveAgentGroup {
        name: "save_agent_group",
        title: "Create or update an agent group",
        description: "Add an agent group chosen by criteria (OS, architecture, IP CIDR, version, labels) over agents' accepted facts; agents that match are members at once, and targets can point at the group. Give `id` to update one.",
        risk: Write,
        permission: Admin,
        idempotent: false,
        resource: "agent_group",
        input: AgentGroupInput,
        output: AgentGroup,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create agent group '{}'", i.name),
            Some(id) => format!("Update agent group {id}"),
        }),
    }
    |ctx, input| {
        save(ctx, input).await
    }
}

operation! {
    ListAgentGroupMembers {
        name: "list_agent_group_members",
        title: "List an agent group's members",
        description: "List the agents that match an agent group's criteria now (on the facts an admin set or accepted, not on what agents report).",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "agent_group",
        input: IdInput,
        output: List<Agent>,
        subject: |i| (Some(i.id.clone()), String::new()),
    }
    |ctx, input| {
        let g = ctx.tx.agent_group(&input.id).await?.ok_or_else(|| Error::not_found("agent_group", &input.id))?;
        let agents = ctx.tx.all_agents().await?;
        Ok(List::all(members(&g, &agents).into_iter().cloned().collect()))
    }
}

// ---------------------------------------------------------------- accepted facts

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentInput {
    /// The agent id (`ag-...`).
    pub id: String,
    /// Operating system (`linux`, `windows`...).
    #[serde(default)]
    pub os: Option<String>,
    /// Architecture (`x86_64`, `aarch64`...).
    #[serde(default)]
    pub arch: Option<String>,
    /// IP address (`ip_cidr` criteria match it); empty clears it.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// certctl version.
    #[serde(default)]
    pub version: Option<String>,
    /// Replaces the agent's labels.
    #[serde(default)]
    pub labels: Option<serde_json::Map<String, serde_json::Value>>,
}

impl UpdateAgentInput {
    /// The facts this input sets, by name.
    fn fields(&self) -> Vec<&'static str> {
        [
            ("os", self.os.is_some()),
            ("arch", self.arch.is_some()),
            ("ip_address", self.ip_address.is_some()),
            ("version", self.version.is_some()),
            ("labels", self.labels.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }
}

/// The longest host fact and the most labels an agent may carry (reported
/// or accepted).
pub(crate) const MAX_FACT_LEN: usize = 200;
pub(crate) const MAX_LABELS: usize = 64;

// The values are in the input (not "whatever the agent reports now"), so an
// approval of this call accepts exactly what its requester saw.
async fn update_agent(ctx: &mut super::Ctx<'_>, input: UpdateAgentInput) -> Result<Agent> {
    let fields = input.fields();
    if fields.is_empty() {
        return Err(Error::invalid(
            "give at least one of os, arch, ip_address, version, labels",
        ));
    }
    let mut a = ctx
        .tx
        .agent(&input.id)
        .await?
        .ok_or_else(|| Error::not_found("agent", &input.id))?;
    let strings = [
        (&mut a.os, input.os),
        (&mut a.arch, input.arch),
        (&mut a.ip_address, input.ip_address),
        (&mut a.version, input.version),
    ];
    for (slot, value) in strings {
        if let Some(v) = value {
            let v = v.trim();
            if v.len() > MAX_FACT_LEN {
                return Err(Error::invalid(format!(
                    "agent facts must be at most {MAX_FACT_LEN} characters"
                )));
            }
            *slot = v.to_owned();
        }
    }
    if !a.ip_address.is_empty() && a.ip_address.parse::<std::net::IpAddr>().is_err() {
        return Err(Error::invalid(format!(
            "ip_address '{}' is not an IP address",
            a.ip_address
        )));
    }
    if let Some(labels) = input.labels {
        if labels.len() > MAX_LABELS {
            return Err(Error::invalid(format!(
                "an agent has at most {MAX_LABELS} labels"
            )));
        }
        a.labels = labels;
    }
    a.updated_at = ctx.now;
    ctx.tx.upsert_agent(&a).await?;
    ctx.note("facts", fields);
    let pending = a.unaccepted_facts();
    if !pending.is_empty() {
        ctx.note("unaccepted_facts", pending);
    }
    Ok(a)
}

operation! {
    UpdateAgent {
        name: "update_agent",
        title: "Set an agent's accepted facts",
        description: "Set the facts agent groups match for one agent (OS, architecture, IP address, version, labels), for example to accept what it reported (shown under `reported` by list_agents); a heartbeat never changes them.",
        risk: Write,
        permission: Admin,
        idempotent: true,
        resource: "agent",
        input: UpdateAgentInput,
        output: Agent,
        subject: |i| (Some(i.id.clone()), format!(
            "Set {} of agent {}: {}",
            i.fields().join(", "),
            i.id,
            serde_json::to_string(&serde_json::json!({
                "os": i.os, "arch": i.arch, "ip_address": i.ip_address,
                "version": i.version, "labels": i.labels,
            })).unwrap_or_default(),
        )),
    }
    |ctx, input| {
        update_agent(ctx, input).await
    }
}
