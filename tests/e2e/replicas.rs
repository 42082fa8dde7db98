//! Several `certctl serve` processes on one store (issue 6): three on one
//! PostgreSQL database and two on one SQLite file renew 1,000 due
//! certificates exactly once, leave no job behind, and run every singleton
//! loop tick on one process (checked on the `loop_runs` record). A process
//! killed with SIGKILL in the middle of issuer jobs loses nothing: another
//! reclaims the jobs when their lease runs out and finishes each once.
//!
//! The inventory is seeded through the engine in this process (the real
//! operations, no HTTP round trip per certificate), on the same database and
//! master key the servers are then given.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certctl_engine::Engine;
use certctl_engine::clock::{Clock, ManualClock, SystemClock};
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeyAlgorithm, KeygenMode, Principal};
use certctl_engine::ops;
use certctl_engine::pki::{self, MasterKey, SubjectNames};
use certctl_engine::store::{Store, StoreLocation};
use serde_json::json;
use sqlx::Connection;

use super::Server;

/// Bound for anything these tests wait on; reached only on failure.
const DEADLINE: Duration = Duration::from_secs(240);
const DAY: i64 = 86_400;

/// A fresh database for one test: a SQLite file or a PostgreSQL database.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres {
        url: String,
        admin_url: String,
        name: String,
    },
}

impl Db {
    fn sqlite(dir: &Path) -> Db {
        Db::Sqlite(dir.join("shared.db"))
    }

    /// A new database on the test PostgreSQL, or None (skipped) when it is
    /// unreachable and peers are not required.
    async fn postgres() -> Option<Db> {
        let admin_url = std::env::var("CERTCTL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) if std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() != Ok("1") => {
                eprintln!("SKIPPED: PostgreSQL at {admin_url} is not reachable ({e})");
                return None;
            }
            Err(e) => panic!("PostgreSQL at {admin_url} is required but not reachable: {e}"),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .subsec_nanos();
        let name = format!("certctl_replicas_{}_{nanos}", std::process::id());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&admin_url);
        Some(Db::Postgres {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }

    fn url(&self) -> String {
        match self {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::Postgres { url, .. } => url.clone(),
        }
    }

    fn location(&self) -> StoreLocation {
        match self {
            Db::Sqlite(p) => StoreLocation::SqliteFile(p.clone()),
            Db::Postgres { url, .. } => StoreLocation::Postgres(url.clone()),
        }
    }

    /// One integer from a query, read behind the servers' backs.
    async fn scalar(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(p) => {
                let sql = sqlx::AssertSqlSafe(sql.to_owned());
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display()))
                    .await
                    .expect("open SQLite");
                let v: i64 = sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("query");
                let _ = c.close().await;
                v
            }
            Db::Postgres { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url)
                    .await
                    .expect("open PostgreSQL");
                // COUNT is BIGINT, CASE and literals are INTEGER: one type.
                let sql =
                    sqlx::AssertSqlSafe(format!("SELECT CAST(v AS BIGINT) FROM ({sql}) AS q(v)"));
                let v: i64 = sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("query");
                let _ = c.close().await;
                v
            }
        }
    }

    async fn drop_db(self) {
        if let Db::Postgres {
            admin_url, name, ..
        } = self
        {
            let mut c = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("admin");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    }
}

