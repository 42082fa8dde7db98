//! The caches in front of the hottest reads (an agent's work poll, the API
//! key lookup): this process's own changes show at once, another replica's
//! within the documented bound of the clock.

use certctl_engine::config::EngineConfig;
use certctl_engine::domain::{JobStatus, Role};
use certctl_engine::ops;
use serde_json::json;

use super::support::{Harness, principal};
use crate::backend_tests;

backend_tests!(
    agent_work_polls_see_job_changes_here_at_once_and_elsewhere_within_the_bound,
    certificate_pages_see_writes_here_at_once_and_elsewhere_within_the_bound,
    a_cached_page_written_as_text_is_the_page_as_a_value
);

fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

async fn agent_work_polls_see_job_changes_here_at_once_and_elsewhere_within_the_bound(h: &Harness) {
    assert_eq!(certctl_engine::store::WORK_CACHE_SECONDS, 1);
    let admin = h.admin();
    let a = h
        .done::<ops::RegisterAgent>(&admin, input(json!({"name": "web-1"})))
        .await;
    let agent_id = a.agent.id.clone();
    let mut agent = principal("pr-web-1", Role::Agent);
    agent.agent_id = Some(agent_id.clone());
    let t = h
        .done::<ops::SaveTarget>(
            &admin,
            input(json!({"name": "t1", "kind": "nginx", "agent_id": agent_id,
                "config": {"cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key"}})),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &admin,
            input(json!({"common_name": "app.example.com", "target_ids": [t.id]})),
        )
        .await;
    let poll = |e: &std::sync::Arc<certctl_engine::Engine>| {
        let e = e.clone();
        let agent = agent.clone();
        let agent_id = agent_id.clone();
        async move {
            match e
                .call::<ops::GetAgentWork>(&agent, input(json!({"id": agent_id})))
                .await
                .expect("poll")
            {
                ops::Outcome::Completed { result } => result
                    .data
                    .into_iter()
                    .map(|w| w.job_id)
                    .collect::<Vec<_>>(),
                other => panic!("poll gated: {other:?}"),
            }
        }
    };
    // Nothing to do yet; the empty answer is cached for this second.
    assert!(poll(&h.engine).await.is_empty());
    // A job queued through this engine shows in the very next poll.
    let r = h
        .done::<ops::RenewCertificate>(&admin, input(json!({"id": c.id})))
        .await;
    assert_eq!(r.job.status, JobStatus::AwaitingCsr);
    assert_eq!(poll(&h.engine).await, vec![r.job.id.clone()]);

    // Another replica on the same database cancels it.
    let other = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
    assert_eq!(poll(&other).await, vec![r.job.id.clone()]);
    match other
        .call::<ops::CancelJob>(&admin, input(json!({"id": r.job.id})))
        .await
        .expect("cancel")
    {
        ops::Outcome::Completed { .. } => {}
        gated => panic!("cancel gated: {gated:?}"),
    }
    // The replica that wrote the cancellation is right at once ...
    assert!(poll(&other).await.is_empty());
    // ... this one may answer from its cache for the rest of the second,
    // and is right once the clock moves on.
    assert_eq!(poll(&h.engine).await, vec![r.job.id.clone()]);
    h.clock.advance(certctl_engine::store::WORK_CACHE_SECONDS);
    assert!(poll(&h.engine).await.is_empty());

    // Audit appends (every read writes one) do not empty the cache, and a
    // poll is still audited each time.
    let before = h.audit_actions().await;
    for _ in 0..3 {
        assert!(poll(&h.engine).await.is_empty());
    }
    let after = h.audit_actions().await;
    assert_eq!(
        after
            .iter()
            .filter(|(a, _, _)| a == "get_agent_work")
            .count(),
        before
            .iter()
            .filter(|(a, _, _)| a == "get_agent_work")
            .count()
            + 3
    );
    other.store().close().await;
}

async fn certificate_pages_see_writes_here_at_once_and_elsewhere_within_the_bound(h: &Harness) {
    let admin = h.admin();
    let list = |e: &std::sync::Arc<certctl_engine::Engine>| {
        let e = e.clone();
        let admin = admin.clone();
        async move {
            match e
                .call::<ops::ListCertificates>(&admin, input(json!({"sort": "-not_after"})))
                .await
                .expect("list")
            {
                ops::Outcome::Completed { result } => (result.total, result.data.len()),
                other => panic!("list gated: {other:?}"),
            }
        }
    };
    h.create_cert("a.example.com", &[]).await;
    assert_eq!(list(&h.engine).await, (Some(1), 1));
    // A certificate created through this engine shows in the next page.
    h.create_cert("b.example.com", &[]).await;
    assert_eq!(list(&h.engine).await, (Some(2), 2));
    // One created through another replica shows here once the clock moves on.
    let other = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
    match other
        .call::<ops::CreateCertificate>(&admin, input(json!({"common_name": "c.example.com"})))
        .await
        .expect("create")
    {
        ops::Outcome::Completed { .. } => {}
        gated => panic!("create gated: {gated:?}"),
    }
    assert_eq!(list(&other).await, (Some(3), 3));
    assert_eq!(
        list(&h.engine).await,
        (Some(2), 2),
        "cached for this second"
    );
    h.clock.advance(2);
    assert_eq!(list(&h.engine).await, (Some(3), 3));
    other.store().close().await;
}

/// Pages served from the cache go out as the JSON text the cache made once;
/// it must be the same JSON as the page through `serde_json::Value`, with and
/// without sparse fields, on the first call and on a cache hit.
async fn a_cached_page_written_as_text_is_the_page_as_a_value(h: &Harness) {
    let admin = h.admin();
    h.create_cert("a.example.com", &["b.example.com"]).await;
    h.create_cert("c.example.com", &[]).await;
    let op = ops::find("list_certificates").expect("op");
    for query in [
        json!({"sort": "-not_after"}),
        json!({"sort": "-not_after"}),
        json!({"sort": "-not_after", "fields": ["common_name", "sans"]}),
        json!({"per_page": 1}),
    ] {
        let text = match op
            .call_json_text(&h.engine, &admin, query.clone())
            .await
            .expect("list as text")
        {
            ops::Outcome::Completed { result } => result,
            other => panic!("gated: {other:?}"),
        };
        let value = match op
            .call_json(&h.engine, &admin, query.clone())
            .await
            .expect("list as value")
        {
            ops::Outcome::Completed { result } => result,
            other => panic!("gated: {other:?}"),
        };
        let parsed: serde_json::Value = serde_json::from_slice(&text).expect("valid JSON");
        assert_eq!(parsed, value, "{query}");
        assert!(value["data"].as_array().is_some_and(|d| !d.is_empty()));
        let page: ops::CertificatePage = serde_json::from_slice(&text).expect("typed page");
        assert_eq!(serde_json::to_value(&page).expect("value"), value);
    }
}
