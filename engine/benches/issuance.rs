//! Issuance benchmark: local-CA certificates per second from CSRs, end to
//! end through `Engine::call::<IssueCertificate>` (CSR parsed and verified,
//! profile checked, certificate signed, version and audit event committed),
//! sequentially and with 2, 4 and 8 concurrent tasks on a multi-thread tokio
//! runtime; on SQLite and, when reachable, PostgreSQL. Beside it: the raw
//! ECDSA P-256 sign and verify rates of aws-lc-rs on this machine, and the
//! cost of the pieces (CSR check, signing, the transaction's SQL alone) so a
//! missed target says where the time goes.
//!
//! ```text
//! cargo bench -p certctl-engine --bench issuance
//! CERTCTL_BENCH_SMOKE=1 cargo bench -p certctl-engine --bench issuance   # seconds, for CI
//! CERTCTL_BENCH_N=20000 cargo bench -p certctl-engine --bench issuance
//! ```
//!
//! Every run issues N fresh certificates: created beforehand with the
//! `create_certificate` operation, with keys and CSRs generated beforehand
//! (none of which is timed).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use certctl_engine::Engine;
use certctl_engine::bootstrap::{DEFAULT_PROFILE_ID, LOCAL_ISSUER_ID, default_profile};
use certctl_engine::domain::{KeyAlgorithm, Outcome, Principal};
use certctl_engine::ids::new_id;
use certctl_engine::ops::{
    CreateCertificate, CreateCertificateInput, IssueCertificate, IssueCertificateInput,
};
use certctl_engine::pki::{self, LeafRequest, MasterKey, SigningCa, SubjectNames};
use certctl_engine::store::{NewAuditEvent, NewVersion, StoreLocation};
use common::{PgScratch, Samples, ms};

const CONCURRENCY: &[usize] = &[1, 2, 4, 8];
/// Target from the foundation issue: end to end on SQLite.
const TARGET_PER_SEC: f64 = 1000.0;

fn main() -> anyhow::Result<()> {
    let n = common::bench_n(5_000, 100)?;
    anyhow::ensure!(n > 0, "CERTCTL_BENCH_N must be positive");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(n))
}

async fn run(n: usize) -> anyhow::Result<()> {
    common::print_machine("certctl issuance benchmark");
    println!(
        "  sizes    N = {n} issuances per run; concurrency {CONCURRENCY:?}; tokio multi-thread runtime with {} workers",
        common::cores()
    );

    raw_ecdsa(if common::smoke() { 500 } else { 20_000 })?;
    pieces(n.min(2_000))?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("certctl.db");
    let label = format!("SQLite {} (file, WAL)", common::sqlite_version().await);
    bench_backend(&label, &StoreLocation::SqliteFile(path), n, true)
        .await
        .context("SQLite")?;

    if let Some(pg) = PgScratch::create("issuance").await? {
        let label = format!("PostgreSQL {} (database {})", pg.server_version, pg.name);
        let result =
            bench_backend(&label, &StoreLocation::Postgres(pg.url.clone()), n, false).await;
        pg.drop_db().await?;
        result.context("PostgreSQL")?;
    }
    Ok(())
}

