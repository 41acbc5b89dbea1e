//! Exact decoding of MySQL character data to UTF-8.
//!
//! Guarantees: bytes are decoded by the column's own character set, never guessed, to exactly the
//! text MariaDB's `CONVERT(… USING utf8mb4)` gives; a byte sequence MariaDB has no character for
//! (it shows `?` or U+FFFD), or a NUL (which PostgreSQL text cannot hold), is a
//! [`ValueProblem`], never a replacement character. Each set is a standard table (encoding_rs's
//! WHATWG tables, oem_cp's IBM code pages) plus, where MariaDB's own table differs, the
//! differences measured against MariaDB 10.11 by `tests/charsets.rs` over every one- and
//! two-byte sequence (and the three-byte ones of ujis/eucjpms): the lead and trail byte ranges
//! MariaDB accepts ([`Layout`]) and an explicit list of ranges it refuses or maps elsewhere
//! ([`Exception`]). Character sets that test does not show exact are not offered, so a mapping
//! that loads is exact.

use std::borrow::Cow;

use encoding_rs::Encoding;

use super::{ProblemKind, ValueProblem};

/// A character set ferry decodes exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// utf8mb4, utf8mb3 (alias utf8).
    Utf8,
    /// MySQL latin1 (= cp1252).
    Latin1,
    Ascii,
    /// A set whose MySQL table is exactly a standard one (latin2, latin7, koi8r, macroman, euckr,
    /// utf16, utf16le).
    Standard(&'static Encoding),
    /// UCS-2 (big-endian, no surrogates).
    Ucs2,
    /// UTF-32 big-endian.
    Utf32,
    /// A standard table corrected to MySQL's by measured exceptions.
    Table(&'static Table),
}

/// A MySQL character set as a standard table, the byte layout MySQL accepts and the codes where
/// MySQL's table differs from the standard one.
#[derive(Debug, PartialEq, Eq)]
pub struct Table {
    /// The MySQL name, for messages.
    name: &'static str,
    base: Base,
    layout: Layout,
    /// Sorted, non-overlapping; codes are the character's bytes read big-endian.
    exceptions: &'static [Exception],
}

/// The standard table a [`Table`] starts from.
#[derive(Debug, PartialEq, Eq)]
enum Base {
    Whatwg(&'static Encoding),
    /// An IBM code page's upper half (the lower half is ASCII).
    Oem(&'static [char; 128]),
}

/// How MySQL splits bytes into characters: bytes below 0x80 are ASCII in every layout; a byte
/// sequence outside the layout is one MariaDB converts to `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Single,
    /// Lead 0xA1–0xF9, trail 0x40–0x7E or 0xA1–0xFE.
    Big5,
    /// Lead 0x81–0xFE, trail 0x40–0x7E or 0x80–0xFE (no four-byte GB18030 sequences).
    Gbk,
    /// Lead 0xA1–0xF7, trail 0xA1–0xFE.
    Gb2312,
    /// Single 0xA1–0xDF (half-width katakana); lead 0x81–0x9F or 0xE0–0xFC, trail 0x40–0x7E or
    /// 0x80–0xFC.
    Sjis,
    /// 0x8E + 0xA1–0xDF; 0x8F + two of 0xA1–0xFE (JIS X 0212); two of 0xA1–0xFE.
    EucJp,
}

/// Codes `first..=last` of a [`Table`] that MySQL refuses, or maps to consecutive code points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exception {
    first: u32,
    last: u32,
    /// `None`: MySQL has no character there. `Some(c)`: `first` is U+c, the next character of
    /// the layout U+c+1, and so on.
    to: Option<u32>,
}

const fn refuse(first: u32, last: u32) -> Exception {
    Exception {
        first,
        last,
        to: None,
    }
}

const fn map(first: u32, last: u32, to: u32) -> Exception {
    Exception {
        first,
        last,
        to: Some(to),
    }
}

impl Layout {
    /// Length of the character at the start of `b` (whose first byte is at least 0x80), or
    /// `None` when MySQL calls it invalid.
    fn char_len(self, b: &[u8]) -> Option<usize> {
        let at = |i: usize, ok: fn(u8) -> bool| b.get(i).copied().is_some_and(ok);
        let euc = |x: u8| (0xA1..=0xFE).contains(&x);
        let (ok, len) = match (self, b[0]) {
            (Layout::Single, _) => (true, 1),
            (Layout::Big5, 0xA1..=0xF9) => (at(1, |x| matches!(x, 0x40..=0x7E | 0xA1..=0xFE)), 2),
            (Layout::Gbk, 0x81..=0xFE) => (at(1, |x| matches!(x, 0x40..=0x7E | 0x80..=0xFE)), 2),
            (Layout::Gb2312, 0xA1..=0xF7) => (at(1, euc), 2),
            (Layout::Sjis, 0xA1..=0xDF) => (true, 1),
            (Layout::Sjis, 0x81..=0x9F | 0xE0..=0xFC) => {
                (at(1, |x| matches!(x, 0x40..=0x7E | 0x80..=0xFC)), 2)
            }
            (Layout::EucJp, 0x8E) => (at(1, |x| matches!(x, 0xA1..=0xDF)), 2),
            (Layout::EucJp, 0x8F) => (at(1, euc) && at(2, euc), 3),
            (Layout::EucJp, 0xA1..=0xFE) => (at(1, euc), 2),
            _ => (false, 0),
        };
        ok.then_some(len)
    }

    /// Position of a code among the layout's codes of its length, so that an [`Exception`] run
    /// over the gaps in the trail range counts characters, not code values.
    fn ordinal(self, code: u32) -> u32 {
        let (lead, trail) = (code >> 8, code & 0xFF);
        // Trail bytes below 0x7F come first, then the upper range.
        let split = |upper: u32| {
            if trail <= 0x7E {
                trail - 0x40
            } else {
                trail - upper + 63
            }
        };
        match self {
            Layout::Single => code,
            Layout::Big5 => lead * 157 + split(0xA1),
            Layout::Gbk => lead * 190 + split(0x80),
            Layout::Sjis => lead * 188 + split(0x80),
            Layout::Gb2312 | Layout::EucJp => lead * 94 + trail - 0xA1,
        }
    }
}

impl Table {
    fn exception(&self, code: u32) -> Option<&Exception> {
        let i = self.exceptions.partition_point(|e| e.last < code);
        self.exceptions.get(i).filter(|e| e.first <= code)
    }

    /// `bytes` (whole characters) by the standard table, appended to `out`.
    fn base_into(&self, bytes: &[u8], out: &mut String) -> Result<(), ValueProblem> {
        match self.base.decode(bytes) {
            Some(text) => {
                out.push_str(&text);
                Ok(())
            }
            None => Err(self.no_character()),
        }
    }

    fn no_character(&self) -> ValueProblem {
        invalid(format!("bytes with no {} character", self.name))
    }

    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, ValueProblem> {
        // Allocated only when an exception maps a character; otherwise the base decodes it all.
        let mut out: Option<String> = None;
        let (mut i, mut plain) = (0, 0);
        while i < bytes.len() {
            if bytes[i] < 0x80 {
                i += 1;
                continue;
            }
            let n = self.layout.char_len(&bytes[i..]).ok_or_else(|| {
                let end = bytes.len().min(i + 3);
                invalid(format!(
                    "bytes {} at byte {i} are not a {} character",
                    hex::encode_upper(&bytes[i..end]),
                    self.name
                ))
            })?;
            let unit = &bytes[i..i + n];
            let code = unit.iter().fold(0u32, |c, b| c << 8 | u32::from(*b));
            if let Some(e) = self.exception(code) {
                let c =
                    e.to.map(|to| to + self.layout.ordinal(code) - self.layout.ordinal(e.first))
                        .and_then(char::from_u32)
                        .ok_or_else(|| {
                            invalid(format!(
                                "bytes {} at byte {i} have no {} character",
                                hex::encode_upper(unit),
                                self.name
                            ))
                        })?;
                let s = out.get_or_insert_with(|| String::with_capacity(bytes.len() * 2));
                self.base_into(&bytes[plain..i], s)?;
                s.push(c);
                plain = i + n;
            }
            i += n;
        }
        match out {
            None => self.base.decode(bytes).ok_or_else(|| self.no_character()),
            Some(mut s) => {
                self.base_into(&bytes[plain..], &mut s)?;
                Ok(Cow::Owned(s))
            }
        }
    }
}

impl Base {
    fn decode<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        match self {
            Base::Whatwg(enc) => enc.decode_without_bom_handling_and_without_replacement(bytes),
            Base::Oem(upper) => Some(if bytes.is_ascii() {
                Cow::Borrowed(std::str::from_utf8(bytes).ok()?)
            } else {
                Cow::Owned(
                    bytes
                        .iter()
                        .map(|b| match b.checked_sub(0x80) {
                            Some(i) => upper[usize::from(i)],
                            None => char::from(*b),
                        })
                        .collect(),
                )
            }),
        }
    }
}

