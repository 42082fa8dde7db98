//! Notifications: who hears about lifecycle events, and how.
//!
//! Three stages, each safe with several processes on one store:
//! 1. **Emit**: code that changes something puts an event in the outbox
//!    (`notification_events`) inside its own transaction, with a dedup key
//!    (e.g. `expiring_soon:<version>:<days>`), so a rolled-back change never
//!    notifies and the same event is never stored twice.
//! 2. **Route**: the notifications loop turns each new event into one
//!    delivery per matching rule's channel (`notifications`, dedup key
//!    `<event key>/<channel>`), in one transaction that also marks the event
//!    routed.
//! 3. **Deliver**: deliveries are claimed with a lease, sent in the
//!    channel's vendor format ([`format`], [`send`]), then marked sent, or
//!    retried with exponential backoff, or moved to the dead letter when
//!    their attempts are used up.
//!
//! Delivery is at-least-once only in one corner: a process that dies after
//! the vendor accepted a message but before it recorded that leaves the
//! delivery to be sent again when its lease runs out. PagerDuty and OpsGenie
//! collapse such a repeat by dedup key and alias.

pub mod format;
pub mod send;

use std::collections::HashMap;

use crate::Engine;
use crate::clock::{Clock, UnixTime};
use crate::domain::{
    ChannelKind, EventKind, ManagedCertificate, Notification, NotificationRule, NotificationStatus,
    RenewalPolicy,
};
use crate::error::Result;
use crate::ops::Ctx;
use crate::store::{ChannelRecord, DeliveryResult, EventRow, NewEvent, Tx};

/// A clock stopped at one instant, for ids made where only `now` is known.
struct At(UnixTime);

impl Clock for At {
    fn now(&self) -> UnixTime {
        self.0
    }
}

/// What an event says about its certificate (for routing and messages).
#[derive(Debug, Clone, Default)]
pub(crate) struct CertFacts {
    pub id: String,
    pub common_name: String,
    pub owner_id: Option<String>,
    pub team_id: Option<String>,
    pub profile_id: Option<String>,
    pub renewal_policy_id: Option<String>,
}

impl From<&ManagedCertificate> for CertFacts {
    fn from(c: &ManagedCertificate) -> Self {
        Self {
            id: c.id.clone(),
            common_name: c.common_name.clone(),
            owner_id: c.owner_id.clone(),
            team_id: c.team_id.clone(),
            profile_id: Some(c.profile_id.clone()),
            renewal_policy_id: c.renewal_policy_id.clone(),
        }
    }
}

/// Puts one event in the outbox in `tx`. Returns false when an event with
/// the same dedup key exists already.
#[allow(clippy::too_many_arguments)] // the event's parts, spelled out
pub(crate) async fn emit(
    tx: &mut Tx,
    now: UnixTime,
    kind: EventKind,
    cert: Option<&CertFacts>,
    subject: String,
    body: String,
    details: serde_json::Value,
    dedup_key: String,
) -> Result<bool> {
    let event = NewEvent {
        id: crate::ids::new_id("nev", &At(now)),
        kind,
        certificate_id: cert.map(|c| c.id.clone()),
        owner_id: cert.and_then(|c| c.owner_id.clone()),
        team_id: cert.and_then(|c| c.team_id.clone()),
        profile_id: cert.and_then(|c| c.profile_id.clone()),
        renewal_policy_id: cert.and_then(|c| c.renewal_policy_id.clone()),
        subject,
        body,
        details,
        dedup_key,
        created_at: now,
    };
    tx.insert_notification_event(&event).await
}

/// After every issuance (called by the one issuance path): schedules the
/// next renewal from the renewal policy and, when the certificate had a
/// version before, announces the renewal.
pub(crate) async fn after_issue(
    ctx: &mut Ctx<'_>,
    renewed: bool,
    cert: &ManagedCertificate,
    version: &crate::domain::CertificateVersion,
) -> Result<()> {
    let v = VersionFacts {
        id: &version.id,
        serial: &version.serial,
        not_before: version.not_before,
        not_after: version.not_after,
    };
    after_new_version(ctx.tx, ctx.engine.config(), ctx.now, renewed, cert, &v).await
}

/// What [`after_new_version`] needs to know about the version.
pub(crate) struct VersionFacts<'a> {
    pub id: &'a str,
    pub serial: &'a str,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
}

