//! Exactly-once bookkeeping: the checkpoint row in PostgreSQL (the authority, written in the same
//! transaction as the rows it covers) and a local copy in a [`StateStore`] (sled), written after
//! each commit, together with the daemon's other local state.
//!
//! Guarantees: on start, [`reconcile`] picks the resume position. PostgreSQL ahead of (or equal
//! to) the local copy is the normal crash window: resume from PostgreSQL. PostgreSQL behind the
//! local copy, or missing while the local copy exists, means the target was restored or rewound:
//! ferry refuses to start (resuming would silently skip or double changes) unless the operator
//! passes `--accept-target-rewind`. The local copy is flushed at most every half second — losing
//! its last writes is harmless because PostgreSQL stays the authority.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::error::ErrorClass;
use crate::position::BinlogPosition;
use crate::select::quote_ident;

/// A committed position and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: BinlogPosition,
    /// Source GTID state at the position (text), when the source uses GTIDs.
    pub gtid: Option<String>,
    /// Source commit time of the last transaction (Unix seconds), 0 when unknown.
    pub source_time: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("local state store at {path}: {message}")]
    Store { path: String, message: String },
    #[error("the target's checkpoint for stream {stream:?} ({target}) is behind ferry's local state ({local}): the target database was restored or rewound. Resuming would skip the changes in between. Re-copy the tables (`ferry backfill`), or, if you know the target is right, start once with `ferry run --accept-target-rewind`")]
    TargetBehind {
        stream: String,
        target: String,
        local: String,
    },
    #[error("the target has no checkpoint for stream {stream:?} but ferry's local state says it replicated up to {local}: the target was reset or is a different database. Check target.database; to start over, delete the state directory {state_dir}; or start once with `ferry run --accept-target-rewind`")]
    TargetMissing {
        stream: String,
        local: String,
        state_dir: String,
    },
    #[error("the target checkpoint {target} and the local state {local} are on differently named binlogs; ferry cannot tell which is ahead. If the source was replaced, start once with `ferry run --accept-target-rewind`")]
    Incomparable { target: String, local: String },
    #[error("local state store at {path} has format {found}, newer than this ferry knows ({known}): a newer ferry used this state_dir. Run that version (or newer)")]
    StoreFormat {
        path: String,
        found: String,
        known: u32,
    },
}

impl CheckpointError {
    /// The local store failing (locked by a ferry still shutting down, a full disk) may pass;
    /// a target that disagrees with the local state needs the operator.
    pub fn class(&self) -> ErrorClass {
        match self {
            CheckpointError::Store { .. } => ErrorClass::Transient,
            CheckpointError::TargetBehind { .. }
            | CheckpointError::TargetMissing { .. }
            | CheckpointError::Incomparable { .. }
            | CheckpointError::StoreFormat { .. } => ErrorClass::Definite,
        }
    }
}

/// Format of the records in the local store; written on first open, checked on every open.
pub const STORE_FORMAT: u32 = 1;
const STORE_FORMAT_KEY: &str = "meta/format";

/// Local durable state: the checkpoint copy plus small keyed values (pause flag, run state).
/// Two implementations: [`SledStore`] (the daemon's) and [`MemoryStore`] (tests, and a store
/// whose writes can be made to fail).
pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CheckpointError>;
    fn put(&self, key: &str, value: &[u8]) -> Result<(), CheckpointError>;
    fn remove(&self, key: &str) -> Result<(), CheckpointError>;
    /// Makes earlier writes durable.
    fn flush(&self) -> Result<(), CheckpointError>;
    /// Makes earlier writes durable when the last flush is older than `every` (the apply path:
    /// PostgreSQL is the authority, so the local copy may trail by that much).
    fn flush_if_due(&self, every: Duration) -> Result<(), CheckpointError> {
        let _ = every;
        self.flush()
    }

    fn load_checkpoint(&self, stream: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        match self.get(&format!("checkpoint/{stream}"))? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| CheckpointError::Store {
                        path: "checkpoint".into(),
                        message: format!("corrupt checkpoint record: {e}"),
                    })
            }
        }
    }

    fn save_checkpoint(&self, stream: &str, cp: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec(cp).expect("checkpoint serializes");
        self.put(&format!("checkpoint/{stream}"), &bytes)
    }
}

/// The sled-backed store. sled locks its directory, so two daemons cannot share a state dir.
pub struct SledStore {
    db: sled::Db,
    path: String,
    last_flush: Mutex<Instant>,
}

