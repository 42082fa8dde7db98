//! Bulk renew, revoke and reassign: one request through the approval gate
//! (one approval covers the batch), a result per certificate, a record with
//! counts, and dry runs that change nothing and are not gated.

use std::sync::Arc;

use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{BulkItemOutcome, BulkKind, BulkOperation, Role};
use certctl_engine::ops::{self, BulkStep, Outcome};
use certctl_engine::scheduler::{Loop, Scheduler, TickOutcome};

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    dry_runs_list_what_would_change_and_change_nothing,
    one_approval_covers_each_batch_with_a_record,
    chunks_show_progress_and_a_restart_resumes_without_duplicates,
);

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

/// Three issued certificates in `env`, plus one never issued.
async fn fleet(h: &Harness, env: &str) -> (Vec<String>, String) {
    let mut ids = Vec::new();
    for i in 0..3 {
        let cn = format!("{env}{i}.example.com");
        let c = h.create_cert(&cn, &[]).await;
        h.done::<ops::UpdateCertificate>(
            &h.admin(),
            from(serde_json::json!({ "id": c.id, "environment": env })),
        )
        .await;
        h.done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(super::support::csr(
                    certctl_engine::domain::KeyAlgorithm::EcdsaP256,
                    &cn,
                    &[&cn],
                )),
                ttl_seconds: None,
            },
        )
        .await;
        ids.push(c.id);
    }
    let pending = h
        .create_cert(&format!("{env}-later.example.com"), &[])
        .await;
    h.done::<ops::UpdateCertificate>(
        &h.admin(),
        from(serde_json::json!({ "id": pending.id, "environment": env })),
    )
    .await;
    (ids, pending.id)
}

/// Calls a gated bulk operation as an operator and has an approver approve
/// it once; returns the executed result.
/// The answer of a revoke action.
fn rv(out: ops::BulkCertificatesOutput) -> ops::BulkRevokeOutput {
    match out {
        ops::BulkCertificatesOutput::Revoke(r) => r,
        other => panic!("a revocation answers revoked and skipped ids: {other:?}"),
    }
}

/// The answer of a renew or reassign action.
fn items(out: ops::BulkCertificatesOutput) -> ops::BulkOutput {
    match out {
        ops::BulkCertificatesOutput::Items(r) => r,
        other => panic!("a renewal or reassignment answers per-item results: {other:?}"),
    }
}

async fn approved<O: ops::Operation>(h: &Harness, input: O::Input) -> O::Output
where
    O::Output: serde::de::DeserializeOwned,
{
    let out = h
        .call::<O>(&principal("pr-op", Role::Operator), input)
        .await
        .expect("call");
    let Outcome::ApprovalRequired(t) = out else {
        panic!("{} must be gated", O::META.name)
    };
    let decided = h
        .done::<ops::ApproveRequest>(
            &principal("pr-approver", Role::Approver),
            from(serde_json::json!({ "approval_id": t.approval_id })),
        )
        .await;
    serde_json::from_value(decided.approval.result.clone().expect("executed")).expect("output")
}

