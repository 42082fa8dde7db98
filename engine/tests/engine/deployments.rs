//! Agent deployments in the engine: an agent's CSR queues deployments for
//! its own targets, an agent key reaches only its own jobs, reports move
//! jobs along the table, verification is stored and read back.

use certctl_engine::domain::{JobKind, JobStatus, KeyAlgorithm, Role};
use certctl_engine::ops;
use serde_json::json;

use super::support::{Harness, csr, principal};
use crate::backend_tests;

backend_tests!(agent_csr_queues_deployments_reported_and_verified);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

async fn agent_csr_queues_deployments_reported_and_verified(h: &Harness) {
    let admin = h.admin();
    let mut agents = Vec::new();
    for name in ["web-1", "web-2"] {
        let a = h
            .done::<ops::RegisterAgent>(&admin, input(json!({"name": name})))
            .await;
        let mut p = principal(&format!("pr-{name}"), Role::Agent);
        p.agent_id = Some(a.agent.id.clone());
        agents.push((a.agent.id, p));
    }
    let (id1, agent1) = agents[0].clone();
    let (id2, agent2) = agents[1].clone();
    // Unknown fields and traversal in a target's settings are refused.
    let bad = h
        .call::<ops::SaveTarget>(
            &admin,
            input(json!({"name": "x", "kind": "nginx", "config": {"cert_path": "/etc/nginx/../shadow"}})),
        )
        .await;
    assert!(bad.is_err());
    let mut targets = Vec::new();
    for (name, agent) in [("t1", &id1), ("t2", &id1), ("t3", &id2)] {
        let t = h
            .done::<ops::SaveTarget>(
                &admin,
                input(json!({"name": name, "kind": "nginx", "agent_id": agent,
                    "config": {"cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key"}})),
            )
            .await;
        targets.push(t.id);
    }
    let c = h
        .done::<ops::CreateCertificate>(
            &admin,
            input(json!({"common_name": "app.example.com", "target_ids": targets})),
        )
        .await;
    // First issuance from the agent: an issuance job awaiting its CSR.
    let r = h
        .done::<ops::RenewCertificate>(&admin, input(json!({"id": c.id})))
        .await;
    assert_eq!(r.job.kind, JobKind::Issuance);
    assert_eq!(r.job.status, JobStatus::AwaitingCsr);
    assert_eq!(r.job.agent_id.as_deref(), Some(id1.as_str()));
    let details = h
        .done::<ops::GetAgentJob>(&agent1, input(json!({"id": id1, "job_id": r.job.id})))
        .await;
    assert_eq!(details.key_type, Some(KeyAlgorithm::EcdsaP256));
    assert_eq!(details.common_name.as_deref(), Some("app.example.com"));
    // Another agent's key sees neither the job nor acts for agent 1.
    assert!(
        h.call::<ops::GetAgentJob>(&agent2, input(json!({"id": id2, "job_id": r.job.id})))
            .await
            .is_err()
    );
    assert!(
        h.call::<ops::GetAgentJob>(&agent2, input(json!({"id": id1, "job_id": r.job.id})))
            .await
            .is_err()
    );

    let out = h
        .done::<ops::SubmitAgentCsr>(
            &agent1,
            input(json!({"id": id1, "job_id": r.job.id,
                "csr_pem": csr(KeyAlgorithm::EcdsaP256, "app.example.com", &["app.example.com"])})),
        )
        .await;
    let work = h
        .done::<ops::GetAgentWork>(&agent1, input(json!({"id": id1})))
        .await;
    let deployments: Vec<_> = work
        .data
        .iter()
        .filter(|w| w.kind == "deployment")
        .collect();
    assert_eq!(deployments.len(), 2, "one per target of agent 1: {work:?}");
    let work2 = h
        .done::<ops::GetAgentWork>(&agent2, input(json!({"id": id2})))
        .await;
    assert!(work2.data.is_empty(), "agent 2 has not the key: {work2:?}");

    let job = deployments[0].job_id.clone();
    let d = h
        .done::<ops::GetAgentJob>(&agent1, input(json!({"id": id1, "job_id": job})))
        .await;
    let v = d.version.expect("version to deploy");
    assert_eq!(
        Some(v.id.clone()),
        out.version.as_ref().map(|v| v.id.clone())
    );
    assert!(!serde_json::to_string(&v).unwrap().contains("PRIVATE KEY"));
    // Completing a job not taken is refused; running then completed works.
    let report = |status: &str| {
        input::<ops::ReportAgentJobInput>(json!({"id": id1, "job_id": job, "status": status}))
    };
    assert!(
        h.call::<ops::ReportAgentJob>(&agent1, report("completed"))
            .await
            .is_err()
    );
    let j = h
        .done::<ops::ReportAgentJob>(&agent1, report("running"))
        .await;
    assert_eq!(j.status, JobStatus::Running);
    let verified = h
        .done::<ops::VerifyJob>(
            &agent1,
            input(json!({"id": job, "agent_id": id1, "endpoint": "127.0.0.1:443",
                "expected_fingerprint": v.fingerprint, "served_fingerprint": v.fingerprint.to_uppercase()})),
        )
        .await;
    assert!(verified.verified);
    let j = h
        .done::<ops::ReportAgentJob>(&agent1, report("completed"))
        .await;
    assert_eq!(j.status, JobStatus::Completed);
    let read = h
        .get::<certctl_engine::store::Verification>(&admin, "verification", &job)
        .await;
    assert_eq!(read, verified);

    // The other deployment fails with the agent's reason, for good.
    let other = deployments[1].job_id.clone();
    let r2 = |status: &str, m: &str| {
        input::<ops::ReportAgentJobInput>(
            json!({"id": id1, "job_id": other, "status": status, "message": m}),
        )
    };
    h.done::<ops::ReportAgentJob>(&agent1, r2("running", ""))
        .await;
    let failed = h
        .done::<ops::ReportAgentJob>(
            &agent1,
            r2("failed", "validation failed: unknown directive"),
        )
        .await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("validation failed: unknown directive")
    );
}
