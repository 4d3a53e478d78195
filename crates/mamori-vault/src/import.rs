//! Bulk import from CSV: validate everything first, then write everything in one
//! transaction, streaming in both passes so memory stays flat whatever the file size.
//!
//! Pass 1 parses and validates every row (types, required fields, lengths, uniqueness within
//! the file and against the collection) and reports problems by line and column. Only a file
//! with no problem at all reaches pass 2, which parses it again, encrypts on one thread and
//! writes on another, inside a single store transaction: a failure or a killed process
//! leaves nothing behind (all or nothing).

use crate::error::{Result, RowError, VaultError};
use crate::keys::CollectionState;
use crate::records::{Values, seal_record};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::Outcome;
use mamori_core::ids::{RecordId, SubjectId};
use mamori_core::normalize::blind_index_form;
use mamori_core::schema::FieldDef;
use mamori_core::value;
use mamori_crypto::{DataKey, FieldCipher, Token};
use mamori_store::{RecordRow, Store, SubjectKeyRow};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;

const MAX_REPORTED_ERRORS: usize = 100;
const BATCH_ROWS: usize = 2000;
const SUBJECT_COLUMN: &str = "subject_id";

/// Where the CSV comes from. It is read twice (validate, then write), so it must be
/// re-openable and give the same bytes both times.
pub trait CsvSource: Send + Sync {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>>;
}

impl CsvSource for std::path::PathBuf {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(self)?)))
    }
}

/// CSV held in memory (API uploads, the demo's generated people): never written to disk.
#[derive(Clone)]
pub struct MemorySource(pub Arc<[u8]>);

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemorySource({} bytes)", self.0.len())
    }
}

impl CsvSource for MemorySource {
    fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(self.0.clone())))
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ImportProgress {
    /// `validate` or `write`.
    pub phase: &'static str,
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    pub collection: String,
    pub rows: u64,
    pub subjects_created: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

pub type ProgressFn = Arc<dyn Fn(ImportProgress) + Send + Sync>;

/// The column layout of a file, resolved against the schema once.
struct Layout {
    /// For each CSV column: the field it fills, or `None` for the subject column.
    columns: Vec<Option<FieldDef>>,
}

fn layout(state: &CollectionState, header: &csv::ByteRecord) -> Result<Layout> {
    let reject = |reason: String| VaultError::ImportRejected {
        errors: vec![RowError { line: 1, column: None, reason }],
        truncated: false,
    };
    if header.is_empty() || (header.len() == 1 && header[0].is_empty()) {
        return Err(reject("the file is empty: a header row is required".into()));
    }
    let schema = state.current();
    let mut columns = Vec::with_capacity(header.len());
    let mut seen = HashSet::new();
    for (i, raw) in header.iter().enumerate() {
        let name = std::str::from_utf8(raw).map_err(|_| reject(format!("header column {} is not UTF-8", i + 1)))?;
        let name = if i == 0 { name.trim_start_matches('\u{feff}') } else { name }.trim();
        if !seen.insert(name.to_owned()) {
            return Err(reject(format!("column `{name}` appears twice")));
        }
        if name == SUBJECT_COLUMN {
            columns.push(None);
        } else if let Some(f) = schema.field(name) {
            columns.push(Some(f.clone()));
        } else if mamori_core::ids::CollectionName::new(name).is_ok() {
            return Err(reject(format!("column `{name}` is not a field of collection `{}`", schema.name)));
        } else {
            // Not even shaped like a field name: probably a data row where the header should
            // be, so its text is not echoed.
            return Err(reject(format!("header column {} is not a field name (is the header row missing?)", i + 1)));
        }
    }
    if let Some(missing) = schema.fields.iter().find(|f| f.required && !seen.contains(&f.name)) {
        return Err(reject(format!("required field `{}` has no column", missing.name)));
    }
    Ok(Layout { columns })
}

/// One parsed, validated row.
struct Row {
    subject: Option<SubjectId>,
    values: Values,
    unique: Vec<(Token, usize)>,
}

fn parse_row(
    state: &CollectionState,
    layout: &Layout,
    record: &csv::ByteRecord,
    line: u64,
) -> std::result::Result<Row, RowError> {
    let mut row = Row { subject: None, values: Values::new(), unique: Vec::new() };
    for (i, raw) in record.iter().enumerate() {
        let column = |reason: String| RowError {
            line,
            column: Some(match &layout.columns[i] {
                Some(f) => f.name.clone(),
                None => SUBJECT_COLUMN.into(),
            }),
            reason,
        };
        let text = std::str::from_utf8(raw).map_err(|_| column("not valid UTF-8".into()))?;
        match &layout.columns[i] {
            None => {
                row.subject = Some(SubjectId::new(text.trim()).map_err(|e| column(e.to_string()))?);
            }
            Some(f) => {
                if let Some(v) = value::validate(f, text).map_err(|e| column(e.to_string()))? {
                    if f.unique {
                        let token = state
                            .indexer(&f.name)
                            .map_err(|e| column(e.to_string()))?
                            .token(&blind_index_form(f.field_type, &v));
                        row.unique.push((token, i));
                    }
                    row.values.insert(f.name.clone(), v);
                }
            }
        }
    }
    for f in state.current().fields.iter().filter(|f| f.required) {
        if !row.values.contains_key(&f.name) {
            return Err(RowError { line, column: Some(f.name.clone()), reason: "required value is empty".into() });
        }
    }
    Ok(row)
}

fn csv_error(e: &csv::Error) -> RowError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let reason = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("has {len} columns, the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".into(),
        csv::ErrorKind::Io(_) => "could not be read".into(),
        _ => "malformed CSV".into(),
    };
    RowError { line, column: None, reason }
}

