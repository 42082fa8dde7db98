//! Liveness and readiness, without authentication (for load balancers and
//! orchestrators).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::problem::Problem;

/// `GET /health`: the process answers.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "healthy" }))
}

/// `GET /ready`: the store answers (migrations ran when the engine started).
pub async fn ready(State(state): State<AppState>) -> Response {
    match state.engine.store().ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check failed: the store does not answer");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                "the database does not answer yet",
            )
            .into_response()
        }
    }
}
