//! Bearer authentication: turns `Authorization: Bearer <key>` into the
//! engine's [`Principal`] and hands it to handlers through [`Caller`].

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use certctl_engine::domain::{Principal, Role};

use crate::AppState;
use crate::problem::ApiError;
use crate::public_limits::Limit;

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// `Authorization: Bearer <api key>` (the default).
    ApiKey,
    /// `Authorization: Bearer <JWT>` signed by an identity provider.
    Jwt(std::sync::Arc<crate::jwt::JwtVerifier>),
    /// No authentication: every caller acts as an admin. The binary allows
    /// it only on a loopback address, with a loud warning.
    InsecureNone,
}

impl AuthMode {
    pub fn is_none(&self) -> bool {
        matches!(self, Self::InsecureNone)
    }
}

/// The principal every request runs as when authentication is off.
pub fn anonymous_admin() -> Principal {
    Principal {
        id: "anonymous".into(),
        name: "unauthenticated caller (authentication is disabled)".into(),
        role: Role::Admin,
        agent_id: None,
        address: None,
    }
}

/// Middleware: authenticates the caller or answers 401. A client address
/// that failed too often in the current window is answered 429 without its
/// credentials being tried (guessing keys costs the guesser, not the
/// database or the audit trail).
pub async fn require_principal(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = crate::middleware::client_of(&req);
    if !state.auth.is_none()
        && let Some(c) = &client
        && let Some(wait) = state.extras.failed_auth.blocked(c)
    {
        let detail = format!(
            "this client failed to authenticate {} times in {} s",
            state.extras.failed_auth.max(),
            state.extras.throttle_log.window().as_secs()
        );
        return crate::public_limits::too_many(Limit::FailedAuth, c, wait, &detail);
    }
    let authenticated = match &state.auth {
        AuthMode::InsecureNone => Ok(anonymous_admin()),
        AuthMode::ApiKey => match bearer(req.headers()) {
            None => Err(certctl_engine::Error::Unauthenticated),
            Some(key) => state.engine.authenticate(key).await,
        },
        AuthMode::Jwt(verifier) => match bearer(req.headers()) {
            None => Err(certctl_engine::Error::Unauthenticated),
            Some(token) => verifier.verify(token),
        },
    };
    let principal = match authenticated {
        Ok(p) => p,
        Err(e) => {
            if matches!(e, certctl_engine::Error::Unauthenticated)
                && let Some(c) = &client
            {
                state.extras.failed_auth.failed(c);
            }
            return ApiError::from(e).into_response();
        }
    };
    if let Some(limited) = state.extras.limiter.check(&principal.id) {
        return limited;
    }
    // The TCP peer, from the connection (never from a header the caller
    // writes): the engine records it beside what agents report.
    let mut principal = principal;
    principal.address = peer_address(&req);
    if let Some(slot) = req.extensions().get::<crate::middleware::PrincipalSlot>() {
        slot.set(principal.clone());
    }
    // The MCP service reads the bare principal from the request's extensions.
    req.extensions_mut().insert(principal.clone());
    req.extensions_mut().insert(Caller(principal));
    next.run(req).await
}

/// The address of the connection a request came on, when the server
/// recorded one (`run` and `run_tls` do; in-memory tests may not). An
/// IPv4-mapped IPv6 peer (a dual-stack listener) is shown as IPv4.
pub fn peer_address(req: &Request) -> Option<String> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical().to_string())
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Engine(certctl_engine::Error::Unauthenticated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(&headers("Bearer cck_abc")), Some("cck_abc"));
        assert_eq!(bearer(&headers("bearer  cck_abc ")), Some("cck_abc"));
        assert_eq!(bearer(&headers("Basic dXNlcg==")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
