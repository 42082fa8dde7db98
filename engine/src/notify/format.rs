//! Each vendor's message format, as pure functions from a delivery to an
//! HTTP request (URL, headers, JSON body). Kept apart from the transport so
//! the formats are unit-tested without a network.
//!
//! - Generic webhook: certctl's own JSON, signed with HMAC-SHA256 over
//!   `"<timestamp>.<body>"` (see [`webhook_signature`] and docs/notifications.md).
//! - Slack: an incoming-webhook message (`text` plus Block Kit `blocks`).
//! - Microsoft Teams: a `message` with one Adaptive Card attachment, the
//!   format Teams incoming webhooks and Workflows accept.
//! - PagerDuty: Events API v2 (`routing_key`, `event_action` trigger or
//!   resolve, `dedup_key`, `payload` with summary, source, severity).
//! - OpsGenie: Alert API (`Authorization: GenieKey ...`; create with an
//!   `alias` for de-duplication, close by alias).

use serde_json::{Value, json};

use crate::clock::UnixTime;
use crate::domain::{EventKind, Notification};

pub const PAGERDUTY_DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
pub const OPSGENIE_DEFAULT_URL: &str = "https://api.opsgenie.com/v2/alerts";

/// Header names of the generic webhook.
pub const SIGNATURE_HEADER: &str = "X-Certctl-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Certctl-Timestamp";
pub const EVENT_HEADER: &str = "X-Certctl-Event";
pub const DELIVERY_HEADER: &str = "X-Certctl-Delivery";

/// An HTTP POST to make.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

fn kind_of(n: &Notification) -> Option<EventKind> {
    EventKind::parse(&n.event)
}

fn text_of(n: &Notification) -> String {
    format!("{}\n{}", n.subject, n.body)
}

/// Cuts `s` to at most `max` characters (vendors reject longer fields).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The stable key incident tools use to group events about one thing, so a
/// renewal resolves what an expiry warning or a failed renewal opened.
pub fn incident_key(n: &Notification) -> String {
    let cert = n.certificate_id.as_deref().unwrap_or("none");
    let d = |k: &str| {
        n.details
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_owned()
    };
    match kind_of(n) {
        Some(EventKind::ExpiringSoon | EventKind::RenewalFailed | EventKind::Renewed) => {
            format!("certctl-certificate-{cert}")
        }
        Some(EventKind::DeploymentFailed) => format!("certctl-deployment-{}", d("job_id")),
        Some(EventKind::Revoked) => format!("certctl-revoked-{cert}"),
        Some(EventKind::ApprovalRequested) => format!("certctl-approval-{}", d("approval_id")),
        Some(EventKind::AgentOffline) => format!("certctl-agent-{}", d("agent_id")),
        Some(EventKind::PolicyViolation) => format!("certctl-policy-{}", d("violation_id")),
        Some(EventKind::Test) | None => format!("certctl-{}", n.id),
    }
}

/// PagerDuty severity: critical, error, warning or info.
fn severity(n: &Notification) -> &'static str {
    match kind_of(n) {
        Some(EventKind::ExpiringSoon) => {
            match n.details.get("threshold_days").and_then(Value::as_i64) {
                Some(d) if d <= 1 => "critical",
                Some(d) if d <= 7 => "error",
                _ => "warning",
            }
        }
        Some(EventKind::RenewalFailed | EventKind::DeploymentFailed) => "error",
        Some(EventKind::Revoked | EventKind::AgentOffline) => "warning",
        // The rule's own severity.
        Some(EventKind::PolicyViolation) => match n.details.get("severity").and_then(Value::as_str)
        {
            Some("critical") => "critical",
            Some("high") => "error",
            Some("medium") => "warning",
            _ => "info",
        },
        _ => "info",
    }
}

/// OpsGenie priority P1 (highest) to P5.
fn priority(n: &Notification) -> &'static str {
    match severity(n) {
        "critical" => "P1",
        "error" => "P2",
        "warning" => "P3",
        _ => "P5",
    }
}

/// The generic webhook body: certctl's own documented JSON.
pub fn webhook_body(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "event": n.event,
        "certificate_id": n.certificate_id,
        "subject": n.subject,
        "body": n.body,
        "details": n.details,
        "created_at": crate::clock::to_rfc3339(n.created_at),
    })
}

/// `v1=` + hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`.
/// Receivers recompute it, compare in constant time, and reject stale
/// timestamps (we suggest five minutes) so a captured request cannot be
/// replayed later.
pub fn webhook_signature(secret: &[u8], timestamp: UnixTime, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

pub fn webhook(url: &str, secret: Option<&str>, n: &Notification, now: UnixTime) -> HttpRequest {
    let body = webhook_body(n).to_string();
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        (EVENT_HEADER.to_owned(), n.event.clone()),
        (DELIVERY_HEADER.to_owned(), n.id.clone()),
        (TIMESTAMP_HEADER.to_owned(), now.to_string()),
    ];
    if let Some(s) = secret {
        headers.push((
            SIGNATURE_HEADER.to_owned(),
            webhook_signature(s.as_bytes(), now, &body),
        ));
    }
    HttpRequest {
        url: url.to_owned(),
        headers,
        body,
    }
}

fn json_request(url: &str, body: Value) -> HttpRequest {
    HttpRequest {
        url: url.to_owned(),
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: body.to_string(),
    }
}

