use serde_json::json;

use crate::support::Rig;

#[tokio::test]
async fn catalogue_lists_every_operation_with_schemas() {
    let rig = Rig::new().await;
    let r = rig.get("/api/v1/operations", Some(&rig.admin_key)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let ops = r.body["data"].as_array().expect("data");
    assert_eq!(ops.len(), certctl_engine::ops::catalogue().len());
    let revoke = ops
        .iter()
        .find(|o| o["name"] == "revoke_certificate")
        .expect("revoke_certificate listed");
    assert_eq!(revoke["risk"], "destructive");
    assert!(revoke["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(
        revoke["description"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        revoke["input_schema"]["properties"]["id"].is_object(),
        "{revoke}"
    );
    assert!(revoke["output_schema"].is_object());
    // The listing needs a key like every /api/v1 route.
    rig.get("/api/v1/operations", None)
        .await
        .assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn a_completed_call_returns_200_and_its_result() {
    let rig = Rig::new().await;
    let r = rig
        .post(
            "/api/v1/operations/save_team",
            Some(&rig.admin_key),
            r#"{"name":"Platform"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "completed");
    assert_eq!(r.body["result"]["name"], "Platform");
    // An empty body is the empty input.
    let r = rig
        .send(
            axum::http::Method::POST,
            "/api/v1/operations/verify_audit_log",
            Some(&rig.admin_key),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["result"]["valid"], true);
}

#[tokio::test]
async fn viewer_cannot_write() {
    let rig = Rig::new().await;
    let viewer = rig.key("viewer").await;
    let r = rig
        .post(
            "/api/v1/operations/create_certificate",
            Some(&viewer),
            r#"{"common_name":"x.example.com"}"#,
        )
        .await;
    r.assert_problem(403, "forbidden");
    // The refusal is audited.
    let log = rig
        .op("get_audit_log", json!({ "action": "create_certificate" }))
        .await;
    assert_eq!(log["data"][0]["outcome"], "denied", "{log}");
}

#[tokio::test]
async fn gated_revoke_returns_202_with_the_approval() {
    let rig = Rig::new().await;
    let id = rig.issued_certificate("gated.example.com").await;
    let operator = rig.key("operator").await;
    let r = rig
        .post(
            "/api/v1/operations/revoke_certificate",
            Some(&operator),
            &json!({ "id": id, "reason": "keyCompromise" }).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["status"], "approval_required");
    let approval_id = r.body["approval_id"].as_str().expect("approval_id");
    assert!(approval_id.starts_with("ap-"), "{approval_id}");
    // Nothing changed yet: the certificate is still valid, the approval pending.
    let c = rig
        .get(&format!("/api/v1/certificates/{id}"), Some(&operator))
        .await;
    assert_eq!(c.body["certificate"]["status"], "valid");
    let a = rig.op("get_approval", json!({ "id": approval_id })).await;
    assert_eq!(a["status"], "pending", "{a}");
}

#[tokio::test]
async fn unknown_operation_is_404() {
    let rig = Rig::new().await;
    rig.post(
        "/api/v1/operations/launch_rockets",
        Some(&rig.admin_key),
        "{}",
    )
    .await
    .assert_problem(404, "not-found");
}
