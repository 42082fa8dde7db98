//! The approval gate: gated calls change nothing until an eligible principal
//! approves; the stored input runs exactly once; reject, cancel and expiry
//! never run it; every step is audited.

use certctl_engine::Error;
use certctl_engine::domain::{ApprovalStatus, RevocationReason, Role};
use certctl_engine::ops::{self, Outcome};

use certctl_engine::config::{ApprovalConfig, EngineConfig};
use certctl_engine::domain::Principal;

use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    gated_revoke_runs_once_after_approval,
    reject_cancel_and_expiry_never_execute,
    profile_approval_needs_another_person,
    in_chat_confirmation_by_requester,
    approval_of_a_retired_operation_runs_as_asked,
    decisions_are_never_gated_even_when_writes_are,
);

fn revoke(id: &str) -> ops::RevokeCertificateInput {
    ops::RevokeCertificateInput {
        id: id.to_owned(),
        reason: RevocationReason::KeyCompromise,
    }
}

fn approve(id: &str) -> ops::ApproveRequestInput {
    serde_json::from_value(serde_json::json!({ "approval_id": id })).expect("input")
}

async fn status_of(h: &Harness, id: &str) -> String {
    h.done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: id.to_owned() })
        .await
        .certificate
        .status
        .as_str()
        .to_owned()
}

async fn gated_revoke_runs_once_after_approval(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let approver = principal("pr-approver", Role::Approver);
    let viewer = principal("pr-viewer", Role::Viewer);
    let cert = h.issued_cert("db.example.com").await.certificate;

    let out = h
        .call::<ops::RevokeCertificate>(&operator, revoke(&cert.id))
        .await
        .expect("gated call");
    let Outcome::ApprovalRequired(ticket) = out else {
        panic!("revoke must be gated")
    };
    assert!(ticket.summary.contains(&cert.id) && ticket.summary.contains("keyCompromise"));
    let json = serde_json::to_value(Outcome::<()>::ApprovalRequired(ticket.clone())).expect("json");
    assert_eq!(json["status"], "approval_required");
    assert_eq!(json["approval_id"], ticket.approval_id.as_str());
    // Nothing changed.
    assert_eq!(status_of(h, &cert.id).await, "valid");

    // The requester cannot approve its own request; a viewer cannot approve at all.
    let err = h
        .call::<ops::ApproveRequest>(&operator, approve(&ticket.approval_id))
        .await
        .expect_err("own approve refused");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    let err = h
        .call::<ops::ApproveRequest>(&viewer, approve(&ticket.approval_id))
        .await
        .expect_err("viewer refused");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(status_of(h, &cert.id).await, "valid");

    // An approver's decision runs exactly that input, once.
    let decided = h
        .done::<ops::ApproveRequest>(&approver, approve(&ticket.approval_id))
        .await;
    assert_eq!(decided.approval.status, ApprovalStatus::Executed);
    assert_eq!(decided.approval.decided_by.as_deref(), Some("pr-approver"));
    assert_eq!(status_of(h, &cert.id).await, "revoked");
    let again = h
        .call::<ops::ApproveRequest>(&approver, approve(&ticket.approval_id))
        .await
        .expect_err("second approve refused");
    assert!(matches!(err_kind(&again), "conflict"), "{again:?}");
    let details = h
        .done::<ops::GetCertificate>(
            &h.admin(),
            ops::CertificateIdInput {
                id: cert.id.clone(),
            },
        )
        .await;
    assert_eq!(
        details.certificate.revocation_reason,
        Some(RevocationReason::KeyCompromise)
    );
    let revocations = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, o, _)| a == "revoke_certificate" && o == "success")
        .count();
    assert_eq!(revocations, 1, "executed exactly once");

    // Every step is in the audit log, in order.
    let trail: Vec<(String, String, String)> = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "revoke_certificate" || a == "approve_request")
        .collect();
    let expect = [
        ("revoke_certificate", "approval_required", "pr-operator"),
        ("approve_request", "denied", "pr-operator"),
        ("approve_request", "denied", "pr-viewer"),
        ("revoke_certificate", "success", "pr-approver"),
        ("approve_request", "success", "pr-approver"),
        ("approve_request", "failure", "pr-approver"),
    ];
    let got: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|(a, o, p)| (a.as_str(), o.as_str(), p.as_str()))
        .collect();
    assert_eq!(got, expect);
    // And the chain still verifies.
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(v.valid, "{v:?}");
}

fn err_kind(e: &Error) -> &'static str {
    e.code()
}

