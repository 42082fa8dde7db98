//! Security and operations around every request: request ids, security
//! headers, CORS, rate limits, JWT authentication (HS256 and RS256), the
//! `api_request` audit trail and the Prometheus exposition.

use axum::body::Body;
use axum::http::{Method, Request};
use certctl_api::jwt::{JwtKey, JwtVerifier};
use certctl_api::{ApiOptions, AppState, AuthMode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(
    every_call_is_audited_once_with_its_body_hash,
    a_request_event_that_cannot_be_written_is_retried_until_it_is,
    metrics_exposition
);

/// The `api_request` event of the request with this id, once every finished
/// request's event is written.
async fn request_event(rig: &Rig, request_id: &str) -> serde_json::Value {
    rig.state.flush_request_audit().await;
    let events = rig
        .get(
            "/api/v1/audit?action=api_request&per_page=100",
            Some(&rig.admin_key),
        )
        .await;
    events.body["data"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["details"]["request_id"] == request_id)
        .cloned()
        .unwrap_or_else(|| panic!("no api_request event for {request_id}: {events:?}"))
}

fn req(method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_owned())).expect("request")
}

#[tokio::test]
async fn request_ids_and_security_headers() {
    let rig = Rig::new().await;
    let auth = format!("Bearer {}", rig.admin_key);
    let r = rig
        .send_via(
            &rig.router,
            req(
                Method::GET,
                "/api/v1/certificates",
                &[("authorization", &auth), ("x-request-id", "trace-42")],
                "",
            ),
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "trace-42");
    for (h, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(r.headers[h], v, "{h}");
    }
    // Generated when absent or unusable; errors carry them too.
    let r = rig
        .send_via(
            &rig.router,
            req(
                Method::GET,
                "/api/v1/nope",
                &[("x-request-id", "bad id with spaces")],
                "",
            ),
        )
        .await;
    let id = r.headers["x-request-id"].to_str().unwrap();
    assert!(id.starts_with("req-") && id.len() > 10, "{id}");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    rig.finish().await;
}

#[tokio::test]
async fn cors_is_denied_unless_the_origin_is_allowed() {
    let rig = Rig::new().await;
    let preflight = |origin: &str| {
        req(
            Method::OPTIONS,
            "/api/v1/certificates",
            &[("origin", origin), ("access-control-request-method", "GET")],
            "",
        )
    };
    let r = rig
        .send_via(&rig.router, preflight("https://evil.example"))
        .await;
    assert!(
        r.headers.get("access-control-allow-origin").is_none(),
        "{r:?}"
    );
    let options = ApiOptions {
        cors_origins: vec!["https://dash.example".into()],
        ..Default::default()
    };
    let router = certctl_api::app(AppState::with_options(rig.engine.clone(), options));
    let r = rig
        .send_via(&router, preflight("https://dash.example"))
        .await;
    assert_eq!(
        r.headers["access-control-allow-origin"],
        "https://dash.example"
    );
    let r = rig
        .send_via(&router, preflight("https://evil.example"))
        .await;
    assert!(r.headers.get("access-control-allow-origin").is_none());
    rig.finish().await;
}

