//! Source positions as types: a binlog coordinate (`file:offset`) and GTID state for MySQL
//! (`uuid:1-5,uuid2:7`) and MariaDB (`domain-server-seq,...`).
//!
//! A [`BinlogPosition`] always points at a transaction boundary: the byte offset of the first event
//! *after* a committed source transaction. Resuming there never replays or skips part of a
//! transaction. Positions order by binlog file sequence number, then offset, so "which of two
//! checkpoints is ahead" is a comparison, not a string heuristic.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a position or GTID text could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PositionError {
    #[error("binlog position {0:?} is not of the form FILE:OFFSET (e.g. mysql-bin.000042:1337)")]
    BadPosition(String),
    #[error("binlog file name {0:?} has no numeric extension (expected e.g. mysql-bin.000042)")]
    BadFileName(String),
    #[error("GTID set {0:?} is neither MySQL (uuid:1-5) nor MariaDB (domain-server-seq) form")]
    BadGtid(String),
}

/// A transaction boundary in the source's binary log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// Binlog file name as the server reports it (`SHOW BINARY LOGS`).
    pub file: String,
    /// Byte offset of the next event to read in `file`.
    pub offset: u64,
}

impl BinlogPosition {
    pub fn new(file: impl Into<String>, offset: u64) -> Self {
        Self {
            file: file.into(),
            offset,
        }
    }

    /// The numeric sequence of the file (`mysql-bin.000042` → 42), which orders files.
    pub fn file_sequence(&self) -> Result<u64, PositionError> {
        file_sequence(&self.file)
    }
}

/// Parses the numeric extension of a binlog file name.
pub fn file_sequence(file: &str) -> Result<u64, PositionError> {
    file.rsplit_once('.')
        .and_then(|(_, ext)| ext.parse::<u64>().ok())
        .ok_or_else(|| PositionError::BadFileName(file.to_string()))
}

impl PartialOrd for BinlogPosition {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let a = self.file_sequence().ok()?;
        let b = other.file_sequence().ok()?;
        Some(a.cmp(&b).then(self.offset.cmp(&other.offset)))
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)
    }
}

impl FromStr for BinlogPosition {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (file, offset) = s
            .rsplit_once(':')
            .ok_or_else(|| PositionError::BadPosition(s.to_string()))?;
        let offset = offset
            .parse::<u64>()
            .map_err(|_| PositionError::BadPosition(s.to_string()))?;
        if file.is_empty() {
            return Err(PositionError::BadPosition(s.to_string()));
        }
        file_sequence(file)?;
        Ok(Self::new(file, offset))
    }
}

/// One MariaDB GTID: `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MariaGtid {
    pub domain: u32,
    pub server: u32,
    pub sequence: u64,
}

impl fmt::Display for MariaGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server, self.sequence)
    }
}

impl FromStr for MariaGtid {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PositionError::BadGtid(s.to_string());
        let mut parts = s.trim().splitn(3, '-');
        let domain = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let server = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let sequence = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(Self {
            domain,
            server,
            sequence,
        })
    }
}

/// Closed interval of MySQL transaction numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GnoInterval {
    pub start: u64,
    pub end: u64,
}

/// GTID state of the source: what has been applied, in the server's own flavour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GtidSet {
    /// MariaDB: the last GTID per replication domain (what `@@gtid_slave_pos` holds).
    MariaDb(BTreeMap<u32, MariaGtid>),
    /// MySQL: executed intervals per source UUID (tagged GTIDs keep `uuid:tag` as the key).
    MySql(BTreeMap<String, Vec<GnoInterval>>),
}

impl GtidSet {
    pub fn empty_mariadb() -> Self {
        GtidSet::MariaDb(BTreeMap::new())
    }

    pub fn empty_mysql() -> Self {
        GtidSet::MySql(BTreeMap::new())
    }

    pub fn is_empty(&self) -> bool {
        match self {
            GtidSet::MariaDb(m) => m.is_empty(),
            GtidSet::MySql(m) => m.is_empty(),
        }
    }

    /// Records a committed MariaDB GTID (replaces the domain's previous one).
    pub fn apply_mariadb(&mut self, gtid: MariaGtid) {
        if let GtidSet::MariaDb(m) = self {
            m.insert(gtid.domain, gtid);
        }
    }

    /// Records a committed MySQL GTID, merging it into the interval list of its source.
    pub fn apply_mysql(&mut self, source: &str, gno: u64) {
        let GtidSet::MySql(m) = self else { return };
        let intervals = m.entry(source.to_string()).or_default();
        intervals.push(GnoInterval {
            start: gno,
            end: gno,
        });
        normalize(intervals);
    }