/// Polls `check` (a count) until it returns `want`, or panics after the deadline.
async fn until_count(db: &Db, what: &str, sql: &str, want: i64) {
    let start = Instant::now();
    let mut last = -1;
    while start.elapsed() < DEADLINE {
        last = db.scalar(sql).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: still {last}, wanted {want} after {DEADLINE:?} ({sql})");
}

/// Every loop at a one-second interval, so a test sees many ticks.
fn fast_loops(extra: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec![
        "--renewal-check-interval-seconds",
        "1",
        "--job-lease-interval-seconds",
        "1",
        "--approval-expiry-interval-seconds",
        "1",
        "--notification-interval-seconds",
        "1",
        "--agent-health-interval-seconds",
        "1",
        "--short-lived-expiry-interval-seconds",
        "1",
        "--job-interval-seconds",
        "1",
        "--crl-ocsp-refresh-interval-seconds",
        "1",
    ];
    v.extend_from_slice(extra);
    v
}

/// An engine on the test database, with the given clock.
async fn seeder(db: &Db, master: &MasterKey, clock: Arc<dyn Clock>) -> Arc<Engine> {
    let store = Store::open(&db.location()).await.expect("open store");
    let config = EngineConfig {
        keygen_mode: KeygenMode::Server,
        ..EngineConfig::default()
    };
    let master = MasterKey::from_base64(&master.to_base64()).expect("master key");
    Engine::start(store, clock, config, master)
        .await
        .expect("engine")
}

async fn call<O: certctl_engine::ops::Operation>(
    engine: &Engine,
    input: serde_json::Value,
) -> O::Output {
    engine
        .call::<O>(
            &Principal::system("test-seed"),
            serde_json::from_value(input).expect("input"),
        )
        .await
        .expect("call")
        .completed()
        .expect("completed")
}

/// No singleton loop tick ran on two processes.
const DOUBLE_TICKS: &str = "SELECT COUNT(*) FROM (SELECT loop_name, tick FROM loop_runs \
     GROUP BY loop_name, tick HAVING COUNT(*) > 1) d";

async fn replicas_renew_each_due_certificate_once(db: Db, processes: usize) {
    const N: i64 = 1000;
    let master = MasterKey::generate().expect("master key");
    let key = master.to_base64().to_string();
    let url = db.url();
    let envs = [
        ("CERTCTL_DATABASE_URL", url.as_str()),
        ("CERTCTL_MASTER_KEY", key.as_str()),
        ("RUST_LOG", "error"),
    ];
    let args = fast_loops(&["--keygen-mode", "server"]);
    let dirs: Vec<tempfile::TempDir> = (0..processes)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let servers: Vec<Server> = dirs
        .iter()
        .map(|d| Server::start_with_env(d.path(), &args, &envs))
        .collect();

    // 1,000 certificates issued 40 days ago with the profile's 47-day
    // lifetime: all inside their renewal window (30 days before expiry)
    // while the servers already run. A renewal issues 47 days from now,
    // which is not due again.
    let now = SystemClock.now();
    let clock = Arc::new(ManualClock::new(now - 40 * DAY));
    let seed = seeder(&db, &master, clock).await;
    let profile = call::<ops::SaveProfile>(
        &seed,
        json!({ "name": "server-keys", "keygen_mode": "server" }),
    )
    .await;
    for i in 0..N {
        let cert = call::<ops::CreateCertificate>(
            &seed,
            json!({ "common_name": format!("r{i}.replicas.test"), "profile_id": profile.id }),
        )
        .await;
        call::<ops::IssueCertificate>(&seed, json!({ "id": cert.id })).await;
    }
    seed.store().close().await;

    until_count(
        &db,
        "certificates renewed",
        "SELECT COUNT(*) FROM (SELECT certificate_id FROM certificate_versions \
         GROUP BY certificate_id HAVING COUNT(*) >= 2) r",
        N,
    )
    .await;
    // Let every process run a few more renewal ticks: none renews again.
    let tick = db
        .scalar("SELECT COALESCE(MAX(tick), 0) FROM loop_runs WHERE loop_name = 'renewal'")
        .await;
    until_count(
        &db,
        "renewal ticks after the last renewal",
        &format!(
            "SELECT CASE WHEN COUNT(*) >= 3 THEN 1 ELSE 0 END FROM loop_runs \
             WHERE loop_name = 'renewal' AND tick > {tick}"
        ),
        1,
    )
    .await;

    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM certificate_versions").await,
        2 * N,
        "every certificate has its first version and exactly one renewal"
    );
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT certificate_id FROM certificate_versions \
             GROUP BY certificate_id HAVING COUNT(*) <> 2) r"
        )
        .await,
        0
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'renewal' AND status = 'completed'")
            .await,
        N,
        "one completed renewal job per certificate"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM jobs WHERE status NOT IN ('completed', 'cancelled')")
            .await,
        0,
        "no job stuck pending, running or failed"
    );
    assert_eq!(db.scalar(DOUBLE_TICKS).await, 0, "a loop tick ran twice");
    for l in [
        "renewal",
        "job-leases",
        "approval-expiry",
        "revocation",
        "notifications",
        "agent-health",
        "short-lived-expiry",
    ] {
        let runs = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM loop_runs WHERE loop_name = '{l}'"
            ))
            .await;
        assert!(runs >= 3, "loop {l} ran {runs} times");
    }
    drop(servers);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_on_one_postgresql_renew_each_certificate_once() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    replicas_renew_each_due_certificate_once(db, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_sqlite_file_renew_each_certificate_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    replicas_renew_each_due_certificate_once(Db::sqlite(dir.path()), 2).await;
}

// ------------------------------------------------------------------ crash

/// An openssl CA and a signing script that marks its start, then blocks
/// until the `gate` file exists (so a job is in flight for as long as the
/// test wants).
fn blocking_script_ca(dir: &Path) -> String {
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=certctl crash test CA",
            "-days",
            "30",
        ])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(ok.success(), "openssl req");
    let script = dir.join("sign.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
set -eu
touch "$CA_DIR/started.$CERTCTL_CERTIFICATE_ID.$$"
n=0
while [ ! -e "$CA_DIR/gate" ]; do
    n=$((n + 1)); [ "$n" -gt 1200 ] && { echo "gate never opened" >&2; exit 3; }
    sleep 0.1
done
printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n' "$CERTCTL_COMMON_NAME" > ext.cnf
openssl x509 -req -in "$CERTCTL_CSR_FILE" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$CERTCTL_TTL_DAYS" -extfile ext.cnf \
    -out "$CERTCTL_CERT_FILE" 2>/dev/null
cat "$CA_DIR/ca.pem" > "$CERTCTL_CHAIN_FILE"
"#,
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script.display().to_string()
}

