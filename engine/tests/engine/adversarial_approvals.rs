//! Attacks on the approval gate (issue 17, points 2, 3, 5 and 11), each
//! asserting the typed refusal and that nothing changed: no path around the
//! gate, an approval runs only on the state it showed, approval records keep
//! secrets sealed, and the smaller holes stay closed.

use certctl_engine::Error;
use certctl_engine::config::{ApprovalConfig, EngineConfig};
use certctl_engine::domain::{
    ApprovalStatus, Job, JobKind, JobStatus, KeyAlgorithm, RevocationReason, Role,
};
use certctl_engine::ops::{self, Outcome};

use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    moving_off_a_four_eyes_profile_needs_another_person,
    turning_approval_off_on_a_profile_needs_another_person,
    bulk_renew_applies_each_items_profile_gate,
    bulk_revoke_runs_only_on_the_selection_it_showed,
    revoke_runs_only_on_the_version_it_showed,
    approval_records_keep_secrets_sealed,
    a_new_api_key_reaches_only_its_requester_once,
    four_eyes_admin_cannot_mint_their_own_approver,
    an_admin_cannot_mint_an_approver_to_lift_a_profile_gate,
    secrets_stored_before_the_upgrade_are_sealed_at_start,
    first_approver_bootstrap_happens_once,
    revocation_jobs_cannot_be_cancelled,
    a_replica_with_another_master_key_refuses_to_start,
);

fn json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

fn ticket<T: std::fmt::Debug>(o: Outcome<T>) -> ops::ApprovalTicket {
    match o {
        Outcome::ApprovalRequired(t) => t,
        Outcome::Completed { result } => panic!("must be gated, ran: {result:?}"),
    }
}

fn approve(id: &str) -> ops::ApproveRequestInput {
    json(serde_json::json!({ "approval_id": id }))
}

async fn verified(h: &Harness) {
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(v.valid, "audit chain must stay valid: {v:?}");
}

async fn cert_now(h: &Harness, id: &str) -> certctl_engine::domain::ManagedCertificate {
    h.done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: id.into() })
        .await
        .certificate
}

async fn approval(h: &Harness, id: &str) -> certctl_engine::domain::Approval {
    h.done::<ops::GetApproval>(&h.admin(), ops::IdInput { id: id.into() })
        .await
}

/// A profile that requires approval for every issuance, and a certificate
/// under it issued (approved by another person).
async fn four_eyes_cert(h: &Harness, cn: &str) -> (String, String) {
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            json(serde_json::json!({ "name": format!("strict-{cn}"), "requires_approval": true })),
        )
        .await;
    let cert = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            json(serde_json::json!({ "common_name": cn, "profile_id": profile.id, "environment": "strict" })),
        )
        .await;
    let t = ticket(
        h.call::<ops::IssueCertificate>(
            &principal("pr-operator", Role::Operator),
            ops::IssueCertificateInput {
                id: cert.id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
                ttl_seconds: None,
            },
        )
        .await
        .expect("gated issue"),
    );
    h.done::<ops::ApproveRequest>(
        &principal("pr-approver", Role::Approver),
        approve(&t.approval_id),
    )
    .await;
    (cert.id, profile.id)
}

async fn moving_off_a_four_eyes_profile_needs_another_person(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let (cert, strict) = four_eyes_cert(h, "pay.example.com").await;
    // The attack: move the certificate to the default profile, then issue
    // without anyone approving.
    let t = ticket(
        h.call::<ops::UpdateCertificate>(
            &operator,
            json(serde_json::json!({ "id": cert, "profile_id": "prof-default" })),
        )
        .await
        .expect("update"),
    );
    assert!(!t.in_chat_confirmation_allowed, "{t:?}");
    assert!(t.summary.contains("requires approval"), "{}", t.summary);
    // The requester cannot confirm it in chat either.
    let err = h
        .engine
        .confirm_in_chat(&operator, &t.approval_id)
        .await
        .expect_err("in-chat refused");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(cert_now(h, &cert).await.profile_id, strict);
    let a = approval(h, &t.approval_id).await;
    assert_eq!(a.gate_reason.as_str(), "profile");
    verified(h).await;
}