    /// Records committed MySQL GTIDs `start..=end` of one source (e.g. from PREVIOUS_GTIDS).
    pub fn apply_mysql_interval(&mut self, source: &str, start: u64, end: u64) {
        let GtidSet::MySql(m) = self else { return };
        if start == 0 || end < start {
            return;
        }
        let intervals = m.entry(source.to_string()).or_default();
        intervals.push(GnoInterval { start, end });
        normalize(intervals);
    }

    /// Adds the GTIDs of a MariaDB GTID_LIST (the state before a binlog file) for the domains
    /// this set does not know yet; a domain already known holds a later GTID. When a domain
    /// appears several times (one entry per server), the last entry is its current GTID.
    pub fn seed_mariadb(&mut self, list: &[MariaGtid]) {
        let GtidSet::MariaDb(m) = self else { return };
        let known: Vec<u32> = m.keys().copied().collect();
        for g in list {
            if !known.contains(&g.domain) {
                m.insert(g.domain, *g);
            }
        }
    }

    /// True when `self` covers every transaction of `other` (same flavour only).
    pub fn contains(&self, other: &GtidSet) -> bool {
        match (self, other) {
            (GtidSet::MariaDb(a), GtidSet::MariaDb(b)) => b
                .iter()
                .all(|(d, g)| a.get(d).is_some_and(|x| x.sequence >= g.sequence)),
            (GtidSet::MySql(a), GtidSet::MySql(b)) => b.iter().all(|(src, ivs)| {
                let Some(have) = a.get(src) else {
                    return ivs.is_empty();
                };
                ivs.iter()
                    .all(|iv| have.iter().any(|h| h.start <= iv.start && h.end >= iv.end))
            }),
            _ => false,
        }
    }
}

fn normalize(intervals: &mut Vec<GnoInterval>) {
    intervals.sort_by_key(|i| i.start);
    let mut merged: Vec<GnoInterval> = Vec::with_capacity(intervals.len());
    for iv in intervals.drain(..) {
        match merged.last_mut() {
            Some(last) if iv.start <= last.end.saturating_add(1) => {
                last.end = last.end.max(iv.end);
            }
            _ => merged.push(iv),
        }
    }
    *intervals = merged;
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidSet::MariaDb(m) => {
                let parts: Vec<String> = m.values().map(|g| g.to_string()).collect();
                f.write_str(&parts.join(","))
            }
            GtidSet::MySql(m) => {
                // MySQL's own form: a UUID once, its untagged intervals, then each tag with its
                // intervals (`uuid:1-5:tag:1-3`). Keys sort so that a UUID's entries are adjacent
                // and the untagged one (a prefix of the tagged keys) comes first.
                let mut out = String::new();
                let mut current: Option<&str> = None;
                for (key, ivs) in m {
                    let (uuid, tag) = match key.split_once(':') {
                        Some((u, t)) => (u, Some(t)),
                        None => (key.as_str(), None),
                    };
                    if current != Some(uuid) {
                        if current.is_some() {
                            out.push(',');
                        }
                        out.push_str(uuid);
                        current = Some(uuid);
                    }
                    if let Some(tag) = tag {
                        out.push(':');
                        out.push_str(tag);
                    }
                    for iv in ivs {
                        if iv.start == iv.end {
                            out.push_str(&format!(":{}", iv.start));
                        } else {
                            out.push_str(&format!(":{}-{}", iv.start, iv.end));
                        }
                    }
                }
                f.write_str(&out)
            }
        }
    }
}

impl FromStr for GtidSet {
    type Err = PositionError;

    /// Parses either flavour; the presence of `:` marks the MySQL form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || PositionError::BadGtid(s.to_string());
        if s.contains(':') {
            let mut map: BTreeMap<String, Vec<GnoInterval>> = BTreeMap::new();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let mut fields = part.split(':');
                let uuid = fields.next().ok_or_else(bad)?.to_ascii_lowercase();
                if uuid.len() != 36 || uuid.chars().filter(|c| *c == '-').count() != 4 {
                    return Err(bad());
                }
                let mut key = uuid;
                let mut intervals = Vec::new();
                for field in fields {
                    if field
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic())
                    {
                        // A tag (MySQL 8.4+): subsequent intervals belong to uuid:tag.
                        if !intervals.is_empty() {
                            map.entry(key.clone()).or_default().append(&mut intervals);
                        }
                        key = format!("{}:{}", key.split(':').next().unwrap_or(""), field);
                        continue;
                    }
                    let (a, b) = match field.split_once('-') {
                        Some((a, b)) => (a, b),
                        None => (field, field),
                    };
                    let start: u64 = a.parse().map_err(|_| bad())?;
                    let end: u64 = b.parse().map_err(|_| bad())?;
                    if start == 0 || end < start {
                        return Err(bad());
                    }
                    intervals.push(GnoInterval { start, end });
                }
                let entry = map.entry(key).or_default();
                entry.append(&mut intervals);
                normalize(entry);
            }
            Ok(GtidSet::MySql(map))
        } else {
            let mut map = BTreeMap::new();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let g: MariaGtid = part.parse()?;
                map.insert(g.domain, g);
            }
            Ok(GtidSet::MariaDb(map))
        }
    }
}

