//! MariaDB-only binlog events that `mysql_common` leaves undecoded: GTID (type 162) and
//! GTID_LIST (type 163).
//!
//! Guarantees: decoding is bounds-checked (a short event is `None`, never a panic); the layouts
//! are MariaDB's (`log_event.h`): GTID = u64 sequence, u32 domain, u8 flags; GTID_LIST = u32
//! count (low 28 bits), then count × (u32 domain, u32 server, u64 sequence).

use crate::position::MariaGtid;

pub const GTID_EVENT: u8 = 162;
pub const GTID_LIST_EVENT: u8 = 163;
pub const ANNOTATE_ROWS_EVENT: u8 = 160;
pub const BINLOG_CHECKPOINT_EVENT: u8 = 161;
pub const START_ENCRYPTION_EVENT: u8 = 164;
/// MariaDB's compressed query/rows events (log_bin_compress): refused in preflight.
pub const COMPRESSED_EVENTS: [u8; 7] = [165, 166, 167, 168, 169, 170, 171];

/// The event group is a single statement without BEGIN/COMMIT (DDL, non-transactional).
pub const FL_STANDALONE: u8 = 1;
/// The event carries a group commit id (8 bytes after the flags).
pub const FL_GROUP_COMMIT_ID: u8 = 2;
/// The event group is the prepared part of an XA transaction (its outcome comes later).
pub const FL_PREPARED_XA: u8 = 64;
/// The event group completes an XA transaction (the XID follows the flags too).
pub const FL_COMPLETED_XA: u8 = 128;
/// Extra flags (`binlog_alter_two_phase`): the first phase of an ALTER, its commit, its
/// rollback.
const FL_START_ALTER_E1: u8 = 2;
const FL_COMMIT_ALTER_E1: u8 = 4;
const FL_ROLLBACK_ALTER_E1: u8 = 8;

/// Which phase of a two-phase ALTER (`binlog_alter_two_phase = ON`) an event group is: MariaDB
/// logs the statement when it starts, and again when it commits or rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterPhase {
    /// Started on the source, not yet committed: nothing to carry yet.
    Start,
    /// Committed: the statement takes effect here.
    Commit,
    /// Rolled back: the statement never took effect.
    Rollback,
}

/// A decoded MariaDB GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidEvent {
    pub gtid: MariaGtid,
    pub flags: u8,
    /// The group's phase of a two-phase ALTER; `None` for every other group.
    pub alter: Option<AlterPhase>,
}

impl GtidEvent {
    pub fn standalone(&self) -> bool {
        self.flags & FL_STANDALONE != 0
    }

    pub fn prepared_xa(&self) -> bool {
        self.flags & FL_PREPARED_XA != 0
    }
}

/// Decodes a GTID event body; `server_id` comes from the event header.
pub fn parse_gtid(data: &[u8], server_id: u32) -> Option<GtidEvent> {
    let sequence = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let domain = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let flags = *data.get(12)?;
    // The extra flags follow the commit id and the XID, when there are any (MariaDB's
    // `Gtid_log_event`); a short or padded event has none.
    let mut at = 13;
    if flags & FL_GROUP_COMMIT_ID != 0 {
        at += 8;
    }
    if flags & (FL_PREPARED_XA | FL_COMPLETED_XA) != 0 {
        let gtrid = usize::from(*data.get(at + 4)?);
        let bqual = usize::from(*data.get(at + 5)?);
        at += 6 + gtrid + bqual;
    }
    let extra = data.get(at).copied().unwrap_or(0);
    let alter = if extra & FL_START_ALTER_E1 != 0 {
        Some(AlterPhase::Start)
    } else if extra & FL_COMMIT_ALTER_E1 != 0 {
        Some(AlterPhase::Commit)
    } else if extra & FL_ROLLBACK_ALTER_E1 != 0 {
        Some(AlterPhase::Rollback)
    } else {
        None
    };
    Some(GtidEvent {
        gtid: MariaGtid {
            domain,
            server: server_id,
            sequence,
        },
        flags,
        alter,
    })
}

/// Decodes a GTID_LIST event body.
pub fn parse_gtid_list(data: &[u8]) -> Option<Vec<MariaGtid>> {
    let count = u32::from_le_bytes(data.get(0..4)?.try_into().ok()?) & 0x0fff_ffff;
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = 4 + i * 16;
        let rec = data.get(at..at + 16)?;
        out.push(MariaGtid {
            domain: u32::from_le_bytes(rec[0..4].try_into().ok()?),
            server: u32::from_le_bytes(rec[4..8].try_into().ok()?),
            sequence: u64::from_le_bytes(rec[8..16].try_into().ok()?),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtid_event_decodes() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend_from_slice(&3u32.to_le_bytes());
        data.push(FL_STANDALONE);
        let e = parse_gtid(&data, 7).expect("decodes");
        assert_eq!(e.gtid.to_string(), "3-7-42");
        assert!(e.standalone());
        assert!(parse_gtid(&data[..10], 7).is_none(), "short event");
        assert_eq!(e.alter, None);
    }

    #[test]
    fn two_phase_alter_events_decode() {
        // Bodies of MariaDB 10.11's START ALTER and ROLLBACK ALTER GTID events (with their
        // checksum), as `binlog_alter_two_phase = ON` wrote them.
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let start =
            parse_gtid(&hex("1f4b01000000000000000000290200000000002140fcb0"), 1).expect("decodes");
        assert_eq!(start.gtid.to_string(), "0-1-84767");
        assert!(start.standalone());
        assert_eq!(start.alter, Some(AlterPhase::Start));
        let rollback = parse_gtid(
            &hex("1e4b0100000000000000000029081d4b010000000000b1a53259"),
            1,
        )
        .expect("decodes");
        assert_eq!(rollback.alter, Some(AlterPhase::Rollback));
        let commit = parse_gtid(
            &hex("204b0100000000000000000029041f4b010000000000fcaed416"),
            1,
        )
        .expect("decodes");
        assert_eq!(commit.alter, Some(AlterPhase::Commit));
        // A group commit id before the extra flags.
        let mut data = 5u64.to_le_bytes().to_vec();
        data.extend_from_slice(&0u32.to_le_bytes());
        data.push(FL_STANDALONE | FL_GROUP_COMMIT_ID);
        data.extend_from_slice(&9u64.to_le_bytes());
        data.push(FL_START_ALTER_E1);
        assert_eq!(
            parse_gtid(&data, 1).expect("decodes").alter,
            Some(AlterPhase::Start)
        );
    }

    #[test]
    fn gtid_list_decodes() {
        let mut data = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 10u64), (1, 2, 20)] {
            data.extend_from_slice(&d.to_le_bytes());
            data.extend_from_slice(&s.to_le_bytes());
            data.extend_from_slice(&n.to_le_bytes());
        }
        let l = parse_gtid_list(&data).expect("decodes");
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].to_string(), "1-2-20");
        assert!(parse_gtid_list(&data[..20]).is_none());
    }
}

/// Hostile input: arbitrary event bodies parse or are refused, never a panic.
#[cfg(test)]
mod hostile_bytes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        #[test]
        fn arbitrary_gtid_event_bodies_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..80),
            server_id: u32,
        ) {
            let _ = parse_gtid(&data, server_id);
            let _ = parse_gtid_list(&data);
        }
    }
}
