//! Resource routes on both backends: CRUD, list conventions, the agent
//! endpoints, statistics and job decisions; plus the parity check that every
//! catalogue operation has a route.

use std::collections::HashSet;

use certctl_engine::domain::KeyAlgorithm;
use certctl_engine::pki::{self, SubjectNames};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(
    crud_of_owners_and_teams,
    list_conventions_on_certificates,
    list_conventions_on_small_lists,
    agent_endpoints_end_to_end,
    statistics,
    job_decisions_need_a_job_waiting_for_approval,
);

#[test]
fn every_operation_has_a_route() {
    let routed: HashSet<&str> = certctl_api::routes::routes().iter().map(|r| r.op).collect();
    let missing: Vec<&str> = certctl_engine::ops::catalogue()
        .iter()
        .map(|o| o.meta().name)
        .filter(|n| !routed.contains(n) && !certctl_api::routes::PROTOCOL_ROUTED.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "operations without a REST route: {missing:?}"
    );
    let mut seen = HashSet::new();
    for r in certctl_api::routes::routes() {
        assert!(
            seen.insert((r.method, r.path)),
            "duplicate route {:?} {}",
            r.method,
            r.path
        );
        assert!(
            certctl_engine::ops::find(r.op).is_some(),
            "route {} names unknown {}",
            r.path,
            r.op
        );
    }
}

