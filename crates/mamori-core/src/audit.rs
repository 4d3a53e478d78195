//! Audit events and the hash chain that makes them tamper-evident.
//!
//! An event carries ids only — never a field value (001-20-tech-4-2: logs may themselves
//! leak). Every access, success and failure, is recorded (001-20-tech-4-1, 000-8-access-7,
//! 004-V-1-3, 004-V-1-32); the chain protects the log from tampering (002-S-11-b,
//! 004-V-1-4-c, 004-V-1-33-c). The chain hash of
//! event *n* is `SHA-256("mamori-audit-v1" ‖ hash(n-1) ‖ seq ‖ canonical JSON of n)`, so any
//! modification, deletion, insertion or reordering breaks every later hash.
//!
//! The chain alone has no secret: someone who can write the database could recompute every
//! hash after a change. Signed [`Checkpoint`]s close that gap — ECDSA P-256 over
//! (kind, sequence number, head hash, time, key id) with a key kept apart from the data —
//! and their copies in an external append-only file make truncation visible too.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Outcome::Success, Outcome::Denied, Outcome::Failure]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome `{s}` (success, denied or failure)"))
    }
}

/// Actions that are administrator operations, to be reviewed by someone else (004-V-1-23,
/// 004-V-1-24, 002-T-4-a): account and role management, collection and schema changes, key
/// rotation and audit pruning. Prefixes: `user.` covers every account operation.
pub const ADMIN_ACTION_PREFIXES: &[&str] =
    &["user.", "collection.create", "collection.update_schema", "keys.", "audit.prune"];

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
    /// Ids of the policies that decided an authorization (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The break-glass grant that opened this access, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// `audit.review`: the last sequence number whose administrator operations were reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed_to: Option<u64>,
    /// `audit.review`: the reviewer's remark (ids and findings, never personal values);
    /// `store.migrate`: the source and the rows copied per table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
            policy: None,
            grant: None,
            rows: None,
            purpose: None,
            reviewed_to: None,
            note: None,
        }
    }

    /// The exact bytes that are stored and hashed. Struct field order is fixed, so the JSON
    /// is canonical for a given event.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("an audit event always serialises")
    }
}

/// An [`AuditEvent`] parsed in place: the same fields with the same types, strings borrowed
/// from the JSON wherever it has no escapes. It accepts exactly the JSON that `AuditEvent`
/// accepts (a test holds the two together), without a heap allocation per string, for
/// `mamori audit verify`, which checks the form and indexed columns of every event.
#[derive(Debug, Deserialize)]
pub struct AuditEventView<'a> {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(borrow)]
    pub actor: Text<'a>,
    #[serde(default, borrow)]
    pub session: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub source: Option<Text<'a>>,
    #[serde(borrow)]
    pub action: Text<'a>,
    #[serde(default, borrow)]
    pub collection: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub record: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub subject: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub fields: Vec<Text<'a>>,
    pub outcome: Outcome,
    #[serde(default, borrow)]
    pub reason: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub policy: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub grant: Option<Text<'a>>,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default, borrow)]
    pub purpose: Option<Text<'a>>,
    #[serde(default)]
    pub reviewed_to: Option<u64>,
    #[serde(default, borrow)]
    pub note: Option<Text<'a>>,
}

/// A string of an [`AuditEventView`]: borrowed from the JSON unless it had escapes. (serde
/// borrows a `Cow<str>` only as a field of its own, not inside an `Option` or a `Vec`.)
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
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

/// Microseconds since the Unix epoch: the resolution of stored times and of signed checkpoints.
pub fn unix_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// `t` cut to whole microseconds, so that it survives storage unchanged.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros(t)) * 1_000).unwrap_or(t)
}

/// A regular checkpoint, or the anchor that pruning leaves behind: "events up to `seq` were
/// deleted; the last of them had this hash".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointKind {
    Checkpoint,
    Anchor,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Anchor => "anchor",
        }
    }
}

