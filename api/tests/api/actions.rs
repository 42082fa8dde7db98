//! Approvals and lifecycle actions on their resource routes.

use serde_json::json;

use super::support::Rig;

#[tokio::test]
async fn revoke_through_an_approval_on_resource_routes() {
    let rig = Rig::new().await;
    let id = rig.issued_certificate("routes.example.com").await;
    let operator = rig.key("operator").await;
    let approver = rig.key("approver").await;
    let r = rig
        .post(
            &format!("/api/v1/certificates/{id}/revoke"),
            Some(&operator),
            &json!({ "reason": "keyCompromise" }).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let approval_id = r.body["approval_id"]
        .as_str()
        .expect("approval id")
        .to_owned();

    let pending = rig
        .get("/api/v1/approvals?status=pending", Some(&approver))
        .await;
    assert_eq!(pending.status, 200);
    assert_eq!(pending.body["data"][0]["id"], approval_id.as_str());
    // The requester cannot approve its own request.
    let own = rig
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&operator),
            "",
        )
        .await;
    own.assert_problem(403, "forbidden");
    let ok = rig
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&approver),
            &json!({ "note": "confirmed leak" }).to_string(),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body["approval"]["status"], "executed");
    let c = rig
        .get(&format!("/api/v1/certificates/{id}"), Some(&approver))
        .await;
    assert_eq!(c.body["certificate"]["status"], "revoked");
    // Once only.
    let again = rig
        .post(
            &format!("/api/v1/approvals/{approval_id}/approve"),
            Some(&approver),
            "",
        )
        .await;
    again.assert_problem(409, "conflict");
    let unknown = rig
        .get("/api/v1/approvals/ap-missing", Some(&approver))
        .await;
    unknown.assert_problem(404, "not-found");
    let bad = rig
        .get("/api/v1/approvals?status=maybe", Some(&approver))
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");
}

#[tokio::test]
async fn renew_returns_202_with_the_job_and_reject_never_runs() {
    let rig = Rig::new().await;
    let id = rig.issued_certificate("renew.example.com").await;
    let operator = rig.key("operator").await;
    let r = rig
        .post(
            &format!("/api/v1/certificates/{id}/renew"),
            Some(&operator),
            "",
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["job"]["status"], "awaiting_csr");
    assert!(
        r.body["job"]["id"]
            .as_str()
            .unwrap_or_default()
            .starts_with("job-")
    );

    let r = rig
        .post(
            &format!("/api/v1/certificates/{id}/revoke"),
            Some(&operator),
            "",
        )
        .await;
    let approval_id = r.body["approval_id"]
        .as_str()
        .expect("approval id")
        .to_owned();
    let approver = rig.key("approver").await;
    let rej = rig
        .post(
            &format!("/api/v1/approvals/{approval_id}/reject"),
            Some(&approver),
            "",
        )
        .await;
    assert_eq!(rej.status, 200, "{rej:?}");
    assert_eq!(rej.body["approval"]["status"], "rejected");
    let c = rig
        .get(&format!("/api/v1/certificates/{id}"), Some(&operator))
        .await;
    assert_eq!(c.body["certificate"]["status"], "valid");
    let bad = rig
        .post(
            &format!("/api/v1/certificates/{id}/revoke"),
            Some(&operator),
            "[1]",
        )
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");
}

#[tokio::test]
async fn issuer_test_route_reaches_the_ca_and_never_shows_secrets() {
    let rig = Rig::new().await;
    let r = rig
        .post("/api/v1/issuers/iss-local/test", Some(&rig.admin_key), "")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["ok"], true, "{r:?}");
    // An external issuer whose CA is not there: 200 with ok=false and the reason.
    let created = rig
        .op(
            "create_issuer",
            json!({
                "name": "vault-down", "kind": "vault",
                "config": { "url": "http://127.0.0.1:9", "role": "web" },
                "secrets": { "token": "hvs.route-secret" },
            }),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(!created.to_string().contains("route-secret"), "{created}");
    let r = rig
        .post(
            &format!("/api/v1/issuers/{id}/test"),
            Some(&rig.admin_key),
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["ok"], false, "{r:?}");
    // Testing needs the admin role; an unknown issuer is a 404.
    let viewer = rig.key("viewer").await;
    rig.post(&format!("/api/v1/issuers/{id}/test"), Some(&viewer), "")
        .await
        .assert_problem(403, "forbidden");
    rig.post("/api/v1/issuers/iss-nope/test", Some(&rig.admin_key), "")
        .await
        .assert_problem(404, "not-found");
}
