//! The migration lifecycle after the copy: the persisted migration phase of a stream and the
//! cutover that makes PostgreSQL primary (the rollback that makes MySQL primary again is in
//! [`crate::reverse::rollback`]).
//!
//! ```text
//!  replicating ──cutover──► frozen ──► drained ──► verified ──► switching ──► switched
//!    ▲  ▲                     │           │           │         (no return)       │
//!    │  └─── abort (MySQL writable again, nothing lost) ┘                          │ rollback
//!    │                                                                            ▼
//!    └── MySQL writable ◄── rollback_drained ◄── drain, verify ◄──────── rollback_frozen
//!        (abort from either rollback phase: roles back as recorded, MySQL read-only → switched)
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
//!   holds the forward stream once switched, and undoes a cutover (or a rollback's freeze)
//!   whose command vanished.
//! - [`lease`]: the lease a lifecycle command renews while it works.
//! - [`cutover`]: `ferry cutover` — preconditions, the plan (`--dry-run`), the steps, the report.

pub mod changed_keys;
pub mod cutover;
pub mod final_check;
pub mod freeze;
pub mod lease;
pub mod phase;
pub mod state;
pub mod watch;

pub use phase::MigrationPhase;