/// Slack incoming webhook: `text` is the notification fallback, `blocks`
/// the rendered message.
pub fn slack(url: &str, n: &Notification) -> HttpRequest {
    json_request(
        url,
        json!({
            "text": text_of(n),
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": cut(&n.subject, 150) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": cut(&n.body, 3000) } },
                { "type": "context", "elements": [
                    { "type": "mrkdwn", "text": format!("certctl · {}", n.event) }
                ] }
            ]
        }),
    )
}

/// Microsoft Teams: a message carrying one Adaptive Card.
pub fn teams(url: &str, n: &Notification) -> HttpRequest {
    let facts: Vec<Value> = n
        .details
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({ "title": k, "value": value })
                })
                .collect()
        })
        .unwrap_or_default();
    json_request(
        url,
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        { "type": "TextBlock", "text": n.subject, "weight": "Bolder", "size": "Medium", "wrap": true },
                        { "type": "TextBlock", "text": n.body, "wrap": true },
                        { "type": "FactSet", "facts": facts }
                    ]
                }
            }]
        }),
    )
}

/// PagerDuty Events API v2: a renewal resolves the certificate's incident;
/// everything else triggers (PagerDuty groups repeats by `dedup_key`).
pub fn pagerduty(url: Option<&str>, routing_key: &str, n: &Notification) -> HttpRequest {
    let url = url.unwrap_or(PAGERDUTY_DEFAULT_URL);
    let dedup_key = cut(&incident_key(n), 255);
    let body = if kind_of(n).is_some_and(|k| !k.is_problem()) {
        json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        })
    } else {
        json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": "certctl",
            "payload": {
                "summary": cut(&n.subject, 1024),
                "source": "certctl",
                "severity": severity(n),
                "timestamp": crate::clock::to_rfc3339(n.created_at),
                "component": n.details.get("common_name").cloned().unwrap_or(Value::Null),
                "group": "certificates",
                "class": n.event,
                "custom_details": n.details,
            }
        })
    };
    json_request(url, body)
}

/// OpsGenie Alert API: create an alert with an alias, or close the alias
/// when the certificate was renewed.
pub fn opsgenie(url: Option<&str>, api_key: &str, n: &Notification) -> HttpRequest {
    let base = url.unwrap_or(OPSGENIE_DEFAULT_URL).trim_end_matches('/');
    let alias = cut(&incident_key(n), 512);
    let auth = ("Authorization".to_owned(), format!("GenieKey {api_key}"));
    let content = ("Content-Type".to_owned(), "application/json".to_owned());
    if kind_of(n).is_some_and(|k| !k.is_problem()) {
        return HttpRequest {
            url: format!("{base}/{alias}/close?identifierType=alias"),
            headers: vec![content, auth],
            body: json!({ "source": "certctl", "user": "certctl", "note": cut(&n.body, 25000) })
                .to_string(),
        };
    }
    // OpsGenie details are a map of strings.
    let details: serde_json::Map<String, Value> = n
        .details
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), Value::String(s))
                })
                .collect()
        })
        .unwrap_or_default();
    HttpRequest {
        url: base.to_owned(),
        headers: vec![content, auth],
        body: json!({
            "message": cut(&n.subject, 130),
            "alias": alias,
            "description": cut(&n.body, 15000),
            "tags": ["certctl", n.event],
            "details": details,
            "entity": n.details.get("common_name").cloned().unwrap_or(Value::Null),
            "source": "certctl",
            "priority": priority(n),
        })
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NotificationStatus;

    fn note(event: &str, details: Value) -> Notification {
        Notification {
            id: "ntf-1".into(),
            event: event.into(),
            event_id: None,
            certificate_id: Some("mc-1".into()),
            channel_id: Some("nch-1".into()),
            channel: "webhook".into(),
            recipient: "x".into(),
            subject: "Certificate a.example.com expires in 6 days".into(),
            body: "body".into(),
            details,
            status: NotificationStatus::Pending,
            attempts: 0,
            max_attempts: 5,
            next_attempt_at: 0,
            last_error: None,
            dedup_key: "k".into(),
            created_at: 1_700_000_000,
            sent_at: None,
        }
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 key and data, with our framing.
        let sig = webhook_signature(b"Jefe", 0, "what do ya want for nothing?");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"Jefe");
        let expect = aws_lc_rs::hmac::sign(&key, b"0.what do ya want for nothing?");
        assert_eq!(sig, format!("v1={}", hex::encode(expect.as_ref())));
    }

    #[test]
    fn pagerduty_triggers_then_resolves_one_key() {
        let warn = note(
            "expiring_soon",
            json!({ "threshold_days": 7, "common_name": "a" }),
        );
        let r = pagerduty(None, "rk", &warn);
        assert_eq!(r.url, PAGERDUTY_DEFAULT_URL);
        let b: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["payload"]["severity"], "error");
        let done = note("renewed", json!({}));
        let b2: Value = serde_json::from_str(&pagerduty(None, "rk", &done).body).expect("json");
        assert_eq!(b2["event_action"], "resolve");
        assert_eq!(b["dedup_key"], b2["dedup_key"]);
    }

    #[test]
    fn opsgenie_message_is_at_most_130_chars() {
        let mut n = note("revoked", json!({ "serial": "01" }));
        n.subject = "x".repeat(300);
        let r = opsgenie(Some("http://127.0.0.1:1/v2/alerts/"), "key", &n);
        let b: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(b["message"].as_str().map(|s| s.chars().count()), Some(130));
        assert_eq!(r.url, "http://127.0.0.1:1/v2/alerts");
        assert!(
            r.headers
                .contains(&("Authorization".into(), "GenieKey key".into()))
        );
    }
}
