//! ferry: keeps PostgreSQL an exact, verified copy of a live MySQL/MariaDB database.
//!
//! ```text
//!  MySQL binlog ──► source::binlog (decode, schema) ──► transform (pure) ──► sink::postgres
//!       ▲                 │ positions                                        │ commit + position
//!       └── source::preflight                                  checkpoint (PG fence + sled) ◄┘
//!                   control (signals) ──► app (run state)      metrics ◄── every stage
//! ```
//!
//! - [`config`]: `config.toml` → validated [`config::Config`].
//! - [`position`]: binlog positions and GTID sets as types.
//! - [`select`]: which tables, and their PostgreSQL names.
//! - [`transform`]: every MySQL → PostgreSQL value rule (pure).

pub mod config;
pub mod position;
pub mod select;
pub mod transform;
