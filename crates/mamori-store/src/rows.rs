//! Row types crossing the storage interface. Byte fields are ciphertexts, wrapped keys or
//! blind-index tokens — never plaintext personal values.

use mamori_core::audit::{AuditEvent, AuditEventView, CheckpointKind};
use mamori_core::ids::{RecordId, UserId};
use time::OffsetDateTime;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCollection {
    pub name: String,
    pub schema_json: String,
    pub kek: WrappedKek,
    /// Blind-index key wrapped under the master key.
    pub wrapped_index_key: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionRow {
    pub id: i64,
    pub name: String,
    pub schema_version: u32,
    /// The KEK version that wraps new subject keys.
    pub kek_version: u32,
    pub wrapped_index_key: Vec<u8>,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKek {
    pub version: u32,
    pub wrapped: Vec<u8>,
}

/// A value sealed directly under the master key (not under a collection key): a master-key
/// rotation must re-seal every one of them, or it would become unreadable with the old key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SealedKind {
    /// `users.totp_secret`, keyed by the user id (UUID text).
    TotpSecret,
    /// `break_glass_grants.reason`.
    GrantReason,
    /// `export_requests.spec`.
    ExportSpec,
    /// `export_requests.secret` (the file password).
    ExportSecret,
    /// `export_shares.sealed` (a share held for its custodian), keyed
    /// `<export id>/<index>/<custodian id>`.
    HeldShare,
}

impl SealedKind {
    pub const ALL: [SealedKind; 5] = [
        SealedKind::TotpSecret,
        SealedKind::GrantReason,
        SealedKind::ExportSpec,
        SealedKind::ExportSecret,
        SealedKind::HeldShare,
    ];

    /// The table and column that hold it; the same in both backends.
    pub fn table_column(self) -> (&'static str, &'static str) {
        match self {
            SealedKind::TotpSecret => ("users", "totp_secret"),
            SealedKind::GrantReason => ("break_glass_grants", "reason"),
            SealedKind::ExportSpec => ("export_requests", "spec"),
            SealedKind::ExportSecret => ("export_requests", "secret"),
            SealedKind::HeldShare => ("export_shares", "sealed"),
        }
    }
}

/// One master-sealed value and the row it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedValue {
    pub kind: SealedKind,
    pub id: String,
    pub sealed: Vec<u8>,
}

/// Everything a master-key rotation rewrites, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct MasterRewrap {
    /// Every KEK of every collection, wrapped under the new master key.
    pub keks: Vec<(i64, WrappedKek)>,
    /// Every collection's index key, wrapped under the new master key.
    pub index_keys: Vec<(i64, Vec<u8>)>,
    /// Every master-sealed value: as read (the store refuses the rotation if it changed
    /// meanwhile) and re-sealed under the new key.
    pub sealed: Vec<(SealedValue, Vec<u8>)>,
    /// The key check as read before the rotation began: the store refuses the rotation if
    /// it changed meanwhile (another rotation got there first).
    pub previous_key_check: Vec<u8>,
    /// The new key check.
    pub key_check: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectKeyRow {
    pub subject: String,
    pub kek_version: u32,
    pub wrapped_dek: Vec<u8>,
}

/// A blind-index entry of a record. `unique` entries are also held to uniqueness within the
/// collection by the database itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexToken {
    pub token: Vec<u8>,
    pub unique: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordRow {
    pub id: RecordId,
    pub collection_id: i64,
    pub subject: String,
    /// Owning department code (not personal data: policies decide on it); `None` where the
    /// organisation does not use departments.
    pub department: Option<String>,
    pub schema_version: u32,
    /// Encrypted field values, encoded by the vault (opaque here).
    pub fields: Vec<u8>,
    pub tokens: Vec<IndexToken>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ErasureCounts {
    pub keys_destroyed: u64,
    pub records_deleted: u64,
}

/// Evidence that a subject's data was erased. No personal data: ids, counts, time, actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureCertificateRow {
    pub id: String,
    pub subject: String,
    pub erased_at: OffsetDateTime,
    /// The certificate as JSON (what, when, by whom, method).
    pub body_json: String,
    /// Filled in by the store with what the erasure transaction actually removed.
    pub keys_destroyed: u64,
    pub records_deleted: u64,
}

