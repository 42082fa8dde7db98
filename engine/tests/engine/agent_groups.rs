//! Agent groups with dynamic membership: agents with different labels, OS,
//! addresses and versions; the group's criteria pick its members, a target
//! pointing at the group sends renewal and deployment work only to members,
//! and membership follows the facts an admin set or accepted (what agents
//! report on heartbeat alone never moves them; see adversarial_agents.rs).

use certctl_engine::Error;
use certctl_engine::domain::{JobStatus, KeyAlgorithm, Role};
use certctl_engine::ops;
use serde_json::json;

use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    criteria_pick_members_and_follow_accepted_facts,
    a_group_target_deploys_through_members_only,
);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

/// Registers an agent, reports its facts and has an admin accept them;
/// returns (id, its principal).
async fn agent(
    h: &Harness,
    name: &str,
    facts: serde_json::Value,
) -> (String, certctl_engine::domain::Principal) {
    let a = h
        .done::<ops::RegisterAgent>(
            &h.admin(),
            input(json!({ "name": name, "labels": facts["labels"].clone() })),
        )
        .await;
    let mut p = principal(&format!("pr-{name}"), Role::Agent);
    p.agent_id = Some(a.agent.id.clone());
    let mut hb = facts.clone();
    hb["id"] = a.agent.id.clone().into();
    hb.as_object_mut().unwrap().remove("labels");
    h.done::<ops::AgentHeartbeat>(&p, input(hb.clone())).await;
    h.done::<ops::UpdateAgent>(&h.admin(), input(hb)).await;
    (a.agent.id, p)
}

async fn members(h: &Harness, group: &str) -> Vec<String> {
    let mut ids: Vec<String> = h
        .done::<ops::ListAgentGroupMembers>(&h.admin(), input(json!({ "id": group })))
        .await
        .data
        .into_iter()
        .map(|a| a.name)
        .collect();
    ids.sort();
    ids
}

async fn criteria_pick_members_and_follow_accepted_facts(h: &Harness) {
    let linux = json!({ "os": "linux", "arch": "x86_64", "ip_address": "10.1.2.3", "version": "1.4.2",
                        "labels": { "env": "prod", "role": "web" } });
    agent(h, "web-prod", linux.clone()).await;
    let mut dev = linux.clone();
    dev["labels"] = json!({ "env": "dev", "role": "web" });
    dev["ip_address"] = "192.168.7.9".into();
    let (dev_id, dev_p) = agent(h, "web-dev", dev).await;
    let mut win = linux.clone();
    win["os"] = "windows".into();
    win["version"] = "1.3.0".into();
    agent(h, "iis-prod", win).await;

    let group = |name: &str, criteria: serde_json::Value| {
        let name = name.to_owned();
        async move {
            h.done::<ops::SaveAgentGroup>(
                &h.admin(),
                input(json!({ "name": name, "criteria": criteria })),
            )
            .await
            .id
        }
    };
    let prod = group("prod", json!({ "labels": { "env": "prod" } })).await;
    let prod_linux = group(
        "prod linux",
        json!({ "os": "Linux", "labels": { "env": "prod" } }),
    )
    .await;
    let lan = group("lan", json!({ "ip_cidr": "10.0.0.0/8" })).await;
    let v14 = group("1.4", json!({ "version": "1.4.*", "arch": "x86_64" })).await;
    let all = group("all", json!({})).await;
    assert_eq!(members(h, &prod).await, ["iis-prod", "web-prod"]);
    assert_eq!(members(h, &prod_linux).await, ["web-prod"]);
    assert_eq!(members(h, &lan).await, ["iis-prod", "web-prod"]);
    assert_eq!(members(h, &v14).await, ["web-dev", "web-prod"]);
    assert_eq!(members(h, &all).await.len(), 3);

    // The dev agent reports new labels: nothing moves until an admin
    // accepts them, then it joins at once.
    h.done::<ops::AgentHeartbeat>(
        &dev_p,
        input(json!({ "id": dev_id, "labels": { "env": "prod" } })),
    )
    .await;
    assert_eq!(members(h, &prod).await, ["iis-prod", "web-prod"]);
    h.done::<ops::UpdateAgent>(
        &h.admin(),
        input(json!({ "id": dev_id, "labels": { "env": "prod" } })),
    )
    .await;
    assert_eq!(members(h, &prod).await, ["iis-prod", "web-dev", "web-prod"]);

    // Bad criteria and unknown fields are refused.
    let err = h
        .call::<ops::SaveAgentGroup>(
            &h.admin(),
            input(json!({ "name": "bad", "criteria": { "ip_cidr": "10.0.0.0/33" } })),
        )
        .await
        .expect_err("bad cidr");
    assert!(
        matches!(err, Error::InvalidInput(_)) && err.to_string().contains("10.0.0.0/33"),
        "{err}"
    );
    assert!(
        serde_json::from_value::<ops::AgentGroupInput>(
            json!({ "name": "x", "criteria": { "colour": "red" } })
        )
        .is_err()
    );
}

