//! Shared, lock-light progress of one pipeline run: which source transactions are read but not
//! yet committed in PostgreSQL, whether the reader is at the end of the binlog, and the last
//! committed position. Lag is computed here, once, for metrics and status alike.
//!
//! Guarantees: lag is 0 only when the reader is caught up and nothing is pending; otherwise it is
//! now minus the source time of the oldest transaction not yet committed in PostgreSQL (or of the
//! last event read, when the reader is behind but holds nothing pending). It never grows while
//! the source is idle and ferry is caught up.
//!
//! While paused the reader reads no further than the first event of the next transaction and
//! reports its source time here ([`Progress::unread`]); so lag stays 0 while the source is idle
//! and grows from the first unread transaction's commit time as soon as the source has one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::position::BinlogPosition;

#[derive(Debug, Default)]
pub struct Progress {
    /// (transaction sequence, source time) of transactions read but not committed downstream.
    pending: Mutex<VecDeque<(u64, u32)>>,
    /// Set on a replication heartbeat (the source had nothing more to send), cleared on events.
    caught_up: AtomicBool,
    last_read_time: AtomicU32,
    /// Source time of the first transaction the paused reader has seen but not read (0: none).
    unread: AtomicU32,
    /// Last position committed in PostgreSQL.
    committed: Mutex<Option<BinlogPosition>>,
    /// Source commit time of that position (Unix seconds).
    committed_time: AtomicU32,
    /// Position of the last event read.
    read_position: Mutex<Option<BinlogPosition>>,
    /// Source transactions committed downstream in this process.
    pub transactions: AtomicU64,
    /// Row operations committed downstream in this process.
    pub rows: AtomicU64,
    /// When the pipeline last did work: a statement or commit finished on the target, or the
    /// supervisor started or scheduled a run (milliseconds on [`monotonic_ms`]'s clock).
    last_work_ms: AtomicU64,
    /// When the source last sent a heartbeat (same clock).
    last_heartbeat_ms: AtomicU64,
    /// The reader's position after the last event it handled at a transaction boundary,
    /// whatever the event (a rotation moves it, unlike the committed position).
    scanned: Mutex<Option<BinlogPosition>>,
}

