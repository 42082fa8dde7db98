//! Notifications: messages about lifecycle events, queued for delivery.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notification {
    /// `ntf-...`
    pub id: String,
    /// The event, e.g. `expiring_soon`, `renewed`, `revoked`, `approval_requested`.
    pub event: String,
    pub certificate_id: Option<String>,
    /// The channel kind: `email`, `webhook`, `slack`, `teams`, `pagerduty`, `opsgenie`.
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// `pending`, `sent`, `failed` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: UnixTime,
    pub sent_at: Option<UnixTime>,
}
