//! The resource routes of `/api/v1`, as data: each route names the catalogue
//! operation it mirrors, where its input comes from and the status of a
//! completed call. One generic handler runs them all through the engine, so
//! every route authorizes, gates and audits the same way; the OpenAPI
//! document and the parity test read the same table.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use certctl_engine::ops::{self, Outcome};
use serde_json::{Map, Value};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, invalid_request};
use crate::query;

/// The HTTP methods resource routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

/// Where a route's input comes from, besides the `{id}` path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The query string (reads and lists).
    Query,
    /// A JSON object body (writes); empty means `{}`.
    Body,
}

/// One resource route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Verb,
    /// Path under `/api/v1`, axum syntax (`/certificates/{id}`).
    pub path: &'static str,
    /// The catalogue operation it runs.
    pub op: &'static str,
    /// The input field the `{id}` segment fills.
    pub id_field: Option<&'static str>,
    pub source: Source,
    /// Status of a completed call (a gated one answers 202).
    pub done: StatusCode,
    /// OpenAPI tag.
    pub tag: &'static str,
    /// An input field the route sets itself: the `kind` of an operation over
    /// several kinds (`GET /owners/{id}` is `get_object` with `kind: owner`),
    /// or the `view` of `get_stats`. The caller may not give it.
    pub fixed: Option<(&'static str, &'static str)>,
}

impl Route {
    /// This route with `field` set to `value` by the route.
    const fn with(self, field: &'static str, value: &'static str) -> Self {
        Self {
            fixed: Some((field, value)),
            ..self
        }
    }
}

const fn r(
    method: Verb,
    path: &'static str,
    op: &'static str,
    id_field: Option<&'static str>,
    source: Source,
    done: StatusCode,
    tag: &'static str,
) -> Route {
    Route {
        method,
        path,
        op,
        id_field,
        source,
        done,
        tag,
        fixed: None,
    }
}

const ID: Option<&str> = Some("id");
const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;
const ACCEPTED: StatusCode = StatusCode::ACCEPTED;
use Source::{Body, Query};
use Verb::{Delete, Get, Post, Put};

/// List, create, get, update and delete of one resource.
macro_rules! crud {
    ($base:literal, $tag:literal, $list:literal, $create:literal, $get:literal, $update:literal, $delete:literal) => {
        [
            r(Get, $base, $list, None, Query, OK, $tag),
            r(Post, $base, $create, None, Body, CREATED, $tag),
            r(Get, concat!($base, "/{id}"), $get, ID, Query, OK, $tag),
            r(Put, concat!($base, "/{id}"), $update, ID, Body, OK, $tag),
            r(Delete, concat!($base, "/{id}"), $delete, ID, Body, OK, $tag),
        ]
    };
}

/// List, create, get, update and delete of a kind that `list_objects`,
/// `get_object` and `delete_object` serve, saved by its own `save_` operation.
macro_rules! crud_kind {
    ($base:literal, $tag:literal, $kind:literal, $save:literal) => {
        [
            r(Get, $base, "list_objects", None, Query, OK, $tag).with("kind", $kind),
            r(Post, $base, $save, None, Body, CREATED, $tag),
            r(
                Get,
                concat!($base, "/{id}"),
                "get_object",
                ID,
                Query,
                OK,
                $tag,
            )
            .with("kind", $kind),
            r(Put, concat!($base, "/{id}"), $save, ID, Body, OK, $tag),
            r(
                Delete,
                concat!($base, "/{id}"),
                "delete_object",
                ID,
                Body,
                OK,
                $tag,
            )
            .with("kind", $kind),
        ]
    };
}

/// `GET` of one object of a kind through `get_object`.
const fn get_kind(path: &'static str, kind: &'static str, tag: &'static str) -> Route {
    r(Get, path, "get_object", ID, Query, OK, tag).with("kind", kind)
}

/// `GET` of a kind's list through `list_objects`.
const fn list_kind(path: &'static str, kind: &'static str, tag: &'static str) -> Route {
    r(Get, path, "list_objects", None, Query, OK, tag).with("kind", kind)
}

/// `DELETE` of one object of a kind through `delete_object`.
const fn delete_kind(path: &'static str, kind: &'static str, tag: &'static str) -> Route {
    r(Delete, path, "delete_object", ID, Body, OK, tag).with("kind", kind)
}