// The tables. Each exception is a measured difference between MariaDB 10.11 and the base table
// (tests/charsets.rs fails on any other); "refuse" where MariaDB converts to `?` or U+FFFD.

/// WHATWG windows-1250; the five bytes Windows leaves undefined (WHATWG: C1 controls) are
/// invalid in MariaDB.
static CP1250: Table = single(
    "cp1250",
    encoding_rs::WINDOWS_1250,
    &[
        refuse(0x81, 0x81),
        refuse(0x83, 0x83),
        refuse(0x88, 0x88),
        refuse(0x90, 0x90),
        refuse(0x98, 0x98),
    ],
);

/// WHATWG windows-1251; 0x98 (undefined) is invalid in MariaDB.
static CP1251: Table = single("cp1251", encoding_rs::WINDOWS_1251, &[refuse(0x98, 0x98)]);

/// WHATWG windows-1256 is the 1998 table; MariaDB has the older one without the eight letters
/// Windows added then.
static CP1256: Table = single(
    "cp1256",
    encoding_rs::WINDOWS_1256,
    &[
        refuse(0x8A, 0x8A),
        refuse(0x8F, 0x8F),
        refuse(0x98, 0x98),
        refuse(0x9A, 0x9A),
        refuse(0x9F, 0x9F),
        refuse(0xAA, 0xAA),
        refuse(0xC0, 0xC0),
        refuse(0xFF, 0xFF),
    ],
);

