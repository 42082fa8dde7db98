//! End to end: the real `certctl` binary serving on a free loopback port,
//! driven over HTTP and through its own client commands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use certctl_api::client::{Client, ClientError};

#[path = "e2e/adversarial_audit.rs"]
mod adversarial_audit;
#[path = "e2e/adversarial_cli.rs"]
mod adversarial_cli;
#[path = "e2e/cli.rs"]
mod cli;

const BIN: &str = env!("CARGO_BIN_EXE_certctl");
/// Generous bounds for a loaded 2-core CI machine; reached only on failure.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `certctl serve`.
struct Server {
    child: Option<Child>,
    base: String,
    /// stdout lines printed before `listening on ...`.
    banner: Vec<String>,
}

impl Server {
    /// Starts `certctl serve` on 127.0.0.1:0 and waits for its `listening on` line.
    fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[])
    }

    /// The same, with extra environment variables (a database URL, a master key).
    fn start_with_env(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env_remove("CERTCTL_MASTER_KEY")
            .env_remove("CERTCTL_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn certctl serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let base = loop {
            match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => match line.strip_prefix("listening on ") {
                    Some(url) => break url.trim().to_owned(),
                    None => banner.push(line),
                },
                Err(e) => {
                    let _ = child.kill();
                    panic!("certctl serve did not announce its address ({e}); printed {banner:?}");
                }
            }
        };
        Self {
            child: Some(child),
            base,
            banner,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the process with SIGKILL: no shutdown, no lease given back.
    fn kill_hard(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// Sends SIGTERM and returns the exit status.
    fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let mut child = self.child.take().expect("running");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(STOP_TIMEOUT)
            .expect("certctl serve did not stop after SIGTERM")
            .expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `/health` answers, retrying a bounded number of times.
async fn wait_healthy(client: &Client) -> serde_json::Value {
    let mut last = None;
    for _ in 0..100 {
        match client.health().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never became healthy: {last:?}");
}

/// Drops the append-only trigger and rewrites one audit event's actor.
async fn tamper_audit_event(db: &Path, seq: i64) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    let sql = format!(
        "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET actor = 'mallory' WHERE seq = {seq}"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .expect("tamper");
    c.close().await.expect("close");
}

/// Runs SQL on a control plane's SQLite file behind its back, as someone
/// with the database but not the master key would (tamper tests).
async fn sqlite_exec(db: &Path, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .expect("run SQL behind the server's back");
    c.close().await.expect("close");
}

fn certctl(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CERTCTL_API_KEY")
        .env_remove("CERTCTL_API_KEY_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run certctl")
}

#[tokio::test]
async fn serve_authenticates_audits_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let anonymous = Client::new(&server.base, None).expect("client");
    assert_eq!(wait_healthy(&anonymous).await["status"], "healthy");

    // The first admin key: written 0600 and printed once.
    let key_path = dir.path().join("admin.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path)
            .expect("admin.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "admin.key mode {mode:o}");
    }
    let key = std::fs::read_to_string(&key_path)
        .expect("admin.key")
        .trim()
        .to_owned();
    assert!(key.starts_with("cck_"), "{key}");
    assert!(
        server.banner.iter().any(|l| l.contains(&key)),
        "the key is printed on first start: {:?}",
        server.banner
    );

    let admin = Client::new(&server.base, Some(key.clone())).expect("client");
    let page = admin
        .list_certificates(&[])
        .await
        .expect("list with the admin key");
    assert_eq!(page.total, Some(0));
    match anonymous.list_certificates(&[]).await {
        Err(ClientError::Api { problem }) => assert_eq!(problem.status, 401),
        other => panic!("expected 401, got {other:?}"),
    }

    let dir_arg = dir.path().to_str().expect("utf-8 temp path");
    let out = certctl(&[
        "audit",
        "verify",
        "--server",
        &server.base,
        "--data-dir",
        dir_arg,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "audit verify failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("audit chain intact"), "{stdout}");
    let out = certctl(&[
        "status",
        "--format",
        "json",
        "--server",
        &server.base,
        "--data-dir",
        dir_arg,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["summary"]["issuers"], 1);

    // Someone with write access to the database file edits the trail behind
    // certctl's back: verify fails and names the event.
    tamper_audit_event(&dir.path().join("certctl.db"), 2).await;
    let out = certctl(&[
        "audit",
        "verify",
        "--server",
        &server.base,
        "--data-dir",
        dir_arg,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a broken chain must fail: {stdout}");
    assert!(stdout.contains("BROKEN at event seq 2"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let exit = server.terminate();
    assert!(
        exit.success(),
        "certctl serve exited with {exit:?} after SIGTERM"
    );

    // A second start on the same data dir keeps the key and prints nothing about it.
    let again = Server::start(dir.path(), &[]);
    assert!(
        again.banner.iter().all(|l| !l.contains("cck_")),
        "{:?}",
        again.banner
    );
    let admin = Client::new(&again.base, Some(key)).expect("client");
    admin
        .list_certificates(&[])
        .await
        .expect("the old key still works");
    assert!(again.terminate().success());
}

#[tokio::test]
async fn demo_seeds_fifteen_certificates_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &["--demo"]);
    let key = std::fs::read_to_string(dir.path().join("admin.key")).expect("admin.key");
    let client = Client::new(&server.base, Some(key.trim().to_owned())).expect("client");
    wait_healthy(&client).await;
    let page = client
        .list_certificates(&[("per_page", "100"), ("fields", "status")])
        .await
        .expect("list");
    assert_eq!(page.total, Some(15));
    assert_eq!(page.data.len(), 15);
    let count = |s: &str| page.data.iter().filter(|c| c.0["status"] == s).count();
    assert!(count("valid") > 0 && count("expiring") > 0, "{page:?}");
    assert!(count("expired") > 0 && count("revoked") > 0, "{page:?}");
    let pending = client
        .call_completed::<serde_json::Value>(
            "list_approvals",
            &serde_json::json!({ "status": "pending" }),
        )
        .await
        .expect("approvals");
    assert_eq!(
        pending["data"].as_array().map(Vec::len),
        Some(1),
        "{pending}"
    );
    assert!(server.terminate().success());

    // Seeding is idempotent across restarts.
    let again = Server::start(dir.path(), &["--demo"]);
    let client = Client::new(&again.base, Some(key.trim().to_owned())).expect("client");
    let page = client
        .list_certificates(&[("per_page", "100")])
        .await
        .expect("list");
    assert_eq!(page.total, Some(15));
    assert!(again.terminate().success());
}

#[test]
fn refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let dir_arg = dir.path().to_str().expect("utf-8 temp path");
    let out = certctl(&["serve", "--listen", "0.0.0.0:0", "--data-dir", dir_arg]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    // Nothing was created before refusing.
    assert!(!dir.path().join("admin.key").exists());
}

#[path = "e2e/agent.rs"]
mod agent;

#[path = "e2e/replicas.rs"]
mod replicas;

#[path = "e2e/agent_restart.rs"]
mod agent_restart;

#[path = "e2e/adversarial_agent.rs"]
mod adversarial_agent;
