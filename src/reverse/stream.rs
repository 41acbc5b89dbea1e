//! The reverse stream stage: runs inside `ferry run` while the migration phase is `switched`,
//! reading PostgreSQL's committed changes from the slot and applying them to MySQL.
//!
//! Guarantees (exactly once): a group of whole PostgreSQL transactions is applied in one MySQL
//! transaction with the end LSN of its last transaction in `ferry.reverse_checkpoint`
//! ([`super::apply`]); the slot is advanced only after that commit. Memory is bounded by bytes:
//! the slot is read in pages of at most [`PAGE_MESSAGES`] messages, fewer when they are large
//! (about [`PAGE_BYTES`]); complete transactions are applied once they hold [`GROUP_BYTES`];
//! a transaction still open holding [`LARGE_BYTES`] is applied in parts into one MySQL
//! transaction that commits (with the checkpoint) at its Commit — never whole in memory. On start (after a crash,
//! a SIGKILL, a lost connection) the checkpoint is read from MySQL, and transactions that end
//! at or before it — committed in MySQL but not yet confirmed to the slot — are skipped, then
//! confirmed. So every PostgreSQL row operation reaches MySQL once, in commit order. The stage
//! stops between groups when a stop is requested or the phase leaves `switched` (checked twice
//! a second), and reports [`Ended::NotArmed`] when the stream has no slot (a cutover with
//! `--without-rollback`). Errors carry their class: transient ones (a lost connection) are
//! retried by the supervisor from the checkpoint; definite ones (a value MySQL cannot hold, a
//! schema change on PostgreSQL, a refused write) stop ferry with table, column, LSN and fix.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::apply::MySqlApplier;
use super::assemble::{Assembler, Transaction};
use super::lsn::Lsn;
use super::progress::ReverseProgress;
use super::transport::{slot_state, ChangeFeed, SqlPolling};
use super::{names, pgoutput, ReverseError};
use crate::config::Config;
use crate::migration::state;
use crate::sink::connect as pg;
use crate::source::binlog::ReaderControl;
use crate::source::catalog;

/// Messages asked of one peek (PostgreSQL completes the transaction it is in).
const PEEK_MESSAGES: i32 = 20_000;
/// Messages fetched from the peek's cursor at most at a time.
const PAGE_MESSAGES: i32 = 1_000;
/// Messages of a peek's first page (the size of its messages is not known yet).
const FIRST_PAGE_MESSAGES: i32 = 16;
/// Later pages hold about this many bytes (at least one message), judged by the last page.
const PAGE_BYTES: usize = 8 << 20;
/// Complete transactions gathered before they are applied.
const GROUP_BYTES: usize = 16 << 20;
/// A transaction still open holding this much is applied in parts.
const LARGE_BYTES: usize = 16 << 20;
/// Row operations per MySQL transaction (whole PostgreSQL transactions only; a larger one
/// goes alone).
const GROUP_ROWS: usize = 5_000;
/// Pause between peeks that found nothing.
const POLL: Duration = Duration::from_millis(100);
/// How often the phase is re-read.
const PHASE_EVERY: Duration = Duration::from_millis(500);

/// Why the stage returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Stopped,
    /// The phase is no longer `switched`.
    PhaseChanged,
    /// No slot: the cutover ran `--without-rollback` (or the slot was dropped).
    NotArmed,
}