/// WHATWG windows-1257; the bytes Windows leaves undefined (WHATWG: C1 controls) are invalid in
/// MariaDB.
static CP1257: Table = single(
    "cp1257",
    encoding_rs::WINDOWS_1257,
    &[
        refuse(0x81, 0x81),
        refuse(0x83, 0x83),
        refuse(0x88, 0x88),
        refuse(0x8A, 0x8A),
        refuse(0x8C, 0x8C),
        refuse(0x90, 0x90),
        refuse(0x98, 0x98),
        refuse(0x9A, 0x9A),
        refuse(0x9C, 0x9C),
        refuse(0x9F, 0x9F),
    ],
);

/// ISO-8859-7:2003 (WHATWG) against MariaDB's 1987 table: other apostrophes at 0xA1/0xA2, and
/// no euro, drachma or ypogegrammeni.
static GREEK: Table = single(
    "greek",
    encoding_rs::ISO_8859_7,
    &[
        map(0xA1, 0xA1, 0x02BD),
        map(0xA2, 0xA2, 0x02BC),
        refuse(0xA4, 0xA5),
        refuse(0xAA, 0xAA),
    ],
);

/// ISO-8859-8; MariaDB has OVERLINE at 0xAF where the current table has MACRON.
static HEBREW: Table = single(
    "hebrew",
    encoding_rs::ISO_8859_8,
    &[map(0xAF, 0xAF, 0x203E)],
);

/// IBM866; MariaDB has cp437's ⁿ and ² at 0xFC/0xFD instead of № and ¤.
static CP866: Table = single(
    "cp866",
    encoding_rs::IBM866,
    &[map(0xFC, 0xFC, 0x207F), map(0xFD, 0xFD, 0x00B2)],
);

/// WHATWG KOI8-U is KOI8-RU (ў/Ў at 0xAE/0xBE); MariaDB's is RFC 2319's, with box drawing
/// there and • at 0x95.
static KOI8U: Table = single(
    "koi8u",
    encoding_rs::KOI8_U,
    &[
        map(0x95, 0x95, 0x2022),
        map(0xAE, 0xAE, 0x255D),
        map(0xBE, 0xBE, 0x256C),
    ],
);

/// ISO-8859-9 (WHATWG only has windows-1254, its superset): C1 controls at 0x80–0x9F.
static LATIN5: Table = single(
    "latin5",
    encoding_rs::WINDOWS_1254,
    &[map(0x80, 0x9F, 0x0080)],
);

/// TIS-620 (WHATWG only has windows-874, its superset): C1 controls at 0x80–0x9F, no
/// character at 0xA0.
static TIS620: Table = single(
    "tis620",
    encoding_rs::WINDOWS_874,
    &[map(0x80, 0x9F, 0x0080), refuse(0xA0, 0xA0)],
);

/// oem_cp's IBM code pages 850 and 852 are MariaDB's tables byte for byte.
static CP850: Table = Table {
    name: "cp850",
    base: Base::Oem(&oem_cp::code_table::DECODING_TABLE_CP850),
    layout: Layout::Single,
    exceptions: &[],
};

static CP852: Table = Table {
    name: "cp852",
    base: Base::Oem(&oem_cp::code_table::DECODING_TABLE_CP852),
    layout: Layout::Single,
    exceptions: &[],
};

