//! Attacks through the MCP face (issue 17), on SQLite and PostgreSQL: a
//! prompt-injected assistant with a user's key tries to get past the gate,
//! to have a human approve something other than what was shown, and to read
//! secrets from approval records. Each asserts the refusal and that nothing
//! changed.

use super::*;
use certctl_engine::config::{ApprovalConfig, EngineConfig};
use sqlx::Connection;

/// A fresh database: SQLite in `dir`, or a new PostgreSQL database (fails
/// when PostgreSQL is required and missing; skips otherwise).
async fn location(dir: &tempfile::TempDir, postgres: bool) -> Option<StoreLocation> {
    if !postgres {
        return Some(StoreLocation::SqliteFile(dir.path().join("adv.db")));
    }
    let admin = std::env::var("CERTCTL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let required = std::env::var_os("CI").is_some()
        || std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() == Ok("1");
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) if !required => {
            eprintln!("SKIPPED: PostgreSQL at {admin} is not reachable ({e})");
            return None;
        }
        Err(e) => panic!("PostgreSQL at {admin} is required: {e}"),
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let name = format!("certctl_mcp_adv_{}_{nanos}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(StoreLocation::Postgres(format!("{base}/{name}")))
}

async fn setup_on(postgres: bool, config: EngineConfig) -> Option<Setup> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&location(&dir, postgres).await?)
        .await
        .expect("store");
    let engine = Engine::start(
        store,
        Arc::new(SystemClock),
        config,
        MasterKey::generate().expect("key"),
    )
    .await
    .expect("engine");
    Some(Setup {
        engine,
        admin: who("pr-mcp-admin", Role::Admin),
        _dir: dir,
    })
}

fn who(id: &str, role: Role) -> Principal {
    Principal {
        id: id.into(),
        name: id.into(),
        role,
        agent_id: None,
        address: None,
    }
}

fn result(r: &CallToolResult) -> Value {
    structured(r)["result"].clone()
}

fn text(r: &CallToolResult) -> String {
    serde_json::to_string(&r.content).unwrap_or_default()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(false).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(true).await }
            )*
        }
    };
}

both_backends!(
    an_assistant_cannot_lift_four_eyes_by_moving_a_certificate,
    an_approval_does_not_run_on_a_renewed_certificate,
    approvals_show_no_secret_and_only_the_requester_collects_it,
);

async fn an_assistant_cannot_lift_four_eyes_by_moving_a_certificate(pg: bool) {
    let Some(s) = setup_on(pg, Default::default()).await else {
        return;
    };
    let admin = connect(&s, &s.admin, None).await;
    let p = call(
        &admin,
        "save_profile",
        json!({"name": "payments", "requires_approval": true}),
    )
    .await;
    let profile = result(&p)["id"].as_str().expect("profile").to_owned();
    let c = call(
        &admin,
        "create_certificate",
        json!({"common_name": "pay.example.com", "profile_id": profile}),
    )
    .await;
    let cert = result(&c)["id"].as_str().expect("id").to_owned();
    // The operator's assistant, whose client would confirm anything in chat.
    let op = connect(&s, &who("pr-op", Role::Operator), Some(true)).await;
    let r = call(
        &op,
        "update_certificate",
        json!({"id": cert, "profile_id": "prof-default"}),
    )
    .await;
    let v = structured(&r);
    assert_eq!(v["status"], "approval_required", "{v}");
    let d = call(&op, "get_certificate", json!({"id": cert})).await;
    assert_eq!(result(&d)["certificate"]["profile_id"], profile.as_str());
}

async fn an_approval_does_not_run_on_a_renewed_certificate(pg: bool) {
    let Some(s) = setup_on(pg, Default::default()).await else {
        return;
    };
    let op = connect(&s, &who("pr-op", Role::Operator), None).await;
    let cert = issued(&op, "rotate.example.com").await;
    let r = call(
        &op,
        "revoke_certificate",
        json!({"id": cert, "reason": "keyCompromise"}),
    )
    .await;
    let v = structured(&r);
    assert_eq!(v["status"], "approval_required", "{v}");
    let approval = v["approval_id"].as_str().expect("id").to_owned();
    let r = call(
        &op,
        "renew_certificate",
        json!({"id": cert, "csr_pem": csr("rotate.example.com")}),
    )
    .await;
    assert_eq!(structured(&r)["status"], "completed", "{r:?}");
    let approver = connect(&s, &who("pr-approver", Role::Approver), None).await;
    let r = call(
        &approver,
        "approve_request",
        json!({"approval_id": approval}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains("stale"), "{}", text(&r));
    let d = call(&op, "get_certificate", json!({"id": cert})).await;
    assert_eq!(result(&d)["certificate"]["status"], "valid");
}

async fn approvals_show_no_secret_and_only_the_requester_collects_it(pg: bool) {
    let config = EngineConfig {
        approvals: ApprovalConfig {
            gate_write: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let Some(s) = setup_on(pg, config).await else {
        return;
    };
    let admin = connect(&s, &s.admin, None).await;
    let r = call(
        &admin,
        "create_principal",
        json!({"name": "deploy-bot", "role": "operator"}),
    )
    .await;
    let approval = structured(&r)["approval_id"]
        .as_str()
        .expect("gated")
        .to_owned();
    let approver = connect(&s, &who("pr-approver", Role::Approver), None).await;
    let r = call(
        &approver,
        "approve_request",
        json!({"approval_id": approval}),
    )
    .await;
    assert_eq!(result(&r)["approval"]["status"], "executed", "{r:?}");
    assert_eq!(result(&r)["approval"]["result"]["api_key"], "[sealed]");
    let viewer = connect(&s, &who("pr-viewer", Role::Viewer), None).await;
    let r = call(&viewer, "get_approval", json!({"id": approval})).await;
    assert_eq!(result(&r)["result"]["api_key"], "[sealed]", "{r:?}");
    for c in [&viewer, &approver] {
        let r = call(c, "claim_approval_result", json!({"approval_id": approval})).await;
        assert_eq!(r.is_error, Some(true), "{r:?}");
    }
    let r = call(
        &admin,
        "claim_approval_result",
        json!({"approval_id": approval}),
    )
    .await;
    let key = result(&r)["result"]["api_key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert!(s.engine.authenticate(&key).await.is_ok());
    let r = call(
        &admin,
        "claim_approval_result",
        json!({"approval_id": approval}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "collected once: {r:?}");
}
