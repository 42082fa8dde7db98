//! What wraps every request: a request id, security headers, CORS (denied
//! unless origins are allowed), an access log line, the `api_request` audit
//! event, HTTP metrics, and per-principal rate limiting (checked right after
//! authentication, in `auth.rs`). Before any of that, the per-client limit
//! of the unauthenticated routes and the request-body deadline
//! (`public_limits.rs`); requests those refuse are audited in aggregate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use certctl_engine::Engine;
use certctl_engine::domain::Principal;
use certctl_engine::request_audit::{ApiRequestRecord, ThrottledRecord};

use crate::public_limits::{ClientLimiter, FailedAuthLimiter, Limit, ThrottleLog, Throttled};
use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::metrics::Metrics;
use crate::problem::Problem;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Tunables of the HTTP face.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Sustained requests per second per principal; 0 turns limiting off.
    pub rate_limit_rps: u32,
    /// Requests a principal may burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Origins allowed to call the API from a browser (CORS); empty denies all.
    pub cors_origins: Vec<String>,
    /// Record every API call in the audit trail (`api_request` events).
    pub audit_requests: bool,
    /// Sustained requests per second per client address on the
    /// unauthenticated routes (OCSP, CRL, export links, EST); 0 turns it off.
    pub public_rate_limit_rps: u32,
    /// Requests a client may burst above that rate.
    pub public_rate_limit_burst: u32,
    /// Failed authentications a client address may make per window before
    /// it is answered 429 without its credentials being tried; 0 turns it off.
    pub failed_auth_limit: u32,
    /// The failed-authentication window, which is also the window of the
    /// aggregated `api_throttled` audit events.
    pub failed_auth_window: Duration,
    /// Time a client has to send a request body once its headers are in.
    pub body_read_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            rate_limit_rps: 200,
            rate_limit_burst: 400,
            cors_origins: Vec::new(),
            audit_requests: true,
            public_rate_limit_rps: 100,
            public_rate_limit_burst: 1000,
            failed_auth_limit: 30,
            failed_auth_window: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

/// Shared runtime pieces of the HTTP face.
#[derive(Debug)]
pub struct Extras {
    pub options: ApiOptions,
    pub limiter: RateLimiter,
    /// Per client address, on the unauthenticated routes.
    pub public_limiter: ClientLimiter,
    /// Failed authentications per client address.
    pub failed_auth: FailedAuthLimiter,
    /// One `api_throttled` event per client, limit and window.
    pub throttle_log: ThrottleLog,
    pub metrics: Metrics,
    audit: Option<mpsc::Sender<AuditMsg>>,
}

impl Extras {
    /// Starts the request-audit writer (on the current tokio runtime).
    pub fn new(engine: Arc<Engine>, options: ApiOptions) -> Self {
        let metrics = Metrics::default();
        let audit = options.audit_requests.then(|| {
            let (tx, rx) = mpsc::channel(16_384);
            tokio::spawn(audit_writer(
                engine,
                rx,
                metrics.audit_write_failure_counter(),
            ));
            tx
        });
        Self {
            limiter: RateLimiter::new(options.rate_limit_rps, options.rate_limit_burst),
            public_limiter: ClientLimiter::new(
                options.public_rate_limit_rps,
                options.public_rate_limit_burst,
            ),
            failed_auth: FailedAuthLimiter::new(
                options.failed_auth_limit,
                options.failed_auth_window,
            ),
            throttle_log: ThrottleLog::new(options.failed_auth_window),
            metrics,
            options,
            audit,
        }
    }

