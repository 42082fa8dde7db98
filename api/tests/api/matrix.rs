//! The role-by-route matrix: every resource route, called by an anonymous
//! caller, a viewer, an operator, an approver, an admin and the key of
//! another agent. A role the operation's permission excludes gets 403 (and
//! an anonymous caller 401); a role it allows is never refused for its role.

use certctl_engine::domain::{Permission, Role};
use certctl_engine::ops;
use serde_json::json;

use crate::backend_tests;
use crate::support::{Reply, Rig};

backend_tests!(role_by_route_matrix);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Role(Role),
    OtherAgent,
}

/// Operations that may refuse an allowed role for a reason of their own
/// (cancel_request: only the requester or an admin; claim_approval_result:
/// only the requester).
const OWN_RULES: &[&str] = &["cancel_request", "claim_approval_result"];

fn denied(caller: Caller, route: &certctl_api::routes::Route) -> bool {
    let op = ops::find(route.op).expect("op");
    // The kind a route fixes may need more than the operation's own
    // permission (deleting an issuer needs an admin).
    let mut input = serde_json::Map::new();
    if let Some((field, value)) = route.fixed {
        input.insert(field.into(), value.into());
    }
    if let Some(id) = route.id_field {
        input.insert(id.into(), "x".into());
    }
    let permission = match route.op {
        // Its permission is `read` so the requester can confirm in chat; a
        // decision over another principal's request needs `approve`.
        "approve_request" => Permission::Approve,
        _ => op.permission_of(&serde_json::Value::Object(input)),
    };
    match caller {
        Caller::Anonymous => true,
        Caller::OtherAgent => true,
        Caller::Role(Role::Admin) => false,
        Caller::Role(r) => permission == Permission::AgentSelf || !r.allows(permission),
    }
}

async fn role_by_route_matrix(rig: &Rig) {
    let admin = Some(rig.admin_key.as_str());
    let operator = rig.key("operator").await;
    let cert = rig.issued_certificate("matrix.example.com").await;
    let agent = rig.post("/api/v1/agents", admin, r#"{"name":"a"}"#).await;
    let agent_id = agent.body["agent"]["id"].as_str().unwrap().to_owned();
    let other = rig.post("/api/v1/agents", admin, r#"{"name":"b"}"#).await;
    let other_key = other.body["api_key"].as_str().unwrap().to_owned();
    let team = rig
        .post("/api/v1/teams", admin, r#"{"name":"t"}"#)
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = rig
        .post("/api/v1/owners", admin, r#"{"name":"o"}"#)
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = rig
        .post(
            "/api/v1/targets",
            admin,
            &json!({"name": "n", "kind": "nginx", "agent_id": agent_id}).to_string(),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gated = rig
        .post(
            &format!("/api/v1/certificates/{cert}/revoke"),
            Some(&operator),
            "{}",
        )
        .await;
    let approval = gated.body["approval_id"]
        .as_str()
        .expect("revoke is gated")
        .to_owned();

    let mut callers = vec![
        (Caller::Anonymous, None),
        (Caller::OtherAgent, Some(other_key)),
    ];
    for role in ["viewer", "operator", "approver"] {
        let r = Role::parse(role).unwrap();
        callers.push((Caller::Role(r), Some(rig.key(role).await)));
    }
    callers.push((Caller::Role(Role::Admin), Some(rig.admin_key.clone())));

    // verify_job names the agent in its body: the agent of this rig.
    let verify_body = json!({"agent_id": agent_id, "endpoint": "127.0.0.1:443",
        "expected_fingerprint": "00".repeat(32)})
    .to_string();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (caller, key) in &callers {
        for route in certctl_api::routes::routes() {
            let id = match route.tag {
                "certificates" => cert.clone(),
                "agents" => agent_id.clone(),
                "approvals" => approval.clone(),
                "teams" => team.clone(),
                "owners" => owner.clone(),
                "targets" => target.clone(),
                _ => "x-missing".to_owned(),
            };
            let mut uri = format!("/api/v1{}", route.path.replace("{id}", &id));
            if route.op == "get_agent_job" {
                uri.push_str("?job_id=job-x");
            }
            let body = match route.op {
                "submit_agent_csr" => r#"{"job_id":"job-x","csr_pem":"x"}"#,
                "report_agent_job" => r#"{"job_id":"job-x","status":"running"}"#,
                "verify_job" => verify_body.as_str(),
                _ => "{}",
            };
            let method =
                axum::http::Method::from_bytes(route.method.as_str().to_uppercase().as_bytes())
                    .unwrap();
            let with_body = route.source == certctl_api::routes::Source::Body;
            let r: Reply = rig
                .send(method, &uri, key.as_deref(), with_body.then_some(body))
                .await;
            checked += 1;
            let status = r.status.as_u16();
            let expect_denied = denied(*caller, &route);
            let ok = match caller {
                Caller::Anonymous => status == 401,
                _ if expect_denied => status == 403,
                _ if OWN_RULES.contains(&route.op) => status != 401,
                _ => status != 401 && status != 403 && status < 500,
            };
            if !ok {
                failures.push(format!(
                    "{caller:?} {} {uri} -> {status} {}",
                    route.method.as_str(),
                    r.body
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The catalogue endpoints and metrics follow the same rules.
    let viewer = rig.key("viewer").await;
    assert_eq!(
        rig.get("/api/v1/metrics/prometheus", Some(&viewer))
            .await
            .status,
        200
    );
    assert_eq!(
        rig.get("/api/v1/metrics/prometheus", None).await.status,
        401
    );
    let agent_key = callers[1].1.clone().unwrap();
    assert_eq!(
        rig.get("/api/v1/metrics/prometheus", Some(&agent_key))
            .await
            .status,
        403
    );
    let r = rig
        .post("/api/v1/operations/save_team", Some(&viewer), "{}")
        .await;
    r.assert_problem(403, "forbidden");
}
