//! Cryptography of mamori, built only from well-kept RustCrypto crates — nothing here is a
//! home-made primitive; this crate only decides *how* AES-256-GCM, HMAC-SHA-256, HKDF and
//! Argon2id are combined (e-Government recommended ciphers, 004-V-2-11; secure algorithms,
//! key lengths and key management, 002-T-6-d and 001-20-rule-2-5; stored data encrypted,
//! 001-20-rule-4-2).
//!
//! Key hierarchy (capability F):
//!
//! ```text
//! master key (key file or MAMORI_MASTER_KEY)
//!   └─ HKDF → master wrapping key ── wraps ─┬─ per-collection key-encryption key (KEK)
//!                                           └─ per-collection index key
//! KEK ── wraps ── per-data-subject data key (DEK) ── encrypts ── field values (AES-256-GCM)
//! index key ── HKDF per field ── HMAC-SHA-256 ── blind-index tokens
//! ```
//!
//! Destroying a subject's wrapped DEK makes every ciphertext of that subject unreadable
//! (crypto-shredding). Rotating a KEK re-wraps DEKs only; field ciphertexts stay as they are.
//!
//! The second factor (`totp.rs`) is RFC 6238 TOTP computed by `totp-rs` over RustCrypto's
//! HMAC-SHA-1, with one-time recovery codes stored as SHA-256 (004-V-2-5, 002-T-3-b).
//! Apart from the hierarchy, an ECDSA P-256 key of its own signs audit checkpoints
//! (`signing.rs`); it is never derived from the master key.

mod blind;
mod error;
mod field;
mod keys;
mod password;
mod signing;
mod token;
mod totp;

pub use blind::{BlindIndexer, FieldIndexer, TOKEN_LEN, Token};
pub use error::{CryptoError, Result};
pub use field::{FieldAad, FieldCipher};
pub use keys::{DataKey, IndexKey, Kek, KeyWrapper, MasterKey, SecretKey};
pub use password::{PasswordHasher, SecretString};
pub use signing::{AuditSigningKey, AuditVerifyingKey, SIGNATURE_LEN};
pub use token::{SessionToken, constant_time_eq, sha256};
pub use totp::{
    RECOVERY_CODE_COUNT, RecoveryCodes, TOTP_DIGITS, TOTP_ISSUER, TOTP_SECRET_LEN, TOTP_SKEW_STEPS, TOTP_STEP_SECS,
    TotpSecret, verify_recovery_code,
};