impl std::str::FromStr for CheckpointKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "checkpoint" => Ok(CheckpointKind::Checkpoint),
            "anchor" => Ok(CheckpointKind::Anchor),
            other => Err(format!("unknown checkpoint kind `{other}`")),
        }
    }
}

/// What a checkpoint asserts: the chain's hash at `seq` was `head_hash`, at time `at`,
/// signed by key `key_id`. The kind is part of what is signed, so a checkpoint can never be
/// passed off as a pruning anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub kind: CheckpointKind,
    pub seq: u64,
    pub head_hash: [u8; 32],
    /// Whole microseconds (see [`truncate_to_micros`]).
    pub at: OffsetDateTime,
    pub key_id: String,
}

impl Checkpoint {
    /// The canonical bytes that are signed: a domain tag, then every field with a fixed width
    /// or a length prefix, so that no two checkpoints share an encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let kind = self.kind.as_str().as_bytes();
        let key_id = self.key_id.as_bytes();
        let mut out = Vec::with_capacity(64 + kind.len() + key_id.len());
        out.extend_from_slice(b"mamori-audit-checkpoint-v1\0");
        out.push(kind.len() as u8);
        out.extend_from_slice(kind);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.head_hash);
        out.extend_from_slice(&unix_micros(self.at).to_be_bytes());
        out.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
        out.extend_from_slice(key_id);
        out
    }
}

/// A checkpoint with its signature, as one line of the external checkpoint file (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    pub kind: CheckpointKind,
    pub seq: u64,
    /// Hex.
    pub head_hash: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub key_id: String,
    /// Hex of the 64-byte ECDSA P-256 signature `r ‖ s`.
    pub signature: String,
}

impl SignedCheckpoint {
    pub fn new(c: &Checkpoint, signature: &[u8]) -> Self {
        Self {
            kind: c.kind,
            seq: c.seq,
            head_hash: to_hex(&c.head_hash),
            at: c.at,
            key_id: c.key_id.clone(),
            signature: to_hex(signature),
        }
    }

    /// The checkpoint and its signature bytes, or `None` when a hex field is malformed.
    pub fn decode(&self) -> Option<(Checkpoint, Vec<u8>)> {
        let head_hash: [u8; 32] = from_hex(&self.head_hash)?.try_into().ok()?;
        let checkpoint =
            Checkpoint { kind: self.kind, seq: self.seq, head_hash, at: self.at, key_id: self.key_id.clone() };
        Some((checkpoint, from_hex(&self.signature)?))
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view, made owned, for comparison with the event.
    fn owned(v: AuditEventView<'_>) -> AuditEvent {
        let s = |c: Option<Text<'_>>| c.map(|t| t.0.into_owned());
        AuditEvent {
            at: v.at,
            actor: v.actor.0.into_owned(),
            session: s(v.session),
            source: s(v.source),
            action: v.action.0.into_owned(),
            collection: s(v.collection),
            record: s(v.record),
            subject: s(v.subject),
            fields: v.fields.into_iter().map(|t| t.0.into_owned()).collect(),
            outcome: v.outcome,
            reason: s(v.reason),
            policy: s(v.policy),
            grant: s(v.grant),
            rows: v.rows,
            purpose: s(v.purpose),
            reviewed_to: v.reviewed_to,
            note: s(v.note),
        }
    }

    #[test]
    fn the_view_accepts_exactly_what_the_event_accepts() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_000).unwrap();
        let mut e = AuditEvent::new(at, "user:0190c3a2", "record.read", Outcome::Denied);
        (e.session, e.source, e.collection) = (Some("abcd".into()), Some("10.0.0.1".into()), Some("customers".into()));
        (e.record, e.subject, e.fields) = (Some("r-1".into()), Some("S1".into()), vec!["name".into(), "住所".into()]);
        (e.reason, e.policy, e.grant) = (Some("a \"quoted\"\n reason".into()), Some("p1,p2".into()), Some("g".into()));
        (e.rows, e.purpose, e.reviewed_to, e.note) = (Some(7), Some("給与計算".into()), Some(12), Some("n".into()));
        let json = e.canonical_json();
        let view: AuditEventView<'_> = serde_json::from_str(&json).unwrap();
        assert!(matches!(view.actor.0, Cow::Borrowed(_)), "an unescaped string is borrowed");
        assert!(matches!(view.collection.as_ref().map(|t| &t.0), Some(Cow::Borrowed(_))), "also in an Option");
        assert!(matches!(view.fields[1].0, Cow::Borrowed(_)), "and in a Vec");
        assert!(matches!(view.reason.as_ref().map(|t| &t.0), Some(Cow::Owned(_))), "escapes are undone");
        assert_eq!(owned(view), e);

