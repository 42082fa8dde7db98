//! The scheduler driven by the injected clock: loops run when their interval
//! has passed, renewals are queued once and go through the approval gate,
//! and of several processes only the lease holder runs a loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{AgentStatus, EffectiveStatus, JobKind, JobStatus, KeyAlgorithm};
use certctl_engine::ops;
use certctl_engine::scheduler::{Loop, Scheduler, TickOutcome};
use certctl_engine::store::JobFilter;

use super::receiver::{Answer, Receiver};
use super::support::{Harness, csr};
use crate::backend_tests;

backend_tests!(
    renewals_are_queued_once_and_gated,
    one_process_runs_each_loop,
    a_slow_run_makes_the_next_tick_skip,
    shutdown_times_out_when_work_outlasts_it,
    silent_agents_go_offline,
    short_lived_certificates_expire_without_revocation,
    renewal_policy_fraction_decides_when_renewal_is_due,
    three_processes_renew_each_certificate_once,
    a_refused_renewal_does_not_hold_up_its_batch,
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
        .done::<ops::SaveProfile>(
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

    // Nothing is due again at once; after 30 s only the 30-second loops are.
    assert!(s.tick().await.is_empty());
    h.clock.advance(30);
    let t = s.tick().await;
    assert_eq!(
        t.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        vec![Loop::JobLeases, Loop::Jobs, Loop::ShortLivedExpiry]
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
    // The job loop runs everywhere: jobs are claimed one by one with leases.
    for l in Loop::ALL.into_iter().filter(|l| *l != Loop::Jobs) {
        let ran_a = ta.iter().any(|(x, o)| *x == l && *o == TickOutcome::Ran);
        let ran_b = tb.iter().any(|(x, o)| *x == l && *o == TickOutcome::Ran);
        assert!(
            ran_a ^ ran_b,
            "{l:?} must run on exactly one process: {ta:?} {tb:?}"
        );
    }
    other.store().close().await;
}

// ---------------------------------------------------------------- in-flight runs, shutdown

/// A notifications run blocked on a receiver the test holds.
async fn blocked_notifications(h: &Harness) -> (Receiver, Arc<Notify>) {
    let rx = Receiver::start().await;
    let release = Arc::new(Notify::new());
    rx.answer("/slow", Answer::Hold(release.clone()));
    let c = super::notifications::channel(
        h,
        "slow",
        "slack",
        serde_json::json!({ "url": rx.url("/slow") }),
        None,
    )
    .await;
    h.done::<ops::SendTestNotification>(
        &h.admin(),
        ops::SendTestNotificationInput {
            channel_id: c.id,
            to: vec![],
        },
    )
    .await;
    (rx, release)
}

async fn a_slow_run_makes_the_next_tick_skip(h: &Harness) {
    let (rx, release) = blocked_notifications(h).await;
    let s = Arc::new(Scheduler::new(h.engine.clone(), "proc-slow"));
    let first = s.start_due();
    // The notifications run is now inside its delivery, held by the receiver.
    rx.wait_for(1).await;
    h.clock.advance(60);
    let second = s.start_due();
    let mut skipped = None;
    for (l, handle) in second {
        let o = handle.await.expect("task");
        if l == Loop::Notifications {
            skipped = Some(o);
        }
    }
    assert_eq!(skipped, Some(TickOutcome::SkippedInFlight), "no overlap");
    release.notify_one();
    for (l, handle) in first {
        let o = handle.await.expect("task");
        assert_eq!(o, TickOutcome::Ran, "{l:?}");
    }
    assert_eq!(rx.requests().len(), 1, "sent once");
    // Free again: the next turn runs.
    h.clock.advance(60);
    assert_eq!(
        s.run_once(Loop::Notifications, h.engine.now()).await,
        TickOutcome::Ran
    );
}

async fn shutdown_times_out_when_work_outlasts_it(h: &Harness) {
    // Nothing in flight: a clean stop.
    let s = Arc::new(Scheduler::new(h.engine.clone(), "proc-stop"));
    let r = s
        .clone()
        .run(std::future::ready(()), Duration::from_secs(5))
        .await;
    assert_eq!(r, Ok(()));

    let (rx, release) = blocked_notifications(h).await;
    h.clock.advance(3600);
    let s = Arc::new(Scheduler::new(h.engine.clone(), "proc-stuck"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(s.clone().run(
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_millis(200),
    ));
    rx.wait_for(1).await;
    let _ = stop_tx.send(());
    let r = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("shutdown returns")
        .expect("task");
    let err = r.expect_err("the held delivery outlasts the timeout");
    assert_eq!(err.in_flight, vec!["notifications"]);
    assert!(err.to_string().contains("notifications"), "{err}");
    release.notify_one();
    // Its leases were released: another process takes the loop at once.
    let other = Arc::new(Scheduler::new(h.engine.clone(), "proc-next"));
    assert_eq!(
        other.run_once(Loop::Notifications, h.engine.now()).await,
        TickOutcome::Ran
    );
}

// ---------------------------------------------------------------- agent health, short-lived

async fn silent_agents_go_offline(h: &Harness) {
    let quiet = h
        .done::<ops::RegisterAgent>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "name": "quiet" })).expect("input"),
        )
        .await
        .agent;
    let chatty = h
        .done::<ops::RegisterAgent>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "name": "chatty" })).expect("input"),
        )
        .await
        .agent;
    let now = h.engine.now();
    h.db.raw(&format!(
        "UPDATE agents SET status = 'online', last_heartbeat_at = {} WHERE id = '{}'; \
         UPDATE agents SET status = 'online', last_heartbeat_at = {} WHERE id = '{}'",
        now - 301,
        quiet.id,
        now - 10,
        chatty.id
    ))
    .await
    .expect("heartbeats");
    let s = Scheduler::new(h.engine.clone(), "proc-agents");
    assert_eq!(s.run_once(Loop::AgentHealth, now).await, TickOutcome::Ran);
    let status = |id: String| async move {
        h.get::<certctl_engine::domain::Agent>(&h.admin(), "agent", &id)
            .await
            .status
    };
    assert_eq!(status(quiet.id.clone()).await, AgentStatus::Offline);
    assert_eq!(status(chatty.id.clone()).await, AgentStatus::Online);
    let offline_events = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, who)| a == "agent.offline" && who == "system:scheduler")
        .count();
    assert_eq!(offline_events, 1);
    // Later the other one is silent too; the first is not announced again.
    h.clock.advance(300);
    assert_eq!(
        s.run_once(Loop::AgentHealth, h.engine.now()).await,
        TickOutcome::Ran
    );
    assert_eq!(status(chatty.id).await, AgentStatus::Offline);
    let n = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, _)| a == "agent.offline")
        .count();
    assert_eq!(n, 2, "the second agent only");
}

