//! Audit events and the hash chain that makes them tamper-evident.
//!
//! An event carries ids only — never a field value (001-20-tech-4-2: logs may themselves
//! leak). Every access, success and failure, is recorded (001-20-tech-4-1, 000-8-access-7,
//! 004-V-1-3, 004-V-1-32); the chain protects the log from tampering (002-S-11-b,
//! 004-V-1-4-c, 004-V-1-33-c). The chain hash of
//! event *n* is `SHA-256("mamori-audit-v1" ‖ hash(n-1) ‖ seq ‖ canonical JSON of n)`, so any
//! modification, deletion, insertion or reordering breaks every later hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

/// One audit event as the application describes it, before it has a place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `user:<uuid>`, `cli:<os user>` or `anonymous`.
    pub actor: String,
    /// Short, non-secret session reference (a prefix of the token hash), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
}

impl AuditEvent {
    pub fn new(at: OffsetDateTime, actor: impl Into<String>, action: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            at,
            actor: actor.into(),
            session: None,
            source: None,
            action: action.into(),
            collection: None,
            record: None,
            subject: None,
            fields: Vec::new(),
            outcome,
            reason: None,
            rows: None,
            purpose: None,
        }
    }

    /// The exact bytes that are stored and hashed. Struct field order is fixed, so the JSON
    /// is canonical for a given event.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("an audit event always serialises")
    }
}

pub const GENESIS_HASH: [u8; 32] = [0; 32];

pub fn chain_hash(prev: &[u8; 32], seq: u64, canonical_json: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mamori-audit-v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(canonical_json.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_everything() {
        let e = AuditEvent::new(OffsetDateTime::UNIX_EPOCH, "cli:root", "record.read", Outcome::Success);
        let json = e.canonical_json();
        let h1 = chain_hash(&GENESIS_HASH, 1, &json);
        assert_ne!(h1, chain_hash(&GENESIS_HASH, 2, &json));
        assert_ne!(h1, chain_hash(&[1; 32], 1, &json));
        assert_ne!(h1, chain_hash(&GENESIS_HASH, 1, &json.replace("root", "toor")));
        assert_eq!(
            AuditEvent::new(OffsetDateTime::UNIX_EPOCH, "cli:root", "record.read", Outcome::Success).canonical_json(),
            json
        );
    }
}
