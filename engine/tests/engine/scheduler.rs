//! The scheduler driven by the injected clock: loops run when their interval
//! has passed, renewals are queued once and go through the approval gate,
//! and of several processes only the lease holder runs a loop.

use std::sync::Arc;

use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{JobKind, JobStatus, KeyAlgorithm};
use certctl_engine::ops;
use certctl_engine::scheduler::{Loop, Scheduler, TickOutcome};
use certctl_engine::store::JobFilter;

use super::support::{Harness, csr};
use crate::backend_tests;

backend_tests!(
    renewals_are_queued_once_and_gated,
    one_process_runs_each_loop
);

async fn issue(h: &Harness, cn: &str, days: i64, profile: Option<&str>) -> String {
    let mut input = serde_json::json!({ "common_name": cn });
    if let Some(p) = profile {
        input["profile_id"] = p.into();
    }
    let c = h
        .done::<ops::CreateCertificate>(&h.admin(), serde_json::from_value(input).expect("input"))
        .await;
    let out = h
        .call::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
                ttl_seconds: Some(days * 86400),
            },
        )
        .await
        .expect("issue");
    if let ops::Outcome::ApprovalRequired(t) = out {
        let approver =
            super::support::principal("pr-approver", certctl_engine::domain::Role::Approver);
        h.done::<ops::ApproveRequest>(
            &approver,
            serde_json::from_value(serde_json::json!({ "approval_id": t.approval_id }))
                .expect("input"),
        )
        .await;
    }
    c.id
}

async fn renewal_jobs(h: &Harness, id: &str) -> Vec<JobStatus> {
    let f = JobFilter {
        certificate_id: Some(id.to_owned()),
        kind: Some(JobKind::Renewal),
        ..Default::default()
    };
    h.engine
        .store()
        .list_jobs(&f, 100)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| j.status)
        .collect()
}

async fn renewals_are_queued_once_and_gated(h: &Harness) {
    let soon = issue(h, "soon.example.com", 20, None).await;
    let later = issue(h, "later.example.com", 90, None).await;
    let profile = h
        .done::<ops::CreateProfile>(
            &h.admin(),
            serde_json::from_value(
                serde_json::json!({ "name": "regulated", "requires_approval": true }),
            )
            .expect("input"),
        )
        .await;
    let gated = issue(h, "gated.example.com", 10, Some(&profile.id)).await;

    let s = Arc::new(Scheduler::new(h.engine.clone(), "proc-test"));
    let first = s.tick().await;
    assert_eq!(
        first.len(),
        Loop::ALL.len(),
        "every loop runs on the first tick: {first:?}"
    );
    assert!(
        first.iter().all(|(_, o)| *o == TickOutcome::Ran),
        "{first:?}"
    );
    assert_eq!(renewal_jobs(h, &soon).await, vec![JobStatus::AwaitingCsr]);
    assert!(
        renewal_jobs(h, &later).await.is_empty(),
        "not in its renewal window yet"
    );
    // The profile requires approval: the scheduled renewal waits for one.
    assert!(renewal_jobs(h, &gated).await.is_empty());
    let pending = h
        .engine
        .store()
        .list_approvals(Some(certctl_engine::domain::ApprovalStatus::Pending), 10)
        .await
        .expect("approvals");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].requested_by, "system:scheduler");
    assert_eq!(pending[0].resource_id.as_deref(), Some(gated.as_str()));

    // Nothing is due again at once; after 30 s only the lease loop is.
    assert!(s.tick().await.is_empty());
    h.clock.advance(30);
    let t = s.tick().await;
    assert_eq!(
        t.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![Loop::JobLeases]
    );
    // An hour later the renewal loop runs again but queues no duplicate.
    h.clock.advance(3600);
    let t = s.tick().await;
    assert!(
        t.iter()
            .any(|(l, o)| *l == Loop::Renewal && *o == TickOutcome::Ran),
        "{t:?}"
    );
    assert_eq!(renewal_jobs(h, &soon).await.len(), 1);
    // The renewals are in the audit log under the scheduler's name.
    let renews = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, who)| a == "renew_certificate" && who == "system:scheduler")
        .count();
    assert_eq!(renews, 2, "one queued job, one gated request");
}

async fn one_process_runs_each_loop(h: &Harness) {
    let other = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
    let a = Arc::new(Scheduler::new(h.engine.clone(), "proc-a"));
    let b = Arc::new(Scheduler::new(other.clone(), "proc-b"));
    let (ta, tb) = tokio::join!(a.tick(), b.tick());
    for l in Loop::ALL {
        let ran_a = ta.iter().any(|(x, o)| *x == l && *o == TickOutcome::Ran);
        let ran_b = tb.iter().any(|(x, o)| *x == l && *o == TickOutcome::Ran);
        assert!(
            ran_a ^ ran_b,
            "{l:?} must run on exactly one process: {ta:?} {tb:?}"
        );
    }
    other.store().close().await;
}