/// `GET` of one statistics view through `get_stats`.
const fn stats(path: &'static str, view: &'static str) -> Route {
    r(Get, path, "get_stats", None, Query, OK, "stats").with("view", view)
}

/// Every resource route, grouped by resource.
pub fn routes() -> Vec<Route> {
    let mut v = Vec::new();
    // Certificates and their lifecycle (DELETE archives: history is kept).
    v.extend(crud!(
        "/certificates",
        "certificates",
        "list_certificates",
        "create_certificate",
        "get_certificate",
        "update_certificate",
        "archive_certificate"
    ));
    v.extend([
        r(
            Post,
            "/certificates/{id}/issue",
            "issue_certificate",
            ID,
            Body,
            OK,
            "certificates",
        ),
        r(
            Post,
            "/certificates/{id}/renew",
            "renew_certificate",
            ID,
            Body,
            ACCEPTED,
            "certificates",
        ),
        r(
            Post,
            "/certificates/{id}/revoke",
            "revoke_certificate",
            ID,
            Body,
            OK,
            "certificates",
        ),
    ]);
    v.extend([
        r(Get, "/issuers", "list_issuers", None, Query, OK, "issuers"),
        r(
            Post,
            "/issuers",
            "create_issuer",
            None,
            Body,
            CREATED,
            "issuers",
        ),
        get_kind("/issuers/{id}", "issuer", "issuers"),
        r(
            Put,
            "/issuers/{id}",
            "update_issuer",
            ID,
            Body,
            OK,
            "issuers",
        ),
        delete_kind("/issuers/{id}", "issuer", "issuers"),
        r(Get, "/targets", "list_targets", None, Query, OK, "targets"),
        r(
            Post,
            "/targets",
            "save_target",
            None,
            Body,
            CREATED,
            "targets",
        ),
        get_kind("/targets/{id}", "target", "targets"),
        r(Put, "/targets/{id}", "save_target", ID, Body, OK, "targets"),
        delete_kind("/targets/{id}", "target", "targets"),
    ]);
    v.extend(crud_kind!("/owners", "owners", "owner", "save_owner"));
    v.extend(crud_kind!("/teams", "teams", "team", "save_team"));
    v.extend(crud_kind!(
        "/profiles",
        "profiles",
        "profile",
        "save_profile"
    ));
    v.extend(crud_kind!("/policies", "policies", "policy", "save_policy"));
    v.extend(crud_kind!(
        "/renewal-policies",
        "renewal-policies",
        "renewal_policy",
        "save_renewal_policy"
    ));
    // Agents: registration by admins; heartbeat, work and CSRs by the agent itself.
    v.extend([
        r(Get, "/agents", "list_agents", None, Query, OK, "agents"),
        r(
            Post,
            "/agents",
            "register_agent",
            None,
            Body,
            CREATED,
            "agents",
        ),
        get_kind("/agents/{id}", "agent", "agents"),
        r(Put, "/agents/{id}", "update_agent", ID, Body, OK, "agents"),
        r(
            Delete,
            "/agents/{id}",
            "disable_agent",
            ID,
            Body,
            OK,
            "agents",
        ),
        r(
            Post,
            "/agents/{id}/heartbeat",
            "agent_heartbeat",
            ID,
            Body,
            OK,
            "agents",
        ),
        r(
            Get,
            "/agents/{id}/work",
            "get_agent_work",
            ID,
            Query,
            OK,
            "agents",
        ),
        r(
            Post,
            "/agents/{id}/csr",
            "submit_agent_csr",
            ID,
            Body,
            OK,
            "agents",
        ),
    ]);
    v.extend([
        r(Get, "/jobs", "list_jobs", None, Query, OK, "jobs"),
        get_kind("/jobs/{id}", "job", "jobs"),
        r(
            Post,
            "/jobs/{id}/cancel",
            "cancel_job",
            ID,
            Body,
            OK,
            "jobs",
        ),
        r(
            Post,
            "/issuers/{id}/test",
            "test_issuer",
            ID,
            Body,
            OK,
            "issuers",
        ),
        r(
            Post,
            "/jobs/{id}/approve",
            "approve_job",
            ID,
            Body,
            OK,
            "jobs",
        ),
        r(
            Post,
            "/jobs/{id}/reject",
            "reject_job",
            ID,
            Body,
            OK,
            "jobs",
        ),
    ]);
    let ap = Some("approval_id");
    v.extend([
        r(
            Get,
            "/approvals",
            "list_approvals",
            None,
            Query,
            OK,
            "approvals",
        ),
        r(
            Post,
            "/approvals/expire",
            "expire_approvals",
            None,
            Body,
            OK,
            "approvals",
        ),
        r(
            Get,
            "/approvals/{id}",
            "get_approval",
            ID,
            Query,
            OK,
            "approvals",
        ),
        r(
            Post,
            "/approvals/{id}/approve",
            "approve_request",
            ap,
            Body,
            OK,
            "approvals",
        ),
        r(
            Post,
            "/approvals/{id}/reject",
            "reject_request",
            ap,
            Body,
            OK,
            "approvals",
        ),
        r(
            Post,
            "/approvals/{id}/cancel",
            "cancel_request",
            ap,
            Body,
            OK,
            "approvals",
        ),
        r(
            Post,
            "/approvals/{id}/result",
            "claim_approval_result",
            ap,
            Body,
            OK,
            "approvals",
        ),
    ]);
    v.extend([
        r(Get, "/audit", "get_audit_log", None, Query, OK, "audit"),
        r(
            Get,
            "/audit/verify",
            "verify_audit_log",
            None,
            Query,
            OK,
            "audit",
        ),
        r(
            Get,
            "/audit/checkpoints",
            "get_audit_checkpoints",
            None,
            Query,
            OK,
            "audit",
        ),
        r(
            Post,
            "/audit/checkpoints",
            "checkpoint_audit_log",
            None,
            Body,
            CREATED,
            "audit",
        ),
    ]);
    v.extend([
        r(
            Get,
            "/stats/summary",
            "get_stats_summary",
            None,
            Query,
            OK,
            "stats",
        ),
        stats("/stats/certificates-by-status", "by_status"),
        stats("/stats/certificates-by-ownership", "by_ownership"),
        stats("/stats/expiration-timeline", "expiration_timeline"),
        stats("/stats/job-trends", "job_trends"),
        stats("/stats/issuance-rate", "issuance_rate"),
    ]);
    v.extend([
        list_kind("/principals", "principal", "principals"),
        r(
            Post,
            "/principals",
            "create_principal",
            None,
            Body,
            CREATED,
            "principals",
        ),
        r(
            Delete,
            "/principals/{id}",
            "revoke_principal",
            ID,
            Body,
            OK,
            "principals",
        ),
    ]);
    // The agent's deployments and their verification (issue 5).
    v.extend([
        r(
            Get,
            "/agents/{id}/job",
            "get_agent_job",
            ID,
            Query,
            OK,
            "agents",
        ),
        r(
            Post,
            "/agents/{id}/report",
            "report_agent_job",
            ID,
            Body,
            OK,
            "agents",
        ),
        r(
            Post,
            "/jobs/{id}/verify",
            "verify_job",
            ID,
            Body,
            OK,
            "jobs",
        ),
        get_kind("/jobs/{id}/verification", "verification", "jobs"),
    ]);
    // Discovery on disk and on the network, and its triage (issues 5 and 9).
    v.extend([
        r(
            Post,
            "/agents/{id}/discoveries",
            "report_agent_discoveries",
            ID,
            Body,
            OK,
            "agents",
        ),
        r(
            Get,
            "/discovered-certificates",
            "list_discovered_certificates",
            None,
            Query,
            OK,
            "discovery",
        ),
        r(
            Get,
            "/discovered-certificates/summary",
            "get_discovery_summary",
            None,
            Query,
            OK,
            "discovery",
        ),
        get_kind(
            "/discovered-certificates/{id}",
            "discovered_certificate",
            "discovery",
        ),
        r(
            Post,
            "/discovered-certificates/{id}/claim",
            "claim_discovered_certificate",
            ID,
            Body,
            OK,
            "discovery",
        ),
        r(
            Post,
            "/discovered-certificates/{id}/dismiss",
            "dismiss_discovered_certificate",
            ID,
            Body,
            OK,
            "discovery",
        ),
        r(
            Post,
            "/network-scan-targets/{id}/scan",
            "scan_network_target",
            ID,
            Body,
            OK,
            "discovery",
        ),
    ]);
    v.extend([
        list_kind("/network-scan-targets", "network_scan_target", "discovery"),
        r(
            Post,
            "/network-scan-targets",
            "create_network_scan_target",
            None,
            Body,
            CREATED,
            "discovery",
        ),
        get_kind(
            "/network-scan-targets/{id}",
            "network_scan_target",
            "discovery",
        ),
        r(
            Put,
            "/network-scan-targets/{id}",
            "update_network_scan_target",
            ID,
            Body,
            OK,
            "discovery",
        ),
        delete_kind(
            "/network-scan-targets/{id}",
            "network_scan_target",
            "discovery",
        ),
    ]);
    // Agent groups (issue 9).
    v.extend(crud_kind!(
        "/agent-groups",
        "agents",
        "agent_group",
        "save_agent_group"
    ));
    v.push(r(
        Get,
        "/agent-groups/{id}/members",
        "list_agent_group_members",
        ID,
        Query,
        OK,
        "agents",
    ));
    // Policy violations (issue 9).
    v.push(r(
        Get,
        "/policy-violations",
        "list_policy_violations",
        None,
        Query,
        OK,
        "policies",
    ));
    // Imports, bulk revocation and export links (issues 4 and 7).
    v.extend([
        r(
            Post,
            "/certificates/import",
            "import_certificates",
            None,
            Body,
            OK,
            "certificates",
        ),
        r(
            Post,
            "/certificates/bulk-revoke",
            "bulk_certificates",
            None,
            Body,
            OK,
            "certificates",
        )
        .with("action", "revoke"),
        r(
            Post,
            "/certificates/bulk-renew",
            "bulk_certificates",
            None,
            Body,
            OK,
            "certificates",
        )
        .with("action", "renew"),
        r(
            Post,
            "/certificates/bulk-reassign",
            "bulk_certificates",
            None,
            Body,
            OK,
            "certificates",
        )
        .with("action", "reassign"),
        list_kind("/bulk-operations", "bulk_operation", "certificates"),
        get_kind("/bulk-operations/{id}", "bulk_operation", "certificates"),
        r(
            Post,
            "/certificates/{id}/export-links",
            "create_export_link",
            ID,
            Body,
            OK,
            "certificates",
        ),
    ]);
    // Notifications (issue 6).
    const CHANNEL: Option<&str> = Some("channel_id");
    v.extend([
        list_kind(
            "/notification-channels",
            "notification_channel",
            "notifications",
        ),
        r(
            Post,
            "/notification-channels",
            "save_notification_channel",
            None,
            Body,
            CREATED,
            "notifications",
        ),
        r(
            Put,
            "/notification-channels/{id}",
            "save_notification_channel",
            ID,
            Body,
            OK,
            "notifications",
        ),
        delete_kind(
            "/notification-channels/{id}",
            "notification_channel",
            "notifications",
        ),
        r(
            Post,
            "/notification-channels/{id}/test",
            "send_test_notification",
            CHANNEL,
            Body,
            OK,
            "notifications",
        ),
        list_kind("/notification-rules", "notification_rule", "notifications"),
        r(
            Post,
            "/notification-rules",
            "save_notification_rule",
            None,
            Body,
            CREATED,
            "notifications",
        ),
        r(
            Put,
            "/notification-rules/{id}",
            "save_notification_rule",
            ID,
            Body,
            OK,
            "notifications",
        ),
        delete_kind(
            "/notification-rules/{id}",
            "notification_rule",
            "notifications",
        ),
        r(
            Get,
            "/notifications",
            "list_notifications",
            None,
            Query,
            OK,
            "notifications",
        ),
        r(
            Post,
            "/notifications/{id}/retry",
            "retry_notification",
            ID,
            Body,
            OK,
            "notifications",
        ),
    ]);
    v
}

