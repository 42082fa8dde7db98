//! ACME HTTP-01 answered by the agent (`http01_solver = agent`) against a
//! real Pebble: the issuer job hands the challenge to the agent as a
//! `validation` job and tells the CA only after the agent reported it in
//! place; the token is taken away afterwards; an agent that never answers
//! gives a clear reason; an attempt that dies while it waits for the agent
//! is resumed with the same order and the same challenge job.
//!
//! The test plays the agent through the agent's own operations (work,
//! job, report) and answers Pebble's request with the responder the real
//! agent uses for `--http01-listen` (the real agent writing into an nginx
//! web root is in the end-to-end tests).

use certctl_engine::domain::{Job, JobKind, JobStatus, KeyAlgorithm, Principal, Role};
use certctl_engine::issuers::acme_dns::{BuiltinHttp01, Http01Solver};
use certctl_engine::ops;
use serde_json::json;

use super::issuers_acme::{Pebble, create_issuer, job, openssl_verify, versions};
use super::support::{Harness, csr, principal, run_jobs};
use crate::backend_tests;

backend_tests!(
    acme_http01_answered_by_the_agent,
    acme_http01_agent_that_never_answers_gives_a_clear_reason,
    acme_http01_by_agent_resumes_after_the_worker_dies,
);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

/// An agent with a target, and an issuer answering HTTP-01 through agents.
struct Setup {
    agent_id: String,
    agent: Principal,
    issuer: String,
}

async fn setup(h: &Harness, pebble: &Pebble, timeout: u64) -> Setup {
    let mut config = pebble.issuer_config("http-01", None);
    config["http01_solver"] = "agent".into();
    config["agent_challenge_timeout_seconds"] = timeout.into();
    config
        .as_object_mut()
        .expect("object")
        .remove("http01_listen");
    let issuer = create_issuer(h, "pebble-agent", config, json!({})).await;
    let a = h
        .done::<ops::RegisterAgent>(&h.admin(), input(json!({"name": "web-1"})))
        .await;
    let mut agent = principal("pr-web-1", Role::Agent);
    agent.agent_id = Some(a.agent.id.clone());
    Setup {
        agent_id: a.agent.id,
        agent,
        issuer: issuer.id,
    }
}

/// A certificate on a target of the agent; the agent sends its CSR and the
/// issuer job is returned.
async fn issue_from_agent(h: &Harness, s: &Setup, cn: &str) -> (String, String) {
    let t = h
        .done::<ops::SaveTarget>(
            &h.admin(),
            input(
                json!({"name": format!("t-{cn}"), "kind": "nginx", "agent_id": s.agent_id,
                "config": {"cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key",
                           "acme_webroot": "/var/www/html"}}),
            ),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            input(json!({"common_name": cn, "issuer_id": s.issuer, "target_ids": [t.id]})),
        )
        .await;
    let r = h
        .done::<ops::RenewCertificate>(&h.admin(), input(json!({"id": c.id})))
        .await;
    let out = h
        .done::<ops::SubmitAgentCsr>(
            &s.agent,
            input(json!({"id": s.agent_id, "job_id": r.job.id,
                "csr_pem": csr(KeyAlgorithm::EcdsaP256, cn, &[cn])})),
        )
        .await;
    (c.id, out.issuer_job.expect("an issuer job").id)
}

/// The agent's open validation jobs, as its poll sees them.
async fn challenge_work(h: &Harness, s: &Setup) -> Vec<Job> {
    let work = h
        .done::<ops::GetAgentWork>(&s.agent, input(json!({"id": s.agent_id})))
        .await;
    let mut jobs = Vec::new();
    for w in work.data.iter().filter(|w| w.kind == "validation") {
        let d = h
            .done::<ops::GetAgentJob>(
                &s.agent,
                input(json!({"id": s.agent_id, "job_id": w.job_id})),
            )
            .await;
        jobs.push(d.job);
    }
    jobs
}

/// Polls the agent's work until a challenge job to present shows up.
async fn next_challenge(h: &Harness, s: &Setup) -> Job {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(j) = challenge_work(h, s)
            .await
            .into_iter()
            .find(|j| j.payload["action"] == "present")
        {
            return j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no challenge reached the agent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Plays the agent: takes the job, serves the token, reports it in place.
async fn answer(h: &Harness, s: &Setup, responder: &BuiltinHttp01, j: &Job) {
    let report = |status: &str| {
        input::<ops::ReportAgentJobInput>(
            json!({"id": s.agent_id, "job_id": j.id, "status": status}),
        )
    };
    h.done::<ops::ReportAgentJob>(&s.agent, report("running"))
        .await;
    let token = j.payload["token"].as_str().expect("token");
    let ka = j.payload["key_authorization"].as_str().expect("key auth");
    assert!(ka.starts_with(&format!("{token}.")), "{ka}");
    responder
        .present(j.payload["identifier"].as_str().unwrap_or(""), token, ka)
        .await
        .expect("serve the token");
    h.done::<ops::ReportAgentJob>(&s.agent, report("completed"))
        .await;
}

async fn acme_http01_answered_by_the_agent(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    let s = setup(h, &pebble, 60).await;
    let (cert, issuer_job) = issue_from_agent(h, &s, "agent.example.com").await;
    let worker = {
        let e = h.engine.clone();
        tokio::spawn(async move { certctl_engine::issuers::runner::run_due(&e, "w", 10).await })
    };
    let challenge = next_challenge(h, &s).await;
    assert_eq!(challenge.kind, JobKind::Validation);
    assert_eq!(challenge.payload["identifier"], "agent.example.com");
    assert_eq!(challenge.payload["issuer_job_id"], issuer_job.as_str());
    assert_eq!(challenge.certificate_id.as_deref(), Some(cert.as_str()));
    // Until the agent reports, the CA is not asked: the order waits.
    assert_eq!(job(h, &issuer_job).await.status, JobStatus::Running);
    assert!(versions(h, &cert).await.is_empty());

    let responder = BuiltinHttp01::new(format!("127.0.0.1:{}", pebble.http01_port));
    answer(h, &s, &responder, &challenge).await;
    let report = worker.await.expect("join").expect("run");
    let j = job(h, &issuer_job).await;
    assert_eq!(j.status, JobStatus::Completed, "{report:?} {j:?}");
    let v = versions(h, &cert).await;
    assert_eq!(v.len(), 1);
    openssl_verify(
        &pebble.issuing_root().await,
        &v[0].chain_pem,
        &v[0].cert_pem,
    );

    // The token is taken away: a removal job for the same token and target.
    let removal: Vec<Job> = challenge_work(h, &s)
        .await
        .into_iter()
        .filter(|j| j.payload["action"] == "remove")
        .collect();
    assert_eq!(removal.len(), 1, "{removal:?}");
    assert_eq!(removal[0].payload["token"], challenge.payload["token"]);
    assert_eq!(removal[0].target_id, challenge.target_id);
    assert!(removal[0].payload.get("key_authorization").is_none());
    let actions: Vec<String> = h
        .audit_actions()
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "certificate.http01_challenge_queued")
            .count(),
        2,
        "{actions:?}"
    );
}

