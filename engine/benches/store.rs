//! Store benchmark: list pages and the due-for-renewal query on 100,000
//! certificates, on SQLite (a file in a temp dir) and PostgreSQL (a fresh
//! database, when the server is reachable).
//!
//! ```text
//! cargo bench -p certctl-engine --bench store
//! CERTCTL_BENCH_SMOKE=1 cargo bench -p certctl-engine --bench store   # seconds, for CI
//! CERTCTL_BENCH_N=1000000 cargo bench -p certctl-engine --bench store # a million
//! CERTCTL_BENCH_STORE=postgres ...                                      # one store only
//! ```
//!
//! Seeding writes realistic rows straight into the schema with multi-row
//! INSERTs in large transactions (it measures queries, not issuance); the
//! PEM texts are those of a certificate really issued by the engine's local
//! CA at the start of the run. Then it measures, through the store alone and
//! through `Engine::call::<ListCertificates>` (which also appends one audit
//! event per call), the first page (which also counts the total) and
//! successive keyset-cursor pages, and the renewal loop's due query.

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use certctl_engine::Engine;
use certctl_engine::bootstrap::{DEFAULT_PROFILE_ID, LOCAL_ISSUER_ID};
use certctl_engine::clock::ManualClock;
use certctl_engine::domain::{
    EffectiveStatus, Issuer, IssuerKind, KeyAlgorithm, Owner, Principal, Team,
};
use certctl_engine::ids::new_id;
use certctl_engine::ops::{
    CreateCertificate, CreateCertificateInput, IssueCertificate, IssueCertificateInput,
    ListCertificates, ListCertificatesInput,
};
use certctl_engine::pki::{self, SubjectNames};
use certctl_engine::store::{CertificateFilter, CertificateSort, StoreLocation};
use common::{PgScratch, Rng, Samples, ms, timed};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

const DAY: i64 = 86_400;
const NO_EXPIRY: i64 = 253_402_300_799;
const PER_PAGE: i64 = 50;
const ENVIRONMENTS: &[(&str, f64)] = &[
    ("production", 0.50),
    ("staging", 0.25),
    ("dev", 0.15),
    ("test", 0.10),
];
const CERTS_PER_INSERT: usize = 1000;
const VERSIONS_PER_INSERT: usize = 250;
const ROWS_PER_TX: usize = 20_000;

/// Targets from the foundation issue (on this 2-core machine).
const PAGE_TARGET: Duration = Duration::from_millis(10);
const DUE_TARGET: Duration = Duration::from_millis(200);
/// Issue 6: one renewal check at a million certificates under 2 s.
const RENEWAL_CHECK_TARGET: Duration = Duration::from_secs(2);

struct Sizes {
    certificates: usize,
    cursor_pages: usize,
    first_pages: usize,
    due_runs: usize,
    /// Certificates that come due for the measured renewal check.
    renewals_due: usize,
}

fn main() -> anyhow::Result<()> {
    let smoke = common::smoke();
    let sizes = Sizes {
        certificates: common::bench_n(100_000, 2_000)?,
        cursor_pages: if smoke { 20 } else { 200 },
        first_pages: if smoke { 5 } else { 30 },
        due_runs: if smoke { 3 } else { 20 },
        renewals_due: if smoke { 50 } else { 1000 },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(sizes))
}