/// Raw aws-lc-rs ECDSA P-256 (SHA-256, ASN.1 signatures) on a 600-byte
/// message (about a TBSCertificate), single-threaded and on all cores.
fn raw_ecdsa(ops: usize) -> anyhow::Result<()> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("P-256 key generation failed"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("P-256 key could not be loaded"))?;
    let public = pair.public_key().as_ref().to_vec();
    let message = vec![0x5a_u8; 600];
    let signature = pair
        .sign(&rng, &message)
        .map_err(|_| anyhow::anyhow!("sign failed"))?
        .as_ref()
        .to_vec();

    let sign = |count: usize| {
        let rng = SystemRandom::new();
        for _ in 0..count {
            let s = pair.sign(&rng, &message).expect("sign");
            std::hint::black_box(s);
        }
    };
    let verify = |count: usize| {
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public);
        for _ in 0..count {
            key.verify(&message, &signature).expect("verify");
        }
    };
    let threads = common::cores();
    let rate = |f: &(dyn Fn(usize) + Sync), workers: usize| {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| f(ops));
            }
        });
        (ops * workers) as f64 / start.elapsed().as_secs_f64()
    };
    // Warm-up.
    sign(ops / 10 + 1);
    verify(ops / 10 + 1);
    println!();
    println!("  raw ECDSA P-256 with aws-lc-rs ({ops} operations per thread):");
    println!(
        "  {:<30} {:>14} {:>22}",
        "",
        "1 thread",
        format!("{threads} threads (all cores)")
    );
    println!(
        "  {:<30} {:>12.0}/s {:>20.0}/s",
        "sign (SHA-256, ASN.1)",
        rate(&sign, 1),
        rate(&sign, threads)
    );
    println!(
        "  {:<30} {:>12.0}/s {:>20.0}/s",
        "verify (UnparsedPublicKey)",
        rate(&verify, 1),
        rate(&verify, threads)
    );
    Ok(())
}

/// What one issuance costs outside the database, single-threaded: parsing
/// and verifying the CSR, and building and signing the certificate.
fn pieces(count: usize) -> anyhow::Result<()> {
    let now = time_now();
    let master = MasterKey::generate()?;
    let material = pki::create_local_ca(&master, "certctl bench", now, "iss-bench")?;
    let ca = SigningCa::load(&material, &master, "iss-bench")?;
    let profile = default_profile(now);
    let jobs = make_csrs(count, "pieces")?;

    let start = Instant::now();
    let mut parsed = Vec::with_capacity(count);
    for (_, _, csr) in &jobs {
        parsed.push(pki::parse_csr(csr)?);
    }
    let parse_rate = count as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    for ((cn, names, _), csr) in jobs.iter().zip(&parsed) {
        let leaf = ca.issue(&LeafRequest {
            spki_der: &csr.spki_der,
            key_algorithm: csr.key_algorithm,
            common_name: cn,
            names,
            not_before: now - 60,
            not_after: now + profile.default_ttl_seconds,
            ekus: &profile.ekus,
            crl_distribution_url: None,
            ocsp_url: None,
        })?;
        std::hint::black_box(leaf);
    }
    let issue_rate = count as f64 / start.elapsed().as_secs_f64();
    println!();
    println!("  pieces of one issuance, single-threaded, no database ({count} each):");
    println!(
        "  {:<52} {:>10.0}/s  ({} ms each)",
        "pki::parse_csr (DER/PEM parse + signature verify)",
        parse_rate,
        ms(Duration::from_secs_f64(1.0 / parse_rate))
    );
    println!(
        "  {:<52} {:>10.0}/s  ({} ms each)",
        "SigningCa::issue (build + sign leaf, PEM chain)",
        issue_rate,
        ms(Duration::from_secs_f64(1.0 / issue_rate))
    );
    let both = 1.0 / (1.0 / parse_rate + 1.0 / issue_rate);
    println!(
        "  {:<52} {:>10.0}/s  (crypto ceiling of one core)",
        "both", both
    );
    Ok(())
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn names_of(cn: &str) -> (Vec<String>, SubjectNames) {
    let sans = vec![cn.to_owned(), format!("www.{cn}")];
    let names = SubjectNames {
        dns: sans.clone(),
        ..Default::default()
    };
    (sans, names)
}

/// `count` (common name, names, CSR PEM) with fresh P-256 keys, made on all cores.
fn make_csrs(count: usize, tag: &str) -> anyhow::Result<Vec<(String, SubjectNames, String)>> {
    let threads = common::cores();
    let chunk = count.div_ceil(threads).max(1);
    let indices: Vec<usize> = (0..count).collect();
    let mut out = Vec::with_capacity(count);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .map(|part| {
                s.spawn(
                    move || -> anyhow::Result<Vec<(String, SubjectNames, String)>> {
                        part.iter()
                            .map(|i| {
                                let cn = format!("host{i}.{tag}.bench.example.com");
                                let (_, names) = names_of(&cn);
                                let key = pki::generate_key(KeyAlgorithm::EcdsaP256)?;
                                let csr = pki::csr_for(&key, &cn, &names)?;
                                Ok((cn, names, csr))
                            })
                            .collect()
                    },
                )
            })
            .collect();
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| anyhow::anyhow!("CSR thread panicked"))??,
            );
        }
        Ok(())
    })?;
    Ok(out)
}

