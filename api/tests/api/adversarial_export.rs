//! Issue 17, point 6: export-link tokens are credentials. A viewer reading
//! the audit log (operation events and `api_request` events) finds no token;
//! once the legitimate user opened or redeemed a link, replaying it (GET, or
//! POST with a password of the attacker's) gets nothing; the tracing output
//! of the whole exchange holds no token either.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::support::{Reply, Rig};

backend_tests!(
    a_viewer_finds_no_token_and_an_opened_link_is_spent,
    public_formats_are_spent_by_their_download,
);

fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// How the audit names a link: a prefix of its token's SHA-256.
fn link_id(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))[..12]
        .to_owned()
}

/// The hidden ticket of a PKCS#12 password page, if it has one.
fn ticket_of(page: &str) -> Option<String> {
    let start = page.find("name=\"ticket\" value=\"")? + "name=\"ticket\" value=\"".len();
    let len = page[start..].find('"')?;
    Some(page[start..start + len].to_owned())
}

/// POSTs an urlencoded form, as the browser's password page does.
async fn post_form(rig: &Rig, url: &str, form: &str) -> Reply {
    let req = Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    rig.send_via(&rig.router, req).await
}

/// Everything a viewer can read of the audit trail, as text.
async fn audit_as_viewer(rig: &Rig, viewer: &str) -> String {
    rig.state.flush_request_audit().await;
    let reply = rig.get("/api/v1/audit?per_page=100", Some(viewer)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body.to_string()
}

async fn audit_events(rig: &Rig, action: &str) -> Vec<Value> {
    rig.op("get_audit_log", json!({ "action": action })).await["data"]
        .as_array()
        .unwrap()
        .clone()
}

async fn a_viewer_finds_no_token_and_an_opened_link_is_spent(rig: &Rig) {
    let viewer = rig.key("viewer").await;
    let id = rig.issued_certificate("vault.example.com").await;
    let link = rig
        .op(
            "create_export_link",
            json!({ "id": id, "format": "pkcs12" }),
        )
        .await;
    let url = link["url"].as_str().unwrap().to_owned();
    let token = token_of(&url);

    // The owner opens the link: the password page.
    let page = rig.get(&url, None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let html = page.body.as_str().unwrap().to_owned();
    assert!(html.contains("type=\"password\""), "{html}");

    // A viewer reads the whole audit trail, request events included: no token.
    let seen = audit_as_viewer(rig, &viewer).await;
    assert!(!seen.contains(&token), "the token is in the audit log");
    assert!(
        seen.contains("/api/v1/exports/[link:"),
        "the request is audited, its token replaced by the link id"
    );

    // Replaying the opened link gets nothing: not the page, not the file
    // under the attacker's own password.
    let replay = rig
        .post(&url, None, r#"{"password":"attacker-chosen-1"}"#)
        .await;
    replay.assert_problem(404, "not-found");
    let reform = post_form(rig, &url, "password=attacker-chosen-2").await;
    assert_eq!(reform.status, 404, "{reform:?}");
    let reopen = rig.get(&url, None).await;
    reopen.assert_problem(404, "not-found");

    // The owner's page still downloads, once.
    let ticket = ticket_of(&html).expect("the page carries its one-time ticket");
    assert_ne!(ticket, token);
    let form = format!("ticket={ticket}&password=owner-chosen-1");
    let file = post_form(rig, &url, &form).await;
    assert_eq!(file.status, 200, "{file:?}");
    assert_eq!(file.content_type(), "application/x-pkcs12");
    let again = post_form(
        rig,
        &url,
        &format!("ticket={ticket}&password=attacker-chosen-3"),
    )
    .await;
    assert_eq!(again.status, 404, "{again:?}");
    let again = post_form(rig, &url, &form).await;
    assert_eq!(again.status, 404, "the ticket is single-use: {again:?}");

    // The trail names the link by id only, and ties the download to the page.
    let seen = audit_as_viewer(rig, &viewer).await;
    assert!(!seen.contains(&token) && !seen.contains(&ticket), "{seen}");
    let opened = audit_events(rig, "open_export_link").await;
    let downloaded = audit_events(rig, "download_export").await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(downloaded.len(), 1, "{downloaded:?}");
    assert_eq!(opened[0]["details"]["link_id"], link_id(&token));
    assert_eq!(
        downloaded[0]["details"]["link_id"],
        opened[0]["details"]["form_ticket_id"]
    );
    let created = audit_events(rig, "create_export_link").await;
    assert_eq!(
        created[0]["details"]["link_id"],
        opened[0]["details"]["link_id"]
    );
    let v = rig.op("verify_audit_log", json!({})).await;
    assert_eq!(v["valid"], true, "{v}");
}

async fn public_formats_are_spent_by_their_download(rig: &Rig) {
    let id = rig.issued_certificate("pem.example.com").await;
    for format in ["pem", "der"] {
        let link = rig
            .op("create_export_link", json!({ "id": id, "format": format }))
            .await;
        let url = link["url"].as_str().unwrap().to_owned();
        let first = rig.get(&url, None).await;
        assert_eq!(first.status, 200, "{format}: {first:?}");
        rig.get(&url, None).await.assert_problem(404, "not-found");
        rig.post(&url, None, "{}")
            .await
            .assert_problem(404, "not-found");
    }
}

/// A writer the test reads back: everything the tracing subscriber printed.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The subscriber is the process's global one: a thread-local default can
// miss events whose callsite another test's thread registered first (a
// tracing interest cache), which made this test fail only in the full run.
// Only certctl's own targets are kept, so the buffer stays small.
#[tokio::test(flavor = "current_thread")]
async fn tracing_output_holds_no_export_token() {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        )
        .with(tracing_subscriber::EnvFilter::new(
            "certctl=trace,certctl_api=trace,certctl_engine=trace",
        ));
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    let rig = Rig::new().await;
    let id = rig.issued_certificate("traced.example.com").await;
    let link = rig
        .op(
            "create_export_link",
            json!({ "id": id, "format": "pkcs12" }),
        )
        .await;
    let url = link["url"].as_str().unwrap().to_owned();
    let token = token_of(&url);
    let page = rig.get(&url, None).await;
    rig.state.flush_request_audit().await;
    let logged = || String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        !logged().contains(&token),
        "the token is in the tracing output"
    );
    let ticket = ticket_of(page.body.as_str().unwrap()).expect("ticket");
    let file = post_form(
        &rig,
        &url,
        &format!("ticket={ticket}&password=owner-chosen-1"),
    )
    .await;
    assert_eq!(file.status, 200, "{file:?}");
    rig.get(&url, None).await;
    rig.state.flush_request_audit().await;
    let text = logged();
    assert!(
        text.contains("[link:"),
        "the access log was captured: {text}"
    );
    assert!(!text.contains(&token), "the token is in the tracing output");
    assert!(
        !text.contains(&ticket),
        "the ticket is in the tracing output"
    );
    rig.finish().await;
}
