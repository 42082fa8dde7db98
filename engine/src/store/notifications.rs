//! Notifications: the event outbox, channels, routing rules and deliveries.
//!
//! Events are inserted in the transaction of the change that caused them
//! (`Tx::insert_notification_event`), so a rolled-back change never notifies
//! and a committed one always does. Deliveries are claimed with a lease like
//! jobs (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite), so
//! several processes never send the same one.

use super::{Store, Tx, enum_col, json_col, safe, to_json, with_db, with_tx};
use crate::clock::UnixTime;
use crate::domain::{
    ChannelKind, EventKind, Notification, NotificationChannel, NotificationRule, NotificationStatus,
};
use crate::error::Result;

/// An event to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: EventKind,
    pub certificate_id: Option<String>,
    pub owner_id: Option<String>,
    pub team_id: Option<String>,
    pub profile_id: Option<String>,
    pub renewal_policy_id: Option<String>,
    pub subject: String,
    pub body: String,
    pub details: serde_json::Value,
    /// Unique: an event with the same key is stored once.
    pub dedup_key: String,
    pub created_at: UnixTime,
}

/// A stored channel with its sealed secret (never leaves the engine).
#[derive(Debug, Clone)]
pub struct ChannelRecord {
    pub channel: NotificationChannel,
    pub secret_sealed: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: String,
    name: String,
    kind: String,
    config: String,
    secret_sealed: Option<String>,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

const CHANNEL_COLUMNS: &str =
    "id, name, kind, config, secret_sealed, enabled, created_at, updated_at";

impl ChannelRow {
    fn into_record(self) -> Result<ChannelRecord> {
        Ok(ChannelRecord {
            channel: NotificationChannel {
                kind: enum_col(&self.kind, ChannelKind::parse, "channel kind")?,
                settings: json_col(&self.config, "channel settings")?,
                secret_set: self.secret_sealed.is_some(),
                id: self.id,
                name: self.name,
                enabled: self.enabled,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            secret_sealed: self.secret_sealed,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    id: String,
    name: String,
    channel_id: String,
    events: String,
    owner_id: Option<String>,
    team_id: Option<String>,
    profile_id: Option<String>,
    renewal_policy_id: Option<String>,
    recipients: String,
    include_owner: bool,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

const RULE_COLUMNS: &str = "id, name, channel_id, events, owner_id, team_id, profile_id, \
    renewal_policy_id, recipients, include_owner, enabled, created_at, updated_at";

impl RuleRow {
    fn into_domain(self) -> Result<NotificationRule> {
        Ok(NotificationRule {
            events: json_col(&self.events, "rule events")?,
            recipients: json_col(&self.recipients, "rule recipients")?,
            id: self.id,
            name: self.name,
            channel_id: self.channel_id,
            owner_id: self.owner_id,
            team_id: self.team_id,
            profile_id: self.profile_id,
            renewal_policy_id: self.renewal_policy_id,
            include_owner: self.include_owner,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A routed-but-unsent event as the router reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: String,
    pub kind: String,
    pub certificate_id: Option<String>,
    pub owner_id: Option<String>,
    pub team_id: Option<String>,
    pub profile_id: Option<String>,
    pub renewal_policy_id: Option<String>,
    pub subject: String,
    pub body: String,
    pub details: String,
    pub dedup_key: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: String,
    event: String,
    event_id: Option<String>,
    certificate_id: Option<String>,
    channel_id: Option<String>,
    channel: String,
    recipient: String,
    subject: String,
    body: String,
    details: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    dedup_key: String,
    created_at: i64,
    sent_at: Option<i64>,
}

const NOTIFICATION_COLUMNS: &str = "id, event, event_id, certificate_id, channel_id, channel, \
    recipient, subject, body, details, status, attempts, max_attempts, next_attempt_at, \
    last_error, dedup_key, created_at, sent_at";

impl NotificationRow {
    fn into_domain(self) -> Result<Notification> {
        Ok(Notification {
            status: enum_col(
                &self.status,
                NotificationStatus::parse,
                "notification status",
            )?,
            details: json_col(&self.details, "notification details")?,
            id: self.id,
            event: self.event,
            event_id: self.event_id,
            certificate_id: self.certificate_id,
            channel_id: self.channel_id,
            channel: self.channel,
            recipient: self.recipient,
            subject: self.subject,
            body: self.body,
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            next_attempt_at: self.next_attempt_at,
            last_error: self.last_error,
            dedup_key: self.dedup_key,
            created_at: self.created_at,
            sent_at: self.sent_at,
        })
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Sent,
    /// Failed; retried at `retry_at` unless the attempts are used up.
    Failed {
        error: String,
        retry_at: UnixTime,
    },
}

/// Facts about a certificate the expiry warnings need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiringRow {
    pub id: String,
    pub common_name: String,
    pub owner_id: Option<String>,
    pub team_id: Option<String>,
    pub profile_id: String,
    pub renewal_policy_id: Option<String>,
    pub current_version_id: Option<String>,
    pub serial: Option<String>,
    pub not_after: i64,
    /// The smallest threshold (days) already warned about for this version.
    pub expiry_warned_days: Option<i64>,
}

impl Store {
    pub async fn list_notification_channels(&self) -> Result<Vec<NotificationChannel>> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels ORDER BY name");
        let rows: Vec<ChannelRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|r| r.into_record().map(|r| r.channel))
            .collect()
    }

    pub async fn list_notification_rules(&self) -> Result<Vec<NotificationRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM notification_rules ORDER BY name");
        let rows: Vec<RuleRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(RuleRow::into_domain).collect()
    }

    /// Newest first, optionally of one status.
    pub async fn list_notifications(
        &self,
        status: Option<NotificationStatus>,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        let rows: Vec<NotificationRow> = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE status = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                );
                with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
                    .bind(s.as_str())
                    .bind(limit)
                    .fetch_all(p)
                    .await?)
            }
            None => {
                let sql = format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                );
                with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
                    .bind(limit)
                    .fetch_all(p)
                    .await?)
            }
        };
        rows.into_iter().map(NotificationRow::into_domain).collect()
    }