/// `Debug` leaves out the person's name, login, department and title and the password hash
/// and TOTP secret: rows reach error messages and test output.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: UserId,
    pub login: String,
    pub display_name: String,
    pub role: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub must_change_password: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    pub department: Option<String>,
    pub title: Option<String>,
    /// After this instant the account no longer authenticates (contract end, vendor access).
    pub valid_until: Option<OffsetDateTime>,
    /// A temporary vendor (委託先) account: must have `valid_until`.
    pub vendor: bool,
    /// Consecutive failed logins since the last success.
    pub failed_logins: u32,
    pub locked_until: Option<OffsetDateTime>,
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
    /// TOTP secret wrapped under the master key; `None` until the user enrols.
    pub totp_secret: Option<Vec<u8>>,
    /// Last TOTP time step accepted, so that a code is never accepted twice.
    pub totp_last_step: Option<u64>,
    /// Highest classification tier cleared for (tier slug); `None`: the default clearance.
    pub clearance: Option<String>,
    /// Security training is valid until this instant (the training workflow maintains it).
    pub training_valid_until: Option<OffsetDateTime>,
    /// When the confidentiality pledge (誓約書) was signed.
    pub pledge_signed_at: Option<OffsetDateTime>,
    /// The last access review that confirmed this account, and who made it.
    pub reviewed_at: Option<OffsetDateTime>,
    pub reviewed_by: Option<String>,
    /// The account's own access window (`mamori_core::access_window::AccessWindow` as JSON),
    /// replacing its role's; `None`: the role's window applies.
    pub access_window: Option<String>,
    /// When an administrator last enabled (or activated) the account: dormancy counts from
    /// the latest of this, the last login and creation.
    pub enabled_at: Option<OffsetDateTime>,
}

impl UserRow {
    /// A new account with no history: the fields an account starts with.
    pub fn new(
        id: UserId,
        login: String,
        display_name: String,
        role: String,
        password_hash: String,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            login,
            display_name,
            role,
            password_hash,
            must_change_password: true,
            disabled: false,
            created_at,
            department: None,
            title: None,
            valid_until: None,
            vendor: false,
            failed_logins: 0,
            locked_until: None,
            last_login_at: None,
            password_changed_at: created_at,
            totp_secret: None,
            totp_last_step: None,
            clearance: None,
            training_valid_until: None,
            pledge_signed_at: None,
            reviewed_at: None,
            reviewed_by: None,
            access_window: None,
            enabled_at: None,
        }
    }

    /// Since when the account has gone unused: its last login, or when an administrator
    /// last enabled it, or its creation — whichever is latest (auth.dormant_days).
    pub fn idle_since(&self) -> OffsetDateTime {
        [self.last_login_at, self.enabled_at].into_iter().flatten().fold(self.created_at, OffsetDateTime::max)
    }
}

/// What an administrator may change about an account. `Debug` leaves out the name,
/// department and title.
#[derive(Clone, PartialEq, Eq)]
pub struct UserProfile {
    pub display_name: String,
    pub department: Option<String>,
    pub title: Option<String>,
    pub role: String,
    pub valid_until: Option<OffsetDateTime>,
    pub vendor: bool,
    pub clearance: Option<String>,
    pub training_valid_until: Option<OffsetDateTime>,
    pub pledge_signed_at: Option<OffsetDateTime>,
    pub access_window: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// SHA-256 of the bearer token; the token itself is never stored.
    pub token_hash: [u8; 32],
    pub user_id: UserId,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// A session that may only change its own password (first login, reset).
    pub password_change_only: bool,
    /// The login presented a second factor.
    pub mfa: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: u64,
    /// The canonical JSON that the chain hash covers.
    pub event_json: String,
    pub hash: [u8; 32],
    /// Copies of some event fields in columns of their own, for indexed queries. The hash does
    /// not cover them, so verification checks that they agree with `event_json`.
    pub columns: AuditColumns,
}

/// The indexed columns of an audit event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuditColumns {
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub collection: Option<String>,
    pub record: Option<String>,
    pub subject: Option<String>,
}