/// What pass 1 learned that pass 2 needs.
struct Plan {
    rows: u64,
    /// Subjects that already have a key in this collection.
    existing_subjects: HashSet<String>,
    /// Subjects with more than one row in the file: they share one new key.
    repeated_subjects: HashSet<String>,
}

struct ErrorList {
    errors: Vec<RowError>,
    truncated: bool,
}

impl ErrorList {
    fn push(&mut self, e: RowError) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(e);
        } else {
            self.truncated = true;
        }
    }
}

fn validate_pass(
    store: &Arc<dyn Store>,
    state: &CollectionState,
    source: &dyn CsvSource,
    progress: &ProgressFn,
) -> Result<Plan> {
    let handle = Handle::current();
    let input = source.open().map_err(|e| VaultError::Invalid(format!("cannot read the file: {e}")))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let header = reader
        .byte_headers()
        .map_err(|e| VaultError::ImportRejected { errors: vec![csv_error(&e)], truncated: false })?
        .clone();
    let layout = layout(state, &header)?;
    let mut errs = ErrorList { errors: Vec::new(), truncated: false };
    let mut unique_seen: HashMap<Token, u64> = HashMap::new();
    let mut subjects_seen: HashSet<String> = HashSet::new();
    let mut plan = Plan { rows: 0, existing_subjects: HashSet::new(), repeated_subjects: HashSet::new() };
    let mut pending_unique: Vec<(Token, u64, String)> = Vec::new();
    let mut pending_subjects: Vec<String> = Vec::new();
    let mut record = csv::ByteRecord::new();
    // A collection with no records and no subject keys cannot hold a taken unique value or an
    // existing subject: skip a million point lookups. (A concurrent writer is still caught by
    // the database's own constraints at write time, failing the whole import.)
    let empty = handle.block_on(store.count_records(state.row.id))? == 0
        && handle.block_on(store.subject_keys_below(state.row.id, u32::MAX, 1))?.is_empty();

    let flush = |pending_unique: &mut Vec<(Token, u64, String)>,
                 pending_subjects: &mut Vec<String>,
                 errs: &mut ErrorList,
                 plan: &mut Plan|
     -> Result<()> {
        if !pending_unique.is_empty() {
            let tokens: Vec<Vec<u8>> = pending_unique.iter().map(|(t, _, _)| t.to_vec()).collect();
            let taken: HashSet<Vec<u8>> =
                handle.block_on(store.unique_tokens_taken(state.row.id, &tokens))?.into_iter().collect();
            for (t, line, column) in pending_unique.drain(..) {
                if taken.contains(&t[..]) {
                    errs.push(RowError {
                        line,
                        column: Some(column),
                        reason: "this value is already registered in the collection".into(),
                    });
                }
            }
        }
        if !pending_subjects.is_empty() {
            let refs: Vec<&str> = pending_subjects.iter().map(String::as_str).collect();
            for k in handle.block_on(store.get_subject_keys(state.row.id, &refs))? {
                plan.existing_subjects.insert(k.subject);
            }
            pending_subjects.clear();
        }
        Ok(())
    };

    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                errs.push(csv_error(&e));
                if matches!(e.kind(), csv::ErrorKind::Io(_)) || errs.truncated {
                    break;
                }
                continue;
            }
        }
        plan.rows += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(plan.rows + 1);
        match parse_row(state, &layout, &record, line) {
            Err(e) => errs.push(e),
            Ok(row) => {
                for (token, col) in row.unique {
                    let column = layout.columns[col].as_ref().map(|f| f.name.clone()).unwrap_or_default();
                    if let Some(first) = unique_seen.insert(token, line) {
                        errs.push(RowError {
                            line,
                            column: Some(column),
                            reason: format!("duplicates the value on line {first}"),
                        });
                    } else {
                        pending_unique.push((token, line, column));
                    }
                }
                if let Some(s) = row.subject {
                    let s = String::from(s);
                    if !subjects_seen.insert(s.clone()) {
                        plan.repeated_subjects.insert(s);
                    } else {
                        pending_subjects.push(s);
                    }
                }
            }
        }
        if empty {
            pending_unique.clear();
            pending_subjects.clear();
        } else if pending_unique.len() + pending_subjects.len() >= 10_000 {
            flush(&mut pending_unique, &mut pending_subjects, &mut errs, &mut plan)?;
        }
        if plan.rows.is_multiple_of(10_000) {
            progress(ImportProgress { phase: "validate", rows: plan.rows });
        }
        if errs.truncated {
            break;
        }
    }
    flush(&mut pending_unique, &mut pending_subjects, &mut errs, &mut plan)?;
    progress(ImportProgress { phase: "validate", rows: plan.rows });
    if plan.rows == 0 && errs.errors.is_empty() {
        errs.push(RowError { line: 2, column: None, reason: "the file has a header but no data rows".into() });
    }
    if !errs.errors.is_empty() {
        errs.errors.sort_by_key(|e| e.line);
        return Err(VaultError::ImportRejected { errors: errs.errors, truncated: errs.truncated });
    }
    Ok(plan)
}