async fn turning_approval_off_on_a_profile_needs_another_person(h: &Harness) {
    let (_cert, strict) = four_eyes_cert(h, "vault.example.com").await;
    // An admin, with the default policy (writes not gated), tries to lift
    // the requirement and then issue alone.
    let t = ticket(
        h.call::<ops::SaveProfile>(
            &h.admin(),
            json(serde_json::json!({ "id": strict, "name": "lifted", "requires_approval": false })),
        )
        .await
        .expect("save"),
    );
    assert!(!t.in_chat_confirmation_allowed);
    let err = h
        .engine
        .confirm_in_chat(&h.admin(), &t.approval_id)
        .await
        .expect_err("in-chat refused");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    let p: certctl_engine::domain::Profile = h.get(&h.admin(), "profile", &strict).await;
    assert!(p.requires_approval, "the profile must be unchanged");
    // Keeping the requirement is an ordinary write.
    h.done::<ops::SaveProfile>(
        &h.admin(),
        json(serde_json::json!({ "id": strict, "name": "renamed", "requires_approval": true })),
    )
    .await;
    verified(h).await;
}

async fn bulk_renew_applies_each_items_profile_gate(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let (strict_cert, _) = four_eyes_cert(h, "core.example.com").await;
    let plain = h.issued_cert("plain.example.com").await.certificate;
    let ids = vec![strict_cert.clone(), plain.id.clone()];
    let before = cert_now(h, &strict_cert).await.current_version_id;

    // The dry run says which items need which approval.
    let dry = h
        .done::<ops::BulkCertificates>(
            &operator,
            json(serde_json::json!({ "action": "renew", "ids": ids, "dry_run": true })),
        )
        .await;
    let dry = serde_json::to_value(dry).expect("json");
    let detail = |id: &str| {
        dry["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["id"] == id)
            .map(|i| i["detail"].as_str().unwrap_or_default().to_owned())
            .expect("item")
    };
    assert!(detail(&strict_cert).contains("another approver"), "{dry}");
    assert!(!detail(&plain.id).contains("another approver"), "{dry}");

    // The batch needs another person, not the requester's chat confirmation.
    let t = ticket(
        h.call::<ops::BulkCertificates>(
            &operator,
            json(serde_json::json!({ "action": "renew", "ids": [strict_cert, plain.id] })),
        )
        .await
        .expect("bulk"),
    );
    assert!(!t.in_chat_confirmation_allowed, "{t:?}");
    let err = h
        .engine
        .confirm_in_chat(&operator, &t.approval_id)
        .await
        .expect_err("in-chat refused");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(cert_now(h, &strict_cert).await.current_version_id, before);
    verified(h).await;
}

async fn bulk_revoke_runs_only_on_the_selection_it_showed(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let approver = principal("pr-approver", Role::Approver);
    let issue = |cn: &'static str| async move {
        let c = h
            .done::<ops::CreateCertificate>(
                &h.admin(),
                json(serde_json::json!({ "common_name": cn, "environment": "retire" })),
            )
            .await;
        h.done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
                ttl_seconds: None,
            },
        )
        .await;
        c.id
    };
    let first = issue("one.retire.example").await;
    // The approver is shown "revoke 1 certificate".
    let t = ticket(
        h.call::<ops::BulkCertificates>(
            &operator,
            json(serde_json::json!({ "action": "revoke", "filter": { "environment": "retire" }, "reason": "cessationOfOperation" })),
        )
        .await
        .expect("bulk revoke"),
    );
    assert!(t.summary.contains("1 certificate"), "{}", t.summary);
    // Then two more certificates come to match the filter.
    let second = issue("two.retire.example").await;
    let third = issue("three.retire.example").await;
    let err = h
        .call::<ops::ApproveRequest>(&approver, approve(&t.approval_id))
        .await
        .expect_err("stale");
    assert!(matches!(err, Error::StaleApproval(_)), "{err:?}");
    assert_eq!(err.code(), "stale-approval");
    for id in [&first, &second, &third] {
        assert_eq!(cert_now(h, id).await.status.as_str(), "valid", "{id}");
    }
    let a = approval(h, &t.approval_id).await;
    assert_eq!(a.status, ApprovalStatus::Failed);
    assert!(
        h.audit_actions()
            .await
            .iter()
            .any(|(a, o, _)| a == "approve_request" && o == "failure"),
        "the refusal is audited"
    );
    verified(h).await;
}