impl SledStore {
    /// Opens (creating) the store in `dir`.
    ///
    /// # Errors
    /// The directory cannot be created or is locked by another ferry.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| CheckpointError::Store {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(8 * 1024 * 1024)
            .flush_every_ms(None)
            .open()
            .map_err(|e| CheckpointError::Store {
                path: path.clone(),
                message: format!("{e} (is another ferry running with this state_dir?)"),
            })?;
        let store = Self {
            db,
            path,
            last_flush: Mutex::new(Instant::now()),
        };
        match store.get(STORE_FORMAT_KEY)? {
            None => {
                store.put(STORE_FORMAT_KEY, STORE_FORMAT.to_string().as_bytes())?;
                store.flush()?;
            }
            Some(v) => {
                let found = String::from_utf8_lossy(&v).to_string();
                if found.parse::<u32>().map_or(true, |f| f > STORE_FORMAT) {
                    return Err(CheckpointError::StoreFormat {
                        path: store.path.clone(),
                        found,
                        known: STORE_FORMAT,
                    });
                }
            }
        }
        Ok(store)
    }

    fn err(&self, e: sled::Error) -> CheckpointError {
        CheckpointError::Store {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

impl StateStore for SledStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        self.db
            .get(key)
            .map(|v| v.map(|iv| iv.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), CheckpointError> {
        self.db
            .insert(key, value)
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn remove(&self, key: &str) -> Result<(), CheckpointError> {
        self.db.remove(key).map(|_| ()).map_err(|e| self.err(e))
    }

    fn flush(&self) -> Result<(), CheckpointError> {
        self.db.flush().map(|_| ()).map_err(|e| self.err(e))?;
        *self.last_flush.lock().expect("flush lock") = Instant::now();
        Ok(())
    }

    fn flush_if_due(&self, every: Duration) -> Result<(), CheckpointError> {
        let mut last = self.last_flush.lock().expect("flush lock");
        if last.elapsed() >= every {
            self.db.flush().map_err(|e| self.err(e))?;
            *last = Instant::now();
        }
        Ok(())
    }
}

/// An in-memory store: what the daemon's logic sees of sled, without a disk. `fail_writes`
/// makes every write fail (a full disk), for tests of how failures are surfaced.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
    pub fail_writes: std::sync::atomic::AtomicBool,
}

impl MemoryStore {
    fn check_writable(&self) -> Result<(), CheckpointError> {
        if self.fail_writes.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CheckpointError::Store {
                path: "(memory)".into(),
                message: "writes fail (simulated full disk)".into(),
            });
        }
        Ok(())
    }
}

impl StateStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        Ok(self.values.lock().expect("store lock").get(key).cloned())
    }

    fn put(&self, key: &str, value: &[u8]) -> Result<(), CheckpointError> {
        self.check_writable()?;
        self.values
            .lock()
            .expect("store lock")
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), CheckpointError> {
        self.check_writable()?;
        self.values.lock().expect("store lock").remove(key);
        Ok(())
    }

    fn flush(&self) -> Result<(), CheckpointError> {
        self.check_writable()
    }
}

/// The statement that records a checkpoint (parameters: stream, file, offset, gtid, source time
/// as Unix seconds).
pub fn upsert_sql(schema: &str) -> String {
    format!(
        "INSERT INTO {}.checkpoint AS c (stream, binlog_file, binlog_offset, gtid, source_time, updated_at) \
         VALUES ($1, $2, $3, $4, CASE WHEN $5::bigint > 0 THEN to_timestamp($5::bigint) END, clock_timestamp()) \
         ON CONFLICT (stream) DO UPDATE SET binlog_file = EXCLUDED.binlog_file, \
         binlog_offset = EXCLUDED.binlog_offset, gtid = EXCLUDED.gtid, \
         source_time = COALESCE(EXCLUDED.source_time, c.source_time), updated_at = EXCLUDED.updated_at",
        quote_ident(schema)
    )
}

/// Reads the stream's checkpoint from the target.
///
/// # Errors
/// PostgreSQL errors.
pub async fn read_target(
    client: &Client,
    schema: &str,
    stream: &str,
) -> Result<Option<Checkpoint>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT binlog_file, binlog_offset, gtid, COALESCE(extract(epoch FROM source_time)::bigint, 0) \
                 FROM {}.checkpoint WHERE stream = $1",
                quote_ident(schema)
            ),
            &[&stream],
        )
        .await?;
    Ok(row.map(|r| Checkpoint {
        position: BinlogPosition::new(r.get::<_, String>(0), r.get::<_, i64>(1) as u64),
        gtid: r.get(2),
        source_time: r.get::<_, i64>(3) as u32,
    }))
}

/// Writes a checkpoint outside the apply path (first start, operator actions).
///
/// # Errors
/// PostgreSQL errors.
pub async fn write_target(
    client: &Client,
    schema: &str,
    stream: &str,
    cp: &Checkpoint,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &upsert_sql(schema),
            &[
                &stream,
                &cp.position.file,
                &(cp.position.offset as i64),
                &cp.gtid,
                &i64::from(cp.source_time),
            ],
        )
        .await
        .map(|_| ())
}

/// Where to resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// No checkpoint anywhere: use the configured start.
    Fresh,
    From(Checkpoint),
}