async fn a_group_target_deploys_through_members_only(h: &Harness) {
    let base =
        json!({ "os": "linux", "arch": "x86_64", "ip_address": "10.1.2.3", "version": "1.4.2" });
    let mut f = base.clone();
    f["labels"] = json!({ "env": "dev" });
    let (dev_id, dev_p) = agent(h, "a-dev", f).await;
    let mut f = base.clone();
    f["labels"] = json!({ "env": "prod" });
    let (prod_id, prod_p) = agent(h, "b-prod", f).await;
    let group = h
        .done::<ops::SaveAgentGroup>(
            &h.admin(),
            input(json!({ "name": "prod", "criteria": { "labels": { "env": "prod" } } })),
        )
        .await;
    // A target names an agent or a group, not both.
    assert!(
        h.call::<ops::SaveTarget>(
            &h.admin(),
            input(json!({ "name": "both", "kind": "nginx", "agent_id": dev_id, "agent_group_id": group.id,
                          "config": { "cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key" } })),
        )
        .await
        .is_err()
    );
    let t = h
        .done::<ops::SaveTarget>(
            &h.admin(),
            input(json!({ "name": "lb", "kind": "nginx", "agent_group_id": group.id,
                          "config": { "cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key" } })),
        )
        .await;
    assert_eq!(t.agent_group_id.as_deref(), Some(group.id.as_str()));
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            input(json!({ "common_name": "lb.example.com", "target_ids": [t.id] })),
        )
        .await;
    // The key work goes to the member (b-prod), not to a-dev, which sorts first.
    let r = h
        .done::<ops::RenewCertificate>(&h.admin(), input(json!({ "id": c.id })))
        .await;
    assert_eq!(r.job.agent_id.as_deref(), Some(prod_id.as_str()));
    assert_eq!(r.job.status, JobStatus::AwaitingCsr);
    let dev_work = h
        .done::<ops::GetAgentWork>(&dev_p, input(json!({ "id": dev_id })))
        .await;
    assert!(dev_work.data.is_empty(), "{dev_work:?}");
    // The member's CSR yields a deployment job for the group's target.
    h.done::<ops::SubmitAgentCsr>(
        &prod_p,
        input(json!({ "id": prod_id, "job_id": r.job.id,
                      "csr_pem": csr(KeyAlgorithm::EcdsaP256, "lb.example.com", &["lb.example.com"]) })),
    )
    .await;
    let work = h
        .done::<ops::GetAgentWork>(&prod_p, input(json!({ "id": prod_id })))
        .await;
    let deployments: Vec<_> = work
        .data
        .iter()
        .filter(|w| w.kind == "deployment")
        .collect();
    assert_eq!(deployments.len(), 1, "{work:?}");
    assert_eq!(deployments[0].target_id.as_deref(), Some(t.id.as_str()));
    // A group in use is not deleted.
    let err = h.delete(&h.admin(), "agent_group", &group.id).await;
    assert!(
        matches!(err, Err(Error::Conflict(_)))
            || matches!(err, Ok(ops::Outcome::ApprovalRequired(_))),
        "{err:?}"
    );
}
