//! The reverse stream's progress: rows and transactions applied, lag in bytes and seconds, the
//! WAL its slot keeps — shown by `ferry status` / `/status` and exported to `/metrics`.
//!
//! Guarantees: lag is 0 only when a peek found nothing after the last applied transaction
//! (caught up); otherwise bytes are the WAL between the slot's confirmed position and the WAL
//! end, seconds are now minus the commit time of the last transaction applied when more is
//! waiting (the oldest one not applied committed after it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::lsn::Lsn;
use super::transport::SlotState;
use crate::metrics as m;
use crate::progress::unix_now;

/// Shared between the stage and the status board.
#[derive(Debug, Default)]
pub struct ReverseProgress {
    running: AtomicBool,
    rows: AtomicU64,
    transactions: AtomicU64,
    caught_up: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone)]
struct State {
    lag_bytes: u64,
    retained_bytes: u64,
    last_commit_time: Option<f64>,
    applied_lsn: Option<Lsn>,
    error: Option<String>,
}

/// What `ferry status` shows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReverseStatus {
    pub running: bool,
    pub rows_applied: u64,
    pub transactions_applied: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub slot_retained_bytes: u64,
    pub applied_lsn: Option<String>,
    pub last_error: Option<String>,
}

impl ReverseProgress {
    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    pub fn applied(&self, rows: u64, transactions: u64, commit_time: f64, end: Lsn) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
        self.caught_up.store(false, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            s.last_commit_time = Some(commit_time);
            s.applied_lsn = Some(end);
            s.error = None;
        }
        m::reverse_applied(rows, transactions);
        self.export();
    }

    /// A peek found nothing more.
    pub fn caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            if let Ok(mut s) = self.state.lock() {
                s.lag_bytes = 0;
            }
            self.export();
        }
    }

    pub fn observe_slot(&self, slot: &SlotState) {
        if let Ok(mut s) = self.state.lock() {
            s.lag_bytes = if self.caught_up.load(Ordering::Relaxed) {
                0
            } else {
                slot.wal_end.0.saturating_sub(slot.confirmed.0)
            };
            s.retained_bytes = slot.retained_bytes;
        }
        self.export();
    }

    pub fn error(&self, e: String) {
        if let Ok(mut s) = self.state.lock() {
            s.error = Some(e);
        }
    }

    fn export(&self) {
        let st = self.status();
        m::reverse_lag(st.lag_bytes, st.lag_seconds, st.slot_retained_bytes);
    }

    pub fn status(&self) -> ReverseStatus {
        let s = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        let caught_up = self.caught_up.load(Ordering::Relaxed);
        ReverseStatus {
            running: self.running.load(Ordering::Relaxed),
            rows_applied: self.rows.load(Ordering::Relaxed),
            transactions_applied: self.transactions.load(Ordering::Relaxed),
            lag_bytes: if caught_up { 0 } else { s.lag_bytes },
            lag_seconds: match (caught_up, s.last_commit_time) {
                (false, Some(t)) => (unix_now() - t).max(0.0),
                _ => 0.0,
            },
            slot_retained_bytes: s.retained_bytes,
            applied_lsn: s.applied_lsn.map(|l| l.to_string()),
            last_error: s.error,
        }
    }
}
