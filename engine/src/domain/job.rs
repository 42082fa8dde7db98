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
    // An ACME HTTP-01 challenge for an agent to put in place or take away
    // (payload `action`); see issuers/agent_http01.rs. (A plain comment:
    // a doc comment here would change the published schemas.)
    Validation,
    /// Revoke a certificate at its external CA (after it was revoked in certctl).
    Revocation,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issuance => "issuance",
            Self::Renewal => "renewal",
            Self::Deployment => "deployment",
            Self::Validation => "validation",
            Self::Revocation => "revocation",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "issuance" => Self::Issuance,
            "renewal" => Self::Renewal,
            "deployment" => Self::Deployment,
            "validation" => Self::Validation,
            "revocation" => Self::Revocation,
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
    pub const ALL: [JobStatus; 7] = [
        Self::Pending,
        Self::AwaitingApproval,
        Self::AwaitingCsr,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

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

    /// The transition table. Every status change of a job goes through it;
    /// terminal states have no way out, and `running` always has one
    /// (completed, failed, or back to pending for a retry or a reclaimed
    /// lease), so no job can stay running forever. An `awaiting_csr` job
    /// completes directly when its CSR is issued in the same transaction.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (
                Pending,
                Running | AwaitingApproval | AwaitingCsr | Cancelled
            ) | (AwaitingApproval, Pending | Cancelled)
                | (AwaitingCsr, Pending | Completed | Failed | Cancelled)
                | (Running, Completed | Failed | Pending | Cancelled)
        )
    }
}

/// Delay before retry number `attempt` (1-based): 30 s doubling, at most an hour.
pub fn retry_backoff(attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 12) - 1;
    (30_i64 << exp).min(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table() {
        use JobStatus::*;
        let all = JobStatus::ALL;
        for s in all {
            if s.is_terminal() {
                assert!(all.iter().all(|t| !s.can_become(*t)), "{s:?} is terminal");
            }
        }
        assert!(Running.can_become(Pending) && Running.can_become(Completed));
        assert!(
            !Pending.can_become(Completed),
            "work must be claimed before it completes"
        );
        assert!(!Completed.can_become(Running));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(retry_backoff(1), 30);
        assert_eq!(retry_backoff(2), 60);
        assert_eq!(retry_backoff(5), 480);
        assert_eq!(retry_backoff(50), 3600);
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
