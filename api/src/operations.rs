//! The generic catalogue endpoints: `GET /api/v1/operations` lists every
//! operation with its schemas, `POST /api/v1/operations/{name}` runs one.
//! Until the resource-shaped routes arrive, this is how the CLI reaches every
//! operation; afterwards it stays as the face-neutral mirror of the catalogue.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use certctl_engine::ops::{self, Outcome};
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::problem::{ApiError, invalid_request};

/// One catalogue entry as the API shows it.
#[derive(Debug, Serialize)]
pub struct OperationInfo {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub risk: &'static str,
    pub idempotent: bool,
    pub resource: &'static str,
    pub input_schema: serde_json::Value,
    pub output_schema: serde_json::Value,
}

/// `GET /api/v1/operations`: `{"data": [...]}` in catalogue order.
pub async fn list(Caller(_principal): Caller) -> Json<serde_json::Value> {
    let data: Vec<OperationInfo> = ops::catalogue()
        .iter()
        .map(|op| {
            let m = op.meta();
            OperationInfo {
                name: m.name,
                title: m.title,
                description: m.description,
                risk: m.risk.as_str(),
                idempotent: m.idempotent,
                resource: m.resource,
                input_schema: op.input_schema(),
                output_schema: op.output_schema(),
            }
        })
        .collect();
    Json(serde_json::json!({ "data": data }))
}

/// `POST /api/v1/operations/{name}` with the operation's JSON input (an
/// empty body means `{}`): 200 with `{"status":"completed","result":...}`,
/// or 202 with `{"status":"approval_required","approval_id":...}`.
pub async fn call(
    State(state): State<AppState>,
    Caller(principal): Caller,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(|e| invalid_request(e.body_text()))?;
    let op = ops::find(&name)
        .ok_or_else(|| certctl_engine::Error::not_found("operation", name.clone()))?;
    let body = body.map_err(|e| ApiError::Problem(body_problem(&e)))?;
    let input: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| invalid_request(format!("the request body is not valid JSON: {e}")))?
    };
    let outcome = op.call_json(&state.engine, &principal, input).await?;
    let status = match outcome {
        Outcome::Completed { .. } => StatusCode::OK,
        Outcome::ApprovalRequired(_) => StatusCode::ACCEPTED,
    };
    Ok((status, Json(outcome)).into_response())
}

pub(crate) fn body_problem(e: &BytesRejection) -> crate::Problem {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        crate::Problem::new(
            status,
            "payload-too-large",
            "Payload too large",
            format!(
                "the request body is larger than {} bytes",
                crate::MAX_BODY_BYTES
            ),
        )
    } else {
        invalid_request("the request body could not be read")
    }
}