/// Formats a 16-byte MySQL server UUID as text.
pub fn uuid_text(sid: &[u8; 16]) -> String {
    let h = hex::encode(sid);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_file_sequence_then_offset() {
        let a: BinlogPosition = "mysql-bin.000009:900".parse().expect("valid");
        let b: BinlogPosition = "mysql-bin.000010:4".parse().expect("valid");
        let c: BinlogPosition = "mysql-bin.000010:120".parse().expect("valid");
        assert!(a < b, "file 9 is before file 10 even though 900 > 4");
        assert!(b < c);
        assert_eq!(c.to_string(), "mysql-bin.000010:120");
    }

    #[test]
    fn position_parse_rejects_garbage() {
        assert!("nofile".parse::<BinlogPosition>().is_err());
        assert!("bin.00a:4".parse::<BinlogPosition>().is_err());
        assert!(":4".parse::<BinlogPosition>().is_err());
        assert!("bin.000001:x".parse::<BinlogPosition>().is_err());
    }

    #[test]
    fn mariadb_gtid_roundtrip_and_contains() {
        let s: GtidSet = "0-1-100,1-2-7".parse().expect("valid");
        assert_eq!(s.to_string(), "0-1-100,1-2-7");
        let older: GtidSet = "0-1-99".parse().expect("valid");
        assert!(s.contains(&older));
        assert!(!older.contains(&s));
    }

    #[test]
    fn mysql_gtid_intervals_merge() {
        let mut s: GtidSet = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7"
            .parse()
            .expect("valid");
        s.apply_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562", 6);
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7");
        let sub: GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:2-4"
            .parse()
            .expect("ok");
        assert!(s.contains(&sub));
        assert!(!sub.contains(&s));
    }

    #[test]
    fn mysql_tagged_gtid_parses() {
        let s: GtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3:tag1:5"
            .parse()
            .expect("valid");
        let GtidSet::MySql(m) = &s else {
            panic!("expected MySQL flavour")
        };
        assert_eq!(m.len(), 2, "untagged and tagged are separate keys: {m:?}");
        assert_eq!(
            s.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-3:tag1:5",
            "printed as MySQL prints it: the UUID once, then its tags"
        );
        let two: GtidSet =
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:t:2,0e11fa47-71ca-11e1-9e33-c80aa9429562:1"
                .parse()
                .expect("valid");
        assert_eq!(
            two.to_string(),
            "0e11fa47-71ca-11e1-9e33-c80aa9429562:1,3e11fa47-71ca-11e1-9e33-c80aa9429562:t:2"
        );
        assert_eq!(two.to_string().parse::<GtidSet>().expect("roundtrip"), two);
    }

    #[test]
    fn mysql_intervals_from_previous_gtids() {
        let mut s = GtidSet::empty_mysql();
        s.apply_mysql_interval("3e11fa47-71ca-11e1-9e33-c80aa9429562", 1, 13);
        s.apply_mysql_interval("3e11fa47-71ca-11e1-9e33-c80aa9429562:mytag", 1, 2);
        s.apply_mysql("3e11fa47-71ca-11e1-9e33-c80aa9429562:mytag", 3);
        s.apply_mysql_interval("3e11fa47-71ca-11e1-9e33-c80aa9429562", 5, 4);
        assert_eq!(
            s.to_string(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-13:mytag:1-3"
        );
    }

    #[test]
    fn mariadb_gtid_list_seeds_only_unknown_domains() {
        let mut s: GtidSet = "0-1-100".parse().expect("valid");
        let list = [
            MariaGtid {
                domain: 0,
                server: 1,
                sequence: 90,
            },
            MariaGtid {
                domain: 1,
                server: 2,
                sequence: 7,
            },
            MariaGtid {
                domain: 1,
                server: 3,
                sequence: 9,
            },
        ];
        s.seed_mariadb(&list);
        assert_eq!(
            s.to_string(),
            "0-1-100,1-3-9",
            "domain 0 keeps its later GTID"
        );
    }

    #[test]
    fn bad_gtids_are_rejected() {
        assert!("abc".parse::<GtidSet>().is_err());
        assert!("0-1".parse::<GtidSet>().is_err());
        assert!("not-a-uuid:1-2".parse::<GtidSet>().is_err());
        assert!("3e11fa47-71ca-11e1-9e33-c80aa9429562:5-2"
            .parse::<GtidSet>()
            .is_err());
    }

    #[test]
    fn uuid_text_formats() {
        let sid = [
            0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42,
            0x95, 0x62,
        ];
        assert_eq!(uuid_text(&sid), "3e11fa47-71ca-11e1-9e33-c80aa9429562");
    }
}