async fn acme_http01_agent_that_never_answers_gives_a_clear_reason(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    let s = setup(h, &pebble, 1).await;
    let (_cert, issuer_job) = issue_from_agent(h, &s, "silent.example.com").await;
    let report = run_jobs(h).await;
    assert_eq!(report.failed, 1, "{report:?}");
    let j = job(h, &issuer_job).await;
    let reason = j.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "agent {} did not put the HTTP-01 challenge for silent.example.com in place within 1 s",
            s.agent_id
        )) && reason.contains("never sent a heartbeat"),
        "{j:?}"
    );
    assert_eq!(j.status, JobStatus::Pending, "retried later: {j:?}");
    // The challenge job was ended, so a late agent does not place it; it
    // never took it, so nothing needs removing.
    assert!(challenge_work(h, &s).await.is_empty());
    let jobs = h
        .done::<ops::ListJobs>(
            &h.admin(),
            input(json!({"kind": "validation", "agent_id": s.agent_id})),
        )
        .await;
    assert_eq!(jobs.data.len(), 1, "{:?}", jobs.data);
    assert_eq!(jobs.data[0].status, JobStatus::Cancelled);
    assert_eq!(jobs.data[0].last_error.as_deref(), Some(reason.as_str()));

    // A certificate whose targets have no agent cannot be answered by one.
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            input(json!({"common_name": "nobody.example.com", "issuer_id": s.issuer})),
        )
        .await;
    let out = h
        .done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(csr(
                    KeyAlgorithm::EcdsaP256,
                    "nobody.example.com",
                    &["nobody.example.com"],
                )),
                ttl_seconds: None,
            },
        )
        .await;
    run_jobs(h).await;
    let j = job(h, &out.job.expect("job").id).await;
    assert_eq!(j.status, JobStatus::Failed, "{j:?}");
    assert!(
        j.last_error
            .as_deref()
            .is_some_and(|e| e.contains("has no target with an agent to answer HTTP-01")),
        "{j:?}"
    );
}

async fn acme_http01_by_agent_resumes_after_the_worker_dies(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    let s = setup(h, &pebble, 60).await;
    let (cert, issuer_job) = issue_from_agent(h, &s, "resume-agent.example.com").await;

    // Process A creates the order and hands the challenge to the agent, then dies.
    let a = Harness::engine_on(&h.db, &h.clock, Default::default(), &h.master).await;
    let worker = {
        let a = a.clone();
        tokio::spawn(
            async move { certctl_engine::issuers::runner::run_due(&a, "process-a", 10).await },
        )
    };
    let challenge = next_challenge(h, &s).await;
    worker.abort();
    let _ = worker.await;
    a.store().close().await;
    drop(a);
    let order_url = job(h, &issuer_job).await.payload["connector_state"]["order_url"]
        .as_str()
        .expect("order saved")
        .to_owned();

    // The agent answers meanwhile; the lease runs out and process B resumes.
    let responder = BuiltinHttp01::new(format!("127.0.0.1:{}", pebble.http01_port));
    answer(h, &s, &responder, &challenge).await;
    h.clock
        .advance(certctl_engine::issuers::runner::LEASE_SECONDS + 1);
    use certctl_engine::clock::Clock;
    h.engine
        .store()
        .reclaim_expired_leases(h.clock.now())
        .await
        .expect("reclaim");
    let report = run_jobs(h).await;
    let j = job(h, &issuer_job).await;
    assert_eq!(j.status, JobStatus::Completed, "{report:?} {j:?}");
    assert_eq!(
        j.payload["connector_state"]["order_url"].as_str(),
        Some(order_url.as_str()),
        "the same order was completed"
    );
    assert_eq!(versions(h, &cert).await.len(), 1);
    // One challenge job placed the token (reused on resume), one removes it.
    let jobs = h
        .done::<ops::ListJobs>(
            &h.admin(),
            input(json!({"kind": "validation", "agent_id": s.agent_id})),
        )
        .await;
    let actions: Vec<&str> = jobs
        .data
        .iter()
        .map(|j| j.payload["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(actions, ["remove", "present"], "{:?}", jobs.data);
}
