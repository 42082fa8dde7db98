//! Bulk revocation benchmark: 10,000 issued certificates selected by a
//! filter, revoked by one `bulk_certificates` revoke request once it is
//! approved (one approval covers the batch), on SQLite.
//!
//! ```text
//! cargo bench -p certctl-engine --bench bulk
//! CERTCTL_BENCH_SMOKE=1 cargo bench -p certctl-engine --bench bulk   # 200 certificates, for CI
//! CERTCTL_BENCH_N=50000 cargo bench -p certctl-engine --bench bulk   # above the 10,000 cap: refused
//! ```
//!
//! The certificates are seeded through the store (a certificate row and a
//! version row each, in one transaction) under team "bulk"; another 1,000
//! under another team must stay untouched. The timed part is the approver's
//! `approve_request`, which runs the stored request in full through the
//! engine (each revocation, its CRL entry, the notification event, the
//! bulk record and audit), from call to commit.

mod common;

use std::sync::Arc;
use std::time::Instant;

use certctl_engine::Engine;
use certctl_engine::bootstrap::{DEFAULT_PROFILE_ID, LOCAL_ISSUER_ID};
use certctl_engine::clock::{Clock, SystemClock};
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{EffectiveStatus, KeyAlgorithm, ManagedCertificate, Principal, Role};
use certctl_engine::ops::{self, Outcome};
use certctl_engine::pki::MasterKey;
use certctl_engine::store::{NewVersion, Store, StoreLocation};

/// The issue's target for 10,000 certificates on this machine.
const TARGET_SECONDS: f64 = 10.0;

fn main() -> anyhow::Result<()> {
    let n = common::bench_n(10_000, 200)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(n)).map_err(|e| {
        eprintln!("{e:?}");
        e
    })
}

fn principal(id: &str, role: Role) -> Principal {
    Principal {
        id: id.into(),
        name: id.into(),
        role,
        agent_id: None,
        address: None,
    }
}