    /// Waits until every request audited so far is written.
    pub async fn flush(&self) {
        if let Some(tx) = &self.audit {
            let (done, wait) = oneshot::channel();
            if tx.send(AuditMsg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }

    /// Queues a request's event. When the queue is full the request waits
    /// for room before it is answered (back-pressure on the callers), so a
    /// burst slows down rather than losing its audit trail; an event is only
    /// lost when the writer has stopped.
    async fn record(&self, r: ApiRequestRecord) {
        self.queue(AuditMsg::Record(Box::new(r))).await;
    }

    /// Counts a request a client limit refused; the first of its window
    /// queues an `api_throttled` event standing for those since the last.
    async fn throttled(&self, t: &Throttled, at: certctl_engine::clock::UnixTime) {
        self.metrics.throttled(t.limit.as_str());
        let Some(count) = self.throttle_log.refused(t.limit, &t.client) else {
            return;
        };
        tracing::warn!(client = %t.client, limit = t.limit.as_str(), count, "client throttled");
        if self.options.audit_requests {
            self.queue(AuditMsg::Throttled(ThrottledRecord {
                at,
                client: t.client.clone(),
                limit: t.limit.as_str().to_owned(),
                count,
                window_seconds: self.throttle_log.window().as_secs(),
            }))
            .await;
        }
    }

    async fn queue(&self, m: AuditMsg) {
        let Some(tx) = &self.audit else { return };
        let sent = match tx.try_send(m) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m)) => tx.send(m).await.map_err(|_| ()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        if sent.is_err() {
            self.metrics.audit_dropped();
            tracing::warn!(
                "the request audit writer has stopped; an api_request event was dropped"
            );
        }
    }
}

enum AuditMsg {
    Record(Box<ApiRequestRecord>),
    Throttled(ThrottledRecord),
    Flush(oneshot::Sender<()>),
}

/// The first wait before a failed batch of request events is written
/// again; it doubles after each failure, up to [`AUDIT_RETRY_MAX`].
const AUDIT_RETRY_FIRST: Duration = Duration::from_millis(50);
const AUDIT_RETRY_MAX: Duration = Duration::from_secs(2);

/// Writes request events in batches: one transaction per batch. A batch
/// that cannot be written (the database is restarting, a lock timed out) is
/// retried until it is, with a growing wait, rather than dropped: requests
/// were answered before their events were written, so the trail is the
/// only record they have. Meanwhile the queue fills and new requests wait
/// for room (see [`Extras::record`]).
async fn audit_writer(
    engine: Arc<Engine>,
    mut rx: mpsc::Receiver<AuditMsg>,
    failures: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut batch = Vec::with_capacity(512);
    let mut throttled = Vec::new();
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                AuditMsg::Record(r) => batch.push(*r),
                AuditMsg::Throttled(t) => throttled.push(t),
                AuditMsg::Flush(w) => waiters.push(w),
            }
            if batch.len() < 512 {
                next = rx.try_recv().ok();
            }
        }
        let mut wait = AUDIT_RETRY_FIRST;
        while let Err(e) = engine.record_api_requests(&batch).await {
            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                error = ?e,
                events = batch.len(),
                retry_in_ms = wait.as_millis() as u64,
                "could not write api_request audit events; retrying"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(AUDIT_RETRY_MAX);
        }
        batch.clear();
        let mut wait = AUDIT_RETRY_FIRST;
        while let Err(e) = engine.record_throttled(&throttled).await {
            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = ?e, "could not write api_throttled audit events; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(AUDIT_RETRY_MAX);
        }
        throttled.clear();
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Where the auth middleware leaves the principal for the outer layer.
#[derive(Clone, Default)]
pub struct PrincipalSlot(Arc<Mutex<Option<Principal>>>);

impl PrincipalSlot {
    pub fn set(&self, p: Principal) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(p);
        }
    }

    fn take(&self) -> Option<Principal> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// The matched route template, copied onto the response for the outer layer.
#[derive(Clone)]
struct RouteTemplate(String);

/// Inner layer (after routing): remembers which route matched.
pub async fn remember_route(req: Request, next: Next) -> Response {
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut res = next.run(req).await;
    if let Some(t) = template {
        res.extensions_mut().insert(RouteTemplate(t));
    }
    res
}

