//! Audit events: the append-only, hash-chained record of everything done.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// Refused by authorization.
    Denied,
    /// Stopped at the approval gate; an approval was created.
    ApprovalRequired,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::ApprovalRequired => "approval_required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "denied" => Self::Denied,
            "approval_required" => Self::ApprovalRequired,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// `ev-...`
    pub id: String,
    pub at: UnixTime,
    /// The principal id.
    pub actor: String,
    pub actor_role: String,
    /// The operation name or lifecycle action, e.g. `revoke_certificate`, `approval.approved`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    pub details: serde_json::Value,
    /// Hash of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over this event's fields and `prev_hash`, lower-case hex.
    pub hash: String,
}

/// The genesis `prev_hash`.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The fields of an event that the hash covers, in a fixed order. The details
/// are hashed as their stored JSON text, so re-serialisation cannot change it.
#[allow(clippy::too_many_arguments)] // one argument per hashed column keeps the order explicit
pub fn chain_hash(
    seq: i64,
    id: &str,
    at: UnixTime,
    actor: &str,
    actor_role: &str,
    action: &str,
    resource_type: &str,
    resource_id: Option<&str>,
    outcome: &str,
    details_json: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        seq,
        id,
        at,
        actor,
        actor_role,
        action,
        resource_type,
        resource_id,
        outcome,
        details_json,
        prev_hash
    ])
    .to_string();
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainVerification {
    /// True when every event's hash matches and links to its predecessor.
    pub valid: bool,
    /// Events checked.
    pub checked: i64,
    /// The first event whose hash or link is wrong.
    pub first_broken_seq: Option<i64>,
    pub reason: Option<String>,
}
