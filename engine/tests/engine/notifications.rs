//! Notifications against real local receivers: each vendor's payload and
//! headers (the webhook signature verifies), e-mail through a real SMTP
//! server (aiosmtpd), retries with backoff into the dead letter, routing by
//! owner, secrets never shown, and no delivery sent twice, even by two
//! engines on one store.

use std::collections::HashSet;
use std::sync::Arc;

use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{
    KeyAlgorithm, Notification, NotificationChannel, NotificationStatus, Role,
};
use certctl_engine::ops;
use certctl_engine::scheduler::{Loop, Scheduler, TickOutcome};

use super::receiver::{Answer, Receiver, SmtpSink};
use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    each_vendor_gets_its_documented_format,
    email_reaches_a_real_smtp_server,
    failing_receiver_retries_with_backoff_then_dead_letters,
    two_engines_never_send_a_delivery_twice,
    events_are_routed_by_owner_and_kind,
    expiry_warnings_once_per_version_and_threshold,
    secrets_are_sealed_and_never_shown,
    bad_channel_input_is_refused,
    a_dead_senders_delivery_is_reclaimed_after_its_lease,
);

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

pub async fn channel(
    h: &Harness,
    name: &str,
    kind: &str,
    settings: serde_json::Value,
    secret: Option<&str>,
) -> NotificationChannel {
    let mut input = serde_json::json!({ "name": name, "kind": kind, "settings": settings });
    if let Some(s) = secret {
        input["secret"] = s.into();
    }
    h.done::<ops::SaveNotificationChannel>(&h.admin(), from(input))
        .await
}

pub async fn rule(h: &Harness, name: &str, channel_id: &str, extra: serde_json::Value) {
    let mut input = serde_json::json!({ "name": name, "channel_id": channel_id });
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            input[k] = v;
        }
    }
    h.done::<ops::SaveNotificationRule>(&h.admin(), from(input))
        .await;
}

/// Creates and issues a certificate valid for `days`, optionally owned.
async fn issued(h: &Harness, cn: &str, days: i64, owner: Option<&str>) -> String {
    let mut input = serde_json::json!({ "common_name": cn });
    if let Some(o) = owner {
        input["owner_id"] = o.into();
    }
    let c = h
        .done::<ops::CreateCertificate>(&h.admin(), from(input))
        .await;
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: c.id.clone(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
            ttl_seconds: Some(days * 86400),
        },
    )
    .await;
    c.id
}

