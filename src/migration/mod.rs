//! The migration lifecycle after the copy: the persisted migration phase of a stream and the
//! cutover that makes PostgreSQL primary.
//!
//! ```text
//!  replicating ──cutover──► frozen ──► drained ──► verified ──► switching ──► switched
//!       ▲                     │           │           │            (point of no return)
//!       └──── abort (MySQL writable again, nothing lost) ──────┘
//! ```
//!
//! - [`phase`]: the phases and which transitions are allowed.
//! - [`state`]: the phase row in `<ferry_schema>.migration` (the authority, beside the
//!   checkpoint) and its log in `migration_log`.
//! - [`changed_keys`]: the keys the stream applied since the last verification pass that
//!   matched, so the final check reads only what changed.
//! - [`freeze`]: `read_only` on the source, waiting for (or ending) open write transactions,
//!   and the final position.
//! - [`watch`]: the daemon's side — it reports its health into the row, detects the drain,
//!   holds the forward stream once switched, and undoes a cutover whose command vanished.
//! - [`cutover`]: `ferry cutover` — preconditions, the plan (`--dry-run`), the steps, the report.

pub mod changed_keys;
pub mod cutover;
pub mod final_check;
pub mod freeze;
pub mod phase;
pub mod state;
pub mod watch;

pub use phase::MigrationPhase;