/// WHATWG GBK (= GB18030's two-byte part) against MariaDB's GBK: MariaDB has none of GBK's
/// user-defined areas (which WHATWG maps to the Private Use Area), nor the euro (0x80, 0xA2E3)
/// and the characters GB18030 added (vertical forms 0xA6D9.., radicals 0xFE50..).
static GBK: Table = Table {
    name: "gbk",
    base: Base::Whatwg(encoding_rs::GBK),
    layout: Layout::Gbk,
    exceptions: &[
        refuse(0xA140, 0xA1A0),
        refuse(0xA240, 0xA2A0),
        refuse(0xA2AB, 0xA2B0),
        refuse(0xA2E3, 0xA2E4),
        refuse(0xA2EF, 0xA2F0),
        refuse(0xA2FD, 0xA3A0),
        refuse(0xA440, 0xA4A0),
        refuse(0xA4F4, 0xA5A0),
        refuse(0xA5F7, 0xA6A0),
        refuse(0xA6B9, 0xA6C0),
        refuse(0xA6D9, 0xA6DF),
        refuse(0xA6EC, 0xA6ED),
        refuse(0xA6F3, 0xA6F3),
        refuse(0xA6F6, 0xA7A0),
        refuse(0xA7C2, 0xA7D0),
        refuse(0xA7F2, 0xA7FE),
        refuse(0xA896, 0xA8A0),
        refuse(0xA8BC, 0xA8BC),
        refuse(0xA8BF, 0xA8BF),
        refuse(0xA8C1, 0xA8C4),
        refuse(0xA8EA, 0xA8FE),
        refuse(0xA958, 0xA958),
        refuse(0xA95B, 0xA95B),
        refuse(0xA95D, 0xA95F),
        refuse(0xA989, 0xA995),
        refuse(0xA997, 0xA9A3),
        refuse(0xA9F0, 0xA9FE),
        refuse(0xAAA1, 0xAAFE),
        refuse(0xABA1, 0xABFE),
        refuse(0xACA1, 0xACFE),
        refuse(0xADA1, 0xADFE),
        refuse(0xAEA1, 0xAEFE),
        refuse(0xAFA1, 0xAFFE),
        refuse(0xD7FA, 0xD7FE),
        refuse(0xF8A1, 0xF8FE),
        refuse(0xF9A1, 0xF9FE),
        refuse(0xFAA1, 0xFAFE),
        refuse(0xFBA1, 0xFBFE),
        refuse(0xFCA1, 0xFCFE),
        refuse(0xFDA1, 0xFDFE),
        refuse(0xFE50, 0xFEFE),
    ],
};

/// GB2312 is GBK's 0xA1–0xF7 × 0xA1–0xFE; MariaDB has GB2312's own ・ and ― at 0xA1A4/0xA1AA
/// (GBK: · and —) and none of the code points GBK filled in that area.
static GB2312: Table = Table {
    name: "gb2312",
    base: Base::Whatwg(encoding_rs::GBK),
    layout: Layout::Gb2312,
    exceptions: &[
        map(0xA1A4, 0xA1A4, 0x30FB),
        map(0xA1AA, 0xA1AA, 0x2015),
        refuse(0xA2A1, 0xA2B0),
        refuse(0xA2E3, 0xA2E4),
        refuse(0xA2EF, 0xA2F0),
        refuse(0xA2FD, 0xA2FE),
        refuse(0xA4F4, 0xA4FE),
        refuse(0xA5F7, 0xA5FE),
        refuse(0xA6B9, 0xA6C0),
        refuse(0xA6D9, 0xA6FE),
        refuse(0xA7C2, 0xA7D0),
        refuse(0xA7F2, 0xA7FE),
        refuse(0xA8BB, 0xA8C4),
        refuse(0xA8EA, 0xA9A3),
        refuse(0xA9F0, 0xAFFE),
        refuse(0xD7FA, 0xD7FE),
    ],
};

/// WHATWG Big5 is Big5-HKSCS; MariaDB's is Big5 with the ETEN kana and Cyrillic at
/// 0xC6A1–0xC7FC (its own order), other choices for a few punctuation marks, and none of
/// HKSCS's additions (lead bytes below 0xA1, 0xC8xx, 0xF9DD..).
static BIG5: Table = Table {
    name: "big5",
    base: Base::Whatwg(encoding_rs::BIG5),
    layout: Layout::Big5,
    exceptions: &[
        map(0xA145, 0xA145, 0x2022),
        map(0xA14E, 0xA14E, 0xFF64),
        refuse(0xA15A, 0xA15A),
        map(0xA1C2, 0xA1C2, 0x203E),
        refuse(0xA1C3, 0xA1C3),
        refuse(0xA1C5, 0xA1C5),
        map(0xA1E3, 0xA1E3, 0x223C),
        map(0xA1F2, 0xA1F2, 0x2641),
        map(0xA1F3, 0xA1F3, 0x2609),
        refuse(0xA1FE, 0xA240),
        map(0xA241, 0xA241, 0xFF0F),
        map(0xA242, 0xA242, 0xFF3C),
        map(0xA244, 0xA244, 0x00A5),
        map(0xA246, 0xA247, 0x00A2),
        refuse(0xA2CC, 0xA2CC),
        refuse(0xA2CE, 0xA2CE),
        refuse(0xA3C0, 0xA3E1),
        map(0xC6A1, 0xC6A1, 0x30FE),
        map(0xC6A2, 0xC6A3, 0x309D),
        map(0xC6A4, 0xC6A4, 0x3005),
        map(0xC6A5, 0xC6F7, 0x3041),
        map(0xC6F8, 0xC7B0, 0x30A1),
        map(0xC7B1, 0xC7B2, 0x0414),
        map(0xC7B3, 0xC7B3, 0x0401),
        map(0xC7B4, 0xC7BA, 0x0416),
        map(0xC7BB, 0xC7CD, 0x0423),
        map(0xC7CE, 0xC7CE, 0x0451),
        map(0xC7CF, 0xC7E8, 0x0436),
        map(0xC7E9, 0xC7F2, 0x2460),
        map(0xC7F3, 0xC7FC, 0x2474),
        refuse(0xC7FD, 0xC8FE),
        refuse(0xF9DD, 0xF9FE),
    ],
};