async fn run(sizes: Sizes) -> anyhow::Result<()> {
    common::print_machine("certctl store benchmark");
    println!(
        "  sizes    {} certificates; {} cursor pages and {} first pages per query; per_page {PER_PAGE}; {} runs of the due query",
        sizes.certificates, sizes.cursor_pages, sizes.first_pages, sizes.due_runs
    );

    // CERTCTL_BENCH_STORE=sqlite or =postgres measures one store only (a
    // million rows take minutes to seed on each).
    let only = std::env::var("CERTCTL_BENCH_STORE").unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("certctl.db");
    if only.is_empty() || only == "sqlite" {
        let sqlite = format!("SQLite {} (file, WAL)", common::sqlite_version().await);
        bench_backend(
            &sqlite,
            &StoreLocation::SqliteFile(path.clone()),
            Raw::Sqlite(path),
            &sizes,
        )
        .await
        .context("SQLite")?;
    }

    if only == "sqlite" {
        return Ok(());
    }
    if let Some(pg) = PgScratch::create("store").await? {
        let label = format!("PostgreSQL {} (database {})", pg.server_version, pg.name);
        let result = bench_backend(
            &label,
            &StoreLocation::Postgres(pg.url.clone()),
            Raw::Postgres(pg.url.clone()),
            &sizes,
        )
        .await;
        pg.drop_db().await?;
        result.context("PostgreSQL")?;
    }
    Ok(())
}

/// Where the seeding connection goes.
enum Raw {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

enum RawConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl RawConn {
    async fn open(raw: &Raw) -> anyhow::Result<Self> {
        Ok(match raw {
            Raw::Sqlite(path) => Self::Sqlite(
                SqliteConnection::connect_with(
                    &SqliteConnectOptions::new()
                        .filename(path)
                        .journal_mode(SqliteJournalMode::Wal)
                        .foreign_keys(true),
                )
                .await?,
            ),
            Raw::Postgres(url) => {
                Self::Postgres(PgConnection::connect_with(&PgConnectOptions::from_str(url)?).await?)
            }
        })
    }

    /// Runs statements built by this bench from generated values only.
    async fn exec(&mut self, sql: String) -> anyhow::Result<()> {
        let sql = sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
        match self {
            Self::Sqlite(c) => {
                sql.execute(c).await?;
            }
            Self::Postgres(c) => {
                sql.execute(c).await?;
            }
        }
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(c) => c.close().await?,
            Self::Postgres(c) => c.close().await?,
        }
        Ok(())
    }
}

/// The reference rows certificates point at.
struct Refs {
    /// (owner id, team id)
    owners: Vec<(String, String)>,
    issuers: Vec<(String, f64)>,
}

/// Texts of one certificate really issued by the local CA.
struct PemSample {
    cert_pem: String,
    chain_pem: String,
    csr_pem: String,
}

struct SeedStats {
    certificates: usize,
    versions: usize,
    by_status: [usize; 5],
    elapsed: Duration,
}

struct Row {
    label: String,
    path: &'static str,
    samples: Samples,
    target: Option<Duration>,
    note: String,
}

