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

/// A registered agent. `os`, `arch`, `ip_address`, `version` and `labels`
/// are what an admin set (`register_agent`, `update_agent`) or accepted from
/// the agent's report: agent groups match only these, because a group can
/// hand its members CSR work and an agent key must not choose its own groups.
/// What the agent says about itself is kept apart in `reported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    /// `ag-...`
    pub id: String,
    pub name: String,
    /// The host name the agent last reported (descriptive; no group matches it).
    pub hostname: String,
    /// Operating system, as an admin set or accepted it.
    pub os: String,
    /// Architecture, as an admin set or accepted it.
    pub arch: String,
    /// IP address, as an admin set or accepted it (`ip_cidr` criteria match it).
    pub ip_address: String,
    /// certctl version, as an admin set or accepted it.
    pub version: String,
    /// Labels, as an admin set or accepted them.
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// What the agent last reported in a heartbeat: shown, never matched.
    /// `update_agent` with `accept_reported` makes it the accepted values.
    #[serde(default)]
    pub reported: AgentFacts,
    /// The address the last heartbeat came from, as the server saw the
    /// connection (the TCP peer; a proxy's address when one is in between);
    /// `null` when the heartbeat came without one (in-process callers).
    #[serde(default)]
    pub observed_address: Option<String>,
    pub status: AgentStatus,
    pub last_heartbeat_at: Option<UnixTime>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// The group-defining facts of an agent, as the agent reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AgentFacts {
    pub os: String,
    pub arch: String,
    pub ip_address: String,
    pub version: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
}

impl Agent {
    /// The facts an agent group matches, where the agent's report differs
    /// from them (by name; empty when they agree). A fact the agent never
    /// reported is not a difference.
    pub fn unaccepted_facts(&self) -> Vec<&'static str> {
        let r = &self.reported;
        let strings = [
            ("os", &r.os, &self.os),
            ("arch", &r.arch, &self.arch),
            ("ip_address", &r.ip_address, &self.ip_address),
            ("version", &r.version, &self.version),
        ];
        let mut out: Vec<&'static str> = strings
            .into_iter()
            .filter(|(_, reported, accepted)| !reported.is_empty() && reported != accepted)
            .map(|(name, _, _)| name)
            .collect();
        if !r.labels.is_empty() && r.labels != self.labels {
            out.push("labels");
        }
        out
    }
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
    /// An agent group whose members deploy to this target (the target is
    /// on each of them); used when `agent_id` is not set.
    #[serde(default)]
    pub agent_group_id: Option<String>,
    /// Connector configuration: paths, reload commands, endpoints.
    pub config: serde_json::Value,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// What an agent must have to belong to a group: its admin-set or accepted
/// facts, never what it merely reported. Every criterion given must hold;
/// an empty criteria set matches every agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AgentCriteria {
    /// Operating system as the agent reports it (`linux`, `windows`...), case-insensitive.
    pub os: Option<String>,
    /// Architecture (`x86_64`, `aarch64`...), case-insensitive.
    pub arch: Option<String>,
    /// The agent's IP address is inside this CIDR (`10.0.0.0/8`, `2001:db8::/32`).
    pub ip_cidr: Option<String>,
    /// Agent version: exact (`1.4.2`) or a prefix ending in `*` (`1.4.*`).
    pub version: Option<String>,
    /// Labels the agent must carry with these values.
    pub labels: serde_json::Map<String, serde_json::Value>,
}

impl AgentCriteria {
    /// Checks the criteria themselves (the CIDR parses).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(c) = &self.ip_cidr {
            c.parse::<ipnet::IpNet>()
                .map_err(|e| format!("ip_cidr '{c}' is not a CIDR range: {e}"))?;
        }
        Ok(())
    }

    /// Whether `a` belongs.
    pub fn matches(&self, a: &Agent) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        let version = self
            .version
            .as_ref()
            .is_none_or(|v| match v.strip_suffix('*') {
                Some(prefix) => a.version.starts_with(prefix),
                None => *v == a.version,
            });
        let ip = self.ip_cidr.as_ref().is_none_or(|c| {
            match (
                c.parse::<ipnet::IpNet>(),
                a.ip_address.parse::<std::net::IpAddr>(),
            ) {
                (Ok(net), Ok(ip)) => net.contains(&ip),
                _ => false,
            }
        });
        let labels = self.labels.iter().all(|(k, v)| a.labels.get(k) == Some(v));
        eq(&self.os, &a.os) && eq(&self.arch, &a.arch) && version && ip && labels
    }
}

/// A set of agents chosen by their accepted facts, not by name: membership
/// is computed at each use, so an agent joins as soon as an admin sets or
/// accepts facts that match (a heartbeat alone never moves it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentGroup {
    /// `agg-...`
    pub id: String,
    pub name: String,
    pub description: String,
    pub criteria: AgentCriteria,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}
