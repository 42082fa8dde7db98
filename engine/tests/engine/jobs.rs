//! Jobs: claims are exclusive across processes, leases run out and are
//! reclaimed, failures back off and end in `failed`; nothing stays running.

use std::collections::HashSet;

use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{Job, JobKind, JobStatus};
use certctl_engine::store::JobResult;

use super::support::Harness;
use crate::backend_tests;

backend_tests!(
    claims_are_exclusive_and_leases_are_reclaimed,
    failures_back_off_then_fail
);

async fn add_jobs(h: &Harness, n: usize, run_after: i64, max_attempts: i64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut tx = h.engine.store().begin_write().await.expect("tx");
    for i in 0..n {
        let id = format!("job-test-{run_after}-{i:03}");
        tx.insert_job(&Job {
            id: id.clone(),
            kind: JobKind::Deployment,
            status: JobStatus::Pending,
            certificate_id: None,
            target_id: None,
            agent_id: None,
            attempts: 0,
            max_attempts,
            run_after,
            last_error: None,
            payload: serde_json::json!({}),
            created_at: run_after,
            updated_at: run_after,
        })
        .await
        .expect("insert job");
        ids.push(id);
    }
    tx.commit().await.expect("commit");
    ids
}

async fn status_of(h: &Harness, id: &str) -> Job {
    let mut tx = h.engine.store().begin_read().await.expect("tx");
    tx.job(id).await.expect("read").expect("job exists")
}