impl AuditColumns {
    pub fn of(e: &AuditEvent) -> Self {
        Self {
            at: to_micros(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            outcome: e.outcome.as_str().to_owned(),
            collection: e.collection.clone(),
            record: e.record.clone(),
            subject: e.subject.clone(),
        }
    }

    pub fn as_ref(&self) -> AuditColumnsRef<'_> {
        AuditColumnsRef {
            at: self.at,
            actor: &self.actor,
            action: &self.action,
            outcome: &self.outcome,
            collection: self.collection.as_deref(),
            record: self.record.as_deref(),
            subject: self.subject.as_deref(),
        }
    }

    /// Whether the columns say what the event says (see [`AuditColumnsRef::agree_with`]).
    pub fn agree_with(&self, e: &AuditEvent) -> bool {
        self.as_ref().agree_with(&AuditColumnsRef::of(e))
    }
}

/// The indexed columns of an audit event, borrowed: from a stored row, an event or an
/// event parsed in place. Comparing these allocates nothing, which matters to verification:
/// it compares them for every event of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditColumnsRef<'a> {
    /// Microseconds since the Unix epoch.
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub collection: Option<&'a str>,
    pub record: Option<&'a str>,
    pub subject: Option<&'a str>,
}

/// The columns of an event or an event view: the same field names in both.
macro_rules! columns_of {
    ($e:expr) => {
        AuditColumnsRef {
            at: to_micros($e.at),
            actor: &$e.actor,
            action: &$e.action,
            outcome: $e.outcome.as_str(),
            collection: $e.collection.as_deref(),
            record: $e.record.as_deref(),
            subject: $e.subject.as_deref(),
        }
    };
}

impl<'a> AuditColumnsRef<'a> {
    pub fn of(e: &'a AuditEvent) -> Self {
        columns_of!(e)
    }

    pub fn of_view(e: &'a AuditEventView<'_>) -> Self {
        columns_of!(e)
    }

    /// Whether two sets of columns say the same. Times agree to within a millisecond:
    /// columns back-filled by a migration were computed by the database at that precision.
    pub fn agree_with(&self, other: &AuditColumnsRef<'_>) -> bool {
        // Every column named, so that a new one cannot be left out of the comparison.
        let Self { at, actor, action, outcome, collection, record, subject } = *self;
        (other.at - at).abs() <= 1_000
            && actor == other.actor
            && action == other.action
            && outcome == other.outcome
            && collection == other.collection
            && record == other.record
            && subject == other.subject
    }
}

impl AuditRow {
    pub fn as_ref(&self) -> AuditRowRef<'_> {
        AuditRowRef {
            seq: self.seq,
            event_json: &self.event_json,
            hash: &self.hash,
            columns: Some(self.columns.as_ref()),
        }
    }
}

/// An [`AuditRow`], borrowed. `columns` is `None` when the row was read without them (see
/// [`crate::Store::read_audit_page`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRowRef<'a> {
    pub seq: u64,
    pub event_json: &'a str,
    pub hash: &'a [u8; 32],
    pub columns: Option<AuditColumnsRef<'a>>,
}

impl AuditRowRef<'_> {
    /// The row, owned; columns read without them are left empty.
    pub fn to_row(&self) -> AuditRow {
        let columns = self.columns.map_or_else(AuditColumns::default, |c| AuditColumns {
            at: c.at,
            actor: c.actor.to_owned(),
            action: c.action.to_owned(),
            outcome: c.outcome.to_owned(),
            collection: c.collection.map(str::to_owned),
            record: c.record.map(str::to_owned),
            subject: c.subject.map(str::to_owned),
        });
        AuditRow { seq: self.seq, event_json: self.event_json.to_owned(), hash: *self.hash, columns }
    }
}

/// Where one text column of a packed row lies in its page's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PackedColumns {
    at: i64,
    actor: Span,
    action: Span,
    outcome: Span,
    collection: Option<Span>,
    record: Option<Span>,
    subject: Option<Span>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PackedAuditRow {
    seq: u64,
    hash: [u8; 32],
    event_json: Span,
    columns: Option<PackedColumns>,
}

/// A page of audit rows whose text shares one buffer: what `mamori audit verify` reads, a few
/// allocations per page instead of eight per row ([`crate::Store::read_audit_page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRowPage {
    text: String,
    rows: Vec<PackedAuditRow>,
}

impl AuditRowPage {
    pub fn with_capacity(rows: usize, text_bytes: usize) -> Self {
        Self { text: String::with_capacity(text_bytes), rows: Vec::with_capacity(rows) }
    }

