//! Attacks on the audit trail by someone with full database access (issue
//! 17, point 7): they drop the append-only triggers and cut the tail, rewrite
//! the whole log with a re-computed chain, forge checkpoint rows, delete
//! checkpoints with the events, or replace the checkpoint key. Each must make
//! `verify_audit_log` fail and name what it found; a clean log verifies and
//! counts the events no checkpoint covers yet.
//!
//! Operations are called by name with JSON, as the faces do.

use std::sync::Arc;

use certctl_engine::Engine;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::audit::{GENESIS_HASH, chain_hash};
use certctl_engine::domain::{Principal, Role};
use certctl_engine::ops::{self, Outcome};
use certctl_engine::scheduler::{Loop, Scheduler, TickOutcome};
use serde_json::{Value, json};

use super::support::{Db, Harness, principal};
use crate::backend_tests;

backend_tests!(
    cutting_the_last_ten_events_is_reported_as_truncation,
    a_forged_chain_over_the_whole_log_is_reported_as_a_rewrite,
    a_forged_checkpoint_row_does_not_verify_and_is_not_built_on,
    deleting_checkpoints_with_the_events_is_caught_by_an_exported_copy,
    a_replaced_checkpoint_key_is_caught_by_an_exported_copy,
    a_clean_log_verifies_and_counts_its_unanchored_tail,
    the_scheduler_checkpoints_every_n_events_or_t_seconds,
);

/// Runs an operation by name on `engine` as `who`; the completed result.
async fn call_on(
    engine: &Engine,
    who: &Principal,
    name: &str,
    input: Value,
) -> certctl_engine::Result<Value> {
    let op = ops::find(name).unwrap_or_else(|| panic!("{name} is in the catalogue"));
    match op.call_json(engine, who, input).await? {
        Outcome::Completed { result } => Ok(result),
        Outcome::ApprovalRequired(t) => panic!("{name} unexpectedly gated: {t:?}"),
    }
}

async fn call(h: &Harness, name: &str, input: Value) -> certctl_engine::Result<Value> {
    call_on(&h.engine, &h.admin(), name, input).await
}

async fn verify(h: &Harness, input: Value) -> Value {
    call(h, "verify_audit_log", input).await.expect("verify")
}

async fn checkpoint(h: &Harness) -> Value {
    call(h, "checkpoint_audit_log", json!({}))
        .await
        .expect("checkpoint")
}

async fn export(h: &Harness) -> Value {
    call(h, "get_audit_checkpoints", json!({}))
        .await
        .expect("export")
}

/// Some events: each certificate is created and issued (two events).
async fn activity(h: &Harness, n: usize) {
    for i in 0..n {
        h.issued_cert(&format!("h{i}-{}.example.com", h.engine.now()))
            .await;
    }
}

fn kinds(v: &Value) -> Vec<&str> {
    v["findings"]
        .as_array()
        .map(|f| f.iter().filter_map(|f| f["kind"].as_str()).collect())
        .unwrap_or_default()
}

fn finding<'a>(v: &'a Value, kind: &str) -> &'a Value {
    v["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} finding in {v:#}"))
}

