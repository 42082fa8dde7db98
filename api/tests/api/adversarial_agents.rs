//! A stolen agent key over REST (issue 17, point 9): what a heartbeat
//! reports is stored as reported, beside the address the server saw on the
//! connection, and the agent cannot write that address itself.

use certctl_api::AppState;
use certctl_api::client::Client;
use serde_json::json;

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(heartbeats_record_the_connections_address);

async fn heartbeats_record_the_connections_address(rig: &Rig) {
    let server = crate::pki::Server::plain(AppState::new(rig.engine.clone())).await;
    let registered = rig
        .op(
            "register_agent",
            json!({ "name": "edge-1", "labels": { "env": "dev" } }),
        )
        .await;
    let id = registered["agent"]["id"].as_str().expect("id").to_owned();
    let key = registered["api_key"].as_str().expect("key").to_owned();
    let agent = Client::new(&server.base, Some(key.clone())).expect("client");
    let beat = agent
        .heartbeat(
            &id,
            &json!({ "ip_address": "10.9.9.9", "labels": { "env": "prod" } }),
        )
        .await
        .expect("heartbeat");
    assert_eq!(beat["observed_address"], "127.0.0.1", "{beat}");
    assert_eq!(beat["reported"]["ip_address"], "10.9.9.9", "{beat}");
    assert_eq!(beat["reported"]["labels"]["env"], "prod", "{beat}");
    assert_eq!(beat["ip_address"], "", "{beat}");
    assert_eq!(beat["labels"]["env"], "dev", "{beat}");

    // The address is the server's to write: a body naming one is refused,
    // and nothing about the agent changes.
    let r = rig
        .post(
            &format!("/api/v1/agents/{id}/heartbeat"),
            Some(&key),
            &json!({ "observed_address": "10.0.0.1" }).to_string(),
        )
        .await;
    r.assert_problem(422, "invalid-input");
    let now = rig
        .get(&format!("/api/v1/agents/{id}"), Some(&rig.admin_key))
        .await;
    assert_eq!(now.body["observed_address"], "127.0.0.1", "{:?}", now.body);
    assert_eq!(now.body["last_heartbeat_at"], beat["last_heartbeat_at"]);

    // The agent's key cannot accept its own report; an admin can, over PUT.
    let accept = json!({ "ip_address": "10.9.9.9", "labels": { "env": "prod" } }).to_string();
    rig.put(&format!("/api/v1/agents/{id}"), Some(&key), &accept)
        .await
        .assert_problem(403, "forbidden");
    let done = rig
        .put(
            &format!("/api/v1/agents/{id}"),
            Some(&rig.admin_key),
            &accept,
        )
        .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.body["ip_address"], "10.9.9.9");
    assert_eq!(done.body["labels"]["env"], "prod");

    server.stop().await;
}
