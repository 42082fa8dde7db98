//! Signed checkpoints of the audit chain, and what verifying the log finds.
//!
//! The hash chain alone shows an event changed in place, but not a tail cut
//! off (the rest still links) nor a whole log rewritten with re-computed
//! hashes. A checkpoint is a signed statement "event `head_seq` is `head_hash`":
//! once written, the events it names can neither disappear nor change without
//! `verify_audit_log` saying so. Checkpoints link to each other like events,
//! and an exported copy kept elsewhere catches checkpoint rows deleted too.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// The format name of an export (`get_audit_checkpoints`).
pub const CHECKPOINT_EXPORT_FORMAT: &str = "certctl-audit-checkpoints/v1";

/// The signature algorithm of checkpoints.
pub const CHECKPOINT_ALGORITHM: &str = "ed25519";

/// One signed checkpoint of the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditCheckpoint {
    /// Position among checkpoints, from 1.
    pub number: i64,
    pub at: UnixTime,
    /// The last event it covers; events are numbered from 1 without gaps, so
    /// this is also how many events it covers.
    pub head_seq: i64,
    pub head_event_id: String,
    /// That event's chain hash.
    pub head_hash: String,
    /// The previous checkpoint's `hash` (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of the signed text, lower-case hex.
    pub hash: String,
    /// SHA-256 of the public key that signed it, lower-case hex.
    pub key_id: String,
    /// Ed25519 signature of the signed text, standard base64.
    pub signature: String,
}

impl AuditCheckpoint {
    /// The text that is hashed and signed: every field but `hash` and
    /// `signature`, as a compact JSON array with a version tag first.
    pub fn signed_text(&self) -> Vec<u8> {
        signed_text(
            self.number,
            self.at,
            self.head_seq,
            &self.head_event_id,
            &self.head_hash,
            &self.prev_hash,
            &self.key_id,
        )
    }
}

/// See [`AuditCheckpoint::signed_text`].
pub fn signed_text(
    number: i64,
    at: UnixTime,
    head_seq: i64,
    head_event_id: &str,
    head_hash: &str,
    prev_hash: &str,
    key_id: &str,
) -> Vec<u8> {
    serde_json::to_vec(&(
        "certctl-audit-checkpoint/v1",
        number,
        at,
        head_seq,
        head_event_id,
        head_hash,
        prev_hash,
        key_id,
    ))
    .unwrap_or_default()
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// Every checkpoint with the key that verifies them: keep a copy outside the
/// database, and `verify_audit_log` with it catches checkpoints deleted from
/// the database too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditCheckpointExport {
    /// `certctl-audit-checkpoints/v1`.
    pub format: String,
    /// `ed25519`.
    pub algorithm: String,
    /// The raw 32-byte Ed25519 public key, standard base64.
    pub public_key: String,
    /// SHA-256 of the public key, lower-case hex.
    pub key_id: String,
    /// Oldest first.
    pub checkpoints: Vec<AuditCheckpoint>,
}

/// What verifying the audit log found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An event's hash or link is wrong, or an event before it is missing.
    BrokenLink,
    /// A checkpoint's signature does not verify (forged or altered row).
    CheckpointSignatureInvalid,
    /// Checkpoints are missing: a gap in their chain, or in the exported
    /// copy but not in the database.
    CheckpointMissing,
    /// The checkpoint key is not the one of the exported copy (or is gone).
    CheckpointKeyChanged,
    /// A checkpoint names events that are no longer in the log.
    Truncation,
    /// The event at a checkpoint's position is not the one it signed.
    Rewrite,
    /// Events after the last checkpoint: nothing signed vouches for them yet.
    /// A warning, not a failure; the next checkpoint anchors them.
    UnanchoredTail,
}

impl FindingKind {
    /// Whether this finding makes the log fail verification.
    pub fn is_failure(self) -> bool {
        self != FindingKind::UnanchoredTail
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BrokenLink => "broken_link",
            Self::CheckpointSignatureInvalid => "checkpoint_signature_invalid",
            Self::CheckpointMissing => "checkpoint_missing",
            Self::CheckpointKeyChanged => "checkpoint_key_changed",
            Self::Truncation => "truncation",
            Self::Rewrite => "rewrite",
            Self::UnanchoredTail => "unanchored_tail",
        }
    }
}

/// One thing verification found; one finding per kind, naming the first case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditFinding {
    pub kind: FindingKind,
    /// False only for warnings (`unanchored_tail`).
    pub failure: bool,
    /// The first event concerned.
    pub seq: Option<i64>,
    /// The first checkpoint concerned.
    pub checkpoint: Option<i64>,
    /// How many: events gone (truncation), events unanchored, checkpoints
    /// that disagree, are missing or do not verify.
    pub count: Option<i64>,
    pub message: String,
}

impl AuditFinding {
    pub fn new(kind: FindingKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            failure: kind.is_failure(),
            seq: None,
            checkpoint: None,
            count: None,
            message: message.into(),
        }
    }

    pub fn seq(mut self, seq: i64) -> Self {
        self.seq = Some(seq);
        self
    }

    pub fn checkpoint(mut self, number: i64) -> Self {
        self.checkpoint = Some(number);
        self
    }

    pub fn count(mut self, n: i64) -> Self {
        self.count = Some(n);
        self
    }
}
