//! Bulk import from CSV: one streaming pass that validates every row and, while the file is
//! clean, encrypts and writes it inside a single store transaction. Memory stays flat
//! whatever the file size.
//!
//! Every row is validated (types, required fields, lengths, uniqueness within the file and
//! against the collection) before anything is committed. At the first invalid row writing
//! stops, validation goes on to the end so that every problem is reported by line and column
//! (at most 100), and the transaction is rolled back: a failure or a killed process leaves
//! nothing behind (all or nothing).
//!
//! Why one pass and not "validate everything, then write": parsing and validating is about
//! half of the CPU work of an import, and doing it twice kept imports far below the speed of
//! a plain SQLite load (issue 3 asks ≥ 0.3×). The cost is that an invalid file holds the
//! store's write lock while it is read; a rolled-back WAL transaction is cheap.
//!
//! Work is split over two threads: this module's producer parses, validates and encrypts;
//! the store's import session writes batches as they come.
//!
//! Measures: 002-S-12 (entered values checked), 001-20-rule-4-2 (stored data encrypted).

use crate::error::{Result, RowError, VaultError};
use crate::keys::CollectionState;
use crate::records::{Owner, Values, seal_record};
use crate::{Principal, Vault};
use mamori_core::access::Action;
use mamori_core::audit::{AuditEvent, Outcome};
use mamori_core::ids::{RecordId, SubjectId};
use mamori_core::normalize::blind_index_form;
use mamori_core::schema::FieldDef;
use mamori_core::value;
use mamori_crypto::{DataKey, FieldCipher, Token};
use mamori_store::{RecordRow, Store, SubjectKeyRow};
use serde::Serialize;
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;
use tokio::runtime::Handle;

const MAX_REPORTED_ERRORS: usize = 100;
const BATCH_ROWS: usize = 2000;
/// Data keys of recently seen subjects kept in memory, so that a subject's rows that sit
/// close together share one key without a database read. Rows of a subject seen longer ago
/// fetch its key back from the import's own transaction.
const RECENT_KEYS: usize = 1024;
const SUBJECT_COLUMN: &str = "subject_id";

/// Where the CSV comes from.
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
    /// `write` while rows are validated and written; `validate` once a problem was found and
    /// the rest of the file is only checked, to report every problem.
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

