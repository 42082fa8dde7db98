//! Notifications: lifecycle events, the channels they are sent to, the rules
//! that route them, and the deliveries queued for each channel.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;

/// A lifecycle event people hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The current version is 30, 14, 7 or 1 days from expiry.
    ExpiringSoon,
    /// A new version was issued for a certificate that had one.
    Renewed,
    /// A renewal was refused or its job failed for good.
    RenewalFailed,
    Revoked,
    /// A deployment job failed for good.
    DeploymentFailed,
    /// An operation stopped at the approval gate.
    ApprovalRequested,
    /// An agent stopped sending heartbeats.
    AgentOffline,
    /// A policy rule did not hold (warned or refused).
    PolicyViolation,
    /// Sent by `send_test_notification`.
    Test,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        Self::ExpiringSoon,
        Self::Renewed,
        Self::RenewalFailed,
        Self::Revoked,
        Self::DeploymentFailed,
        Self::ApprovalRequested,
        Self::AgentOffline,
        Self::PolicyViolation,
        Self::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiringSoon => "expiring_soon",
            Self::Renewed => "renewed",
            Self::RenewalFailed => "renewal_failed",
            Self::Revoked => "revoked",
            Self::DeploymentFailed => "deployment_failed",
            Self::ApprovalRequested => "approval_requested",
            Self::AgentOffline => "agent_offline",
            Self::PolicyViolation => "policy_violation",
            Self::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event reports a problem that an incident tool should open
    /// (PagerDuty trigger, OpsGenie alert) rather than close.
    pub fn is_problem(self) -> bool {
        !matches!(self, Self::Renewed)
    }
}

/// A channel kind, each with its vendor's message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    Webhook,
    Slack,
    Teams,
    Pagerduty,
    Opsgenie,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 6] = [
        Self::Email,
        Self::Webhook,
        Self::Slack,
        Self::Teams,
        Self::Pagerduty,
        Self::Opsgenie,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Teams => "teams",
            Self::Pagerduty => "pagerduty",
            Self::Opsgenie => "opsgenie",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// STARTTLS required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on this host or a test sink.
    InsecurePlain,
}

/// The non-secret settings of a channel (the secret is stored apart,
/// sealed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelSettings {
    /// The webhook URL (webhook, Slack, Teams), or the PagerDuty Events v2 /
    /// OpsGenie Alerts API URL (default: the vendor's public endpoint).
    pub url: Option<String>,
    /// SMTP host (email).
    pub smtp_host: Option<String>,
    /// SMTP port (email; default 587, or 465 with `tls`).
    pub smtp_port: Option<u16>,
    pub smtp_security: SmtpSecurity,
    /// SMTP user name (email); the password is the channel secret.
    pub smtp_username: Option<String>,
    /// Sender address (email).
    pub from: Option<String>,
    /// Default recipients (email), used with the rule's and the owner's.
    pub to: Vec<String>,
}

/// A notification channel as callers see it: secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationChannel {
    /// `nch-...`
    pub id: String,
    pub name: String,
    pub kind: ChannelKind,
    pub settings: ChannelSettings,
    /// Whether a secret is stored (it is never shown).
    pub secret_set: bool,
    pub enabled: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// Routes events to a channel. Every filter that is set must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationRule {
    /// `nru-...`
    pub id: String,
    pub name: String,
    pub channel_id: String,
    /// Events this rule sends; empty means all.
    pub events: Vec<EventKind>,
    /// Only certificates of this owner.
    pub owner_id: Option<String>,
    /// Only certificates of this team.
    pub team_id: Option<String>,
    /// Only certificates under this profile.
    pub profile_id: Option<String>,
    /// Only certificates under this renewal policy.
    pub renewal_policy_id: Option<String>,
    /// Extra e-mail recipients (email channels).
    pub recipients: Vec<String>,
    /// Also mail the certificate owner's address (email channels).
    pub include_owner: bool,
    pub enabled: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// Claimed by a process that is sending it now.
    Sending,
    Sent,
    /// Every attempt failed; `retry_notification` puts it back.
    DeadLetter,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 4] =
        [Self::Pending, Self::Sending, Self::Sent, Self::DeadLetter];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::DeadLetter => "dead_letter",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One delivery of one event to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Notification {
    /// `ntf-...`
    pub id: String,
    /// The event kind, e.g. `expiring_soon`, `renewed`, `revoked`, `approval_requested`.
    pub event: String,
    pub event_id: Option<String>,
    pub certificate_id: Option<String>,
    pub channel_id: Option<String>,
    /// The channel kind: `email`, `webhook`, `slack`, `teams`, `pagerduty`, `opsgenie`.
    pub channel: String,
    /// E-mail addresses (comma-separated) or the channel name.
    pub recipient: String,
    pub subject: String,
    pub body: String,
    /// Facts about the event (certificate, serial, expiry, threshold...).
    pub details: serde_json::Value,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
    /// Unique per event and channel: the same event is never queued twice.
    pub dedup_key: String,
    pub created_at: UnixTime,
    pub sent_at: Option<UnixTime>,
}