#[tokio::test]
async fn rate_limits_are_per_principal_with_retry_after() {
    let rig = Rig::new().await;
    let options = ApiOptions {
        rate_limit_rps: 1,
        rate_limit_burst: 3,
        ..Default::default()
    };
    let router = certctl_api::app(AppState::with_options(rig.engine.clone(), options));
    let viewer = format!("Bearer {}", rig.key("viewer").await);
    let admin = format!("Bearer {}", rig.admin_key);
    let get = |auth: &str| req(Method::GET, "/api/v1/teams", &[("authorization", auth)], "");
    for _ in 0..3 {
        assert_eq!(rig.send_via(&router, get(&viewer)).await.status, 200);
    }
    let limited = rig.send_via(&router, get(&viewer)).await;
    limited.assert_problem(429, "rate-limited");
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(
        rig.send_via(&router, get(&admin)).await.status,
        200,
        "another principal has its own bucket"
    );
    rig.finish().await;
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn far() -> i64 {
    4_000_000_000
}

#[tokio::test]
async fn jwt_hs256_and_rs256() {
    let rig = Rig::new().await;
    let hs = JwtVerifier::new(
        JwtKey::Hs256(SECRET.as_bytes().to_vec()),
        "https://idp.example",
        "certctl",
    )
    .unwrap();
    let router = certctl_api::app(AppState::new(rig.engine.clone()).auth(AuthMode::Jwt(hs.into())));
    let claims = |role: &str| json!({"sub": "alice", "role": role, "iss": "https://idp.example", "aud": "certctl", "exp": far()});
    let sign = |c: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let call = |token: String, method: Method, uri: &str, body: &str| {
        req(
            method,
            uri,
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/json"),
            ],
            body,
        )
    };
    let r = rig
        .send_via(
            &router,
            call(
                sign(claims("viewer")),
                Method::GET,
                "/api/v1/certificates",
                "",
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = rig
        .send_via(
            &router,
            call(
                sign(claims("viewer")),
                Method::POST,
                "/api/v1/teams",
                r#"{"name":"x"}"#,
            ),
        )
        .await;
    r.assert_problem(403, "forbidden");
    let r = rig
        .send_via(
            &router,
            call(
                sign(claims("operator")),
                Method::POST,
                "/api/v1/teams",
                r#"{"name":"x"}"#,
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let mut wrong_aud = claims("admin");
    wrong_aud["aud"] = "other".into();
    rig.send_via(
        &router,
        call(sign(wrong_aud), Method::GET, "/api/v1/teams", ""),
    )
    .await
    .assert_problem(401, "unauthenticated");
    // An API key is not a JWT.
    rig.send_via(
        &router,
        call(rig.admin_key.clone(), Method::GET, "/api/v1/teams", ""),
    )
    .await
    .assert_problem(401, "unauthenticated");

    // RS256 with a key pair made by openssl.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .status();
    match status {
        Ok(s) if s.success() => {}
        other if std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() == Ok("1") => {
            panic!("openssl is required: {other:?}")
        }
        other => {
            eprintln!("SKIPPED RS256: openssl not available ({other:?})");
            return;
        }
    }
    let public = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let rs = JwtVerifier::new(JwtKey::Rs256Pem(public), "https://idp.example", "certctl").unwrap();
    let router = certctl_api::app(AppState::new(rig.engine.clone()).auth(AuthMode::Jwt(rs.into())));
    let private = std::fs::read(&key).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims("admin"),
        &EncodingKey::from_rsa_pem(&private).unwrap(),
    )
    .unwrap();
    let r = rig
        .send_via(&router, call(token, Method::GET, "/api/v1/principals", ""))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // An HS256 token signed with the public key (algorithm confusion) is refused.
    rig.send_via(
        &router,
        call(sign(claims("admin")), Method::GET, "/api/v1/principals", ""),
    )
    .await
    .assert_problem(401, "unauthenticated");
    rig.finish().await;
}

async fn every_call_is_audited_once_with_its_body_hash(rig: &Rig) {
    let body = r#"{"name":"audited"}"#;
    let auth = format!("Bearer {}", rig.admin_key);
    let r = rig
        .send_via(
            &rig.router,
            req(
                Method::POST,
                "/api/v1/teams",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-request-id", "audit-1"),
                ],
                body,
            ),
        )
        .await;
    assert_eq!(r.status, 201);
    let anon = rig
        .send_via(
            &rig.router,
            req(
                Method::GET,
                "/api/v1/teams",
                &[("x-request-id", "audit-2")],
                "",
            ),
        )
        .await;
    assert_eq!(anon.status, 401);
    let e = request_event(rig, "audit-1").await;
    assert_eq!(e["actor"], rig.admin.id.as_str());
    assert_eq!(e["details"]["method"], "POST");
    assert_eq!(e["details"]["path"], "/api/v1/teams");
    assert_eq!(e["details"]["status"], 201);
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        body.as_bytes(),
    ));
    assert_eq!(e["details"]["body_sha256"], sha.as_str());
    assert!(e["details"]["latency_ms"].as_f64().is_some());
    let e = request_event(rig, "audit-2").await;
    assert_eq!(
        (e["actor"].as_str(), e["outcome"].as_str()),
        (Some("anonymous"), Some("denied"))
    );
    // The operation itself is audited once, by the engine, as save_team.
    let creates = rig
        .get("/api/v1/audit?action=save_team", Some(&rig.admin_key))
        .await;
    assert_eq!(creates.body["data"].as_array().unwrap().len(), 1);
    let chain = rig.get("/api/v1/audit/verify", Some(&rig.admin_key)).await;
    assert_eq!(chain.body["valid"], true);
}

