//! Principals: who is calling, and what their role lets them do.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// Roles, from least to most privileged, plus the agent role that is bound to
/// one agent id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Reads and changes the inventory; destructive changes may be gated.
    Operator,
    /// An operator who may also approve or reject other principals' requests.
    Approver,
    /// Everything, including principals and issuers' CA material.
    Admin,
    /// A certctl agent: only its own agent's endpoints and jobs.
    Agent,
}

/// What an operation needs from the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Read,
    Write,
    Approve,
    Admin,
    /// Only the agent itself (checked against the resource's agent id) or an admin.
    AgentSelf,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Approver => "approver",
            Self::Admin => "admin",
            Self::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => Self::Viewer,
            "operator" => Self::Operator,
            "approver" => Self::Approver,
            "admin" => Self::Admin,
            "agent" => Self::Agent,
            _ => return None,
        })
    }

    /// Whether the role grants the permission. `AgentSelf` is further narrowed
    /// by the operation to the principal's own agent.
    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Self::Admin => true,
            Self::Approver => matches!(p, P::Read | P::Write | P::Approve),
            Self::Operator => matches!(p, P::Read | P::Write),
            Self::Viewer => matches!(p, P::Read),
            Self::Agent => matches!(p, P::AgentSelf),
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Principal {
    /// `pr-...`, or `system:<component>` for the engine's own work.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// For the agent role: the one agent this principal acts as.
    pub agent_id: Option<String>,
    /// The network address the call came from (the TCP peer a face saw),
    /// when the face knows one. Faces set it from the connection, never from
    /// a request's content; the engine records it beside what agents report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Principal {
    /// The engine's own identity for scheduled work (renewal loop, expiry sweeps).
    pub fn system(component: &str) -> Self {
        Self {
            id: format!("system:{component}"),
            name: format!("certctl {component}"),
            role: Role::Admin,
            agent_id: None,
            address: None,
        }
    }
}

/// A stored API principal (the key itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiPrincipal {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub agent_id: Option<String>,
    /// The first characters of the key, to tell keys apart in listings.
    pub key_prefix: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
}