async fn bench_backend(
    label: &str,
    location: &StoreLocation,
    raw: Raw,
    sizes: &Sizes,
) -> anyhow::Result<()> {
    println!();
    println!("--- {label} ---");
    let (engine, _master) = common::start_engine(location).await?;
    let principal = Principal::system("bench");
    let now = engine.now();

    let refs = reference_rows(&engine, now).await?;
    let pem = real_pem(&engine, &principal).await?;

    let mut conn = RawConn::open(&raw).await?;
    let seed = seed(&mut conn, sizes.certificates, &refs, &pem, now).await?;
    steady_renewal_state(&mut conn, now, sizes.renewals_due).await?;
    let analyze =
        matches!(raw, Raw::Postgres(_)) || common::env_flag("CERTCTL_BENCH_SQLITE_ANALYZE");
    let analyze_time = if analyze {
        // PostgreSQL's autovacuum would analyze the new rows within a minute;
        // do it now so plans are those of a steady state. SQLite has no
        // automatic ANALYZE and the engine runs none, so it is measured
        // without statistics unless CERTCTL_BENCH_SQLITE_ANALYZE=1.
        let t = Instant::now();
        conn.exec("ANALYZE".into()).await?;
        Some(t.elapsed())
    } else {
        None
    };
    conn.close().await?;

    let total = seed.certificates as f64;
    println!(
        "  seeded   {} certificates + {} versions in {:.2} s ({:.0} certificates/s, multi-row INSERTs, {} rows per transaction)",
        seed.certificates,
        seed.versions,
        seed.elapsed.as_secs_f64(),
        total / seed.elapsed.as_secs_f64(),
        ROWS_PER_TX
    );
    let [active, pending, revoked, archived, failed] = seed.by_status;
    println!(
        "  stored   active {active}, pending {pending}, revoked {revoked}, archived {archived}, failed {failed}; {} owners, {} issuers, {} environments",
        refs.owners.len(),
        refs.issuers.len(),
        ENVIRONMENTS.len()
    );
    match analyze_time {
        Some(t) => println!("  analyze  ANALYZE after seeding: {} ms", ms(t)),
        None => println!("  analyze  none (no sqlite_stat1; as the engine runs today)"),
    }

    let store = engine.store().clone();
    let view = engine.status_view(engine.now());
    let (counts, first_count) = timed(store.certificate_counts(view)).await;
    let counts = counts?;
    let mut count_samples = Samples::default();
    for _ in 0..5 {
        let (c, t) = timed(store.certificate_counts(view)).await;
        c?;
        count_samples.push(t);
    }
    println!(
        "  counts   certificate_counts (dashboard summary): first {} ms, then p50 {} ms of 5: {}",
        ms(first_count),
        ms(count_samples.pct(50.0)),
        counts
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut rows = Vec::new();
    let owners: Vec<String> = refs.owners.iter().map(|(o, _)| o.clone()).collect();
    let scenarios = [
        Scenario {
            label: "status=valid owner=X sort=not_after",
            status: Some(EffectiveStatus::Valid),
            by_owner: true,
            sort: CertificateSort::NotAfter,
        },
        Scenario {
            label: "status=expiring owner=X sort=not_after",
            status: Some(EffectiveStatus::Expiring),
            by_owner: true,
            sort: CertificateSort::NotAfter,
        },
        Scenario {
            label: "status=expiring sort=not_after",
            status: Some(EffectiveStatus::Expiring),
            by_owner: false,
            sort: CertificateSort::NotAfter,
        },
        Scenario {
            label: "unfiltered sort=-not_after",
            status: None,
            by_owner: false,
            sort: CertificateSort::NotAfterDesc,
        },
    ];

    // CERTCTL_BENCH_RENEWAL_ONLY=1: only the renewal check (issue 6), for a
    // quicker run at a million certificates.
    let renewal_only = common::env_flag("CERTCTL_BENCH_RENEWAL_ONLY");
    // The two paths must agree before their speed means anything.
    for sc in scenarios.iter().filter(|_| !renewal_only) {
        let a = page(Via::Store, &engine, &principal, sc, &owners[0], None).await?;
        let b = page(Via::Engine, &engine, &principal, sc, &owners[0], None).await?;
        anyhow::ensure!(
            a.ids == b.ids && a.total == b.total,
            "store and engine disagree on {}",
            sc.label
        );
    }

    for via in [Via::Store, Via::Engine] {
        for sc in scenarios.iter().filter(|_| !renewal_only) {
            let (first, cursor, walked) =
                measure_scenario(via, &engine, &principal, sc, &owners, sizes).await?;
            rows.push(Row {
                label: format!("{} - first page (+COUNT)", sc.label),
                path: via.name(),
                samples: first.samples,
                target: None,
                note: format!("total {}", first.total.unwrap_or(0)),
            });
            rows.push(Row {
                label: format!("{} - cursor pages", sc.label),
                path: via.name(),
                samples: cursor,
                target: Some(PAGE_TARGET),
                note: walked,
            });
        }
    }

    for (limit, label) in [
        (1000, "due: certificates_expiring_before(now+30d, 1000)"),
        (
            10_000_000,
            "due: certificates_expiring_before(now+30d, all)",
        ),
    ]
    .into_iter()
    .filter(|_| !renewal_only)
    {
        let mut samples = Samples::default();
        let mut found = 0;
        for _ in 0..sizes.due_runs {
            let horizon = engine.now() + 30 * DAY;
            let (due, t) = timed(store.certificates_expiring_before(horizon, limit)).await;
            found = due?.len();
            samples.push(t);
        }
        rows.push(Row {
            label: label.into(),
            path: "store",
            samples,
            target: Some(DUE_TARGET),
            note: format!("{found} rows"),
        });
    }

    // The scheduler's renewal check: the due query on `renew_after`, and
    // one whole run of the renewal loop (expiry warnings, then a renewal
    // through Engine::call for each due certificate).
    let mut samples = Samples::default();
    let mut found = 0;
    for _ in 0..sizes.due_runs {
        let (due, t) = timed(store.certificates_due_for_renewal(engine.now(), None, 1000)).await;
        found = due?.len();
        samples.push(t);
    }
    rows.push(Row {
        label: "due: certificates_due_for_renewal(now, 1000) [renew_after]".into(),
        path: "store",
        samples,
        target: Some(DUE_TARGET),
        note: format!("{found} rows"),
    });
    // The expiry-warning pass alone (nothing due in the steady state: an
    // index range on `(status, next_warn_at)`).
    // The first run warns about the thresholds crossed since the steady
    // state was set (minutes of seeding at a million); it is not counted.
    let first = certctl_engine::notify::warn_expiring(&engine, engine.now()).await?;
    let mut samples = Samples::default();
    for _ in 0..sizes.due_runs {
        let (n, t) = timed(certctl_engine::notify::warn_expiring(&engine, engine.now())).await;
        n?;
        samples.push(t);
    }
    rows.push(Row {
        label: "expiry-warning pass, nothing due [next_warn_at]".into(),
        path: "engine",
        samples,
        target: None,
        note: format!("{first} warnings due since setup, before"),
    });
    let scheduler = certctl_engine::scheduler::Scheduler::new(engine.clone(), "bench");
    for note in ["due renewed", "nothing due (idle check)"] {
        let (o, t) = timed(async {
            scheduler
                .run_once(certctl_engine::scheduler::Loop::Renewal, engine.now())
                .await
        })
        .await;
        anyhow::ensure!(
            o == certctl_engine::scheduler::TickOutcome::Ran,
            "renewal check: {o:?}"
        );
        let mut samples = Samples::default();
        samples.push(t);
        rows.push(Row {
            label: format!("renewal check: one run of the renewal loop ({note})"),
            path: "engine",
            samples,
            target: Some(RENEWAL_CHECK_TARGET),
            note: if note == "due renewed" {
                format!("{} renewals queued", sizes.renewals_due)
            } else {
                String::new()
            },
        });
    }

    print_table(label, &rows);
    engine.store().close().await;
    Ok(())
}

/// A steady state for the renewal check: every active certificate has its
/// precomputed renewal time and has had the expiry warnings it is due
/// (as if the scheduler had been running), and `due` of them come due now.
async fn steady_renewal_state(conn: &mut RawConn, now: i64, due: usize) -> anyhow::Result<()> {
    // `next_warn_at`: when the next threshold below the one warned comes
    // (never after the 1-day warning or past expiry), as the warning pass
    // leaves it.
    conn.exec(format!(
        "UPDATE certificates SET renew_after = {later}, expiry_warned_days = CASE \
         WHEN not_after - {now} <= {d1} THEN 1 WHEN not_after - {now} <= {d7} THEN 7 \
         WHEN not_after - {now} <= {d14} THEN 14 WHEN not_after - {now} <= {d30} THEN 30 \
         ELSE NULL END, next_warn_at = CASE \
         WHEN not_after - {now} <= {d1} THEN {never} WHEN not_after - {now} <= {d7} THEN not_after - {d1} \
         WHEN not_after - {now} <= {d14} THEN not_after - {d7} WHEN not_after - {now} <= {d30} THEN not_after - {d14} \
         ELSE not_after - {d30} END WHERE status = 'active'",
        never = i64::MAX,
        later = now + 400 * DAY,
        d1 = DAY,
        d7 = 7 * DAY,
        d14 = 14 * DAY,
        d30 = 30 * DAY,
    ))
    .await?;
    conn.exec(format!(
        "UPDATE certificates SET renew_after = {} WHERE id IN \
         (SELECT id FROM certificates WHERE status = 'active' AND not_after > {} ORDER BY id LIMIT {due})",
        now - 60,
        now + 31 * DAY,
    ))
    .await
}

#[derive(Clone, Copy)]
enum Via {
    Store,
    Engine,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Store => "store",
            Via::Engine => "engine",
        }
    }
}