async fn reject_cancel_and_expiry_never_execute(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let approver = principal("pr-approver", Role::Approver);
    let cert = h.issued_cert("cache.example.com").await.certificate;
    let ticket = |o: Outcome<_>| match o {
        Outcome::ApprovalRequired(t) => t,
        Outcome::Completed { .. } => panic!("must be gated"),
    };

    // Reject.
    let t1 = ticket(
        h.call::<ops::RevokeCertificate>(&operator, revoke(&cert.id))
            .await
            .expect("gated"),
    );
    let r = h
        .done::<ops::RejectRequest>(
            &approver,
            ops::DecideInput {
                approval_id: t1.approval_id.clone(),
                note: Some("not compromised".into()),
            },
        )
        .await;
    assert_eq!(r.approval.status, ApprovalStatus::Rejected);
    let err = h
        .call::<ops::ApproveRequest>(&approver, approve(&t1.approval_id))
        .await
        .expect_err("rejected cannot be approved");
    assert_eq!(err.code(), "conflict");
    assert_eq!(status_of(h, &cert.id).await, "valid");

    // Cancel by the requester.
    let t2 = ticket(
        h.call::<ops::RevokeCertificate>(&operator, revoke(&cert.id))
            .await
            .expect("gated"),
    );
    let err = h
        .call::<ops::CancelRequest>(
            &principal("pr-other-operator", Role::Operator),
            ops::DecideInput {
                approval_id: t2.approval_id.clone(),
                note: None,
            },
        )
        .await
        .expect_err("others cannot cancel");
    assert!(matches!(err, Error::Forbidden(_)));
    h.done::<ops::CancelRequest>(
        &operator,
        ops::DecideInput {
            approval_id: t2.approval_id.clone(),
            note: None,
        },
    )
    .await;
    assert!(
        h.call::<ops::ApproveRequest>(&approver, approve(&t2.approval_id))
            .await
            .is_err()
    );

    // Expiry: after the deadline an approve is refused, the sweep marks it.
    let t3 = ticket(
        h.call::<ops::RevokeCertificate>(&operator, revoke(&cert.id))
            .await
            .expect("gated"),
    );
    h.clock.advance(25 * 3600);
    let shown = h
        .done::<ops::GetApproval>(
            &approver,
            ops::IdInput {
                id: t3.approval_id.clone(),
            },
        )
        .await;
    assert_eq!(shown.status, ApprovalStatus::Expired);
    let err = h
        .call::<ops::ApproveRequest>(&approver, approve(&t3.approval_id))
        .await
        .expect_err("expired cannot be approved");
    assert!(err.to_string().contains("expired"), "{err}");
    let swept = h
        .done::<ops::ExpireApprovals>(&h.admin(), Default::default())
        .await;
    assert_eq!(swept.expired, vec![t3.approval_id.clone()]);
    assert_eq!(status_of(h, &cert.id).await, "valid");
    let revoked = h
        .audit_actions()
        .await
        .into_iter()
        .any(|(a, o, _)| a == "revoke_certificate" && o == "success");
    assert!(!revoked, "nothing was ever revoked");
}

async fn profile_approval_needs_another_person(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let approver = principal("pr-approver", Role::Approver);
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(
                serde_json::json!({ "name": "payments", "requires_approval": true }),
            )
            .expect("input"),
        )
        .await;
    let cert = h
        .done::<ops::CreateCertificate>(
            &operator,
            serde_json::from_value(serde_json::json!({
                "common_name": "pay.example.com", "profile_id": profile.id,
            }))
            .expect("input"),
        )
        .await;
    let input = ops::IssueCertificateInput {
        id: cert.id.clone(),
        csr_pem: Some(csr(
            certctl_engine::domain::KeyAlgorithm::EcdsaP256,
            "pay.example.com",
            &[],
        )),
        ttl_seconds: None,
    };
    let Outcome::ApprovalRequired(t) = h
        .call::<ops::IssueCertificate>(&operator, input)
        .await
        .expect("gated")
    else {
        panic!("profile requires approval")
    };
    assert!(!t.in_chat_confirmation_allowed);
    let err = h
        .engine
        .confirm_in_chat(&operator, &t.approval_id)
        .await
        .expect_err("four eyes");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    let versions = h.engine.store().versions(&cert.id).await.expect("versions");
    assert!(versions.is_empty());
    let decided = h
        .done::<ops::ApproveRequest>(&approver, approve(&t.approval_id))
        .await;
    assert_eq!(decided.approval.status, ApprovalStatus::Executed);
    let versions = h.engine.store().versions(&cert.id).await.expect("versions");
    assert_eq!(versions.len(), 1);
    // The result of the approved operation is kept with the approval.
    let result = decided.approval.result.expect("result");
    assert_eq!(result["version"]["id"], versions[0].id.as_str());
}

