//! Bad input gets a typed error and leaves nothing half-written.

use certctl_engine::Error;
use certctl_engine::domain::Role;
use certctl_engine::ops;

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(bad_input_is_typed_and_atomic, roles_are_enforced);

async fn bad_input_is_typed_and_atomic(h: &Harness) {
    // Unknown ids.
    let err = h
        .call::<ops::GetCertificate>(
            &h.admin(),
            ops::CertificateIdInput {
                id: "mc-nope".into(),
            },
        )
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // A gated call on an unknown id is refused, not queued as an approval.
    let err = h
        .call::<ops::RevokeCertificate>(
            &h.admin(),
            ops::RevokeCertificateInput {
                id: "mc-nope".into(),
                reason: Default::default(),
            },
        )
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let err = h
        .delete(&h.admin(), "target", "tgt-nope")
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let approvals = h
        .done::<ops::ListApprovals>(&h.admin(), Default::default())
        .await;
    assert!(approvals.data.is_empty());

    // JSON input through the dynamic face: wrong types, unknown fields.
    let op = ops::find("create_certificate").expect("op");
    for bad in [
        serde_json::json!({}),
        serde_json::json!({ "common_name": 42 }),
        serde_json::json!({ "common_name": "a.example.com", "surprise": true }),
        serde_json::json!("a string"),
    ] {
        let err = op
            .call_json(&h.engine, &h.admin(), bad.clone())
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::InvalidInput(_)), "{bad}: {err:?}");
    }
    // Hostile names.
    for cn in [
        "",
        "a..example.com",
        "-bad.example.com",
        "exa mple.com",
        "../../etc/passwd",
        &"a".repeat(300),
    ] {
        let err = h
            .call::<ops::CreateCertificate>(
                &h.admin(),
                serde_json::from_value(serde_json::json!({ "common_name": cn })).expect("input"),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::InvalidInput(_) | Error::PolicyViolation(_)),
            "{cn}: {err:?}"
        );
    }
    // Unknown references leave no certificate behind.
    let err = h
        .call::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "ok.example.com", "target_ids": ["tgt-missing"],
            }))
            .expect("input"),
        )
        .await
        .expect_err("unknown target");
    assert!(matches!(err, Error::InvalidInput(_)));
    let all = h
        .done::<ops::ListCertificates>(&h.admin(), Default::default())
        .await;
    assert_eq!(all.total, Some(0), "nothing half-written");
    // Malformed sub-CA material.
    let err = h
        .call::<ops::CreateIssuer>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "bad", "kind": "local_sub_ca", "ca_cert_pem": "garbage", "ca_key_pem": "garbage",
            }))
            .expect("input"),
        )
        .await
        .expect_err("garbage");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
}

async fn roles_are_enforced(h: &Harness) {
    let viewer = principal("pr-viewer", Role::Viewer);
    let operator = principal("pr-operator", Role::Operator);
    let mut agent = principal("pr-agent", Role::Agent);
    agent.agent_id = Some("ag-1".into());
    h.done::<ops::ListCertificates>(&viewer, Default::default())
        .await;
    let err = h
        .call::<ops::CreateCertificate>(
            &viewer,
            serde_json::from_value(serde_json::json!({ "common_name": "v.example.com" }))
                .expect("input"),
        )
        .await
        .expect_err("viewer cannot write");
    assert!(matches!(err, Error::Forbidden(_)));
    let err = h
        .call::<ops::ListCertificates>(&agent, Default::default())
        .await
        .expect_err("agents only reach their own endpoints");
    assert!(matches!(err, Error::Forbidden(_)));
    let err = h
        .call::<ops::CreatePrincipal>(
            &operator,
            ops::CreatePrincipalInput {
                name: "x".into(),
                role: Role::Admin,
                agent_id: None,
            },
        )
        .await
        .expect_err("operators cannot mint keys");
    assert!(matches!(err, Error::Forbidden(_)));
    let err = h
        .call::<ops::RejectRequest>(
            &operator,
            ops::DecideInput {
                approval_id: "ap-x".into(),
                note: None,
            },
        )
        .await
        .expect_err("operators cannot reject");
    assert!(matches!(err, Error::Forbidden(_)));
    // Refusals are audited as denied.
    let denied = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(_, o, _)| o == "denied")
        .count();
    assert_eq!(denied, 4);
}