struct Scenario {
    label: &'static str,
    status: Option<EffectiveStatus>,
    by_owner: bool,
    sort: CertificateSort,
}

struct PageResult {
    ids: Vec<String>,
    total: Option<i64>,
    next: Option<String>,
}

async fn page(
    via: Via,
    engine: &Arc<Engine>,
    principal: &Principal,
    sc: &Scenario,
    owner: &str,
    cursor: Option<String>,
) -> anyhow::Result<PageResult> {
    let filter = CertificateFilter {
        status: sc.status,
        owner_id: sc.by_owner.then(|| owner.to_owned()),
        ..Default::default()
    };
    Ok(match via {
        Via::Store => {
            let view = engine.status_view(engine.now());
            let p = engine
                .store()
                .list_certificates(&filter, sc.sort, cursor.as_deref(), PER_PAGE, view)
                .await?;
            PageResult {
                ids: p.data.into_iter().map(|c| c.id).collect(),
                total: p.total,
                next: p.next_cursor,
            }
        }
        Via::Engine => {
            let input = ListCertificatesInput {
                filter,
                sort: Some(sc.sort),
                cursor,
                page: None,
                per_page: Some(PER_PAGE),
                fields: None,
            };
            let p = engine
                .call::<ListCertificates>(principal, input)
                .await?
                .completed()?;
            PageResult {
                ids: p
                    .data
                    .into_iter()
                    .map(|c| {
                        c.0.get("id")
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_owned()
                    })
                    .collect(),
                total: p.total,
                next: p.next_cursor,
            }
        }
    })
}