async fn short_lived_certificates_expire_without_revocation(h: &Harness) {
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "ephemeral", "short_lived": true,
                "max_ttl_seconds": 86400, "default_ttl_seconds": 7200
            }))
            .expect("input"),
        )
        .await;
    let short = issue_secs(h, "short.example.com", 7200, Some(&profile.id)).await;
    // Any certificate living at most an hour counts as short-lived too.
    let tiny = issue_secs(h, "tiny.example.com", 1800, None).await;
    let normal = issue(h, "normal.example.com", 1, None).await;
    let s = Scheduler::new(h.engine.clone(), "proc-short");
    h.clock.advance(7300);
    assert_eq!(
        s.run_once(Loop::ShortLivedExpiry, h.engine.now()).await,
        TickOutcome::Ran
    );
    let get = |id: String| async move {
        h.done::<ops::GetCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": id })).expect("input"),
        )
        .await
        .certificate
    };
    for id in [&short, &tiny] {
        let c = get(id.clone()).await;
        assert_eq!(c.status, EffectiveStatus::Expired, "{id}");
        assert!(c.revoked_at.is_none(), "expired, not revoked");
    }
    // The day-long certificate is not short-lived and is still valid.
    assert_ne!(get(normal.clone()).await.status, EffectiveStatus::Expired);
    // The status filter finds stored and computed expiry alike; no renewal is queued.
    let expired = h
        .done::<ops::ListCertificates>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "status": "expired" })).expect("input"),
        )
        .await;
    assert_eq!(
        serde_json::to_value(&expired).expect("json")["data"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert!(renewal_jobs(h, &short).await.is_empty());
}

async fn renewal_policy_fraction_decides_when_renewal_is_due(h: &Harness) {
    let policy = h
        .done::<ops::SaveRenewalPolicy>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "half", "renew_at_fraction": 0.5, "jitter_percent": 0
            }))
            .expect("input"),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "half.example.com", "renewal_policy_id": policy.id
            }))
            .expect("input"),
        )
        .await;
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: c.id.clone(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, "half.example.com", &[])),
            ttl_seconds: Some(40 * 86400),
        },
    )
    .await;
    let s = Scheduler::new(h.engine.clone(), "proc-policy");
    // Day 19: not yet (40-day lifetime; half is day 20).
    h.clock.advance(19 * 86400);
    assert_eq!(
        s.run_once(Loop::Renewal, h.engine.now()).await,
        TickOutcome::Ran
    );
    assert!(renewal_jobs(h, &c.id).await.is_empty());
    h.clock.advance(86400 + 120);
    assert_eq!(
        s.run_once(Loop::Renewal, h.engine.now()).await,
        TickOutcome::Ran
    );
    assert_eq!(renewal_jobs(h, &c.id).await, vec![JobStatus::AwaitingCsr]);

    // Changing the policy reschedules the certificates under it.
    let d = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": "quarter.example.com", "renewal_policy_id": policy.id
            }))
            .expect("input"),
        )
        .await;
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: d.id.clone(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, "quarter.example.com", &[])),
            ttl_seconds: Some(40 * 86400),
        },
    )
    .await;
    h.done::<ops::SaveRenewalPolicy>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({
            "id": policy.id, "name": "quarter", "renew_at_fraction": 0.25, "jitter_percent": 0
        }))
        .expect("input"),
    )
    .await;
    h.clock.advance(10 * 86400 + 120);
    assert_eq!(
        s.run_once(Loop::Renewal, h.engine.now()).await,
        TickOutcome::Ran
    );
    assert_eq!(renewal_jobs(h, &d.id).await, vec![JobStatus::AwaitingCsr]);
}