async fn revoke_runs_only_on_the_version_it_showed(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let approver = principal("pr-approver", Role::Approver);
    let issued = h.issued_cert("rotate.example.com").await;
    let cert = issued.certificate.id.clone();
    let shown_serial = issued.version.expect("version").serial;
    let t = ticket(
        h.call::<ops::RevokeCertificate>(
            &operator,
            ops::RevokeCertificateInput {
                id: cert.clone(),
                reason: RevocationReason::KeyCompromise,
            },
        )
        .await
        .expect("revoke"),
    );
    assert!(t.summary.contains(&shown_serial), "{}", t.summary);
    // The certificate renews before anyone decides.
    h.done::<ops::RenewCertificate>(
        &h.admin(),
        ops::RenewCertificateInput {
            id: cert.clone(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, "rotate.example.com", &[])),
        },
    )
    .await;
    let renewed = cert_now(h, &cert).await;
    assert_ne!(renewed.serial.as_deref(), Some(shown_serial.as_str()));
    let err = h
        .call::<ops::ApproveRequest>(&approver, approve(&t.approval_id))
        .await
        .expect_err("stale");
    assert!(matches!(err, Error::StaleApproval(_)), "{err:?}");
    assert!(err.to_string().contains(&shown_serial), "{err}");
    let after = cert_now(h, &cert).await;
    assert_eq!(after.status.as_str(), "valid");
    assert_eq!(after.serial, renewed.serial);
    verified(h).await;
}