/// Runs the reverse stream until a stop, a phase change or an error.
///
/// # Errors
/// See [`ReverseError`] and the module doc.
pub async fn run(
    config: &Config,
    control: watch::Receiver<ReaderControl>,
    progress: &ReverseProgress,
) -> Result<Ended, ReverseError> {
    let n = names(&config.target.database, &config.stream);
    let client = pg::connect(&config.target)
        .await
        .map_err(ReverseError::target("connecting"))?;
    let Some(slot) = slot_state(&client, &n.slot)
        .await
        .map_err(ReverseError::target("reading the slot"))?
    else {
        return Ok(Ended::NotArmed);
    };
    let mut confirmed = slot.confirmed;
    let phase_client = pg::connect(&config.target)
        .await
        .map_err(ReverseError::target("connecting"))?;
    let mut feed = SqlPolling::new(client, n.slot.clone(), n.publication.clone())
        .await
        .map_err(ReverseError::target("preparing the polling session"))?;
    let mut applier = MySqlApplier::connect(config).await?;
    let flavor = applier.flavor;
    let tables =
        catalog::load_tables(applier.conn(), flavor, &config.tables, &config.types).await?;
    let mut assembler = Assembler::new(tables);
    let mut checkpoint = applier.checkpoint().await?.unwrap_or(Lsn(0));
    tracing::info!(slot = %n.slot, checkpoint = %checkpoint, "reverse stream: applying PostgreSQL's changes to MySQL");
    let mut phase_checked: Option<Instant> = None;
    // The last peek found nothing: the next one is preceded by reading the flushed WAL end.
    let mut idle = false;
    loop {
        if control.borrow().stop {
            return Ok(Ended::Stopped);
        }
        if phase_checked.map_or(true, |t| t.elapsed() >= PHASE_EVERY) {
            let m = state::load(&phase_client, &config.target.ferry_schema, &config.stream)
                .await
                .map_err(ReverseError::target("reading the migration phase"))?;
            if !m.phase.runs_reverse_stream() {
                return Ok(Ended::PhaseChanged);
            }
            phase_checked = Some(Instant::now());
            if let Some(s) = feed
                .state()
                .await
                .map_err(ReverseError::target("reading the slot"))?
            {
                progress.observe_slot(&s);
            }
        }
        let flushed_before = if idle {
            Some(
                feed.flushed()
                    .await
                    .map_err(ReverseError::target("reading the WAL end"))?,
            )
        } else {
            None
        };
        let read = read_peek(
            &mut feed,
            &mut assembler,
            &mut applier,
            &mut checkpoint,
            progress,
        )
        .await;
        let peeked = match read {
            Ok(p) => p,
            // The slot was dropped: by `ferry rollback` / `ferry complete` between two phase
            // checks (then the phase tells), or by hand.
            Err(Peek::Feed(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) =>
            {
                let m = state::load(&phase_client, &config.target.ferry_schema, &config.stream)
                    .await
                    .map_err(ReverseError::target("reading the migration phase"))?;
                return Ok(if m.phase.runs_reverse_stream() {
                    Ended::NotArmed
                } else {
                    Ended::PhaseChanged
                });
            }
            // 55006: another session holds the slot for a moment (someone peeking it by hand,
            // a previous session of ours not yet gone): not a failure, so no backoff — peek
            // again at the next poll. Nothing of this peek was committed in MySQL.
            Err(Peek::Feed(e))
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                applier.abandon_large().await;
                tokio::time::sleep(POLL).await;
                continue;
            }
            Err(Peek::Feed(e)) => {
                return Err(ReverseError::target("reading changes from the slot")(e))
            }
            Err(Peek::Apply(e)) => return Err(e),
        };
        let Some(end) = peeked else {
            progress.caught_up();
            // Nothing committed before `flushed` is waiting: confirm up to it, so the slot's
            // position tells `ferry rollback` (and anyone) that everything is applied.
            if let Some(to) = flushed_before.filter(|w| *w > confirmed) {
                if !advance(&mut feed, to).await? {
                    return Ok(Ended::NotArmed);
                }
                confirmed = to;
            }
            idle = true;
            tokio::time::sleep(POLL).await;
            continue;
        };
        idle = false;
        if !advance(&mut feed, end).await? {
            return Ok(Ended::NotArmed);
        }
        confirmed = confirmed.max(end);
    }
}

/// Why reading one peek stopped.
enum Peek {
    Feed(tokio_postgres::Error),
    Apply(ReverseError),
}

impl From<ReverseError> for Peek {
    fn from(e: ReverseError) -> Peek {
        Peek::Apply(e)
    }
}

/// Reads one peek page by page and applies it: whole transactions in groups of about
/// [`GROUP_ROWS`] rows or [`GROUP_BYTES`]; a transaction that grows past [`LARGE_BYTES`]
/// while open is applied in parts into one open MySQL transaction, committed with its
/// checkpoint at its Commit. Transactions MySQL already holds (at or before `checkpoint`) are
/// skipped. Returns the end LSN of the peek's last transaction (`None`: the peek was empty).
async fn read_peek(
    feed: &mut impl ChangeFeed,
    assembler: &mut Assembler,
    applier: &mut MySqlApplier,
    checkpoint: &mut Lsn,
    progress: &ReverseProgress,
) -> Result<Option<Lsn>, Peek> {
    feed.open(PEEK_MESSAGES).await.map_err(Peek::Feed)?;
    let mut pending: Vec<Transaction> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut last_end = None;
    // The first page is small: a peek's messages may each be large (a document per row).
    let mut page = FIRST_PAGE_MESSAGES;
    // Row operations of the large transaction applied so far (counted once it commits).
    let mut large_rows = 0u64;
    loop {
        let raw = feed.fetch(page).await.map_err(Peek::Feed)?;
        let ended = raw.len() < page as usize;
        let page_bytes: usize = raw.iter().map(|m| m.data.len()).sum();
        // Pages of about PAGE_BYTES, judged by the size of the messages just read.
        if !raw.is_empty() {
            let mean = (page_bytes / raw.len()).max(1);
            page = (PAGE_BYTES / mean).clamp(1, PAGE_MESSAGES as usize) as i32;
        }
        for m in &raw {
            let message = pgoutput::decode(&m.data)
                .map_err(|source| ReverseError::Decode { lsn: m.lsn, source })?;
            if let Some(t) = assembler.feed(message, m.lsn).map_err(ReverseError::from)? {
                last_end = Some(t.end_lsn);
                if applier.large_open() {
                    let rows = applier.finish_large(&t).await.map_err(ReverseError::from)?;
                    *checkpoint = t.end_lsn;
                    progress.applied(rows + large_rows, 1, t.commit_time, t.end_lsn);
                    large_rows = 0;
                } else if t.end_lsn > *checkpoint && !t.ops.is_empty() {
                    pending_bytes += t.ops.iter().map(|o| o.bytes()).sum::<usize>();
                    pending.push(t);
                    if pending_bytes >= GROUP_BYTES {
                        apply_pending(applier, &mut pending, checkpoint, progress).await?;
                        pending_bytes = 0;
                    }
                } else if t.end_lsn <= *checkpoint {
                    tracing::debug!(end = %t.end_lsn, "reverse stream: transaction already in MySQL; skipped");
                }
            } else if assembler.open_bytes() >= LARGE_BYTES {
                // Earlier transactions commit first, in their own MySQL transactions.
                apply_pending(applier, &mut pending, checkpoint, progress).await?;
                pending_bytes = 0;
                if let Some((commit_lsn, ops)) = assembler.take_open() {
                    // Its commit record starts before the checkpoint (the end of the last
                    // transaction MySQL holds): MySQL holds it already (its Commit is skipped
                    // too). A transaction after it starts at or past the checkpoint.
                    if commit_lsn >= *checkpoint {
                        if !applier.large_open() {
                            tracing::info!(commit = %commit_lsn, bytes = LARGE_BYTES, "reverse stream: a large PostgreSQL transaction is applied in parts into one MySQL transaction");
                        }
                        large_rows += applier
                            .apply_part(&ops, commit_lsn)
                            .await
                            .map_err(ReverseError::from)?;
                    }
                }
            }
        }
        if ended {
            break;
        }
    }
    apply_pending(applier, &mut pending, checkpoint, progress).await?;
    Ok(last_end)
}

