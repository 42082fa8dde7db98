//! Approvals: a gated operation waiting for a human decision.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::ops::Risk;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved and executed successfully (exactly once).
    Executed,
    /// Approved, but the operation failed when it ran; it is not retried.
    Failed,
    Rejected,
    Expired,
    Cancelled,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Executed => "executed",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "executed" => Self::Executed,
            "failed" => Self::Failed,
            "rejected" => Self::Rejected,
            "expired" => Self::Expired,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// Why an operation stopped at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateReason {
    /// The approval policy gates the operation's risk class.
    Risk,
    /// The certificate's profile requires approval for every issuance (four eyes).
    Profile,
    /// The call lowers an approval requirement or grants the power to
    /// approve: another person decides, whatever the policy (four eyes).
    FourEyes,
}

impl GateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Risk => "risk",
            Self::Profile => "profile",
            Self::FourEyes => "four_eyes",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "risk" => Self::Risk,
            "profile" => Self::Profile,
            "four_eyes" => Self::FourEyes,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Approval {
    /// `ap-...`
    pub id: String,
    /// The gated operation's name, e.g. `revoke_certificate`.
    pub operation: String,
    /// The exact input that runs when approved.
    pub input: serde_json::Value,
    /// A plain-language summary of what will happen.
    pub summary: String,
    pub risk: Risk,
    /// Why the operation was gated.
    pub gate_reason: GateReason,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub requested_by: String,
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<UnixTime>,
    pub decision_note: Option<String>,
    /// The operation's output (executed) or error (failed).
    pub result: Option<serde_json::Value>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}
