use thiserror::Error;

/// Errors of the domain layer. Messages never contain field values: they name the field,
/// the rule and, for imports, the row — enough to fix the input without echoing personal data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid {kind}: {reason}")]
    InvalidId { kind: &'static str, reason: String },
    #[error("invalid schema: {0}")]
    InvalidSchema(String),
    #[error("field `{field}`: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("unknown field `{0}`")]
    UnknownField(String),
    #[error("missing required field `{0}`")]
    MissingField(String),
    #[error("incompatible schema change: {0}")]
    IncompatibleSchema(String),
    #[error("invalid access window: {0}")]
    InvalidAccessWindow(String),
    #[error("invalid password policy: {0}")]
    InvalidPasswordPolicy(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
