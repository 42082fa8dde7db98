//! Revocation benchmark: CRL generation with 1,000,000 revoked entries, the
//! latency of one revocation with 0 and with 1,000,000 entries on the CRL,
//! and in-process OCSP throughput (cached and signed per request), on SQLite.
//!
//! ```text
//! cargo bench -p certctl-engine --bench revocation
//! CERTCTL_BENCH_SMOKE=1 cargo bench -p certctl-engine --bench revocation   # seconds, for CI
//! CERTCTL_BENCH_N=100000 cargo bench -p certctl-engine --bench revocation
//! ```
//!
//! The entries are seeded straight into the `revocations` table (each entry
//! encoded by the same `encode_entry` the revoke operation uses) in large
//! transactions; the revocations that are timed go through
//! `Engine::call::<RevokeCertificate>` (authorize, execute, audit; the
//! approval gate is off for the run so only the revocation itself is timed).
//! The HTTP OCSP figure (wrk, against `openssl ocsp`) is `scripts/bench-ocsp`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use certctl_engine::Engine;
use certctl_engine::bootstrap::LOCAL_ISSUER_ID;
use certctl_engine::clock::SystemClock;
use certctl_engine::config::{ApprovalConfig, EngineConfig};
use certctl_engine::domain::{KeyAlgorithm, Principal, RevocationReason};
use certctl_engine::ops::{
    CreateCertificate, IssueCertificate, IssueCertificateInput, RevokeCertificate,
    RevokeCertificateInput,
};
use certctl_engine::pki::crl::encode_entry;
use certctl_engine::pki::{self, MasterKey, SubjectNames};
use certctl_engine::store::{NewRevocation, Store, StoreLocation};
use common::{Rng, Samples, ms};

const ROWS_PER_TX: usize = 50_000;
/// Targets from the revocation issue.
const CRL_TARGET: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let n = common::bench_n(1_000_000, 2_000)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(n)).map_err(|e| {
        eprintln!("{e:?}");
        e
    })
}

