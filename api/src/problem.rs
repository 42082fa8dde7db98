//! RFC 7807 problem details: the one shape every error response takes.
//!
//! Engine errors are converted here, once. Their messages are written for
//! callers, except `Storage` and `Internal`, whose detail is logged and
//! replaced by a generic sentence.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Base of every problem `type` URI; the engine's error code follows it.
pub const PROBLEM_BASE: &str = "https://certctl.dev/problems/";

const PROBLEM_JSON: &str = "application/problem+json";

/// An `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `https://certctl.dev/problems/<code>`, stable for each kind of failure.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{PROBLEM_BASE}{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// The code at the end of `type` (`not-found`, `forbidden`, ...).
    pub fn code(&self) -> &str {
        self.kind.strip_prefix(PROBLEM_BASE).unwrap_or(&self.kind)
    }

    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let unauthenticated = status == StatusCode::UNAUTHORIZED;
        let mut res = (status, Json(self)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if unauthenticated {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// An error a handler returns: an engine error or a ready-made problem.
#[derive(Debug)]
pub enum ApiError {
    Engine(certctl_engine::Error),
    Problem(Problem),
}

impl From<certctl_engine::Error> for ApiError {
    fn from(e: certctl_engine::Error) -> Self {
        Self::Engine(e)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Engine(e) => engine_problem(&e).into_response(),
            Self::Problem(p) => p.into_response(),
        }
    }
}

/// Maps an engine error onto a status, a title and a detail that is safe to show.
pub fn engine_problem(e: &certctl_engine::Error) -> Problem {
    use certctl_engine::Error as E;
    let (status, title) = match e {
        E::NotFound { .. } => (StatusCode::NOT_FOUND, "Not found"),
        E::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
        E::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
        E::Unauthenticated => (StatusCode::UNAUTHORIZED, "Authentication required"),
        E::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid input"),
        E::PolicyViolation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Policy violation"),
        E::IssuerRejected(_) => (StatusCode::BAD_GATEWAY, "Issuer rejected the request"),
        E::ApprovalRequired(_) => (StatusCode::CONFLICT, "Approval required"),
        E::StaleApproval(_) => (StatusCode::CONFLICT, "Stale approval"),
        E::Storage(_) | E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
        // The enum is non-exhaustive: a new variant is an internal error
        // until this mapping learns it.
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal error"),
    };
    let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = ?e, code = e.code(), "request failed");
        "the server could not complete the request; the details are in its log".to_owned()
    } else {
        e.to_string()
    };
    Problem::new(status, e.code(), title, detail)
}

/// A 422 for a body or query that could not be read.
pub fn invalid_request(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-input",
        "Invalid input",
        detail,
    )
}

pub async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "no such endpoint",
    )
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this endpoint does not accept that method",
    )
}

/// Turns the bare error responses produced by layers (body too large, for
/// one) into problems, so clients only ever parse one error shape.
pub async fn problemize(res: Response) -> Response {
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return res;
    }
    let (code, title, detail) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload-too-large",
            "Payload too large",
            format!(
                "the request body is larger than {} bytes",
                crate::MAX_BODY_BYTES
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json".to_owned(),
        ),
        s if s.is_server_error() => (
            "internal",
            "Internal error",
            "the server could not complete the request; the details are in its log".to_owned(),
        ),
        s => (
            "bad-request",
            "Bad request",
            s.canonical_reason().unwrap_or("bad request").to_owned(),
        ),
    };
    let mut out = Problem::new(status, code, title, detail).into_response();
    // Keep headers such as Retry-After or Allow that the layer set.
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_do_not_leak_their_text() {
        let p = engine_problem(&certctl_engine::Error::internal(
            "SELECT secret FROM keys failed",
        ));
        assert_eq!(p.status, 500);
        assert_eq!(p.code(), "internal");
        assert!(!p.detail.contains("SELECT"), "{}", p.detail);
    }

    #[test]
    fn status_mapping() {
        use certctl_engine::Error as E;
        let cases = [
            (E::not_found("certificate", "mc-x"), 404, "not-found"),
            (E::conflict("x"), 409, "conflict"),
            (E::forbidden("x"), 403, "forbidden"),
            (E::Unauthenticated, 401, "unauthenticated"),
            (E::invalid("x"), 422, "invalid-input"),
            (E::policy("x"), 422, "policy-violation"),
            (E::IssuerRejected("x".into()), 502, "issuer-rejected"),
            (E::ApprovalRequired("x".into()), 409, "approval-required"),
            (E::StaleApproval("x".into()), 409, "stale-approval"),
        ];
        for (e, status, code) in cases {
            let p = engine_problem(&e);
            assert_eq!((p.status, p.code()), (status, code), "{e:?}");
            assert_eq!(p.kind, format!("{PROBLEM_BASE}{code}"));
        }
    }
}
