//! The fast path of `mamori audit verify`: checks the chain on every core at once, page by
//! page, and hands the sequential walk of [`super::verify`] the point up to which everything
//! is in order.
//!
//! The chain is sequential only in appearance. The walk checks, for each event *n*, that
//! `SHA-256(prev ‖ seq ‖ event)` with the hash it *computed* for *n − 1* equals the stored
//! hash of *n*. When every link holds, the computed hashes are the stored ones (by
//! induction from the anchor or the genesis), so checking each link against the *stored*
//! hash of the event before it proves exactly the same thing — and every link can be
//! checked on its own. A worker takes the next page of events (with the one before it, for
//! its hash), checks sequence numbers, links, the event's form, the indexed columns and the
//! signed checkpoint hashes that fall in the page, and takes the next page, until a page
//! comes back short: the end of the log.
//!
//! The fast path reports nothing itself. At the first irregularity of any kind it gives up
//! and the sequential walk verifies the whole log from the start, so that a tampered log gets
//! the same diagnosis (first bad sequence number, kind of tampering) as before; only a
//! clean log, the common case, is checked in parallel (002-S-11-b, 004-V-1-4-c).

use super::verify::VerifyProgress;
use mamori_core::audit::{AuditEventView, chain_hash};
use mamori_store::{AuditColumnsRef, AuditRowRef, AuditVisitor, Store};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Events per page: large enough that a read's fixed cost is small, small enough that the
/// workers' pages stay in memory together (a few hundred KiB each).
const PAGE: u64 = 1000;

/// Hashes that signed checkpoints (stored or external) put at a sequence number.
pub(super) type Signed = BTreeMap<u64, Vec<[u8; 32]>>;

/// Where the parallel check stopped, all in order before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VerifiedPrefix {
    /// The first sequence number not checked.
    pub next: u64,
    /// The hash of `next - 1`.
    pub prev: [u8; 32],
    /// The hash of `next - 2`, when that event is part of the chain.
    pub prev_prev: Option<[u8; 32]>,
}

/// What a worker found in one page.
#[derive(Debug, Clone, Copy)]
enum PageOutcome {
    /// Every event in order. `count` events (fewer than a page: the end of the log); `entry`,
    /// the hash the first link was checked against (none when not even the event before the
    /// page was there); and the hashes of the last two events (or of the event before the
    /// page).
    InOrder { count: u64, entry: Option<[u8; 32]>, last: [u8; 32], before_last: Option<[u8; 32]> },
    /// Something the sequential walk has to look at.
    Irregular,
}

/// Checks the log from `first_seq` (whose predecessor's hash is `start_prev`) on `workers`
/// concurrent tasks. `None` when anything is out of order: the caller then walks the whole
/// log sequentially. A page that cannot be read (or whose check panicked) is irregular too,
/// not an error: pages are read ahead, and a row the sequential walk would never reach (it
/// stops at the first problem) must not turn a diagnosis into an error.
pub(super) async fn verified_prefix(
    store: &Arc<dyn Store>,
    first_seq: u64,
    start_prev: [u8; 32],
    signed: Arc<Signed>,
    columns: Columns,
    workers: usize,
    progress: &Arc<VerifyProgress>,
) -> Option<VerifiedPrefix> {
    let claim = Arc::new(AtomicU64::new(0));
    // The lowest page that ended the log or was irregular: no worker needs to go past it.
    let last_page = Arc::new(AtomicU64::new(u64::MAX));
    let outcomes = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (store, claim, last_page, outcomes, signed, progress) =
            (store.clone(), claim.clone(), last_page.clone(), outcomes.clone(), signed.clone(), progress.clone());
        tasks.spawn(async move {
            loop {
                let page = claim.fetch_add(1, Ordering::Relaxed);
                if page > last_page.load(Ordering::Acquire) {
                    return;
                }
                let low = first_seq + page * PAGE;
                // The event before the page gives its first link; the first page links to
                // the anchor or the genesis instead.
                let prev = if page == 0 { Some(start_prev) } else { None };
                let outcome = check_page(&*store, low, prev, signed.clone(), columns).await;
                if let PageOutcome::InOrder { count, .. } = outcome {
                    progress.events.fetch_add(count, Ordering::Relaxed);
                }
                if !matches!(outcome, PageOutcome::InOrder { count: PAGE, .. }) {
                    last_page.fetch_min(page, Ordering::AcqRel);
                }
                outcomes.lock().unwrap_or_else(|e| e.into_inner()).insert(page, outcome);
            }
        });
    }
    // A worker that panicked left its page without an outcome: `assemble` gives up there.
    while tasks.join_next().await.is_some() {}
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap_or_else(|e| e.into_inner()));
    assemble(&outcomes, first_seq, start_prev)
}

