//! The audit chain: verify detects rows changed behind the engine's back;
//! the database itself refuses UPDATE and DELETE.

use certctl_engine::ops;

use super::support::{Db, Harness};
use crate::backend_tests;

backend_tests!(
    audit_is_append_only_and_tamper_evident,
    batched_appends_keep_one_unbroken_chain
);

async fn audit_is_append_only_and_tamper_evident(h: &Harness) {
    h.issued_cert("a.example.com").await;
    h.issued_cert("b.example.com").await;
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(v.valid, "{v:?}");
    assert!(v.checked >= 5, "{v:?}");

    // The database refuses changes to the trail.
    let err =
        h.db.raw("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
            .await
            .expect_err("update refused");
    assert!(err.to_string().contains("append-only"), "{err}");
    let err =
        h.db.raw("DELETE FROM audit_events WHERE seq = 2")
            .await
            .expect_err("delete refused");
    assert!(err.to_string().contains("append-only"), "{err}");

    // Someone with full database access disables the protection and edits a row.
    let tamper = match &h.db {
        Db::Sqlite(_) => {
            "DROP TRIGGER audit_events_no_update; UPDATE audit_events SET actor = 'mallory' WHERE seq = 3"
        }
        Db::Postgres { .. } => {
            "ALTER TABLE audit_events DISABLE TRIGGER USER; \
             UPDATE audit_events SET actor = 'mallory' WHERE seq = 3; \
             ALTER TABLE audit_events ENABLE TRIGGER USER"
        }
    };
    h.db.raw(tamper).await.expect("tamper");
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(!v.valid);
    assert_eq!(v.first_broken_seq, Some(3), "{v:?}");
    assert_eq!(v.checked, 2);
}

/// Concurrent reads share group commits and API requests are written in
/// batches (one statement per batch): every event lands once, in one chain
/// that verifies, with its fields intact.
async fn batched_appends_keep_one_unbroken_chain(h: &Harness) {
    use certctl_engine::request_audit::{API_REQUEST_ACTION, ApiRequestRecord};

    let admin = h.admin();
    let reads = (0..40).map(|_| {
        h.engine
            .call::<ops::ListCertificates>(&admin, Default::default())
    });
    for r in futures_util::future::join_all(reads).await {
        r.expect("read");
    }
    let records: Vec<ApiRequestRecord> = (0..300)
        .map(|i| ApiRequestRecord {
            at: h.engine.now(),
            request_id: format!("req-{i}"),
            method: "GET".into(),
            path: format!("/api/v1/certificates/mc-{i}"),
            principal: (i % 2 == 0).then(|| admin.clone()),
            body_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            status: if i % 3 == 0 { 404 } else { 200 },
            latency_ms: 1.5,
        })
        .collect();
    let (a, b) = records.split_at(150);
    let (ra, rb) = tokio::join!(
        h.engine.record_api_requests(a),
        h.engine.record_api_requests(b)
    );
    ra.expect("first batch");
    rb.expect("second batch");

    let actions = h.audit_actions().await;
    assert_eq!(
        actions
            .iter()
            .filter(|(a, _, _)| a == "list_certificates")
            .count(),
        40
    );
    let events = h
        .done::<ops::GetAuditLog>(
            &admin,
            serde_json::from_value(serde_json::json!({
                "action": API_REQUEST_ACTION, "per_page": 1000
            }))
            .expect("input"),
        )
        .await
        .data;
    assert_eq!(events.len(), 300);
    let e7 = events
        .iter()
        .find(|e| e.details["request_id"] == "req-7")
        .expect("req-7");
    assert_eq!(e7.actor, "anonymous");
    assert_eq!(e7.details["path"], "/api/v1/certificates/mc-7");
    assert_eq!(e7.details["status"], 200);
    assert_eq!(e7.resource_id, None);
    let e6 = events
        .iter()
        .find(|e| e.details["request_id"] == "req-6")
        .expect("req-6");
    assert_eq!(e6.actor, admin.id);
    assert_eq!(e6.details["status"], 404);
    let v = h
        .done::<ops::VerifyAuditLog>(&admin, Default::default())
        .await;
    assert!(v.valid, "{v:?}");
    assert!(v.checked >= 340, "{v:?}");
}

/// A caller that goes away while it leads a group commit (an HTTP client
/// that disconnects mid-request) takes no one else's event with it. On one
/// thread, so the order is exact: SQLite's write gate is held while A leads
/// a commit of its own event and B to E queue theirs; A goes away, B takes
/// the lead with the batch B to E in hand, and goes away too. C, D and E
/// stayed, so each must be answered and its event be in the chain. (The
/// group commit is the same code on PostgreSQL, which has no such gate to
/// hold the writer with.)
#[tokio::test(flavor = "current_thread")]
async fn a_caller_that_goes_away_takes_no_other_event_with_it() {
    use certctl_engine::request_audit::{API_REQUEST_ACTION, ApiRequestRecord};

    let h = Harness::new(None, Default::default())
        .await
        .expect("harness");
    let record = |name: &str| ApiRequestRecord {
        at: h.engine.now(),
        request_id: name.to_owned(),
        method: "GET".into(),
        path: "/api/v1/certificates".into(),
        principal: None,
        body_sha256: String::new(),
        status: 200,
        latency_ms: 0.1,
    };
    let call = |name: &str| {
        let engine = h.engine.clone();
        let r = record(name);
        tokio::spawn(async move { engine.record_api_requests(&[r]).await })
    };
    let writer = h
        .engine
        .store()
        .begin_write()
        .await
        .expect("hold the writer");
    let a = call("req-a");
    tokio::task::yield_now().await;
    let others: Vec<_> = ["req-b", "req-c", "req-d", "req-e"]
        .into_iter()
        .map(call)
        .collect();
    tokio::task::yield_now().await;
    a.abort();
    tokio::task::yield_now().await;
    others[0].abort();
    tokio::task::yield_now().await;
    drop(writer);
    for (name, call) in ["req-c", "req-d", "req-e"]
        .iter()
        .zip(others.into_iter().skip(1))
    {
        call.await
            .expect("stayed")
            .unwrap_or_else(|e| panic!("{name} stayed but its event was not written: {e}"));
    }
    let admin = h.admin();
    let written: Vec<String> = h
        .done::<ops::GetAuditLog>(
            &admin,
            serde_json::from_value(serde_json::json!({ "action": API_REQUEST_ACTION }))
                .expect("input"),
        )
        .await
        .data
        .into_iter()
        .filter_map(|e| e.details["request_id"].as_str().map(str::to_owned))
        .collect();
    for name in ["req-c", "req-d", "req-e"] {
        assert!(
            written.iter().any(|w| w == name),
            "{name} is not in {written:?}"
        );
    }
    let v = h
        .done::<ops::VerifyAuditLog>(&admin, Default::default())
        .await;
    assert!(v.valid, "{v:?}");
    h.finish().await;
}