async fn issue_secs(h: &Harness, cn: &str, secs: i64, profile: Option<&str>) -> String {
    let mut input = serde_json::json!({ "common_name": cn });
    if let Some(p) = profile {
        input["profile_id"] = p.into();
    }
    let c = h
        .done::<ops::CreateCertificate>(&h.admin(), serde_json::from_value(input).expect("input"))
        .await;
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: c.id.clone(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
            ttl_seconds: Some(secs),
        },
    )
    .await;
    c.id
}

// ---------------------------------------------------------------- replicas

async fn three_processes_renew_each_certificate_once(h: &Harness) {
    use certctl_engine::domain::{KeygenMode, Principal};
    let cfg = EngineConfig {
        keygen_mode: KeygenMode::Server,
        ..Default::default()
    };
    let engines = [
        Harness::engine_on(&h.db, &h.clock, cfg.clone(), &h.master).await,
        Harness::engine_on(&h.db, &h.clock, cfg.clone(), &h.master).await,
        Harness::engine_on(&h.db, &h.clock, cfg, &h.master).await,
    ];
    // Server-side keys: renewals complete without an agent.
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "name": "demo", "keygen_mode": "server" }))
                .expect("input"),
        )
        .await;
    let admin = Principal::system("test");
    let mut ids = Vec::new();
    for i in 0..30 {
        let c = engines[0]
            .call::<ops::CreateCertificate>(
                &admin,
                serde_json::from_value(serde_json::json!({
                    "common_name": format!("r{i}.example.com"), "profile_id": profile.id
                }))
                .expect("input"),
            )
            .await
            .expect("create")
            .completed()
            .expect("done");
        engines[0]
            .call::<ops::IssueCertificate>(
                &admin,
                ops::IssueCertificateInput {
                    id: c.id.clone(),
                    csr_pem: None,
                    ttl_seconds: Some(40 * 86400),
                },
            )
            .await
            .expect("issue")
            .completed()
            .expect("issued");
        ids.push(c.id);
    }
    let s: Vec<Arc<Scheduler>> = engines
        .iter()
        .enumerate()
        .map(|(i, e)| Arc::new(Scheduler::new(e.clone(), format!("proc-{i}"))))
        .collect();
    // Ticks over the renewal window (30 days before expiry, less up to 10 %
    // jitter): each singleton loop runs on one process per tick.
    h.clock.advance(10 * 86400 - 6 * 3600);
    for _ in 0..4 {
        h.clock.advance(3 * 3600);
        let (a, b, c) = tokio::join!(s[0].tick(), s[1].tick(), s[2].tick());
        // The job loop runs on every process by design: its jobs carry
        // their own leases.
        for l in Loop::ALL.into_iter().filter(|l| *l != Loop::Jobs) {
            let ran = [&a, &b, &c]
                .iter()
                .filter(|t| t.iter().any(|(x, o)| *x == l && *o == TickOutcome::Ran))
                .count();
            let due = [&a, &b, &c].iter().any(|t| t.iter().any(|(x, _)| *x == l));
            assert_eq!(ran, usize::from(due), "{l:?}: {a:?} {b:?} {c:?}");
        }
    }
    for id in &ids {
        let d = h
            .done::<ops::GetCertificate>(
                &h.admin(),
                serde_json::from_value(serde_json::json!({ "id": id })).expect("input"),
            )
            .await;
        assert_eq!(d.versions.len(), 2, "{id} renewed exactly once");
    }
    for e in engines {
        e.store().close().await;
    }
}