/// Joins the pages' outcomes in order, up to the first short page (the end of the log). Each
/// page must start from the hash the page before it ended with: pages are separate reads, and
/// a row rewritten between two of them must not let two halves of different chains pass as
/// one.
fn assemble(outcomes: &BTreeMap<u64, PageOutcome>, first_seq: u64, start_prev: [u8; 32]) -> Option<VerifiedPrefix> {
    let mut prefix = VerifiedPrefix { next: first_seq, prev: start_prev, prev_prev: None };
    for (expected_page, (&page, outcome)) in outcomes.iter().enumerate() {
        if page != expected_page as u64 {
            return None;
        }
        let PageOutcome::InOrder { count, entry, last, before_last } = *outcome else { return None };
        if count > PAGE || entry.is_some_and(|e| e != prefix.prev) {
            return None;
        }
        if count > 0 {
            prefix = VerifiedPrefix { next: prefix.next + count, prev: last, prev_prev: before_last };
        }
        if count < PAGE {
            return Some(prefix);
        }
    }
    // Every page claimed was full, yet none was short: a worker stopped early. Cannot happen
    // (the last claimed page is always short or irregular); trust the sequential walk.
    None
}

/// Checks the events `low..low + PAGE` as they are read, one row at a time. Without a
/// `prev` to start from, the first row must be the event before `low`, whose stored hash is
/// the first link.
struct PageCheck {
    low: u64,
    /// The hash the next event must link to; `None` until the event before the page is seen.
    prev: Option<[u8; 32]>,
    entry: Option<[u8; 32]>,
    before_last: Option<[u8; 32]>,
    count: u64,
    irregular: bool,
    signed: Arc<Signed>,
    columns: Columns,
    /// The newest signed sequence number: events after it are parsed even where the
    /// columns are generated (see [`link_in_order`]).
    signed_to: u64,
}

impl PageCheck {
    fn new(low: u64, prev: Option<[u8; 32]>, signed: Arc<Signed>, columns: Columns) -> Self {
        let signed_to = signed.keys().next_back().copied().unwrap_or(0);
        Self { low, prev, entry: prev, before_last: None, count: 0, irregular: false, signed, columns, signed_to }
    }

    fn row(&mut self, row: &AuditRowRef<'_>) {
        if self.irregular {
            return;
        }
        match self.prev {
            None if row.seq.checked_add(1) == Some(self.low) => {
                (self.prev, self.entry) = (Some(*row.hash), Some(*row.hash))
            }
            None => self.irregular = true,
            Some(prev) => {
                let link = link_in_order(row, &prev, &self.signed, self.columns, self.signed_to);
                if row.seq != self.low + self.count || !link {
                    self.irregular = true;
                    return;
                }
                (self.before_last, self.prev) = (Some(prev), Some(*row.hash));
                self.count += 1;
            }
        }
    }

    fn outcome(&self) -> PageOutcome {
        match (self.irregular, self.prev) {
            (true, _) => PageOutcome::Irregular,
            // Nothing from the event before the page on: the log ended before this page. (Had
            // events been deleted up to the end, the sequential walk, which goes on from the
            // end of the prefix until it finds no more events, would see the gap.)
            (false, None) => PageOutcome::InOrder { count: 0, entry: None, last: [0; 32], before_last: None },
            // With no event in the page, `last` is the hash before it and `before_last`
            // unknown; the caller keeps what it had.
            (false, Some(last)) => {
                PageOutcome::InOrder { count: self.count, entry: self.entry, last, before_last: self.before_last }
            }
        }
    }
}