struct FirstPages {
    samples: Samples,
    total: Option<i64>,
}

/// First pages (rotating the owner), then a walk of successive cursor pages
/// that starts over (with the next owner) when a walk runs out.
async fn measure_scenario(
    via: Via,
    engine: &Arc<Engine>,
    principal: &Principal,
    sc: &Scenario,
    owners: &[String],
    sizes: &Sizes,
) -> anyhow::Result<(FirstPages, Samples, String)> {
    // Warm-up, not recorded.
    for o in owners.iter().take(3) {
        page(via, engine, principal, sc, o, None).await?;
    }
    let mut first = FirstPages {
        samples: Samples::default(),
        total: None,
    };
    for i in 0..sizes.first_pages {
        let owner = &owners[i % owners.len()];
        let (p, t) = timed(page(via, engine, principal, sc, owner, None)).await;
        let p = p?;
        if i == 0 {
            first.total = p.total;
        }
        first.samples.push(t);
    }

    let mut cursor_samples = Samples::default();
    let mut owner_idx = 0;
    let mut walks = 1;
    let mut rows = 0usize;
    let mut next = page(via, engine, principal, sc, &owners[0], None)
        .await?
        .next;
    while cursor_samples.len() < sizes.cursor_pages {
        let Some(c) = next.take() else {
            // Walk exhausted: start again with the next owner.
            owner_idx = (owner_idx + 1) % owners.len();
            walks += 1;
            next = page(via, engine, principal, sc, &owners[owner_idx], None)
                .await?
                .next;
            if walks > 10 * owners.len() {
                break; // nothing to walk (tiny data sets)
            }
            continue;
        };
        let (p, t) = timed(page(
            via,
            engine,
            principal,
            sc,
            &owners[owner_idx],
            Some(c),
        ))
        .await;
        let p = p?;
        rows += p.ids.len();
        cursor_samples.push(t);
        next = p.next;
    }
    let walked = format!("{rows} rows, {walks} walk(s)");
    Ok((first, cursor_samples, walked))
}