async fn dry_runs_list_what_would_change_and_change_nothing(h: &Harness) {
    let (ids, pending) = fleet(h, "stage").await;
    let op = principal("pr-op", Role::Operator);
    let out = h
        .done::<ops::BulkCertificates>(
            &op,
            from(serde_json::json!({ "action": "revoke", "filter": { "environment": "stage" }, "dry_run": true })),
        )
        .await;
    let out = rv(out);
    assert!(out.dry_run && out.revoked.is_empty() && out.bulk_operation_id.is_none());
    let mut would = out.would_revoke.clone();
    would.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(would, want);
    assert_eq!(out.skipped.len(), 1);
    assert_eq!(out.skipped[0].id, pending);

    let team = h
        .done::<ops::SaveTeam>(&h.admin(), from(serde_json::json!({ "name": "platform" })))
        .await;
    let out = h
        .done::<ops::BulkCertificates>(
            &op,
            from(
                serde_json::json!({ "action": "reassign", "ids": [ids[0], ids[1]], "team_id": team.id, "dry_run": true }),
            ),
        )
        .await;
    let out = items(out);
    assert_eq!((out.total, out.succeeded, out.skipped), (2, 2, 0));
    assert!(
        out.items
            .iter()
            .all(|i| i.outcome == BulkItemOutcome::WouldChange)
    );
    let out = h
        .done::<ops::BulkCertificates>(
            &op,
            from(serde_json::json!({ "action": "renew", "filter": { "environment": "stage" }, "dry_run": true })),
        )
        .await;
    let out = items(out);
    assert_eq!((out.total, out.succeeded, out.skipped), (4, 3, 1));

    // A field of another action is refused, not ignored.
    let err = h
        .call::<ops::BulkCertificates>(
            &op,
            from(serde_json::json!({ "action": "renew", "ids": [ids[0]], "reason": "keyCompromise" })),
        )
        .await
        .expect_err("reason is for revoke");
    assert!(
        matches!(&err, certctl_engine::Error::InvalidInput(m) if m.contains("reason")),
        "{err:?}"
    );

    // Nothing changed, nothing recorded.
    for id in &ids {
        let c = h
            .done::<ops::GetCertificate>(&h.admin(), from(serde_json::json!({ "id": id })))
            .await;
        assert_eq!(c.certificate.status.as_str(), "valid");
        assert_eq!(c.certificate.team_id, None);
        assert_eq!(c.versions.len(), 1);
    }
    let records = h
        .list::<certctl_engine::domain::BulkOperation>(
            &h.admin(),
            "bulk_operation",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(records.data.len(), 0);
    let approvals = h
        .done::<ops::ListApprovals>(&h.admin(), from(serde_json::json!({})))
        .await;
    assert_eq!(approvals.data.len(), 0, "dry runs are not gated");
}

async fn one_approval_covers_each_batch_with_a_record(h: &Harness) {
    let (ids, pending) = fleet(h, "prod").await;
    let owner = h
        .done::<ops::SaveOwner>(&h.admin(), from(serde_json::json!({ "name": "Ada" })))
        .await;

    // Reassign by filter: one approval, every certificate, one record.
    let out = approved::<ops::BulkCertificates>(
        h,
        from(serde_json::json!({ "action": "reassign", "filter": { "environment": "prod" }, "owner_id": owner.id })),
    )
    .await;
    let out = items(out);
    assert_eq!((out.total, out.succeeded, out.skipped), (4, 4, 0));
    let listed = h
        .done::<ops::ListCertificates>(
            &h.admin(),
            from(serde_json::json!({ "owner_id": owner.id })),
        )
        .await;
    assert_eq!(listed.data.len(), 4);
    let rec = h
        .get::<certctl_engine::domain::BulkOperation>(
            &h.admin(),
            "bulk_operation",
            &out.bulk_operation_id.clone().unwrap(),
        )
        .await;
    assert_eq!(rec.kind, BulkKind::Reassign);
    assert_eq!((rec.total, rec.succeeded, rec.skipped), (4, 4, 0));
    assert_eq!(rec.results.len(), 4);
    assert_eq!(rec.run_by, "pr-approver");
    // Again: already so, skipped one by one.
    let again = approved::<ops::BulkCertificates>(
        h,
        from(serde_json::json!({ "action": "reassign", "filter": { "environment": "prod" }, "owner_id": owner.id })),
    )
    .await;
    let again = items(again);
    assert_eq!((again.succeeded, again.skipped), (0, 4));

    // Renew by ids: issued ones get a renewal, the pending one is skipped with the reason.
    let mut renew_ids = ids.clone();
    renew_ids.push(pending.clone());
    let out = approved::<ops::BulkCertificates>(
        h,
        from(serde_json::json!({ "action": "renew", "ids": renew_ids })),
    )
    .await;
    let out = items(out);
    assert_eq!((out.total, out.succeeded, out.skipped), (4, 3, 1));
    let skipped = out
        .items
        .iter()
        .find(|i| i.outcome == BulkItemOutcome::Skipped)
        .unwrap();
    assert_eq!(skipped.id, pending);
    assert!(
        skipped.detail.as_deref().unwrap().contains("pending"),
        "{skipped:?}"
    );

    // Revoke by filter: the record lists every certificate.
    let out = approved::<ops::BulkCertificates>(
        h,
        from(serde_json::json!({ "action": "revoke", "filter": { "owner_id": owner.id }, "reason": "cessationOfOperation" })),
    )
    .await;
    let out = rv(out);
    assert_eq!(out.revoked.len(), 3);
    let rec = h
        .get::<certctl_engine::domain::BulkOperation>(
            &h.admin(),
            "bulk_operation",
            &out.bulk_operation_id.unwrap(),
        )
        .await;
    assert_eq!(
        (rec.kind, rec.total, rec.succeeded, rec.skipped),
        (BulkKind::Revoke, 4, 3, 1)
    );
    let all = h
        .list::<certctl_engine::domain::BulkOperation>(
            &h.admin(),
            "bulk_operation",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(all.data.len(), 4);
    assert!(
        all.data.iter().all(|b| b.results.is_empty()),
        "lists leave the per-item results out"
    );
    let approvals = h
        .done::<ops::ListApprovals>(&h.admin(), from(serde_json::json!({})))
        .await;
    assert_eq!(approvals.data.len(), 4, "one approval per batch");
}

async fn bulk_record(h: &Harness, id: &str) -> BulkOperation {
    h.get::<certctl_engine::domain::BulkOperation>(&h.admin(), "bulk_operation", id)
        .await
}

/// After its one approval a bulk operation runs in committed chunks: its
/// record shows status, counts and per-item results after each; a process
/// that stops mid-way holds a lease until it runs out, then the jobs loop of
/// another process finishes the rest, and no certificate is done twice.
async fn chunks_show_progress_and_a_restart_resumes_without_duplicates(h: &Harness) {
    let (ids, pending) = fleet(h, "batch").await;
    let mut cfg = EngineConfig::default();
    cfg.scheduler.bulk_chunk_size = 1;
    cfg.scheduler.bulk_runs_in_call = false;
    let a = Harness::engine_on(&h.db, &h.clock, cfg.clone(), &h.master).await;
    let approver = principal("pr-approver", Role::Approver);
    let out = a
        .call::<ops::BulkCertificates>(
            &principal("pr-op", Role::Operator),
            from(serde_json::json!({ "action": "revoke", "filter": { "environment": "batch" } })),
        )
        .await
        .expect("call");
    let Outcome::ApprovalRequired(t) = out else {
        panic!("bulk revocation must be gated")
    };
    let decided = a
        .call::<ops::ApproveRequest>(
            &approver,
            from(serde_json::json!({ "approval_id": t.approval_id })),
        )
        .await
        .expect("approve")
        .completed()
        .expect("approved");
    let started: ops::BulkRevokeOutput =
        serde_json::from_value(decided.approval.result.clone().expect("executed")).expect("out");
    let bulk_id = started.bulk_operation_id.expect("a record");
    assert!(started.revoked.is_empty() && started.skipped.is_empty());
    let b = bulk_record(h, &bulk_id).await;
    assert_eq!(
        (b.status.as_str(), b.total, b.succeeded + b.skipped),
        ("running", 4, 0)
    );
    assert!(b.results.is_empty());

    // One chunk at a time: each commit shows.
    assert_eq!(
        a.run_bulk_chunk(&bulk_id, "proc-a").await.expect("chunk"),
        BulkStep::Progressed
    );
    let b = bulk_record(h, &bulk_id).await;
    assert_eq!(
        (b.status.as_str(), b.succeeded + b.skipped, b.results.len()),
        ("running", 1, 1)
    );
    // proc-a holds the lease: another process leaves it alone meanwhile.
    let other = Harness::engine_on(&h.db, &h.clock, cfg, &h.master).await;
    assert_eq!(
        other
            .run_bulk_chunk(&bulk_id, "proc-b")
            .await
            .expect("chunk"),
        BulkStep::NotHeld
    );
    assert_eq!(
        other
            .resume_bulk_operations("proc-b")
            .await
            .expect("resume"),
        0
    );
    assert_eq!(
        a.run_bulk_chunk(&bulk_id, "proc-a").await.expect("chunk"),
        BulkStep::Progressed
    );
    assert_eq!(bulk_record(h, &bulk_id).await.results.len(), 2);
    // proc-a stops for good; once its lease ran out, proc-b's jobs loop
    // finishes the operation.
    a.store().close().await;
    drop(a);
    h.clock
        .advance(EngineConfig::default().scheduler.job_lease_seconds + 1);
    let s = Arc::new(Scheduler::new(other.clone(), "proc-b"));
    assert_eq!(s.run_once(Loop::Jobs, other.now()).await, TickOutcome::Ran);
    let b = bulk_record(h, &bulk_id).await;
    assert_eq!(b.status, "completed");
    assert!(b.finished_at.is_some());
    assert_eq!((b.total, b.succeeded, b.skipped), (4, 3, 1));
    let mut done: Vec<String> = b.results.iter().map(|i| i.id.clone()).collect();
    done.sort();
    let mut want: Vec<String> = ids.iter().cloned().chain([pending.clone()]).collect();
    want.sort();
    assert_eq!(done, want, "each certificate once, none twice");
    for i in &b.results {
        let expect = if i.id == pending {
            BulkItemOutcome::Skipped
        } else {
            BulkItemOutcome::Done
        };
        assert_eq!(i.outcome, expect, "{i:?}");
    }
    for id in &ids {
        let c = h
            .done::<ops::GetCertificate>(&h.admin(), from(serde_json::json!({ "id": id })))
            .await;
        assert_eq!(c.certificate.status.as_str(), "revoked");
    }
    // One audit event per chunk, by the approver, plus the approval's.
    let chunks: Vec<(String, String, String)> = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "bulk_operation.chunk")
        .collect();
    assert_eq!(chunks.len(), 4, "{chunks:?}");
    assert!(
        chunks
            .iter()
            .all(|(_, o, who)| o == "success" && who == "pr-approver")
    );
    other.store().close().await;
}
