//! Bulk operations: one request (one approval) that renews, revokes or
//! reassigns many certificates, with counts and a result per certificate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkKind {
    Renew,
    Revoke,
    Reassign,
}

impl BulkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Renew => "renew",
            Self::Revoke => "revoke",
            Self::Reassign => "reassign",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "renew" => Self::Renew,
            "revoke" => Self::Revoke,
            "reassign" => Self::Reassign,
            _ => return None,
        })
    }
}

/// What happened to one certificate of a bulk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BulkItemOutcome {
    /// Renewed (or a renewal job queued), revoked, or reassigned.
    Done,
    /// Dry run: this certificate would be changed.
    WouldChange,
    /// Not changed; `detail` says why.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BulkItem {
    /// The certificate id.
    pub id: String,
    pub outcome: BulkItemOutcome,
    /// Why it was skipped, or what was done (a job id, a new serial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The record of one bulk operation that ran (dry runs leave none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BulkOperation {
    /// `bulk-...`
    pub id: String,
    pub kind: BulkKind,
    /// `running` while its chunks run (`succeeded` + `skipped` of `total` are done so far), then `completed`.
    pub status: String,
    /// The principal that ran it: the approver, when it passed the gate
    /// (the approval names the requester).
    pub run_by: String,
    /// Certificates selected.
    pub total: i64,
    pub succeeded: i64,
    pub skipped: i64,
    /// The request as given (filter, ids, reason, new owner/team).
    pub request: serde_json::Value,
    /// One result per certificate, in selection order.
    pub results: Vec<BulkItem>,
    pub created_at: UnixTime,
    pub finished_at: Option<UnixTime>,
}
