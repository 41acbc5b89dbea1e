//! PostgreSQL WAL positions (`pg_lsn`): a 64-bit byte offset, written `XXXXXXXX/XXXXXXXX`.
//!
//! Guarantees: parsing and printing round-trip PostgreSQL's own spelling (upper-case hex, no
//! leading zeros in either half); the order is the WAL order.

use std::fmt;
use std::str::FromStr;

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a PostgreSQL LSN (e.g. 0/16B3748)");
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips_and_orders_by_wal_position() {
        let a: Lsn = "0/16B3748".parse().expect("lsn");
        assert_eq!(a, Lsn(0x16B3748));
        assert_eq!(a.to_string(), "0/16B3748");
        let b: Lsn = "1/0".parse().expect("lsn");
        assert_eq!(b.0, 1 << 32);
        assert!(a < b);
        assert!("16B3748".parse::<Lsn>().is_err());
        assert!("0/xyz".parse::<Lsn>().is_err());
    }
}