struct RunResult {
    concurrency: usize,
    elapsed: Duration,
    latencies: Samples,
    /// Per-statement latencies (SQL-only runs): (step, samples).
    steps: Vec<(&'static str, Samples)>,
}

const STEPS: &[&str] = &[
    "BEGIN IMMEDIATE / BEGIN (incl. write-lock wait)",
    "SELECT certificate (gate: describe)",
    "SELECT profile (gate: describe)",
    "SELECT certificate (execute: load)",
    "SELECT issuer + CA material JSON",
    "SELECT profile (execute)",
    "INSERT version + UPDATE certificate",
    "SELECT version (re-read)",
    "SELECT certificate (re-read)",
    "audit: [pg lock] + SELECT last + INSERT",
    "COMMIT",
];

async fn bench_backend(
    label: &str,
    location: &StoreLocation,
    n: usize,
    is_sqlite: bool,
) -> anyhow::Result<()> {
    println!();
    println!("--- {label} ---");
    let (engine, _master) = common::start_engine(location).await?;
    let principal = Principal::system("bench");

    let mut results = Vec::new();
    for (run, &concurrency) in CONCURRENCY.iter().enumerate() {
        let tag = format!("run{run}c{concurrency}");
        let setup = Instant::now();
        let csrs = make_csrs(n, &tag)?;
        let csr_time = setup.elapsed();
        let setup = Instant::now();
        let mut jobs = Vec::with_capacity(n);
        for (cn, _, csr) in csrs {
            let (sans, _) = names_of(&cn);
            let cert = engine
                .call::<CreateCertificate>(
                    &principal,
                    CreateCertificateInput {
                        common_name: cn,
                        sans,
                        name: None,
                        environment: Some("production".into()),
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
            jobs.push((cert.id, csr));
        }
        let create_time = setup.elapsed();
        println!(
            "  setup    concurrency {concurrency}: {n} keys + CSRs in {:.2} s; {n} create_certificate calls in {:.2} s ({:.0}/s, sequential)",
            csr_time.as_secs_f64(),
            create_time.as_secs_f64(),
            n as f64 / create_time.as_secs_f64()
        );

        let before = active_count(&engine).await?;
        let result = issue_all(&engine, &principal, jobs, concurrency).await?;
        let after = active_count(&engine).await?;
        anyhow::ensure!(
            after - before == n as i64,
            "expected {n} newly active certificates, found {}",
            after - before
        );
        results.push(result);
    }

    let (chain, t) = common::timed(engine.store().verify_audit_chain()).await;
    let chain = chain?;
    anyhow::ensure!(chain.valid, "audit chain broken: {:?}", chain.reason);
    println!(
        "  audit    chain of {} events verified after the concurrent runs in {} ms",
        chain.checked,
        ms(t)
    );

    // The same statements an issuance runs, without the crypto.
    let sql_only_seq = sql_only(&engine, &principal, n.min(2_000), 1).await?;
    let sql_only_par = sql_only(&engine, &principal, n.min(2_000), 8).await?;

    println!();
    println!(
        "  {label}: issue_certificate end to end (CSR verify + sign + version + audit, one transaction each)"
    );
    println!(
        "  {:<28} {:>7} {:>10} {:>14} {:>9} {:>9} {:>9}  target",
        "run", "n", "seconds", "certs/s", "p50 ms", "p99 ms", "max ms"
    );
    println!("  {}", "-".repeat(100));
    for r in &results {
        let rate = n as f64 / r.elapsed.as_secs_f64();
        let target = if is_sqlite {
            format!(
                "{} >={TARGET_PER_SEC:.0}/s",
                if rate >= TARGET_PER_SEC {
                    "ok  "
                } else {
                    "MISS"
                }
            )
        } else {
            String::new()
        };
        println!(
            "  {:<28} {:>7} {:>10.2} {:>14.0} {:>9} {:>9} {:>9}  {}",
            if r.concurrency == 1 {
                "sequential (1 task)".to_owned()
            } else {
                format!("concurrency {} tasks", r.concurrency)
            },
            n,
            r.elapsed.as_secs_f64(),
            rate,
            ms(r.latencies.pct(50.0)),
            ms(r.latencies.pct(99.0)),
            ms(r.latencies.max()),
            target
        );
    }
    for (label, r) in [
        ("SQL only, 1 task", &sql_only_seq),
        ("SQL only, 8 tasks", &sql_only_par),
    ] {
        println!(
            "  {:<28} {:>7} {:>10.2} {:>14.0} {:>9} {:>9} {:>9}  (same statements, no crypto)",
            label,
            r.latencies.len(),
            r.elapsed.as_secs_f64(),
            r.latencies.len() as f64 / r.elapsed.as_secs_f64(),
            ms(r.latencies.pct(50.0)),
            ms(r.latencies.pct(99.0)),
            ms(r.latencies.max()),
        );
    }
    println!();
    println!("  {label}: where the SQL-only time goes, per statement (ms)");
    println!(
        "  {:<48} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
        "statement", "1 task", "p99", "max", "8 tasks", "p99", "max"
    );
    println!(
        "  {:<48} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
        "", "mean", "", "", "mean", "", ""
    );
    println!("  {}", "-".repeat(110));
    for ((name, a), (_, b)) in sql_only_seq.steps.iter().zip(&sql_only_par.steps) {
        println!(
            "  {:<48} {:>9} {:>9} {:>9}   {:>9} {:>9} {:>9}",
            name,
            ms(a.mean()),
            ms(a.pct(99.0)),
            ms(a.max()),
            ms(b.mean()),
            ms(b.pct(99.0)),
            ms(b.max())
        );
    }
    println!(
        "  {:<48} {:>9} {:>29}   {:>9}",
        "whole transaction",
        ms(sql_only_seq.latencies.mean()),
        "",
        ms(sql_only_par.latencies.mean())
    );
    engine.store().close().await;
    Ok(())
}

async fn active_count(engine: &Arc<Engine>) -> anyhow::Result<i64> {
    let counts = engine
        .store()
        .certificate_counts(engine.status_view(engine.now()))
        .await?;
    Ok(counts
        .iter()
        .find(|(s, _)| s == "active")
        .map(|(_, n)| *n)
        .unwrap_or(0))
}

/// Issues every job with `concurrency` tasks pulling from one queue.
async fn issue_all(
    engine: &Arc<Engine>,
    principal: &Principal,
    jobs: Vec<(String, String)>,
    concurrency: usize,
) -> anyhow::Result<RunResult> {
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (engine, principal, jobs, next) = (
            engine.clone(),
            principal.clone(),
            jobs.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, csr)) = jobs.get(i) else {
                    break;
                };
                let t = Instant::now();
                engine
                    .call::<IssueCertificate>(
                        &principal,
                        IssueCertificateInput {
                            id: id.clone(),
                            csr_pem: Some(csr.clone()),
                            ttl_seconds: None,
                        },
                    )
                    .await?
                    .completed()?;
                lat.push(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut latencies = Samples::default();
    for t in tasks {
        latencies.0.extend(t.await??);
    }
    Ok(RunResult {
        concurrency,
        elapsed: start.elapsed(),
        latencies,
        steps: Vec::new(),
    })
}

/// The statements `issue_certificate` runs on an existing certificate (two
/// certificate reads and a profile read for the gate, then certificate,
/// issuer and profile reads, the version insert and certificate update, the
/// version and certificate re-reads, the audit append), in one write
/// transaction each, with a pre-made certificate text instead of signing.
async fn sql_only(
    engine: &Arc<Engine>,
    principal: &Principal,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<RunResult> {
    let store = engine.store().clone();
    let view = engine.status_view(engine.now());
    let ids: Vec<String> = {
        let (due, _) = common::timed(
            store.certificates_expiring_before(engine.now() + 10 * 365 * 86_400, count as i64),
        )
        .await;
        due?.into_iter().map(|(id, _)| id).collect()
    };
    anyhow::ensure!(!ids.is_empty(), "no active certificates to re-issue");
    let sample = {
        let mut tx = store.begin_read().await?;
        let c = tx
            .certificate(&ids[0], view)
            .await?
            .context("sample certificate")?;
        let v = tx
            .version(c.current_version_id.as_deref().unwrap_or_default())
            .await?
            .context("sample version")?;
        tx.commit().await?;
        Arc::new(v)
    };
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (engine, principal, ids, next, sample) = (
            engine.clone(),
            principal.clone(),
            ids.clone(),
            next.clone(),
            sample.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let store = engine.store();
            let mut lat = Vec::new();
            let mut steps: Vec<Samples> = vec![Samples::default(); STEPS.len()];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let t = Instant::now();
                let mut lap = Instant::now();
                let mut step = |k: usize| {
                    steps[k].push(lap.elapsed());
                    lap = Instant::now();
                };
                let now = engine.now();
                let view = engine.status_view(now);
                let mut tx = store.begin_write().await?;
                step(0);
                tx.certificate(id, view).await?.context("cert")?;
                step(1);
                tx.profile(DEFAULT_PROFILE_ID).await?;
                step(2);
                tx.certificate(id, view).await?;
                step(3);
                tx.issuer(LOCAL_ISSUER_ID).await?;
                step(4);
                tx.profile(DEFAULT_PROFILE_ID).await?;
                step(5);
                let vid = new_id("cv", engine.clock());
                let serial = new_id("sn", engine.clock());
                tx.insert_version(&NewVersion {
                    id: vid.clone(),
                    certificate_id: id.clone(),
                    issuer_id: LOCAL_ISSUER_ID.into(),
                    serial: serial.clone(),
                    fingerprint: sample.fingerprint.clone(),
                    key_algorithm: KeyAlgorithm::EcdsaP256,
                    not_before: now - 60,
                    not_after: now + 47 * 86_400,
                    cert_pem: sample.cert_pem.clone(),
                    chain_pem: sample.chain_pem.clone(),
                    csr_pem: None,
                    private_key_sealed: None,
                    created_at: now,
                })
                .await?;
                step(6);
                tx.version(&vid).await?;
                step(7);
                tx.certificate(id, view).await?;
                step(8);
                tx.append_audit(&NewAuditEvent {
                    id: new_id("ev", engine.clock()),
                    at: now,
                    actor: principal.id.clone(),
                    actor_role: principal.role.as_str().into(),
                    action: "bench_sql_only".into(),
                    resource_type: "certificate".into(),
                    resource_id: Some(id.clone()),
                    outcome: Outcome::Success,
                    details: serde_json::json!({ "serial": serial }),
                })
                .await?;
                step(9);
                tx.commit().await?;
                step(10);
                lat.push(t.elapsed());
            }
            anyhow::Ok((lat, steps))
        }));
    }
    let mut latencies = Samples::default();
    let mut steps: Vec<(&'static str, Samples)> =
        STEPS.iter().map(|s| (*s, Samples::default())).collect();
    for t in tasks {
        let (lat, task_steps) = t.await??;
        latencies.0.extend(lat);
        for (k, s) in task_steps.into_iter().enumerate() {
            steps[k].1.0.extend(s.0);
        }
    }
    Ok(RunResult {
        concurrency,
        elapsed: start.elapsed(),
        latencies,
        steps,
    })
}
