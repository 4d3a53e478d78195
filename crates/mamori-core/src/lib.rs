//! Domain types shared by every layer of mamori.
//!
//! This crate knows nothing about storage, HTTP or key material. It defines what a
//! collection, a field, a record and an audit event *are*, and the pure functions on them:
//! validation and normalisation of field values (which feed the blind index) and masking
//! (which decides what a person without the full-view right sees). It also holds the
//! password policy, which is pure too: which passwords are acceptable and when they expire.

pub mod access;
pub mod access_window;
pub mod audit;
pub mod clock;
pub mod error;
pub mod ids;
pub mod mask;
pub mod normalize;
pub mod password_policy;
pub mod schema;
pub mod value;

pub use error::{CoreError, Result};
pub use password_policy::{
    NormalizedPassword, PasswordContext, PasswordPolicy, PasswordPolicySettings, PasswordPreset, PasswordRejection,
    PasswordViolation, normalize_password,
};
