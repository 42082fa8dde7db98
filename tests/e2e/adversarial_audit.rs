//! The audit trail's tail cut behind certctl's back (issue 17, point 7),
//! seen from the terminal: `certctl audit verify` exits non-zero and names
//! the truncation, with or without an exported copy of the checkpoints.

use std::path::Path;

use certctl_api::client::Client;
use serde_json::{Value, json};

use super::{Server, certctl, wait_healthy};

/// `certctl --server ... --data-dir DIR ARGS`: (exit code, stdout, stderr).
fn run(server: &Server, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let dir = dir.to_str().expect("utf-8 path");
    let mut all = vec!["--server", server.base.as_str(), "--data-dir", dir];
    all.extend_from_slice(args);
    let out = certctl(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Deletes the events after `seq` with the append-only trigger dropped.
async fn cut_after(db: &Path, seq: i64) {
    let sql =
        format!("DROP TRIGGER audit_events_no_delete; DELETE FROM audit_events WHERE seq > {seq}");
    super::sqlite_exec(db, &sql).await;
}

/// Rewrites every event in place (the first gets another actor) and
/// re-computes the whole chain, so every link is right again: what someone
/// with the database file but not the master key can do.
async fn forge_chain(db: &Path) {
    use certctl_engine::domain::audit::{GENESIS_HASH, chain_hash};
    use sqlx::{Connection, Row};
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database");
    sqlx::raw_sql("DROP TRIGGER audit_events_no_update")
        .execute(&mut c)
        .await
        .expect("drop trigger");
    let rows = sqlx::query(
        "SELECT seq, id, at, actor, actor_role, action, resource_type, resource_id, outcome, \
         details FROM audit_events ORDER BY seq",
    )
    .fetch_all(&mut c)
    .await
    .expect("events");
    let mut prev = GENESIS_HASH.to_owned();
    for r in rows {
        let seq: i64 = r.get("seq");
        let actor: String = if seq == 1 {
            "mallory".into()
        } else {
            r.get("actor")
        };
        let hash = chain_hash(
            seq,
            r.get("id"),
            r.get("at"),
            &actor,
            r.get("actor_role"),
            r.get("action"),
            r.get("resource_type"),
            r.get("resource_id"),
            r.get("outcome"),
            r.get("details"),
            &prev,
        );
        sqlx::query("UPDATE audit_events SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&actor)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&mut c)
            .await
            .expect("rewrite");
        prev = hash;
    }
    c.close().await.expect("close");
}

#[tokio::test]
async fn audit_verify_names_a_rewritten_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let server = Server::start(d, &[]);
    let key = std::fs::read_to_string(d.join("admin.key")).expect("admin.key");
    let client = Client::new(&server.base, Some(key.trim().to_owned())).expect("client");
    wait_healthy(&client).await;
    let (code, out, err) = run(&server, d, &["audit", "checkpoint"]);
    assert_eq!(code, 0, "{out} {err}");
    forge_chain(&d.join("certctl.db")).await;
    let (code, out, err) = run(&server, d, &["audit", "verify"]);
    assert_ne!(code, 0, "a forged chain must fail: {out}");
    assert!(out.contains("FAILED rewrite"), "{out}");
    assert!(err.contains("rewrite"), "{err}");
    assert!(server.terminate().success());
}

#[tokio::test]
async fn audit_verify_names_a_cut_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let server = Server::start(d, &[]);
    let key = std::fs::read_to_string(d.join("admin.key")).expect("admin.key");
    let client = Client::new(&server.base, Some(key.trim().to_owned())).expect("client");
    wait_healthy(&client).await;
    for i in 0..8 {
        let _: Value = client
            .call_completed(
                "create_certificate",
                &json!({ "common_name": format!("cut{i}.example.com") }),
            )
            .await
            .expect("create");
    }

    let (code, out, err) = run(&server, d, &["--format", "json", "audit", "checkpoint"]);
    assert_eq!(code, 0, "{out} {err}");
    let cp: Value = serde_json::from_str(&out).expect("checkpoint JSON");
    let head = cp["head_seq"].as_i64().expect("head_seq");
    assert!(head > 10, "{cp}");
    let (code, out, err) = run(&server, d, &["audit", "checkpoints"]);
    assert_eq!(code, 0, "{err}");
    let copy = d.join("checkpoints.json");
    std::fs::write(&copy, &out).expect("save the copy");
    let copy_arg = copy.to_str().expect("utf-8 path");
    let (code, out, err) = run(&server, d, &["audit", "verify", "--checkpoints", copy_arg]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("audit chain intact"), "{out}");

    // Someone with the database file deletes the last ten events the
    // checkpoint covers (and whatever came after).
    cut_after(&d.join("certctl.db"), head - 10).await;
    for args in [
        vec!["audit", "verify"],
        vec!["audit", "verify", "--checkpoints", copy_arg],
    ] {
        let (code, out, err) = run(&server, d, &args);
        assert_ne!(code, 0, "{args:?} must fail: {out}");
        assert!(
            out.contains("FAILED truncation") && out.contains("were deleted"),
            "{args:?}: {out}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("certctl: error: ") && err.contains("truncation"),
            "{err}"
        );
    }
    let (code, out, _) = run(&server, d, &["--format", "json", "audit", "verify"]);
    assert_ne!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("verify JSON");
    assert_eq!(v["valid"], false);
    assert_eq!(v["findings"][0]["kind"], "truncation", "{v:#}");
    assert!(server.terminate().success());
}
