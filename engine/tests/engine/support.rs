//! Test harness: a fresh store per test on each backend, a manual clock,
//! principals of every role, and helpers to make keys and CSRs.

use std::sync::Arc;

use certctl_engine::Engine;
use certctl_engine::clock::ManualClock;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeyAlgorithm, Principal, Role};
use certctl_engine::ops::{self, Operation, Outcome};
use certctl_engine::pki::{self, MasterKey, SubjectNames};
use certctl_engine::store::{Store, StoreLocation};
use sqlx::Connection;

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test runs on.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(std::path::PathBuf),
    Postgres {
        admin_url: String,
        url: String,
        name: String,
    },
}

pub struct Harness {
    pub engine: Arc<Engine>,
    pub clock: ManualClock,
    pub db: Db,
    pub master: Arc<MasterKey>,
    _dir: tempfile::TempDir,
}

/// The real time, so certificates verify with openssl without -attime.
pub fn wall_clock_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn peers_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() == Ok("1")
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).expect("rng");
    hex::encode(b)
}

impl Db {
    pub async fn sqlite(dir: &tempfile::TempDir) -> Db {
        Db::Sqlite(dir.path().join("certctl.db"))
    }

    /// A fresh PostgreSQL database, or `None` (skip) when PostgreSQL is not
    /// reachable and peers are not required.
    pub async fn postgres() -> Option<Db> {
        let admin_url =
            std::env::var("CERTCTL_TEST_POSTGRES_URL").unwrap_or_else(|_| PG_DEFAULT.to_owned());
        let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) if !peers_required() => {
                eprintln!(
                    "SKIPPED: PostgreSQL at {admin_url} is not reachable ({e}); set CERTCTL_REQUIRE_PEERS=1 to fail instead"
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL at {admin_url} is required but not reachable: {e}"),
        };
        let name = format!("certctl_test_{}", random_suffix());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
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

    pub fn location(&self) -> StoreLocation {
        match self {
            Db::Sqlite(p) => StoreLocation::SqliteFile(p.clone()),
            Db::Postgres { url, .. } => StoreLocation::Postgres(url.clone()),
        }
    }

    /// Runs raw SQL behind the engine's back (tamper tests).
    pub async fn raw(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(p) => {
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display())).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await?;
            }
            Db::Postgres { url, .. } => {
                let mut c = sqlx::PgConnection::connect(url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn drop_database(&self) {
        if let Db::Postgres {
            admin_url, name, ..
        } = self
            && let Ok(mut c) = sqlx::PgConnection::connect(admin_url).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    }
}

impl Harness {
    pub async fn new(db: Option<Db>, config: EngineConfig) -> Option<Harness> {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = match db {
            Some(db) => db,
            None => Db::sqlite(&dir).await,
        };
        let clock = ManualClock::new(wall_clock_now());
        let master = Arc::new(MasterKey::generate().expect("master key"));
        let engine = Self::engine_on(&db, &clock, config, &master).await;
        Some(Harness {
            engine,
            clock,
            db,
            master,
            _dir: dir,
        })
    }

    /// Another engine (another "process") on the same database.
    pub async fn engine_on(
        db: &Db,
        clock: &ManualClock,
        config: EngineConfig,
        master: &MasterKey,
    ) -> Arc<Engine> {
        let store = Store::open(&db.location()).await.expect("open store");
        let master = MasterKey::from_base64(&master.to_base64()).expect("master copy");
        Engine::start(store, Arc::new(clock.clone()), config, master)
            .await
            .expect("start engine")
    }

    pub async fn finish(self) {
        self.engine.store().close().await;
        self.db.drop_database().await;
    }

    pub fn admin(&self) -> Principal {
        principal("pr-test-admin", Role::Admin)
    }

    pub async fn call<O: Operation>(
        &self,
        who: &Principal,
        input: O::Input,
    ) -> certctl_engine::Result<Outcome<O::Output>> {
        self.engine.call::<O>(who, input).await
    }

    /// Calls and expects completion.
    pub async fn done<O: Operation>(&self, who: &Principal, input: O::Input) -> O::Output {
        match self.engine.call::<O>(who, input).await {
            Ok(Outcome::Completed { result }) => result,
            Ok(Outcome::ApprovalRequired(t)) => {
                panic!("{} unexpectedly gated: {t:?}", O::META.name)
            }
            Err(e) => panic!("{} failed: {e}", O::META.name),
        }
    }

    /// Reads one object of `kind` through `get_object`, typed.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        who: &Principal,
        kind: &str,
        id: &str,
    ) -> T {
        let input = serde_json::from_value(serde_json::json!({ "kind": kind, "id": id }))
            .expect("get_object input");
        let out = self
            .done::<certctl_engine::ops::GetObject>(who, input)
            .await;
        serde_json::from_value(serde_json::to_value(out).expect("json")).expect("typed object")
    }

    /// Lists objects of `kind` through `list_objects` (with more input, such
    /// as filters, from `extra`), typed.
    pub async fn list<T: serde::de::DeserializeOwned>(
        &self,
        who: &Principal,
        kind: &str,
        extra: serde_json::Value,
    ) -> certctl_engine::ops::List<T> {
        let mut input = extra;
        input["kind"] = kind.into();
        let input = serde_json::from_value(input).expect("list_objects input");
        let out = self
            .done::<certctl_engine::ops::ListObjects>(who, input)
            .await;
        serde_json::from_value(serde_json::to_value(out).expect("json")).expect("typed list")
    }

    /// `delete_object` of one object of `kind`.
    pub async fn delete(
        &self,
        who: &Principal,
        kind: &str,
        id: &str,
    ) -> certctl_engine::Result<Outcome<certctl_engine::ops::Deleted>> {
        let input = serde_json::from_value(serde_json::json!({ "kind": kind, "id": id }))
            .expect("delete_object input");
        self.call::<certctl_engine::ops::DeleteObject>(who, input)
            .await
    }

    /// Creates a certificate with the given names under the default profile.
    pub async fn create_cert(
        &self,
        cn: &str,
        sans: &[&str],
    ) -> certctl_engine::domain::ManagedCertificate {
        self.done::<ops::CreateCertificate>(
            &self.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": cn,
                "sans": sans,
            }))
            .expect("input"),
        )
        .await
    }

    /// Creates and issues a certificate from a fresh P-256 CSR.
    pub async fn issued_cert(&self, cn: &str) -> certctl_engine::ops::IssueOutput {
        let c = self.create_cert(cn, &[]).await;
        let csr = csr(KeyAlgorithm::EcdsaP256, cn, &[cn]);
        self.done::<ops::IssueCertificate>(
            &self.admin(),
            ops::IssueCertificateInput {
                id: c.id,
                csr_pem: Some(csr),
                ttl_seconds: None,
            },
        )
        .await
    }

    pub async fn audit_actions(&self) -> Vec<(String, String, String)> {
        let events = self
            .engine
            .store()
            .list_audit(&Default::default(), 1000)
            .await
            .expect("audit");
        events
            .into_iter()
            .rev()
            .map(|e| (e.action, e.outcome.as_str().to_owned(), e.actor))
            .collect()
    }
}

