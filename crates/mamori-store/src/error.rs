use thiserror::Error;

/// Errors of the storage layer. Messages carry no values, only what went wrong and where.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule or a compare-and-set precondition failed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or is locked; the operation did not happen.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The audit events of a change could not be appended, so the change was not committed
    /// either (fail closed).
    #[error("the audit trail cannot be written: {0}")]
    AuditUnavailable(String),
    /// Stored data does not have the shape this version expects.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
