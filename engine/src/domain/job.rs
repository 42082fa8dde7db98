//! Jobs: units of lifecycle work (issuance, renewal, deployment, validation).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Issuance,
    Renewal,
    Deployment,
    Validation,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuance => "issuance",
            Self::Renewal => "renewal",
            Self::Deployment => "deployment",
            Self::Validation => "validation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "issuance" => Self::Issuance,
            "renewal" => Self::Renewal,
            "deployment" => Self::Deployment,
            "validation" => Self::Validation,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    AwaitingApproval,
    AwaitingCsr,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingApproval => "awaiting_approval",
            Self::AwaitingCsr => "awaiting_csr",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "awaiting_approval" => Self::AwaitingApproval,
            "awaiting_csr" => Self::AwaitingCsr,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// `job-...`
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub certificate_id: Option<String>,
    pub target_id: Option<String>,
    pub agent_id: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Not to be started before this time (backoff, renewal jitter).
    pub run_after: UnixTime,
    pub last_error: Option<String>,
    pub payload: serde_json::Value,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}
