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
/// The event group is the prepared part of an XA transaction (its outcome comes later).
pub const FL_PREPARED_XA: u8 = 64;

/// A decoded MariaDB GTID event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GtidEvent {
    pub gtid: MariaGtid,
    pub flags: u8,
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
    Some(GtidEvent {
        gtid: MariaGtid {
            domain,
            server: server_id,
            sequence,
        },
        flags,
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