    /// Channel with its sealed secret, outside any transaction (delivery).
    pub async fn channel_record(&self, id: &str) -> Result<Option<ChannelRecord>> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1");
        let row: Option<ChannelRow> = with_db!(&self.db, |p| sqlx::query_as(safe(&sql))
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.map(ChannelRow::into_record).transpose()
    }

    /// Claims up to `limit` due deliveries for `owner` with a lease; a
    /// delivery whose lease ran out (its sender died) is claimable again.
    pub async fn claim_notifications(
        &self,
        owner: &str,
        now: UnixTime,
        lease_seconds: i64,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        let skip_locked = match self.backend() {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE notifications SET status = 'sending', lease_owner = $1, lease_expires_at = $2, \
             attempts = attempts + 1 WHERE id IN (SELECT id FROM notifications \
             WHERE status = 'pending' AND next_attempt_at <= $3 \
             ORDER BY next_attempt_at, id LIMIT $4{skip_locked}) RETURNING {NOTIFICATION_COLUMNS}"
        );
        let mut tx = self.begin_write().await?;
        // Deliveries of a process that died are put back first.
        with_tx!(tx, |c| {
            sqlx::query(
                "UPDATE notifications SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL \
                 WHERE status = 'sending' AND lease_expires_at <= $1",
            )
            .bind(now)
            .execute(c)
            .await?;
        });
        let rows: Vec<NotificationRow> = with_tx!(tx, |c| {
            sqlx::query_as(safe(&sql))
                .bind(owner)
                .bind(now + lease_seconds)
                .bind(now)
                .bind(limit)
                .fetch_all(c)
                .await?
        });
        tx.commit().await?;
        let mut out: Vec<Notification> = rows
            .into_iter()
            .map(NotificationRow::into_domain)
            .collect::<Result<_>>()?;
        out.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        Ok(out)
    }

