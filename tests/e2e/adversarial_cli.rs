//! Attacks through the CLI face with the real binary (issue 17), on SQLite
//! and PostgreSQL: a fresh install under four eyes and a write gate gets its
//! first approver at the first start; a new API key produced by an approved
//! request reaches only its requester, once; and a replica started with
//! another master key refuses to start instead of failing every issuance.

use std::path::Path;

use sqlx::Connection;

use super::{Server, certctl};

/// A database URL for a fresh PostgreSQL database, or `None` for SQLite in
/// the data dir. Fails when PostgreSQL is required and missing.
async fn postgres_url() -> Option<String> {
    let admin = std::env::var("CERTCTL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: PostgreSQL at {admin} is not reachable ({e})");
            return None;
        }
        Err(e) => panic!("PostgreSQL at {admin} is required but not reachable: {e}"),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    let name = format!("certctl_adv_cli_{}_{nanos}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

fn run(server: &Server, key: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--server", server.base.as_str(), "--api-key", key];
    all.extend_from_slice(args);
    let out = certctl(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key_file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("key file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "{name} must be 0600");
    std::fs::read_to_string(path)
        .expect("key")
        .trim()
        .to_owned()
}

async fn four_eyes_install(postgres: bool) {
    let dir = tempfile::tempdir().expect("dir");
    let url = if postgres {
        match postgres_url().await {
            Some(u) => Some(u),
            None => return,
        }
    } else {
        None
    };
    let mut envs: Vec<(&str, &str)> = Vec::new();
    if let Some(u) = &url {
        envs.push(("CERTCTL_DATABASE_URL", u.as_str()));
    }
    let flags = [
        "--approval-four-eyes",
        "--approval-gate-write",
        "--first-approver",
        "alice",
    ];
    let server = Server::start_with_env(dir.path(), &flags, &envs);
    assert!(
        server.banner.iter().any(|l| l.contains("first approver")),
        "{:?}",
        server.banner
    );
    let admin = key_file(dir.path(), "admin.key");
    let alice = key_file(dir.path(), "first-approver.key");

    // The admin asks for a new key: gated (exit 3), nothing minted yet.
    let (code, out, err) = run(
        &server,
        &admin,
        &[
            "call",
            "create_principal",
            r#"{"name":"deploy-bot","role":"operator"}"#,
        ],
    );
    assert_eq!(code, 3, "{out}{err}");
    let approval = out
        .split_whitespace()
        .find(|w| w.starts_with("ap-"))
        .expect("approval id")
        .to_owned();
    // The admin cannot approve it, and cannot mint a second approver to do so.
    let (code, out, err) = run(&server, &admin, &["approvals", "approve", &approval]);
    assert_ne!(code, 0, "{out}{err}");
    let (code, out, err) = run(
        &server,
        &admin,
        &[
            "call",
            "create_principal",
            r#"{"name":"sock-puppet","role":"approver"}"#,
        ],
    );
    assert_eq!(
        code, 3,
        "an approving role needs another approver: {out}{err}"
    );

    // The first approver decides; the answer shows no key.
    let (code, out, err) = run(
        &server,
        &alice,
        &["--format", "json", "approvals", "approve", &approval],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[sealed]"), "{out}");
    // Only the requester collects the key, once.
    let (code, out, err) = run(&server, &alice, &["approvals", "result", &approval]);
    assert_ne!(code, 0, "not the requester: {out}{err}");
    let (code, out, err) = run(&server, &admin, &["approvals", "result", &approval]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let key = v["api_key"].as_str().expect("api key").to_owned();
    let (code, out, err) = run(&server, &key, &["certs", "list"]);
    assert_eq!(code, 0, "the collected key works: {out}{err}");
    let (code, out, err) = run(&server, &admin, &["approvals", "result", &approval]);
    assert_ne!(code, 0, "collected once: {out}{err}");
    let (code, out, _) = run(&server, &admin, &["--format", "json", "audit", "list"]);
    assert_eq!(code, 0);
    assert!(!out.contains(&key), "the audit log holds no key");
    let (code, out, err) = run(&server, &admin, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    drop(server);

    // A replica with another master key refuses to start, saying why.
    let other = tempfile::tempdir().expect("dir");
    let db = match &url {
        Some(u) => u.clone(),
        None => dir.path().join("certctl.db").display().to_string(),
    };
    let out = std::process::Command::new(super::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(other.path())
        .env("CERTCTL_DATABASE_URL", &db)
        .env_remove("CERTCTL_MASTER_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not start: {stderr}");
    assert!(stderr.contains("same master key"), "{stderr}");
}

#[tokio::test]
async fn four_eyes_install_sqlite() {
    four_eyes_install(false).await;
}

#[tokio::test]
async fn four_eyes_install_postgres() {
    four_eyes_install(true).await;
}
