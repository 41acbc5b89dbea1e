//! The checksum pass over one table: key-ordered chunks checksummed inside both databases,
//! mismatching chunks bisected down to small ranges, whose rows are then compared value by value.
//!
//! Guarantees:
//! - coverage: chunk ranges `(−∞, b1], (b1, b2], …, (bn, +∞)` tile the whole key space in the
//!   source's key order. Where PostgreSQL orders the key alike (numbers, temporal values, binary
//!   strings: [`TableSql::order_safe`]) the same ranges tile the target, so every row of either
//!   side is in exactly one chunk — extra target rows beyond the source's largest key included.
//!   Text and ENUM keys are ordered differently by the two engines (collations): for them the
//!   target side of a chunk is the rows with exactly the source chunk's keys (the keys travel,
//!   not the rows), and rows only the target has are found afterwards, by looking every target
//!   key up on the source — a pass that runs only when the target counts more rows than the
//!   chunks matched;
//! - only hashes travel for matching chunks (a count and 64 bits per chunk and side); rows are
//!   read only for ranges of at most `leaf_rows` rows (per side) that are known to differ. JSON
//!   columns are the exception on the source side: MySQL cannot print JSON as `jsonb` does, so
//!   the source's key text and JSON travel and ferry hashes them as PostgreSQL hashes
//!   `jsonb::text` in the database; a chunk whose JSON hashes differ (or a VECTOR column) is
//!   compared row by row, as parsed values;
//! - a key one side has in a range and the other does not is looked up by equality on the other
//!   side before it is called missing or extra;
//! - bisection re-checksums one half and derives the other by subtraction (count) and XOR
//!   (hash), so each level costs one query per side;
//! - the pass reads with plain autocommit statements: it never locks rows and under a write load
//!   finds transient differences, which `verify::settle` separates from drift.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mysql_async::Conn;
use tokio::sync::{mpsc, Mutex};

use super::compare::{self, RowDiff};
use super::query::{Key, Range, Scope, Session, Sums, TableSql};
use super::VerifyError;

/// Bisection never goes deeper than this (2^40 rows); a deeper range is compared as it is.
const MAX_DEPTH: u32 = 40;

/// Sizes of one pass.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Source rows per chunk.
    pub chunk_rows: u64,
    /// Bisection stops at ranges of at most this many rows per side.
    pub leaf_rows: u64,
    /// Differing rows kept per table; beyond it chunks are only counted.
    pub max_diffs: usize,
}

/// What the checksum pass found in one table.
#[derive(Debug, Default)]
pub struct TableScan {
    pub source_rows: u64,
    pub target_rows: u64,
    pub chunks: u64,
    pub differing_chunks: u64,
    /// Candidate differing rows (not yet settled against the stream).
    pub diffs: HashMap<Key, RowDiff>,
    /// More rows differ than `max_diffs`.
    pub truncated: bool,
    /// Chunks whose JSON/VECTOR columns were compared row by row (their hashes differed, or a
    /// VECTOR column has no hash).
    pub json_chunks_by_row: u64,
}

impl TableScan {
    fn merge(&mut self, other: TableScan) {
        self.source_rows += other.source_rows;
        self.target_rows += other.target_rows;
        self.chunks += other.chunks;
        self.differing_chunks += other.differing_chunks;
        self.truncated |= other.truncated;
        self.json_chunks_by_row += other.json_chunks_by_row;
        for (k, d) in other.diffs {
            self.diffs.entry(k).or_insert(d);
        }
    }
}

/// A rows-per-second budget shared by the workers of a pass.
pub struct Pacer {
    rate: Option<f64>,
    next: Mutex<Instant>,
}