/// Applies the complete transactions gathered, in groups.
async fn apply_pending(
    applier: &mut MySqlApplier,
    pending: &mut Vec<Transaction>,
    checkpoint: &mut Lsn,
    progress: &ReverseProgress,
) -> Result<(), ReverseError> {
    for group in groups(pending) {
        let rows = applier.apply(group).await?;
        let last = &group[group.len() - 1];
        *checkpoint = last.end_lsn;
        progress.applied(rows, group.len() as u64, last.commit_time, last.end_lsn);
    }
    pending.clear();
    Ok(())
}

/// Confirms everything before `to` to the slot; `false` when the slot is gone (dropped by
/// `ferry rollback` / `ferry complete` meanwhile: what was applied is in MySQL's checkpoint).
/// Another session may hold the slot for a moment; what was applied is already in MySQL's
/// checkpoint, so retrying is safe.
async fn advance(feed: &mut impl ChangeFeed, to: Lsn) -> Result<bool, ReverseError> {
    let mut advanced = feed.advance(to).await;
    for _ in 0..50 {
        match &advanced {
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                tokio::time::sleep(POLL / 5).await;
                advanced = feed.advance(to).await;
            }
            _ => break,
        }
    }
    match advanced {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_OBJECT) => Ok(false),
        Err(e) => Err(ReverseError::target("advancing the slot")(e)),
    }
}

/// Splits transactions into groups of about [`GROUP_ROWS`] row operations.
fn groups(all: &[Transaction]) -> Vec<&[Transaction]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut rows = 0;
    for (i, t) in all.iter().enumerate() {
        if rows > 0 && rows + t.ops.len() > GROUP_ROWS {
            out.push(&all[start..i]);
            start = i;
            rows = 0;
        }
        rows += t.ops.len();
    }
    if start < all.len() {
        out.push(&all[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(ops: usize) -> Transaction {
        let table = std::sync::Arc::new(crate::schema::Table {
            source: crate::schema::SourceName::new("d", "t"),
            target_schema: "d".into(),
            target_name: "t".into(),
            target_quoted: "\"d\".\"t\"".into(),
            source_columns: Vec::new(),
            columns: Vec::new(),
            key: Vec::new(),
            key_source: crate::schema::KeySource::PrimaryKey,
            indexes: Vec::new(),
            estimated_rows: 0,
            comment: String::new(),
            checks: Vec::new(),
            foreign_keys: Vec::new(),
        });
        Transaction {
            xid: 1,
            commit_lsn: Lsn(1),
            end_lsn: Lsn(2),
            commit_time: 0.0,
            ops: (0..ops)
                .map(|_| super::super::assemble::Op::DeleteAll {
                    table: table.clone(),
                })
                .collect(),
            touched: Vec::new(),
        }
    }

    #[test]
    fn groups_hold_whole_transactions_of_bounded_size() {
        let all = vec![txn(3000), txn(3000), txn(10_000), txn(1), txn(1)];
        let sizes: Vec<usize> = groups(&all).iter().map(|g| g.len()).collect();
        assert_eq!(sizes, [1, 1, 1, 2]);
        assert!(groups(&[]).is_empty());
    }
}