fn started_runs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("started."))
        })
        .count()
}

async fn killed_process_jobs_are_reclaimed_and_finished_once(db: Db) {
    const N: i64 = 4;
    let ca = tempfile::tempdir().expect("tempdir");
    let script = blocking_script_ca(ca.path());
    let master = MasterKey::generate().expect("master key");
    let key = master.to_base64().to_string();
    let url = db.url();
    let envs = [
        ("CERTCTL_DATABASE_URL", url.as_str()),
        ("CERTCTL_MASTER_KEY", key.as_str()),
        ("RUST_LOG", "error"),
    ];

    // Four issuance jobs for a script CA, queued before any server runs.
    let seed = seeder(&db, &master, Arc::new(SystemClock)).await;
    let issuer = call::<ops::CreateIssuer>(
        &seed,
        json!({
            "name": "blocking", "kind": "script",
            "config": { "command": script, "timeout_seconds": 300 },
            "secrets": { "env": { "CA_DIR": ca.path().display().to_string() } },
        }),
    )
    .await;
    for i in 0..N {
        let cn = format!("c{i}.crash.test");
        let cert = call::<ops::CreateCertificate>(
            &seed,
            json!({ "common_name": cn, "issuer_id": issuer.id }),
        )
        .await;
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("key");
        let names = SubjectNames {
            dns: vec![cn.clone()],
            ..Default::default()
        };
        let csr = pki::csr_for(&key, &cn, &names).expect("csr");
        call::<ops::IssueCertificate>(&seed, json!({ "id": cert.id, "csr_pem": csr })).await;
    }
    seed.store().close().await;
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'pending'")
            .await,
        N
    );

    // A short job lease and loop lease margin, so the survivor takes over in seconds.
    let args = fast_loops(&[
        "--job-lease-seconds",
        "5",
        "--loop-lease-margin-seconds",
        "1",
    ]);
    let a_dir = tempfile::tempdir().expect("tempdir");
    let a = Server::start_with_env(a_dir.path(), &args, &envs);
    // A claims all four (one claim) and blocks in the first one's script.
    until_count(
        &db,
        "jobs claimed by the first process",
        "SELECT COUNT(*) FROM jobs WHERE status = 'running'",
        N,
    )
    .await;
    let start = Instant::now();
    while started_runs(ca.path()) == 0 {
        assert!(start.elapsed() < DEADLINE, "the script never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill_hard();
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
            .await,
        N,
        "the killed process left its jobs running"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM certificate_versions").await,
        0
    );
    std::fs::write(ca.path().join("gate"), b"").expect("open the gate");

    let b_dir = tempfile::tempdir().expect("tempdir");
    let b = Server::start_with_env(b_dir.path(), &args, &envs);
    until_count(
        &db,
        "jobs completed by the second process",
        "SELECT COUNT(*) FROM jobs WHERE status = 'completed'",
        N,
    )
    .await;
    // A few more reclaim ticks: nothing runs twice.
    let tick = db
        .scalar("SELECT COALESCE(MAX(tick), 0) FROM loop_runs WHERE loop_name = 'job-leases'")
        .await;
    until_count(
        &db,
        "job-lease ticks after completion",
        &format!(
            "SELECT CASE WHEN COUNT(*) >= 3 THEN 1 ELSE 0 END FROM loop_runs \
             WHERE loop_name = 'job-leases' AND tick > {tick}"
        ),
        1,
    )
    .await;
    assert_eq!(
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT certificate_id FROM certificate_versions \
             GROUP BY certificate_id HAVING COUNT(*) = 1) r"
        )
        .await,
        N,
        "each certificate issued exactly once"
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM certificate_versions").await,
        N
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM jobs WHERE status <> 'completed'")
            .await,
        0
    );
    // The reclaim is on record, and the survivor ran each job's script once
    // (the killed process had started only the first).
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM jobs WHERE attempts = 2")
            .await,
        N,
        "every job was reclaimed from the killed process"
    );
    assert_eq!(started_runs(ca.path()), 1 + N as usize);
    assert_eq!(db.scalar(DOUBLE_TICKS).await, 0, "a loop tick ran twice");
    drop(b);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_process_jobs_are_reclaimed_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    killed_process_jobs_are_reclaimed_and_finished_once(Db::sqlite(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_process_jobs_are_reclaimed_on_postgresql() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    killed_process_jobs_are_reclaimed_and_finished_once(db).await;
}