fn print_table(backend: &str, rows: &[Row]) {
    println!();
    println!("  {backend}: per_page {PER_PAGE}, latencies in ms");
    println!(
        "  {:<66} {:<6} {:>4} {:>8} {:>8} {:>8} {:>8}  {:<12} note",
        "query", "path", "n", "p50", "p90", "p99", "max", "target"
    );
    println!("  {}", "-".repeat(140));
    for r in rows {
        let target = match r.target {
            Some(t) if r.samples.len() > 0 => format!(
                "{} <{}ms",
                if r.samples.pct(50.0) < t {
                    "ok  "
                } else {
                    "MISS"
                },
                t.as_millis()
            ),
            _ => String::new(),
        };
        println!(
            "  {:<66} {:<6} {:>4} {:>8} {:>8} {:>8} {:>8}  {:<12} {}",
            r.label,
            r.path,
            r.samples.len(),
            ms(r.samples.pct(50.0)),
            ms(r.samples.pct(90.0)),
            ms(r.samples.pct(99.0)),
            ms(r.samples.max()),
            target,
            r.note
        );
    }
}

/// Teams, owners and two extra issuers, through the store.
async fn reference_rows(engine: &Arc<Engine>, now: i64) -> anyhow::Result<Refs> {
    let mut tx = engine.store().begin_write().await?;
    let mut teams = Vec::new();
    for (i, name) in ["platform", "payments", "identity", "web", "data", "edge"]
        .iter()
        .enumerate()
    {
        let t = Team {
            id: format!("team-bench{i:02}"),
            name: (*name).into(),
            description: format!("{name} team"),
            created_at: now,
            updated_at: now,
        };
        tx.upsert_team(&t).await?;
        teams.push(t.id);
    }
    let mut owners = Vec::new();
    for i in 0..24 {
        let team = teams[i % teams.len()].clone();
        let o = Owner {
            id: format!("own-bench{i:02}"),
            name: format!("Owner {i}"),
            email: format!("owner{i}@example.com"),
            team_id: Some(team.clone()),
            created_at: now,
            updated_at: now,
        };
        tx.upsert_owner(&o).await?;
        owners.push((o.id, team));
    }
    let mut issuers = vec![(LOCAL_ISSUER_ID.to_owned(), 0.70)];
    for (id, kind, share) in [
        ("iss-bench-acme", IssuerKind::Acme, 0.20),
        ("iss-bench-vault", IssuerKind::Vault, 0.10),
    ] {
        let issuer = Issuer {
            id: id.into(),
            name: id.into(),
            kind,
            config: serde_json::json!({}),
            secret_fields: Vec::new(),
            enabled: true,
            ca_cert_pem: None,
            ca_chain_pem: None,
            ca_subject: None,
            ca_not_after: None,
            created_at: now,
            updated_at: now,
        };
        tx.insert_issuer(&issuer, None).await?;
        issuers.push((id.to_owned(), share));
    }
    tx.commit().await?;
    Ok(Refs { owners, issuers })
}

/// Issues one real certificate through the engine, for realistic PEM sizes.
async fn real_pem(engine: &Arc<Engine>, principal: &Principal) -> anyhow::Result<PemSample> {
    let cert = engine
        .call::<CreateCertificate>(
            principal,
            CreateCertificateInput {
                common_name: "pem-sample.bench.example.com".into(),
                sans: vec!["www.pem-sample.bench.example.com".into()],
                name: None,
                environment: Some("test".into()),
                issuer_id: None,
                profile_id: None,
                owner_id: None,
                team_id: None,
                renewal_policy_id: None,
                labels: Default::default(),
                target_ids: vec![],
            },
        )
        .await?
        .completed()?;
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256)?;
    let names = SubjectNames {
        dns: cert.sans.clone(),
        ..Default::default()
    };
    let csr_pem = pki::csr_for(&key, &cert.common_name, &names)?;
    let issued = engine
        .call::<IssueCertificate>(
            principal,
            IssueCertificateInput {
                id: cert.id,
                csr_pem: Some(csr_pem.clone()),
                ttl_seconds: None,
            },
        )
        .await?
        .completed()?;
    Ok(PemSample {
        cert_pem: issued.version.clone().expect("version").cert_pem,
        chain_pem: issued.version.clone().expect("version").chain_pem,
        csr_pem,
    })
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn qo(s: Option<&str>) -> String {
    s.map(q).unwrap_or_else(|| "NULL".into())
}