fn request_id(req: &Request) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let mut b = [0u8; 12];
            // A failing RNG leaves zeros: still an id, only not unique.
            let _ = aws_lc_rs::rand::fill(&mut b);
            format!("req-{}", hex::encode(b))
        })
}

/// The routes anyone may call without credentials, which the per-client
/// limit covers (`/health` and `/ready` stay unlimited for probes).
fn is_public_route(path: &str) -> bool {
    [
        "/api/v1/ocsp/",
        "/api/v1/crl/",
        "/api/v1/exports/",
        "/.well-known/est/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// The client's key for the per-client limits; `None` when the request did
/// not come through certctl's listener (in-process tests).
pub(crate) fn client_of(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| crate::public_limits::client_key(c.0))
}

/// Outer layer: per-client limit of public routes, body deadline, request
/// id, body hash, access log, audit, metrics, headers.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let at = state.engine.now();
    let id = request_id(&req);
    let method = req.method().as_str().to_owned();
    let path = loggable_path(req.uri().path());
    if is_public_route(&path)
        && let Some(client) = client_of(&req)
        && let Some(wait) = state.extras.public_limiter.check(&client)
    {
        let detail = format!(
            "this client sends more than {} requests per second to unauthenticated routes",
            state.extras.public_limiter.rps()
        );
        let res = crate::public_limits::too_many(Limit::Public, &client, wait, &detail);
        return throttled(&state, res, at, id).await;
    }
    let audited = state.extras.options.audit_requests
        && (path.starts_with("/api/") || path.starts_with("/mcp"));
    let slot = PrincipalSlot::default();
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(slot.clone());
    // The body is read here, under the size limit and the read deadline (a
    // client trickling a body cannot hold a handler), hashed when audited,
    // then handed on.
    let read = tokio::time::timeout(
        state.extras.options.body_read_timeout,
        axum::body::to_bytes(body, crate::MAX_BODY_BYTES),
    )
    .await;
    let (body_sha256, body) = {
        match read {
            Err(_) => {
                let mut res = Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    "Request timeout",
                    format!(
                        "the request body did not arrive within {} s",
                        state.extras.options.body_read_timeout.as_secs_f64()
                    ),
                )
                .into_response();
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return finish(res, id);
            }
            Ok(Ok(bytes)) => (
                if audited {
                    hex::encode(aws_lc_rs::digest::digest(
                        &aws_lc_rs::digest::SHA256,
                        &bytes,
                    ))
                } else {
                    String::new()
                },
                Body::from(bytes),
            ),
            Ok(Err(_)) => {
                let res = Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    "Payload too large",
                    format!(
                        "the request body is larger than {} bytes",
                        crate::MAX_BODY_BYTES
                    ),
                )
                .into_response();
                return finish(res, id);
            }
        }
    };
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if res.extensions().get::<Throttled>().is_some() {
        return throttled(&state, res, at, id).await;
    }
    let status = res.status().as_u16();
    let route = res
        .extensions_mut()
        .remove::<RouteTemplate>()
        .map(|t| t.0)
        .unwrap_or_else(|| "unmatched".into());
    let latency = started.elapsed();
    let principal = slot.take();
    state
        .extras
        .metrics
        .observe_http(&method, &route, status, latency);
    tracing::info!(
        target: "certctl::access",
        request_id = %id,
        method = %method,
        path = %path,
        route = %route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        principal = principal.as_ref().map(|p| p.id.as_str()).unwrap_or("-"),
        "request"
    );
    if audited {
        state
            .extras
            .record(ApiRequestRecord {
                at,
                request_id: id.clone(),
                method,
                path,
                principal,
                body_sha256,
                status,
                latency_ms: (latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            })
            .await;
    }
    finish(res, id)
}

/// Where export links live; the segment after it is the link's token.
const EXPORT_LINK_PATH: &str = "/api/v1/exports/";

