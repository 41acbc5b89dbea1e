//! The migration phases of a stream and the transitions between them.
//!
//! Guarantees: the phase names are stable (they are stored in PostgreSQL and exported as the
//! `phase` label of `ferry_migration_phase`); [`MigrationPhase::is_frozen`] is true exactly in
//! the phases where the source has been made read-only by a cutover that has not yet passed
//! its point of no return, i.e. where an abort must make it writable again.

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
}

impl MigrationPhase {
    pub const ALL: [MigrationPhase; 6] = [
        MigrationPhase::Replicating,
        MigrationPhase::Frozen,
        MigrationPhase::Drained,
        MigrationPhase::Verified,
        MigrationPhase::Switching,
        MigrationPhase::Switched,
    ];

    pub fn label(self) -> &'static str {
        match self {
            MigrationPhase::Replicating => "replicating",
            MigrationPhase::Frozen => "frozen",
            MigrationPhase::Drained => "drained",
            MigrationPhase::Verified => "verified",
            MigrationPhase::Switching => "switching",
            MigrationPhase::Switched => "switched",
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
        matches!(self, MigrationPhase::Switching | MigrationPhase::Switched)
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
    }
}