async fn metrics_exposition(rig: &Rig) {
    rig.issued_certificate("metrics.example.com").await;
    let cert = rig.issued_certificate("renew.example.com").await;
    let k = Some(rig.admin_key.as_str());
    rig.post(&format!("/api/v1/certificates/{cert}/renew"), k, "")
        .await;
    let r = rig.get("/api/v1/metrics/prometheus", k).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.body.as_str().expect("text");
    for needle in [
        "certctl_certificates{status=\"valid\"}",
        "certctl_certificate_days_to_expiry_bucket{le=\"+Inf\"} 2",
        "certctl_certificates_issued_30d 2",
        "certctl_jobs_30d{status=\"awaiting_csr\"} 1",
        "certctl_operation_duration_seconds_count{operation=\"renew_certificate\",outcome=\"completed\"} 1",
        "# TYPE certctl_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    let again = rig.get("/api/v1/metrics/prometheus", k).await;
    let text = again.body.as_str().unwrap();
    assert!(
        text.contains("certctl_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/metrics/prometheus\",status=\"200\"} 1"),
        "{text}"
    );
}

/// The request audit writer does not drop a batch the database refuses: a
/// trigger makes every audit insert fail, a request is answered, its event
/// fails to be written (counted in the metrics), the trigger goes, and the
/// event is written by a later attempt.
async fn a_request_event_that_cannot_be_written_is_retried_until_it_is(rig: &Rig) {
    let postgres = rig.engine.store().backend() == certctl_engine::store::Backend::Postgres;
    if postgres {
        rig.sql(&[
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'audit writes refused by the test'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             FOR EACH STATEMENT EXECUTE FUNCTION refuse_audit()",
        ])
        .await;
    } else {
        rig.sql(
            &["CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit writes refused by the test'); END"],
        )
        .await;
    }
    let before = rig.state.extras.metrics.audit_write_failures();
    // Unauthenticated: answered 401 with no operation, so the request's own
    // event is the only write it causes.
    let r = rig
        .send_via(
            &rig.router,
            req(
                Method::GET,
                "/api/v1/teams",
                &[("x-request-id", "refused-at-first")],
                "",
            ),
        )
        .await;
    assert_eq!(r.status, 401);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rig.state.extras.metrics.audit_write_failures() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never tried to write the event"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    if postgres {
        rig.sql(&[
            "DROP TRIGGER refuse_audit ON audit_events",
            "DROP FUNCTION refuse_audit()",
        ])
        .await;
    } else {
        rig.sql(&["DROP TRIGGER refuse_audit"]).await;
    }
    let e = request_event(rig, "refused-at-first").await;
    assert_eq!(e["details"]["status"], 401);
    let v = rig.get("/api/v1/audit/verify", Some(&rig.admin_key)).await;
    assert_eq!(v.body["valid"], true, "{v:?}");
}
