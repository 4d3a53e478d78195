use mamori_core::CoreError;
use mamori_crypto::CryptoError;
use mamori_store::StoreError;
use thiserror::Error;

/// One row-level problem found while validating an import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowError {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// Column name, when the problem is in one column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column `{}`: {}", self.line, c, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

/// Errors of the vault layer. The server maps each variant to one problem+json `type`.
/// No variant ever carries a field value.
#[derive(Debug, Error)]
pub enum VaultError {
    #[error("authentication failed")]
    Unauthenticated,
    #[error("the password must be changed before anything else")]
    PasswordChangeRequired,
    /// The password was right; a one-time code (TOTP or recovery code) is needed too, or the
    /// account must enrol a second factor from a trusted network first.
    #[error("a one-time code is required")]
    MfaRequired,
    #[error("the password does not meet the policy: {0}")]
    PasswordRejected(mamori_core::password_policy::PasswordRejection),
    #[error("not permitted")]
    Forbidden,
    /// The credentials were right, but the account may not work now or from this network
    /// (its access window, 001-20-tech-2-5 / 001-20-tech-1-6).
    #[error("access not permitted: {0}")]
    OutsideAccessWindow(mamori_core::access_window::WindowRefusal),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    /// A take-out threshold blocks the operation (e.g. the daily print limit).
    #[error("take-out limit reached: {0}")]
    TakeoutLimit(String),
    #[error("import rejected: {} problem(s), nothing was written", .errors.len())]
    ImportRejected { errors: Vec<RowError>, truncated: bool },
    #[error("the master key does not match this data directory")]
    WrongMasterKey,
    /// The audit event could not be made durable, so the operation was not performed (fail
    /// closed, 002-S-11-d).
    #[error("audit log unavailable; the operation was not performed")]
    AuditUnavailable(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored ciphertext or key failed authentication: tampering or corruption.
    #[error("integrity failure: {0}")]
    Integrity(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = VaultError> = std::result::Result<T, E>;

impl From<CoreError> for VaultError {
    fn from(e: CoreError) -> Self {
        VaultError::Invalid(e.to_string())
    }
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => VaultError::NotFound("record"),
            StoreError::Conflict(m) => VaultError::Conflict(m),
            StoreError::Unavailable(m) => VaultError::Unavailable(m),
            StoreError::AuditUnavailable(m) => VaultError::AuditUnavailable(m),
            StoreError::Corrupt(m) => VaultError::Integrity(m),
            StoreError::Backend(m) => VaultError::Internal(m),
        }
    }
}

impl From<CryptoError> for VaultError {
    fn from(e: CryptoError) -> Self {
        match e {
            CryptoError::Decrypt | CryptoError::Malformed => VaultError::Integrity(e.to_string()),
            other => VaultError::Internal(other.to_string()),
        }
    }
}
