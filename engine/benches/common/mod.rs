//! Helpers shared by the `store` and `issuance` benchmarks: environment knobs,
//! machine facts, a small deterministic PRNG, latency statistics, and a fresh
//! PostgreSQL database per run.
//!
//! Benchmarks (unlike the engine) may read the environment:
//! - `CERTCTL_BENCH_SMOKE=1`: tiny sizes, finishes in seconds (CI proves the benches run);
//! - `CERTCTL_BENCH_N`: size of the run (certificates to seed / to issue);
//! - `CERTCTL_BENCH_PG_URL`: PostgreSQL server URL (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! - `CERTCTL_REQUIRE_PEERS=1`: fail instead of skipping when PostgreSQL is unreachable.

#![allow(dead_code)] // each bench uses a different subset

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use certctl_engine::Engine;
use certctl_engine::clock::SystemClock;
use certctl_engine::config::EngineConfig;
use certctl_engine::pki::MasterKey;
use certctl_engine::store::{Store, StoreLocation};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
}

pub fn smoke() -> bool {
    env_flag("CERTCTL_BENCH_SMOKE")
}

/// `CERTCTL_BENCH_N`, else `full` (or `smoke_n` in smoke mode).
pub fn bench_n(full: usize, smoke_n: usize) -> anyhow::Result<usize> {
    match std::env::var("CERTCTL_BENCH_N") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("CERTCTL_BENCH_N={v} is not a number")),
        Err(_) => Ok(if smoke() { smoke_n } else { full }),
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A few lines describing the machine, for the report header.
pub fn machine_facts() -> Vec<(String, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    let model = field("model name").unwrap_or_else(|| "unknown".into());
    let mhz = field("cpu MHz").unwrap_or_else(|| "?".into());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            let f: Vec<&str> = s.split_whitespace().take(3).collect();
            format!(
                "{} (1, 5, 15 min) at start; other processes share these cores",
                f.join(" ")
            )
        })
        .unwrap_or_else(|_| "?".into());
    let profile = if cfg!(debug_assertions) {
        "debug (numbers are NOT representative)"
    } else {
        "release (optimized)"
    };
    vec![
        ("nproc".into(), cores().to_string()),
        ("cpu".into(), format!("{model} @ {mhz} MHz")),
        ("memory".into(), mem),
        ("kernel".into(), kernel),
        ("load".into(), load),
        ("build".into(), profile.into()),
        (
            "mode".into(),
            if smoke() {
                "smoke (CERTCTL_BENCH_SMOKE=1: tiny sizes, figures only prove it runs)".into()
            } else {
                "full".into()
            },
        ),
    ]
}

pub fn print_machine(title: &str) {
    println!();
    println!("=== {title} ===");
    for (k, v) in machine_facts() {
        println!("  {k:<8} {v}");
    }
}

/// SplitMix64: small, fast, deterministic; good enough to shape test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }

    pub fn hex(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes * 2);
        while s.len() < bytes * 2 {
            s.push_str(&format!("{:016x}", self.next_u64()));
        }
        s.truncate(bytes * 2);
        s
    }
}

/// Latency samples of one measurement.
#[derive(Default, Clone)]
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    /// Nearest-rank percentile (p in 0..=100).
    pub fn pct(&self, p: f64) -> Duration {
        let v = self.sorted();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }

    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// Times one future.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

/// Starts an engine on `location` with the real clock and default config.
pub async fn start_engine(location: &StoreLocation) -> anyhow::Result<(Arc<Engine>, MasterKey)> {
    let store = Store::open(location).await?;
    let master = MasterKey::generate()?;
    let copy = MasterKey::from_base64(&master.to_base64())?;
    let engine = Engine::start(
        store,
        Arc::new(SystemClock),
        EngineConfig::default(),
        master,
    )
    .await?;
    Ok((engine, copy))
}

/// A throw-away PostgreSQL database created for one bench run.
pub struct PgScratch {
    admin_url: String,
    pub name: String,
    pub url: String,
    pub server_version: String,
}

impl PgScratch {
    /// Creates `certctl_bench_<random>` on the configured server. `Ok(None)`
    /// when the server is unreachable and peers are not required.
    pub async fn create(tag: &str) -> anyhow::Result<Option<Self>> {
        let admin_url =
            std::env::var("CERTCTL_BENCH_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into());
        let require = env_flag("CERTCTL_REQUIRE_PEERS");
        let connected = tokio::time::timeout(
            Duration::from_secs(5),
            PgConnection::connect_with(&PgConnectOptions::from_str(&admin_url)?),
        )
        .await;
        let mut admin = match connected {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if require {
                    bail!("PostgreSQL at {admin_url} is required (CERTCTL_REQUIRE_PEERS=1): {e}");
                }
                println!("\nPostgreSQL: SKIPPED ({admin_url} unreachable: {e})");
                return Ok(None);
            }
            Err(_) => {
                if require {
                    bail!(
                        "PostgreSQL at {admin_url} is required (CERTCTL_REQUIRE_PEERS=1): connect timed out"
                    );
                }
                println!("\nPostgreSQL: SKIPPED ({admin_url}: connect timed out)");
                return Ok(None);
            }
        };
        let server_version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut admin)
            .await?;
        let name = format!(
            "certctl_bench_{tag}_{}",
            Rng::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_nanos() as u64
                    ^ u64::from(std::process::id())
            )
            .hex(6)
        );
        // The name is made of [a-z0-9_] above: safe to put in the statement.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let mut opts = PgConnectOptions::from_str(&admin_url)?;
        opts = opts.database(&name);
        let url = opts.to_url_lossy().to_string();
        Ok(Some(Self {
            admin_url,
            name,
            url,
            server_version,
        }))
    }

    /// Drops the database (forcing out any connection left behind).
    pub async fn drop_db(self) -> anyhow::Result<()> {
        let mut admin =
            PgConnection::connect_with(&PgConnectOptions::from_str(&self.admin_url)?).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(())
    }
}

/// The SQLite library version linked into the binary.
pub async fn sqlite_version() -> String {
    use sqlx::sqlite::SqliteConnectOptions;
    let Ok(mut c) = sqlx::SqliteConnection::connect_with(
        &SqliteConnectOptions::from_str("sqlite::memory:").unwrap(),
    )
    .await
    else {
        return "?".into();
    };
    sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
        .fetch_one(&mut c)
        .await
        .unwrap_or_else(|_| "?".into())
}
