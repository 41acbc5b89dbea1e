//! ferry: keeps PostgreSQL an exact, verified copy of a live MySQL/MariaDB database.
//!
//! ```text
//!  MySQL binlog ──► source::binlog ──► source::decode ──► transform ──► sink::postgres ──► PostgreSQL
//!       ▲            (stream, heartbeats)   (events → Messages)  (pure)   (batched txns)   rows + checkpoint
//!       └── source::preflight                                            checkpoint (PG fence + sled)
//!                control (signals) ──► app (run state, restarts)         metrics ◄── every stage
//! ```
//!
//! - [`app`]: wires the stages; owns run state, restarts and shutdown.
//! - [`backfill`]: copies existing rows before streaming (copy first, then replay).
//! - [`config`]: `config.toml` → validated [`config::Config`].
//! - [`source`]: MySQL/MariaDB connection, preflight, catalog, binlog stage and decoder.
//! - [`transform`]: every MySQL → PostgreSQL value rule (pure).
//! - [`sink`]: PostgreSQL connection, DDL, batching and the apply stage.
//! - [`checkpoint`]: exactly-once bookkeeping (PostgreSQL fence + local sled store).
//! - [`change`]: the messages between source and sink.
//! - [`schema`], [`select`], [`position`]: the table model, table selection, positions.
//! - [`progress`], [`status`], [`metrics`], [`http`]: lag accounting, the status board,
//!   Prometheus metrics and the HTTP endpoint.
//! - [`control`]: signals → commands; [`reload`]: what SIGHUP may change.
//! - [`notify`]: systemd's notify protocol (READY, WATCHDOG, STATUS); [`logging`]: the
//!   subscriber whose level SIGHUP can change.
//! - [`verify`]: drift verification — in-database chunk checksums, bisection to the differing
//!   rows, sampling, repair, and the continuous verifier.

pub mod app;
pub mod backfill;
pub mod backoff;
pub mod change;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod error;
pub mod ferry_tables;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pidfile;
pub mod position;
pub mod preflight;
pub mod progress;
pub mod reload;
pub mod schema;
pub mod select;
pub mod sink;
pub mod source;
pub mod startup;
pub mod status;
pub mod transform;
pub mod verify;
