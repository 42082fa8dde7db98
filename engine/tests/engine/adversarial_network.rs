//! Issue 17, point 8: address guards that compare families naively. An
//! attacker with an operator key (scan targets, notification channels) or
//! an admin's mistake (CA URLs) names a refused range in an IPv6 form that
//! carries the IPv4 address: `::ffff:169.254.169.254`, NAT64, 6to4. Each
//! must be refused with the address and the rule, and leave nothing behind.

use std::time::Duration;

use certctl_engine::Error;
use certctl_engine::config::{EngineConfig, NetworkScanConfig};
use certctl_engine::domain::Role;
use certctl_engine::netscan::ScanPlan;
use certctl_engine::ops;
use serde_json::json;

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    scan_targets_in_ipv4_carrying_forms_are_refused,
    channels_to_embedded_metadata_addresses_are_refused,
    ca_urls_to_embedded_metadata_addresses_are_refused,
    a_name_resolving_to_a_refused_address_is_not_connected_to,
);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

async fn audit_is_valid(h: &Harness) {
    let v = h.engine.store().verify_audit_chain().await.expect("verify");
    assert!(v.valid, "audit chain: {v:?}");
}

async fn scan_targets_in_ipv4_carrying_forms_are_refused(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    for (cidr, reaches) in [
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::ffff:a9fe:a9fe/128", "169.254.169.254"),
        ("::ffff:169.254.169.0/120", "169.254.169.0/24"),
        ("::ffff:127.0.0.1/128", "127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:a9fe:a9fe::1", "169.254.169.254"),
        ("::169.254.169.254", "169.254.169.254"),
    ] {
        for who in [&operator, &h.admin()] {
            let e = h
                .call::<ops::CreateNetworkScanTarget>(
                    who,
                    input(json!({"name": "t", "cidrs": [cidr], "ports": [80]})),
                )
                .await
                .expect_err(cidr);
            let msg = e.to_string();
            assert!(matches!(e, Error::InvalidInput(_)), "{cidr}: {msg}");
            assert!(
                msg.contains(cidr) && msg.contains(reaches) && msg.contains("allow_restricted"),
                "{cidr}: {msg}"
            );
        }
    }
    // Zone ids name link-local addresses: refused, whoever asks.
    let e = h
        .call::<ops::CreateNetworkScanTarget>(
            &h.admin(),
            input(
                json!({"name": "t", "cidrs": ["fe80::1%eth0"], "ports": [80],
                         "allow_restricted": true}),
            ),
        )
        .await
        .expect_err("zone id");
    assert!(e.to_string().contains("zone id"), "{e}");
    // What is never scanned stays never scanned in any form, even for an admin.
    for cidr in ["::ffff:0.0.0.0", "::ffff:224.0.0.1", "64:ff9b::e000:1"] {
        let e = h
            .call::<ops::CreateNetworkScanTarget>(
                &h.admin(),
                input(json!({"name": "t", "cidrs": [cidr], "ports": [80],
                             "allow_restricted": true})),
            )
            .await
            .expect_err(cidr);
        assert!(e.to_string().contains("never scanned"), "{cidr}: {e}");
    }
    // The plan itself refuses them too (the scan loop builds one per target).
    let cfg = NetworkScanConfig::default();
    for cidr in ["::ffff:169.254.169.254", "::ffff:127.0.0.1/128"] {
        assert!(ScanPlan::new(&[cidr.to_owned()], &[443], &[], false, &cfg).is_err());
    }
    assert!(ScanPlan::new(&["127.0.0.1/32".to_owned()], &[443], &[], false, &cfg).is_ok());
    // Nothing was stored.
    let targets: ops::List<serde_json::Value> =
        h.list(&h.admin(), "network_scan_target", json!({})).await;
    assert!(targets.data.is_empty(), "{:?}", targets.data);
    audit_is_valid(h).await;
}

