//! Prometheus exposition at `/api/v1/metrics/prometheus`: HTTP and
//! operation latency histograms measured here, and inventory gauges
//! (certificates by status, days to expiry, issuance and jobs over the last
//! 30 days) read through the catalogue at scrape time, as the scraper.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use certctl_engine::ops::{self, StatusCounts, TimeSeries};
use serde_json::json;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;

/// Upper bounds (seconds) of the latency buckets.
const BOUNDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BOUNDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BOUNDS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, b) in BOUNDS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                self.buckets[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Measurements of this process.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    ops: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    audit_dropped: AtomicU64,
    /// Requests refused by the per-client limits: public routes, failed auth.
    throttled_public: AtomicU64,
    throttled_failed_auth: AtomicU64,
    /// Shared with the request-audit writer, which counts its failed writes.
    audit_write_failures: std::sync::Arc<AtomicU64>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn observe_http(&self, method: &str, route: &str, status: u16, latency: Duration) {
        if let Ok(mut m) = self.http.lock() {
            m.entry((method.to_owned(), route.to_owned(), status))
                .or_default()
                .observe(latency.as_secs_f64());
        }
    }

    pub fn observe_op(&self, op: &str, outcome: &'static str, latency: Duration) {
        if let Ok(mut m) = self.ops.lock() {
            m.entry((op.to_owned(), outcome))
                .or_default()
                .observe(latency.as_secs_f64());
        }
    }

    /// Counts a request refused by a per-client limit (`public` or `failed_auth`).
    pub fn throttled(&self, limit: &str) {
        let c = if limit == "public" {
            &self.throttled_public
        } else {
            &self.throttled_failed_auth
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn audit_dropped(&self) {
        self.audit_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed attempts to write a batch of `api_request` events (each is
    /// retried until it is written).
    pub fn audit_write_failures(&self) -> u64 {
        self.audit_write_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn audit_write_failure_counter(&self) -> std::sync::Arc<AtomicU64> {
        self.audit_write_failures.clone()
    }

    fn render(&self, out: &mut String) {
        out.push_str("# HELP certctl_http_request_duration_seconds HTTP request latency by method, route template and status.\n");
        out.push_str("# TYPE certctl_http_request_duration_seconds histogram\n");
        if let Ok(m) = self.http.lock() {
            for ((method, route, status), h) in m.iter() {
                let labels = format!(
                    "method=\"{}\",route=\"{}\",status=\"{status}\"",
                    escape(method),
                    escape(route)
                );
                h.render(out, "certctl_http_request_duration_seconds", &labels);
            }
        }
        out.push_str("# HELP certctl_operation_duration_seconds Latency of catalogue operations run over the API (issuance, renewal, revocation, ...), by outcome.\n");
        out.push_str("# TYPE certctl_operation_duration_seconds histogram\n");
        if let Ok(m) = self.ops.lock() {
            for ((op, outcome), h) in m.iter() {
                let labels = format!("operation=\"{}\",outcome=\"{outcome}\"", escape(op));
                h.render(out, "certctl_operation_duration_seconds", &labels);
            }
        }
        out.push_str("# HELP certctl_http_throttled_total Requests refused with 429 by a per-client limit (public routes, failed authentications).\n");
        out.push_str("# TYPE certctl_http_throttled_total counter\n");
        for (limit, c) in [
            ("public", &self.throttled_public),
            ("failed_auth", &self.throttled_failed_auth),
        ] {
            let _ = writeln!(
                out,
                "certctl_http_throttled_total{{limit=\"{limit}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP certctl_api_audit_dropped_total api_request audit events lost because the request audit writer had stopped.\n");
        out.push_str("# TYPE certctl_api_audit_dropped_total counter\n");
        let _ = writeln!(
            out,
            "certctl_api_audit_dropped_total {}",
            self.audit_dropped.load(Ordering::Relaxed)
        );
        out.push_str("# HELP certctl_api_audit_write_failures_total Failed attempts to write a batch of api_request audit events; each batch is retried until it is written.\n");
        out.push_str("# TYPE certctl_api_audit_write_failures_total counter\n");
        let _ = writeln!(
            out,
            "certctl_api_audit_write_failures_total {}",
            self.audit_write_failures()
        );
    }
}

async fn read<T: serde::de::DeserializeOwned>(
    state: &AppState,
    caller: &certctl_engine::domain::Principal,
    op: &str,
    input: serde_json::Value,
) -> Result<T, ApiError> {
    let op = ops::find(op).ok_or_else(|| certctl_engine::Error::internal("operation missing"))?;
    let v = op
        .call_json(&state.engine, caller, input)
        .await?
        .completed()?;
    serde_json::from_value(v).map_err(|e| certctl_engine::Error::internal(e.to_string()).into())
}

/// `GET /api/v1/metrics/prometheus`.
pub async fn prometheus(
    State(state): State<AppState>,
    Caller(p): Caller,
) -> Result<Response, ApiError> {
    let counts: StatusCounts =
        read(&state, &p, "get_stats", json!({ "view": "by_status" })).await?;
    let timeline: TimeSeries = read(
        &state,
        &p,
        "get_stats",
        json!({ "view": "expiration_timeline", "days": 90, "bucket_days": 1 }),
    )
    .await?;
    let issued: TimeSeries = read(
        &state,
        &p,
        "get_stats",
        json!({ "view": "issuance_rate", "days": 30 }),
    )
    .await?;
    let jobs: TimeSeries = read(
        &state,
        &p,
        "get_stats",
        json!({ "view": "job_trends", "days": 30, "bucket_days": 30 }),
    )
    .await?;

    let mut out = String::with_capacity(8192);
    out.push_str("# HELP certctl_certificates Managed certificates by effective status.\n# TYPE certctl_certificates gauge\n");
    for (status, n) in &counts.by_status {
        let _ = writeln!(
            out,
            "certctl_certificates{{status=\"{}\"}} {n}",
            escape(status)
        );
    }
    out.push_str("# HELP certctl_certificate_days_to_expiry Unexpired active certificates by days left before expiry.\n# TYPE certctl_certificate_days_to_expiry histogram\n");
    let active: i64 = ["valid", "expiring"]
        .iter()
        .filter_map(|s| counts.by_status.get(*s).and_then(|v| v.as_i64()))
        .sum();
    let mut cumulative = 0;
    let mut bounds = [1usize, 7, 14, 30, 60, 90].into_iter().peekable();
    for (day, b) in timeline.buckets.iter().enumerate() {
        cumulative += b.count;
        if bounds.peek() == Some(&(day + 1)) {
            let le = bounds.next().unwrap_or_default();
            let _ = writeln!(
                out,
                "certctl_certificate_days_to_expiry_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
    }
    let _ = writeln!(
        out,
        "certctl_certificate_days_to_expiry_bucket{{le=\"+Inf\"}} {active}"
    );
    let _ = writeln!(out, "certctl_certificate_days_to_expiry_count {active}");
    out.push_str("# HELP certctl_certificates_issued_30d Certificate versions issued (issuances and renewals) in the last 30 days.\n# TYPE certctl_certificates_issued_30d gauge\n");
    let _ = writeln!(out, "certctl_certificates_issued_30d {}", issued.total);
    out.push_str("# HELP certctl_jobs_30d Jobs created in the last 30 days by current status.\n# TYPE certctl_jobs_30d gauge\n");
    if let Some(by) = jobs.buckets.first().and_then(|b| b.by_status.as_ref()) {
        for (status, n) in by {
            let _ = writeln!(out, "certctl_jobs_30d{{status=\"{}\"}} {n}", escape(status));
        }
    }
    state.extras.metrics.render(&mut out);
    let mut res = out.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}