fn gate_writes() -> EngineConfig {
    EngineConfig {
        approvals: ApprovalConfig {
            gate_write: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn approval_records_keep_secrets_sealed(h: &Harness) {
    let engine = Harness::engine_on(&h.db, &h.clock, gate_writes(), &h.master).await;
    let viewer = principal("pr-viewer", Role::Viewer);
    let approver = principal("pr-approver", Role::Approver);
    let secret = "hmac-s3cret-value-0123456789";
    let input = json(serde_json::json!({
        "name": "hook", "kind": "webhook",
        "settings": { "url": "http://127.0.0.1:9/hook" }, "secret": secret,
    }));
    let t = ticket(
        engine
            .call::<ops::SaveNotificationChannel>(&h.admin(), input)
            .await
            .expect("gated"),
    );
    // What every viewer can read holds no secret.
    let a = approval(h, &t.approval_id).await;
    assert_eq!(a.input["secret"], "[sealed]");
    // A channel URL may carry a token (Slack, Teams): sealed as well.
    assert_eq!(a.input["settings"]["url"], "[sealed]", "{}", a.input);
    let listed = h
        .done::<ops::ListApprovals>(&viewer, Default::default())
        .await;
    let audit = h
        .done::<ops::GetAuditLog>(&viewer, Default::default())
        .await;
    for text in [
        serde_json::to_string(&listed).expect("json"),
        serde_json::to_string(&audit).expect("json"),
    ] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
    // Approving runs the full input: the channel has its secret.
    let decided = engine
        .call::<ops::ApproveRequest>(&approver, approve(&t.approval_id))
        .await
        .expect("approve");
    let Outcome::Completed { result } = decided else {
        panic!("approval decisions are not gated")
    };
    assert_eq!(result.approval.status, ApprovalStatus::Executed);
    let channels: ops::List<serde_json::Value> = h
        .list(&h.admin(), "notification_channel", serde_json::json!({}))
        .await;
    let id = channels.data.first().expect("channel")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let record = h
        .engine
        .store()
        .channel_record(&id)
        .await
        .expect("read")
        .expect("channel");
    let stored = h
        .master
        .open(
            record.secret_sealed.as_deref().expect("sealed secret"),
            &format!("notification-channel:{id}"),
        )
        .expect("open");
    assert_eq!(stored.as_slice(), secret.as_bytes(), "the real secret ran");
    verified(h).await;
}

async fn a_new_api_key_reaches_only_its_requester_once(h: &Harness) {
    let engine = Harness::engine_on(&h.db, &h.clock, gate_writes(), &h.master).await;
    let viewer = principal("pr-viewer", Role::Viewer);
    let approver = principal("pr-approver", Role::Approver);
    let t = ticket(
        engine
            .call::<ops::CreatePrincipal>(
                &h.admin(),
                json(serde_json::json!({ "name": "ci-bot", "role": "operator" })),
            )
            .await
            .expect("gated"),
    );
    let decided = match engine
        .call::<ops::ApproveRequest>(&approver, approve(&t.approval_id))
        .await
        .expect("approve")
    {
        Outcome::Completed { result } => result,
        Outcome::ApprovalRequired(t) => panic!("gated: {t:?}"),
    };
    // Neither the approver's answer nor the record shows the key.
    let result = decided.approval.result.expect("result");
    assert_eq!(result["api_key"], "[sealed]", "{result}");
    let seen_by_viewer = approval(h, &t.approval_id).await;
    assert_eq!(
        seen_by_viewer.result.expect("result")["api_key"],
        "[sealed]"
    );
    // Only the requester collects it, once.
    let claim = |who| {
        h.call::<ops::ClaimApprovalResult>(
            who,
            json(serde_json::json!({ "approval_id": t.approval_id })),
        )
    };
    let err = claim(&viewer).await.expect_err("not the requester");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    let err = claim(&approver).await.expect_err("not the requester");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    let admin = h.admin();
    let got = match claim(&admin).await.expect("claim") {
        Outcome::Completed { result } => result,
        Outcome::ApprovalRequired(t) => panic!("gated: {t:?}"),
    };
    let key = got.result["api_key"].as_str().expect("key").to_owned();
    let p = h.engine.authenticate(&key).await.expect("the key works");
    assert_eq!(p.role, Role::Operator);
    let err = claim(&admin).await.expect_err("only once");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    // The audit trail holds no key.
    let audit = h
        .done::<ops::GetAuditLog>(&viewer, Default::default())
        .await;
    assert!(!serde_json::to_string(&audit).expect("json").contains(&key));
    verified(h).await;
}

async fn four_eyes_admin_cannot_mint_their_own_approver(h: &Harness) {
    let config = EngineConfig {
        approvals: ApprovalConfig {
            in_chat_write: false,
            in_chat_destructive: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let engine = Harness::engine_on(&h.db, &h.clock, config, &h.master).await;
    // Another person who may approve exists (a sole admin has nobody to ask).
    h.engine
        .bootstrap_first_approver("colleague")
        .await
        .expect("approver");
    for role in ["approver", "admin"] {
        let t = ticket(
            engine
                .call::<ops::CreatePrincipal>(
                    &h.admin(),
                    json(serde_json::json!({ "name": format!("my-{role}"), "role": role })),
                )
                .await
                .expect("create"),
        );
        assert!(!t.in_chat_confirmation_allowed);
        let err = engine
            .confirm_in_chat(&h.admin(), &t.approval_id)
            .await
            .expect_err("no self-approval");
        assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    }
    // A role that cannot approve is an ordinary write.
    engine
        .call::<ops::CreatePrincipal>(
            &h.admin(),
            json(serde_json::json!({ "name": "reader", "role": "viewer" })),
        )
        .await
        .expect("viewer")
        .completed()
        .expect("not gated");
    verified(h).await;
}

async fn an_admin_cannot_mint_an_approver_to_lift_a_profile_gate(h: &Harness) {
    // Default policy (in-chat allowed, writes not gated); one profile
    // requires approval; another person who may approve exists.
    h.engine
        .bootstrap_first_approver("colleague")
        .await
        .expect("approver");
    let (_cert, strict) = four_eyes_cert(h, "ledger.example.com").await;
    let lift = ticket(
        h.call::<ops::SaveProfile>(
            &h.admin(),
            json(serde_json::json!({ "id": strict, "name": "lifted", "requires_approval": false })),
        )
        .await
        .expect("save"),
    );
    // The attack: mint an approver and approve the lift with its key.
    let t = ticket(
        h.call::<ops::CreatePrincipal>(
            &h.admin(),
            json(serde_json::json!({ "name": "sock-puppet", "role": "approver" })),
        )
        .await
        .expect("create"),
    );
    assert_eq!(
        approval(h, &t.approval_id).await.gate_reason.as_str(),
        "four_eyes"
    );
    let err = h
        .engine
        .confirm_in_chat(&h.admin(), &t.approval_id)
        .await
        .expect_err("no self-approval");
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(
        approval(h, &lift.approval_id).await.status,
        ApprovalStatus::Pending
    );
    verified(h).await;
}

async fn secrets_stored_before_the_upgrade_are_sealed_at_start(h: &Harness) {
    // An approval as an older release stored it: the input in clear.
    let secret = "pre-upgrade-s3cret-42";
    let input = serde_json::json!({
        "name": "old-hook", "kind": "webhook",
        "settings": { "url": "http://127.0.0.1:9/old" }, "secret": secret,
    });
    let now = h.engine.now();
    h.db.raw(&format!(
        "DELETE FROM meta WHERE key = 'approval_secrets_sealed'; \
             INSERT INTO approvals (id, operation, input, input_hash, summary, risk, gate_reason, \
             resource_type, resource_id, requested_by, status, created_at, expires_at) VALUES \
             ('ap-old', 'save_notification_channel', '{input}', 'x', 'Create channel', 'write', \
             'risk', 'notification_channel', NULL, 'pr-test-admin', 'pending', {now}, {})",
        now + 3600
    ))
    .await
    .expect("old row");
    // The next start seals it.
    let engine = Harness::engine_on(&h.db, &h.clock, Default::default(), &h.master).await;
    let viewer = principal("pr-viewer", Role::Viewer);
    let listed = engine
        .call::<ops::ListApprovals>(&viewer, Default::default())
        .await
        .expect("list")
        .completed()
        .expect("read");
    let text = serde_json::to_string(&listed).expect("json");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("[sealed]"), "{text}");
    // Approving still runs the full input.
    engine
        .call::<ops::ApproveRequest>(&principal("pr-approver", Role::Approver), approve("ap-old"))
        .await
        .expect("approve");
    let channels: ops::List<serde_json::Value> = h
        .list(&h.admin(), "notification_channel", serde_json::json!({}))
        .await;
    assert_eq!(channels.data.len(), 1);
    verified(h).await;
}

async fn first_approver_bootstrap_happens_once(h: &Harness) {
    let key = h
        .engine
        .bootstrap_first_approver("alice")
        .await
        .expect("bootstrap")
        .expect("first time");
    let p = h.engine.authenticate(&key.key).await.expect("key works");
    assert_eq!(p.role, Role::Approver);
    assert!(
        h.engine
            .bootstrap_first_approver("mallory")
            .await
            .expect("second call")
            .is_none(),
        "only once"
    );
    verified(h).await;
}

async fn revocation_jobs_cannot_be_cancelled(h: &Harness) {
    let operator = principal("pr-operator", Role::Operator);
    let now = h.engine.now();
    let mut tx = h.engine.store().begin_write().await.expect("tx");
    tx.insert_job(&Job {
        id: "job-ca-revoke".into(),
        kind: JobKind::Revocation,
        status: JobStatus::Pending,
        certificate_id: None,
        target_id: None,
        agent_id: None,
        attempts: 0,
        max_attempts: 5,
        run_after: now,
        last_error: None,
        payload: serde_json::json!({}),
        created_at: now,
        updated_at: now,
    })
    .await
    .expect("job");
    tx.commit().await.expect("commit");
    for who in [&operator, &h.admin()] {
        let err = h
            .call::<ops::CancelJob>(
                who,
                ops::IdInput {
                    id: "job-ca-revoke".into(),
                },
            )
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    }
    let job: Job = h.get(&h.admin(), "job", "job-ca-revoke").await;
    assert_eq!(job.status, JobStatus::Pending);
    verified(h).await;
}

async fn a_replica_with_another_master_key_refuses_to_start(h: &Harness) {
    let other = certctl_engine::pki::MasterKey::generate().expect("key");
    let store = certctl_engine::store::Store::open(&h.db.location())
        .await
        .expect("store");
    let err = certctl_engine::Engine::start(
        store,
        std::sync::Arc::new(h.clock.clone()),
        Default::default(),
        other,
    )
    .await
    .expect_err("must refuse");
    assert!(err.to_string().contains("same master key"), "{err}");
}
