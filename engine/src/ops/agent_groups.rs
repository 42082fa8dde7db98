//! Agent groups with dynamic membership: a group is criteria (OS,
//! architecture, IP CIDR, version, labels) matched against what agents
//! report on register and heartbeat. A target may point at a group instead
//! of one agent; then only the group's members get its renewal and
//! deployment work.

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
        description: "Add an agent group chosen by criteria (OS, architecture, IP CIDR, version, labels); agents that match are members at once, and targets can point at the group. Give `id` to update one.",
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
        description: "List the agents that match an agent group's criteria now (from what they reported on register and heartbeat).",
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
