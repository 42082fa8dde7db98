//! Attacks with a stolen agent key on agent groups (issue 17, point 9): an
//! agent reports the labels and address of a group it is not in. Groups
//! hand their members CSR work, so membership follows only the facts an
//! admin set or accepted; the report is kept (and shown) beside them, with
//! the address the heartbeat really came from.

use certctl_engine::Error;
use certctl_engine::domain::{KeyAlgorithm, Principal, Role};
use certctl_engine::ops;
use serde_json::json;

use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    reported_labels_and_ip_do_not_join_a_group,
    only_an_admin_accepts_facts_and_the_address_is_the_servers,
);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

/// Registers an agent with admin-set labels; returns (id, its key's principal).
async fn register(h: &Harness, name: &str, labels: serde_json::Value) -> (String, Principal) {
    let a = h
        .done::<ops::RegisterAgent>(&h.admin(), input(json!({ "name": name, "labels": labels })))
        .await;
    let mut p = principal(&format!("pr-{name}"), Role::Agent);
    p.agent_id = Some(a.agent.id.clone());
    (a.agent.id, p)
}

async fn members(h: &Harness, group: &str) -> Vec<String> {
    let mut names: Vec<String> = h
        .done::<ops::ListAgentGroupMembers>(&h.admin(), input(json!({ "id": group })))
        .await
        .data
        .into_iter()
        .map(|a| a.name)
        .collect();
    names.sort();
    names
}

async fn group(h: &Harness, name: &str, criteria: serde_json::Value) -> String {
    h.done::<ops::SaveAgentGroup>(
        &h.admin(),
        input(json!({ "name": name, "criteria": criteria })),
    )
    .await
    .id
}

async fn audit_is_valid(h: &Harness) {
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(v.valid, "{v:?}");
}

/// The stolen key of a dev agent heartbeats the labels and an address of the
/// prod group: it stays out of the group, the group's CSR work goes to the
/// real member, and the job is not the attacker's to answer.
async fn reported_labels_and_ip_do_not_join_a_group(h: &Harness) {
    let (_prod_id, _) = register(h, "prod-1", json!({ "env": "prod" })).await;
    let (spy_id, spy) = register(h, "dev-1", json!({ "env": "dev" })).await;
    let prod = group(h, "prod", json!({ "labels": { "env": "prod" } })).await;
    let lan = group(h, "lan", json!({ "ip_cidr": "10.0.0.0/8" })).await;
    let t = h
        .done::<ops::SaveTarget>(
            &h.admin(),
            input(json!({ "name": "prod lb", "kind": "nginx", "agent_group_id": prod,
                          "config": { "cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key" } })),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            input(json!({ "common_name": "lb.example.com", "target_ids": [t.id] })),
        )
        .await;

    // The attack: a heartbeat claiming the group's labels and a LAN address.
    // It is an online agent; the real member never heartbeated, so before
    // the fix the attacker was even preferred for the key work.
    h.done::<ops::AgentHeartbeat>(
        &spy,
        input(
            json!({ "id": spy_id, "os": "linux", "ip_address": "10.9.9.9",
                      "labels": { "env": "prod" } }),
        ),
    )
    .await;
    assert_eq!(members(h, &prod).await, ["prod-1"]);
    assert!(members(h, &lan).await.is_empty());

    let r = h
        .done::<ops::RenewCertificate>(&h.admin(), input(json!({ "id": c.id })))
        .await;
    assert_ne!(r.job.agent_id.as_deref(), Some(spy_id.as_str()), "{r:?}");
    let work = h
        .done::<ops::GetAgentWork>(&spy, input(json!({ "id": spy_id })))
        .await;
    assert!(work.data.is_empty(), "{work:?}");
    // Nor can it answer the member's job with a CSR of its own.
    let err = h
        .call::<ops::SubmitAgentCsr>(
            &spy,
            input(json!({ "id": spy_id, "job_id": r.job.id,
                          "csr_pem": csr(KeyAlgorithm::EcdsaP256, "lb.example.com", &["lb.example.com"]) })),
        )
        .await
        .expect_err("another member's job");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let versions = h
        .done::<ops::GetCertificate>(&h.admin(), input(json!({ "id": c.id })))
        .await
        .versions;
    assert!(versions.is_empty(), "{versions:?}");
    audit_is_valid(h).await;
}

