//! ferry: keeps PostgreSQL an exact, verified copy of a live MySQL/MariaDB database.
//!
//! ```text
//!  MySQL binlog ──► source::binlog ──► source::decode ──► transform ──► sink::postgres ──► sink::executor ──► PostgreSQL
//!       ▲            (stream, heartbeats)  (events → Messages)  (pure)    (batches)          (one txn + checkpoint)
//!       │                                                                                         │
//!   preflight ──► startup ──► backfill (chunks, COPY) ──────────────────────────────────────────────┤
//!                   │                                                            checkpoint (PG fence + sled)
//!   app: operator commands (signals) · supervisor (restarts, backoff) · watchdog · metrics/status ◄── every stage
//! ```
//!
//! - [`app`]: wires the daemon; [`app`]'s operator handles pause/resume/reload/stop, its
//!   supervisor restarts the pipeline after transient errors.
//! - [`startup`]: preflight, ferry's tables, checkpoint reconciliation, backfill, start position.
//! - [`preflight`]: every check on both databases before anything is written.
//! - [`backfill`]: copies existing rows before streaming (copy first, then replay), re-copies
//!   one table while streaming, builds unique constraints once consistent.
//! - [`source`]: MySQL/MariaDB connections, catalog, binlog stage and decoder, snapshot reads,
//!   the source-end watcher.
//! - [`transform`]: every MySQL → PostgreSQL value rule (pure).
//! - [`sink`]: PostgreSQL connections, DDL, SQL builders, batching and the apply executor.
//! - [`checkpoint`]: exactly-once bookkeeping (PostgreSQL fence + local store);
//!   [`ferry_tables`]: ferry's own tables, created by versioned migrations.
//! - [`tls`]: the TLS modes of both connections, what a session negotiated, refused handshakes.
//! - [`error`]: the one error class (transient or definite) every module error answers.
//! - [`change`]: the messages between source and sink.
//! - [`schema`], [`select`], [`position`]: the table model, table selection, positions.
//! - [`progress`], [`status`], [`metrics`], [`http`], [`dashboard`]: lag and liveness
//!   accounting, the status board, Prometheus metrics, the HTTP endpoint and its dashboard page.
//! - [`control`]: signals → commands; [`reload`]: what SIGHUP may change; [`pidfile`]: the
//!   daemon's locked pid file; [`backoff`]: retry pacing.
//! - [`notify`]: systemd's notify protocol (READY, WATCHDOG, STATUS); [`logging`]: the
//!   subscriber whose level SIGHUP can change.
//! - [`migration`]: the cutover — phases stored beside the checkpoint, the daemon's side of
//!   them, changed keys, the freeze, the final check and `ferry cutover`.
//! - [`reverse`]: the PostgreSQL → MySQL reverse stream armed at cutover (rollback without loss).
//! - [`target_schema`]: the schema the application runs on after the switch — identities and
//!   `sync_sequences`, foreign keys and their validation, the reviewable DDL of `ferry schema`.
//! - [`plan`]: `ferry plan` — both databases measured (state, workload, readiness, a data
//!   scan, a sample copy) and the migration plan written from the measurements.
//! - [`report`]: `ferry report` — the stakeholder update from ferry's own records.
//! - [`verify`]: drift verification — in-database chunk checksums, bisection to the differing
//!   rows, sampling, repair, and the continuous verifier.

pub mod app;
pub mod backfill;
pub mod backoff;
pub mod change;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod error;
pub mod ferry_tables;
pub mod html_page;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod migration;
pub mod notify;
pub mod pidfile;
pub mod plan;
pub mod position;
pub mod preflight;
pub mod progress;
pub mod recorded_alters;
pub mod reload;
pub mod report;
pub mod reverse;
pub mod schema;
pub mod select;
pub mod sink;
pub mod source;
pub mod startup;
pub mod status;
pub mod table_models;
pub mod target_schema;
pub mod tls;
pub mod transform;
pub mod verify;