struct Batch {
    keys: Vec<SubjectKeyRow>,
    records: Vec<RecordRow>,
}

/// Pass 2, producer side: parse again, encrypt, and hand batches to the writer.
fn encrypt_pass(
    vault_store: &Arc<dyn Store>,
    state: &CollectionState,
    source: &dyn CsvSource,
    plan: &Plan,
    now: time::OffsetDateTime,
    out: tokio::sync::mpsc::Sender<Batch>,
) -> Result<u64> {
    let handle = Handle::current();
    let changed = || VaultError::Conflict("the file changed while it was being imported; nothing was written".into());
    let input = source.open().map_err(|e| VaultError::Invalid(format!("cannot read the file: {e}")))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
    let header = reader.byte_headers().map_err(|_| changed())?.clone();
    let layout = layout(state, &header)?;
    let mut shared_keys: HashMap<String, Arc<DataKey>> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut batch = Batch { keys: Vec::new(), records: Vec::with_capacity(BATCH_ROWS) };
    let mut created = 0u64;
    let mut rows = 0u64;
    loop {
        if !reader.read_byte_record(&mut record).map_err(|_| changed())? {
            break;
        }
        rows += 1;
        let row = parse_row(state, &layout, &record, rows + 1).map_err(|_| changed())?;
        let subject = row.subject.map(String::from).unwrap_or_else(|| SubjectId::generate().into());
        let dek: Arc<DataKey> = if plan.existing_subjects.contains(&subject) {
            let stored = handle.block_on(vault_store.get_subject_keys(state.row.id, &[&subject]))?;
            Arc::new(state.unwrap_dek(stored.first().ok_or_else(changed)?)?)
        } else if let Some(k) = shared_keys.get(&subject) {
            k.clone()
        } else {
            let (dek, wrapped) = state.wrap_new_dek(&subject)?;
            batch.keys.push(wrapped);
            created += 1;
            let dek = Arc::new(dek);
            if plan.repeated_subjects.contains(&subject) {
                shared_keys.insert(subject.clone(), dek.clone());
            }
            dek
        };
        let sealed =
            seal_record(state, &FieldCipher::new(&dek), RecordId::generate(), &subject, &row.values, now, now)?;
        batch.records.push(sealed);
        if batch.records.len() >= BATCH_ROWS {
            let full =
                std::mem::replace(&mut batch, Batch { keys: Vec::new(), records: Vec::with_capacity(BATCH_ROWS) });
            if out.blocking_send(full).is_err() {
                return Err(VaultError::Internal("import writer stopped".into()));
            }
        }
    }
    if rows != plan.rows {
        return Err(changed());
    }
    if !batch.records.is_empty() && out.blocking_send(batch).is_err() {
        return Err(VaultError::Internal("import writer stopped".into()));
    }
    Ok(created)
}