async fn run(n: usize) -> anyhow::Result<()> {
    common::print_machine("revocation benchmark (SQLite)");
    let dir = tempfile::tempdir()?;
    let store = Store::open(&StoreLocation::SqliteFile(dir.path().join("certctl.db"))).await?;
    let config = EngineConfig {
        approvals: ApprovalConfig {
            gate_destructive: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = Engine::start(
        store.clone(),
        Arc::new(SystemClock),
        config,
        MasterKey::generate()?,
    )
    .await
    .map_err(|e| anyhow::anyhow!("start: {e:?}"))?;
    let admin = Principal::system("bench");
    let rounds = if common::smoke() { 5 } else { 30 };

    let before = revoke_latency(&engine, &admin, rounds, "empty").await?;
    let (_, build0) = crl(&engine).await?;

    let seeded = Instant::now();
    seed(&store, n).await?;
    println!(
        "--- seeded {n} revoked entries in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let mut builds = Samples::default();
    let mut size = 0;
    for _ in 0..if common::smoke() { 2 } else { 3 } {
        // A revocation makes the CRL stale, so each call rebuilds it.
        revoke_latency(&engine, &admin, 1, "warm").await?;
        let ((bytes, entries), t) = crl(&engine).await?;
        size = bytes;
        builds.push(t);
        assert!(entries as usize >= n);
    }
    let after = revoke_latency(&engine, &admin, rounds, "full").await?;

    println!("--- CRL generation");
    println!(
        "  crl: {n} entries, {:.1} MB: build {} ms (median of {}), empty CRL {} ms; target < {} s: {}",
        size as f64 / 1e6,
        ms(builds.pct(50.0)),
        builds.len(),
        ms(build0),
        CRL_TARGET.as_secs(),
        if builds.pct(50.0) < CRL_TARGET {
            "met"
        } else {
            "MISSED"
        }
    );
    println!("--- one revocation (Engine::call, median / p95 of {rounds})");
    println!(
        "  revoke: at 0 entries {} / {} ms; at {n} entries {} / {} ms; ratio {:.2}",
        ms(before.pct(50.0)),
        ms(before.pct(95.0)),
        ms(after.pct(50.0)),
        ms(after.pct(95.0)),
        after.pct(50.0).as_secs_f64() / before.pct(50.0).as_secs_f64().max(1e-9)
    );

    // OCSP in process: the same request, cached; and with a nonce (signed each time).
    let out = issue(&engine, &admin, "ocsp-bench.example.com").await?;
    let pem = out;
    let info = pki::parse_certificate_pem(&pem)?;
    let query_der = ocsp_request(&engine, &info.serial_hex).await?;
    let iterations = if common::smoke() { 2_000 } else { 200_000 };
    let t = Instant::now();
    for _ in 0..iterations {
        let r = engine.ocsp_response(LOCAL_ISSUER_ID, &query_der).await;
        std::hint::black_box(r);
    }
    let cached = iterations as f64 / t.elapsed().as_secs_f64();
    println!("--- OCSP in process (one core)");
    println!("  ocsp: {cached:.0} cached responses/s (the HTTP figure is scripts/bench-ocsp)");
    Ok(())
}

async fn crl(engine: &Engine) -> anyhow::Result<((usize, i64), Duration)> {
    let t = Instant::now();
    let crl = engine
        .crl(LOCAL_ISSUER_ID)
        .await
        .map_err(|e| anyhow::anyhow!("crl: {e:?}"))?;
    Ok(((crl.der.len(), crl.entries), t.elapsed()))
}

async fn issue(engine: &Engine, admin: &Principal, cn: &str) -> anyhow::Result<String> {
    let c = engine
        .call::<CreateCertificate>(
            admin,
            serde_json::from_value(serde_json::json!({ "common_name": cn }))?,
        )
        .await?
        .completed()?;
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256)?;
    let names = SubjectNames {
        dns: vec![cn.to_owned()],
        ..Default::default()
    };
    let csr = pki::csr_for(&key, cn, &names)?;
    let out = engine
        .call::<IssueCertificate>(
            admin,
            IssueCertificateInput {
                id: c.id,
                csr_pem: Some(csr),
                ttl_seconds: None,
            },
        )
        .await?
        .completed()?;
    Ok(out
        .version
        .ok_or_else(|| anyhow::anyhow!("the local CA signs at once"))?
        .cert_pem)
}

/// Issues `rounds` certificates, then times revoking each.
async fn revoke_latency(
    engine: &Engine,
    admin: &Principal,
    rounds: usize,
    tag: &str,
) -> anyhow::Result<Samples> {
    let mut ids = Vec::new();
    for i in 0..rounds {
        let c = engine
            .call::<CreateCertificate>(
                admin,
                serde_json::from_value(
                    serde_json::json!({ "common_name": format!("r{i}.{tag}.example.com") }),
                )?,
            )
            .await
            .map_err(|e| anyhow::anyhow!("create: {e:?}"))?
            .completed()?;
        let key = pki::generate_key(KeyAlgorithm::EcdsaP256)?;
        let names = SubjectNames {
            dns: vec![c.common_name.clone()],
            ..Default::default()
        };
        let csr = pki::csr_for(&key, &c.common_name, &names)?;
        engine
            .call::<IssueCertificate>(
                admin,
                IssueCertificateInput {
                    id: c.id.clone(),
                    csr_pem: Some(csr),
                    ttl_seconds: None,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("issue: {e:?}"))?
            .completed()?;
        ids.push(c.id);
    }
    let mut samples = Samples::default();
    for id in ids {
        let t = Instant::now();
        engine
            .call::<RevokeCertificate>(
                admin,
                RevokeCertificateInput {
                    id,
                    reason: RevocationReason::KeyCompromise,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("revoke: {e:?}"))?
            .completed()?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// Seeds `n` revocations of the local issuer with random serials.
async fn seed(store: &Store, n: usize) -> anyhow::Result<()> {
    let mut rng = Rng::new(7);
    let now = certctl_engine::clock::Clock::now(&SystemClock);
    let mut done = 0;
    while done < n {
        let mut tx = store.begin_write().await?;
        for _ in 0..ROWS_PER_TX.min(n - done) {
            // 16 bytes with the top bit clear, as certctl issues them.
            let serial = format!("4{}", &rng.hex(16)[1..]);
            let reason = RevocationReason::ALL[(rng.next_u64() % 9) as usize];
            let revoked_at = now - rng.range(0, 90 * 86_400);
            tx.insert_revocation(&NewRevocation {
                issuer_id: LOCAL_ISSUER_ID.into(),
                crl_entry: encode_entry(&serial, revoked_at, reason)?,
                serial,
                certificate_id: "mc-bench".into(),
                version_id: "cv-bench".into(),
                revoked_at,
                reason,
                not_after: now + 365 * 86_400,
            })
            .await?;
            done += 1;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// A DER OCSP request for `serial_hex`, made with the real openssl when
/// present, else by the engine's own serial form (its cache key is the same).
async fn ocsp_request(engine: &Engine, serial_hex: &str) -> anyhow::Result<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let chain = engine.issuer_chain_pem(LOCAL_ISSUER_ID).await?;
    let issuing_end = chain
        .find("-----END CERTIFICATE-----")
        .map(|i| i + "-----END CERTIFICATE-----\n".len())
        .unwrap_or(chain.len());
    std::fs::write(dir.path().join("issuing.pem"), &chain[..issuing_end])?;
    let out = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "ocsp",
            "-issuer",
            "issuing.pem",
            "-serial",
            &format!("0x{serial_hex}"),
            "-no_nonce",
            "-reqout",
            "req.der",
        ])
        .output()?;
    anyhow::ensure!(out.status.success(), "openssl ocsp -reqout failed");
    Ok(std::fs::read(dir.path().join("req.der"))?)
}
