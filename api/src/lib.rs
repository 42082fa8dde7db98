//! certctl-api: the HTTP face of certctl, and the typed client the CLI (and
//! later the agent) uses to talk to it.
//!
//! The server side is a thin mirror of the engine's operation catalogue:
//! every request authenticates a principal and runs an operation through
//! [`certctl_engine::Engine::call`] (or its JSON twin), so no route can skip
//! authorization, the approval gate or the audit log. This crate must never
//! touch storage directly, and never put internal error text in a response.
//!
//! Wiring follows mini-redis and the axum examples: [`app`] builds the
//! router (tests drive it in memory with `tower::ServiceExt::oneshot`) and
//! [`run`] serves it on a listener until a shutdown future resolves.

mod auth;
pub mod client;
mod health;
mod operations;
mod problem;
mod query;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use certctl_engine::Engine;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

pub use auth::AuthMode;
pub use problem::{ApiError, Problem};
pub use tokio_util::sync::CancellationToken;

/// Largest request body accepted (1 MiB); larger ones get a 413 problem.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub auth: AuthMode,
    /// Cancelled at shutdown: ends open MCP sessions and their event streams,
    /// which would otherwise keep the graceful shutdown waiting.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State with bearer API-key authentication (the default).
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            auth: AuthMode::ApiKey,
            shutdown: CancellationToken::new(),
        }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    // Resource routes (the catalogue mirrored on the contract's paths), then
    // the generic catalogue endpoints. Other faces of /api/v1 (CRL, OCSP,
    // EST, ...) merge their own routers here.
    let api = routes::router()
        .route("/operations", get(operations::list))
        .route("/operations/{name}", post(operations::call))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ));
    // MCP over streamable HTTP, behind the same bearer authentication. It is
    // merged outside the problem+json mapping: MCP clients read rmcp's own
    // error bodies.
    let mcp = Router::new()
        .nest_service(
            "/mcp",
            certctl_mcp::http_service(state.engine.clone(), state.shutdown.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .nest("/api/v1", api)
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        // Outside the body limit, so its bare 413 becomes a problem too.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(problem::problemize))
        .with_state(state)
        .merge(mcp)
        .layer(TraceLayer::new_for_http())
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