/// The work of [`after_issue`] for paths that record a version outside an
/// operation (the issuer job worker, imports): every new version gets its
/// renewal time, so no path leaves a certificate the scheduler never renews.
pub(crate) async fn after_new_version(
    tx: &mut Tx,
    config: &crate::config::EngineConfig,
    now: UnixTime,
    renewed: bool,
    cert: &ManagedCertificate,
    version: &VersionFacts<'_>,
) -> Result<()> {
    let policy = match &cert.renewal_policy_id {
        Some(id) => tx.renewal_policy(id).await?,
        None => None,
    };
    let cfg = &config.scheduler;
    let at = renew_after(
        &cert.id,
        version.not_before,
        version.not_after,
        policy.as_ref(),
        cfg.renew_before_days,
        cfg.renew_jitter_percent,
    );
    tx.set_renewal_schedule(&cert.id, Some(at)).await?;
    if renewed {
        let facts = CertFacts::from(cert);
        emit(
            tx,
            now,
            EventKind::Renewed,
            Some(&facts),
            format!("Certificate {} renewed", cert.common_name),
            format!(
                "Certificate {} ({}) was renewed: new serial {}, valid until {}.",
                cert.common_name,
                cert.id,
                version.serial,
                crate::clock::to_rfc3339(version.not_after)
            ),
            serde_json::json!({
                "certificate_id": cert.id,
                "common_name": cert.common_name,
                "version_id": version.id,
                "serial": version.serial,
                "not_after": crate::clock::to_rfc3339(version.not_after),
            }),
            format!("renewed:{}", version.id),
        )
        .await?;
    }
    Ok(())
}

/// After a revocation: no more renewals, and the owners hear about it.
pub(crate) async fn after_revoke(
    ctx: &mut Ctx<'_>,
    cert: &ManagedCertificate,
    reason: &str,
) -> Result<()> {
    ctx.tx.set_renewal_schedule(&cert.id, None).await?;
    let facts = CertFacts::from(cert);
    emit(
        ctx.tx,
        ctx.now,
        EventKind::Revoked,
        Some(&facts),
        format!("Certificate {} revoked", cert.common_name),
        format!(
            "Certificate {} ({}, serial {}) was revoked by {} with reason {reason}.",
            cert.common_name,
            cert.id,
            cert.serial.as_deref().unwrap_or("none"),
            ctx.principal.id
        ),
        serde_json::json!({
            "certificate_id": cert.id,
            "common_name": cert.common_name,
            "serial": cert.serial,
            "reason": reason,
            "revoked_by": ctx.principal.id,
        }),
        format!(
            "revoked:{}",
            cert.current_version_id.as_deref().unwrap_or(&cert.id)
        ),
    )
    .await?;
    Ok(())
}

/// When an operation stops at the approval gate.
pub(crate) async fn approval_requested(
    tx: &mut Tx,
    now: UnixTime,
    approval: &crate::domain::Approval,
) -> Result<()> {
    let facts = match (&approval.resource_type[..], &approval.resource_id) {
        ("certificate", Some(id)) => certificate_facts(tx, id).await?,
        _ => None,
    };
    emit(
        tx,
        now,
        EventKind::ApprovalRequested,
        facts.as_ref(),
        format!("Approval requested: {}", approval.operation),
        format!(
            "{} asks for approval {}: {}. It expires at {}.",
            approval.requested_by,
            approval.id,
            approval.summary,
            crate::clock::to_rfc3339(approval.expires_at)
        ),
        serde_json::json!({
            "approval_id": approval.id,
            "operation": approval.operation,
            "summary": approval.summary,
            "requested_by": approval.requested_by,
            "expires_at": crate::clock::to_rfc3339(approval.expires_at),
        }),
        format!("approval_requested:{}", approval.id),
    )
    .await?;
    Ok(())
}

/// Routing facts of a certificate, read in `tx`.
pub(crate) async fn certificate_facts(tx: &mut Tx, id: &str) -> Result<Option<CertFacts>> {
    Ok(tx.certificate_facts(id).await?.map(|r| CertFacts {
        id: r.0,
        common_name: r.1,
        owner_id: r.2,
        team_id: r.3,
        profile_id: Some(r.4),
        renewal_policy_id: r.5,
    }))
}

