//! One real server on port 0, driven by the crate's own client.

use certctl_api::AppState;
use certctl_api::client::{Client, ClientError};
use serde_json::json;

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(real_server_and_client);

async fn real_server_and_client(rig: &Rig) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(certctl_api::run(
        listener,
        certctl_api::app(AppState::new(rig.engine.clone())),
        async {
            let _ = stopped.await;
        },
    ));
    let base = format!("http://{addr}");

    let client = Client::new(&base, Some(rig.admin_key.clone())).expect("client");
    assert_eq!(client.health().await.expect("health")["status"], "healthy");
    let id = rig.issued_certificate("client.example.com").await;
    let page = client
        .list_certificates(&[("per_page", "10")])
        .await
        .expect("list");
    assert_eq!(page.total, Some(1));
    assert_eq!(page.data[0].0["id"], id.as_str());
    let one = client.certificate(&id).await.expect("get");
    assert_eq!(one["certificate"]["common_name"], "client.example.com");
    let v: serde_json::Value = client
        .call_completed("verify_audit_log", &json!({}))
        .await
        .expect("verify");
    assert_eq!(v["valid"], true);

    // Errors carry the server's problem.
    let anonymous = Client::new(&base, None).expect("client");
    match anonymous.list_certificates(&[]).await {
        Err(ClientError::Api { problem }) => assert_eq!(problem.code(), "unauthenticated"),
        other => panic!("expected a 401 problem, got {other:?}"),
    }
    let missing = client.certificate("mc-nope").await.unwrap_err();
    assert_eq!(missing.status(), Some(404));

    // Resource routes through the typed client.
    let team = client
        .post(&["teams"], &json!({ "name": "client team" }))
        .await
        .expect("create team");
    assert_eq!(team.status, 201);
    let teams = client
        .get(&["teams"], &[("fields", "name")])
        .await
        .expect("teams");
    assert_eq!(teams["data"][0]["name"], "client team");
    let reg = client
        .post(&["agents"], &json!({ "name": "client-agent" }))
        .await
        .expect("register");
    let agent_id = reg.body["agent"]["id"].as_str().expect("id").to_owned();
    let agent =
        Client::new(&base, reg.body["api_key"].as_str().map(str::to_owned)).expect("client");
    let hb = agent
        .heartbeat(&agent_id, &json!({ "os": "linux" }))
        .await
        .expect("heartbeat");
    assert_eq!(hb["status"], "online");
    assert!(
        agent
            .agent_work(&agent_id)
            .await
            .expect("work")
            .data
            .is_empty()
    );
    // A gated call names its approval.
    let revoke = client
        .post(
            &["certificates", &id, "revoke"],
            &json!({ "reason": "superseded" }),
        )
        .await
        .expect("revoke");
    assert_eq!(revoke.status, 202);
    assert!(revoke.approval_id().is_some_and(|a| a.starts_with("ap-")));
    // Path segments are encoded: an id cannot reach another route.
    let odd = client
        .get(&["certificates", "../operations"], &[])
        .await
        .unwrap_err();
    assert_eq!(odd.status(), Some(404));

    stop.send(()).expect("server still running");
    server.await.expect("join").expect("clean shutdown");
}
