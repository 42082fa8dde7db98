//! Discovery: agent reports deduplicated by fingerprint with every place a
//! certificate was seen, triage (claim into the inventory, link, dismiss,
//! summary), and the network scanner against TLS servers this test starts on
//! loopback (the only addresses these tests ever scan).

use std::sync::Arc;

use certctl_engine::Error;
use certctl_engine::domain::Role;
use certctl_engine::ops;
use certctl_engine::scheduler::{Loop, Scheduler, TickOutcome};
use certctl_engine::store::{DiscoverySource, DiscoveryStatus};
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    agent_reports_are_deduplicated_and_triaged,
    network_scan_of_loopback_finds_each_server,
    scan_targets_guard_rails_and_roles,
);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

/// A self-signed leaf for `cn` (PEM, DER, key PEM).
fn leaf(cn: &str) -> (String, Vec<u8>, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec![cn.to_owned()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    let cert = p.self_signed(&key).expect("cert");
    (cert.pem(), cert.der().to_vec(), key.serialize_pem())
}

fn fingerprint(der: &[u8]) -> String {
    certctl_engine::pki::fingerprint_sha256(der)
}

async fn agent(h: &Harness, name: &str) -> (String, certctl_engine::domain::Principal) {
    let a = h
        .done::<ops::RegisterAgent>(&h.admin(), input(json!({"name": name})))
        .await;
    let mut p = principal(&format!("pr-{name}"), Role::Agent);
    p.agent_id = Some(a.agent.id.clone());
    (a.agent.id, p)
}

async fn list(
    h: &Harness,
    filter: serde_json::Value,
) -> ops::List<certctl_engine::store::DiscoveredCertificate> {
    h.done::<ops::ListDiscoveredCertificates>(&h.admin(), input(filter))
        .await
}

async fn agent_reports_are_deduplicated_and_triaged(h: &Harness) {
    let (id1, agent1) = agent(h, "disk-1").await;
    let (id2, agent2) = agent(h, "disk-2").await;
    let (a_pem, a_der, a_key) = leaf("a.example.com");
    let (b_pem, b_der, _) = leaf("b.example.com");
    let (c_pem, _, _) = leaf("c.example.com");

    // Key material is refused whole, and nothing is stored.
    let with_key = h
        .call::<ops::ReportAgentDiscoveries>(
            &agent1,
            input(json!({"id": id1, "certificates": [
                {"path": "/etc/ssl/b.pem", "cert_pem": b_pem},
                {"path": "/etc/ssl/a.pem", "cert_pem": format!("{a_pem}{a_key}")},
            ]})),
        )
        .await
        .expect_err("key material is refused");
    assert!(matches!(with_key, Error::InvalidInput(_)), "{with_key}");
    assert!(with_key.to_string().contains("private key"), "{with_key}");
    assert_eq!(list(h, json!({})).await.total, Some(0));
    // Another agent's id is refused.
    let other = h
        .call::<ops::ReportAgentDiscoveries>(
            &agent1,
            input(json!({"id": id2, "certificates": [{"path": "/x.pem", "cert_pem": a_pem}]})),
        )
        .await
        .expect_err("not its own agent");
    assert!(matches!(other, Error::Forbidden(_)), "{other}");

    let r1 = h
        .done::<ops::ReportAgentDiscoveries>(
            &agent1,
            input(json!({"id": id1, "certificates": [
                {"path": "/etc/nginx/a.pem", "cert_pem": a_pem, "key_path": "/etc/nginx/a.key"},
                {"path": "/srv/old/a-copy.pem", "cert_pem": a_pem},
                {"path": "/etc/ssl/b.der", "cert_pem": b_pem},
            ]})),
        )
        .await;
    assert_eq!((r1.received, r1.new, r1.known), (3, 2, 1));
    assert_eq!(r1.ids[0], r1.ids[1], "one row per fingerprint");
    let r2 = h
        .done::<ops::ReportAgentDiscoveries>(
            &agent2,
            input(json!({"id": id2, "certificates": [
                {"path": "/opt/app/tls.crt", "cert_pem": a_pem},
                {"path": "/opt/app/c.crt", "cert_pem": c_pem},
            ]})),
        )
        .await;
    assert_eq!((r2.new, r2.known), (1, 1));
    // Reporting the same again changes no counts.
    let again = h
        .done::<ops::ReportAgentDiscoveries>(
            &agent2,
            input(
                json!({"id": id2, "certificates": [{"path": "/opt/app/c.crt", "cert_pem": c_pem}]}),
            ),
        )
        .await;
    assert_eq!((again.new, again.known), (0, 1));

    let all = list(h, json!({})).await;
    assert_eq!(all.total, Some(3));
    let a = h
        .get::<certctl_engine::store::DiscoveredCertificate>(
            &h.admin(),
            "discovered_certificate",
            &r1.ids[0],
        )
        .await;
    assert_eq!(a.fingerprint, fingerprint(&a_der));
    assert_eq!(a.common_name.as_deref(), Some("a.example.com"));
    assert_eq!(a.sans, vec!["a.example.com"]);
    assert_eq!(a.sightings.len(), 3, "{:?}", a.sightings);
    assert_eq!(a.sources, vec![DiscoverySource::Agent]);
    let nginx = a
        .sightings
        .iter()
        .find(|s| s.path.as_deref() == Some("/etc/nginx/a.pem"))
        .expect("sighting");
    assert_eq!(nginx.agent_id.as_deref(), Some(id1.as_str()));
    assert_eq!(nginx.key_path.as_deref(), Some("/etc/nginx/a.key"));
    assert!(!a.cert_pem.clone().unwrap_or_default().contains("PRIVATE"));
    // Filters.
    assert_eq!(
        list(h, json!({"agent_id": id2})).await.total,
        Some(2),
        "agent 2 saw a and c"
    );
    assert_eq!(list(h, json!({"source": "agent"})).await.total, Some(3));
    assert_eq!(list(h, json!({"source": "network"})).await.total, Some(0));
    let sorted = list(h, json!({"sort": "common_name", "per_page": 2})).await;
    assert_eq!(
        sorted
            .data
            .iter()
            .map(|d| d.common_name.clone().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["a.example.com", "b.example.com"]
    );
    assert!(sorted.next_cursor.is_some());

    // Roles: a viewer reads but cannot claim or dismiss; an agent cannot list.
    let viewer = principal("pr-viewer", Role::Viewer);
    assert_eq!(
        h.done::<ops::ListDiscoveredCertificates>(&viewer, input(json!({})))
            .await
            .total,
        Some(3)
    );
    let refused = h
        .call::<ops::ClaimDiscoveredCertificate>(&viewer, input(json!({"id": r1.ids[2]})))
        .await
        .expect_err("viewer");
    assert!(matches!(refused, Error::Forbidden(_)), "{refused}");
    assert!(
        h.call::<ops::ListDiscoveredCertificates>(&agent1, input(json!({})))
            .await
            .is_err()
    );

    // Claim b as a new managed certificate: it joins the inventory.
    let operator = principal("pr-operator", Role::Operator);
    let claimed = h
        .done::<ops::ClaimDiscoveredCertificate>(
            &operator,
            input(json!({"id": r1.ids[2], "environment": "found"})),
        )
        .await;
    assert!(claimed.created);
    assert_eq!(claimed.discovered.status, DiscoveryStatus::Claimed);
    let inventory = h
        .done::<ops::ListCertificates>(&h.admin(), input(json!({"per_page": 100})))
        .await;
    let managed = inventory
        .data
        .iter()
        .find(|c| c.0["id"] == json!(claimed.certificate_id))
        .expect("claimed certificate is in the inventory");
    assert_eq!(managed.0["common_name"], json!("b.example.com"));
    assert_eq!(managed.0["fingerprint"], json!(fingerprint(&b_der)));
    let twice = h
        .call::<ops::ClaimDiscoveredCertificate>(&operator, input(json!({"id": r1.ids[2]})))
        .await
        .expect_err("already claimed");
    assert!(matches!(twice, Error::Conflict(_)), "{twice}");

    // Link c to that managed certificate; dismiss a with a reason.
    let c_id = r2.ids[1].clone();
    let bad_link = h
        .call::<ops::ClaimDiscoveredCertificate>(
            &operator,
            input(json!({"id": c_id, "certificate_id": "mc-missing"})),
        )
        .await
        .expect_err("unknown certificate");
    assert!(matches!(bad_link, Error::InvalidInput(_)), "{bad_link}");
    let linked = h
        .done::<ops::ClaimDiscoveredCertificate>(
            &operator,
            input(json!({"id": c_id, "certificate_id": claimed.certificate_id})),
        )
        .await;
    assert!(!linked.created);
    let dismissed = h
        .done::<ops::DismissDiscoveredCertificate>(
            &operator,
            input(json!({"id": r1.ids[0], "reason": "test certificate"})),
        )
        .await;
    assert_eq!(dismissed.status, DiscoveryStatus::Dismissed);
    assert_eq!(dismissed.note.as_deref(), Some("test certificate"));
    let missing = h
        .call::<ops::DismissDiscoveredCertificate>(&operator, input(json!({"id": "dc-missing"})))
        .await
        .expect_err("missing");
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");

    let summary = h
        .done::<ops::GetDiscoverySummary>(&viewer, input(json!({})))
        .await;
    assert_eq!(summary.total, 3);
    assert_eq!(summary.by_status["claimed"], 2);
    assert_eq!(summary.by_status["dismissed"], 1);
    assert_eq!(summary.by_status["unmanaged"], 0);
    assert_eq!(summary.by_source["agent"], 3);
    assert_eq!(summary.by_source["network"], 0);
    assert_eq!(list(h, json!({"status": "claimed"})).await.total, Some(2));
}

/// A TLS server on 127.0.0.1 serving a fresh certificate for `cn`; returns
/// its port and the leaf's fingerprint.
async fn tls_server(cn: &str) -> (u16, String) {
    let (_, der, key) = leaf(cn);
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone().into()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    (port, fingerprint(&der))
}

/// A plain-HTTP server on 127.0.0.1 (answers anything with a 400).
async fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

async fn network_scan_of_loopback_finds_each_server(h: &Harness) {
    let mut servers = Vec::new();
    for cn in ["one.scan.test", "two.scan.test", "three.scan.test"] {
        servers.push(tls_server(cn).await);
    }
    let http = http_server().await;
    let closed = closed_port().await;
    let mut ports: Vec<u16> = servers.iter().map(|s| s.0).collect();
    ports.extend([http, closed]);
    let operator = principal("pr-operator", Role::Operator);
    let target = h
        .done::<ops::CreateNetworkScanTarget>(
            &operator,
            input(json!({"name": "loopback", "cidrs": ["127.0.0.1/32"], "ports": ports})),
        )
        .await;
    let viewer = principal("pr-viewer", Role::Viewer);
    let refused = h
        .call::<ops::ScanNetworkTarget>(&viewer, input(json!({"id": target.id})))
        .await
        .expect_err("a viewer cannot scan");
    assert!(matches!(refused, Error::Forbidden(_)), "{refused}");

    let report = h
        .done::<ops::ScanNetworkTarget>(&operator, input(json!({"id": target.id})))
        .await;
    assert_eq!(report.handshakes, 5, "{report:?}");
    assert_eq!(report.tls, 3, "{report:?}");
    assert_eq!(report.closed, 1, "{report:?}");
    assert_eq!(report.not_tls, 1, "{report:?}");
    for (port, fp) in &servers {
        let f = report
            .findings
            .iter()
            .find(|f| f.endpoint == format!("127.0.0.1:{port}"))
            .expect("each server is found");
        assert_eq!(&f.fingerprint, fp);
        assert!(f.new);
        assert!(
            f.common_name
                .as_deref()
                .unwrap_or_default()
                .ends_with(".scan.test")
        );
        assert_eq!(f.key_type, "ecdsa-p256");
        assert!(f.not_after > f.not_before);
    }
    let found = list(h, json!({"source": "network"})).await;
    assert_eq!(found.total, Some(3));
    let one = &found.data[0];
    assert_eq!(
        one.sightings[0].scan_target_id.as_deref(),
        Some(target.id.as_str())
    );
    assert!(one.sightings[0].endpoint.is_some());

    // A /29 of loopback with an SNI name: the same three servers (on .1),
    // the other addresses closed; nothing new, one sighting more each.
    let wide = h
        .done::<ops::CreateNetworkScanTarget>(
            &operator,
            input(json!({"name": "loopback-29", "cidrs": ["127.0.0.0/29"],
                "ports": servers.iter().map(|s| s.0).collect::<Vec<_>>(),
                "server_names": ["www.scan.test"]})),
        )
        .await;
    let report = h
        .done::<ops::ScanNetworkTarget>(&operator, input(json!({"id": wide.id})))
        .await;
    assert_eq!(report.handshakes, 18, "6 hosts x 3 ports: {report:?}");
    assert_eq!(report.tls, 3, "{report:?}");
    assert_eq!(report.closed, 15, "{report:?}");
    assert!(
        report
            .findings
            .iter()
            .all(|f| !f.new && f.server_name.as_deref() == Some("www.scan.test"))
    );
    let d = h
        .get::<certctl_engine::store::DiscoveredCertificate>(
            &h.admin(),
            "discovered_certificate",
            &report.findings[0].discovered_id,
        )
        .await;
    assert_eq!(d.sightings.len(), 2, "{:?}", d.sightings);

    // The scheduled loop scans enabled targets and records the figures.
    let s = Arc::new(Scheduler::new(h.engine.clone(), "proc-scan"));
    assert_eq!(
        s.run_once(Loop::NetworkScan, h.engine.now()).await,
        TickOutcome::Ran
    );
    let t = h
        .get::<certctl_engine::store::NetworkScanTarget>(&viewer, "network_scan_target", &target.id)
        .await;
    assert!(t.last_scan_at.is_some());
    assert_eq!(
        t.last_scan.as_ref().and_then(|v| v["tls"].as_u64()),
        Some(3)
    );
    let actions = h.audit_actions().await;
    assert!(
        actions.iter().any(|(a, o, who)| a == "scan_network_target"
            && o == "success"
            && who.contains("scheduler")),
        "{actions:?}"
    );
}

async fn scan_targets_guard_rails_and_roles(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let viewer = principal("pr-viewer", Role::Viewer);
    // Over the size limit: refused with the reason, nothing stored.
    let big = h
        .call::<ops::CreateNetworkScanTarget>(
            &operator,
            input(json!({"name": "all-loopback", "cidrs": ["127.0.0.0/8"], "ports": [443]})),
        )
        .await
        .expect_err("over the limit");
    let msg = big.to_string();
    assert!(matches!(big, Error::InvalidInput(_)), "{msg}");
    assert!(
        msg.contains("16777216 addresses") && msg.contains("limit of 4096"),
        "{msg}"
    );
    // Restricted ranges need an admin.
    for cidr in ["169.254.169.254/32", "fe80::/64"] {
        let e = h
            .call::<ops::CreateNetworkScanTarget>(
                &operator,
                input(json!({"name": "meta", "cidrs": [cidr], "ports": [80]})),
            )
            .await
            .expect_err("restricted");
        assert!(e.to_string().contains("only an admin"), "{e}");
        let e = h
            .call::<ops::CreateNetworkScanTarget>(
                &operator,
                input(json!({"name": "meta", "cidrs": [cidr], "ports": [80], "allow_restricted": true})),
            )
            .await
            .expect_err("operators cannot allow");
        assert!(matches!(e, Error::Forbidden(_)), "{e}");
    }
    // An admin may allow it (created disabled and removed: never scanned here).
    let allowed = h
        .done::<ops::CreateNetworkScanTarget>(
            &h.admin(),
            input(
                json!({"name": "meta", "cidrs": ["169.254.169.254"], "ports": [80],
                "allow_restricted": true, "enabled": false}),
            ),
        )
        .await;
    assert!(allowed.allow_restricted && !allowed.enabled);
    let del = h
        .delete(&h.admin(), "network_scan_target", &allowed.id)
        .await
        .expect("delete");
    if let certctl_engine::ops::Outcome::ApprovalRequired(t) = del {
        h.done::<ops::ApproveRequest>(
            &principal("pr-approver", Role::Approver),
            input(json!({"approval_id": t.approval_id})),
        )
        .await;
    }
    // Bad input.
    for bad in [
        json!({"name": "x", "cidrs": ["10.0.0.0/33"], "ports": [443]}),
        json!({"name": "x", "cidrs": ["127.0.0.1"], "ports": []}),
        json!({"name": "x", "cidrs": [], "ports": [443]}),
        json!({"name": "x", "cidrs": ["127.0.0.1"], "ports": [443], "server_names": ["not a name"]}),
        json!({"name": "", "cidrs": ["127.0.0.1"], "ports": [443]}),
    ] {
        let e = h
            .call::<ops::CreateNetworkScanTarget>(&operator, input(bad.clone()))
            .await
            .expect_err("bad input");
        assert!(matches!(e, Error::InvalidInput(_)), "{bad}: {e}");
    }
    let e = h
        .call::<ops::CreateNetworkScanTarget>(
            &viewer,
            input(json!({"name": "v", "cidrs": ["127.0.0.1"], "ports": [443]})),
        )
        .await
        .expect_err("viewer");
    assert!(matches!(e, Error::Forbidden(_)), "{e}");
    // Update re-checks the limit; list shows what is stored.
    let t = h
        .done::<ops::CreateNetworkScanTarget>(
            &operator,
            input(json!({"name": "lo", "cidrs": ["127.0.0.1"], "ports": [443]})),
        )
        .await;
    assert_eq!(t.cidrs, vec!["127.0.0.1"]);
    let e = h
        .call::<ops::UpdateNetworkScanTarget>(
            &operator,
            input(json!({"id": t.id, "cidrs": ["127.0.0.0/16"]})),
        )
        .await
        .expect_err("too big");
    assert!(e.to_string().contains("limit"), "{e}");
    let u = h
        .done::<ops::UpdateNetworkScanTarget>(
            &operator,
            input(json!({"id": t.id, "ports": [443, 8443], "enabled": false})),
        )
        .await;
    assert_eq!(u.ports, vec![443, 8443]);
    let listed = h
        .list::<certctl_engine::store::NetworkScanTarget>(
            &viewer,
            "network_scan_target",
            serde_json::json!({"enabled": false}),
        )
        .await;
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.data[0].id, t.id);
}