async fn crud_of_owners_and_teams(rig: &Rig) {
    let k = Some(rig.admin_key.as_str());
    let team = rig.post("/api/v1/teams", k, r#"{"name":"platform"}"#).await;
    assert_eq!(team.status, 201, "{team:?}");
    let team_id = team.body["id"].as_str().expect("id").to_owned();
    let owner = rig
        .post(
            "/api/v1/owners",
            k,
            &json!({"name": "Ada", "email": "ada@example.com", "team_id": team_id}).to_string(),
        )
        .await;
    assert_eq!(owner.status, 201, "{owner:?}");
    let owner_id = owner.body["id"].as_str().expect("id").to_owned();
    let got = rig.get(&format!("/api/v1/owners/{owner_id}"), k).await;
    assert_eq!(got.body["email"], "ada@example.com");
    let put = rig
        .put(
            &format!("/api/v1/owners/{owner_id}"),
            k,
            &json!({"name": "Ada L.", "email": "ada@example.com"}).to_string(),
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.body["name"], "Ada L.");
    // Filters on the list.
    let in_team = rig
        .get(&format!("/api/v1/owners?team_id={team_id}"), k)
        .await;
    assert_eq!(in_team.body["total"], 0, "the update cleared the team");
    // Deleting is destructive and gated by default: 202 with the approval.
    let del = rig.delete(&format!("/api/v1/owners/{owner_id}"), k).await;
    assert!(del.status == 200 || del.status == 202, "{del:?}");
    rig.get("/api/v1/owners/own-missing", k)
        .await
        .assert_problem(404, "not-found");
    rig.post("/api/v1/owners", k, r#"{"name":""}"#)
        .await
        .assert_problem(422, "invalid-input");
    rig.post("/api/v1/owners", k, r#"{"name":"x","colour":"blue"}"#)
        .await
        .assert_problem(422, "invalid-input");
    rig.post("/api/v1/owners?name=x", k, r#"{"name":"x"}"#)
        .await
        .assert_problem(422, "invalid-input");
}

async fn list_conventions_on_certificates(rig: &Rig) {
    let k = Some(rig.admin_key.as_str());
    for i in 0..7 {
        rig.issued_certificate(&format!("c{i}.example.com")).await;
    }
    let page = |q: &str| {
        let uri = format!("/api/v1/certificates?{q}");
        async move { rig.get(&uri, k).await }
    };
    // Offset pages and cursor pages walk the same order.
    let mut by_page = Vec::new();
    for p in 1..=3 {
        let r = page(&format!("sort=-not_after&per_page=3&page={p}")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["total"], 7);
        by_page.extend(ids(&r.body));
    }
    let mut by_cursor = Vec::new();
    let mut q = "sort=-not_after&per_page=3".to_owned();
    loop {
        let r = page(&q).await;
        by_cursor.extend(ids(&r.body));
        match r.body["next_cursor"].as_str() {
            Some(c) => q = format!("sort=-not_after&per_page=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(by_page, by_cursor);
    assert_eq!(by_page.len(), 7);
    // Sparse fields and time ranges.
    let r = page("fields=common_name&per_page=1").await;
    let item = r.body["data"][0].as_object().expect("item");
    assert_eq!(item.keys().collect::<Vec<_>>(), ["common_name", "id"]);
    let r = page("expires_before=1").await;
    assert_eq!(r.body["total"], 0);
    let r = page("created_after=1&status=valid").await;
    assert_eq!(r.body["total"], 7);
    page("page=1&cursor=abc")
        .await
        .assert_problem(422, "invalid-input");
    page("page=0").await.assert_problem(422, "invalid-input");
    page("sort=colour")
        .await
        .assert_problem(422, "invalid-input");
    page("fields=colour")
        .await
        .assert_problem(422, "invalid-input");
}

fn ids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn list_conventions_on_small_lists(rig: &Rig) {
    let k = Some(rig.admin_key.as_str());
    for name in ["delta", "alpha", "charlie", "bravo", "echo"] {
        let r = rig
            .post("/api/v1/teams", k, &json!({"name": name}).to_string())
            .await;
        assert_eq!(r.status, 201);
    }
    let r = rig
        .get("/api/v1/teams?sort=-name&per_page=2&page=2&fields=name", k)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["total"], 5);
    let names: Vec<&str> = r.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["charlie", "bravo"]);
    assert!(
        r.body["data"][0].get("description").is_none(),
        "sparse fields"
    );
    let first = rig.get("/api/v1/teams?sort=name&per_page=4", k).await;
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let rest = rig
        .get(
            &format!("/api/v1/teams?sort=name&per_page=4&cursor={cursor}"),
            k,
        )
        .await;
    assert_eq!(rest.body["data"][0]["name"], "echo");
    assert!(rest.body.get("next_cursor").is_none());
    // Jobs and the audit log page in SQL.
    let audit = rig.get("/api/v1/audit?per_page=2", k).await;
    assert_eq!(audit.body["data"].as_array().unwrap().len(), 2);
    let c = audit.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let older = rig
        .get(&format!("/api/v1/audit?per_page=2&cursor={c}"), k)
        .await;
    assert!(older.body["data"][0]["seq"].as_i64() < audit.body["data"][1]["seq"].as_i64());
    let jobs = rig
        .get("/api/v1/jobs?page=1&per_page=5&created_after=0", k)
        .await;
    assert_eq!(jobs.status, 200, "{jobs:?}");
    rig.get("/api/v1/jobs?sort=created_at", k)
        .await
        .assert_problem(422, "invalid-input");
}

async fn agent_endpoints_end_to_end(rig: &Rig) {
    let admin = Some(rig.admin_key.as_str());
    let reg = rig
        .post(
            "/api/v1/agents",
            admin,
            r#"{"name":"web-1","hostname":"web-1.internal"}"#,
        )
        .await;
    assert_eq!(reg.status, 201, "{reg:?}");
    let agent_id = reg.body["agent"]["id"].as_str().unwrap().to_owned();
    let agent_key = reg.body["api_key"].as_str().unwrap().to_owned();
    let other = rig
        .post("/api/v1/agents", admin, r#"{"name":"web-2"}"#)
        .await;
    let other_key = other.body["api_key"].as_str().unwrap().to_owned();
    let a = Some(agent_key.as_str());

    let hb = rig
        .post(
            &format!("/api/v1/agents/{agent_id}/heartbeat"),
            a,
            r#"{"os":"linux","version":"0.1.0"}"#,
        )
        .await;
    assert_eq!(hb.status, 200, "{hb:?}");
    assert_eq!(hb.body["status"], "online");
    // Another agent's key reaches nothing of this agent.
    for (path, body) in [
        ("heartbeat", Some("{}")),
        ("work", None),
        ("csr", Some(r#"{"job_id":"job-x","csr_pem":"x"}"#)),
    ] {
        let uri = format!("/api/v1/agents/{agent_id}/{path}");
        let r = match body {
            Some(b) => rig.post(&uri, Some(&other_key), b).await,
            None => rig.get(&uri, Some(&other_key)).await,
        };
        r.assert_problem(403, "forbidden");
    }
    // A certificate deployed by this agent; a renewal without a CSR waits for the agent's.
    let cert = rig.issued_certificate("web-1.example.com").await;
    let target = rig
        .post(
            "/api/v1/targets",
            admin,
            &json!({"name": "nginx", "kind": "nginx", "agent_id": agent_id}).to_string(),
        )
        .await;
    assert_eq!(target.status, 201, "{target:?}");
    let t = target.body["id"].as_str().unwrap();
    let up = rig
        .put(
            &format!("/api/v1/certificates/{cert}"),
            admin,
            &json!({"add_target_ids": [t]}).to_string(),
        )
        .await;
    assert_eq!(up.status, 200, "{up:?}");
    let renew = rig
        .post(&format!("/api/v1/certificates/{cert}/renew"), admin, "")
        .await;
    assert_eq!(renew.status, 202, "{renew:?}");
    assert_eq!(renew.body["job"]["status"], "awaiting_csr");
    let job_id = renew.body["job"]["id"].as_str().unwrap().to_owned();

    let work = rig.get(&format!("/api/v1/agents/{agent_id}/work"), a).await;
    assert_eq!(work.status, 200, "{work:?}");
    assert_eq!(work.body["data"][0]["job_id"], job_id.as_str());
    assert_eq!(work.body["data"][0]["common_name"], "web-1.example.com");

    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let names = SubjectNames {
        dns: vec!["web-1.example.com".into()],
        ..SubjectNames::default()
    };
    let csr = pki::csr_for(&key, "web-1.example.com", &names).unwrap();
    let bad = rig
        .post(
            &format!("/api/v1/agents/{agent_id}/csr"),
            a,
            &json!({"job_id": job_id, "csr_pem": "garbage"}).to_string(),
        )
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");
    let done = rig
        .post(
            &format!("/api/v1/agents/{agent_id}/csr"),
            a,
            &json!({"job_id": job_id, "csr_pem": csr}).to_string(),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.body["job"]["status"], "completed");
    let again = rig
        .post(
            &format!("/api/v1/agents/{agent_id}/csr"),
            a,
            &json!({"job_id": job_id, "csr_pem": csr}).to_string(),
        )
        .await;
    again.assert_problem(409, "conflict");
    // The CSR is done; the new version waits to be deployed to the
    // agent's target.
    let next = rig.get(&format!("/api/v1/agents/{agent_id}/work"), a).await;
    let next = next.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0]["kind"], "deployment");
    // The agent key reads nothing else.
    rig.get("/api/v1/certificates", a)
        .await
        .assert_problem(403, "forbidden");
    rig.get("/api/v1/agents/ag-missing/work", admin)
        .await
        .assert_problem(404, "not-found");
}

async fn statistics(rig: &Rig) {
    let k = Some(rig.admin_key.as_str());
    rig.issued_certificate("stats.example.com").await;
    let s = rig.get("/api/v1/stats/summary", k).await;
    assert_eq!(s.body["total_certificates"], 1, "{s:?}");
    let by = rig.get("/api/v1/stats/certificates-by-status", k).await;
    assert_eq!(
        by.body["by_status"]["valid"].as_i64().unwrap()
            + by.body["by_status"]["expiring"].as_i64().unwrap(),
        1
    );
    let t = rig
        .get(
            "/api/v1/stats/expiration-timeline?days=365&bucket_days=30",
            k,
        )
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    assert_eq!(t.body["total"], 1);
    assert_eq!(t.body["buckets"].as_array().unwrap().len(), 13);
    let i = rig.get("/api/v1/stats/issuance-rate?days=7", k).await;
    assert_eq!(i.body["total"], 1, "{i:?}");
    assert_eq!(i.body["buckets"].as_array().unwrap().len(), 7);
    let j = rig.get("/api/v1/stats/job-trends", k).await;
    assert_eq!(j.status, 200);
    rig.get("/api/v1/stats/job-trends?days=0", k)
        .await
        .assert_problem(422, "invalid-input");
    rig.get(
        "/api/v1/stats/expiration-timeline?bucket_days=400&days=30",
        k,
    )
    .await
    .assert_problem(422, "invalid-input");
}

async fn job_decisions_need_a_job_waiting_for_approval(rig: &Rig) {
    let k = Some(rig.admin_key.as_str());
    let approver = rig.key("approver").await;
    let cert = rig.issued_certificate("jobs.example.com").await;
    let renew = rig
        .post(&format!("/api/v1/certificates/{cert}/renew"), k, "")
        .await;
    let job = renew.body["job"]["id"].as_str().unwrap().to_owned();
    rig.post(&format!("/api/v1/jobs/{job}/approve"), Some(&approver), "")
        .await
        .assert_problem(409, "conflict");
    rig.post("/api/v1/jobs/job-missing/reject", Some(&approver), "")
        .await
        .assert_problem(404, "not-found");
    let operator = rig.key("operator").await;
    rig.post(&format!("/api/v1/jobs/{job}/approve"), Some(&operator), "")
        .await
        .assert_problem(403, "forbidden");
    let cancel = rig.post(&format!("/api/v1/jobs/{job}/cancel"), k, "").await;
    assert_eq!(cancel.status, 200, "{cancel:?}");
    assert_eq!(cancel.body["status"], "cancelled");
    let got = rig.get(&format!("/api/v1/jobs/{job}"), k).await;
    assert_eq!(got.body["status"], "cancelled");
}