/// A renewal that will not happen by itself (scheduled renewal refused, or
/// a renewal job failed for good), in its own transaction.
pub(crate) async fn renewal_failed(
    tx: &mut Tx,
    now: UnixTime,
    certificate_id: &str,
    error: &str,
    dedup_key: String,
) -> Result<()> {
    let facts = certificate_facts(tx, certificate_id).await?;
    let cn = facts
        .as_ref()
        .map(|f| f.common_name.clone())
        .unwrap_or_default();
    emit(
        tx,
        now,
        EventKind::RenewalFailed,
        facts.as_ref(),
        format!("Renewal of {cn} failed"),
        format!("The renewal of certificate {cn} ({certificate_id}) failed: {error}"),
        serde_json::json!({ "certificate_id": certificate_id, "common_name": cn, "error": error }),
        dedup_key,
    )
    .await?;
    Ok(())
}

/// A deployment job that failed for good.
pub(crate) async fn deployment_failed(
    tx: &mut Tx,
    now: UnixTime,
    job_id: &str,
    certificate_id: Option<&str>,
    error: &str,
) -> Result<()> {
    let facts = match certificate_id {
        Some(id) => certificate_facts(tx, id).await?,
        None => None,
    };
    let cn = facts
        .as_ref()
        .map(|f| f.common_name.clone())
        .unwrap_or_default();
    emit(
        tx,
        now,
        EventKind::DeploymentFailed,
        facts.as_ref(),
        format!("Deployment of {cn} failed"),
        format!("Deployment job {job_id} of certificate {cn} failed: {error}"),
        serde_json::json!({ "job_id": job_id, "certificate_id": certificate_id, "common_name": cn, "error": error }),
        format!("deployment_failed:{job_id}"),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- renewal timing

/// When a certificate is due for renewal.
///
/// With a renewal policy: at `renew_at_fraction` of the lifetime, or
/// `renew_before_days` before expiry (the fraction wins when both are set).
/// Without one: `default_before_days` before expiry (the original
/// certctl's 30 days). Never before `not_before`. Then jitter moves the time *earlier* by up to
/// `jitter_percent` of the renewal window (from the due time to expiry), by
/// an amount derived from the certificate id, so a fleet issued at once
/// renews spread out, and every replica computes the same time.
pub fn renew_after(
    certificate_id: &str,
    not_before: UnixTime,
    not_after: UnixTime,
    policy: Option<&RenewalPolicy>,
    default_before_days: i64,
    default_jitter_percent: i64,
) -> UnixTime {
    let lifetime = (not_after - not_before).max(0);
    let (base, jitter) = match policy {
        Some(p) => {
            let base = if let Some(f) = p.renew_at_fraction.filter(|f| *f > 0.0 && *f < 1.0) {
                not_before + (lifetime as f64 * f) as i64
            } else if let Some(d) = p.renew_before_days {
                not_after - d * 86400
            } else {
                not_after - default_before_days * 86400
            };
            (base, p.jitter_percent)
        }
        None => (
            not_after - default_before_days * 86400,
            default_jitter_percent,
        ),
    };
    let base = base.clamp(not_before, not_after);
    let window = not_after - base;
    let spread = window * jitter.clamp(0, 100) / 100;
    if spread <= 0 {
        return base;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest.as_ref()[..8]);
    let offset = (u64::from_be_bytes(b) % (spread as u64 + 1)) as i64;
    (base - offset).max(not_before)
}

/// Recomputes `renew_after` when the timing rules change: for one
/// certificate (its renewal policy changed) or for every certificate under
/// a renewal policy (the policy changed).
pub(crate) async fn reschedule(
    ctx: &mut Ctx<'_>,
    certificate_id: Option<&str>,
    policy_id: Option<&str>,
) -> Result<u64> {
    let rows = ctx.tx.renewal_inputs(certificate_id, policy_id).await?;
    let mut policies: HashMap<String, Option<RenewalPolicy>> = HashMap::new();
    let cfg = ctx.engine.config().scheduler.clone();
    for (id, not_before, not_after, pid) in &rows {
        let policy = match pid {
            Some(p) => {
                if !policies.contains_key(p) {
                    let loaded = ctx.tx.renewal_policy(p).await?;
                    policies.insert(p.clone(), loaded);
                }
                policies[p].clone()
            }
            None => None,
        };
        let at = renew_after(
            id,
            *not_before,
            *not_after,
            policy.as_ref(),
            cfg.renew_before_days,
            cfg.renew_jitter_percent,
        );
        ctx.tx.set_renew_after(id, at).await?;
    }
    Ok(rows.len() as u64)
}

// ---------------------------------------------------------------- expiry warnings

/// `next_warn_at` of a certificate with nothing more to be warned about.
pub(crate) const NEVER: UnixTime = i64::MAX;

/// Announces certificates entering an expiry threshold: one event per
/// version and threshold, and only the smallest threshold crossed (a
/// certificate found 5 days before expiry gets the 7-day warning, not
/// three at once). Returns how many events were stored.
///
/// Each certificate carries `next_warn_at`, the time it crosses its next
/// threshold not warned yet, so the pass reads only the certificates whose
/// time has come (and those never looked at: a new version resets it).
pub async fn warn_expiring(engine: &Engine, now: UnixTime) -> Result<u64> {
    let mut thresholds = engine.config().notifications.expiry_thresholds_days.clone();
    thresholds.retain(|d| *d > 0);
    thresholds.sort_unstable();
    thresholds.dedup();
    let mut stored = 0;
    loop {
        let rows = engine.store().certificates_warn_due(now, 500).await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = engine.store().begin_write().await?;
        tx.shows_in_no_cached_read();
        for r in &rows {
            let left = r.not_after - now;
            // The smallest threshold crossed and not warned yet.
            let crossed = thresholds.iter().copied().find(|d| {
                left > 0 && left <= d * 86400 && r.expiry_warned_days.is_none_or(|w| w > *d)
            });
            if let Some(days) = crossed {
                let version = r.current_version_id.clone().unwrap_or_default();
                let facts = CertFacts {
                    id: r.id.clone(),
                    common_name: r.common_name.clone(),
                    owner_id: r.owner_id.clone(),
                    team_id: r.team_id.clone(),
                    profile_id: Some(r.profile_id.clone()),
                    renewal_policy_id: r.renewal_policy_id.clone(),
                };
                if emit(
                    &mut tx,
                    now,
                    EventKind::ExpiringSoon,
                    Some(&facts),
                    format!(
                        "Certificate {} expires in {} days",
                        r.common_name,
                        left / 86400
                    ),
                    format!(
                        "Certificate {} ({}, serial {}) expires at {} (within {days} days).",
                        r.common_name,
                        r.id,
                        r.serial.as_deref().unwrap_or("none"),
                        crate::clock::to_rfc3339(r.not_after)
                    ),
                    serde_json::json!({
                        "certificate_id": r.id,
                        "common_name": r.common_name,
                        "version_id": version,
                        "serial": r.serial,
                        "not_after": crate::clock::to_rfc3339(r.not_after),
                        "threshold_days": days,
                    }),
                    format!("expiring_soon:{version}:{days}"),
                )
                .await?
                {
                    stored += 1;
                }
            }
            // Larger thresholds are passed too: never warn for them later.
            let warned = crossed.or(r.expiry_warned_days);
            let next = next_warn_at(r.not_after, warned, &thresholds, now);
            tx.set_expiry_warning(&r.id, warned, next).await?;
        }
        tx.commit().await?;
        if rows.len() < 500 {
            break;
        }
    }
    Ok(stored)
}

/// When a certificate crosses the next threshold below the smallest one
/// already warned about (`thresholds` ascending): [`NEVER`] when none is
/// left or it has expired, and never earlier than the next second (so one
/// pass does not read the same row twice).
fn next_warn_at(
    not_after: UnixTime,
    warned: Option<i64>,
    thresholds: &[i64],
    now: UnixTime,
) -> UnixTime {
    if not_after <= now {
        return NEVER;
    }
    match thresholds
        .iter()
        .rev()
        .find(|d| warned.is_none_or(|w| **d < w))
    {
        Some(d) => (not_after - d * 86400).max(now + 1),
        None => NEVER,
    }
}

// ---------------------------------------------------------------- routing

fn rule_matches(rule: &NotificationRule, e: &EventRow, kind: EventKind) -> bool {
    fn eq(want: &Option<String>, have: &Option<String>) -> bool {
        want.is_none() || want == have
    }
    (rule.events.is_empty() || rule.events.contains(&kind))
        && eq(&rule.owner_id, &e.owner_id)
        && eq(&rule.team_id, &e.team_id)
        && eq(&rule.profile_id, &e.profile_id)
        && eq(&rule.renewal_policy_id, &e.renewal_policy_id)
}

/// Routes up to `limit` new events into deliveries. Returns how many
/// events it routed (fewer than `limit`: none are left).
pub async fn route(engine: &Engine, now: UnixTime, limit: i64) -> Result<i64> {
    let mut tx = engine.store().begin_write().await?;
    let events = tx.unrouted_events(limit).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let rules = tx.enabled_rules().await?;
    let channels: HashMap<String, ChannelRecord> = tx
        .enabled_channels()
        .await?
        .into_iter()
        .map(|c| (c.channel.id.clone(), c))
        .collect();
    let max_attempts = engine.config().notifications.max_attempts.max(1);
    let mut queued = 0_u64;
    for e in &events {
        let Some(kind) = EventKind::parse(&e.kind) else {
            tx.mark_event_routed(&e.id, now).await?;
            continue;
        };
        let details: serde_json::Value = serde_json::from_str(&e.details).unwrap_or_default();
        let owner_email = match &e.owner_id {
            Some(o) => tx.owner_email(o).await?,
            None => None,
        };
        // Recipients per channel: several rules may point at one channel.
        let mut per_channel: Vec<(String, Vec<String>)> = Vec::new();
        for rule in rules.iter().filter(|r| rule_matches(r, e, kind)) {
            let Some(ch) = channels.get(&rule.channel_id) else {
                continue;
            };
            let mut to = Vec::new();
            if ch.channel.kind == ChannelKind::Email {
                to.extend(rule.recipients.iter().cloned());
                to.extend(ch.channel.settings.to.iter().cloned());
                if rule.include_owner
                    && let Some(mail) = &owner_email
                {
                    to.push(mail.clone());
                }
            }
            match per_channel
                .iter_mut()
                .find(|(id, _)| *id == rule.channel_id)
            {
                Some((_, list)) => list.extend(to),
                None => per_channel.push((rule.channel_id.clone(), to)),
            }
        }
        for (channel_id, mut to) in per_channel {
            let ch = &channels[&channel_id];
            to.sort();
            to.dedup();
            if ch.channel.kind == ChannelKind::Email && to.is_empty() {
                tracing::warn!(event = %e.id, channel = %ch.channel.name, "no e-mail recipient for this event; skipped");
                continue;
            }
            let n = Notification {
                id: crate::ids::new_id("ntf", &At(now)),
                event: e.kind.clone(),
                event_id: Some(e.id.clone()),
                certificate_id: e.certificate_id.clone(),
                channel_id: Some(channel_id.clone()),
                channel: ch.channel.kind.as_str().to_owned(),
                recipient: if to.is_empty() {
                    ch.channel.name.clone()
                } else {
                    to.join(",")
                },
                subject: e.subject.clone(),
                body: e.body.clone(),
                details: details.clone(),
                status: NotificationStatus::Pending,
                attempts: 0,
                max_attempts,
                next_attempt_at: now,
                last_error: None,
                dedup_key: format!("{}/{channel_id}", e.dedup_key),
                created_at: now,
                sent_at: None,
            };
            if tx.insert_notification(&n).await? {
                queued += 1;
            }
        }
        tx.mark_event_routed(&e.id, now).await?;
    }
    tx.commit().await?;
    if queued > 0 {
        tracing::debug!(events = events.len(), deliveries = queued, "events routed");
    }
    Ok(events.len() as i64)
}

// ---------------------------------------------------------------- delivery

/// Delay before attempt `attempts + 1`: base, doubled per attempt, capped.
pub fn backoff(attempts: i64, base: i64, max: i64) -> i64 {
    let exp = (attempts.max(1) - 1).min(20) as u32;
    base.max(1).saturating_mul(1_i64 << exp).min(max.max(1))
}

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: u64,
    pub failed: u64,
    pub dead_lettered: u64,
}

/// Claims due deliveries for `owner` and sends them. Returns counts.
pub async fn deliver(engine: &Engine, owner: &str, now: UnixTime) -> Result<DeliveryReport> {
    let cfg = &engine.config().notifications;
    // Sent one after another: the lease covers a whole batch of timeouts,
    // so it cannot run out (and let another process resend) mid-batch.
    const BATCH: i64 = 20;
    let lease = (cfg.send_timeout_seconds as i64) * BATCH + 60;
    let mut report = DeliveryReport::default();
    loop {
        let batch = engine
            .store()
            .claim_notifications(owner, now, lease, BATCH)
            .await?;
        if batch.is_empty() {
            break;
        }
        let n = batch.len();
        for note in batch {
            let outcome = match note.channel_id.as_deref() {
                Some(id) => match engine.store().channel_record(id).await? {
                    Some(ch) if ch.channel.enabled => send_one(engine, &ch, &note).await,
                    Some(_) => Err("the channel is disabled".to_owned()),
                    None => Err(format!("channel {id} no longer exists")),
                },
                None => Err("the notification has no channel".to_owned()),
            };
            let result = match outcome {
                Ok(()) => {
                    report.sent += 1;
                    DeliveryResult::Sent
                }
                Err(error) => {
                    tracing::warn!(notification = %note.id, attempt = note.attempts, %error, "notification delivery failed");
                    if note.attempts >= note.max_attempts {
                        report.dead_lettered += 1;
                    } else {
                        report.failed += 1;
                    }
                    DeliveryResult::Failed {
                        error,
                        retry_at: now
                            + backoff(
                                note.attempts,
                                cfg.backoff_base_seconds,
                                cfg.backoff_max_seconds,
                            ),
                    }
                }
            };
            engine
                .store()
                .finish_notification(&note.id, owner, &result, now)
                .await?;
        }
        if (n as i64) < BATCH {
            break;
        }
    }
    Ok(report)
}

async fn send_one(engine: &Engine, ch: &ChannelRecord, note: &Notification) -> send::SendResult {
    let secret = match &ch.secret_sealed {
        Some(s) => Some(
            engine
                .master_key()
                .open(s, &secret_context(&ch.channel.id))
                .map_err(|_| {
                    "the channel secret cannot be opened with this master key".to_owned()
                })?,
        ),
        None => None,
    };
    let secret = secret
        .as_ref()
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let timeout =
        std::time::Duration::from_secs(engine.config().notifications.send_timeout_seconds);
    let sent_at = engine.now();
    tokio::time::timeout(
        timeout,
        send::send(
            &ch.channel,
            secret.as_deref(),
            note,
            sent_at,
            engine.config().outbound,
        ),
    )
    .await
    .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
}

/// The additional data a channel secret is sealed with: the channel id, so
/// a sealed secret copied into another channel's row does not open.
pub(crate) fn secret_context(channel_id: &str) -> String {
    format!("notification-channel:{channel_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_warning_is_the_next_threshold_below_the_warned_one() {
        let day = 86400;
        let t = [1, 7, 14, 30];
        let exp = 100 * day;
        assert_eq!(next_warn_at(exp, None, &t, 0), 70 * day);
        assert_eq!(next_warn_at(exp, Some(30), &t, 71 * day), 86 * day);
        assert_eq!(next_warn_at(exp, Some(7), &t, 94 * day), 99 * day);
        assert_eq!(next_warn_at(exp, Some(1), &t, 99 * day), NEVER);
        // Expired: nothing more to say.
        assert_eq!(next_warn_at(exp, None, &t, exp), NEVER);
        // Never earlier than the next second.
        assert_eq!(next_warn_at(exp, None, &t, 80 * day), 80 * day + 1);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1, 60, 3600), 60);
        assert_eq!(backoff(2, 60, 3600), 120);
        assert_eq!(backoff(3, 60, 3600), 240);
        assert_eq!(backoff(10, 60, 3600), 3600);
    }

    fn policy(fraction: Option<f64>, days: Option<i64>, jitter: i64) -> RenewalPolicy {
        RenewalPolicy {
            id: "rp-x".into(),
            name: "x".into(),
            renew_before_days: days,
            renew_at_fraction: fraction,
            jitter_percent: jitter,
            max_retries: 5,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn renewal_time_follows_the_policy() {
        let day = 86400;
        // Two thirds of a 90-day lifetime, no jitter: day 60.
        let p = policy(Some(2.0 / 3.0), None, 0);
        assert_eq!(renew_after("mc-a", 0, 90 * day, Some(&p), 30, 10), 60 * day);
        // 10 days before expiry.
        let p = policy(None, Some(10), 0);
        assert_eq!(renew_after("mc-a", 0, 90 * day, Some(&p), 30, 10), 80 * day);
        // Default: 30 days before expiry, never before issuance.
        assert_eq!(renew_after("mc-a", 0, 47 * day, None, 30, 0), 17 * day);
        assert_eq!(renew_after("mc-a", 0, 20 * day, None, 30, 0), 0);
    }

    #[test]
    fn jitter_is_earlier_bounded_and_deterministic() {
        let day = 86400;
        let p = policy(None, Some(30), 20);
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let id = format!("mc-{i}");
            let t = renew_after(&id, 0, 90 * day, Some(&p), 30, 10);
            assert_eq!(t, renew_after(&id, 0, 90 * day, Some(&p), 30, 10));
            assert!(t <= 60 * day && t >= 60 * day - 6 * day, "{t}");
            seen.insert(t / 3600);
        }
        assert!(seen.len() > 50, "jitter spreads renewals: {}", seen.len());
    }
}
