//! Bulk renew, revoke and reassign: one request through the approval gate
//! (one approval covers the batch), a result per certificate, a record with
//! counts, and dry runs that change nothing and are not gated.

use certctl_engine::domain::{BulkItemOutcome, BulkKind, Role};
use certctl_engine::ops::{self, Outcome};

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    dry_runs_list_what_would_change_and_change_nothing,
    one_approval_covers_each_batch_with_a_record,
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
        .done::<ops::BulkRevokeCertificates>(
            &op,
            from(serde_json::json!({ "filter": { "environment": "stage" }, "dry_run": true })),
        )
        .await;
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
        .done::<ops::BulkReassignCertificates>(
            &op,
            from(
                serde_json::json!({ "ids": [ids[0], ids[1]], "team_id": team.id, "dry_run": true }),
            ),
        )
        .await;
    assert_eq!((out.total, out.succeeded, out.skipped), (2, 2, 0));
    assert!(
        out.items
            .iter()
            .all(|i| i.outcome == BulkItemOutcome::WouldChange)
    );
    let out = h
        .done::<ops::BulkRenewCertificates>(
            &op,
            from(serde_json::json!({ "filter": { "environment": "stage" }, "dry_run": true })),
        )
        .await;
    assert_eq!((out.total, out.succeeded, out.skipped), (4, 3, 1));

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
        .done::<ops::ListBulkOperations>(&h.admin(), from(serde_json::json!({})))
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
    let out = approved::<ops::BulkReassignCertificates>(
        h,
        from(serde_json::json!({ "filter": { "environment": "prod" }, "owner_id": owner.id })),
    )
    .await;
    assert_eq!((out.total, out.succeeded, out.skipped), (4, 4, 0));
    let listed = h
        .done::<ops::ListCertificates>(
            &h.admin(),
            from(serde_json::json!({ "owner_id": owner.id })),
        )
        .await;
    assert_eq!(listed.data.len(), 4);
    let rec = h
        .done::<ops::GetBulkOperation>(
            &h.admin(),
            from(serde_json::json!({ "id": out.bulk_operation_id.clone().unwrap() })),
        )
        .await;
    assert_eq!(rec.kind, BulkKind::Reassign);
    assert_eq!((rec.total, rec.succeeded, rec.skipped), (4, 4, 0));
    assert_eq!(rec.results.len(), 4);
    assert_eq!(rec.run_by, "pr-approver");
    // Again: already so, skipped one by one.
    let again = approved::<ops::BulkReassignCertificates>(
        h,
        from(serde_json::json!({ "filter": { "environment": "prod" }, "owner_id": owner.id })),
    )
    .await;
    assert_eq!((again.succeeded, again.skipped), (0, 4));

    // Renew by ids: issued ones get a renewal, the pending one is skipped with the reason.
    let mut renew_ids = ids.clone();
    renew_ids.push(pending.clone());
    let out =
        approved::<ops::BulkRenewCertificates>(h, from(serde_json::json!({ "ids": renew_ids })))
            .await;
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
    let out = approved::<ops::BulkRevokeCertificates>(
        h,
        from(serde_json::json!({ "filter": { "owner_id": owner.id }, "reason": "cessationOfOperation" })),
    )
    .await;
    assert_eq!(out.revoked.len(), 3);
    let rec = h
        .done::<ops::GetBulkOperation>(
            &h.admin(),
            from(serde_json::json!({ "id": out.bulk_operation_id.unwrap() })),
        )
        .await;
    assert_eq!(
        (rec.kind, rec.total, rec.succeeded, rec.skipped),
        (BulkKind::Revoke, 4, 3, 1)
    );
    let all = h
        .done::<ops::ListBulkOperations>(&h.admin(), from(serde_json::json!({})))
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