/// The JIS X 0208 characters where MariaDB's sjis and ujis follow JIS (\ 〜 ‖ − ¢ £ ¬) and
/// WHATWG follows Windows (the fullwidth forms), at their Shift_JIS codes.
const JIS_SJIS: [Exception; 6] = [
    map(0x815F, 0x815F, 0x005C),
    map(0x8160, 0x8160, 0x301C),
    map(0x8161, 0x8161, 0x2016),
    map(0x817C, 0x817C, 0x2212),
    map(0x8191, 0x8192, 0x00A2),
    map(0x81CA, 0x81CA, 0x00AC),
];

/// WHATWG Shift_JIS is Windows-31J; MariaDB's sjis is JIS X 0208 alone: besides the six marks
/// above, no NEC row 13 (0x87xx), NEC-selected and IBM extensions (0xED40–0xEEFC,
/// 0xFA40–0xFC4B) or user-defined area (0xF040–0xF9FC).
static SJIS: Table = Table {
    name: "sjis",
    base: Base::Whatwg(encoding_rs::SHIFT_JIS),
    layout: Layout::Sjis,
    exceptions: &[
        JIS_SJIS[0],
        JIS_SJIS[1],
        JIS_SJIS[2],
        JIS_SJIS[3],
        JIS_SJIS[4],
        JIS_SJIS[5],
        refuse(0x8740, 0x879C),
        refuse(0xED40, 0xFC4B),
    ],
};

/// MariaDB's cp932 is Windows-31J; only the single byte 0x80 (WHATWG: U+0080) is invalid.
static CP932: Table = Table {
    name: "cp932",
    base: Base::Whatwg(encoding_rs::SHIFT_JIS),
    layout: Layout::Sjis,
    exceptions: &[],
};

/// WHATWG EUC-JP against MariaDB's ujis: the six JIS marks as in sjis, no NEC row 13
/// (0xADxx), the user-defined rows 0xF5–0xFE (also after 0x8F) in the Private Use Area from
/// U+E000 (WHATWG: IBM extensions in rows 0xF9–0xFC, nothing elsewhere), and JIS X 0212's
/// tilde (0x8FA2B7) as ~.
static UJIS: Table = Table {
    name: "ujis",
    base: Base::Whatwg(encoding_rs::EUC_JP),
    layout: Layout::EucJp,
    exceptions: &[
        map(0xA1C0, 0xA1C0, 0x005C),
        map(0xA1C1, 0xA1C1, 0x301C),
        map(0xA1C2, 0xA1C2, 0x2016),
        map(0xA1DD, 0xA1DD, 0x2212),
        map(0xA1F1, 0xA1F2, 0x00A2),
        map(0xA2CC, 0xA2CC, 0x00AC),
        refuse(0xADA1, 0xADFE),
        map(0xF5A1, 0xFEFE, 0xE000),
        map(0x8FA2B7, 0x8FA2B7, 0x007E),
        map(0x8FF5A1, 0x8FFEFE, 0xE3AC),
    ],
};

/// eucJP-ms is WHATWG EUC-JP (with the NEC row) except the user-defined rows as in ujis and
/// JIS X 0212's broken bar (0x8FA2C3) as ￤. Its IBM extensions after 0x8F (0x8FF3F3–0x8FF4FE)
/// WHATWG lacks: ferry refuses them.
static EUCJPMS: Table = Table {
    name: "eucjpms",
    base: Base::Whatwg(encoding_rs::EUC_JP),
    layout: Layout::EucJp,
    exceptions: &[
        map(0xF5A1, 0xFEFE, 0xE000),
        map(0x8FA2C3, 0x8FA2C3, 0xFFE4),
        map(0x8FF5A1, 0x8FFEFE, 0xE3AC),
    ],
};

