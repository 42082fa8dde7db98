//! The test rig: an engine on a temporary SQLite store, its router, and
//! helpers to send requests and make keys and certificates.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use certctl_api::{ApiOptions, AppState};
use certctl_engine::Engine;
use certctl_engine::clock::SystemClock;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{KeyAlgorithm, Principal};
use certctl_engine::ops::Outcome;
use certctl_engine::pki::{self, MasterKey, SubjectNames};
use certctl_engine::store::{Store, StoreLocation};
use serde_json::{Value, json};
use tower::ServiceExt;

static NEXT_KEY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

pub struct Rig {
    pub engine: Arc<Engine>,
    pub store: Store,
    pub router: Router,
    pub state: AppState,
    pub admin_key: String,
    pub admin: Principal,
    pg: Option<(String, String)>,
    location: StoreLocation,
    _dir: tempfile::TempDir,
}

/// What a request returned.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an RFC 7807 problem with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.content_type(), "application/problem+json", "{self:?}");
        assert_eq!(
            self.body["type"],
            format!("https://certctl.dev/problems/{code}"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(self.body["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(self.body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    }
}

/// Which database a rig runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn peers_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() == Ok("1")
}

/// A fresh PostgreSQL database URL and its name, or `None` (skip) when
/// PostgreSQL is not reachable and peers are not required.
async fn postgres_database() -> Option<(String, String, String)> {
    use sqlx::Connection;
    let admin = std::env::var("CERTCTL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if !peers_required() => {
            eprintln!(
                "SKIPPED: PostgreSQL at {admin} is not reachable ({e}); set CERTCTL_REQUIRE_PEERS=1 to fail instead"
            );
            return None;
        }
        Err(e) => panic!("PostgreSQL at {admin} is required but not reachable: {e}"),
    };
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).expect("rng");
    let name = format!("certctl_api_test_{}", hex::encode(b));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .unwrap_or(admin.clone());
    Some((format!("{base}/{name}"), admin, name))
}

impl Rig {
    pub async fn new() -> Self {
        Self::on(Backend::Sqlite, ApiOptions::default())
            .await
            .expect("sqlite rig")
    }

    /// A SQLite rig whose engine runs with `config`.
    pub async fn with_config(config: EngineConfig) -> Self {
        Self::on_with(Backend::Sqlite, ApiOptions::default(), config)
            .await
            .expect("sqlite rig")
    }

    /// A rig on `backend` with `options`; `None` when PostgreSQL is skipped.
    pub async fn on(backend: Backend, options: ApiOptions) -> Option<Self> {
        Self::on_with(backend, options, EngineConfig::default()).await
    }

    pub async fn on_with(
        backend: Backend,
        options: ApiOptions,
        config: EngineConfig,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (location, pg) = match backend {
            Backend::Sqlite => (
                StoreLocation::SqliteFile(dir.path().join("certctl.db")),
                None,
            ),
            Backend::Postgres => {
                let (url, admin, name) = postgres_database().await?;
                (StoreLocation::Postgres(url), Some((admin, name)))
            }
        };
        let store = Store::open(&location).await.expect("store");
        let rig_location = location.clone();
        let engine = Engine::start(
            store.clone(),
            Arc::new(SystemClock),
            config,
            MasterKey::generate().expect("master key"),
        )
        .await
        .expect("engine");
        let key = engine
            .bootstrap_admin_key()
            .await
            .expect("bootstrap")
            .expect("first start mints the admin key");
        let admin = engine
            .authenticate(&key.key)
            .await
            .expect("admin key works");
        let state = AppState::with_options(engine.clone(), options);
        let router = certctl_api::app(state.clone());
        Some(Self {
            engine,
            store,
            router,
            state,
            admin_key: key.key.to_string(),
            admin,
            pg,
            location: rig_location,
            _dir: dir,
        })
    }

    /// Runs SQL on a connection of the test's own, outside the engine (to
    /// break the database on purpose, for example).
    pub async fn sql(&self, statements: &[&'static str]) {
        use sqlx::Connection;
        match &self.location {
            StoreLocation::SqliteFile(path) => {
                let url = format!("sqlite://{}", path.display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
                for s in statements {
                    sqlx::raw_sql(*s).execute(&mut c).await.expect(s);
                }
                c.close().await.expect("close");
            }
            StoreLocation::Postgres(url) => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
                for s in statements {
                    sqlx::raw_sql(*s).execute(&mut c).await.expect(s);
                }
                c.close().await.expect("close");
            }
        }
    }

    /// Closes the store and drops a PostgreSQL test database.
    pub async fn finish(self) {
        self.state.flush_request_audit().await;
        self.store.close().await;
        if let Some((admin, name)) = &self.pg {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        }
    }

    /// Sends a prepared request to `router` (another configuration of this rig's engine).
    pub async fn send_via(&self, router: &Router, req: Request<Body>) -> Reply {
        let res = router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn put(&self, uri: &str, key: Option<&str>, body: &str) -> Reply {
        self.send(Method::PUT, uri, key, Some(body)).await
    }

    pub async fn delete(&self, uri: &str, key: Option<&str>) -> Reply {
        self.send(Method::DELETE, uri, key, None).await
    }

    /// Sends one request through the router in memory.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(
                body.map(|b| Body::from(b.to_owned()))
                    .unwrap_or_else(Body::empty),
            )
            .expect("request");
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            // Non-JSON bodies (metrics) come back as a string.
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str, key: Option<&str>) -> Reply {
        self.send(Method::GET, uri, key, None).await
    }

    pub async fn post(&self, uri: &str, key: Option<&str>, body: &str) -> Reply {
        self.send(Method::POST, uri, key, Some(body)).await
    }

    /// Runs an operation as the admin, directly on the engine.
    pub async fn op(&self, name: &str, input: Value) -> Value {
        let op = certctl_engine::ops::find(name).expect("operation exists");
        match op
            .call_json(&self.engine, &self.admin, input)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        {
            Outcome::Completed { result } => result,
            Outcome::ApprovalRequired(t) => panic!("{name} was gated: {}", t.approval_id),
        }
    }

    /// A new API key with the given role, made with `create_principal`.
    pub async fn key(&self, role: &str) -> String {
        let out = self
            .op(
                "create_principal",
                json!({ "name": format!("test {role} {}", NEXT_KEY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)), "role": role }),
            )
            .await;
        out["api_key"].as_str().expect("api_key").to_owned()
    }

    /// A certificate created and issued from a CSR; returns its id.
    pub async fn issued_certificate(&self, name: &str) -> String {
        let c = self
            .op("create_certificate", json!({ "common_name": name }))
            .await;
        let id = c["id"].as_str().expect("id").to_owned();
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("key");
        let names = SubjectNames {
            dns: vec![name.to_owned()],
            ..SubjectNames::default()
        };
        let csr = pki::csr_for(&key, name, &names).expect("csr");
        self.op("issue_certificate", json!({ "id": id, "csr_pem": csr }))
            .await;
        id
    }
}

/// Runs each listed `async fn(&Rig)` on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let rig = $crate::support::Rig::on($crate::support::Backend::Sqlite, Default::default()).await.expect("rig");
                    super::$name(&rig).await;
                    rig.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(rig) = $crate::support::Rig::on($crate::support::Backend::Postgres, Default::default()).await else { return };
                    super::$name(&rig).await;
                    rig.finish().await;
                }
            )*
        }
    };
}
