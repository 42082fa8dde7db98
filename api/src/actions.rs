//! Approvals and certificate lifecycle actions as resource-shaped routes
//! (the contract's paths): thin mirrors of the catalogue operations, going
//! through the same engine gate as every other face.
//!
//! Completed calls answer with the operation's result (renew: 202 with the
//! job); a call stopped at the approval gate answers 202 with
//! `{"status":"approval_required","approval_id":...}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use certctl_engine::domain::ApprovalStatus;
use certctl_engine::ops::{self, Outcome};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, invalid_request};

/// Runs `op` with `input`; `done` is the status of a completed call.
async fn run(
    state: &AppState,
    principal: &certctl_engine::domain::Principal,
    op: &str,
    input: Value,
    done: StatusCode,
) -> Result<Response, ApiError> {
    let op = ops::find(op).ok_or_else(|| certctl_engine::Error::internal("operation missing"))?;
    Ok(match op.call_json(&state.engine, principal, input).await? {
        Outcome::Completed { result } => (done, Json(result)).into_response(),
        gated @ Outcome::ApprovalRequired(_) => (StatusCode::ACCEPTED, Json(gated)).into_response(),
    })
}

/// A JSON object body; empty means `{}`.
fn object_body(
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let body = body.map_err(|_| invalid_request("the request body could not be read"))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid_request("the request body must be a JSON object").into()),
        Err(e) => Err(invalid_request(format!("the request body is not valid JSON: {e}")).into()),
    }
}

fn id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|e| invalid_request(e.body_text()).into())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    status: Option<ApprovalStatus>,
    per_page: Option<i64>,
}

/// `GET /api/v1/approvals?status=pending`.
pub async fn list_approvals(
    State(state): State<AppState>,
    Caller(p): Caller,
    q: Result<Query<ApprovalQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| invalid_request(e.body_text()))?;
    let input = json!({ "status": q.status, "per_page": q.per_page });
    run(&state, &p, "list_approvals", input, StatusCode::OK).await
}

/// `GET /api/v1/approvals/{id}`.
pub async fn get_approval(
    State(state): State<AppState>,
    Caller(p): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let input = json!({ "id": id(path)? });
    run(&state, &p, "get_approval", input, StatusCode::OK).await
}

/// Runs `op` with the JSON object body plus the path's id under `id_key`.
async fn act(
    state: &AppState,
    p: &certctl_engine::domain::Principal,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
    (op, id_key, done): (&str, &str, StatusCode),
) -> Result<Response, ApiError> {
    let mut input = object_body(body)?;
    input.insert(id_key.into(), id(path)?.into());
    run(state, p, op, Value::Object(input), done).await
}

/// `POST /api/v1/approvals/{id}/approve` with an optional `{"note": "..."}`.
pub async fn approve(
    State(state): State<AppState>,
    Caller(p): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = ("approve_request", "approval_id", StatusCode::OK);
    act(&state, &p, path, body, spec).await
}

/// `POST /api/v1/approvals/{id}/reject` with an optional `{"note": "..."}`.
pub async fn reject(
    State(state): State<AppState>,
    Caller(p): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = ("reject_request", "approval_id", StatusCode::OK);
    act(&state, &p, path, body, spec).await
}

/// `POST /api/v1/certificates/{id}/renew` with an optional `{"csr_pem": "..."}`:
/// 202 with the renewal job (and the new version when issued at once).
pub async fn renew(
    State(state): State<AppState>,
    Caller(p): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = ("renew_certificate", "id", StatusCode::ACCEPTED);
    act(&state, &p, path, body, spec).await
}

/// `POST /api/v1/certificates/{id}/revoke` with `{"reason": "keyCompromise"}`
/// (an RFC 5280 reason; default unspecified).
pub async fn revoke(
    State(state): State<AppState>,
    Caller(p): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = ("revoke_certificate", "id", StatusCode::OK);
    act(&state, &p, path, body, spec).await
}

/// `POST /api/v1/issuers/{id}/test`: reach the issuer's CA and check
/// certctl's credentials; 200 with `{"ok": ..., "detail": ...}` either way.
pub async fn test_issuer(
    State(state): State<AppState>,
    Caller(p): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = ("test_issuer", "id", StatusCode::OK);
    act(&state, &p, path, body, spec).await
}