async fn in_chat_confirmation_by_requester(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let cert = h.issued_cert("chat.example.com").await.certificate;
    let Outcome::ApprovalRequired(t) = h
        .call::<ops::RevokeCertificate>(&operator, revoke(&cert.id))
        .await
        .expect("gated")
    else {
        panic!("gated")
    };
    assert!(t.in_chat_confirmation_allowed);
    // Someone else cannot "confirm in chat" on the requester's behalf.
    let err = h
        .engine
        .confirm_in_chat(&principal("pr-mallory", Role::Operator), &t.approval_id)
        .await
        .expect_err("not theirs");
    assert!(matches!(err, Error::Forbidden(_)));
    let out = h
        .engine
        .confirm_in_chat(&operator, &t.approval_id)
        .await
        .expect("confirmed");
    let Outcome::Completed { result } = out else {
        panic!("completed")
    };
    assert_eq!(result.approval.status, ApprovalStatus::Executed);
    assert_eq!(status_of(h, &cert.id).await, "revoked");
    // A replayed confirmation cannot run it twice.
    assert!(
        h.engine
            .confirm_in_chat(&operator, &t.approval_id)
            .await
            .is_err()
    );
}

/// An approval stored before `delete_owner` became `delete_object` with
/// `kind: owner` still runs, exactly as asked, after an upgrade.
async fn approval_of_a_retired_operation_runs_as_asked(h: &Harness) {
    let owner = h
        .done::<ops::SaveOwner>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "name": "Grace" })).expect("input"),
        )
        .await;
    let Outcome::ApprovalRequired(t) = h
        .delete(
            &principal("pr-operator", Role::Operator),
            "owner",
            &owner.id,
        )
        .await
        .expect("gated")
    else {
        panic!("a delete waits for approval")
    };
    // The row as an earlier release wrote it.
    h.db.raw(&format!(
        "UPDATE approvals SET operation = 'delete_owner', input = '{{\"id\":\"{}\"}}' WHERE id = '{}'",
        owner.id, t.approval_id
    ))
    .await
    .expect("rewrite");
    let decided = h
        .done::<ops::ApproveRequest>(
            &principal("pr-approver", Role::Approver),
            approve(&t.approval_id),
        )
        .await;
    assert_eq!(decided.approval.status, ApprovalStatus::Executed);
    let gone = h
        .call::<ops::GetObject>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "kind": "owner", "id": owner.id }))
                .expect("input"),
        )
        .await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
}

/// With every write gated (`--approval-gate-write`), rejecting, cancelling
/// and expiring requests still run at once: gating a decision would file
/// a request to decide a request, and the scheduler's expiry sweep would
/// wait for a person forever.
async fn decisions_are_never_gated_even_when_writes_are(h: &Harness) {
    let config = EngineConfig {
        approvals: ApprovalConfig {
            gate_write: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = Harness::engine_on(&h.db, &h.clock, config, &h.master).await;
    let operator = principal("pr-operator", Role::Operator);
    let approver = principal("pr-approver", Role::Approver);
    let cert = h.issued_cert("decide.example.com").await.certificate;
    let request = || async {
        match engine
            .call::<ops::RevokeCertificate>(&operator, revoke(&cert.id))
            .await
            .expect("revoke")
        {
            Outcome::ApprovalRequired(t) => t.approval_id,
            Outcome::Completed { .. } => panic!("revoke must be gated"),
        }
    };
    let decide = |id: String| ops::DecideInput {
        approval_id: id,
        note: None,
    };
    let rejected = request().await;
    match engine
        .call::<ops::RejectRequest>(&approver, decide(rejected.clone()))
        .await
        .expect("reject")
    {
        Outcome::Completed { result } => {
            assert_eq!(result.approval.status, ApprovalStatus::Rejected)
        }
        Outcome::ApprovalRequired(t) => panic!("a rejection was gated: {t:?}"),
    }
    let cancelled = request().await;
    match engine
        .call::<ops::CancelRequest>(&operator, decide(cancelled))
        .await
        .expect("cancel")
    {
        Outcome::Completed { result } => {
            assert_eq!(result.approval.status, ApprovalStatus::Cancelled)
        }
        Outcome::ApprovalRequired(t) => panic!("a cancellation was gated: {t:?}"),
    }
    let stale = request().await;
    h.clock.advance(25 * 3600);
    match engine
        .call::<ops::ExpireApprovals>(&Principal::system("scheduler"), Default::default())
        .await
        .expect("expire")
    {
        Outcome::Completed { result } => assert_eq!(result.expired, vec![stale]),
        Outcome::ApprovalRequired(t) => panic!("the expiry sweep was gated: {t:?}"),
    }
    // Nothing but the three revocations ever asked for approval.
    let asked: Vec<_> = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(_, outcome, _)| outcome == "approval_required")
        .map(|(action, _, _)| action)
        .collect();
    assert_eq!(asked, ["revoke_certificate"; 3], "{asked:?}");
    assert_eq!(status_of(h, &cert.id).await, "valid");
}