/// Operations served by their protocol's own routes rather than a resource
/// route: certificate export answers PEM, DER or PKCS#12 bytes
/// (`POST /api/v1/certificates/{id}/export`), and enrollment is EST
/// (`/.well-known/est/simpleenroll`, `/simplereenroll`).
pub const PROTOCOL_ROUTED: [&str; 3] = [
    "export_certificate",
    "enroll_certificate",
    "reenroll_certificate",
];

/// The router of every resource route (authentication is layered by the caller).
pub fn router() -> Router<AppState> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    for route in routes() {
        let handler = move |state: State<AppState>,
                            caller: Caller,
                            path: Option<Path<String>>,
                            raw: RawQuery,
                            body: Result<Bytes, BytesRejection>| async move {
            run(route, state, caller, path, raw, body).await
        };
        let entry = by_path.remove(route.path).unwrap_or_default();
        by_path.insert(route.path, entry.merge(on(route.method.filter(), handler)));
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, mr)| router.route(path, mr))
}

/// A JSON object body; empty means `{}`.
pub fn object_body(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|e| ApiError::Problem(crate::operations::body_problem(&e)))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid_request("the request body must be a JSON object").into()),
        Err(e) => Err(invalid_request(format!("the request body is not valid JSON: {e}")).into()),
    }
}