const fn single(
    name: &'static str,
    enc: &'static Encoding,
    exceptions: &'static [Exception],
) -> Table {
    Table {
        name,
        base: Base::Whatwg(enc),
        layout: Layout::Single,
        exceptions,
    }
}

impl Charset {
    /// Holds every Unicode character (so any other set converts into it without loss).
    pub fn is_unicode(&self) -> bool {
        match self {
            Charset::Utf8 | Charset::Utf32 => true,
            Charset::Standard(e) => *e == encoding_rs::UTF_16BE || *e == encoding_rs::UTF_16LE,
            _ => false,
        }
    }

    /// The charset for a MySQL `CHARACTER_SET_NAME`, if ferry decodes it exactly.
    pub fn from_mysql(name: &str) -> Option<Charset> {
        Some(match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf8mb3" | "utf8" => Charset::Utf8,
            "latin1" => Charset::Latin1,
            "ascii" => Charset::Ascii,
            "latin2" => Charset::Standard(encoding_rs::ISO_8859_2),
            "latin7" => Charset::Standard(encoding_rs::ISO_8859_13),
            "koi8r" => Charset::Standard(encoding_rs::KOI8_R),
            "macroman" => Charset::Standard(encoding_rs::MACINTOSH),
            "euckr" => Charset::Standard(encoding_rs::EUC_KR),
            "utf16" => Charset::Standard(encoding_rs::UTF_16BE),
            "utf16le" => Charset::Standard(encoding_rs::UTF_16LE),
            "ucs2" => Charset::Ucs2,
            "utf32" => Charset::Utf32,
            "koi8u" => Charset::Table(&KOI8U),
            "cp1250" => Charset::Table(&CP1250),
            "cp1251" => Charset::Table(&CP1251),
            "cp1256" => Charset::Table(&CP1256),
            "cp1257" => Charset::Table(&CP1257),
            "greek" => Charset::Table(&GREEK),
            "hebrew" => Charset::Table(&HEBREW),
            "cp866" => Charset::Table(&CP866),
            "latin5" => Charset::Table(&LATIN5),
            "tis620" => Charset::Table(&TIS620),
            "cp850" => Charset::Table(&CP850),
            "cp852" => Charset::Table(&CP852),
            "gbk" => Charset::Table(&GBK),
            "gb2312" => Charset::Table(&GB2312),
            "big5" => Charset::Table(&BIG5),
            "sjis" => Charset::Table(&SJIS),
            "cp932" => Charset::Table(&CP932),
            "ujis" => Charset::Table(&UJIS),
            "eucjpms" => Charset::Table(&EUCJPMS),
            _ => return None,
        })
    }

    /// Decodes `bytes` to text PostgreSQL can store.
    ///
    /// # Errors
    /// `InvalidText` for bytes invalid in the charset, `NulInText` for U+0000.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, str>, ValueProblem> {
        let text: Cow<'a, str> = match self {
            Charset::Utf8 => Cow::Borrowed(
                std::str::from_utf8(bytes)
                    .map_err(|e| invalid(format!("invalid UTF-8 at byte {}", e.valid_up_to())))?,
            ),
            Charset::Ascii => {
                if let Some(i) = bytes.iter().position(|b| *b >= 0x80) {
                    return Err(invalid(format!("non-ASCII byte at {i}")));
                }
                Cow::Borrowed(std::str::from_utf8(bytes).map_err(|_| invalid("invalid ASCII"))?)
            }
            Charset::Latin1 => encoding_rs::WINDOWS_1252
                .decode_without_bom_handling_and_without_replacement(bytes)
                .ok_or_else(|| invalid("invalid latin1"))?,
            Charset::Standard(enc) => enc
                .decode_without_bom_handling_and_without_replacement(bytes)
                .ok_or_else(|| invalid(format!("invalid {}", enc.name())))?,
            Charset::Table(t) => t.decode(bytes)?,
            Charset::Ucs2 => {
                if bytes.len() % 2 != 0 {
                    return Err(invalid("odd byte count for ucs2"));
                }
                let mut s = String::with_capacity(bytes.len());
                for pair in bytes.chunks_exact(2) {
                    let u = u32::from(u16::from_be_bytes([pair[0], pair[1]]));
                    s.push(char::from_u32(u).ok_or_else(|| invalid("surrogate in ucs2"))?);
                }
                Cow::Owned(s)
            }
            Charset::Utf32 => {
                if bytes.len() % 4 != 0 {
                    return Err(invalid("byte count not a multiple of 4 for utf32"));
                }
                let mut s = String::with_capacity(bytes.len() / 2);
                for quad in bytes.chunks_exact(4) {
                    let u = u32::from_be_bytes([quad[0], quad[1], quad[2], quad[3]]);
                    s.push(
                        char::from_u32(u).ok_or_else(|| invalid("invalid code point in utf32"))?,
                    );
                }
                Cow::Owned(s)
            }
        };
        if text.contains('\0') {
            return Err(ValueProblem::new(
                ProblemKind::NulInText,
                "text contains a NUL character, which PostgreSQL text cannot store",
            ));
        }
        Ok(text)
    }
}