/// Decides the resume point from the target's checkpoint and the local copy.
///
/// # Errors
/// A rewound or reset target, unless `accept_rewind`.
pub fn reconcile(
    stream: &str,
    target: Option<Checkpoint>,
    local: Option<Checkpoint>,
    accept_rewind: bool,
    state_dir: &Path,
) -> Result<Resume, CheckpointError> {
    match (target, local) {
        (None, None) => Ok(Resume::Fresh),
        (Some(t), None) => Ok(Resume::From(t)),
        (None, Some(l)) if accept_rewind => {
            tracing::warn!(local = %l.position, "target has no checkpoint; starting fresh as accepted by --accept-target-rewind");
            Ok(Resume::Fresh)
        }
        (None, Some(l)) => Err(CheckpointError::TargetMissing {
            stream: stream.into(),
            local: l.position.to_string(),
            state_dir: state_dir.display().to_string(),
        }),
        (Some(t), Some(l)) => match t.position.partial_cmp(&l.position) {
            Some(std::cmp::Ordering::Less) if !accept_rewind => {
                Err(CheckpointError::TargetBehind {
                    stream: stream.into(),
                    target: t.position.to_string(),
                    local: l.position.to_string(),
                })
            }
            None if !accept_rewind => Err(CheckpointError::Incomparable {
                target: t.position.to_string(),
                local: l.position.to_string(),
            }),
            _ => Ok(Resume::From(t)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(file: &str, offset: u64) -> Checkpoint {
        Checkpoint {
            position: BinlogPosition::new(file, offset),
            gtid: None,
            source_time: 0,
        }
    }

    #[test]
    fn target_ahead_of_local_is_the_normal_crash_window() {
        let r = reconcile(
            "s",
            Some(cp("b.000002", 10)),
            Some(cp("b.000001", 900)),
            false,
            Path::new("/x"),
        )
        .expect("resumes");
        assert_eq!(r, Resume::From(cp("b.000002", 10)));
        let r = reconcile(
            "s",
            Some(cp("b.000002", 10)),
            Some(cp("b.000002", 10)),
            false,
            Path::new("/x"),
        )
        .expect("equal resumes");
        assert_eq!(r, Resume::From(cp("b.000002", 10)));
    }

    #[test]
    fn target_behind_local_is_refused() {
        let e = reconcile(
            "s",
            Some(cp("b.000001", 10)),
            Some(cp("b.000001", 500)),
            false,
            Path::new("/x"),
        )
        .expect_err("rewound");
        let msg = e.to_string();
        assert!(
            msg.contains("restored or rewound") && msg.contains("--accept-target-rewind"),
            "{msg}"
        );
        let r = reconcile(
            "s",
            Some(cp("b.000001", 10)),
            Some(cp("b.000001", 500)),
            true,
            Path::new("/x"),
        )
        .expect("accepted");
        assert_eq!(r, Resume::From(cp("b.000001", 10)));
    }

    #[test]
    fn missing_target_with_local_state_is_refused() {
        let e = reconcile(
            "s",
            None,
            Some(cp("b.000001", 500)),
            false,
            Path::new("/state"),
        )
        .expect_err("reset target");
        assert!(e.to_string().contains("/state"));
        assert_eq!(
            reconcile("s", None, None, false, Path::new("/x")).expect("fresh"),
            Resume::Fresh
        );
    }

    #[test]
    fn sled_store_round_trips_and_locks() {
        let dir = std::env::temp_dir().join(format!("ferry-sled-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = SledStore::open(&dir).expect("opens");
            assert_eq!(store.load_checkpoint("a").expect("reads"), None);
            store
                .save_checkpoint("a", &cp("b.000003", 77))
                .expect("writes");
            store.flush().expect("flushes");
            assert!(SledStore::open(&dir).is_err(), "a second opener is refused");
        }
        let store = SledStore::open(&dir).expect("reopens");
        assert_eq!(
            store.load_checkpoint("a").expect("reads"),
            Some(cp("b.000003", 77))
        );
        // A store written by a newer ferry is refused, not misread.
        store.put(STORE_FORMAT_KEY, b"99").expect("writes");
        store.flush().expect("flushes");
        drop(store);
        let e = SledStore::open(&dir).err().expect("newer format refused");
        assert!(matches!(e, CheckpointError::StoreFormat { .. }), "{e}");
        assert!(e.class().is_definite());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_store_round_trips_and_can_fail_writes() {
        let store = MemoryStore::default();
        store
            .save_checkpoint("s", &cp("b.000001", 4))
            .expect("writes");
        assert_eq!(
            store.load_checkpoint("s").expect("reads"),
            Some(cp("b.000001", 4))
        );
        store
            .fail_writes
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let e = store.put("k", b"v").expect_err("fails");
        assert!(e.class().is_transient(), "a full disk may pass");
        assert_eq!(store.get("k").expect("reads"), None);
    }
}