    /// Records how `owner`'s attempt ended. Returns false when the lease was
    /// lost (another process reclaimed the delivery).
    pub async fn finish_notification(
        &self,
        id: &str,
        owner: &str,
        result: &DeliveryResult,
        now: UnixTime,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = match result {
            DeliveryResult::Sent => with_tx!(tx, |c| {
                sqlx::query(
                    "UPDATE notifications SET status = 'sent', sent_at = $1, last_error = NULL, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE id = $2 AND status = 'sending' AND lease_owner = $3",
                )
                .bind(now)
                .bind(id)
                .bind(owner)
                .execute(c)
                .await?
                .rows_affected()
            }),
            DeliveryResult::Failed { error, retry_at } => with_tx!(tx, |c| {
                sqlx::query(
                    "UPDATE notifications SET status = CASE WHEN attempts >= max_attempts \
                     THEN 'dead_letter' ELSE 'pending' END, next_attempt_at = $1, last_error = $2, \
                     lease_owner = NULL, lease_expires_at = NULL \
                     WHERE id = $3 AND status = 'sending' AND lease_owner = $4",
                )
                .bind(retry_at)
                .bind(error)
                .bind(id)
                .bind(owner)
                .execute(c)
                .await?
                .rows_affected()
            }),
        };
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Active certificates whose expiry-warning time (`next_warn_at`) has
    /// come, or was never computed (0): one index range on `(status,
    /// next_warn_at)`, empty in a steady state however large the fleet. The
    /// ORDER BY keeps PostgreSQL on that index: with a generic plan for the
    /// prepared statement and a bare LIMIT it chose a sequential scan
    /// (384 ms at a million certificates).
    pub async fn certificates_warn_due(
        &self,
        now: UnixTime,
        limit: i64,
    ) -> Result<Vec<ExpiringRow>> {
        let rows: Vec<ExpiringRow> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, common_name, owner_id, team_id, profile_id, renewal_policy_id, \
                 current_version_id, serial, not_after, expiry_warned_days FROM certificates \
                 WHERE status = 'active' AND next_warn_at <= $1 \
                 AND not_after IS NOT NULL ORDER BY next_warn_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Certificates whose precomputed renewal time has come, without a
    /// renewal job in progress (index range on `(status, renew_after, id)`),
    /// after the keyset cursor `after` (the last row's renew_after and id).
    pub async fn certificates_due_for_renewal(
        &self,
        now: UnixTime,
        after: Option<(UnixTime, &str)>,
        limit: i64,
    ) -> Result<Vec<(String, UnixTime)>> {
        let (at, id) = after.unwrap_or((i64::MIN, ""));
        let rows: Vec<(String, i64)> = with_db!(&self.db, |p| {
            sqlx::query_as(
                "SELECT c.id, c.renew_after FROM certificates c \
                 WHERE c.status = 'active' AND c.renew_after <= $1 \
                 AND (c.renew_after > $2 OR (c.renew_after = $2 AND c.id > $3)) \
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.certificate_id = c.id \
                   AND j.kind = 'renewal' AND j.status NOT IN ('completed', 'failed', 'cancelled')) \
                 ORDER BY c.renew_after, c.id LIMIT $4",
            )
            .bind(now)
            .bind(at)
            .bind(id)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Moves active short-lived certificates past `not_after` to the stored
    /// `expired` status (no revocation): those under one of `profile_ids`,
    /// or whose lifetime is at most `max_ttl` seconds. Returns their ids.
    pub async fn expire_short_lived(
        &self,
        now: UnixTime,
        profile_ids: &[String],
        max_ttl: i64,
    ) -> Result<Vec<String>> {
        let mut placeholders = Vec::new();
        for i in 0..profile_ids.len() {
            placeholders.push(format!("${}", i + 3));
        }
        let by_profile = if placeholders.is_empty() {
            String::new()
        } else {
            format!(" OR profile_id IN ({})", placeholders.join(", "))
        };
        let sql = format!(
            "UPDATE certificates SET status = 'expired', renew_after = NULL, updated_at = $1 \
             WHERE status = 'active' AND not_after <= $1 \
             AND ((not_after - not_before) <= $2{by_profile}) RETURNING id"
        );
        let mut tx = self.begin_write().await?;
        let ids: Vec<(String,)> = with_tx!(tx, |c| {
            let mut q = sqlx::query_as(safe(&sql)).bind(now).bind(max_ttl);
            for p in profile_ids {
                q = q.bind(p);
            }
            q.fetch_all(c).await?
        });
        tx.commit().await?;
        Ok(ids.into_iter().map(|r| r.0).collect())
    }
}

impl Tx {
    /// Puts an event in the outbox; false when an event with the same dedup
    /// key already exists (it is not stored twice).
    pub async fn insert_notification_event(&mut self, e: &NewEvent) -> Result<bool> {
        let details = to_json(&e.details)?;
        let n = with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO notification_events (id, kind, certificate_id, owner_id, team_id, \
                 profile_id, renewal_policy_id, subject, body, details, dedup_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (dedup_key) DO NOTHING",
            )
            .bind(&e.id)
            .bind(e.kind.as_str())
            .bind(&e.certificate_id)
            .bind(&e.owner_id)
            .bind(&e.team_id)
            .bind(&e.profile_id)
            .bind(&e.renewal_policy_id)
            .bind(&e.subject)
            .bind(&e.body)
            .bind(&details)
            .bind(&e.dedup_key)
            .bind(e.created_at)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// The oldest events not routed yet.
    pub async fn unrouted_events(&mut self, limit: i64) -> Result<Vec<EventRow>> {
        let rows: Vec<EventRow> = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT id, kind, certificate_id, owner_id, team_id, profile_id, renewal_policy_id, \
                 subject, body, details, dedup_key, created_at FROM notification_events \
                 WHERE routed_at IS NULL ORDER BY created_at, id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(c)
            .await?
        });
        Ok(rows)
    }

    pub async fn mark_event_routed(&mut self, id: &str, now: UnixTime) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query("UPDATE notification_events SET routed_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Queues a delivery; false when one with the same dedup key exists.
    pub async fn insert_notification(&mut self, n: &Notification) -> Result<bool> {
        let details = to_json(&n.details)?;
        let rows = with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO notifications (id, event, event_id, certificate_id, channel_id, channel, \
                 recipient, subject, body, details, status, attempts, max_attempts, next_attempt_at, \
                 last_error, dedup_key, created_at, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                 ON CONFLICT (dedup_key) DO NOTHING",
            )
            .bind(&n.id)
            .bind(&n.event)
            .bind(&n.event_id)
            .bind(&n.certificate_id)
            .bind(&n.channel_id)
            .bind(&n.channel)
            .bind(&n.recipient)
            .bind(&n.subject)
            .bind(&n.body)
            .bind(&details)
            .bind(n.status.as_str())
            .bind(n.attempts)
            .bind(n.max_attempts)
            .bind(n.next_attempt_at)
            .bind(&n.last_error)
            .bind(&n.dedup_key)
            .bind(n.created_at)
            .bind(n.sent_at)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }

    pub async fn notification(&mut self, id: &str) -> Result<Option<Notification>> {
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1");
        let row: Option<NotificationRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(NotificationRow::into_domain).transpose()
    }

    /// Puts a dead-lettered delivery back in the queue with fresh attempts.
    pub async fn requeue_notification(&mut self, id: &str, now: UnixTime) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query(
                "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = $1 \
                 WHERE id = $2 AND status = 'dead_letter'",
            )
            .bind(now)
            .bind(id)
            .execute(c)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn channel_record(&mut self, id: &str) -> Result<Option<ChannelRecord>> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1");
        let row: Option<ChannelRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(ChannelRow::into_record).transpose()
    }

    pub async fn channel_by_name(&mut self, name: &str) -> Result<Option<String>> {
        let id: Option<String> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT id FROM notification_channels WHERE name = $1")
                .bind(name)
                .fetch_optional(c)
                .await?
        });
        Ok(id)
    }

    /// Every enabled channel (the router's view).
    pub async fn enabled_channels(&mut self) -> Result<Vec<ChannelRecord>> {
        let sql = format!("SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE enabled");
        let rows: Vec<ChannelRow> =
            with_tx!(self, |c| sqlx::query_as(safe(&sql)).fetch_all(c).await?);
        rows.into_iter().map(ChannelRow::into_record).collect()
    }

    pub async fn upsert_notification_channel(&mut self, r: &ChannelRecord) -> Result<()> {
        let c_ = &r.channel;
        let config = to_json(&c_.settings)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO notification_channels (id, name, kind, config, secret_sealed, enabled, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, config = excluded.config, \
                 secret_sealed = excluded.secret_sealed, enabled = excluded.enabled, \
                 updated_at = excluded.updated_at",
            )
            .bind(&c_.id)
            .bind(&c_.name)
            .bind(c_.kind.as_str())
            .bind(&config)
            .bind(&r.secret_sealed)
            .bind(c_.enabled)
            .bind(c_.created_at)
            .bind(c_.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Deletes a channel; false when it is unknown. Rules that use it must go first.
    pub async fn delete_notification_channel(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query("DELETE FROM notification_channels WHERE id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn rules_using_channel(&mut self, id: &str) -> Result<i64> {
        let n: i64 = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT COUNT(*) FROM notification_rules WHERE channel_id = $1")
                .bind(id)
                .fetch_one(c)
                .await?
        });
        Ok(n)
    }

    pub async fn notification_rule(&mut self, id: &str) -> Result<Option<NotificationRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM notification_rules WHERE id = $1");
        let row: Option<RuleRow> = with_tx!(self, |c| {
            sqlx::query_as(safe(&sql))
                .bind(id)
                .fetch_optional(c)
                .await?
        });
        row.map(RuleRow::into_domain).transpose()
    }

    pub async fn enabled_rules(&mut self) -> Result<Vec<NotificationRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM notification_rules WHERE enabled");
        let rows: Vec<RuleRow> =
            with_tx!(self, |c| sqlx::query_as(safe(&sql)).fetch_all(c).await?);
        rows.into_iter().map(RuleRow::into_domain).collect()
    }

    pub async fn upsert_notification_rule(&mut self, r: &NotificationRule) -> Result<()> {
        let events = to_json(&r.events)?;
        let recipients = to_json(&r.recipients)?;
        with_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO notification_rules (id, name, channel_id, events, owner_id, team_id, \
                 profile_id, renewal_policy_id, recipients, include_owner, enabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, channel_id = excluded.channel_id, \
                 events = excluded.events, owner_id = excluded.owner_id, team_id = excluded.team_id, \
                 profile_id = excluded.profile_id, renewal_policy_id = excluded.renewal_policy_id, \
                 recipients = excluded.recipients, include_owner = excluded.include_owner, \
                 enabled = excluded.enabled, updated_at = excluded.updated_at",
            )
            .bind(&r.id)
            .bind(&r.name)
            .bind(&r.channel_id)
            .bind(&events)
            .bind(&r.owner_id)
            .bind(&r.team_id)
            .bind(&r.profile_id)
            .bind(&r.renewal_policy_id)
            .bind(&recipients)
            .bind(r.include_owner)
            .bind(r.enabled)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_notification_rule(&mut self, id: &str) -> Result<bool> {
        let n = with_tx!(self, |c| {
            sqlx::query("DELETE FROM notification_rules WHERE id = $1")
                .bind(id)
                .execute(c)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// Routing facts of a certificate: id, common name, owner, team,
    /// profile and renewal policy.
    #[allow(clippy::type_complexity)] // one row, read once
    pub async fn certificate_facts(
        &mut self,
        id: &str,
    ) -> Result<
        Option<(
            String,
            String,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
        )>,
    > {
        let row = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT id, common_name, owner_id, team_id, profile_id, renewal_policy_id \
                 FROM certificates WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await?
        });
        Ok(row)
    }

    /// The owner's e-mail address, if any.
    pub async fn owner_email(&mut self, owner_id: &str) -> Result<Option<String>> {
        let email: Option<String> = with_tx!(self, |c| {
            sqlx::query_scalar("SELECT email FROM owners WHERE id = $1")
                .bind(owner_id)
                .fetch_optional(c)
                .await?
        });
        Ok(email.filter(|e| !e.is_empty()))
    }

    /// Sets when the renewal loop picks the certificate up and clears the
    /// expiry warnings of the previous version (called on every issuance).
    pub async fn set_renewal_schedule(
        &mut self,
        certificate_id: &str,
        renew_after: Option<UnixTime>,
    ) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE certificates SET renew_after = $1, expiry_warned_days = NULL, \
                 next_warn_at = 0 WHERE id = $2",
            )
            .bind(renew_after)
            .bind(certificate_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Active certificates to reschedule: one, or all under a renewal
    /// policy. Returns (id, not_before, not_after, renewal_policy_id).
    #[allow(clippy::type_complexity)] // plain rows
    pub async fn renewal_inputs(
        &mut self,
        certificate_id: Option<&str>,
        policy_id: Option<&str>,
    ) -> Result<Vec<(String, i64, i64, Option<String>)>> {
        let rows = with_tx!(self, |c| {
            sqlx::query_as(
                "SELECT id, not_before, not_after, renewal_policy_id FROM certificates \
                 WHERE status = 'active' AND not_before IS NOT NULL \
                 AND ($1 IS NULL OR id = $1) AND ($2 IS NULL OR renewal_policy_id = $2)",
            )
            .bind(certificate_id)
            .bind(policy_id)
            .fetch_all(c)
            .await?
        });
        Ok(rows)
    }

    pub async fn set_renew_after(&mut self, certificate_id: &str, at: UnixTime) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query("UPDATE certificates SET renew_after = $1 WHERE id = $2")
                .bind(at)
                .bind(certificate_id)
                .execute(c)
                .await?;
        });
        Ok(())
    }

    /// Records the smallest threshold warned about and when the next one is due.
    pub async fn set_expiry_warning(
        &mut self,
        certificate_id: &str,
        warned_days: Option<i64>,
        next_warn_at: UnixTime,
    ) -> Result<()> {
        with_tx!(self, |c| {
            sqlx::query(
                "UPDATE certificates SET expiry_warned_days = $1, next_warn_at = $2 WHERE id = $3",
            )
            .bind(warned_days)
            .bind(next_warn_at)
            .bind(certificate_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }

    /// Agents whose last heartbeat is older than `before` (or that never
    /// sent one and were registered before it) become offline. Returns
    /// their (id, name).
    pub async fn mark_agents_offline(
        &mut self,
        before: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = with_tx!(self, |c| {
            sqlx::query_as(
                "UPDATE agents SET status = 'offline', updated_at = $1 \
                 WHERE status = 'online' AND COALESCE(last_heartbeat_at, created_at) < $2 \
                 RETURNING id, name",
            )
            .bind(now)
            .bind(before)
            .fetch_all(c)
            .await?
        });
        Ok(rows)
    }
}
