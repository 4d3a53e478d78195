use thiserror::Error;

/// Errors of the crypto layer. They say what failed, never with which bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Authentication of a ciphertext failed: wrong key, or the ciphertext, its nonce or its
    /// associated data (collection, record, field, schema version) was changed.
    #[error("decryption failed: the ciphertext is not authentic for this key and context")]
    Decrypt,
    #[error("malformed ciphertext")]
    Malformed,
    #[error("malformed master key: {0}")]
    MasterKeyFormat(&'static str),
    #[error("malformed audit signing key: {0}")]
    SigningKeyFormat(&'static str),
    #[error("malformed audit public key")]
    PublicKeyFormat,
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("TOTP: {0}")]
    Totp(&'static str),
}

pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
