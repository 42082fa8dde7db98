//! Notification operations: channels (where messages go, with sealed
//! secrets that are never returned), rules (which events go where, by
//! owner, team, profile and renewal policy), the delivery queue with its
//! dead letter, and a test message per channel.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::List;
use super::{Ctx, IdInput, OpMeta, Operation, Risk, Subject};
use crate::domain::{
    ChannelKind, ChannelSettings, EventKind, Notification, NotificationChannel, NotificationRule,
    NotificationStatus, Permission, SmtpSecurity,
};
use crate::error::{Error, Result};
use crate::net_guard::OutboundPolicy;
use crate::store::ChannelRecord;

fn name_of(field: &str, v: &str) -> Result<String> {
    let v = v.trim();
    if v.is_empty() || v.len() > 200 {
        return Err(Error::invalid(format!(
            "{field} must be 1 to 200 characters"
        )));
    }
    Ok(v.to_owned())
}

/// Checks a channel URL: http(s) with a host, and a literal IP host the
/// outbound address policy allows (names are checked when resolved, at
/// every delivery).
fn check_url(url: &str, policy: OutboundPolicy) -> Result<()> {
    let u = reqwest::Url::parse(url)
        .map_err(|e| Error::invalid(format!("url '{url}' is not valid: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(Error::invalid(
            "url must be an http:// or https:// URL with a host",
        ));
    }
    crate::net_guard::check_url(url, policy)
        .map_err(|e| Error::invalid(format!("channel url: {e}")))
}

fn check_address(a: &str) -> Result<()> {
    a.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("'{a}' is not a valid e-mail address: {e}")))
}

