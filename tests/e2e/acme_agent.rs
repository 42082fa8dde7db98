//! Issue 8: Pebble issues through the ACME issuer with HTTP-01 answered by
//! the agent. A real `certctl serve` and `certctl agent`; nginx serves the
//! target's TLS port and, on Pebble's HTTP-01 port, the target's web root,
//! where the agent writes the token. pebble-challtestsrv resolves every name
//! to 127.0.0.1, so Pebble's validation request reaches that nginx.
//!
//! The control plane is killed (SIGKILL) in the middle of the order, while
//! the agent's report that it took the challenge is held by a relay, and
//! restarted: the new process resumes the same order and the same challenge
//! job, the agent puts the token in place, Pebble fetches it from nginx,
//! the certificate is issued, deployed, verified, and the token removed.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;

use certctl_api::client::Client;
use serde_json::{Value, json};

use super::issuers::{pebble, peer, served_chain_verifies};
use super::{Proc, bootstrap_cert, call, free_port, require_peer, spawn, until, wait_tls};
use crate::agent_restart::Relay;
use crate::{BIN, Server, wait_healthy};

/// The request line of the agent's job reports.
const REPORT_CALL: &[u8] = b"/api/v1/operations/report_agent_job ";

/// nginx with the target's TLS server and, on Pebble's HTTP-01 port, plain
/// HTTP from the web root (access log kept, to see Pebble's request).
fn nginx_conf(dir: &Path, tls_port: u16, http_port: u16, webroot: &Path) -> String {
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{tls_port} ssl;\n    access_log off;\n    ssl_certificate {d}/site.pem;\n    ssl_certificate_key {d}/site.key;\n    location / {{ return 200 'ok'; }}\n  }}\n  server {{\n    listen 127.0.0.1:{http_port};\n    access_log {d}/http01.log;\n    root {w};\n  }}\n}}\n",
        d = dir.display(),
        w = webroot.display(),
    )
}

/// The serve flags: fast job and lease loops, a short job lease, so the
/// restarted process reclaims the dead one's issuer job within seconds.
const FAST: &[&str] = &[
    "--renewal-check-interval-seconds",
    "1",
    "--job-interval-seconds",
    "1",
    "--job-lease-interval-seconds",
    "1",
    "--job-lease-seconds",
    "4",
    "--loop-lease-margin-seconds",
    "1",
];

fn admin_client(dir: &Path, server: &Server) -> Client {
    let key = std::fs::read_to_string(dir.join("admin.key")).expect("admin.key");
    Client::new(&server.base, Some(key.trim().to_owned())).expect("client")
}

