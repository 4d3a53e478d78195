//! Newtypes for every identifier, so that a record id can never be passed where a subject
//! id is expected, and so that every id is validated once, at the edge.

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

fn invalid(kind: &'static str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidId { kind, reason: reason.into() }
}

/// Name of a collection: `[a-z][a-z0-9_]{0,62}`. It appears in URLs, audit events and
/// associated data, so it is deliberately restricted to a boring alphabet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectionName(String);

impl CollectionName {
    pub fn new(name: &str) -> Result<Self> {
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        if !first_ok
            || name.len() > 63
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid("collection name", "must match [a-z][a-z0-9_]{0,62}"));
        }
        Ok(Self(name.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CollectionName {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(&value)
    }
}
impl From<CollectionName> for String {
    fn from(value: CollectionName) -> Self {
        value.0
    }
}
impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifier of a data subject (本人).
///
/// It is the *pseudonymous* key the source system uses for a person (customer number,
/// employee number), never a personal value such as an individual number, a phone number
/// or an e-mail address: subject ids appear in audit events and erasure certificates,
/// which must not contain personal data. Hence the narrow alphabet `[A-Za-z0-9._:-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);

impl SubjectId {
    pub fn new(id: &str) -> Result<Self> {
        if id.is_empty()
            || id.len() > 64
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        {
            return Err(invalid("subject id", "must match [A-Za-z0-9._:-]{1,64}"));
        }
        Ok(Self(id.to_owned()))
    }
    /// A fresh random subject id, for imports that do not carry one.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for SubjectId {
    type Error = CoreError;
    fn try_from(value: String) -> Result<Self> {
        Self::new(&value)
    }
}
impl From<SubjectId> for String {
    fn from(value: SubjectId) -> Self {
        value.0
    }
}
impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $gen:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn generate() -> Self {
                Self(Uuid::$gen())
            }
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                Uuid::from_slice(bytes)
                    .map(Self)
                    .map_err(|_| invalid($kind, "must be 16 bytes"))
            }
        }
        impl FromStr for $name {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| invalid($kind, "must be a UUID"))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identifier of a record. UUIDv7, so that ids sort by creation time and inserts land
    /// at the right edge of the B-tree instead of scattering over it.
    RecordId,
    "record id",
    now_v7
);
uuid_id!(
    /// Identifier of a user account. Accounts are never deleted, so a user id in an old audit
    /// event always resolves.
    UserId,
    "user id",
    new_v4
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names() {
        for ok in ["customers", "a", "employees_2026"] {
            assert!(CollectionName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Customers", "1abc", "a-b", "顧客", &"a".repeat(64)] {
            assert!(CollectionName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subject_ids() {
        assert!(SubjectId::new("S00000001").is_ok());
        assert!(SubjectId::new("emp:2026-001").is_ok());
        for bad in ["", "山田", "a b", "a/b", &"x".repeat(65)] {
            assert!(SubjectId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn record_ids_round_trip() {
        let id = RecordId::generate();
        assert_eq!(id.to_string().parse::<RecordId>().unwrap(), id);
        assert_eq!(RecordId::from_slice(id.as_bytes()).unwrap(), id);
        assert!("nope".parse::<RecordId>().is_err());
    }
}
