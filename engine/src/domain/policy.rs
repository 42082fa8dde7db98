//! Renewal policies and policy rules.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// When a certificate is renewed: a number of days before expiry, or a
/// fraction of its lifetime, with jitter so a fleet does not renew at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RenewalPolicy {
    /// `rp-...`
    pub id: String,
    pub name: String,
    pub renew_before_days: Option<i64>,
    /// Renew once this fraction of the lifetime has passed (e.g. 0.66).
    pub renew_at_fraction: Option<f64>,
    pub jitter_percent: i64,
    pub max_retries: i64,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    AllowedIssuers,
    AllowedDomains,
    RequiredMetadata,
    AllowedEnvironments,
    MaxLifetime,
    MinKeyStrength,
    RenewalLeadTime,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowedIssuers => "allowed_issuers",
            Self::AllowedDomains => "allowed_domains",
            Self::RequiredMetadata => "required_metadata",
            Self::AllowedEnvironments => "allowed_environments",
            Self::MaxLifetime => "max_lifetime",
            Self::MinKeyStrength => "min_key_strength",
            Self::RenewalLeadTime => "renewal_lead_time",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "allowed_issuers" => Self::AllowedIssuers,
            "allowed_domains" => Self::AllowedDomains,
            "required_metadata" => Self::RequiredMetadata,
            "allowed_environments" => Self::AllowedEnvironments,
            "max_lifetime" => Self::MaxLifetime,
            "min_key_strength" => Self::MinKeyStrength,
            "renewal_lead_time" => Self::RenewalLeadTime,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            _ => return None,
        })
    }
}

/// `warn` records a violation; `enforce` refuses the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    Warn,
    Enforce,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Enforce => "enforce",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "warn" => Self::Warn,
            "enforce" => Self::Enforce,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyRule {
    /// `pol-...`
    pub id: String,
    pub name: String,
    pub kind: PolicyKind,
    /// Rule parameters, e.g. `{"domains": ["example.com"]}` or `{"max_days": 90}`.
    pub params: serde_json::Value,
    pub severity: Severity,
    pub mode: PolicyMode,
    pub enabled: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// One time a policy rule did not hold for an operation. `refused` is true
/// when the rule was in `enforce` mode and the operation was refused; a
/// `warn` rule's violation is recorded and the operation went on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicyViolation {
    /// `pv-...`
    pub id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub kind: PolicyKind,
    pub severity: Severity,
    pub mode: PolicyMode,
    pub refused: bool,
    /// The operation that was checked (`issue_certificate`, `est_simple_enroll`, ...).
    pub operation: String,
    /// The certificate, when it exists already (a refused create has none).
    pub certificate_id: Option<String>,
    pub common_name: String,
    /// The principal whose call was checked.
    pub actor: String,
    /// What did not hold, in words.
    pub reason: String,
    pub created_at: UnixTime,
}
