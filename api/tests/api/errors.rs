use crate::support::Rig;

#[tokio::test]
async fn malformed_json_is_422() {
    let rig = Rig::new().await;
    let r = rig
        .post(
            "/api/v1/operations/save_team",
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
            "/api/v1/operations/save_team",
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
        .post("/api/v1/operations/save_team", Some(&rig.admin_key), &big)
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

/// POST on a collection creates; an `id` in its body is refused with the
/// route to use, and nothing is written. PUT on the item updates; an
/// unknown id is 404.
#[tokio::test]
async fn post_with_an_id_is_422_and_put_on_an_unknown_id_is_404() {
    let rig = Rig::new().await;
    let key = Some(rig.admin_key.as_str());
    let r = rig
        .post(
            "/api/v1/teams",
            key,
            r#"{"id": "tm-x", "name": "Platform"}"#,
        )
        .await;
    r.assert_problem(422, "invalid-input");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("PUT /api/v1/teams/{id}"),
        "{r:?}"
    );
    let teams = rig.get("/api/v1/teams", key).await;
    assert_eq!(teams.body["data"].as_array().map(Vec::len), Some(0));
    rig.put("/api/v1/teams/tm-nope", key, r#"{"name": "Platform"}"#)
        .await
        .assert_problem(404, "not-found");
    let created = rig
        .post("/api/v1/teams", key, r#"{"name": "Platform"}"#)
        .await;
    assert_eq!(created.status.as_u16(), 201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let renamed = rig
        .put(&format!("/api/v1/teams/{id}"), key, r#"{"name": "Edge"}"#)
        .await;
    assert_eq!(renamed.status.as_u16(), 200);
    assert_eq!(renamed.body["name"], "Edge");
}