impl Pacer {
    /// `None`: no limit.
    pub fn new(rows_per_second: Option<u64>) -> Pacer {
        Pacer {
            rate: rows_per_second.filter(|r| *r > 0).map(|r| r as f64),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Accounts for `rows` just checked; waits while the budget is spent.
    pub async fn take(&self, rows: u64) {
        let Some(rate) = self.rate else { return };
        let wait_until = {
            let mut next = self.next.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(rows as f64 / rate);
            start
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

/// Runs the checksum pass over one table with one worker per session; `boundary` walks the
/// chunk boundaries ahead of the workers. `on_chunk` is told the source rows of each chunk.
///
/// # Errors
/// The first database error of any worker.
pub async fn scan_table(
    boundary: &mut Conn,
    workers: &mut [Session],
    q: &TableSql,
    settings: &ScanSettings,
    pacer: &Pacer,
    on_chunk: &(dyn Fn(u64) + Sync),
) -> Result<TableScan, VerifyError> {
    let (tx, rx) = mpsc::channel::<Range>(workers.len() * 2);
    let rx = Mutex::new(rx);
    let found = AtomicUsize::new(0);
    let producer = async move {
        let step = settings.chunk_rows.max(2) - 1;
        let mut lo: Option<Key> = None;
        loop {
            let open = Range {
                lo: lo.clone(),
                hi: None,
            };
            let hi = q.my_boundary(boundary, &open, step).await?;
            let last = hi.is_none();
            let range = Range {
                lo: lo.clone(),
                hi: hi.clone(),
            };
            if tx.send(range).await.is_err() || last {
                break;
            }
            lo = hi;
        }
        Ok::<(), VerifyError>(())
    };
    let runs = workers
        .iter_mut()
        .map(|sess| worker(sess, q, settings, pacer, on_chunk, &rx, &found));
    let ((), outs) = tokio::try_join!(producer, futures_util::future::try_join_all(runs))?;
    let mut scan = TableScan::default();
    for out in outs {
        scan.merge(out);
    }
    if !q.order_safe {
        // Chunks covered the source's keys; rows only the target has are found here.
        let target_rows = q.pg_count(&workers[0].pg).await?;
        if target_rows > scan.target_rows {
            extras(&mut workers[0], q, settings, &mut scan, &found).await?;
        }
        scan.target_rows = target_rows;
    }
    Ok(scan)
}

/// A piece of a chunk: its source key range and, for keys the engines order differently, the
/// source's keys in it (the target is then read by these keys, not by range).
#[derive(Debug, Clone)]
struct Part {
    range: Range,
    keys: Option<Vec<Key>>,
}

impl Part {
    fn scope(&self) -> Scope<'_> {
        match &self.keys {
            Some(k) => Scope::Keys(k),
            None => Scope::Range(&self.range),
        }
    }
}

async fn worker(
    sess: &mut Session,
    q: &TableSql,
    settings: &ScanSettings,
    pacer: &Pacer,
    on_chunk: &(dyn Fn(u64) + Sync),
    rx: &Mutex<mpsc::Receiver<Range>>,
    found: &AtomicUsize,
) -> Result<TableScan, VerifyError> {
    let mut out = TableScan::default();
    loop {
        let next = rx.lock().await.recv().await;
        let Some(range) = next else { break };
        let keys = if q.order_safe {
            None
        } else {
            Some(q.my_keys(&mut sess.my, &range).await?)
        };
        let part = Part { range, keys };
        let ((my, my_json), (pg, pg_json)) = tokio::try_join!(
            async {
                let sums = q.my_sums(&mut sess.my, &part.range).await?;
                let json = if q.json_hashed {
                    Some(q.my_json_hash(&mut sess.my, &part.range).await?)
                } else {
                    None
                };
                Ok::<_, VerifyError>((sums, json))
            },
            q.pg_chunk(&sess.pg, part.scope())
        )?;
        out.chunks += 1;
        out.source_rows += my.count;
        out.target_rows += pg.count;
        on_chunk(my.count);
        let mut differs = my != pg;
        if differs {
            bisect(sess, q, settings, part.clone(), my, pg, &mut out, found).await?;
        }
        let json_differs = match (my_json, pg_json) {
            (Some(a), Some(b)) => a != b,
            _ => !q.fetched.is_empty(),
        };
        if json_differs {
            out.json_chunks_by_row += 1;
            differs |= compare_fetched(sess, q, &part, &mut out, settings, found).await?;
        }
        if differs {
            out.differing_chunks += 1;
        }
        pacer.take(my.count.max(pg.count)).await;
    }
    Ok(out)
}

/// Splits a part in two at about half its rows; `None` when it cannot be split.
async fn split(
    sess: &mut Session,
    q: &TableSql,
    part: &Part,
    my: Sums,
    pg: Sums,
) -> Result<Option<(Part, Part)>, VerifyError> {
    if let Some(keys) = &part.keys {
        if keys.len() < 2 {
            return Ok(None);
        }
        let (left, right) = keys.split_at(keys.len() / 2);
        let mid = left.last().cloned();
        return Ok(Some((
            Part {
                range: Range {
                    lo: part.range.lo.clone(),
                    hi: mid.clone(),
                },
                keys: Some(left.to_vec()),
            },
            Part {
                range: Range {
                    lo: mid,
                    hi: part.range.hi.clone(),
                },
                keys: Some(right.to_vec()),
            },
        )));
    }
    let mid = if my.count >= 2 {
        q.my_boundary(&mut sess.my, &part.range, my.count / 2 - 1)
            .await?
    } else if pg.count >= 2 {
        q.pg_boundary(&sess.pg, &part.range, pg.count / 2 - 1)
            .await?
    } else {
        None
    };
    Ok(mid.map(|mid| {
        (
            Part {
                range: Range {
                    lo: part.range.lo.clone(),
                    hi: Some(mid.clone()),
                },
                keys: None,
            },
            Part {
                range: Range {
                    lo: Some(mid),
                    hi: part.range.hi.clone(),
                },
                keys: None,
            },
        )
    }))
}

#[allow(clippy::too_many_arguments)]
async fn bisect(
    sess: &mut Session,
    q: &TableSql,
    settings: &ScanSettings,
    part: Part,
    my: Sums,
    pg: Sums,
    out: &mut TableScan,
    found: &AtomicUsize,
) -> Result<(), VerifyError> {
    let mut stack = vec![(part, my, pg, 0u32)];
    while let Some((part, my, pg, depth)) = stack.pop() {
        if found.load(Ordering::Relaxed) >= settings.max_diffs {
            out.truncated = true;
            continue;
        }
        let small = my.count <= settings.leaf_rows && pg.count <= settings.leaf_rows;
        if small || depth >= MAX_DEPTH {
            leaf(sess, q, &part, settings, out, found).await?;
            continue;
        }
        let Some((left, right)) = split(sess, q, &part, my, pg).await? else {
            // Nothing to split at (rows moved away under concurrent writes): compare as is.
            leaf(sess, q, &part, settings, out, found).await?;
            continue;
        };
        let (ml, pl) = tokio::try_join!(
            q.my_sums(&mut sess.my, &left.range),
            q.pg_sums(&sess.pg, left.scope())
        )?;
        let (mr, pr) = (my.minus(ml), pg.minus(pl));
        if mr != pr {
            stack.push((right, mr, pr, depth + 1));
        }
        if ml != pl {
            stack.push((left, ml, pl, depth + 1));
        }
    }
    Ok(())
}

/// Reads both sides of a small part and records the rows that differ.
async fn leaf(
    sess: &mut Session,
    q: &TableSql,
    part: &Part,
    settings: &ScanSettings,
    out: &mut TableScan,
    found: &AtomicUsize,
) -> Result<(), VerifyError> {
    let cap = (settings.leaf_rows * 4).max(1000);
    let (mut src, mut tgt) = match &part.keys {
        Some(keys) => tokio::try_join!(
            q.my_rows(&mut sess.my, &part.range, cap),
            q.pg_rows_by_key(&sess.pg, keys)
        )?,
        None => tokio::try_join!(
            q.my_rows(&mut sess.my, &part.range, cap),
            q.pg_rows(&sess.pg, &part.range, cap)
        )?,
    };
    // A key one engine has in this part and the other does not: look it up by equality before
    // calling it missing or extra (the other engine may order it into another part).
    let only_src: Vec<Key> = src
        .keys()
        .filter(|k| !tgt.contains_key(*k))
        .cloned()
        .collect();
    let only_tgt: Vec<Key> = tgt
        .keys()
        .filter(|k| !src.contains_key(*k))
        .cloned()
        .collect();
    if !only_src.is_empty() {
        tgt.extend(q.pg_rows_by_key(&sess.pg, &only_src).await?);
    }
    if !only_tgt.is_empty() {
        src.extend(q.my_rows_by_key(&mut sess.my, &only_tgt).await?);
        // The source's equality may find a differently spelled key (case-insensitive
        // collations): look that one up on the target too.
        let new: Vec<Key> = src
            .keys()
            .filter(|k| !tgt.contains_key(*k) && !only_src.contains(k))
            .cloned()
            .collect();
        if !new.is_empty() {
            tgt.extend(q.pg_rows_by_key(&sess.pg, &new).await?);
        }
    }
    for mut d in compare::diff_rows(&q.table, None, &src, &tgt) {
        d.by_checksum = true;
        record(out, d, settings, found);
    }
    Ok(())
}

fn record(out: &mut TableScan, d: RowDiff, settings: &ScanSettings, found: &AtomicUsize) {
    if out.diffs.contains_key(&d.key) {
        return;
    }
    if found.fetch_add(1, Ordering::Relaxed) >= settings.max_diffs {
        out.truncated = true;
        return;
    }
    out.diffs.insert(d.key.clone(), d);
}

/// Compares the JSON/VECTOR columns of a chunk outside the databases; true when some differ.
async fn compare_fetched(
    sess: &mut Session,
    q: &TableSql,
    part: &Part,
    out: &mut TableScan,
    settings: &ScanSettings,
    found: &AtomicUsize,
) -> Result<bool, VerifyError> {
    let (src, tgt) = tokio::try_join!(
        q.my_fetched(&mut sess.my, &part.range),
        q.pg_fetched(&sess.pg, part.scope())
    )?;
    let keys = compare::diff_fetched(&src, &tgt);
    if keys.is_empty() {
        return Ok(false);
    }
    let (s, t) = tokio::try_join!(
        q.my_rows_by_key(&mut sess.my, &keys),
        q.pg_rows_by_key(&sess.pg, &keys)
    )?;
    for mut d in compare::diff_rows(&q.table, Some(&keys), &s, &t) {
        d.by_checksum = true;
        record(out, d, settings, found);
    }
    Ok(true)
}

/// Target rows whose key the source does not have, for keys the engines order differently
/// (chunks only covered the source's keys): every target key is looked up on the source, a
/// page at a time. Runs only when the target counted more rows than the chunks matched.
async fn extras(
    sess: &mut Session,
    q: &TableSql,
    settings: &ScanSettings,
    out: &mut TableScan,
    found: &AtomicUsize,
) -> Result<(), VerifyError> {
    let mut after: Option<Key> = None;
    loop {
        let page = q
            .pg_key_page(&sess.pg, after.as_ref(), settings.chunk_rows)
            .await?;
        let Some(last) = page.last().cloned() else {
            return Ok(());
        };
        let present = q.my_present(&mut sess.my, &page).await?;
        let absent: Vec<Key> = page.into_iter().filter(|k| !present.contains(k)).collect();
        if !absent.is_empty() {
            let tgt = q.pg_rows_by_key(&sess.pg, &absent).await?;
            let src = std::collections::HashMap::new();
            for mut d in compare::diff_rows(&q.table, Some(&absent), &src, &tgt) {
                d.by_checksum = true;
                record(out, d, settings, found);
            }
        }
        after = Some(last);
    }
}
