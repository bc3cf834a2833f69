//! The core's error type. Messages name ids and fields, never personal data.

use thiserror::Error as ThisError;

/// Everything that can go wrong in the core.
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// Input that breaks a rule; the message says what to fix.
    #[error("{0}")]
    Invalid(String),

    #[error("invalid GTIN {gtin:?}: {reason}")]
    InvalidGtin { gtin: String, reason: String },

    #[error("{field} cannot be negative (got {value})")]
    NegativeQuantity { field: &'static str, value: i64 },

    #[error("unknown {kind} {id:?}")]
    NotFound { kind: &'static str, id: String },

    /// The visit's status does not allow the action.
    #[error("cannot {action} a visit that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: String,
    },

    #[error("cannot complete the visit: required task(s) still open: {}", open.join(", "))]
    RequiredTasksOpen { open: Vec<String> },

    #[error("reference data is inconsistent: {}", problems.join("; "))]
    InvalidReferenceData { problems: Vec<String> },

    /// A change touches a field the user's role does not own, or claims another device.
    #[error("not allowed: {0}")]
    Forbidden(String),

    /// Remote changes whose dependencies are not yet known.
    #[error("missing {count} dependency change(s) for visit {visit_id}")]
    MissingDependencies { visit_id: String, count: usize },

    #[error(
        "the device database was written by a newer fieldsync (schema {found}, this build knows up to {supported})"
    )]
    SchemaTooNew { found: i64, supported: i64 },

    #[error("stored data is corrupt: {0}")]
    Corrupt(String),

    #[error("database error: {0}")]
    Storage(#[from] rusqlite::Error),

    #[error("document error: {0}")]
    Document(#[from] automerge::AutomergeError),

    #[error("encoding error: {0}")]
    Json(#[from] serde_json::Error),

    #[error("network error: {0}")]
    Network(String),

    /// The server refused the credentials or token.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// The server answered with an error it explained.
    #[error("server error ({status}): {message}")]
    Server { status: u16, message: String },
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub(crate) fn not_found(kind: &'static str, id: &str) -> Self {
        Error::NotFound {
            kind,
            id: id.chars().take(80).collect(),
        }
    }

    /// True for errors caused by the caller's input (nothing was changed).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Invalid(_)
                | Error::InvalidGtin { .. }
                | Error::NegativeQuantity { .. }
                | Error::NotFound { .. }
                | Error::InvalidTransition { .. }
                | Error::RequiredTasksOpen { .. }
                | Error::InvalidReferenceData { .. }
                | Error::Forbidden(_)
        )
    }
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
