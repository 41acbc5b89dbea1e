//! Exact decoding of MySQL character data to UTF-8.
//!
//! Guarantees: bytes are decoded by the column's own character set, never guessed; MySQL's
//! `latin1` is Windows-1252 with the five bytes Windows leaves undefined mapped to the C1
//! controls (exactly what MySQL does, and what the WHATWG index does); a byte sequence invalid in
//! the character set, or a NUL (which PostgreSQL text cannot hold), is a [`ValueProblem`], never a
//! replacement character. Character sets whose MySQL tables differ from the standard ones in
//! corner cases are not offered, so a mapping that loads is exact.

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
    /// A single-byte or UTF-16 set with a standard table (latin2, koi8r, koi8u, utf16, utf16le).
    Standard(&'static Encoding),
    /// UCS-2 (big-endian, no surrogates).
    Ucs2,
    /// UTF-32 big-endian.
    Utf32,
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
            "koi8r" => Charset::Standard(encoding_rs::KOI8_R),
            "koi8u" => Charset::Standard(encoding_rs::KOI8_U),
            "utf16" => Charset::Standard(encoding_rs::UTF_16BE),
            "utf16le" => Charset::Standard(encoding_rs::UTF_16LE),
            "ucs2" => Charset::Ucs2,
            "utf32" => Charset::Utf32,
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
        assert!(Charset::from_mysql("sjis").is_none());
        assert!(Charset::from_mysql("latin5").is_none());
    }
}