/// Milliseconds since the first call in this process, on a clock that never jumps.
pub fn monotonic_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Progress {
    /// The reader began source transaction `seq`, whose first event has time `ts`.
    pub fn begin(&self, seq: u64, ts: u32) {
        self.pending
            .lock()
            .expect("progress lock")
            .push_back((seq, ts));
    }

    /// An event was read.
    pub fn read(&self, ts: u32, position: Option<&BinlogPosition>) {
        self.caught_up.store(false, Ordering::Relaxed);
        if ts != 0 {
            self.last_read_time.store(ts, Ordering::Relaxed);
        }
        if let Some(p) = position {
            *self.read_position.lock().expect("progress lock") = Some(p.clone());
        }
    }

    /// The source sent a heartbeat: the reader has read everything there is.
    pub fn heartbeat(&self) {
        self.caught_up.store(true, Ordering::Relaxed);
        self.last_heartbeat_ms
            .store(monotonic_ms(), Ordering::Relaxed);
    }

    /// The reader handled every event before `position` and stands between transactions.
    pub fn scanned(&self, position: BinlogPosition) {
        *self.scanned.lock().expect("progress lock") = Some(position);
    }

    /// Everything the source wrote before `position` is committed in PostgreSQL: the reader
    /// has read past it and nothing it read is still pending.
    pub fn drained_to(&self, position: &BinlogPosition) -> bool {
        let scanned = self.scanned.lock().expect("progress lock").clone();
        let past = scanned.is_some_and(|s| {
            s.partial_cmp(position)
                .is_some_and(|o| o != std::cmp::Ordering::Less)
        });
        past && self.pending.lock().expect("progress lock").is_empty()
    }

    /// The pipeline did work (see [`Progress::is_live`]).
    pub fn worked(&self) {
        self.last_work_ms.store(monotonic_ms(), Ordering::Relaxed);
    }

    /// Whether the pipeline shows liveness within `window`: it did work, or it is idle (nothing
    /// read and uncommitted) and the source's heartbeat arrived. A pipeline wedged on a hung
    /// statement or a stuck channel shows neither: its pending transaction blocks the heartbeat
    /// rule and no statement finishes.
    pub fn is_live(&self, window: std::time::Duration) -> bool {
        let now = monotonic_ms();
        let within = |t: &AtomicU64| {
            let t = t.load(Ordering::Relaxed);
            t != 0 && now.saturating_sub(t) <= window.as_millis() as u64
        };
        if within(&self.last_work_ms) {
            return true;
        }
        within(&self.last_heartbeat_ms) && self.pending.lock().expect("progress lock").is_empty()
    }

    /// The paused reader holds the first event of a transaction it has not read; `ts` is its
    /// source time. Cleared by [`Progress::read_unread`] when reading resumes.
    pub fn unread(&self, ts: u32) {
        self.caught_up.store(false, Ordering::Relaxed);
        self.unread.store(ts.max(1), Ordering::Relaxed);
    }

    /// The reader resumed and is reading the transaction it held.
    pub fn read_unread(&self) {
        self.unread.store(0, Ordering::Relaxed);
    }

    /// The run resumes from `position` (committed earlier, at source time `source_time`); nothing
    /// was applied by this process yet.
    pub fn resume_at(&self, position: &BinlogPosition, source_time: u32) {
        if source_time != 0 {
            self.committed_time.store(source_time, Ordering::Relaxed);
        }
        *self.committed.lock().expect("progress lock") = Some(position.clone());
    }

    /// Transactions up to and including `seq` are committed in PostgreSQL at `position`.
    pub fn committed(
        &self,
        seq: u64,
        position: &BinlogPosition,
        source_time: u32,
        txns: u64,
        rows: u64,
    ) {
        if source_time != 0 {
            self.committed_time.store(source_time, Ordering::Relaxed);
        }
        let mut p = self.pending.lock().expect("progress lock");
        while p.front().is_some_and(|(s, _)| *s <= seq) {
            p.pop_front();
        }
        drop(p);
        *self.committed.lock().expect("progress lock") = Some(position.clone());
        self.transactions.fetch_add(txns, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// Transactions up to `seq` needed no write (they touched no replicated table).
    pub fn settled(&self, seq: u64, txns: u64) {
        let mut p = self.pending.lock().expect("progress lock");
        while p.front().is_some_and(|(s, _)| *s <= seq) {
            p.pop_front();
        }
        self.transactions.fetch_add(txns, Ordering::Relaxed);
    }

    /// A pipeline run ended; whatever was pending will be re-read.
    pub fn reset_pending(&self) {
        self.pending.lock().expect("progress lock").clear();
        self.caught_up.store(false, Ordering::Relaxed);
    }

    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
            && self.unread.load(Ordering::Relaxed) == 0
            && self.pending.lock().expect("progress lock").is_empty()
    }

    pub fn committed_position(&self) -> Option<BinlogPosition> {
        self.committed.lock().expect("progress lock").clone()
    }

    pub fn committed_time(&self) -> u32 {
        self.committed_time.load(Ordering::Relaxed)
    }

    pub fn read_position(&self) -> Option<BinlogPosition> {
        self.read_position.lock().expect("progress lock").clone()
    }

    /// Replication lag in seconds (see the module docs).
    pub fn lag_seconds(&self, now: f64) -> f64 {
        let pending = self
            .pending
            .lock()
            .expect("progress lock")
            .front()
            .map(|(_, t)| *t);
        let unread = Some(self.unread.load(Ordering::Relaxed)).filter(|t| *t != 0);
        let oldest = match (pending, unread) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match oldest {
            Some(ts) => (now - f64::from(ts)).max(0.0),
            None if self.caught_up.load(Ordering::Relaxed) => 0.0,
            None => {
                let last = self.last_read_time.load(Ordering::Relaxed);
                if last == 0 {
                    0.0
                } else {
                    (now - f64::from(last)).max(0.0)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_zero_when_caught_up_and_idle() {
        let p = Progress::default();
        p.read(1000, None);
        p.heartbeat();
        assert_eq!(p.lag_seconds(5000.0), 0.0, "idle source must not show lag");
    }

    #[test]
    fn lag_follows_the_oldest_pending_transaction() {
        let p = Progress::default();
        p.begin(1, 100);
        p.begin(2, 105);
        p.heartbeat();
        assert_eq!(p.lag_seconds(110.0), 10.0);
        p.committed(1, &BinlogPosition::new("b.000001", 10), 0, 1, 1);
        assert_eq!(p.lag_seconds(110.0), 5.0);
        p.committed(2, &BinlogPosition::new("b.000001", 20), 0, 1, 1);
        assert_eq!(p.lag_seconds(110.0), 0.0);
        assert!(p.is_caught_up());
    }

    #[test]
    fn paused_lag_is_zero_while_idle_and_grows_from_the_first_unread_transaction() {
        let p = Progress::default();
        p.begin(1, 100);
        p.committed(1, &BinlogPosition::new("b.000001", 10), 100, 1, 1);
        p.heartbeat();
        // Paused, source idle: heartbeats keep coming, nothing is unread.
        assert_eq!(p.lag_seconds(500.0), 0.0);
        // The source commits at 600; the paused reader sees its first event and holds it.
        p.unread(600);
        assert!(!p.is_caught_up());
        assert_eq!(p.lag_seconds(610.0), 10.0);
        assert_eq!(p.lag_seconds(700.0), 100.0, "lag grows while paused");
        // Resumed: the held transaction is read and becomes pending, then committed.
        p.read_unread();
        p.begin(2, 600);
        assert_eq!(p.lag_seconds(700.0), 100.0);
        p.committed(2, &BinlogPosition::new("b.000001", 20), 600, 1, 1);
        p.heartbeat();
        assert_eq!(p.lag_seconds(700.0), 0.0);
        assert!(p.is_caught_up());
    }

    #[test]
    fn lag_counts_from_the_older_of_pending_and_unread() {
        let p = Progress::default();
        p.begin(1, 100);
        p.unread(150);
        assert_eq!(p.lag_seconds(200.0), 100.0);
    }

    #[test]
    fn resume_at_sets_the_checkpoint_without_counting_anything() {
        let p = Progress::default();
        p.resume_at(&BinlogPosition::new("b.000002", 4), 1234);
        assert_eq!(
            p.committed_position(),
            Some(BinlogPosition::new("b.000002", 4))
        );
        assert_eq!(p.committed_time(), 1234);
        assert_eq!(p.transactions.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn lag_while_reading_a_backlog() {
        let p = Progress::default();
        p.read(100, None);
        assert_eq!(p.lag_seconds(130.0), 30.0);
    }
}