        let mut inputs = vec![
            AuditEvent::new(at, "cli:root", "audit.verify", Outcome::Success).canonical_json(),
            json.replace("}", ",\"unknown\":[1,{\"x\":null}]}"),
            json.replace("\"actor\":\"user:0190c3a2\"", "\"actor\":\"user:\\u0030190c3a2\""),
            json.replace("\"rows\":7", "\"rows\":\"7\""),
            json.replace("\"rows\":7", "\"rows\":-7"),
            json.replace("\"rows\":7", "\"rows\":null"),
            json.replace("\"denied\"", "\"maybe\""),
            json.replace("\"name\",", "1,"),
            json.replace("2027-", "2027/"),
            json.replace("\"grant\":\"g\"", "\"grant\":\"g\",\"grant\":\"h\""),
            json.replace("\"subject\":\"S1\"", "\"subject\":null"),
            format!("{json} "),
            format!("{json}x"),
            format!("[{json}]"),
            String::new(),
            "{}".into(),
        ];
        // Every key left out in turn.
        let keys =
            ["at", "actor", "session", "source", "action", "collection", "record", "subject", "fields", "outcome"];
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in keys.iter().chain(&["reason", "policy", "grant", "rows", "purpose", "reviewed_to", "note"]) {
            let mut v = value.clone();
            v.as_object_mut().unwrap().remove(*key);
            inputs.push(v.to_string());
        }
        for input in &inputs {
            let event = serde_json::from_str::<AuditEvent>(input);
            let view = serde_json::from_str::<AuditEventView<'_>>(input);
            assert_eq!(event.as_ref().ok(), view.ok().map(owned).as_ref(), "{input}");
        }
    }

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

    #[test]
    fn checkpoint_encoding_binds_every_field() {
        let c = Checkpoint {
            kind: CheckpointKind::Checkpoint,
            seq: 7,
            head_hash: [3; 32],
            at: OffsetDateTime::UNIX_EPOCH,
            key_id: "00112233aabbccdd".into(),
        };
        let base = c.signing_bytes();
        let variants = [
            Checkpoint { kind: CheckpointKind::Anchor, ..c.clone() },
            Checkpoint { seq: 8, ..c.clone() },
            Checkpoint { head_hash: [4; 32], ..c.clone() },
            Checkpoint { at: OffsetDateTime::UNIX_EPOCH + time::Duration::microseconds(1), ..c.clone() },
            Checkpoint { key_id: "00112233aabbccde".into(), ..c.clone() },
        ];
        for v in variants {
            assert_ne!(v.signing_bytes(), base, "{v:?}");
        }
        let signed = SignedCheckpoint::new(&c, &[9; 64]);
        let line = serde_json::to_string(&signed).unwrap();
        let back: SignedCheckpoint = serde_json::from_str(&line).unwrap();
        assert_eq!(back.decode().unwrap(), (c, vec![9; 64]));
        assert_eq!(from_hex("0aff"), Some(vec![10, 255]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }

    #[test]
    fn new_fields_leave_old_events_unchanged() {
        // Events written before `reviewed_to`/`note` existed must keep their exact bytes.
        let e = AuditEvent::new(OffsetDateTime::UNIX_EPOCH, "cli:root", "record.read", Outcome::Success);
        assert_eq!(
            e.canonical_json(),
            r#"{"at":"1970-01-01T00:00:00Z","actor":"cli:root","action":"record.read","outcome":"success"}"#
        );
        assert_eq!("denied".parse::<Outcome>().unwrap(), Outcome::Denied);
    }
}
