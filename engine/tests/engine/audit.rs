//! The audit chain: verify detects rows changed behind the engine's back;
//! the database itself refuses UPDATE and DELETE.

use certctl_engine::ops;

use super::support::{Db, Harness};
use crate::backend_tests;

backend_tests!(audit_is_append_only_and_tamper_evident);

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
