//! The audit trail of API requests: one `api_request` event per HTTP call
//! (method, path, actor, SHA-256 of the body, status, latency, request id).
//!
//! These events say *that a request came*; what it did is the operation's own
//! event (written by [`Engine::call`], with the same actor), so nothing is
//! logged twice. Faces hand requests over in batches: one write transaction
//! per batch keeps the hash-chained log off the hot path of every request.

use crate::clock::UnixTime;
use crate::domain::{Outcome, Principal};
use crate::engine::Engine;
use crate::error::Result;
use crate::store::NewAuditEvent;

/// The audit action of request events.
pub const API_REQUEST_ACTION: &str = "api_request";

/// One finished HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequestRecord {
    /// When the request arrived (the engine's clock).
    pub at: UnixTime,
    /// The `x-request-id` it was answered with.
    pub request_id: String,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The authenticated caller; `None` when authentication failed or was not reached.
    pub principal: Option<Principal>,
    /// Hex SHA-256 of the request body (of the empty string when there was none).
    pub body_sha256: String,
    pub status: u16,
    pub latency_ms: f64,
}

impl Engine {
    /// Appends one `api_request` event per record, in one transaction
    /// (shared with concurrent reads' events, see `read_audit`).
    pub async fn record_api_requests(&self, batch: &[ApiRequestRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(batch.len());
        for r in batch {
            let outcome = match r.status {
                401 | 403 => Outcome::Denied,
                s if s >= 400 => Outcome::Failure,
                _ => Outcome::Success,
            };
            let mut details = serde_json::Map::new();
            details.insert("request_id".into(), r.request_id.clone().into());
            details.insert("method".into(), r.method.clone().into());
            details.insert("path".into(), r.path.clone().into());
            details.insert("status".into(), r.status.into());
            details.insert("latency_ms".into(), r.latency_ms.into());
            details.insert("body_sha256".into(), r.body_sha256.clone().into());
            let (actor, role) = match &r.principal {
                Some(p) => (p.id.clone(), p.role.as_str()),
                None => ("anonymous".to_owned(), "none"),
            };
            let event = NewAuditEvent {
                id: crate::ids::new_id("ev", self.clock()),
                at: r.at,
                actor,
                actor_role: role.to_owned(),
                action: API_REQUEST_ACTION.to_owned(),
                resource_type: "http".to_owned(),
                resource_id: None,
                outcome,
                details: serde_json::Value::Object(details),
            };
            events.push(event);
        }
        // Through the reads' group commit: one transaction for these and
        // whatever read events are waiting at the same time.
        self.append_grouped(events).await
    }
}

/// The audit action of aggregated refusals by the faces' rate limits.
pub const API_THROTTLED_ACTION: &str = "api_throttled";

/// Requests a face refused with 429 before doing their work, from one
/// client, summed up: a flood writes one event per client per window, not
/// one per request, so refusing it cannot itself flood the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottledRecord {
    /// When the window's first refused request arrived (the engine's clock).
    pub at: UnixTime,
    /// The client's address (IPv6 clients by their /64).
    pub client: String,
    /// Which limit refused it: `public` (unauthenticated routes) or
    /// `failed_auth` (too many failed authentications).
    pub limit: String,
    /// Refused requests this event stands for.
    pub count: u64,
    /// The length of the aggregation window, in seconds.
    pub window_seconds: u64,
}

impl Engine {
    /// Appends one `api_throttled` event per record, in one transaction.
    pub async fn record_throttled(&self, batch: &[ThrottledRecord]) -> Result<()> {
        let events = batch
            .iter()
            .map(|r| {
                let mut details = serde_json::Map::new();
                details.insert("client".into(), r.client.clone().into());
                details.insert("limit".into(), r.limit.clone().into());
                details.insert("count".into(), r.count.into());
                details.insert("window_seconds".into(), r.window_seconds.into());
                NewAuditEvent {
                    id: crate::ids::new_id("ev", self.clock()),
                    at: r.at,
                    actor: "anonymous".to_owned(),
                    actor_role: "none".to_owned(),
                    action: API_THROTTLED_ACTION.to_owned(),
                    resource_type: "http".to_owned(),
                    resource_id: None,
                    outcome: Outcome::Denied,
                    details: serde_json::Value::Object(details),
                }
            })
            .collect();
        self.append_grouped(events).await
    }
}