async fn run(n: usize) -> anyhow::Result<()> {
    common::print_machine("bulk revocation benchmark (SQLite)");
    let dir = tempfile::tempdir()?;
    let store = Store::open(&StoreLocation::SqliteFile(dir.path().join("certctl.db"))).await?;
    let engine = Engine::start(
        store.clone(),
        Arc::new(SystemClock),
        EngineConfig::default(),
        MasterKey::generate()?,
    )
    .await
    .map_err(|e| anyhow::anyhow!("start: {e:?}"))?;
    let admin = principal("pr-bench-admin", Role::Admin);
    let team = |name: &str| {
        let engine = engine.clone();
        let admin = admin.clone();
        let name = name.to_owned();
        async move {
            let input = serde_json::from_value(serde_json::json!({ "name": name }))?;
            let t = engine
                .call::<ops::SaveTeam>(&admin, input)
                .await?
                .completed()?;
            anyhow::Ok(t.id)
        }
    };
    let bulk_team = team("bulk").await?;
    let other_team = team("other").await?;

    let seeded = Instant::now();
    seed(&store, &bulk_team, n, "b").await?;
    seed(&store, &other_team, 1_000.min(n), "o").await?;
    println!(
        "--- seeded {} issued certificates in {:.1} s",
        n + 1_000.min(n),
        seeded.elapsed().as_secs_f64()
    );

    // One request by an operator, gated; an approver approves it once.
    let input: ops::BulkCertificatesInput = serde_json::from_value(serde_json::json!({
        "action": "revoke", "filter": { "team_id": bulk_team }, "reason": "cessationOfOperation",
    }))?;
    let t = Instant::now();
    let dry = engine
        .call::<ops::BulkCertificates>(
            &principal("pr-op", Role::Operator),
            ops::BulkCertificatesInput {
                dry_run: true,
                ..input.clone()
            },
        )
        .await?
        .completed()?;
    let ops::BulkCertificatesOutput::Revoke(dry) = dry else {
        anyhow::bail!("a revocation answers revoked and skipped ids");
    };
    let dry_time = t.elapsed();
    let t = Instant::now();
    let Outcome::ApprovalRequired(ticket) = engine
        .call::<ops::BulkCertificates>(&principal("pr-op", Role::Operator), input)
        .await?
    else {
        anyhow::bail!("bulk revocation must be gated");
    };
    let gate_time = t.elapsed();
    let approve = serde_json::from_value(serde_json::json!({ "approval_id": ticket.approval_id }))?;
    let t = Instant::now();
    let decided = engine
        .call::<ops::ApproveRequest>(&principal("pr-approver", Role::Approver), approve)
        .await?
        .completed()?;
    let run_time = t.elapsed();
    let out: ops::BulkRevokeOutput =
        serde_json::from_value(decided.approval.result.clone().unwrap_or_default())?;
    anyhow::ensure!(
        out.revoked.len() == n && out.skipped.is_empty(),
        "revoked {} of {n}, skipped {}",
        out.revoked.len(),
        out.skipped.len()
    );
    anyhow::ensure!(
        dry.would_revoke.len() == n,
        "dry run listed {}",
        dry.would_revoke.len()
    );
    let record = engine
        .call::<ops::GetObject>(
            &admin,
            serde_json::from_value(serde_json::json!({
                "kind": "bulk_operation", "id": out.bulk_operation_id.clone().unwrap_or_default(),
            }))?,
        )
        .await?
        .completed()?;
    let ops::Object::BulkOperation(record) = record else {
        anyhow::bail!("get_object kind bulk_operation answers a bulk operation");
    };
    anyhow::ensure!(record.results.len() == n && record.succeeded == n as i64);
    // The other team's certificates are untouched.
    let others = engine
        .call::<ops::ListCertificates>(
            &admin,
            serde_json::from_value(
                serde_json::json!({ "team_id": other_team, "status": "revoked" }),
            )?,
        )
        .await?
        .completed()?;
    anyhow::ensure!(
        others.data.is_empty(),
        "other team's certificates were revoked"
    );

    let secs = run_time.as_secs_f64();
    println!("--- bulk revoke by filter (team_id), one approval");
    println!(
        "  dry run: {n} listed in {:.2} s; gated request: {:.2} s",
        dry_time.as_secs_f64(),
        gate_time.as_secs_f64()
    );
    println!(
        "  bulk_revoke: {n} revoked once approved in {secs:.2} s ({:.0} per s) in {} committed chunks of {}, per-item results recorded; target {n_target} in < {TARGET_SECONDS:.0} s: {}",
        n as f64 / secs,
        n.div_ceil(engine.config().scheduler.bulk_chunk_size.max(1)),
        engine.config().scheduler.bulk_chunk_size,
        if n >= 10_000 && secs < TARGET_SECONDS {
            "met"
        } else if n >= 10_000 {
            "MISSED"
        } else {
            "(smoke size)"
        },
        n_target = 10_000,
    );
    let crl = engine.crl(LOCAL_ISSUER_ID).await?;
    println!("  CRL after: {} entries", crl.entries);
    Ok(())
}

/// `n` issued certificates of `team_id`, straight into the store.
async fn seed(store: &Store, team_id: &str, n: usize, tag: &str) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let mut tx = store.begin_write().await?;
    for i in 0..n {
        let id = format!("mc-bench-{tag}-{i:06}");
        let cn = format!("h{i:06}.{tag}.example.com");
        let version_id = format!("cv-bench-{tag}-{i:06}");
        let cert = ManagedCertificate {
            id: id.clone(),
            name: cn.clone(),
            common_name: cn.clone(),
            sans: vec![cn],
            status: EffectiveStatus::Pending,
            environment: "production".into(),
            issuer_id: LOCAL_ISSUER_ID.into(),
            profile_id: DEFAULT_PROFILE_ID.into(),
            owner_id: None,
            team_id: Some(team_id.to_owned()),
            renewal_policy_id: None,
            labels: Default::default(),
            current_version_id: None,
            serial: None,
            fingerprint: None,
            key_algorithm: None,
            not_before: None,
            not_after: None,
            revoked_at: None,
            revocation_reason: None,
            created_at: now,
            updated_at: now,
        };
        tx.insert_certificate(&cert).await?;
        tx.insert_version(&NewVersion {
            id: version_id,
            certificate_id: id,
            issuer_id: LOCAL_ISSUER_ID.into(),
            serial: format!("{:02x}{:030x}", if tag == "b" { 0x51 } else { 0x52 }, i),
            fingerprint: format!("{:064x}", i * 2 + usize::from(tag == "o")),
            key_algorithm: KeyAlgorithm::EcdsaP256,
            not_before: now - 60,
            not_after: now + 90 * 86_400,
            cert_pem: "-----BEGIN CERTIFICATE-----\nseeded\n-----END CERTIFICATE-----\n".into(),
            chain_pem: String::new(),
            csr_pem: None,
            private_key_sealed: None,
            created_at: now,
        })
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