fn invalid(detail: impl Into<String>) -> ValueProblem {
    ValueProblem::new(ProblemKind::InvalidText, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_passes_and_invalid_is_refused() {
        let cs = Charset::from_mysql("utf8mb4").expect("known");
        assert_eq!(cs.decode("héllo 🚀".as_bytes()).expect("valid"), "héllo 🚀");
        let e = cs.decode(&[0x61, 0xff]).expect_err("invalid");
        assert_eq!(e.kind, ProblemKind::InvalidText);
        assert_eq!(cs.decode(b"").expect("empty"), "");
    }

    #[test]
    fn latin1_is_mysql_cp1252() {
        let cs = Charset::from_mysql("latin1").expect("known");
        // 0x80 is the euro sign in cp1252, 0xE9 é, 0x81 stays a C1 control as in MySQL.
        assert_eq!(cs.decode(&[0x80, 0xE9, 0x81]).expect("valid"), "€é\u{81}");
        // every byte but NUL is valid latin1
        let all: Vec<u8> = (1u8..=255).collect();
        assert_eq!(cs.decode(&all).expect("valid").chars().count(), 255);
    }

    #[test]
    fn nul_is_a_problem_in_every_charset() {
        for name in ["utf8mb4", "latin1", "ascii", "latin2"] {
            let cs = Charset::from_mysql(name).expect("known");
            let e = cs.decode(b"a\0b").expect_err("NUL");
            assert_eq!(e.kind, ProblemKind::NulInText, "{name}");
        }
    }

    #[test]
    fn ascii_refuses_high_bytes() {
        let cs = Charset::from_mysql("ascii").expect("known");
        assert_eq!(cs.decode(b"plain").expect("valid"), "plain");
        assert_eq!(
            cs.decode(&[0x41, 0xC3]).expect_err("high").kind,
            ProblemKind::InvalidText
        );
    }

    #[test]
    fn wide_charsets() {
        assert_eq!(
            Charset::from_mysql("ucs2")
                .expect("known")
                .decode(&[0, 0x41, 0x00, 0xe9])
                .expect("ok"),
            "Aé"
        );
        assert_eq!(
            Charset::from_mysql("utf16")
                .expect("known")
                .decode(&[0xd8, 0x3d, 0xde, 0x80])
                .expect("ok"),
            "🚀"
        );
        assert_eq!(
            Charset::from_mysql("utf32")
                .expect("known")
                .decode(&[0, 1, 0xf6, 0x80])
                .expect("ok"),
            "🚀"
        );
        assert!(Charset::from_mysql("utf32")
            .expect("known")
            .decode(&[0, 0x11, 0, 0])
            .is_err());
    }

    #[test]
    fn unknown_charsets_are_not_offered() {
        // No standard table (dec8) or not in MariaDB 10.11 to measure against (gb18030).
        assert!(Charset::from_mysql("dec8").is_none());
        assert!(Charset::from_mysql("gb18030").is_none());
    }

    fn all_tables() -> Vec<&'static Table> {
        [
            "koi8u", "cp1250", "cp1251", "cp1256", "cp1257", "greek", "hebrew", "cp866", "latin5",
            "tis620", "cp850", "cp852", "gbk", "gb2312", "big5", "sjis", "cp932", "ujis",
            "eucjpms",
        ]
        .iter()
        .map(|n| match Charset::from_mysql(n) {
            Some(Charset::Table(t)) => t,
            other => panic!("{n} is a table, got {other:?}"),
        })
        .collect()
    }

    #[test]
    fn exception_lists_are_sorted_disjoint_and_map_to_characters() {
        for t in all_tables() {
            let mut prev: Option<u32> = None;
            for e in t.exceptions {
                assert!(e.first >= 0x80 && e.first <= e.last, "{} {e:?}", t.name);
                if let Some(p) = prev {
                    assert!(p < e.first, "{} unsorted at {e:?}", t.name);
                }
                prev = Some(e.last);
                if let Some(to) = e.to {
                    let n = t.layout.ordinal(e.last) - t.layout.ordinal(e.first);
                    assert!(char::from_u32(to + n).is_some(), "{} {e:?}", t.name);
                }
            }
        }
    }

    fn text(cs: &str, bytes: &[u8]) -> String {
        Charset::from_mysql(cs)
            .expect("offered")
            .decode(bytes)
            .unwrap_or_else(|e| panic!("{cs} {bytes:02X?}: {e:?}"))
            .into_owned()
    }

    fn refused(cs: &str, bytes: &[u8]) -> bool {
        let e = Charset::from_mysql(cs).expect("offered").decode(bytes);
        e.is_err_and(|p| p.kind == ProblemKind::InvalidText)
    }

    // Each value below is what MariaDB 10.11's CONVERT(… USING utf8mb4) returns.

    #[test]
    fn single_byte_overrides() {
        assert_eq!(text("cp1250", &[0x80, 0x8A, 0xB9]), "€Šą");
        assert!(refused("cp1250", &[0x41, 0x81]));
        assert!(refused("cp1251", &[0x98]));
        assert!(refused("cp1256", &[0xAA]));
        assert!(refused("cp1257", &[0x9F]));
        assert_eq!(text("greek", &[0xA1, 0xA2, 0xE1]), "\u{2BD}\u{2BC}α");
        assert!(refused("greek", &[0xA4]));
        assert_eq!(text("hebrew", &[0xAF, 0xE0]), "‾א");
        assert_eq!(text("cp866", &[0xFC, 0xFD, 0x80]), "ⁿ²А");
        assert_eq!(text("koi8u", &[0x95, 0xAE, 0xBE, 0xAD]), "•╝╬ґ");
        assert_eq!(text("latin5", &[0x80, 0x9F, 0xD0, 0xFD]), "\u{80}\u{9F}Ğı");
        assert_eq!(text("tis620", &[0x85, 0xA1]), "\u{85}ก");
        assert!(refused("tis620", &[0xA0]));
        assert!(refused("tis620", &[0xDB]));
        assert_eq!(text("cp850", &[b'a', 0x80, 0x9B, 0xFF]), "aÇø\u{A0}");
        assert_eq!(text("cp852", &[0xA5, 0xD8, 0xFD]), "ąěř");
    }

    #[test]
    fn chinese_sets() {
        assert_eq!(text("gbk", &[0xB0, 0xA1, 0x81, 0x40, b'x']), "啊丂x");
        assert!(refused("gbk", &[0x80]));
        assert!(refused("gbk", &[0xA2, 0xE3])); // the euro sign GB18030 added
        assert!(refused("gbk", &[0xAA, 0xA1])); // user-defined area
        assert!(refused("gbk", &[0x81, 0x30, 0x81, 0x30])); // four-byte GB18030 sequence
        assert!(refused("gbk", &[0xB0]));
        assert_eq!(
            text("gb2312", &[0xA1, 0xA4, 0xA1, 0xAA, 0xB0, 0xA1]),
            "・―啊"
        );
        assert!(refused("gb2312", &[0x81, 0x40]));
        assert_eq!(text("big5", &[0xA4, 0x40, 0xA1, 0x45]), "一•");
        assert_eq!(text("big5", &[0xC6, 0xF8, 0xC7, 0x40, 0xC7, 0xB1]), "ァエД");
        assert!(refused("big5", &[0x88, 0x62])); // HKSCS
        assert!(refused("big5", &[0xA1, 0xC3]));
    }

    #[test]
    fn japanese_and_korean_sets() {
        assert_eq!(
            text("sjis", &[b'a', 0x81, 0x5F, b'b', 0x82, 0xA0, 0xB1]),
            "a\\bあｱ"
        );
        assert_eq!(text("sjis", &[0x81, 0x60]), "〜");
        assert!(refused("sjis", &[0x87, 0x40])); // NEC row 13
        assert!(refused("sjis", &[0xF0, 0x40])); // user-defined area
        assert!(refused("sjis", &[0x80]));
        assert_eq!(text("cp932", &[0x87, 0x40, 0x81, 0x60]), "①～");
        assert!(refused("cp932", &[0x80]));
        assert_eq!(
            text("ujis", &[0xA4, 0xA2, 0x8E, 0xB1, 0x8F, 0xB0, 0xA1]),
            "あｱ丂"
        );
        assert_eq!(text("ujis", &[0xA1, 0xC1, 0x8F, 0xA2, 0xB7]), "〜~");
        assert_eq!(
            text(
                "ujis",
                &[0xF5, 0xA1, 0xF5, 0xFE, 0xF6, 0xA1, 0x8F, 0xF5, 0xA1]
            ),
            "\u{E000}\u{E05D}\u{E05E}\u{E3AC}"
        );
        assert!(refused("ujis", &[0xAD, 0xA1]));
        assert_eq!(
            text("eucjpms", &[0xAD, 0xA1, 0xA1, 0xC1, 0x8F, 0xA2, 0xC3]),
            "①～￤"
        );
        assert!(refused("eucjpms", &[0x8F, 0xF3, 0xF3])); // IBM extension WHATWG lacks
        assert_eq!(text("euckr", &[0xB0, 0xA1, 0x88, 0x41]), "가뉯");
        assert!(refused("euckr", &[0xB0]));
    }
}