    /// Appends a copy of `row`. Pages are bounded by their reader's `limit`, far below 4 GiB
    /// of text; a larger page is refused rather than truncated.
    pub fn push(&mut self, row: &AuditRowRef<'_>) -> crate::Result<()> {
        let mut put = |s: &str| -> crate::Result<Span> {
            let span = u32::try_from(self.text.len())
                .ok()
                .zip(u32::try_from(s.len()).ok())
                .filter(|(start, len)| start.checked_add(*len).is_some());
            let Some((start, len)) = span else {
                return Err(crate::StoreError::Backend("an audit page over 4 GiB".into()));
            };
            self.text.push_str(s);
            Ok(Span { start, len })
        };
        let event_json = put(row.event_json)?;
        let columns = match &row.columns {
            None => None,
            Some(c) => Some(PackedColumns {
                at: c.at,
                actor: put(c.actor)?,
                action: put(c.action)?,
                outcome: put(c.outcome)?,
                collection: c.collection.map(&mut put).transpose()?,
                record: c.record.map(&mut put).transpose()?,
                subject: c.subject.map(&mut put).transpose()?,
            }),
        };
        self.rows.push(PackedAuditRow { seq: row.seq, hash: *row.hash, event_json, columns });
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<AuditRowRef<'_>> {
        let r = self.rows.get(i)?;
        let text = |s: Span| &self.text[s.start as usize..(s.start + s.len) as usize];
        Some(AuditRowRef {
            seq: r.seq,
            event_json: text(r.event_json),
            hash: &r.hash,
            columns: r.columns.as_ref().map(|c| AuditColumnsRef {
                at: c.at,
                actor: text(c.actor),
                action: text(c.action),
                outcome: text(c.outcome),
                collection: c.collection.map(text),
                record: c.record.map(text),
                subject: c.subject.map(text),
            }),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = AuditRowRef<'_>> {
        (0..self.rows.len()).filter_map(|i| self.get(i))
    }
}

/// One match rule on the action of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionMatch {
    Exact(String),
    /// Non-empty, printable ASCII (actions are `[a-z_.]`), compared byte by byte.
    Prefix(String),
}

/// A filtered page of the audit trail: events with `seq > after_seq` that match every given
/// filter, in sequence order, at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuditQuery {
    pub after_seq: u64,
    pub limit: usize,
    /// Inclusive.
    pub from: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
    pub actor: Option<String>,
    pub subject: Option<String>,
    pub collection: Option<String>,
    pub record: Option<String>,
    /// Any of these (empty: every action).
    pub actions: Vec<ActionMatch>,
    pub outcome: Option<String>,
}

/// The exclusive upper bound of the byte range that starts with `prefix`: its last byte plus
/// one. `None` when the prefix is not printable ASCII.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let bytes = prefix.as_bytes();
    let last = *bytes.last()?;
    if !bytes.iter().all(|b| (0x20..0x7e).contains(b)) {
        return None;
    }
    let mut upper = bytes[..bytes.len() - 1].to_vec();
    upper.push(last + 1);
    String::from_utf8(upper).ok()
}

/// A signed checkpoint or pruning anchor as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub kind: CheckpointKind,
    pub seq: u64,
    pub head_hash: [u8; 32],
    pub at: OffsetDateTime,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// Timestamps are stored as microseconds since the Unix epoch in both backends.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Tokens of a record as one blob (16 bytes each, then one byte per token for `unique`), kept
/// in the record row so that deleting a record knows which index entries to remove.
pub fn encode_tokens(tokens: &[IndexToken]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tokens.len() * 17);
    for t in tokens {
        out.extend_from_slice(&t.token);
    }
    out.extend(tokens.iter().map(|t| u8::from(t.unique)));
    out
}

pub fn decode_tokens(blob: &[u8]) -> crate::Result<Vec<IndexToken>> {
    const LEN: usize = 16;
    if !blob.len().is_multiple_of(LEN + 1) {
        return Err(crate::StoreError::Corrupt("token list length".into()));
    }
    let n = blob.len() / (LEN + 1);
    let (tokens, flags) = blob.split_at(n * LEN);
    Ok(tokens.chunks(LEN).zip(flags).map(|(t, f)| IndexToken { token: t.to_vec(), unique: *f == 1 }).collect())
}