async fn claims_are_exclusive_and_leases_are_reclaimed(h: &Harness) {
    let now = h.clock_now();
    let due: HashSet<_> = add_jobs(h, 40, now - 10, 5).await.into_iter().collect();
    let later = add_jobs(h, 3, now + 3600, 5).await;
    // A second process on the same database claims at the same time.
    let other = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
    let (a, b) = tokio::join!(
        h.engine.store().claim_jobs("worker-a", now, 60, 25),
        other.store().claim_jobs("worker-b", now, 60, 25),
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    let ids_a: HashSet<_> = a.iter().map(|j| j.id.clone()).collect();
    let ids_b: HashSet<_> = b.iter().map(|j| j.id.clone()).collect();
    assert!(ids_a.is_disjoint(&ids_b), "a job was claimed twice");
    assert_eq!(ids_a.len() + ids_b.len(), 40, "every due job claimed once");
    assert_eq!(ids_a.union(&ids_b).cloned().collect::<HashSet<_>>(), due);
    assert!(
        later
            .iter()
            .all(|id| !ids_a.contains(id) && !ids_b.contains(id))
    );
    assert!(
        a.iter()
            .all(|j| j.status == JobStatus::Running && j.attempts == 1)
    );

    // The owner completes its job; another worker cannot.
    let first = a[0].id.clone();
    assert!(
        !other
            .store()
            .finish_job(&first, "worker-b", &JobResult::Completed, now)
            .await
            .expect("finish")
    );
    assert!(
        h.engine
            .store()
            .finish_job(&first, "worker-a", &JobResult::Completed, now + 1)
            .await
            .expect("finish")
    );
    assert_eq!(status_of(h, &first).await.status, JobStatus::Completed);

    // worker-b dies: its leases run out and the jobs come back.
    h.clock.advance(61);
    let now = h.clock_now();
    let reclaimed = h
        .engine
        .store()
        .reclaim_expired_leases(now)
        .await
        .expect("reclaim");
    assert_eq!(reclaimed as usize, ids_a.len() - 1 + ids_b.len());
    let some_b = b[0].id.clone();
    let j = status_of(h, &some_b).await;
    assert_eq!(j.status, JobStatus::Pending);
    assert!(j.last_error.unwrap_or_default().contains("lease expired"));
    // Its late result is discarded; the next claim runs it once more.
    assert!(
        !other
            .store()
            .finish_job(&some_b, "worker-b", &JobResult::Completed, now)
            .await
            .expect("late")
    );
    let again = h
        .engine
        .store()
        .claim_jobs("worker-c", now, 60, 100)
        .await
        .expect("claim");
    assert_eq!(again.len(), 39);
    assert!(again.iter().all(|j| j.attempts == 2));
    // Nothing is left running once everything is finished.
    for j in &again {
        assert!(
            h.engine
                .store()
                .finish_job(&j.id, "worker-c", &JobResult::Completed, now)
                .await
                .expect("finish")
        );
    }
    let running = h
        .engine
        .store()
        .list_jobs(
            &certctl_engine::store::JobFilter {
                status: Some(JobStatus::Running),
                ..Default::default()
            },
            1000,
        )
        .await
        .expect("list");
    assert!(running.is_empty());
    other.store().close().await;
}

async fn failures_back_off_then_fail(h: &Harness) {
    let now = h.clock_now();
    let ids = add_jobs(h, 1, now, 2).await;
    let id = &ids[0];
    let c = h
        .engine
        .store()
        .claim_jobs("w", now, 60, 10)
        .await
        .expect("claim");
    assert_eq!(c.len(), 1);
    assert!(
        h.engine
            .store()
            .finish_job(id, "w", &JobResult::Failed("nginx -t failed".into()), now)
            .await
            .expect("fail")
    );
    let j = status_of(h, id).await;
    assert_eq!(j.status, JobStatus::Pending);
    assert_eq!(j.run_after, now + 30, "first retry after 30 s");
    assert_eq!(j.last_error.as_deref(), Some("nginx -t failed"));
    // Not claimable before its backoff ends.
    assert!(
        h.engine
            .store()
            .claim_jobs("w", now + 29, 60, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let c = h
        .engine
        .store()
        .claim_jobs("w", now + 30, 60, 10)
        .await
        .expect("claim");
    assert_eq!(c.len(), 1);
    // The second failure uses the last attempt: failed for good.
    assert!(
        h.engine
            .store()
            .finish_job(id, "w", &JobResult::Failed("still broken".into()), now + 31)
            .await
            .expect("fail")
    );
    assert_eq!(status_of(h, id).await.status, JobStatus::Failed);
    assert!(
        h.engine
            .store()
            .claim_jobs("w", now + 10_000, 60, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // Terminal jobs cannot be moved (the transition table refuses it).
    let mut tx = h.engine.store().begin_write().await.expect("tx");
    let err = tx
        .transition_job(id, JobStatus::Failed, JobStatus::Running, None, now)
        .await
        .expect_err("terminal");
    assert_eq!(err.code(), "conflict");
}

mod leases {
    use super::super::support::Harness;
    use crate::backend_tests;
    use certctl_engine::config::EngineConfig;

    backend_tests!(one_process_holds_a_loop_lease_at_a_time);

    async fn one_process_holds_a_loop_lease_at_a_time(h: &Harness) {
        let other = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
        let now = h.clock_now();
        let (a, b) = tokio::join!(
            h.engine.store().acquire_lease("renewal", "proc-a", now, 30),
            other.store().acquire_lease("renewal", "proc-b", now, 30),
        );
        let (a, b) = (a.expect("lease a"), b.expect("lease b"));
        assert!(a ^ b, "exactly one process holds the lease (a={a}, b={b})");
        let (holder, waiter, hs, ws) = if a {
            ("proc-a", "proc-b", h.engine.store(), other.store())
        } else {
            ("proc-b", "proc-a", other.store(), h.engine.store())
        };
        // The holder renews; the other still waits.
        assert!(
            hs.acquire_lease("renewal", holder, now + 10, 30)
                .await
                .expect("renew")
        );
        assert!(
            !ws.acquire_lease("renewal", waiter, now + 20, 30)
                .await
                .expect("busy")
        );
        // Other loops are independent.
        assert!(
            ws.acquire_lease("notifications", waiter, now, 30)
                .await
                .expect("other loop")
        );
        // The holder dies: once its lease runs out, the other takes over.
        assert!(
            ws.acquire_lease("renewal", waiter, now + 41, 30)
                .await
                .expect("takeover")
        );
        assert!(
            !hs.acquire_lease("renewal", holder, now + 42, 30)
                .await
                .expect("lost")
        );
        // Releasing at shutdown frees it at once.
        ws.release_lease("renewal", waiter).await.expect("release");
        assert!(
            hs.acquire_lease("renewal", holder, now + 43, 30)
                .await
                .expect("free")
        );
        other.store().close().await;
    }
}