/// Runs `sql` on `table` with its append-only triggers out of the way, as
/// someone with full access to the database would.
async fn tamper(h: &Harness, table: &str, sql: &str) {
    let script = match &h.db {
        Db::Sqlite(_) => format!(
            "DROP TRIGGER IF EXISTS {table}_no_update; DROP TRIGGER IF EXISTS {table}_no_delete; {sql}"
        ),
        Db::Postgres { .. } => format!(
            "ALTER TABLE {table} DISABLE TRIGGER USER; {sql}; ALTER TABLE {table} ENABLE TRIGGER USER"
        ),
    };
    h.db.raw(&script).await.expect("tamper");
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Replaces every event with a copy whose event 3 names another actor, and
/// re-computes the whole chain so every hash and link is right again.
async fn forge_whole_chain(h: &Harness) {
    let mut events = h
        .engine
        .store()
        .list_audit(&Default::default(), 100_000)
        .await
        .expect("events");
    events.reverse();
    let mut prev = GENESIS_HASH.to_owned();
    let mut rows = Vec::new();
    for e in &mut events {
        if e.seq == 3 {
            e.actor = "mallory".into();
        }
        let details = serde_json::to_string(&e.details).expect("details");
        let hash = chain_hash(
            e.seq,
            &e.id,
            e.at,
            &e.actor,
            &e.actor_role,
            &e.action,
            &e.resource_type,
            e.resource_id.as_deref(),
            e.outcome.as_str(),
            &details,
            &prev,
        );
        rows.push(format!(
            "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            e.seq,
            lit(&e.id),
            e.at,
            lit(&e.actor),
            lit(&e.actor_role),
            lit(&e.action),
            lit(&e.resource_type),
            e.resource_id.as_deref().map_or("NULL".into(), lit),
            lit(e.outcome.as_str()),
            lit(&details),
            lit(&prev),
            lit(&hash),
        ));
        prev = hash;
    }
    tamper(
        h,
        "audit_events",
        &format!(
            "DELETE FROM audit_events; INSERT INTO audit_events (seq, id, at, actor, actor_role, \
             action, resource_type, resource_id, outcome, details, prev_hash, hash) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
}

async fn cutting_the_last_ten_events_is_reported_as_truncation(h: &Harness) {
    activity(h, 8).await;
    let cp = checkpoint(h).await;
    let head = cp["head_seq"].as_i64().expect("head_seq");
    assert!(head > 10, "{cp}");

    tamper(
        h,
        "audit_events",
        &format!("DELETE FROM audit_events WHERE seq > {}", head - 10),
    )
    .await;
    // The chain that is left links perfectly: only the checkpoint knows.
    let v = verify(h, json!({})).await;
    assert_eq!(v["valid"], false, "{v:#}");
    assert_eq!(kinds(&v), ["truncation"], "{v:#}");
    let t = finding(&v, "truncation");
    assert_eq!(t["count"], 10, "{t}");
    assert_eq!(t["seq"], head - 9);
    assert_eq!(t["checkpoint"], cp["number"]);
    assert_eq!(v["first_broken_seq"], head - 9);
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("10 event(s)")),
        "{v:#}"
    );

    // No checkpoint is signed over the cut log; nothing is written.
    no_checkpoint_signed(h, 1).await;
}

/// Signing a checkpoint is refused (with a conflict) and the stored
/// checkpoints stay `count`: certctl never signs over a cut or forged log.
async fn no_checkpoint_signed(h: &Harness, count: usize) {
    let err = call(h, "checkpoint_audit_log", json!({}))
        .await
        .expect_err("refused");
    assert!(matches!(err, certctl_engine::Error::Conflict(_)), "{err:?}");
    assert_eq!(
        export(h).await["checkpoints"].as_array().map(Vec::len),
        Some(count)
    );
}

async fn a_forged_chain_over_the_whole_log_is_reported_as_a_rewrite(h: &Harness) {
    activity(h, 3).await;
    let cp = checkpoint(h).await;
    let head = cp["head_seq"].as_i64().expect("head_seq");

    forge_whole_chain(h).await;
    let v = verify(h, json!({})).await;
    assert_eq!(v["valid"], false, "{v:#}");
    // Every link is right: the rewrite shows only at the checkpoint.
    assert!(!kinds(&v).contains(&"broken_link"), "{v:#}");
    let r = finding(&v, "rewrite");
    assert_eq!(r["seq"], head, "{r}");
    assert_eq!(r["checkpoint"], cp["number"]);
    assert_eq!(r["failure"], true);
    assert_eq!(v["first_broken_seq"], head);

    no_checkpoint_signed(h, 1).await;
}

async fn a_forged_checkpoint_row_does_not_verify_and_is_not_built_on(h: &Harness) {
    activity(h, 2).await;
    let cp = checkpoint(h).await;
    // The database refuses changes to checkpoints, like to events.
    for sql in [
        "UPDATE audit_checkpoints SET head_seq = 1",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = h.db.raw(sql).await.expect_err("refused");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    activity(h, 2).await;
    forge_whole_chain(h).await;
    // The attacker adds a checkpoint that vouches for the forged head; they
    // know the key id and the format, not the key.
    let (seq, id, hash): (i64, String, String) = {
        let last = h
            .engine
            .store()
            .list_audit(&Default::default(), 1)
            .await
            .expect("head");
        (last[0].seq, last[0].id.clone(), last[0].hash.clone())
    };
    let forged_hash = "ab".repeat(32);
    h.db.raw(&format!(
        "INSERT INTO audit_checkpoints (number, at, head_seq, head_event_id, head_hash, \
         prev_hash, hash, key_id, signature) VALUES (2, {}, {seq}, {}, {}, {}, {}, {}, {})",
        h.engine.now(),
        lit(&id),
        lit(&hash),
        lit(cp["hash"].as_str().expect("hash")),
        lit(&forged_hash),
        lit(cp["key_id"].as_str().expect("key id")),
        lit(cp["signature"]
            .as_str()
            .expect("a signature of something else")),
    ))
    .await
    .expect("insert forged checkpoint");

    let v = verify(h, json!({})).await;
    assert_eq!(v["valid"], false, "{v:#}");
    let bad = finding(&v, "checkpoint_signature_invalid");
    assert_eq!(bad["checkpoint"], 2, "{bad}");
    // Only the real checkpoint counts, and it still sees the rewrite.
    assert_eq!(v["checkpoints_verified"], 1);
    assert_eq!(finding(&v, "rewrite")["checkpoint"], 1);

    // No real checkpoint is chained onto the forged one.
    no_checkpoint_signed(h, 2).await;
}

async fn deleting_checkpoints_with_the_events_is_caught_by_an_exported_copy(h: &Harness) {
    activity(h, 2).await;
    let first = checkpoint(h).await;
    activity(h, 3).await;
    let second = checkpoint(h).await;
    let copy = export(h).await;
    assert_eq!(copy["checkpoints"].as_array().map(Vec::len), Some(2));
    let v = verify(h, json!({ "checkpoints": copy })).await;
    assert_eq!(v["valid"], true, "{v:#}");

    // The attacker removes the second checkpoint and everything after the
    // first: what is left is a consistent, shorter history.
    let kept = first["head_seq"].as_i64().expect("head");
    tamper(
        h,
        "audit_checkpoints",
        "DELETE FROM audit_checkpoints WHERE number = 2",
    )
    .await;
    tamper(
        h,
        "audit_events",
        &format!("DELETE FROM audit_events WHERE seq > {kept}"),
    )
    .await;
    let alone = verify(h, json!({})).await;
    assert_eq!(alone["valid"], true, "only a copy can tell: {alone:#}");

    let v = verify(h, json!({ "checkpoints": copy })).await;
    assert_eq!(v["valid"], false, "{v:#}");
    let gone = finding(&v, "checkpoint_missing");
    assert_eq!(gone["checkpoint"], 2, "{gone}");
    assert!(
        gone["message"]
            .as_str()
            .is_some_and(|m| m.contains("deleted")),
        "{gone}"
    );
    // The log now ends with the events of the reads since the cut.
    let end = v["checked"].as_i64().expect("checked");
    let t = finding(&v, "truncation");
    assert_eq!(t["count"], second["head_seq"].as_i64().expect("head") - end);
    assert_eq!(t["seq"], end + 1);

    // A malformed copy is the caller's mistake: a typed refusal.
    let mut bad = copy.clone();
    bad["public_key"] = "not a key".into();
    let err = call(h, "verify_audit_log", json!({ "checkpoints": bad }))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, certctl_engine::Error::InvalidInput(_)),
        "{err:?}"
    );
    let err = call(h, "verify_audit_log", json!({ "checkpoints": [1, 2] }))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, certctl_engine::Error::InvalidInput(_)),
        "{err:?}"
    );
}