/// Renewals are queued many per transaction; one that an enforce-mode rule
/// refuses is taken out, audited as a failure and notified, and the rest of
/// its batch commits, each renewed once with its own audit event.
async fn a_refused_renewal_does_not_hold_up_its_batch(h: &Harness) {
    use certctl_engine::domain::{KeygenMode, Principal};
    let cfg = EngineConfig {
        keygen_mode: KeygenMode::Server,
        ..Default::default()
    };
    let srv = Harness::engine_on(&h.db, &h.clock, cfg, &h.master).await;
    let profile = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "name": "demo", "keygen_mode": "server" }))
                .expect("input"),
        )
        .await;
    let admin = Principal::system("test");
    let mut ids = Vec::new();
    for cn in [
        "a.example.com",
        "b.example.com",
        "c.example.org",
        "d.example.com",
    ] {
        let c = srv
            .call::<ops::CreateCertificate>(
                &admin,
                serde_json::from_value(
                    serde_json::json!({ "common_name": cn, "profile_id": profile.id }),
                )
                .expect("input"),
            )
            .await
            .expect("create")
            .completed()
            .expect("done");
        srv.call::<ops::IssueCertificate>(
            &admin,
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: None,
                ttl_seconds: Some(20 * 86400),
            },
        )
        .await
        .expect("issue")
        .completed()
        .expect("issued");
        ids.push(c.id);
    }
    // From now on only example.com names may be issued.
    h.done::<ops::SavePolicy>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({
            "name": "corp", "kind": "allowed_domains", "severity": "high", "mode": "enforce",
            "params": { "domains": ["*.example.com"] },
        }))
        .expect("input"),
    )
    .await;
    let s = Scheduler::new(srv.clone(), "proc-srv");
    assert_eq!(s.run_once(Loop::Renewal, srv.now()).await, TickOutcome::Ran);
    for (i, id) in ids.iter().enumerate() {
        let d = h
            .done::<ops::GetCertificate>(
                &h.admin(),
                serde_json::from_value(serde_json::json!({ "id": id })).expect("input"),
            )
            .await;
        let want = if i == 2 { 1 } else { 2 };
        assert_eq!(d.versions.len(), want, "{id}");
    }
    let renews: Vec<(String, String, String)> = h
        .audit_actions()
        .await
        .into_iter()
        .filter(|(a, _, who)| a == "renew_certificate" && who == "system:scheduler")
        .collect();
    let ok = renews.iter().filter(|(_, o, _)| o == "success").count();
    let failed = renews.iter().filter(|(_, o, _)| o == "failure").count();
    assert_eq!((ok, failed), (3, 1), "{renews:?}");
    // Nothing more is due: a second run renews nothing twice.
    h.clock.advance(3600);
    assert_eq!(s.run_once(Loop::Renewal, srv.now()).await, TickOutcome::Ran);
    for (i, id) in ids.iter().enumerate() {
        let d = h
            .done::<ops::GetCertificate>(
                &h.admin(),
                serde_json::from_value(serde_json::json!({ "id": id })).expect("input"),
            )
            .await;
        assert_eq!(d.versions.len(), if i == 2 { 1 } else { 2 }, "{id}");
    }
    srv.store().close().await;
}
