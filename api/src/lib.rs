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
mod est;
mod health;
pub mod jwt;
mod metrics;
pub mod middleware;
mod openapi;
mod operations;
mod pki;
mod problem;
mod query;
pub mod routes;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use certctl_engine::Engine;
use tower_http::limit::RequestBodyLimitLayer;

pub use auth::AuthMode;
pub use est::EstConfig;
pub use middleware::ApiOptions;
pub use openapi::document as openapi_document;
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
    /// EST's issuer, profile and Basic users.
    pub est: Arc<EstConfig>,
    /// Rate limiter, metrics, request-audit writer and options.
    pub extras: Arc<middleware::Extras>,
}

impl AppState {
    /// State with bearer API-key authentication and default options. Must be
    /// called inside a tokio runtime (it starts the request-audit writer).
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_options(engine, ApiOptions::default())
    }

    /// State with the given options.
    pub fn with_options(engine: Arc<Engine>, options: ApiOptions) -> Self {
        Self {
            extras: Arc::new(middleware::Extras::new(engine.clone(), options)),
            engine,
            auth: AuthMode::ApiKey,
            shutdown: CancellationToken::new(),
            est: Default::default(),
        }
    }

    pub fn auth(mut self, auth: AuthMode) -> Self {
        self.auth = auth;
        self
    }

    pub fn shutdown_token(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Waits until the `api_request` events of finished requests are written.
    pub async fn flush_request_audit(&self) {
        self.extras.flush().await;
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let authenticated =
        axum::middleware::from_fn_with_state(state.clone(), auth::require_principal);
    // Resource routes (the catalogue mirrored on the contract's paths), the
    // generic catalogue endpoints and metrics. Other /api/v1 faces (CRL,
    // OCSP, ...) merge their routers here.
    let api = routes::router()
        .route("/operations", get(operations::list))
        .route("/operations/{name}", post(operations::call))
        .route("/metrics/prometheus", get(metrics::prometheus))
        .route_layer(authenticated.clone());
    // Unauthenticated: liveness, readiness and the API description.
    let public = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/api/v1/openapi.json", get(openapi::serve));
    // MCP over streamable HTTP, behind the same bearer authentication. It is
    // merged outside the problem+json mapping: MCP clients read rmcp's own
    // error bodies.
    let mcp = Router::new()
        .nest_service(
            "/mcp",
            certctl_mcp::http_service(state.engine.clone(), state.shutdown.clone()),
        )
        .layer(authenticated)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    let mut router = Router::new()
        .merge(public)
        .nest("/api/v1", api)
        .route_layer(axum::middleware::from_fn(middleware::remember_route))
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        // Outside the body limit, so its bare 413 becomes a problem too.
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(problem::problemize))
        .with_state(state.clone())
        .merge(mcp)
        .merge(pki_routes(state.clone()));
    if let Some(cors) = middleware::cors(&state.extras.options.cors_origins) {
        router = router.layer(cors);
    }
    router.layer(axum::middleware::from_fn_with_state(
        state,
        middleware::observe,
    ))
}

// ---------------------------------------------------------------- PKI (issue 7)
// CRL, OCSP, export links and EST: public endpoints (EST enrollment checks
// HTTP Basic or the TLS client certificate itself), outside the bearer
// middleware and outside the problem+json mapping, because OCSP and EST
// clients read their own media types. Only certificate export needs a bearer.
fn pki_routes(state: AppState) -> Router {
    let public = Router::new()
        .route("/api/v1/crl/{issuer_id}", get(pki::crl))
        .route("/api/v1/ocsp/{issuer_id}", post(pki::ocsp_post))
        .route("/api/v1/ocsp/{issuer_id}/{request}", get(pki::ocsp_get))
        .route(
            "/api/v1/exports/{token}",
            get(pki::export_link_get).post(pki::export_link_post),
        )
        .route("/.well-known/est/cacerts", get(est::cacerts))
        .route("/.well-known/est/csrattrs", get(est::csrattrs))
        .route("/.well-known/est/simpleenroll", post(est::simpleenroll))
        .route("/.well-known/est/simplereenroll", post(est::simplereenroll))
        .route("/.well-known/est/serverkeygen", post(est::serverkeygen));
    let authenticated = Router::new()
        .route(
            "/api/v1/certificates/{id}/export",
            post(pki::export_certificate),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ));
    public
        .merge(authenticated)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // With the peer's address: agent heartbeats record where they came from.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
