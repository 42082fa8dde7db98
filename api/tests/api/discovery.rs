//! Discovery over REST: the agent's report route (own agent only), the
//! triage list with its filters, summary, claim and dismiss, and network
//! scan targets with their guard rails and roles (scans only on loopback).

use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(discovery_routes_triage_and_scan_targets);

fn self_signed(cn: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(vec![cn.to_owned()]).expect("params");
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.self_signed(&key).expect("cert").pem()
}

async fn discovery_routes_triage_and_scan_targets(rig: &Rig) {
    let admin = Some(rig.admin_key.as_str());
    let reg = rig
        .post("/api/v1/agents", admin, r#"{"name":"disk"}"#)
        .await;
    assert_eq!(reg.status, 201, "{reg:?}");
    let agent_id = reg.body["agent"]["id"].as_str().unwrap().to_owned();
    let agent_key = reg.body["api_key"].as_str().unwrap().to_owned();
    let other = rig
        .post("/api/v1/agents", admin, r#"{"name":"other"}"#)
        .await;
    let other_key = other.body["api_key"].as_str().unwrap().to_owned();
    let report = json!({"certificates": [
        {"path": "/etc/ssl/a.pem", "cert_pem": self_signed("a.example.com"), "key_path": "/etc/ssl/a.key"},
        {"path": "/etc/ssl/b.pem", "cert_pem": self_signed("b.example.com")},
    ]})
    .to_string();
    let uri = format!("/api/v1/agents/{agent_id}/discoveries");
    rig.post(&uri, Some(&other_key), &report)
        .await
        .assert_problem(403, "forbidden");
    let r = rig.post(&uri, Some(&agent_key), &report).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["new"], 2);
    let bad = rig
        .post(
            &uri,
            Some(&agent_key),
            &json!({"certificates": [{"path": "/x", "cert_pem": "junk"}]}).to_string(),
        )
        .await;
    bad.assert_problem(422, "invalid-input");

    let viewer = rig.key("viewer").await;
    let v = Some(viewer.as_str());
    let list = rig
        .get(
            &format!("/api/v1/discovered-certificates?agent_id={agent_id}&status=unmanaged&source=agent&sort=common_name"),
            v,
        )
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["total"], 2);
    let ids: Vec<String> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        list.body["data"][0]["sightings"][0]["key_path"],
        "/etc/ssl/a.key"
    );
    let none = rig
        .get("/api/v1/discovered-certificates?source=network", v)
        .await;
    assert_eq!(none.body["total"], 0);
    rig.get("/api/v1/discovered-certificates?status=lost", v)
        .await
        .assert_problem(422, "invalid-input");
    let one = rig
        .get(&format!("/api/v1/discovered-certificates/{}", ids[0]), v)
        .await;
    assert!(
        one.body["cert_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    rig.get("/api/v1/discovered-certificates/dc-missing", v)
        .await
        .assert_problem(404, "not-found");

    // A viewer cannot claim; an operator claims one and dismisses the other.
    rig.post(
        &format!("/api/v1/discovered-certificates/{}/claim", ids[0]),
        v,
        "{}",
    )
    .await
    .assert_problem(403, "forbidden");
    let op = rig.key("operator").await;
    let o = Some(op.as_str());
    let claimed = rig
        .post(
            &format!("/api/v1/discovered-certificates/{}/claim", ids[0]),
            o,
            "{}",
        )
        .await;
    assert_eq!(claimed.status, 200, "{claimed:?}");
    let cert_id = claimed.body["certificate_id"].as_str().unwrap().to_owned();
    let cert = rig.get(&format!("/api/v1/certificates/{cert_id}"), v).await;
    assert_eq!(cert.status, 200, "{cert:?}");
    assert!(cert.body.to_string().contains("a.example.com"), "{cert:?}");
    let dismissed = rig
        .post(
            &format!("/api/v1/discovered-certificates/{}/dismiss", ids[1]),
            o,
            r#"{"reason":"lab box"}"#,
        )
        .await;
    assert_eq!(dismissed.body["status"], "dismissed", "{dismissed:?}");
    let summary = rig.get("/api/v1/discovered-certificates/summary", v).await;
    assert_eq!(summary.status, 200, "{summary:?}");
    assert_eq!(summary.body["by_status"]["claimed"], 1);
    assert_eq!(summary.body["by_status"]["dismissed"], 1);
    assert_eq!(summary.body["by_source"]["agent"], 2);

    // Scan targets: the guard rails answer 400 with the reason.
    let too_big = rig
        .post(
            "/api/v1/network-scan-targets",
            o,
            r#"{"name":"lo8","cidrs":["127.0.0.0/8"],"ports":[443]}"#,
        )
        .await;
    too_big.assert_problem(422, "invalid-input");
    assert!(
        too_big.body["detail"]
            .as_str()
            .unwrap()
            .contains("16777216"),
        "{too_big:?}"
    );
    // A port nothing listens on: the scan completes with it counted closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = rig
        .post(
            "/api/v1/network-scan-targets",
            o,
            &json!({"name": "lo", "cidrs": ["127.0.0.1/32"], "ports": [port]}).to_string(),
        )
        .await;
    assert_eq!(t.status, 201, "{t:?}");
    let tid = t.body["id"].as_str().unwrap().to_owned();
    rig.post(&format!("/api/v1/network-scan-targets/{tid}/scan"), v, "{}")
        .await
        .assert_problem(403, "forbidden");
    let scan = rig
        .post(&format!("/api/v1/network-scan-targets/{tid}/scan"), o, "{}")
        .await;
    assert_eq!(scan.status, 200, "{scan:?}");
    assert_eq!(scan.body["closed"], 1);
    assert_eq!(scan.body["tls"], 0);
    let listed = rig.get("/api/v1/network-scan-targets", v).await;
    assert_eq!(
        listed.body["data"][0]["last_scan"]["closed"], 1,
        "{listed:?}"
    );
    let upd = rig
        .put(
            &format!("/api/v1/network-scan-targets/{tid}"),
            o,
            r#"{"enabled":false}"#,
        )
        .await;
    assert_eq!(upd.body["enabled"], Value::Bool(false), "{upd:?}");
}