async fn channels_to_embedded_metadata_addresses_are_refused(h: &Harness) {
    for (kind, url, shown) in [
        (
            "webhook",
            "http://[::ffff:169.254.169.254]/",
            "169.254.169.254",
        ),
        (
            "webhook",
            "http://169.254.169.254/latest/",
            "169.254.169.254",
        ),
        ("slack", "http://[64:ff9b::a9fe:a9fe]/x", "169.254.169.254"),
        (
            "teams",
            "http://[2002:a9fe:a9fe::1]:8080/",
            "169.254.169.254",
        ),
        ("webhook", "http://[fd00:ec2::254]/", "fd00:ec2::254"),
        ("webhook", "http://2852039166/", "169.254.169.254"),
        ("webhook", "http://[::ffff:0.0.0.0]/", "0.0.0.0"),
        ("webhook", "http://[ff02::1]/", "ff02::1"),
    ] {
        let e = h
            .call::<ops::SaveNotificationChannel>(
                &h.admin(),
                input(json!({"name": "c", "kind": kind, "settings": {"url": url}})),
            )
            .await
            .expect_err(url);
        let msg = e.to_string();
        assert_eq!(e.code(), "invalid-input", "{url}: {msg}");
        assert!(
            msg.contains(shown) && msg.contains("outbound address policy"),
            "{url}: {msg}"
        );
    }
    let e = h
        .call::<ops::SaveNotificationChannel>(
            &h.admin(),
            input(json!({"name": "c", "kind": "pagerduty", "secret": "rk",
                         "settings": {"url": "https://[::ffff:169.254.169.254]/v2/enqueue"}})),
        )
        .await
        .expect_err("pagerduty");
    assert_eq!(e.code(), "invalid-input", "{e}");
    // Loopback stays allowed by default (self-hosted webhooks).
    h.done::<ops::SaveNotificationChannel>(
        &h.admin(),
        input(json!({"name": "ok", "kind": "webhook", "settings": {"url": "http://[::ffff:127.0.0.1]:9/"}})),
    )
    .await;
    let channels: ops::List<serde_json::Value> =
        h.list(&h.admin(), "notification_channel", json!({})).await;
    let names: Vec<&str> = channels
        .data
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["ok"]);
    audit_is_valid(h).await;
}

async fn ca_urls_to_embedded_metadata_addresses_are_refused(h: &Harness) {
    for body in [
        json!({"name": "v", "kind": "vault",
               "config": {"url": "http://[::ffff:169.254.169.254]:8200", "role": "web"},
               "secrets": {"token": "t"}}),
        json!({"name": "a", "kind": "acme",
               "config": {"directory_url": "https://[64:ff9b::a9fe:a9fe]/dir",
                          "challenge": "dns-01"}}),
    ] {
        let e = h
            .call::<ops::CreateIssuer>(&h.admin(), input(body.clone()))
            .await
            .expect_err("refused");
        let msg = e.to_string();
        assert_eq!(e.code(), "invalid-input", "{body}: {msg}");
        assert!(msg.contains("169.254.169.254"), "{body}: {msg}");
    }
    let issuers = h
        .done::<ops::ListIssuers>(&h.admin(), Default::default())
        .await;
    assert_eq!(issuers.data.len(), 1, "only the local CA");
    audit_is_valid(h).await;
}

/// A name passes when saved; its resolved addresses are checked at every
/// delivery. Under the `private` policy loopback is refused, so a webhook
/// to `localhost` fails with the address and the rule, and the listener
/// never sees a connection.
async fn a_name_resolving_to_a_refused_address_is_not_connected_to(h: &Harness) {
    let config = EngineConfig {
        outbound: certctl_engine::net_guard::OutboundPolicy::Private,
        ..Default::default()
    };
    let engine = Harness::engine_on(&h.db, &h.clock, config, &h.master).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let c = match engine
        .call::<ops::SaveNotificationChannel>(
            &h.admin(),
            input(json!({"name": "hook", "kind": "webhook",
                         "settings": {"url": format!("http://localhost:{port}/hook")}})),
        )
        .await
        .expect("save")
    {
        ops::Outcome::Completed { result } => result,
        other => panic!("{other:?}"),
    };
    // A literal loopback URL is refused when saved under this policy.
    let e = engine
        .call::<ops::SaveNotificationChannel>(
            &h.admin(),
            input(json!({"name": "lit", "kind": "webhook",
                         "settings": {"url": format!("http://[::ffff:127.0.0.1]:{port}/")}})),
        )
        .await
        .expect_err("loopback literal");
    assert!(e.to_string().contains("loopback"), "{e}");
    engine
        .call::<ops::SendTestNotification>(&h.admin(), input(json!({"channel_id": c.id})))
        .await
        .expect("queue");
    certctl_engine::notify::deliver(&engine, "proc-guard", engine.now())
        .await
        .expect("deliver");
    let notes = h
        .done::<ops::ListNotifications>(
            &h.admin(),
            ops::ListNotificationsInput {
                status: None,
                per_page: Some(10),
            },
        )
        .await
        .data;
    let err = notes[0].last_error.clone().unwrap_or_default();
    assert!(
        err.contains("loopback") && err.contains("private"),
        "the delivery names the address and the rule: {err}"
    );
    assert!(notes[0].sent_at.is_none());
    // Bounded wait on the socket: nothing connected.
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the guard let a connection through");
    audit_is_valid(h).await;
}