/// What the agent reported is kept and shown, with the address the server
/// saw; an agent key (or an operator) cannot accept it, an admin can, and
/// only then does the agent join.
async fn only_an_admin_accepts_facts_and_the_address_is_the_servers(h: &Harness) {
    let (spy_id, mut spy) = register(h, "dev-1", json!({ "env": "dev" })).await;
    spy.address = Some("203.0.113.7".into());
    let prod = group(
        h,
        "prod lan",
        json!({ "labels": { "env": "prod" }, "ip_cidr": "10.0.0.0/8", "os": "linux" }),
    )
    .await;
    let a = h
        .done::<ops::AgentHeartbeat>(
            &spy,
            input(
                json!({ "id": spy_id, "os": "linux", "ip_address": "10.9.9.9",
                          "labels": { "env": "prod" } }),
            ),
        )
        .await;
    assert_eq!(a.labels, *json!({ "env": "dev" }).as_object().unwrap());
    assert_eq!(a.ip_address, "");
    assert_eq!(a.reported.ip_address, "10.9.9.9");
    assert_eq!(a.reported.labels["env"], "prod");
    assert_eq!(a.observed_address.as_deref(), Some("203.0.113.7"));
    assert_eq!(a.unaccepted_facts(), ["os", "ip_address", "labels"]);
    // list_agents shows both, and the heartbeat's audit event names the gap.
    let listed = h
        .done::<ops::ListAgents>(&h.admin(), input(json!({})))
        .await
        .data;
    assert_eq!(listed[0].reported, a.reported);
    let events = h
        .engine
        .store()
        .list_audit(&Default::default(), 10)
        .await
        .expect("audit");
    let beat = events
        .iter()
        .find(|e| e.action == "agent_heartbeat")
        .expect("heartbeat audited");
    assert_eq!(beat.details["observed_address"], "203.0.113.7");
    assert_eq!(
        beat.details["unaccepted_facts"],
        json!(["os", "ip_address", "labels"])
    );
    // The agent cannot name the address itself.
    assert!(
        serde_json::from_value::<ops::HeartbeatInput>(
            json!({ "id": spy_id, "observed_address": "10.0.0.1" })
        )
        .is_err()
    );
    let by_name = ops::find("agent_heartbeat")
        .expect("op")
        .call_json(
            &h.engine,
            &spy,
            json!({ "id": spy_id, "observed_address": "10.0.0.1" }),
        )
        .await
        .expect_err("unknown field");
    assert!(matches!(by_name, Error::InvalidInput(_)), "{by_name}");

    // Neither the agent's own key nor an operator may accept facts.
    let accept = json!({ "id": spy_id, "os": "linux", "ip_address": "10.9.9.9",
                         "labels": { "env": "prod" } });
    for who in [spy.clone(), principal("pr-op", Role::Operator)] {
        let err = h
            .call::<ops::UpdateAgent>(&who, input(accept.clone()))
            .await
            .expect_err("not an admin");
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
    }
    assert!(members(h, &prod).await.is_empty());
    // Bad facts are refused whole.
    for bad in [
        json!({ "id": spy_id }),
        json!({ "id": spy_id, "ip_address": "10.9.9.300", "labels": { "env": "prod" } }),
        json!({ "id": spy_id, "os": "x".repeat(201) }),
    ] {
        let err = h
            .call::<ops::UpdateAgent>(&h.admin(), input(bad))
            .await
            .expect_err("bad facts");
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    }
    let err = h
        .call::<ops::UpdateAgent>(&h.admin(), input(json!({ "id": "ag-nope", "os": "linux" })))
        .await
        .expect_err("unknown agent");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(members(h, &prod).await.is_empty());

    // The admin accepts what was reported: now it is a member, and nothing
    // is left unaccepted.
    let a = h.done::<ops::UpdateAgent>(&h.admin(), input(accept)).await;
    assert!(a.unaccepted_facts().is_empty(), "{a:?}");
    assert_eq!(members(h, &prod).await, ["dev-1"]);
    // A later heartbeat reporting other labels does not take it out either.
    h.done::<ops::AgentHeartbeat>(
        &spy,
        input(json!({ "id": spy_id, "labels": { "env": "dev" } })),
    )
    .await;
    assert_eq!(members(h, &prod).await, ["dev-1"]);
    audit_is_valid(h).await;
}
