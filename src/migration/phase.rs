//! The migration phases of a stream and the transitions between them.
//!
//! Guarantees: the phase names are stable (they are stored in PostgreSQL and exported as the
//! `phase` label of `ferry_migration_phase`); [`MigrationPhase::is_frozen`] is true exactly in
//! the phases where the source has been made read-only by a cutover that has not yet passed
//! its point of no return, i.e. where an abort must make it writable again;
//! [`MigrationPhase::is_rolling_back`] is true exactly while `ferry rollback` holds PostgreSQL's
//! application roles frozen.

use std::fmt;
use std::str::FromStr;

/// Where a stream is in its migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationPhase {
    /// MySQL is primary; ferry streams its changes into PostgreSQL.
    Replicating,
    /// A cutover made MySQL read-only and recorded the final position.
    Frozen,
    /// The stream applied everything up to the final position.
    Drained,
    /// The changed rows matched; ready to switch.
    Verified,
    /// The switch command is running: where the application writes is not known until it ends.
    Switching,
    /// PostgreSQL is primary; the forward stream reads nothing more.
    Switched,
    /// `ferry rollback` froze the application's PostgreSQL roles (their prior state recorded)
    /// and is draining the reverse stream; an abort unfreezes them and returns to `switched`.
    RollbackFrozen,
    /// The reverse stream is drained, the row counts and changed rows matched, the sequences and the forward
    /// stream's resume point are set: MySQL is being made writable. Running `ferry rollback`
    /// again finishes; `ferry rollback --abort` makes MySQL read-only again and returns to
    /// `switched`.
    RollbackDrained,
}

impl MigrationPhase {
    pub const ALL: [MigrationPhase; 8] = [
        MigrationPhase::Replicating,
        MigrationPhase::Frozen,
        MigrationPhase::Drained,
        MigrationPhase::Verified,
        MigrationPhase::Switching,
        MigrationPhase::Switched,
        MigrationPhase::RollbackFrozen,
        MigrationPhase::RollbackDrained,
    ];

    pub fn label(self) -> &'static str {
        match self {
            MigrationPhase::Replicating => "replicating",
            MigrationPhase::Frozen => "frozen",
            MigrationPhase::Drained => "drained",
            MigrationPhase::Verified => "verified",
            MigrationPhase::Switching => "switching",
            MigrationPhase::Switched => "switched",
            MigrationPhase::RollbackFrozen => "rollback_frozen",
            MigrationPhase::RollbackDrained => "rollback_drained",
        }
    }

    /// A cutover holds the source read-only and may still be undone.
    pub fn is_frozen(self) -> bool {
        matches!(
            self,
            MigrationPhase::Frozen | MigrationPhase::Drained | MigrationPhase::Verified
        )
    }

    /// The forward stream must read nothing (PostgreSQL may be taking writes).
    pub fn holds_forward_stream(self) -> bool {
        matches!(
            self,
            MigrationPhase::Switching
                | MigrationPhase::Switched
                | MigrationPhase::RollbackFrozen
                | MigrationPhase::RollbackDrained
        )
    }

    /// The reverse stream runs: PostgreSQL is primary, or a rollback is draining it.
    pub fn runs_reverse_stream(self) -> bool {
        matches!(
            self,
            MigrationPhase::Switched
                | MigrationPhase::RollbackFrozen
                | MigrationPhase::RollbackDrained
        )
    }

    /// A `ferry rollback` is under way (its lease, its recorded roles).
    pub fn is_rolling_back(self) -> bool {
        matches!(
            self,
            MigrationPhase::RollbackFrozen | MigrationPhase::RollbackDrained
        )
    }
}

impl fmt::Display for MigrationPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for MigrationPhase {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MigrationPhase::ALL
            .into_iter()
            .find(|p| p.label() == s)
            .ok_or_else(|| format!("unknown migration phase {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_only_pre_switch_phases_are_undoable() {
        for p in MigrationPhase::ALL {
            assert_eq!(p.label().parse::<MigrationPhase>(), Ok(p));
        }
        assert!("frozen-ish".parse::<MigrationPhase>().is_err());
        let undoable: Vec<_> = MigrationPhase::ALL
            .into_iter()
            .filter(|p| p.is_frozen())
            .collect();
        assert_eq!(
            undoable,
            [
                MigrationPhase::Frozen,
                MigrationPhase::Drained,
                MigrationPhase::Verified
            ]
        );
        assert!(MigrationPhase::Switching.holds_forward_stream());
        assert!(!MigrationPhase::Verified.holds_forward_stream());
        for p in MigrationPhase::ALL {
            // The reverse stream and the forward stream never both run.
            assert!(!p.runs_reverse_stream() || p.holds_forward_stream(), "{p}");
            assert!(!(p.is_rolling_back() && p.is_frozen()), "{p}");
        }
        assert!(MigrationPhase::RollbackDrained.runs_reverse_stream());
        assert!(!MigrationPhase::Switching.runs_reverse_stream());
    }
}
