//! Agents (certctl running on a server) and deployment targets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Registered, never heard from.
    Pending,
    /// Heartbeat within the health window.
    Online,
    /// Missed heartbeats.
    Offline,
    /// Disabled by an operator; its key no longer works.
    Disabled,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "online" => Self::Online,
            "offline" => Self::Offline,
            "disabled" => Self::Disabled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    /// `ag-...`
    pub id: String,
    pub name: String,
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub ip_address: String,
    pub version: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub status: AgentStatus,
    pub last_heartbeat_at: Option<UnixTime>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// The server software a target deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Nginx,
    Apache,
    Haproxy,
    Traefik,
    Caddy,
    F5,
    Iis,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Apache => "apache",
            Self::Haproxy => "haproxy",
            Self::Traefik => "traefik",
            Self::Caddy => "caddy",
            Self::F5 => "f5",
            Self::Iis => "iis",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "nginx" => Self::Nginx,
            "apache" => Self::Apache,
            "haproxy" => Self::Haproxy,
            "traefik" => Self::Traefik,
            "caddy" => Self::Caddy,
            "f5" => Self::F5,
            "iis" => Self::Iis,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Target {
    /// `tgt-...`
    pub id: String,
    pub name: String,
    pub kind: TargetKind,
    /// The agent that deploys to this target.
    pub agent_id: Option<String>,
    /// Connector configuration: paths, reload commands, endpoints.
    pub config: serde_json::Value,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}