/// The request path as the access log and the `api_request` audit event
/// record it. An export link's token is a credential (whoever holds it
/// downloads the file), so it is replaced by its link id, the hash prefix
/// the engine's audit events name the link by. This is the one place the
/// face turns a path into a record; metrics use route templates.
pub(crate) fn loggable_path(path: &str) -> String {
    match path.strip_prefix(EXPORT_LINK_PATH) {
        Some(rest) => {
            let token = rest.split('/').next().unwrap_or(rest);
            format!(
                "{EXPORT_LINK_PATH}[link:{}]",
                certctl_engine::ops::export_link_id(token)
            )
        }
        None => path.to_owned(),
    }
}

/// A request a client limit refused: counted and audited in aggregate
/// (no `api_request` event of its own), logged at debug level only.
async fn throttled(
    state: &AppState,
    res: Response,
    at: certctl_engine::clock::UnixTime,
    id: String,
) -> Response {
    if let Some(t) = res.extensions().get::<Throttled>() {
        tracing::debug!(target: "certctl::access", request_id = %id, client = %t.client,
            limit = t.limit.as_str(), "throttled");
        state.extras.throttled(t, at).await;
    }
    finish(res, id)
}

fn finish(mut res: Response, id: String) -> Response {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert(REQUEST_ID, v);
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

// ---------------------------------------------------------------- rate limiting

/// A token bucket per principal.
#[derive(Debug)]
pub struct RateLimiter {
    rps: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rps: u32, burst: u32) -> Self {
        Self {
            rps: f64::from(rps),
            burst: f64::from(burst.max(rps).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when the principal may go on; a 429 problem with Retry-After otherwise.
    pub fn check(&self, principal_id: &str) -> Option<Response> {
        if self.rps <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let wait = {
            let mut buckets = self.buckets.lock().ok()?;
            if buckets.len() > 100_000 {
                // Forget idle principals rather than grow without bound.
                buckets.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
            }
            let (tokens, last) = buckets
                .entry(principal_id.to_owned())
                .or_insert((self.burst, now));
            *tokens =
                (*tokens + now.duration_since(*last).as_secs_f64() * self.rps).min(self.burst);
            *last = now;
            if *tokens >= 1.0 {
                *tokens -= 1.0;
                return None;
            }
            (1.0 - *tokens) / self.rps
        };
        let secs = wait.ceil().max(1.0) as u64;
        let mut res = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!(
                "this principal sends more than {} requests per second; retry in {secs} s",
                self.rps
            ),
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        Some(res)
    }
}

// ---------------------------------------------------------------- CORS

/// The CORS layer: no layer at all (browsers refuse cross-origin calls) when
/// no origin is allowed.
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(list)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::PUT,
                axum::http::Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
            .expose_headers([REQUEST_ID, header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_link_tokens_never_reach_a_logged_path() {
        let token = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5";
        let logged = loggable_path(&format!("/api/v1/exports/{token}"));
        assert!(!logged.contains(token), "{logged}");
        assert_eq!(
            logged,
            format!(
                "/api/v1/exports/[link:{}]",
                certctl_engine::ops::export_link_id(token)
            )
        );
        let trailing = loggable_path(&format!("/api/v1/exports/{token}/extra"));
        assert!(!trailing.contains(token), "{trailing}");
        assert_eq!(
            loggable_path("/api/v1/certificates"),
            "/api/v1/certificates"
        );
    }

    #[test]
    fn the_bucket_refills_and_refuses_with_retry_after() {
        let l = RateLimiter::new(1, 2);
        assert!(l.check("a").is_none());
        assert!(l.check("a").is_none());
        let res = l
            .check("a")
            .expect("third call in a burst of two is limited");
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert!(l.check("b").is_none(), "buckets are per principal");
        assert!(
            RateLimiter::new(0, 0).check("a").is_none(),
            "0 turns limiting off"
        );
    }
}
