//! The one public error of the bindings, and the one place core errors are mapped to it.

use fieldsync_core::Error as CoreError;

/// Everything a fieldsync call can fail with. Each variant is something an app can
/// branch on; `reason` is a readable explanation that names ids and fields, never
/// personal data.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum FieldsyncError {
    /// The input breaks a rule (negative quantity, bad GTIN, malformed date or JSON, …);
    /// nothing was changed. The reason says what to fix.
    #[error("{reason}")]
    Validation { reason: String },
    /// An id (visit, store, product, position, promotion, question, template) is unknown.
    #[error("{reason}")]
    NotFound { reason: String },
    /// The visit's state does not allow the action: an invalid status transition, or
    /// completing while required tasks are still open.
    #[error("{reason}")]
    Conflict { reason: String },
    /// The server could not be reached or answered with an error.
    #[error("{reason}")]
    Network { reason: String },
    /// The server refused the credentials or the device token: sign in again.
    #[error("{reason}")]
    Unauthorized { reason: String },
    /// The device database failed, is corrupt, or was written by a newer fieldsync.
    #[error("{reason}")]
    Storage { reason: String },
    /// A bug or an unexpected failure (including one raised by foreign code).
    #[error("{reason}")]
    Internal { reason: String },
}

impl FieldsyncError {
    pub(crate) fn validation(reason: impl Into<String>) -> Self {
        Self::Validation {
            reason: reason.into(),
        }
    }
}

impl From<CoreError> for FieldsyncError {
    fn from(e: CoreError) -> Self {
        let reason = e.to_string();
        match e {
            CoreError::Invalid(_)
            | CoreError::InvalidGtin { .. }
            | CoreError::NegativeQuantity { .. }
            | CoreError::InvalidReferenceData { .. }
            | CoreError::Forbidden(_) => Self::Validation { reason },
            CoreError::NotFound { .. } => Self::NotFound { reason },
            CoreError::InvalidTransition { .. } | CoreError::RequiredTasksOpen { .. } => {
                Self::Conflict { reason }
            }
            CoreError::Network(_) => Self::Network { reason },
            CoreError::Unauthorized(_) => Self::Unauthorized { reason },
            CoreError::Server {
                status: 401 | 403, ..
            } => Self::Unauthorized { reason },
            CoreError::Server { .. } => Self::Network { reason },
            CoreError::SchemaTooNew { .. }
            | CoreError::Corrupt(_)
            | CoreError::Storage(_)
            | CoreError::Document(_)
            | CoreError::Json(_) => Self::Storage { reason },
            _ => Self::Internal { reason },
        }
    }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for FieldsyncError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal { reason: e.reason }
    }
}

/// Result with [`FieldsyncError`].
pub type Result<T, E = FieldsyncError> = std::result::Result<T, E>;