/// Checks the settings a channel kind needs; `has_secret` says whether a
/// secret will be stored.
fn check_settings(
    kind: ChannelKind,
    s: &ChannelSettings,
    has_secret: bool,
    policy: OutboundPolicy,
) -> Result<()> {
    let email_only = s.smtp_host.is_some()
        || s.smtp_port.is_some()
        || s.smtp_username.is_some()
        || s.from.is_some()
        || !s.to.is_empty()
        || s.smtp_security != SmtpSecurity::default();
    match kind {
        ChannelKind::Email => {
            let host = s.smtp_host.as_deref().unwrap_or("").trim();
            if host.is_empty() {
                return Err(Error::invalid("an email channel needs smtp_host"));
            }
            check_address(
                s.from
                    .as_deref()
                    .ok_or_else(|| Error::invalid("an email channel needs a from address"))?,
            )?;
            for a in &s.to {
                check_address(a)?;
            }
            if s.url.is_some() {
                return Err(Error::invalid("an email channel takes no url"));
            }
            if s.smtp_username.is_some() && !has_secret {
                return Err(Error::invalid(
                    "smtp_username is set but no secret (the SMTP password) was given",
                ));
            }
        }
        ChannelKind::Webhook | ChannelKind::Slack | ChannelKind::Teams => {
            check_url(
                s.url.as_deref().ok_or_else(|| {
                    Error::invalid(format!("a {} channel needs a url", kind.as_str()))
                })?,
                policy,
            )?;
        }
        ChannelKind::Pagerduty | ChannelKind::Opsgenie => {
            if let Some(u) = &s.url {
                check_url(u, policy)?;
            }
            if !has_secret {
                return Err(Error::invalid(match kind {
                    ChannelKind::Pagerduty => {
                        "a pagerduty channel needs its routing key as the secret"
                    }
                    _ => "an opsgenie channel needs its API key as the secret",
                }));
            }
        }
    }
    if kind != ChannelKind::Email && email_only {
        return Err(Error::invalid(format!(
            "smtp_*, from and to are settings of email channels, not {}",
            kind.as_str()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- channels

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationChannelInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// Fixed once created.
    pub kind: ChannelKind,
    #[serde(default)]
    pub settings: ChannelSettings,
    /// SMTP password, webhook signing secret, PagerDuty routing key or
    /// OpsGenie API key; stored sealed, never returned. On update: omit to
    /// keep, "" to remove.
    #[serde(default)]
    pub secret: Option<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

async fn save_channel(
    ctx: &mut Ctx<'_>,
    input: NotificationChannelInput,
) -> Result<NotificationChannel> {
    let name = name_of("name", &input.name)?;
    let existing = match &input.id {
        None => None,
        Some(id) => Some(
            ctx.tx
                .channel_record(id)
                .await?
                .ok_or_else(|| Error::not_found("notification_channel", id.clone()))?,
        ),
    };
    if let Some(e) = &existing
        && e.channel.kind != input.kind
    {
        return Err(Error::invalid(format!(
            "channel {} is a {} channel; its kind cannot change",
            e.channel.id,
            e.channel.kind.as_str()
        )));
    }
    let id = existing
        .as_ref()
        .map(|e| e.channel.id.clone())
        .unwrap_or_else(|| ctx.new_id("nch"));
    let secret_sealed = match input.secret.as_deref() {
        Some("") => None,
        Some(s) => Some(
            ctx.engine
                .master_key()
                .seal(s.as_bytes(), &crate::notify::secret_context(&id))?,
        ),
        None => existing.as_ref().and_then(|e| e.secret_sealed.clone()),
    };
    check_settings(
        input.kind,
        &input.settings,
        secret_sealed.is_some(),
        ctx.engine.config().outbound,
    )?;
    if input.kind == ChannelKind::Email
        && input.settings.smtp_security == SmtpSecurity::InsecurePlain
    {
        tracing::warn!(channel = %name, "email channel sends over plain SMTP (insecure_plain)");
    }
    let record = ChannelRecord {
        channel: NotificationChannel {
            id: id.clone(),
            name,
            kind: input.kind,
            settings: input.settings,
            secret_set: secret_sealed.is_some(),
            enabled: input.enabled.unwrap_or(true),
            created_at: existing
                .as_ref()
                .map(|e| e.channel.created_at)
                .unwrap_or(ctx.now),
            updated_at: ctx.now,
        },
        secret_sealed,
    };
    ctx.tx.upsert_notification_channel(&record).await?;
    ctx.audit_resource_id = Some(id);
    ctx.note("kind", input.kind.as_str());
    ctx.note("secret_set", record.channel.secret_set);
    Ok(record.channel)
}

operation! {
    SaveNotificationChannel {
        name: "save_notification_channel",
        title: "Create or update a notification channel",
        description: "Add a notification channel: email (SMTP), signed webhook, Slack, Microsoft Teams, PagerDuty or OpsGenie; its secret is sealed and never shown again. Give `id` to update one.",
        risk: Write,
        permission: Admin,
        idempotent: false,
        resource: "notification_channel",
        input: NotificationChannelInput,
        output: NotificationChannel,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create {} notification channel '{}'", i.kind.as_str(), i.name),
            Some(id) => format!("Update notification channel {id}"),
        }),
    }
    |ctx, input| {
        save_channel(ctx, input).await
    }
}

// ---------------------------------------------------------------- rules

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationRuleInput {
    /// Set to update; omit to create.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    /// The channel (`nch-...`).
    pub channel_id: String,
    /// Events to send; empty or omitted means all.
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Only certificates of this owner (`own-...`).
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Only certificates of this team (`team-...`).
    #[serde(default)]
    pub team_id: Option<String>,
    /// Only certificates under this profile.
    #[serde(default)]
    pub profile_id: Option<String>,
    /// Only certificates under this renewal policy.
    #[serde(default)]
    pub renewal_policy_id: Option<String>,
    /// Extra e-mail recipients (email channels).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Also mail the certificate owner (email channels; default true).
    #[serde(default)]
    pub include_owner: Option<bool>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

async fn save_rule(ctx: &mut Ctx<'_>, input: NotificationRuleInput) -> Result<NotificationRule> {
    let name = name_of("name", &input.name)?;
    let existing = match &input.id {
        None => None,
        Some(id) => Some(
            ctx.tx
                .notification_rule(id)
                .await?
                .ok_or_else(|| Error::not_found("notification_rule", id.clone()))?,
        ),
    };
    let channel = ctx
        .tx
        .channel_record(&input.channel_id)
        .await?
        .ok_or_else(|| Error::not_found("notification_channel", input.channel_id.clone()))?;
    for (kind, id) in [
        ("owner", &input.owner_id),
        ("team", &input.team_id),
        ("profile", &input.profile_id),
        ("renewal_policy", &input.renewal_policy_id),
    ] {
        if let Some(id) = id {
            super::ensure_exists(ctx, kind, id).await?;
        }
    }
    if !input.recipients.is_empty() && channel.channel.kind != ChannelKind::Email {
        return Err(Error::invalid("recipients apply to email channels only"));
    }
    for a in &input.recipients {
        check_address(a)?;
    }
    if input.events.contains(&EventKind::Test) {
        return Err(Error::invalid(
            "test messages are sent with send_test_notification, not routed by rules",
        ));
    }
    let mut events = input.events;
    events.sort_by_key(|e| e.as_str());
    events.dedup();
    let rule = NotificationRule {
        id: existing
            .as_ref()
            .map(|e| e.id.clone())
            .unwrap_or_else(|| ctx.new_id("nru")),
        name,
        channel_id: input.channel_id,
        events,
        owner_id: input.owner_id,
        team_id: input.team_id,
        profile_id: input.profile_id,
        renewal_policy_id: input.renewal_policy_id,
        recipients: input.recipients,
        include_owner: input.include_owner.unwrap_or(true),
        enabled: input.enabled.unwrap_or(true),
        created_at: existing.as_ref().map(|e| e.created_at).unwrap_or(ctx.now),
        updated_at: ctx.now,
    };
    ctx.tx.upsert_notification_rule(&rule).await?;
    ctx.audit_resource_id = Some(rule.id.clone());
    Ok(rule)
}

operation! {
    SaveNotificationRule {
        name: "save_notification_rule",
        title: "Create or update a notification rule",
        description: "Route lifecycle events to a channel, optionally only for one owner, team, profile or renewal policy and only some event kinds. Give `id` to update one.",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "notification_rule",
        input: NotificationRuleInput,
        output: NotificationRule,
        subject: |i| (i.id.clone(), match &i.id {
            None => format!("Create notification rule '{}' to channel {}", i.name, i.channel_id),
            Some(id) => format!("Update notification rule {id}"),
        }),
    }
    |ctx, input| {
        save_rule(ctx, input).await
    }
}

// ---------------------------------------------------------------- deliveries

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListNotificationsInput {
    pub status: Option<NotificationStatus>,
    /// At most this many, newest first (default 50, at most 1000).
    pub per_page: Option<i64>,
}

operation! {
    ListNotifications {
        name: "list_notifications",
        title: "List notifications",
        description: "List notification deliveries, newest first, with attempts and last error; use status=dead_letter to see what could not be delivered.",
        risk: Read,
        permission: Read,
        idempotent: true,
        resource: "notification",
        input: ListNotificationsInput,
        output: List<Notification>,
        subject: |_i| (None, String::new()),
    }
    |ctx, input| {
        let limit = crate::store::page_size(input.per_page)?;
        Ok(List { data: ctx.engine.store().list_notifications(input.status, limit).await?, total: None, next_cursor: None })
    }
}

operation! {
    RetryNotification {
        name: "retry_notification",
        title: "Retry a notification",
        description: "Put a dead-lettered notification back in the queue with fresh attempts (after fixing its channel).",
        risk: Write,
        permission: Write,
        idempotent: false,
        resource: "notification",
        input: IdInput,
        output: Notification,
        subject: |i| (Some(i.id.clone()), format!("Retry notification {}", i.id)),
    }
    |ctx, input| {
        let n = ctx
            .tx
            .notification(&input.id)
            .await?
            .ok_or_else(|| Error::not_found("notification", input.id.clone()))?;
        if n.status != NotificationStatus::DeadLetter {
            return Err(Error::conflict(format!(
                "notification {} is {}; only dead-lettered notifications are retried",
                n.id,
                n.status.as_str()
            )));
        }
        ctx.tx.requeue_notification(&n.id, ctx.now).await?;
        ctx.tx
            .notification(&n.id)
            .await?
            .ok_or_else(|| Error::internal("notification vanished"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendTestNotificationInput {
    /// The channel (`nch-...`).
    pub channel_id: String,
    /// E-mail recipients for an email channel (default: the channel's `to`).
    #[serde(default)]
    pub to: Vec<String>,
}

/// Queues a test message on one channel; the notifications loop sends it
/// on its next run (within a minute by default), and `list_notifications`
/// shows the result.
pub struct SendTestNotification;

impl Operation for SendTestNotification {
    type Input = SendTestNotificationInput;
    type Output = Notification;
    const META: OpMeta = OpMeta {
        name: "send_test_notification",
        title: "Send a test notification",
        description: "Queue a test message on a notification channel to check its settings; it is sent on the notifications loop's next run and its delivery status shows in list_notifications.",
        risk: Risk::Write,
        permission: Permission::Write,
        idempotent: false,
        open_world: true,
        resource: "notification_channel",
        gateable: true,
    };

    async fn describe(ctx: &mut Ctx<'_>, input: &Self::Input) -> Result<Subject> {
        let ch = ctx
            .tx
            .channel_record(&input.channel_id)
            .await?
            .ok_or_else(|| Error::not_found("notification_channel", input.channel_id.clone()))?;
        Ok(Subject {
            resource_id: Some(ch.channel.id.clone()),
            summary: format!(
                "Send a test message on {} channel '{}'",
                ch.channel.kind.as_str(),
                ch.channel.name
            ),
            profile_requires_approval: false,
            four_eyes: None,
            bound: Vec::new(),
        })
    }

    async fn execute(ctx: &mut Ctx<'_>, input: Self::Input) -> Result<Self::Output> {
        let ch = ctx
            .tx
            .channel_record(&input.channel_id)
            .await?
            .ok_or_else(|| Error::not_found("notification_channel", input.channel_id.clone()))?;
        let mut to = input.to.clone();
        if ch.channel.kind == ChannelKind::Email {
            for a in &to {
                check_address(a)?;
            }
            if to.is_empty() {
                to = ch.channel.settings.to.clone();
            }
            if to.is_empty() {
                return Err(Error::invalid(
                    "give `to`: the email channel has no default recipients",
                ));
            }
        } else if !to.is_empty() {
            return Err(Error::invalid("`to` applies to email channels only"));
        }
        let id = ctx.new_id("ntf");
        let n = Notification {
            id: id.clone(),
            event: EventKind::Test.as_str().to_owned(),
            event_id: None,
            certificate_id: None,
            channel_id: Some(ch.channel.id.clone()),
            channel: ch.channel.kind.as_str().to_owned(),
            recipient: if to.is_empty() {
                ch.channel.name.clone()
            } else {
                to.join(",")
            },
            subject: format!("certctl test message for channel {}", ch.channel.name),
            body: format!(
                "This is a test message from certctl, requested by {} for channel {} ({}).",
                ctx.principal.id,
                ch.channel.name,
                ch.channel.kind.as_str()
            ),
            details: serde_json::json!({ "channel": ch.channel.name, "requested_by": ctx.principal.id }),
            status: NotificationStatus::Pending,
            attempts: 0,
            max_attempts: ctx.engine.config().notifications.max_attempts.max(1),
            next_attempt_at: ctx.now,
            last_error: None,
            dedup_key: format!("test:{id}"),
            created_at: ctx.now,
            sent_at: None,
        };
        ctx.tx.insert_notification(&n).await?;
        ctx.note("notification_id", id);
        Ok(n)
    }
}