pub fn principal(id: &str, role: Role) -> Principal {
    Principal {
        id: id.to_owned(),
        name: id.to_owned(),
        role,
        agent_id: None,
        address: None,
    }
}

/// A CSR for a fresh key of `alg` with the given DNS names.
pub fn csr(alg: KeyAlgorithm, cn: &str, dns: &[&str]) -> String {
    let key = pki::generate_key(alg).expect("key");
    let names = SubjectNames {
        dns: dns.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    pki::csr_for(&key, cn, &names).expect("csr")
}

/// Runs each listed async test function once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let h = $crate::engine::support::Harness::new(None, Default::default()).await.expect("harness");
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::engine::support::Db::postgres().await else { return };
                    let h = $crate::engine::support::Harness::new(Some(db), Default::default()).await.expect("harness");
                    super::$name(&h).await;
                    h.finish().await;
                }
            )*
        }
    };
}

/// A peer program for a test: `$env` when set, else `name` on PATH. `None`
/// (skip) when missing, unless peers are required (then the test fails).
pub fn peer_binary(env: &str, name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os(env)
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        if peers_required() {
            panic!("{name} is required (set {env} or put it on PATH; scripts/test installs it)");
        }
        eprintln!("SKIPPED: {name} is not installed; set CERTCTL_REQUIRE_PEERS=1 to fail instead");
    }
    found
}

/// A free loopback TCP port (bound and released; the peer binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `N` distinct free loopback ports: all are held until the last is bound,
/// so two of them can never be the same port (separate [`free_port`] calls
/// can return a port twice once it is released).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("free port").port())
}

/// Waits until something accepts TCP connections on `port` (bounded).
pub async fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `child` accepts TCP connections on `port`; `false` when it
/// exited first (a port it was given was taken meanwhile, say by another
/// test's outgoing connection: free ports come from the ephemeral range).
pub async fn child_listens(child: &mut Peer, port: u16, what: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        if let Ok(Some(_)) = child.0.try_wait() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not start listening on port {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A child process killed when the test ends.
pub struct Peer(pub tokio::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Runs the issuer job worker once, as the scheduler's job loop does.
pub async fn run_jobs(h: &Harness) -> certctl_engine::issuers::runner::RunReport {
    certctl_engine::issuers::runner::run_due(&h.engine, "test-worker", 25)
        .await
        .expect("run jobs")
}

/// Runs a command and returns stdout, panicking with stderr on failure.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
