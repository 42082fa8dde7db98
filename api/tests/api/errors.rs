use crate::support::Rig;

#[tokio::test]
async fn malformed_json_is_422() {
    let rig = Rig::new().await;
    let r = rig
        .post(
            "/api/v1/operations/create_team",
            Some(&rig.admin_key),
            r#"{"name": "Platform""#,
        )
        .await;
    r.assert_problem(422, "invalid-input");
}

#[tokio::test]
async fn input_that_does_not_fit_the_schema_is_422() {
    let rig = Rig::new().await;
    let r = rig
        .post(
            "/api/v1/operations/create_team",
            Some(&rig.admin_key),
            r#"{"name": 42}"#,
        )
        .await;
    r.assert_problem(422, "invalid-input");
}

#[tokio::test]
async fn oversized_bodies_are_413_problems() {
    let rig = Rig::new().await;
    let big = format!(
        r#"{{"name":"{}"}}"#,
        "x".repeat(certctl_api::MAX_BODY_BYTES + 1)
    );
    let r = rig
        .post("/api/v1/operations/create_team", Some(&rig.admin_key), &big)
        .await;
    r.assert_problem(413, "payload-too-large");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let rig = Rig::new().await;
    rig.get("/nowhere", None)
        .await
        .assert_problem(404, "not-found");
    let r = rig
        .send(axum::http::Method::DELETE, "/health", None, None)
        .await;
    r.assert_problem(405, "method-not-allowed");
}