async fn a_replaced_checkpoint_key_is_caught_by_an_exported_copy(h: &Harness) {
    activity(h, 3).await;
    checkpoint(h).await;
    let copy = export(h).await;

    // The attacker rewrites the log, deletes every checkpoint and the key,
    // and lets certctl start again: it makes a new key and signs the forgery.
    forge_whole_chain(h).await;
    tamper(h, "audit_checkpoints", "DELETE FROM audit_checkpoints").await;
    // A key that does not open, then none: each is reported, not an error.
    h.db.raw("UPDATE meta SET value = 'v1:AAAA' WHERE key = 'audit_checkpoint_key'")
        .await
        .expect("spoil the key");
    let v = verify(h, json!({})).await;
    assert_eq!(v["valid"], false, "{v:#}");
    let k = finding(&v, "checkpoint_key_changed");
    assert!(
        k["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not open")),
        "{k}"
    );
    h.db.raw("DELETE FROM meta WHERE key = 'audit_checkpoint_key'")
        .await
        .expect("delete the key");
    let v = verify(h, json!({})).await;
    let k = finding(&v, "checkpoint_key_changed");
    assert!(
        k["message"].as_str().is_some_and(|m| m.contains("missing")),
        "{k}"
    );
    let restarted = Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master).await;
    call_on(&restarted, &h.admin(), "checkpoint_audit_log", json!({}))
        .await
        .expect("a checkpoint of the forgery");
    let alone = call_on(&restarted, &h.admin(), "verify_audit_log", json!({}))
        .await
        .expect("verify");
    assert_eq!(alone["valid"], true, "only a copy can tell: {alone:#}");

    let v = call_on(
        &restarted,
        &h.admin(),
        "verify_audit_log",
        json!({ "checkpoints": copy }),
    )
    .await
    .expect("verify");
    assert_eq!(v["valid"], false, "{v:#}");
    assert!(kinds(&v).contains(&"checkpoint_key_changed"), "{v:#}");
    assert!(kinds(&v).contains(&"rewrite"), "{v:#}");
    restarted.store().close().await;
}