fn io(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into())
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [(T, f64)]) -> &'a T {
    let mut u = rng.unit();
    for (item, share) in items {
        if u < *share {
            return item;
        }
        u -= share;
    }
    &items[items.len() - 1].0
}

const CERT_INSERT: &str = "INSERT INTO certificates (id, name, common_name, sans, status, \
    environment, issuer_id, profile_id, owner_id, team_id, renewal_policy_id, labels, \
    current_version_id, serial, fingerprint, key_algorithm, not_before, not_after, revoked_at, \
    revocation_reason, created_at, updated_at) VALUES ";
const VERSION_INSERT: &str = "INSERT INTO certificate_versions (id, certificate_id, issuer_id, \
    serial, fingerprint, key_algorithm, not_before, not_after, cert_pem, chain_pem, csr_pem, \
    private_key_sealed, revoked_at, revocation_reason, created_at) VALUES ";

/// Writes `n` certificates (and versions for the issued ones) with a
/// realistic mix: 85% active with expiries spread from 35 days ago to a year
/// ahead, 6% pending, 4% revoked, 4% archived, 1% failed; owners skewed (a
/// few own most), 5% without owner; issuers 70/20/10; four environments;
/// a quarter of the issued ones have an earlier (renewed) version too.
async fn seed(
    conn: &mut RawConn,
    n: usize,
    refs: &Refs,
    pem: &PemSample,
    now: i64,
) -> anyhow::Result<SeedStats> {
    let started = Instant::now();
    let mut rng = Rng::new(0x05EE_DCE2_7C71);
    let clock = ManualClock::new(now);
    let statuses = [
        ("active", 0.85),
        ("pending", 0.06),
        ("revoked", 0.04),
        ("archived", 0.04),
        ("failed", 0.01),
    ];
    let key_algs = [
        (KeyAlgorithm::EcdsaP256, 0.70),
        (KeyAlgorithm::Rsa2048, 0.25),
        (KeyAlgorithm::EcdsaP384, 0.05),
    ];
    let mut stats = SeedStats {
        certificates: 0,
        versions: 0,
        by_status: [0; 5],
        elapsed: Duration::ZERO,
    };
    let mut certs: Vec<String> = Vec::with_capacity(CERTS_PER_INSERT);
    let mut versions: Vec<String> = Vec::new();
    let mut in_tx = 0usize;
    conn.exec("BEGIN".into()).await?;
    for i in 0..n {
        let status = *pick(&mut rng, &statuses);
        let si = statuses.iter().position(|(s, _)| *s == status).unwrap_or(0);
        stats.by_status[si] += 1;
        let env = *pick(&mut rng, ENVIRONMENTS);
        let issuer = pick(&mut rng, &refs.issuers).clone();
        let (owner, team) = if rng.unit() < 0.05 {
            (None, None)
        } else {
            // Skewed: owner k gets a share falling off with k.
            let k = ((rng.unit().powf(1.6)) * refs.owners.len() as f64) as usize;
            let (o, t) = &refs.owners[k.min(refs.owners.len() - 1)];
            (Some(o.as_str()), Some(t.as_str()))
        };
        let app = rng.range(0, 500);
        let cn = format!("svc{i}.app{app}.{env}.example.com");
        let sans =
            serde_json::to_string(&[cn.clone(), format!("www.svc{i}.app{app}.{env}.example.com")])?;
        let labels = serde_json::to_string(&serde_json::json!({
            "app": format!("app{app}"),
            "tier": if rng.unit() < 0.3 { "frontend" } else { "backend" },
        }))?;
        let issued = match status {
            "active" | "revoked" => true,
            "archived" => rng.unit() < 0.7,
            _ => false,
        };
        let id;
        let mut version_id = None;
        let (mut serial, mut fingerprint, mut key_alg) = (None, None, None);
        let (mut not_before, mut not_after) = (None, NO_EXPIRY);
        let (mut revoked_at, mut reason) = (None, None);
        let created_at;
        let updated_at;
        if issued {
            let na = if status == "archived" {
                now + rng.range(-300 * DAY, -DAY)
            } else {
                now + rng.range(-35 * DAY, 365 * DAY)
            };
            let validity = if na - now > 90 * DAY {
                398 * DAY
            } else if na - now > 47 * DAY {
                90 * DAY
            } else {
                47 * DAY
            };
            let nb = na - validity;
            created_at = nb - rng.range(0, 400 * DAY);
            clock.set(created_at);
            id = new_id("mc", &clock);
            let alg = *pick(&mut rng, &key_algs);
            if status == "revoked" {
                revoked_at = Some((nb + rng.range(DAY, 30 * DAY)).min(now));
                reason = Some(if rng.unit() < 0.5 {
                    "keyCompromise"
                } else {
                    "superseded"
                });
            }
            updated_at = revoked_at.unwrap_or(nb);
            // An earlier version for a quarter of them (renewed before).
            if rng.unit() < 0.25 {
                clock.set(nb - validity);
                let vid = new_id("cv", &clock);
                versions.push(format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, NULL, NULL, {})",
                    q(&vid),
                    q(&id),
                    q(&issuer),
                    q(&rng.hex(16)),
                    q(&rng.hex(32)),
                    q(alg.as_str()),
                    nb - validity,
                    nb,
                    q(&pem.cert_pem),
                    q(&pem.chain_pem),
                    q(&pem.csr_pem),
                    nb - validity,
                ));
            }
            clock.set(nb);
            let vid = new_id("cv", &clock);
            let s = rng.hex(16);
            let f = rng.hex(32);
            versions.push(format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, {}, {}, {})",
                q(&vid),
                q(&id),
                q(&issuer),
                q(&s),
                q(&f),
                q(alg.as_str()),
                nb,
                na,
                q(&pem.cert_pem),
                q(&pem.chain_pem),
                q(&pem.csr_pem),
                io(revoked_at),
                qo(reason),
                nb,
            ));
            version_id = Some(vid);
            serial = Some(s);
            fingerprint = Some(f);
            key_alg = Some(alg.as_str());
            not_before = Some(nb);
            not_after = na;
        } else {
            created_at = now - rng.range(0, 30 * DAY);
            updated_at = created_at;
            clock.set(created_at);
            id = new_id("mc", &clock);
        }
        certs.push(format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, NULL, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            q(&id),
            q(&cn),
            q(&cn),
            q(&sans),
            q(status),
            q(env),
            q(&issuer),
            q(DEFAULT_PROFILE_ID),
            qo(owner),
            qo(team),
            q(&labels),
            qo(version_id.as_deref()),
            qo(serial.as_deref()),
            qo(fingerprint.as_deref()),
            qo(key_alg),
            io(not_before),
            not_after,
            io(revoked_at),
            qo(reason),
            created_at,
            updated_at,
        ));
        stats.certificates += 1;
        in_tx += 1;
        if certs.len() == CERTS_PER_INSERT || i + 1 == n {
            conn.exec(format!("{CERT_INSERT}{}", certs.join(", ")))
                .await?;
            certs.clear();
            for chunk in versions.chunks(VERSIONS_PER_INSERT) {
                conn.exec(format!("{VERSION_INSERT}{}", chunk.join(", ")))
                    .await?;
            }
            stats.versions += versions.len();
            in_tx += versions.len();
            versions.clear();
            if in_tx >= ROWS_PER_TX {
                conn.exec("COMMIT".into()).await?;
                conn.exec("BEGIN".into()).await?;
                in_tx = 0;
            }
        }
    }
    conn.exec("COMMIT".into()).await?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}