async fn run(
    route: Route,
    State(state): State<AppState>,
    Caller(principal): Caller,
    path: Option<Path<String>>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let op = ops::find(route.op)
        .ok_or_else(|| certctl_engine::Error::internal("route names a missing operation"))?;
    let shape = query::shape(op);
    let mut fields = None;
    let mut input = match route.source {
        Source::Query => {
            let (input, f) = query::to_input(shape, raw.as_deref().unwrap_or(""))?;
            fields = f;
            input
        }
        Source::Body => {
            if raw.as_deref().is_some_and(|q| !q.is_empty()) {
                return Err(invalid_request(
                    "this endpoint takes its input in the JSON body, not the query string",
                )
                .into());
            }
            object_body(body)?
        }
    };
    // A `save_` operation creates without an `id` and updates with one;
    // over REST, POST on the collection only creates (PUT on the item
    // updates), so an `id` in its body is a mistake worth naming.
    if route.method == Verb::Post
        && route.id_field.is_none()
        && route.op.starts_with("save_")
        && input.contains_key("id")
    {
        return Err(invalid_request(format!(
            "`id` is assigned by certctl; to change an existing one, PUT /api/v1{}/{{id}}",
            route.path
        ))
        .into());
    }
    if let (Some(key), Some(Path(id))) = (route.id_field, path) {
        input.insert(key.to_owned(), Value::String(id));
    }
    if let Some((field, value)) = route.fixed {
        if input.contains_key(field) {
            return Err(invalid_request(format!(
                "`{field}` is set by this route ({value}); leave it out"
            ))
            .into());
        }
        input.insert(field.to_owned(), Value::String(value.to_owned()));
    }
    let started = std::time::Instant::now();
    // Without a face-applied fieldset the result goes out as the engine
    // serialized it (no `serde_json::Value` copy of a whole list page).
    let outcome = match &fields {
        None => op
            .call_json_text(&state.engine, &principal, Value::Object(input))
            .await
            .map(Answer::Text),
        Some(_) => op
            .call_json(&state.engine, &principal, Value::Object(input))
            .await
            .map(Answer::Value),
    };
    let label = match &outcome {
        Ok(Answer::Text(Outcome::Completed { .. }) | Answer::Value(Outcome::Completed { .. })) => {
            "completed"
        }
        Ok(_) => "approval_required",
        Err(_) => "error",
    };
    state
        .extras
        .metrics
        .observe_op(route.op, label, started.elapsed());
    Ok(match outcome? {
        Answer::Text(Outcome::Completed { result }) => (
            route.done,
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            result,
        )
            .into_response(),
        Answer::Value(Outcome::Completed { mut result }) => {
            if let Some(f) = &fields {
                query::retain_fields(&mut result, f);
            }
            (route.done, Json(result)).into_response()
        }
        Answer::Text(Outcome::ApprovalRequired(t))
        | Answer::Value(Outcome::ApprovalRequired(t)) => (
            StatusCode::ACCEPTED,
            Json(Outcome::<Value>::ApprovalRequired(t)),
        )
            .into_response(),
    })
}

/// A call's outcome as JSON text or as a value (when the face trims fields).
enum Answer {
    Text(Outcome<Vec<u8>>),
    Value(Outcome<Value>),
}