/// `writable`: the fields the importer can see (at least masked), the only ones an import
/// may fill — writing follows seeing, as for single records.
fn layout(state: &CollectionState, header: &csv::ByteRecord, writable: &HashSet<String>) -> Result<Layout> {
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
            if !writable.contains(name) {
                return Err(reject(format!("column `{name}` is a field hidden from you, so you may not write it")));
            }
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
    line: u64,
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
    let mut row = Row { line, subject: None, values: Values::new(), unique: Vec::new() };
    for (i, raw) in record.iter().enumerate() {
        let column = |reason: String| RowError { line, column: Some(column_name(layout, i)), reason };
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

fn column_name(layout: &Layout, index: usize) -> String {
    match &layout.columns[index] {
        Some(f) => f.name.clone(),
        None => SUBJECT_COLUMN.into(),
    }
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

/// What travels from the producer to the writer.
struct Batch {
    keys: Vec<SubjectKeyRow>,
    records: Vec<RecordRow>,
    /// Rows of subjects whose key was created earlier in this import but is no longer in
    /// memory: the writer reads the key back from its transaction and seals them.
    deferred: Vec<(String, Values)>,
}

impl Batch {
    fn new() -> Self {
        Self { keys: Vec::new(), records: Vec::with_capacity(BATCH_ROWS), deferred: Vec::new() }
    }
    fn rows(&self) -> u64 {
        (self.records.len() + self.deferred.len()) as u64
    }
}

struct Produced {
    rows: u64,
    created: u64,
}

/// The producer: parses, validates and encrypts, handing batches to the writer while the
/// file is clean.
struct Producer<'a> {
    store: &'a Arc<dyn Store>,
    state: &'a CollectionState,
    handle: Handle,
    now: time::OffsetDateTime,
    /// Owning department of every imported record: the importer's own.
    department: Option<String>,
    /// The fields the importer may write (see [`layout`]).
    writable: HashSet<String>,
    /// The collection had no records and no keys when the import began: nothing in it can
    /// collide, so a million point lookups are skipped. (A concurrent writer is still caught
    /// by the database's own constraints, failing the whole import.)
    collection_was_empty: bool,
    errs: ErrorList,
    /// First line of each unique value (u32: a file of four billion lines is refused first).
    unique_seen: HashMap<Token, u32>,
    /// Subjects seen in this file, as keyed 64-bit hashes: a false "seen" only costs a read.
    subjects_seen: HashSet<u64>,
    subject_hasher: RandomState,
    recent: HashMap<String, Arc<DataKey>>,
    rows: u64,
    created: u64,
}

impl Producer<'_> {
    fn run(
        mut self,
        source: &dyn CsvSource,
        out: &tokio::sync::mpsc::Sender<Batch>,
        progress: &ProgressFn,
    ) -> Result<Produced> {
        let input = source.open().map_err(|e| VaultError::Invalid(format!("cannot read the file: {e}")))?;
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(input);
        let header = reader
            .byte_headers()
            .map_err(|e| VaultError::ImportRejected { errors: vec![csv_error(&e)], truncated: false })?
            .clone();
        let layout = layout(self.state, &header, &self.writable)?;
        let mut record = csv::ByteRecord::new();
        let mut chunk: Vec<Row> = Vec::with_capacity(BATCH_ROWS);
        let mut end = false;
        while !end && !self.errs.truncated {
            chunk.clear();
            while chunk.len() < BATCH_ROWS {
                match reader.read_byte_record(&mut record) {
                    Ok(false) => {
                        end = true;
                        break;
                    }
                    Ok(true) => {}
                    Err(e) => {
                        self.errs.push(csv_error(&e));
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            end = true;
                            break;
                        }
                        continue;
                    }
                }
                self.rows += 1;
                let line = record.position().map(|p| p.line()).unwrap_or(self.rows + 1);
                match parse_row(self.state, &layout, &record, line) {
                    Err(e) => self.errs.push(e),
                    Ok(row) => {
                        self.check_unique_in_file(&layout, &row);
                        chunk.push(row);
                    }
                }
            }
            let existing = self.check_against_collection(&layout, &chunk)?;
            let clean = self.errs.errors.is_empty();
            if clean && !chunk.is_empty() {
                let batch = self.seal(&mut chunk, existing)?;
                if out.blocking_send(batch).is_err() {
                    // The writer failed; its error is the one reported.
                    return Ok(Produced { rows: self.rows, created: self.created });
                }
            }
            progress(ImportProgress { phase: if clean { "write" } else { "validate" }, rows: self.rows });
        }
        if self.rows == 0 && self.errs.errors.is_empty() {
            self.errs.push(RowError { line: 2, column: None, reason: "the file has a header but no data rows".into() });
        }
        if !self.errs.errors.is_empty() {
            let ErrorList { mut errors, truncated } = self.errs;
            errors.sort_by_key(|e| e.line);
            return Err(VaultError::ImportRejected { errors, truncated });
        }
        Ok(Produced { rows: self.rows, created: self.created })
    }

    fn check_unique_in_file(&mut self, layout: &Layout, row: &Row) {
        for (token, col) in &row.unique {
            match self.unique_seen.entry(*token) {
                Entry::Vacant(v) => {
                    v.insert(u32::try_from(row.line).unwrap_or(u32::MAX));
                }
                Entry::Occupied(first) => self.errs.push(RowError {
                    line: row.line,
                    column: Some(column_name(layout, *col)),
                    reason: format!("duplicates the value on line {}", first.get()),
                }),
            }
        }
    }

    /// Values already registered in the collection, and the keys of subjects that already
    /// have one (read from committed data; the import's transaction holds nothing of theirs).
    fn check_against_collection(&mut self, layout: &Layout, chunk: &[Row]) -> Result<HashMap<String, SubjectKeyRow>> {
        if self.collection_was_empty || chunk.is_empty() {
            return Ok(HashMap::new());
        }
        let id = self.state.row.id;
        let tokens: Vec<Vec<u8>> = chunk.iter().flat_map(|r| r.unique.iter().map(|(t, _)| t.to_vec())).collect();
        if !tokens.is_empty() {
            let taken: HashSet<Vec<u8>> =
                self.handle.block_on(self.store.unique_tokens_taken(id, &tokens))?.into_iter().collect();
            for row in chunk {
                for (_, col) in row.unique.iter().filter(|(t, _)| taken.contains(&t[..])) {
                    self.errs.push(RowError {
                        line: row.line,
                        column: Some(column_name(layout, *col)),
                        reason: "this value is already registered in the collection".into(),
                    });
                }
            }
        }
        let subjects: Vec<&str> = chunk.iter().filter_map(|r| r.subject.as_ref().map(|s| s.as_str())).collect();
        if subjects.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = self.handle.block_on(self.store.get_subject_keys(id, &subjects))?;
        Ok(keys.into_iter().map(|k| (k.subject.clone(), k)).collect())
    }

    fn seal(&mut self, chunk: &mut Vec<Row>, existing: HashMap<String, SubjectKeyRow>) -> Result<Batch> {
        let mut batch = Batch::new();
        for row in chunk.drain(..) {
            let Some(subject) = row.subject.map(String::from) else {
                // No subject column: each row is a new data subject.
                let subject = String::from(SubjectId::generate());
                let (dek, wrapped) = self.state.wrap_new_dek(&subject)?;
                batch.keys.push(wrapped);
                self.created += 1;
                batch.records.push(self.seal_one(&dek, &subject, &row.values)?);
                continue;
            };
            let first_time = self.subjects_seen.insert(self.subject_hasher.hash_one(&subject));
            let dek = if let Some(dek) = self.recent.get(&subject) {
                dek.clone()
            } else if let Some(stored) = existing.get(&subject) {
                Arc::new(self.state.unwrap_dek(stored)?)
            } else if !first_time {
                batch.deferred.push((subject, row.values));
                continue;
            } else {
                let (dek, wrapped) = self.state.wrap_new_dek(&subject)?;
                batch.keys.push(wrapped);
                self.created += 1;
                Arc::new(dek)
            };
            batch.records.push(self.seal_one(&dek, &subject, &row.values)?);
            if self.recent.len() >= RECENT_KEYS {
                self.recent.clear();
            }
            self.recent.insert(subject, dek);
        }
        Ok(batch)
    }

    fn seal_one(&self, dek: &DataKey, subject: &str, values: &Values) -> Result<RecordRow> {
        let owner = Owner { id: RecordId::generate(), subject, department: self.department.clone() };
        seal_record(self.state, &FieldCipher::new(dek), owner, values, self.now, self.now)
    }
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
        let started = Instant::now();
        let (state, _) = self.authorize_collection(p, Action::Create, "records.import", collection).await?;
        let access = self.authorize_new_record(p, "records.import", &state, p.department.as_deref()).await?;
        let state = self.reload_collection(&state.row.name).await?;

        // Announce before writing: if the audit log is down, nothing is imported. (A SQLite
        // import holds the write lock until it commits, so no event can be appended during it.)
        let mut e = self.event(p, "records.import.start", Outcome::Success);
        e.collection = Some(collection.to_owned());
        access.stamp(&mut e);
        self.audit.record(vec![e]).await?;

        let department = p.department.clone().unwrap_or_default();
        let writable = self.writable_in(p, &state, &department).await?;
        let mut e = self.event(p, "records.import", Outcome::Success);
        e.collection = Some(collection.to_owned());
        let outcome =
            self.import_in_transaction(&state, p.department.clone(), writable, source, progress, e.clone()).await;
        match outcome {
            Ok(Produced { rows, created }) => {
                let seconds = started.elapsed().as_secs_f64();
                Ok(ImportReport {
                    collection: collection.to_owned(),
                    rows,
                    subjects_created: created,
                    seconds,
                    rows_per_second: rows as f64 / seconds.max(1e-9),
                })
            }
            Err(err) => {
                // A rejected file is recorded too: it may have been a probe for existing values.
                (e.at, e.outcome, e.rows) = (self.clock.now(), Outcome::Failure, Some(0));
                e.reason = Some(err.to_string());
                self.audit.record(vec![e]).await?;
                Err(err)
            }
        }
    }

    async fn import_in_transaction(
        &self,
        state: &Arc<CollectionState>,
        department: Option<String>,
        writable: HashSet<String>,
        source: Arc<dyn CsvSource>,
        progress: ProgressFn,
        mut done: AuditEvent,
    ) -> Result<Produced> {
        let mut session = self.store.begin_import(state.row.id).await?;
        // Checked inside the import: with SQLite the write lock is held from here on.
        let collection_was_empty = self.store.count_records(state.row.id).await? == 0
            && self.store.subject_keys_below(state.row.id, u32::MAX, 1).await?.is_empty();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
        let producer = {
            let (store, state, now) = (self.store.clone(), state.clone(), self.clock.now());
            let progress = progress.clone();
            let department = department.clone();
            tokio::task::spawn_blocking(move || {
                let producer = Producer {
                    store: &store,
                    state: &state,
                    handle: Handle::current(),
                    now,
                    department,
                    writable,
                    collection_was_empty,
                    errs: ErrorList { errors: Vec::new(), truncated: false },
                    unique_seen: HashMap::new(),
                    subjects_seen: HashSet::new(),
                    subject_hasher: RandomState::new(),
                    recent: HashMap::new(),
                    rows: 0,
                    created: 0,
                };
                producer.run(&*source, &tx, &progress)
            })
        };
        let mut write_result = Ok(0u64);
        let mut created_by_writer = 0u64;
        while let Some(mut batch) = rx.recv().await {
            let step = async {
                let rows = batch.rows();
                session.insert_subject_keys(std::mem::take(&mut batch.keys)).await?;
                for (subject, values) in std::mem::take(&mut batch.deferred) {
                    let (record, created) =
                        self.seal_deferred(state, &mut *session, &subject, department.clone(), &values).await?;
                    created_by_writer += u64::from(created);
                    batch.records.push(record);
                }
                session.insert_records(batch.records).await?;
                Ok::<_, VaultError>(rows)
            };
            match step.await {
                Ok(rows) => write_result = write_result.map(|w| w + rows),
                Err(e) => {
                    write_result = Err(e);
                    break;
                }
            }
        }
        drop(rx);
        let produced = producer.await.map_err(|e| VaultError::Internal(e.to_string()))?;
        let written = write_result?;
        let mut produced = produced?;
        produced.created += created_by_writer;
        if written != produced.rows {
            return Err(VaultError::Internal(format!("import wrote {written} of {} rows", produced.rows)));
        }
        // The rows are there with the event that says so, or neither (000-8-access-7).
        (done.at, done.rows) = (self.clock.now(), Some(produced.rows));
        self.audit.commit_import(session, vec![done]).await?;
        Ok(produced)
    }

    /// A row whose subject got its key earlier in this import: the key is read back from the
    /// import's own transaction.
    async fn seal_deferred(
        &self,
        state: &CollectionState,
        session: &mut dyn mamori_store::ImportSession,
        subject: &str,
        department: Option<String>,
        values: &Values,
    ) -> Result<(RecordRow, bool)> {
        let (dek, created) = match session.get_subject_key(subject).await? {
            Some(stored) => (state.unwrap_dek(&stored)?, false),
            // Only a 64-bit hash collision in the producer's "seen" set gets here.
            None => {
                let (dek, wrapped) = state.wrap_new_dek(subject)?;
                session.insert_subject_keys(vec![wrapped]).await?;
                (dek, true)
            }
        };
        let now = self.clock.now();
        let id = RecordId::generate();
        let owner = Owner { id, subject, department };
        Ok((seal_record(state, &FieldCipher::new(&dek), owner, values, now, now)?, created))
    }
}