async fn validation_jobs(admin: &Client, cert: &str) -> Vec<Value> {
    let jobs = call(
        admin,
        "list_jobs",
        json!({"certificate_id": cert, "kind": "validation"}),
    )
    .await;
    jobs["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_http01_answered_by_the_agent_through_nginx_across_a_restart() {
    if !require_peer("nginx") || !require_peer("openssl") {
        return;
    }
    let (Some(bin), Some(chall)) = (
        peer("CERTCTL_TEST_PEBBLE", "pebble"),
        peer("CERTCTL_TEST_CHALLTESTSRV", "pebble-challtestsrv"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = dir.path().join("cp");
    let (_peers, mut config, pebble_root) = pebble(&bin, &chall, &dir.path().join("pebble")).await;
    let http01_port: u16 = config["http01_listen"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .expect("Pebble's HTTP-01 port");
    config["http01_solver"] = "agent".into();
    config
        .as_object_mut()
        .expect("object")
        .remove("http01_listen");

    // The web server: its files, web root and bootstrap certificate below
    // the agent's deploy root.
    let www = dir.path().join("www");
    let webroot = www.join("html");
    std::fs::create_dir_all(www.join("tmp")).unwrap();
    std::fs::create_dir_all(&webroot).unwrap();
    let (cert_path, key_path) = bootstrap_cert(&www);
    let tls_port = free_port();
    let conf = www.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&www, tls_port, http01_port, &webroot)).unwrap();
    let _nginx = spawn("nginx", &["-c", conf.to_str().unwrap()], &[]);
    wait_tls(tls_port).await;

    let server = Server::start(&cp, FAST);
    let mut admin = admin_client(&cp, &server);
    wait_healthy(&admin).await;
    let issuer = call(
        &admin,
        "create_issuer",
        json!({"name": "pebble-agent", "kind": "acme", "config": config}),
    )
    .await;
    let reg = call(&admin, "register_agent", json!({"name": "web-1"})).await;
    let agent_id = reg["agent"]["id"].as_str().unwrap().to_owned();
    let t = call(
        &admin,
        "save_target",
        json!({"name": "nginx-web-1", "kind": "nginx", "agent_id": agent_id,
               "config": {"cert_path": cert_path, "key_path": key_path, "config_file": conf,
                          "verify_endpoint": format!("127.0.0.1:{tls_port}"),
                          "server_name": "app.test", "acme_webroot": webroot}}),
    )
    .await;
    let c = call(
        &admin,
        "create_certificate",
        json!({"common_name": "app.test", "name": "app-acme-agent",
               "issuer_id": issuer["id"], "target_ids": [t["id"]]}),
    )
    .await;
    let cert = c["id"].as_str().unwrap().to_owned();

    let relay = Relay::start(&server.base, REPORT_CALL);
    relay.hold.store(true, Ordering::SeqCst);
    let _agent = Proc(
        Command::new(BIN)
            .args([
                "agent",
                "--server",
                &format!("http://127.0.0.1:{}", relay.port),
            ])
            .args(["--agent-id", &agent_id, "--poll-seconds", "0.2"])
            .args(["--verify-seconds", "20", "--key-dir"])
            .arg(dir.path().join("agent-keys"))
            .arg("--deploy-roots")
            .arg(&www)
            .env("CERTCTL_API_KEY", reg["api_key"].as_str().unwrap())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn certctl agent"),
    );
    call(&admin, "renew_certificate", json!({"id": cert})).await;

    // The agent sent its CSR; the issuer job made the order and handed the
    // challenge to the agent, whose report that it took it is held.
    until("the agent to take the HTTP-01 challenge", async || {
        (relay.held() > 0).then_some(())
    })
    .await;
    let challenges = validation_jobs(&admin, &cert).await;
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    let challenge = challenges[0].clone();
    assert_eq!(challenge["status"], "pending", "{challenge}");
    assert_eq!(challenge["payload"]["action"], "present");
    let token = challenge["payload"]["token"].as_str().unwrap().to_owned();
    let issuance = call(
        &admin,
        "list_jobs",
        json!({"certificate_id": cert, "kind": "issuance", "status": "running"}),
    )
    .await;
    let issuer_job = issuance["data"]
        .as_array()
        .and_then(|j| j.iter().find(|j| j["payload"]["issuer_id"] == issuer["id"]))
        .cloned()
        .expect("the issuer job runs");
    let order_url = issuer_job["payload"]["connector_state"]["order_url"]
        .as_str()
        .expect("order saved")
        .to_owned();

    // The control plane dies in the middle of the order and comes back.
    server.kill_hard();
    let server = Server::start(&cp, FAST);
    admin = admin_client(&cp, &server);
    wait_healthy(&admin).await;
    relay.point_to(&server.base);
    relay.release();

    // The new process resumes the order; the agent puts the token in place,
    // Pebble fetches it from nginx, the certificate is issued and deployed.
    let deployed = until("the deployment to end", async || {
        let jobs = call(
            &admin,
            "list_jobs",
            json!({"certificate_id": cert, "kind": "deployment"}),
        )
        .await;
        jobs["data"]
            .as_array()?
            .iter()
            .find(|j| matches!(j["status"].as_str(), Some("completed" | "failed")))
            .cloned()
    })
    .await;
    assert_eq!(deployed["status"], "completed", "{deployed}");
    let v = call(
        &admin,
        "get_object",
        json!({"kind": "verification", "id": deployed["id"]}),
    )
    .await;
    assert_eq!(v["verified"], true, "{v}");
    let j = call(
        &admin,
        "get_object",
        json!({"kind": "job", "id": issuer_job["id"]}),
    )
    .await;
    assert_eq!(j["status"], "completed", "{j}");
    assert_eq!(j["attempts"], 2, "one attempt died with the process: {j}");
    assert_eq!(
        j["payload"]["connector_state"]["order_url"], order_url,
        "the same order was resumed"
    );
    // The served chain is Pebble's.
    until("nginx to serve Pebble's chain", async || {
        served_chain_verifies(tls_port, &pebble_root).ok()
    })
    .await;
    // Pebble asked nginx for the token, in the web root the agent wrote.
    let log = std::fs::read_to_string(www.join("http01.log")).unwrap_or_default();
    assert!(
        log.lines().any(
            |l| l.contains(&format!("GET /.well-known/acme-challenge/{token} "))
                && l.contains("\" 200 ")
        ),
        "nginx served the token: {log}"
    );
    // Afterwards the agent removed it: one challenge job placed it (the
    // same one across the restart), one removed it.
    let token_file = webroot.join(".well-known/acme-challenge").join(&token);
    until("the token to be removed", async || {
        let jobs = validation_jobs(&admin, &cert).await;
        let done = jobs.len() == 2 && jobs.iter().all(|j| j["status"] == "completed");
        (done && !token_file.exists()).then_some(())
    })
    .await;
    let jobs = validation_jobs(&admin, &cert).await;
    assert!(
        jobs.iter().any(|j| j["id"] == challenge["id"]),
        "the challenge job from before the restart was the one answered: {jobs:?}"
    );

    // The scheduler renews it: a policy that makes it due at once; the
    // agent sends a CSR (answers a challenge when the CA asks for one) and
    // deploys the new version.
    let fp1 = v["served_fingerprint"].as_str().unwrap().to_owned();
    let policy = call(
        &admin,
        "save_renewal_policy",
        json!({"name": "due-now", "renew_before_days": 3650, "jitter_percent": 0}),
    )
    .await;
    call(
        &admin,
        "update_certificate",
        json!({"id": cert, "renewal_policy_id": policy["id"]}),
    )
    .await;
    let renewed = until("the renewal's deployment to end", async || {
        let jobs = call(
            &admin,
            "list_jobs",
            json!({"certificate_id": cert, "kind": "deployment"}),
        )
        .await;
        jobs["data"]
            .as_array()?
            .iter()
            .find(|j| {
                j["id"] != deployed["id"]
                    && matches!(j["status"].as_str(), Some("completed" | "failed"))
            })
            .cloned()
    })
    .await;
    call(
        &admin,
        "update_certificate",
        json!({"id": cert, "renewal_policy_id": ""}),
    )
    .await;
    assert_eq!(renewed["status"], "completed", "{renewed}");
    let v2 = call(
        &admin,
        "get_object",
        json!({"kind": "verification", "id": renewed["id"]}),
    )
    .await;
    assert_eq!(v2["verified"], true, "{v2}");
    assert_ne!(v2["served_fingerprint"], fp1.as_str(), "a new certificate");
    // No count of challenge jobs here: Pebble reuses a valid authorization
    // for half the orders by default (PEBBLE_AUTHZREUSE), so the renewal
    // may need no challenge at all. Any challenge it had was answered.
    for j in validation_jobs(&admin, &cert).await {
        assert_eq!(j["status"], "completed", "{j}");
    }
    until("nginx to serve the renewed chain from Pebble", async || {
        served_chain_verifies(tls_port, &pebble_root).ok()
    })
    .await;
    println!(
        "acme by agent: order {order_url} resumed after SIGKILL, token {token} served by nginx, certificate from Pebble deployed and verified, token removed; renewed by the scheduler through the agent"
    );
}