/// One version of the editable authorization policies. Versions only grow, and a version is
/// approved only while the version it was proposed against is still the active one, so the
/// active policies are always the highest approved version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVersionRow {
    /// Assigned by the store on insert.
    pub version: u64,
    /// The active version when this one was proposed (`None` for the first).
    pub base_version: Option<u64>,
    /// Cedar policy text (the guardrails are not part of it).
    pub policies: String,
    /// Why the change is made, in the proposer's words.
    pub summary: String,
    pub proposed_by: String,
    pub proposed_at: OffsetDateTime,
    pub status: Decision,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
}

/// The state of something that needs a second person's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Pending,
    Approved,
    Rejected,
    /// Approved, then ended early.
    Revoked,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Pending => "pending",
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Result<Self, crate::StoreError> {
        Ok(match s {
            "pending" => Decision::Pending,
            "approved" => Decision::Approved,
            "rejected" => Decision::Rejected,
            "revoked" => Decision::Revoked,
            other => return Err(crate::StoreError::Corrupt(format!("decision `{other}`"))),
        })
    }
}

/// A decision on a break-glass grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantChange {
    pub from: Decision,
    pub to: Decision,
    pub by: String,
    pub at: OffsetDateTime,
    /// Set on approval.
    pub expires_at: Option<OffsetDateTime>,
}

/// A break-glass grant: time-boxed read access to one collection for one user, effective
/// only once a second administrator approved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRow {
    pub id: String,
    pub user_id: UserId,
    pub collection: String,
    /// The written reason, sealed under the master key (it may name people).
    pub reason: Vec<u8>,
    pub minutes: u32,
    pub requested_by: String,
    pub requested_at: OffsetDateTime,
    pub status: Decision,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    /// Set on approval: `decided_at + minutes`.
    pub expires_at: Option<OffsetDateTime>,
}

/// Where an export request stands. `Closed` means every copy taken out was returned or
/// disposed of, and confirmed in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportStatus {
    Pending,
    Approved,
    Rejected,
    /// Withdrawn by the requester before a decision.
    Cancelled,
    Closed,
}

impl ExportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportStatus::Pending => "pending",
            ExportStatus::Approved => "approved",
            ExportStatus::Rejected => "rejected",
            ExportStatus::Cancelled => "cancelled",
            ExportStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, crate::StoreError> {
        Ok(match s {
            "pending" => ExportStatus::Pending,
            "approved" => ExportStatus::Approved,
            "rejected" => ExportStatus::Rejected,
            "cancelled" => ExportStatus::Cancelled,
            "closed" => ExportStatus::Closed,
            other => return Err(crate::StoreError::Corrupt(format!("export status `{other}`"))),
        })
    }
}

/// Where one share of a split export held for its custodian stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareState {
    /// Sealed in the store, waiting for its custodian.
    Held,
    /// Handed to its custodian; the store keeps no copy.
    Fetched,
    /// Destroyed unfetched (the window closed, or the export was closed).
    Discarded,
}

impl ShareState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareState::Held => "held",
            ShareState::Fetched => "fetched",
            ShareState::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Result<Self, crate::StoreError> {
        Ok(match s {
            "held" => ShareState::Held,
            "fetched" => ShareState::Fetched,
            "discarded" => ShareState::Discarded,
            other => return Err(crate::StoreError::Corrupt(format!("share state `{other}`"))),
        })
    }
}

/// One share of a secret-split export, made for a named custodian and held (sealed under the
/// master key) until that custodian fetches it: no one person, the requester included, is
/// handed the whole set.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldShare {
    pub export_id: String,
    /// 1-based index of the share in its set.
    pub index: u8,
    pub custodian_id: UserId,
    /// The custodian's login (for listings and the ledger).
    pub custodian: String,
    pub held_at: OffsetDateTime,
    pub state: ShareState,
    /// When it was fetched or discarded.
    pub ended_at: Option<OffsetDateTime>,
    /// The sealed share file: only while `Held`, and only from [`crate::Store::take_export_share`]
    /// (listings leave it out).
    pub sealed: Option<Vec<u8>>,
}

