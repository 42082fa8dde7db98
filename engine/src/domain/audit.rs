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
    // Serialized straight from the fields: the same text as a
    // `serde_json::json!` array of them (compact, same escaping), without
    // building a `Value` for each event on the audit hot path.
    let canonical = serde_json::to_vec(&(
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
        prev_hash,
    ))
    .unwrap_or_default();
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &canonical,
    ))
}

/// The result of checking the chain and its signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainVerification {
    /// True when no finding is a failure: every event's hash matches and
    /// links to its predecessor, every checkpoint verifies, and the events
    /// the checkpoints name are there with the hashes they signed.
    pub valid: bool,
    /// Events checked before the first broken link (all of them when none).
    pub checked: i64,
    /// The first event concerned by a failure: the first broken link, else
    /// the first event gone (truncation) or rewritten.
    pub first_broken_seq: Option<i64>,
    /// The first failure's message.
    pub reason: Option<String>,
    /// Everything found, failures first; one finding per kind.
    #[serde(default)]
    pub findings: Vec<crate::domain::audit_checkpoint::AuditFinding>,
    /// Checkpoints whose signature verified (database and exported copy).
    #[serde(default)]
    pub checkpoints_verified: i64,
    /// The last event a verified checkpoint covers.
    #[serde(default)]
    pub anchored_through_seq: Option<i64>,
    /// Events after it, not yet covered by any checkpoint (a warning).
    #[serde(default)]
    pub unanchored_events: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical text the chain was first hashed over; stored chains
    /// must keep verifying, so the fast path has to produce the same bytes.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        seq: i64,
        id: &str,
        at: UnixTime,
        actor: &str,
        role: &str,
        action: &str,
        rtype: &str,
        rid: Option<&str>,
        outcome: &str,
        details: &str,
        prev: &str,
    ) -> String {
        let canonical = serde_json::json!([
            seq, id, at, actor, role, action, rtype, rid, outcome, details, prev
        ])
        .to_string();
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            canonical.as_bytes(),
        ))
    }

    #[test]
    fn the_hash_covers_the_same_text_as_the_json_array_it_was_defined_on() {
        let details = r#"{"path":"/api/v1/x?\"q\"","note":"caf\u00e9 \n\t\\ <>&","n":-1.5e3}"#;
        for (seq, rid, actor) in [
            (1, None, "pr-admin"),
            (
                i64::MAX,
                Some("mc-01jd3k8z7q4v0c2m9x1t5r8w6e"),
                "ünïcødé \u{1F512} \u{7f}\u{1}",
            ),
            (-3, Some(""), ""),
        ] {
            assert_eq!(
                chain_hash(
                    seq,
                    "ev-1",
                    -42,
                    actor,
                    "admin",
                    "list",
                    "http",
                    rid,
                    "success",
                    details,
                    GENESIS_HASH
                ),
                reference(
                    seq,
                    "ev-1",
                    -42,
                    actor,
                    "admin",
                    "list",
                    "http",
                    rid,
                    "success",
                    details,
                    GENESIS_HASH
                ),
            );
        }
    }
}
