//! Issue 17, point 10: unauthenticated endpoints doing unbounded work. The
//! attacker is anonymous on the network: it asks OCSP about made-up
//! serials, floods the API with bad keys, and holds connections open by
//! trickling headers or never finishing a body. Each must cost the server a
//! bounded amount of memory, audit rows and connection time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use certctl_api::{ApiOptions, AppState, ServerTimeouts};
use certctl_engine::store::AuditFilter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(
    ocsp_for_unknown_serials_leaves_the_cache_alone,
    a_failed_auth_flood_is_throttled_and_audited_in_bounded_form,
);

fn random_serial() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("rng");
    b[0] &= 0x7f;
    hex::encode(b)
}

async fn ocsp_for_unknown_serials_leaves_the_cache_alone(rig: &Rig) {
    let before = rig.engine.ocsp_cache_len();
    for _ in 0..1000 {
        let uri = format!("/api/v1/ocsp/iss-local/{}", random_serial());
        let r = rig.send(Method::GET, &uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(
        rig.engine.ocsp_cache_len(),
        before,
        "unknown serials cached"
    );
    // The refresh loop has nothing of theirs to re-sign either.
    rig.engine.refresh_revocation_data().await.expect("refresh");
    assert_eq!(rig.engine.ocsp_cache_len(), before);
    // A serial the issuer issued is still cached (the cache works).
    let id = rig.issued_certificate("ocsp.example.com").await;
    let serial = rig
        .op("get_certificate", serde_json::json!({ "id": id }))
        .await["certificate"]["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    let r = rig
        .send(
            Method::GET,
            &format!("/api/v1/ocsp/iss-local/{serial}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(rig.engine.ocsp_cache_len(), before + 1);
}

fn from(addr: &str, key: &str) -> Request<Body> {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri("/api/v1/teams")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .expect("request");
    let addr: SocketAddr = addr.parse().expect("addr");
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn a_failed_auth_flood_is_throttled_and_audited_in_bounded_form(rig: &Rig) {
    // The defaults: 30 failures per client per minute.
    let router = rig.router.clone();
    let mut statuses = Vec::new();
    for i in 0..300 {
        let key = format!("cck_guess{i:040}");
        let res = router
            .clone()
            .oneshot(from("192.0.2.7:40000", &key))
            .await
            .expect("infallible");
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = res.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse()
                .expect("seconds");
            assert!((1..=60).contains(&retry), "{retry}");
        }
        statuses.push(res.status().as_u16());
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert!(unauthorized <= 30, "{unauthorized} failures tried");
    assert_eq!(unauthorized + throttled, 300, "{statuses:?}");
    // Even the right key waits out the window from that client; another
    // client is not punished for the flood (an IPv4-mapped peer counts as
    // its IPv4 address, so it is the same client).
    let res = router
        .clone()
        .oneshot(from("[::ffff:192.0.2.7]:1", &rig.admin_key))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = router
        .clone()
        .oneshot(from("198.51.100.9:40000", &rig.admin_key))
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    // Audited in bounded form: one row per tried failure, one aggregated
    // event for the refusals, and a chain that still verifies.
    rig.state.flush_request_audit().await;
    let events = rig
        .store
        .list_audit(&AuditFilter::default(), 10_000)
        .await
        .expect("audit");
    let requests = events
        .iter()
        .filter(|e| e.action == "api_request" && e.details["path"] == "/api/v1/teams")
        .count();
    let throttled_events: Vec<_> = events
        .iter()
        .filter(|e| e.action == "api_throttled")
        .collect();
    assert!(requests <= 31, "{requests} api_request rows");
    assert_eq!(throttled_events.len(), 1, "{throttled_events:?}");
    assert_eq!(throttled_events[0].details["client"], "192.0.2.7");
    assert_eq!(throttled_events[0].details["limit"], "failed_auth");
    let v = rig.store.verify_audit_chain().await.expect("verify");
    assert!(v.valid, "{v:?}");
}

/// A real server on port 0 with short timeouts.
async fn server(options: ApiOptions, timeouts: ServerTimeouts) -> (Rig, SocketAddr, AppState) {
    let rig = Rig::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = AppState::with_options(rig.engine.clone(), options);
    let app = certctl_api::app(state.clone());
    tokio::spawn(certctl_api::run_with(
        listener,
        app,
        timeouts,
        std::future::pending(),
    ));
    (rig, addr, state)
}

/// Whether the server closed the connection (a read of 0 bytes or a reset)
/// within `within`; whatever it answered is returned too.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut seen = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (false, String::from_utf8_lossy(&seen).into_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_connection_is_closed_within_the_header_timeout() {
    let header_read = Duration::from_millis(500);
    let (rig, addr, state) = server(
        ApiOptions::default(),
        ServerTimeouts {
            header_read,
            ..Default::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let mut closed = false;
    // One byte at a time, each followed by a bounded wait on the socket (no
    // sleep): a server without a header deadline waits forever.
    for b in request.iter().chain(std::iter::repeat(&b'a')) {
        if stream.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let (c, _) = closed_within(&mut stream, Duration::from_millis(50)).await;
        if c {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(
        took >= header_read && took < header_read + Duration::from_secs(2),
        "closed after {took:?}"
    );
    state.flush_request_audit().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_speaks_is_closed() {
    let header_read = Duration::from_millis(300);
    let (rig, addr, state) = server(
        ApiOptions::default(),
        ServerTimeouts {
            header_read,
            ..Default::default()
        },
    )
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (closed, _) = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "an idle connection was kept");
    state.flush_request_audit().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_completes_is_cut_off() {
    let options = ApiOptions {
        body_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (rig, addr, state) = server(options, ServerTimeouts::default()).await;
    for path in ["/api/v1/ocsp/iss-local", "/.well-known/est/simpleenroll"] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\n\
             Content-Length: 1000\r\n\r\n0123456789"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let started = Instant::now();
        let (closed, answer) = closed_within(&mut stream, Duration::from_secs(5)).await;
        assert!(closed, "{path}: the server still waits for the body");
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
    }
    state.flush_request_audit().await;
    rig.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_are_rate_limited_per_client() {
    let options = ApiOptions {
        public_rate_limit_rps: 1,
        public_rate_limit_burst: 5,
        ..Default::default()
    };
    let (rig, addr, state) = server(options, ServerTimeouts::default()).await;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = client
            .get(format!(
                "http://{addr}/api/v1/ocsp/iss-local/{}",
                random_serial()
            ))
            .send()
            .await
            .expect("send");
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
    // Health probes are not limited.
    let r = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    state.flush_request_audit().await;
    rig.finish().await;
}