impl HeldShare {
    /// The row's key, `<export id>/<index>/<custodian id>`, which is also what the sealed
    /// share is bound to: a share moved to another custodian's row no longer opens.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.export_id, self.index, self.custodian_id)
    }
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("must_change_password", &self.must_change_password)
            .field("vendor", &self.vendor)
            .field("valid_until", &self.valid_until)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .field("clearance", &self.clearance)
            .field("totp_enrolled", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UserProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserProfile")
            .field("role", &self.role)
            .field("valid_until", &self.valid_until)
            .field("vendor", &self.vendor)
            .field("clearance", &self.clearance)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HeldShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldShare")
            .field("export_id", &self.export_id)
            .field("index", &self.index)
            .field("custodian", &self.custodian)
            .field("state", &self.state)
            .field("sealed", &self.sealed.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// A take-out (export) request. What is asked for (fields, filter, purpose, recipient) is
/// sealed under the master key in `spec`: the filter may hold a searched value and the
/// recipient names a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRow {
    pub id: String,
    pub user_id: UserId,
    pub requested_by: String,
    pub requested_at: OffsetDateTime,
    pub collection: String,
    pub spec: Vec<u8>,
    /// Records the filter matched when the request was made.
    pub rows: u64,
    /// `password` (encrypted XLSX/CSV), `age`, `split` (秘密分散) or `none` (unencrypted).
    pub protection: String,
    pub status: ExportStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    /// Set on approval: the end of the download window.
    pub download_until: Option<OffsetDateTime>,
    pub downloads_allowed: u32,
    pub downloads_used: u32,
    /// When the data must be returned or disposed of.
    pub due_at: OffsetDateTime,
    /// Set on approval for password-protected files: the file password, sealed.
    pub secret: Option<Vec<u8>>,
}

/// A move of an export request from one status to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportChange {
    pub from: ExportStatus,
    pub to: ExportStatus,
    /// Recorded as the decider when leaving `Pending`.
    pub by: String,
    pub at: OffsetDateTime,
    pub download_until: Option<OffsetDateTime>,
    pub secret: Option<Vec<u8>>,
}

/// One line of the take-out ledger (持ち出し管理台帳). `detail` is JSON holding ids, counts,
/// methods and logins only, never a personal value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    /// Assigned by the store on insert (ignored when adding).
    pub seq: u64,
    pub export_id: Option<String>,
    /// request, approve, reject, cancel, download, share, return, dispose, print, alert.
    pub kind: String,
    pub at: OffsetDateTime,
    pub actor: String,
    /// The account whose take-out this line counts towards (daily thresholds).
    pub user_id: Option<UserId>,
    pub rows: u64,
    pub detail: String,
}

/// A committed change that caches above the store must follow (see [`crate::Store::changes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A policy version was proposed, approved or rejected: the active one may differ.
    Policy,
    /// A collection, its schema, its KEKs or its index key changed.
    Collections,
    /// The master key was rotated (the key check changed).
    MasterKey,
    /// Notifications may have been missed (the listener reconnected): assume anything changed.
    Everything,
}

impl Change {
    /// The name the PostgreSQL triggers send.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "policy" => Some(Change::Policy),
            "collections" => Some(Change::Collections),
            "master_key" => Some(Change::MasterKey),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_rows_keep_names_and_secrets_out_of_debug() {
        let mut user = UserRow::new(
            UserId::generate(),
            "suzuki.h".into(),
            "鈴木 花子".into(),
            "staff".into(),
            "$argon2id$v=19$secret-hash".into(),
            OffsetDateTime::UNIX_EPOCH,
        );
        (user.department, user.title, user.totp_secret) =
            (Some("経理部".into()), Some("課長".into()), Some(vec![7; 40]));
        let profile = UserProfile {
            display_name: user.display_name.clone(),
            department: user.department.clone(),
            title: user.title.clone(),
            role: "staff".into(),
            valid_until: None,
            vendor: false,
            clearance: None,
            training_valid_until: None,
            pledge_signed_at: None,
            access_window: None,
        };
        for shown in [format!("{user:?}"), format!("{profile:?}")] {
            for hidden in ["suzuki.h", "鈴木", "経理部", "課長", "argon2id", "7, 7"] {
                assert!(!shown.contains(hidden), "{hidden} in {shown}");
            }
        }
        assert!(format!("{user:?}").contains(&user.id.to_string()));
    }
}