/// Reads and checks one page where the store reads it, without copying it first.
async fn check_page(
    store: &dyn Store,
    low: u64,
    prev: Option<[u8; 32]>,
    signed: Arc<Signed>,
    columns: Columns,
) -> PageOutcome {
    // From the event before the page, whose hash is the first link, unless `prev` gives it.
    let (from, limit) = if prev.is_some() { (low, PAGE) } else { (low - 1, PAGE + 1) };
    let check = Arc::new(Mutex::new(PageCheck::new(low, prev, signed, columns)));
    let visitor = check.clone();
    let visit: AuditVisitor =
        Box::new(move |row: AuditRowRef<'_>| visitor.lock().unwrap_or_else(|e| e.into_inner()).row(&row));
    match store.scan_audit(from, limit as usize, columns == Columns::Compared, visit).await {
        Ok(()) => check.lock().unwrap_or_else(|e| e.into_inner()).outcome(),
        Err(_) => PageOutcome::Irregular,
    }
}

/// How the indexed columns of the events are held to the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Columns {
    /// The database generates them from the event: they cannot disagree with it, and events
    /// are hashed without being parsed.
    Generated,
    /// Written beside the event: each event is parsed and its columns compared with it.
    Compared,
}

/// One event checked as the sequential walk checks it: its link, any signed checkpoint at
/// its sequence number, its form and, where the columns are not generated, its indexed
/// columns.
///
/// Where the columns are generated, an event covered by a signed checkpoint is not parsed:
/// the checkpointer parsed it before signing (`checkpoint::walk`), and the signature covers
/// it. Events after the newest checkpoint are parsed, so that one appended behind mamori's
/// back with a fitting hash but malformed gets the sequential walk's diagnosis. (Checkpoints
/// signed by versions before the generated columns did not parse; their events were parsed
/// by every verification of those versions.)
fn link_in_order(row: &AuditRowRef<'_>, prev: &[u8; 32], signed: &Signed, columns: Columns, signed_to: u64) -> bool {
    if chain_hash(prev, row.seq, row.event_json) != *row.hash
        || signed.get(&row.seq).is_some_and(|hashes| hashes.iter().any(|h| h != row.hash))
    {
        return false;
    }
    let parsed = || serde_json::from_str::<AuditEventView<'_>>(row.event_json);
    match (columns, row.columns) {
        (Columns::Generated, _) => row.seq <= signed_to || parsed().is_ok(),
        (Columns::Compared, None) => false,
        (Columns::Compared, Some(stored)) => {
            parsed().is_ok_and(|event| stored.agree_with(&AuditColumnsRef::of_view(&event)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_core::audit::{AuditEvent, GENESIS_HASH, Outcome};
    use mamori_store::{AuditColumns, AuditRow};
    use time::OffsetDateTime;

    const GENERATED: Columns = Columns::Generated;

    fn chain(n: u64) -> Vec<AuditRow> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let at = OffsetDateTime::from_unix_timestamp(1_800_000_000 + seq as i64).expect("time");
                let event = AuditEvent::new(at, format!("user:{seq}"), "record.read", Outcome::Success);
                let event_json = event.canonical_json();
                prev = chain_hash(&prev, seq, &event_json);
                AuditRow { seq, event_json, hash: prev, columns: AuditColumns::of(&event) }
            })
            .collect()
    }

    fn check_rows(
        rows: &[AuditRowRef<'_>],
        low: u64,
        prev: Option<[u8; 32]>,
        columns: Columns,
        signed: &Signed,
    ) -> PageOutcome {
        let mut check = PageCheck::new(low, prev, Arc::new(signed.clone()), columns);
        for row in rows {
            check.row(row);
        }
        check.outcome()
    }

    fn check_page(rows: &[AuditRow], low: u64, prev: Option<[u8; 32]>, signed: &Signed) -> PageOutcome {
        let rows: Vec<AuditRowRef<'_>> = rows.iter().map(AuditRow::as_ref).collect();
        check_rows(&rows, low, prev, Columns::Compared, signed)
    }

    #[test]
    fn a_page_in_order_links_to_the_event_before_it() {
        let rows = chain(5);
        let outcome = check_page(&rows[1..], 3, None, &Signed::new());
        assert!(matches!(outcome, PageOutcome::InOrder { count: 3, entry: Some(e), last, before_last: Some(b) }
            if e == rows[1].hash && last == rows[4].hash && b == rows[3].hash));
    }

    #[test]
    fn every_kind_of_disorder_is_irregular() {
        let rows = chain(6);
        let irregular = |rows: &[AuditRow], low, prev, signed: &Signed| {
            matches!(check_page(rows, low, prev, signed), PageOutcome::Irregular)
        };
        // A gap, a swap, a modified event, a forged column, the wrong event before the page,
        // a checkpoint that signed another hash.
        let gap: Vec<_> = [&rows[0], &rows[2]].into_iter().cloned().collect();
        assert!(irregular(&gap, 1, Some(GENESIS_HASH), &Signed::new()));
        let swapped: Vec<_> = [&rows[1], &rows[0]].into_iter().cloned().collect();
        assert!(irregular(&swapped, 1, Some(GENESIS_HASH), &Signed::new()));
        let mut modified = rows.clone();
        modified[2].event_json = modified[2].event_json.replace("record.read", "record.list");
        assert!(irregular(&modified, 1, Some(GENESIS_HASH), &Signed::new()));
        let mut column = rows.clone();
        column[3].columns.actor = "user:someone-else".into();
        assert!(irregular(&column, 1, Some(GENESIS_HASH), &Signed::new()));
        // Where the database generates the columns, they are not compared (nor read).
        let bare: Vec<AuditRowRef<'_>> = column.iter().map(|r| AuditRowRef { columns: None, ..r.as_ref() }).collect();
        let generated = check_rows(&bare, 1, Some(GENESIS_HASH), Columns::Generated, &Signed::new());
        assert!(matches!(generated, PageOutcome::InOrder { count: 6, .. }));
        let compared = check_rows(&bare, 1, Some(GENESIS_HASH), Columns::Compared, &Signed::new());
        assert!(matches!(compared, PageOutcome::Irregular), "columns asked for and missing");
        assert!(irregular(&rows[2..], 5, None, &Signed::new()));
        assert!(!irregular(&rows[2..], 4, None, &Signed::new()));
        // Nothing at all from the event before the page: the end of the log, not a problem.
        assert!(matches!(check_page(&[], 4, None, &Signed::new()), PageOutcome::InOrder { count: 0, .. }));
        let signed = Signed::from([(4, vec![[7; 32]])]);
        assert!(irregular(&rows, 1, Some(GENESIS_HASH), &signed));
        assert!(!irregular(&rows, 1, Some(GENESIS_HASH), &Signed::from([(4, vec![rows[3].hash])])));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_clean_log_is_verified_in_parallel_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(mamori_store_sqlite::SqliteStore::open(dir.path().join("m.db")).await.unwrap());
        let events: Vec<AuditEvent> =
            chain(2_500).iter().map(|r| serde_json::from_str(&r.event_json).unwrap()).collect();
        for batch in events.chunks(300) {
            store.append_audit(batch).await.unwrap();
        }
        let head = store.read_audit(2_500, 1).await.unwrap().remove(0);
        let before = store.read_audit(2_499, 1).await.unwrap().remove(0);
        for (workers, columns) in [(1, Columns::Generated), (3, Columns::Compared)] {
            let prefix =
                verified_prefix(&store, 1, GENESIS_HASH, Arc::new(Signed::new()), columns, workers, &Arc::default())
                    .await;
            assert_eq!(prefix, Some(VerifiedPrefix { next: 2_501, prev: head.hash, prev_prev: Some(before.hash) }));
        }
        // A log that ends exactly at the end of a page.
        let more: Vec<AuditEvent> =
            chain(3_000)[2_500..].iter().map(|r| serde_json::from_str(&r.event_json).unwrap()).collect();
        store.append_audit(&more).await.unwrap();
        let head = store.read_audit(3_000, 1).await.unwrap().remove(0);
        let before = store.read_audit(2_999, 1).await.unwrap().remove(0);
        let prefix =
            verified_prefix(&store, 1, GENESIS_HASH, Arc::new(Signed::new()), GENERATED, 2, &Arc::default()).await;
        assert_eq!(prefix, Some(VerifiedPrefix { next: 3_001, prev: head.hash, prev_prev: Some(before.hash) }));
        // A checkpoint that signed something else at 1,700: the sequential walk must look.
        let signed = Arc::new(Signed::from([(1_700, vec![[1; 32]])]));
        assert_eq!(verified_prefix(&store, 1, GENESIS_HASH, signed, GENERATED, 3, &Arc::default()).await, None);
        // After an anchor at 1,000, the walk starts at 1,001 from the anchor's hash.
        let anchor = store.read_audit(1_000, 1).await.unwrap().remove(0).hash;
        let prefix =
            verified_prefix(&store, 1_001, anchor, Arc::new(Signed::new()), GENERATED, 2, &Arc::default()).await;
        assert_eq!(prefix.map(|p| p.next), Some(3_001));
        assert_eq!(
            verified_prefix(&store, 1_001, [9; 32], Arc::new(Signed::new()), GENERATED, 2, &Arc::default()).await,
            None
        );
    }

    #[test]
    fn the_prefix_ends_at_the_first_short_page_and_needs_every_page_before_it() {
        let full =
            |n: u8| PageOutcome::InOrder { count: PAGE, entry: None, last: [n; 32], before_last: Some([n - 1; 32]) };
        let short = PageOutcome::InOrder { count: 3, entry: Some([2; 32]), last: [9; 32], before_last: Some([8; 32]) };
        let empty = PageOutcome::InOrder { count: 0, entry: None, last: [0; 32], before_last: None };
        let pages = BTreeMap::from([(0, full(2)), (1, short), (2, empty)]);
        assert_eq!(
            assemble(&pages, 1, GENESIS_HASH),
            Some(VerifiedPrefix { next: 1 + PAGE + 3, prev: [9; 32], prev_prev: Some([8; 32]) })
        );
        // An empty page after full ones keeps the last full page's hashes.
        let pages = BTreeMap::from([(0, full(2)), (1, empty)]);
        assert_eq!(
            assemble(&pages, 1, GENESIS_HASH),
            Some(VerifiedPrefix { next: 1 + PAGE, prev: [2; 32], prev_prev: Some([1; 32]) })
        );
        // A page that starts from another hash than the one before it ended with (a row
        // rewritten between the two reads), or more rows than a page: no prefix.
        let elsewhere = PageOutcome::InOrder { count: 3, entry: Some([5; 32]), last: [9; 32], before_last: None };
        assert_eq!(assemble(&BTreeMap::from([(0, full(2)), (1, elsewhere)]), 1, GENESIS_HASH), None);
        let too_many = PageOutcome::InOrder { count: PAGE + 1, entry: None, last: [3; 32], before_last: None };
        assert_eq!(assemble(&BTreeMap::from([(0, too_many), (1, empty)]), 1, GENESIS_HASH), None);
        // A missing page or an irregular one before the end: no prefix.
        assert_eq!(assemble(&BTreeMap::from([(0, full(2)), (2, short)]), 1, GENESIS_HASH), None);
        assert_eq!(assemble(&BTreeMap::from([(0, PageOutcome::Irregular), (1, short)]), 1, GENESIS_HASH), None);
        assert_eq!(assemble(&BTreeMap::from([(0, full(2)), (1, PageOutcome::Irregular)]), 1, GENESIS_HASH), None);
    }
}