async fn renew(h: &Harness, id: &str, cn: &str) {
    h.done::<ops::RenewCertificate>(
        &h.admin(),
        ops::RenewCertificateInput {
            id: id.to_owned(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
        },
    )
    .await;
}

/// Runs one notifications round (route, then deliver) on `s`.
pub async fn notify_round(h: &Harness, s: &Scheduler) {
    let o = s.run_once(Loop::Notifications, h.engine.now()).await;
    assert_eq!(o, TickOutcome::Ran);
}

async fn notes(h: &Harness, status: Option<NotificationStatus>) -> Vec<Notification> {
    h.done::<ops::ListNotifications>(
        &h.admin(),
        ops::ListNotificationsInput {
            status,
            per_page: Some(1000),
        },
    )
    .await
    .data
}

fn verify_signature(secret: &str, ts: &str, body: &str, sig: &str) -> bool {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let Some(hex_sig) = sig.strip_prefix("v1=") else {
        return false;
    };
    let Ok(raw) = hex::decode(hex_sig) else {
        return false;
    };
    let msg = format!("{ts}.{body}");
    aws_lc_rs::hmac::verify(&key, msg.as_bytes(), &raw).is_ok()
}

async fn each_vendor_gets_its_documented_format(h: &Harness) {
    let rx = Receiver::start().await;
    let hook = channel(
        h,
        "hook",
        "webhook",
        serde_json::json!({ "url": rx.url("/hook") }),
        Some("s3cret"),
    )
    .await;
    let slack = channel(
        h,
        "slack",
        "slack",
        serde_json::json!({ "url": rx.url("/slack") }),
        None,
    )
    .await;
    let teams = channel(
        h,
        "teams",
        "teams",
        serde_json::json!({ "url": rx.url("/teams") }),
        None,
    )
    .await;
    let pd = channel(
        h,
        "pd",
        "pagerduty",
        serde_json::json!({ "url": rx.url("/pd") }),
        Some("rk-123"),
    )
    .await;
    let og = channel(
        h,
        "og",
        "opsgenie",
        serde_json::json!({ "url": rx.url("/og") }),
        Some("gk-456"),
    )
    .await;
    for c in [&hook, &slack, &teams, &pd, &og] {
        rule(
            h,
            &format!("all to {}", c.name),
            &c.id,
            serde_json::json!({}),
        )
        .await;
    }
    let s = Scheduler::new(h.engine.clone(), "proc-n");

    // 10 days left: the renewal check announces the 14-day threshold.
    let id = issued(h, "vendor.example.com", 10, None).await;
    assert_eq!(
        s.run_once(Loop::Renewal, h.engine.now()).await,
        TickOutcome::Ran
    );
    notify_round(h, &s).await;
    rx.wait_for(5).await;

    let r = &rx.on("/hook")[0];
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-certctl-event"), Some("expiring_soon"));
    let ts = r.header("x-certctl-timestamp").expect("timestamp");
    let sig = r.header("x-certctl-signature").expect("signature");
    assert!(
        verify_signature("s3cret", ts, &r.body, sig),
        "signature verifies"
    );
    assert!(
        !verify_signature("other", ts, &r.body, sig),
        "a wrong secret does not"
    );
    let b = r.json();
    assert_eq!(b["event"], "expiring_soon");
    assert_eq!(b["certificate_id"], id.as_str());
    assert_eq!(b["details"]["threshold_days"], 14);

    let b = rx.on("/slack")[0].json();
    assert!(
        b["text"]
            .as_str()
            .expect("text")
            .contains("vendor.example.com")
    );
    assert_eq!(b["blocks"][0]["type"], "header");
    assert_eq!(b["blocks"][1]["text"]["type"], "mrkdwn");

    let b = rx.on("/teams")[0].json();
    assert_eq!(b["type"], "message");
    let att = &b["attachments"][0];
    assert_eq!(
        att["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(att["content"]["type"], "AdaptiveCard");
    assert_eq!(att["content"]["body"][0]["type"], "TextBlock");

    let b = rx.on("/pd")[0].json();
    assert_eq!(b["routing_key"], "rk-123");
    assert_eq!(b["event_action"], "trigger");
    assert_eq!(b["payload"]["source"], "certctl");
    assert_eq!(b["payload"]["severity"], "warning");
    assert!(
        b["payload"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let pd_key = b["dedup_key"].clone();

    let r = &rx.on("/og")[0];
    assert_eq!(r.header("authorization"), Some("GenieKey gk-456"));
    let b = r.json();
    assert!(b["message"].as_str().expect("message").chars().count() <= 130);
    assert_eq!(b["priority"], "P3");
    let alias = b["alias"].as_str().expect("alias").to_owned();

    // Renewed: PagerDuty resolves the same dedup key, OpsGenie closes the alias.
    renew(h, &id, "vendor.example.com").await;
    notify_round(h, &s).await;
    rx.wait_for(10).await;
    let b = rx.on("/pd")[1].json();
    assert_eq!(b["event_action"], "resolve");
    assert_eq!(b["dedup_key"], pd_key);
    let closes = rx.on(&format!("/og/{alias}/close"));
    assert_eq!(closes.len(), 1, "{:?}", rx.requests());
    assert!(closes[0].path.ends_with("?identifierType=alias"));
    assert_eq!(closes[0].header("authorization"), Some("GenieKey gk-456"));
    assert_eq!(rx.on("/hook")[1].json()["event"], "renewed");

    // Everything is sent, nothing twice.
    notify_round(h, &s).await;
    assert_eq!(rx.requests().len(), 10);
    assert_eq!(notes(h, Some(NotificationStatus::Sent)).await.len(), 10);
}

async fn email_reaches_a_real_smtp_server(h: &Harness) {
    let Some(mut sink) = SmtpSink::start().await else {
        return;
    };
    let owner = h
        .done::<ops::SaveOwner>(
            &h.admin(),
            from(serde_json::json!({ "name": "Alice", "email": "alice@example.com" })),
        )
        .await;
    let mail = channel(
        h,
        "mail",
        "email",
        serde_json::json!({
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_security": "insecure_plain",
            "from": "certctl@example.com",
            "to": ["ops@example.com"],
        }),
        None,
    )
    .await;
    rule(
        h,
        "mail renewals",
        &mail.id,
        serde_json::json!({ "events": ["renewed"] }),
    )
    .await;
    let id = issued(h, "mail.example.com", 90, Some(&owner.id)).await;
    renew(h, &id, "mail.example.com").await;
    let s = Scheduler::new(h.engine.clone(), "proc-m");
    notify_round(h, &s).await;
    let m = sink.next_message().await;
    assert_eq!(m["from"], "certctl@example.com");
    let to: HashSet<String> = m["to"]
        .as_array()
        .expect("to")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        to,
        HashSet::from(["ops@example.com".to_owned(), "alice@example.com".to_owned()]),
        "the channel's recipients and the owner"
    );
    let data = m["data"].as_str().expect("data");
    assert!(
        data.contains("Subject: Certificate mail.example.com renewed"),
        "{data}"
    );
    assert!(data.contains("was renewed"), "{data}");
    let sent = notes(h, Some(NotificationStatus::Sent)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].channel, "email");
    sink.stop().await;
}

async fn failing_receiver_retries_with_backoff_then_dead_letters(h: &Harness) {
    let rx = Receiver::start().await;
    rx.answer("/down", Answer::Status(503));
    let c = channel(
        h,
        "down",
        "slack",
        serde_json::json!({ "url": rx.url("/down") }),
        None,
    )
    .await;
    let queued = h
        .done::<ops::SendTestNotification>(
            &h.admin(),
            ops::SendTestNotificationInput {
                channel_id: c.id.clone(),
                to: vec![],
            },
        )
        .await;
    let s = Scheduler::new(h.engine.clone(), "proc-f");
    // Attempts 1..5 at 0, +60, +120, +240, +480 s (exponential backoff).
    let mut waits = Vec::new();
    for attempt in 1..=5 {
        notify_round(h, &s).await;
        assert_eq!(rx.requests().len(), attempt, "attempt {attempt}");
        let n = notes(h, None)
            .await
            .into_iter()
            .find(|n| n.id == queued.id)
            .expect("note");
        assert_eq!(n.attempts, attempt as i64);
        assert!(
            n.last_error.as_deref().is_some_and(|e| e.contains("503")),
            "{n:?}"
        );
        if attempt < 5 {
            assert_eq!(n.status, NotificationStatus::Pending);
            let wait = n.next_attempt_at - h.engine.now();
            waits.push(wait);
            // Not due before its time: no request.
            notify_round(h, &s).await;
            assert_eq!(rx.requests().len(), attempt);
            h.clock.advance(wait);
        } else {
            assert_eq!(n.status, NotificationStatus::DeadLetter);
        }
    }
    assert_eq!(waits, vec![60, 120, 240, 480]);
    let dead = notes(h, Some(NotificationStatus::DeadLetter)).await;
    assert_eq!(dead.len(), 1);
    // Dead letters stay put.
    h.clock.advance(86400);
    notify_round(h, &s).await;
    assert_eq!(rx.requests().len(), 5);
    // Fixed and retried by hand: delivered.
    rx.answer("/down", Answer::Status(200));
    let again = h
        .done::<ops::RetryNotification>(
            &h.admin(),
            ops::IdInput {
                id: queued.id.clone(),
            },
        )
        .await;
    assert_eq!(again.status, NotificationStatus::Pending);
    notify_round(h, &s).await;
    assert_eq!(rx.requests().len(), 6);
    assert_eq!(notes(h, Some(NotificationStatus::Sent)).await.len(), 1);
    // Only dead letters can be retried.
    let err = h
        .call::<ops::RetryNotification>(&h.admin(), ops::IdInput { id: queued.id })
        .await
        .expect_err("sent is not retried");
    assert_eq!(err.code(), "conflict");
}

async fn two_engines_never_send_a_delivery_twice(h: &Harness) {
    let rx = Receiver::start().await;
    let c = channel(
        h,
        "hook",
        "webhook",
        serde_json::json!({ "url": rx.url("/hook") }),
        Some("k"),
    )
    .await;
    for _ in 0..30 {
        h.done::<ops::SendTestNotification>(
            &h.admin(),
            ops::SendTestNotificationInput {
                channel_id: c.id.clone(),
                to: vec![],
            },
        )
        .await;
    }
    let other = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
    let now = h.engine.now();
    // The delivery step itself, concurrently on both engines (the loop
    // lease would otherwise let only one of them run).
    let (a, b) = tokio::join!(
        certctl_engine::notify::deliver(&h.engine, "proc-a", now),
        certctl_engine::notify::deliver(&other, "proc-b", now),
    );
    let (a, b) = (a.expect("deliver a"), b.expect("deliver b"));
    assert_eq!(a.sent + b.sent, 30, "{a:?} {b:?}");
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| {
            r.header("x-certctl-delivery")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 30);
    assert_eq!(unique.len(), 30, "no delivery sent twice");
    // And the loops of both: still nothing more.
    let sa = Arc::new(Scheduler::new(h.engine.clone(), "proc-a"));
    let sb = Arc::new(Scheduler::new(other.clone(), "proc-b"));
    h.clock.advance(3600);
    let now = h.engine.now();
    let (x, y) = tokio::join!(
        sa.run_once(Loop::Notifications, now),
        sb.run_once(Loop::Notifications, now)
    );
    assert!(
        [x, y].contains(&TickOutcome::SkippedNotLeader),
        "one process runs the loop"
    );
    assert_eq!(rx.requests().len(), 30);
    other.store().close().await;
}

async fn events_are_routed_by_owner_and_kind(h: &Harness) {
    let rx = Receiver::start().await;
    let alice = h
        .done::<ops::SaveOwner>(&h.admin(), from(serde_json::json!({ "name": "Alice" })))
        .await;
    let bob = h
        .done::<ops::SaveOwner>(&h.admin(), from(serde_json::json!({ "name": "Bob" })))
        .await;
    let a = channel(
        h,
        "alice",
        "webhook",
        serde_json::json!({ "url": rx.url("/alice") }),
        None,
    )
    .await;
    let all = channel(
        h,
        "all",
        "webhook",
        serde_json::json!({ "url": rx.url("/all") }),
        None,
    )
    .await;
    rule(
        h,
        "alice renewals",
        &a.id,
        serde_json::json!({ "owner_id": alice.id, "events": ["renewed"] }),
    )
    .await;
    rule(
        h,
        "all revocations",
        &all.id,
        serde_json::json!({ "events": ["revoked", "approval_requested"] }),
    )
    .await;

    let ca = issued(h, "alice.example.com", 90, Some(&alice.id)).await;
    let cb = issued(h, "bob.example.com", 90, Some(&bob.id)).await;
    renew(h, &ca, "alice.example.com").await;
    renew(h, &cb, "bob.example.com").await;
    // Revocation is gated by default: approval requested, then approved.
    let t = match h
        .call::<ops::RevokeCertificate>(
            &h.admin(),
            from(serde_json::json!({ "id": cb, "reason": "superseded" })),
        )
        .await
        .expect("revoke")
    {
        ops::Outcome::ApprovalRequired(t) => t,
        other => panic!("revoke should be gated: {other:?}"),
    };
    h.done::<ops::ApproveRequest>(
        &principal("pr-approver", Role::Approver),
        from(serde_json::json!({ "approval_id": t.approval_id })),
    )
    .await;
    let s = Scheduler::new(h.engine.clone(), "proc-r");
    notify_round(h, &s).await;
    let alice_events: Vec<String> = rx
        .on("/alice")
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r.json()["event"].as_str().unwrap_or(""),
                r.json()["certificate_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(alice_events, vec![format!("renewed:{ca}")]);
    let mut all_events: Vec<String> = rx
        .on("/all")
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("").to_owned())
        .collect();
    all_events.sort();
    assert_eq!(all_events, vec!["approval_requested", "revoked"]);
}

async fn expiry_warnings_once_per_version_and_threshold(h: &Harness) {
    let rx = Receiver::start().await;
    let c = channel(
        h,
        "hook",
        "webhook",
        serde_json::json!({ "url": rx.url("/hook") }),
        None,
    )
    .await;
    rule(
        h,
        "expiry",
        &c.id,
        serde_json::json!({ "events": ["expiring_soon"] }),
    )
    .await;
    let start = h.engine.now();
    let id = issued(h, "warn.example.com", 40, None).await;
    let s = Scheduler::new(h.engine.clone(), "proc-w");
    let thresholds = |rx: &Receiver| -> Vec<i64> {
        rx.requests()
            .iter()
            .map(|r| r.json()["details"]["threshold_days"].as_i64().unwrap_or(0))
            .collect()
    };
    // Day 0 (40 days left): nothing. Day 11 (29 left): 30. Day 12: nothing new.
    // Day 34 (6 left): only 7, the 14-day one was skipped over.
    for (day, expect) in [
        (0, vec![]),
        (11, vec![30]),
        (12, vec![30]),
        (34, vec![30, 7]),
        (39, vec![30, 7, 1]),
        (39, vec![30, 7, 1]),
    ] {
        let now = h.engine.now();
        let target = start + day * 86400;
        if target > now {
            h.clock.advance(target - now);
        }
        assert_eq!(
            s.run_once(Loop::Renewal, h.engine.now()).await,
            TickOutcome::Ran
        );
        notify_round(h, &s).await;
        assert_eq!(thresholds(&rx), expect, "day {day}");
    }
    // A new version starts over.
    renew(h, &id, "warn.example.com").await;
    let cert = h
        .done::<ops::GetCertificate>(&h.admin(), from(serde_json::json!({ "id": id })))
        .await;
    let not_after = cert.certificate.not_after.expect("not_after");
    h.clock.advance(not_after - 43200 - h.engine.now());
    assert_eq!(
        s.run_once(Loop::Renewal, h.engine.now()).await,
        TickOutcome::Ran
    );
    notify_round(h, &s).await;
    assert_eq!(thresholds(&rx), vec![30, 7, 1, 1]);
}

async fn secrets_are_sealed_and_never_shown(h: &Harness) {
    let c = channel(
        h,
        "pd",
        "pagerduty",
        serde_json::json!({}),
        Some("routing-key-SECRET"),
    )
    .await;
    assert!(c.secret_set);
    let listed = h
        .list::<certctl_engine::domain::NotificationChannel>(
            &h.admin(),
            "notification_channel",
            serde_json::json!({}),
        )
        .await;
    let text = serde_json::to_string(&listed).expect("json");
    assert!(text.contains("\"secret_set\":true"));
    assert!(!text.contains("routing-key-SECRET"), "{text}");
    let audit = serde_json::to_string(
        &h.engine
            .store()
            .list_audit(&Default::default(), 100)
            .await
            .expect("audit"),
    )
    .expect("json");
    assert!(!audit.contains("routing-key-SECRET"));
    // Updating without a secret keeps it; "" removes it (then PagerDuty refuses).
    let kept = h
        .done::<ops::SaveNotificationChannel>(
            &h.admin(),
            from(serde_json::json!({ "id": c.id, "name": "pd2", "kind": "pagerduty" })),
        )
        .await;
    assert!(kept.secret_set);
    let err = h
        .call::<ops::SaveNotificationChannel>(
            &h.admin(),
            from(
                serde_json::json!({ "id": c.id, "name": "pd2", "kind": "pagerduty", "secret": "" }),
            ),
        )
        .await
        .expect_err("pagerduty needs a routing key");
    assert_eq!(err.code(), "invalid-input");
    // Viewers see channels but cannot create them.
    let viewer = principal("pr-viewer", Role::Viewer);
    assert!(
        h.call::<ops::SaveNotificationChannel>(
            &viewer,
            from(serde_json::json!({ "name": "x", "kind": "slack", "settings": { "url": "http://127.0.0.1:9/x" } })),
        )
        .await
        .is_err()
    );
}

async fn bad_channel_input_is_refused(h: &Harness) {
    for (input, why) in [
        (
            serde_json::json!({ "name": "a", "kind": "slack" }),
            "slack without url",
        ),
        (
            serde_json::json!({ "name": "a", "kind": "webhook", "settings": { "url": "ftp://127.0.0.1/x" } }),
            "ftp url",
        ),
        (
            serde_json::json!({ "name": "a", "kind": "email", "settings": { "smtp_host": "127.0.0.1" } }),
            "email without from",
        ),
        (
            serde_json::json!({ "name": "a", "kind": "email", "settings": { "smtp_host": "h", "from": "not an address" } }),
            "bad from",
        ),
        (
            serde_json::json!({ "name": "a", "kind": "opsgenie" }),
            "opsgenie without key",
        ),
        (
            serde_json::json!({ "name": "a", "kind": "slack", "settings": { "url": "http://127.0.0.1:1/", "from": "a@b.c" } }),
            "email settings on slack",
        ),
    ] {
        let err = h
            .call::<ops::SaveNotificationChannel>(&h.admin(), from(input))
            .await
            .expect_err(why);
        assert_eq!(err.code(), "invalid-input", "{why}: {err}");
    }
    let c = channel(
        h,
        "ok",
        "slack",
        serde_json::json!({ "url": "http://127.0.0.1:1/" }),
        None,
    )
    .await;
    let dup = h
        .call::<ops::SaveNotificationChannel>(
            &h.admin(),
            from(serde_json::json!({ "name": "ok", "kind": "slack", "settings": { "url": "http://127.0.0.1:1/" } })),
        )
        .await
        .expect_err("duplicate name");
    assert_eq!(dup.code(), "conflict");
    // A rule to an unknown channel or owner is refused; a used channel is not deleted.
    let err = h
        .call::<ops::SaveNotificationRule>(
            &h.admin(),
            from(serde_json::json!({ "name": "r", "channel_id": "nch-nope" })),
        )
        .await
        .expect_err("unknown channel");
    assert_eq!(err.code(), "not-found");
    let err = h
        .call::<ops::SaveNotificationRule>(
            &h.admin(),
            from(serde_json::json!({ "name": "r", "channel_id": c.id, "owner_id": "own-nope" })),
        )
        .await
        .expect_err("unknown owner");
    assert_eq!(err.code(), "not-found");
    rule(h, "r", &c.id, serde_json::json!({})).await;
    let err = h
        .delete(&h.admin(), "notification_channel", &c.id.clone())
        .await;
    // Deletion is destructive: gated by default, and refused once approved.
    match err {
        Ok(ops::Outcome::ApprovalRequired(_)) => {}
        other => panic!("expected the gate: {other:?}"),
    }
    assert_eq!(
        h.list::<certctl_engine::domain::NotificationRule>(
            &h.admin(),
            "notification_rule",
            serde_json::json!({})
        )
        .await
        .data
        .len(),
        1
    );
}

async fn a_dead_senders_delivery_is_reclaimed_after_its_lease(h: &Harness) {
    let rx = Receiver::start().await;
    let c = channel(
        h,
        "hook",
        "webhook",
        serde_json::json!({ "url": rx.url("/hook") }),
        None,
    )
    .await;
    let queued = h
        .done::<ops::SendTestNotification>(
            &h.admin(),
            ops::SendTestNotificationInput {
                channel_id: c.id,
                to: vec![],
            },
        )
        .await;
    // A process claims it and dies before sending.
    let now = h.engine.now();
    let claimed = h
        .engine
        .store()
        .claim_notifications("proc-dead", now, 90, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // While the lease holds, nobody else sends it.
    let r = certctl_engine::notify::deliver(&h.engine, "proc-alive", now)
        .await
        .expect("deliver");
    assert_eq!(r.sent, 0);
    // After the lease, another process does, once.
    h.clock.advance(91);
    let r = certctl_engine::notify::deliver(&h.engine, "proc-alive", h.engine.now())
        .await
        .expect("deliver");
    assert_eq!(r.sent, 1);
    assert_eq!(rx.requests().len(), 1);
    // The dead process's late result is discarded.
    let late = h
        .engine
        .store()
        .finish_notification(
            &queued.id,
            "proc-dead",
            &certctl_engine::store::DeliveryResult::Sent,
            h.engine.now(),
        )
        .await
        .expect("finish");
    assert!(!late);
    let n = notes(h, Some(NotificationStatus::Sent)).await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].attempts, 2, "the dead attempt counts");
}