async fn a_clean_log_verifies_and_counts_its_unanchored_tail(h: &Harness) {
    activity(h, 2).await;
    let v = verify(h, json!({})).await;
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(kinds(&v), ["unanchored_tail"], "nothing is anchored yet");
    assert_eq!(v["unanchored_events"], v["checked"]);

    let cp = checkpoint(h).await;
    activity(h, 1).await;
    let v = verify(h, json!({ "checkpoints": export(h).await })).await;
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(kinds(&v), ["unanchored_tail"], "{v:#}");
    let head = cp["head_seq"].as_i64().expect("head");
    let end = v["checked"].as_i64().expect("checked");
    let tail = finding(&v, "unanchored_tail");
    assert_eq!(tail["failure"], false);
    assert_eq!(tail["count"], end - head);
    assert_eq!(tail["seq"], head + 1);
    assert_eq!(v["unanchored_events"], end - head);
    assert_eq!(v["anchored_through_seq"], head);
    assert_eq!(v["checkpoints_verified"], 1);
    assert_eq!(v["first_broken_seq"], Value::Null);

    // A checkpoint on demand covers what came since the last one.
    let again = call(h, "checkpoint_audit_log", json!({}))
        .await
        .expect("checkpoint");
    assert_eq!(again["number"], 2);
    let checkpoints = export(h).await;
    assert_eq!(checkpoints["checkpoints"].as_array().map(Vec::len), Some(2));

    // Writing checkpoints is for admins; reading and verifying for everyone.
    let viewer: Principal = principal("pr-viewer", Role::Viewer);
    let operator: Principal = principal("pr-operator", Role::Operator);
    for who in [&viewer, &operator] {
        let err = call_on(&h.engine, who, "checkpoint_audit_log", json!({}))
            .await
            .expect_err("admins only");
        assert!(
            matches!(err, certctl_engine::Error::Forbidden(_)),
            "{err:?}"
        );
        call_on(&h.engine, who, "get_audit_checkpoints", json!({}))
            .await
            .expect("read");
    }
    assert_eq!(export(h).await["checkpoints"], checkpoints["checkpoints"]);
}

async fn the_scheduler_checkpoints_every_n_events_or_t_seconds(h: &Harness) {
    let mut config = EngineConfig::default();
    config.scheduler.audit_checkpoint_events = 5;
    config.scheduler.audit_checkpoint_interval_seconds = 300;
    let engine = Harness::engine_on(&h.db, &h.clock, config, &h.master).await;
    let s = Arc::new(Scheduler::new(engine.clone(), "proc-audit"));
    let run = || s.run_once(Loop::AuditCheckpoint, h.engine.now());
    let count = || async {
        export(h).await["checkpoints"]
            .as_array()
            .map_or(0, Vec::len)
    };

    // The first run anchors what there is; then only what is due.
    assert_eq!(run().await, TickOutcome::Ran);
    assert_eq!(count().await, 1);
    assert_eq!(run().await, TickOutcome::Ran);
    assert_eq!(count().await, 1, "no event since");
    activity(h, 3).await; // six events: N is reached
    assert_eq!(run().await, TickOutcome::Ran);
    assert_eq!(count().await, 2);
    activity(h, 1).await; // two events: below N, before T
    assert_eq!(run().await, TickOutcome::Ran);
    assert_eq!(count().await, 2);
    h.clock.advance(300);
    assert_eq!(run().await, TickOutcome::Ran);
    assert_eq!(count().await, 3, "T passed with events waiting");

    let v = verify(h, json!({})).await;
    assert_eq!(v["valid"], true, "{v:#}");
    assert_eq!(v["checkpoints_verified"], 3);
    engine.store().close().await;
}
