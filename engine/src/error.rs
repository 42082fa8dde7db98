//! The engine's one error type. Every face converts it once at its edge
//! (problem+json over HTTP, `isError` tool results over MCP, an exit code on
//! the terminal), so variants say what a caller can do about the failure and
//! carry messages that are safe to show: no SQL, no crypto library text.

use std::fmt;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named resource does not exist (or the principal may not see it).
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The request conflicts with the current state (already revoked, duplicate name, ...).
    #[error("{0}")]
    Conflict(String),
    /// The principal's role does not allow the operation.
    #[error("{0}")]
    Forbidden(String),
    /// No valid credentials were presented.
    #[error("authentication required")]
    Unauthenticated,
    /// The input is malformed or breaks a rule of the data model.
    #[error("{0}")]
    InvalidInput(String),
    /// The input is well-formed but a profile or policy refuses it; the message is the reason.
    #[error("{0}")]
    PolicyViolation(String),
    /// The CA refused or failed the request; the message is the CA's own explanation.
    #[error("issuer rejected the request: {0}")]
    IssuerRejected(String),
    /// The operation needs an approval that is not (or no longer) available.
    #[error("{0}")]
    ApprovalRequired(String),
    /// An approval was for a state that no longer holds (another version,
    /// another selection, another profile): nothing was done.
    #[error("{0}")]
    StaleApproval(String),
    /// Storage failed; the detail is logged, never shown.
    #[error("storage error")]
    Storage(#[source] StorageError),
    /// An internal invariant failed; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::Conflict(msg.into())
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        Self::Forbidden(msg.into())
    }

    pub fn policy(msg: impl Into<String>) -> Self {
        Self::PolicyViolation(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }

    /// A stable, machine-readable code for the variant (used in problem `type`s and tool results).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not-found",
            Error::Conflict(_) => "conflict",
            Error::Forbidden(_) => "forbidden",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidInput(_) => "invalid-input",
            Error::PolicyViolation(_) => "policy-violation",
            Error::IssuerRejected(_) => "issuer-rejected",
            Error::ApprovalRequired(_) => "approval-required",
            Error::StaleApproval(_) => "stale-approval",
            Error::Storage(_) => "storage",
            Error::Internal(_) => "internal",
        }
    }
}

/// A storage failure. Wraps the driver error without exposing its type in the
/// engine's public API.
pub struct StorageError(Box<dyn std::error::Error + Send + Sync>);

impl fmt::Debug for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // Unique violations are conflicts a caller can act on; the rest is storage trouble.
        if let sqlx::Error::Database(db) = &e
            && db.is_unique_violation()
        {
            return Error::Conflict("a resource with the same unique value already exists".into());
        }
        Error::Storage(StorageError(Box::new(e)))
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::Storage(StorageError(Box::new(e)))
    }
}