impl Vault {
    /// Imports a CSV file into a collection: all rows or none. Columns are field names, plus
    /// an optional `subject_id` column (a new subject per row when it is absent).
    pub async fn import_csv(
        &self,
        p: &Principal,
        collection: &str,
        source: Arc<dyn CsvSource>,
        progress: ProgressFn,
    ) -> Result<ImportReport> {
        self.authorize(p, Action::Create, "records.import", Some(collection)).await?;
        let started = Instant::now();
        let state = self.reload_collection(collection).await?;
        let validated = {
            let (store, state, source, progress) =
                (self.store.clone(), state.clone(), source.clone(), progress.clone());
            tokio::task::spawn_blocking(move || validate_pass(&store, &state, &*source, &progress))
                .await
                .map_err(|e| VaultError::Internal(e.to_string()))?
        };
        let plan = match validated {
            Ok(plan) => plan,
            Err(err) => {
                // A rejected file is recorded too: it may have been a probe for existing values.
                let mut e = self.event(p, "records.import", Outcome::Failure);
                e.collection = Some(collection.to_owned());
                e.rows = Some(0);
                e.reason = Some(err.to_string());
                self.audit.record(vec![e]).await?;
                return Err(err);
            }
        };

        // Announce before writing: if the audit log is down, nothing is imported. (A SQLite
        // import holds the write lock until it commits, so no event can be appended during it.)
        let mut e = self.event(p, "records.import.start", Outcome::Success);
        e.collection = Some(collection.to_owned());
        e.rows = Some(plan.rows);
        self.audit.record(vec![e]).await?;

        let mut session = self.store.begin_import(state.row.id).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
        let producer = {
            let (store, state, source, now) = (self.store.clone(), state.clone(), source.clone(), self.clock.now());
            tokio::task::spawn_blocking(move || encrypt_pass(&store, &state, &*source, &plan, now, tx))
        };
        let mut written = 0u64;
        let mut write_result = Ok(());
        while let Some(batch) = rx.recv().await {
            written += batch.records.len() as u64;
            let step = async {
                session.insert_subject_keys(batch.keys).await?;
                session.insert_records(batch.records).await
            };
            if let Err(e) = step.await {
                write_result = Err(VaultError::from(e));
                break;
            }
            progress(ImportProgress { phase: "write", rows: written });
        }
        drop(rx);
        let produced = producer.await.map_err(|e| VaultError::Internal(e.to_string()))?;
        let outcome = match (produced, write_result) {
            (Ok(created), Ok(())) => session.commit().await.map(|_| created).map_err(VaultError::from),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };

        let mut e = self.event(p, "records.import", Outcome::Success);
        e.collection = Some(collection.to_owned());
        match outcome {
            Ok(created) => {
                e.rows = Some(written);
                self.audit.record(vec![e]).await?;
                let seconds = started.elapsed().as_secs_f64();
                Ok(ImportReport {
                    collection: collection.to_owned(),
                    rows: written,
                    subjects_created: created,
                    seconds,
                    rows_per_second: written as f64 / seconds.max(1e-9),
                })
            }
            Err(err) => {
                e.outcome = Outcome::Failure;
                e.rows = Some(0);
                e.reason = Some(err.to_string());
                self.audit.record(vec![e]).await?;
                Err(err)
            }
        }
    }
}
