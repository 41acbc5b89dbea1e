//! Character sets against the real MariaDB: for every set ferry offers, every one- and two-byte
//! sequence (the three-byte ones of ujis/eucjpms, a dense sample of GB18030's four-byte form for
//! gbk/gb2312) is converted by MariaDB (`CONVERT(… USING utf8mb4)`, as `ferry verify` reads it)
//! and decoded by ferry's `Charset::decode`; ferry must give the same text or refuse what MariaDB
//! calls invalid. Then a table with one column per set is backfilled, streamed (insert and
//! update) and verified.

mod common;

use std::time::Duration;

use common::*;
use ferry::transform::charset::Charset;
use ferry::transform::ProblemKind;
use mysql_async::prelude::Queryable;

/// A set ferry offers, with what the sweep may find besides agreement: sequences MariaDB
/// decodes that ferry refuses (listed in README's type mapping), and sequences MariaDB turns
/// into U+FFFD (no character) that ferry refuses.
struct Offered {
    name: &'static str,
    /// Maximum bytes per character (which sequence lengths to sweep).
    width: usize,
    refused_valid: usize,
    no_character: usize,
}

const fn set(name: &'static str, width: usize) -> Offered {
    Offered {
        name,
        width,
        refused_valid: 0,
        no_character: 0,
    }
}

const OFFERED: &[Offered] = &[
    set("latin1", 1),
    set("latin2", 1),
    set("latin7", 1),
    set("koi8r", 1),
    set("koi8u", 1),
    set("cp1250", 1),
    set("cp1251", 1),
    set("cp1256", 1),
    set("cp1257", 1),
    set("greek", 1),
    set("hebrew", 1),
    set("cp866", 1),
    set("macroman", 1),
    set("latin5", 1),
    set("cp850", 1),
    set("cp852", 1),
    Offered {
        no_character: 9,
        ..set("tis620", 1)
    },
    set("ascii", 1),
    set("euckr", 2),
    set("gbk", 2),
    set("gb2312", 2),
    Offered {
        no_character: 7,
        ..set("big5", 2)
    },
    set("sjis", 2),
    set("cp932", 2),
    set("ujis", 3),
    Offered {
        refused_valid: 106,
        ..set("eucjpms", 3)
    },
];

/// Sets of MariaDB 10.11 ferry refuses at load: no table in encoding_rs or oem_cp (see README).
const REFUSED: &[&str] = &[
    "dec8", "hp8", "swe7", "armscii8", "keybcs2", "macce", "geostd8",
    // Not in MariaDB 10.11, so not measured here.
    "gb18030",
];

#[derive(Default)]
struct Tally {
    sequences: usize,
    agree: usize,
    both_refuse: usize,
    /// MariaDB's text holds a NUL: ferry refuses it by `types.nul_in_text`, as in every set.
    nul: usize,
    refused_valid: usize,
    no_character: usize,
    wrong: usize,
    examples: Vec<String>,
}

impl Tally {
    fn note(&mut self, list_it: bool, line: String) {
        if list_it && self.examples.len() < 20 {
            self.examples.push(line);
        }
    }

    /// One sequence: MariaDB's utf8mb4 bytes against ferry's decoding.
    fn check(&mut self, cs: &Charset, input: &[u8], maria: &[u8]) {
        self.sequences += 1;
        let maria = String::from_utf8(maria.to_vec()).expect("MariaDB returns utf8mb4");
        // MariaDB converts a sequence it has no character for into '?'.
        let invalid = maria.matches('?').count() > input.iter().filter(|b| **b == b'?').count();
        let shown = || format!("{} -> MariaDB {maria:?}", hex::encode_upper(input));
        match (invalid, cs.decode(input)) {
            (true, Err(_)) => self.both_refuse += 1,
            (true, Ok(text)) => {
                self.wrong += 1;
                self.note(true, format!("{}: ferry decodes {text:?}", shown()));
            }
            (false, Ok(text)) if text == maria => self.agree += 1,
            (false, Ok(text)) => {
                self.wrong += 1;
                self.note(true, format!("{}: ferry decodes {text:?}", shown()));
            }
            (false, Err(p)) if p.kind == ProblemKind::NulInText && maria.contains('\0') => {
                self.nul += 1
            }
            (false, Err(_)) if maria.contains('\u{FFFD}') => self.no_character += 1,
            (false, Err(p)) => {
                self.refused_valid += 1;
                let line = format!("{}: ferry refuses ({})", shown(), p.detail);
                self.note(self.wrong == 0, line);
            }
        }
    }
}

/// `(sequence as a number, MariaDB's utf8mb4 bytes)` for the sequences of `width` bytes that
/// `numbers` (SQL yielding a column `v`) lists.
async fn convert_all(
    my: &mut mysql_async::Conn,
    cs: &str,
    width: usize,
    numbers: &str,
) -> Vec<(u64, Vec<u8>)> {
    let sql = format!(
        "SELECT v, CAST(CONVERT(CAST(UNHEX(LPAD(HEX(v), {digits}, '0')) AS CHAR CHARACTER SET {cs}) \
         USING utf8mb4) AS BINARY) FROM ({numbers}) n",
        digits = width * 2
    );
    my.query(sql).await.expect("convert sequences")
}

fn bytes_of(v: u64, width: usize) -> Vec<u8> {
    v.to_be_bytes()[8 - width..].to_vec()
}

#[tokio::test]
async fn every_sequence_decodes_as_mariadb_converts_it() {
    let mut my = mysql(None).await;
    let mut failures = Vec::new();
    for set in OFFERED {
        let cs = Charset::from_mysql(set.name).expect("offered set");
        let mut sweeps = vec![(1, "SELECT seq AS v FROM mysql.seq_0_to_255".to_string())];
        if set.width >= 2 {
            // Every lead byte from 0x80 with every trail byte.
            sweeps.push((2, "SELECT seq AS v FROM mysql.seq_32768_to_65535".into()));
        }
        if set.width >= 3 {
            // 0x8F (JIS X 0212) with every pair of bytes.
            sweeps.push((
                3,
                "SELECT seq AS v FROM mysql.seq_9371648_to_9437183".into(),
            ));
        }
        if matches!(set.name, "gbk" | "gb2312") {
            // GB18030's four-byte form (lead, digit, lead, digit), which GBK decoders accept:
            // every first lead and both digits, every eighth second lead.
            sweeps.push((
                4,
                "SELECT (a.seq << 24) | (b.seq << 16) | (c.seq << 8) | d.seq AS v \
                 FROM mysql.seq_129_to_254 a, mysql.seq_48_to_57 b, \
                      mysql.seq_129_to_254_step_8 c, mysql.seq_48_to_57 d"
                    .into(),
            ));
        }
        let mut tally = Tally::default();
        for (width, numbers) in sweeps {
            for (v, maria) in convert_all(&mut my, set.name, width, &numbers).await {
                tally.check(&cs, &bytes_of(v, width), &maria);
            }
        }
        eprintln!(
            "{}: {} sequences: {} agree, {} invalid in both, {} with NUL, {} MariaDB decodes and ferry refuses, \
             {} MariaDB shows as U+FFFD and ferry refuses, {} wrong",
            set.name,
            tally.sequences,
            tally.agree,
            tally.both_refuse,
            tally.nul,
            tally.refused_valid,
            tally.no_character,
            tally.wrong
        );
        for line in &tally.examples {
            eprintln!("  {line}");
        }
        if tally.wrong > 0
            || tally.refused_valid != set.refused_valid
            || tally.no_character != set.no_character
        {
            failures.push(format!(
                "{}: {} wrong, {} refused but decoded by MariaDB (expected {}), {} U+FFFD (expected {})",
                set.name,
                tally.wrong,
                tally.refused_valid,
                set.refused_valid,
                tally.no_character,
                set.no_character
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "ferry's decoding differs from MariaDB's:\n{}",
        failures.join("\n")
    );
}

/// Unicode sets are checked by the unit tests and the type matrix, not swept here.
const UNICODE: &[&str] = &[
    "utf8mb3", "utf8mb4", "ucs2", "utf16", "utf16le", "utf32", "binary",
];

#[tokio::test]
async fn every_mariadb_set_is_swept_or_refused() {
    let mut my = mysql(None).await;
    let names: Vec<String> = my
        .query("SELECT CHARACTER_SET_NAME FROM information_schema.CHARACTER_SETS")
        .await
        .expect("character sets");
    for name in names.iter().filter(|n| !UNICODE.contains(&n.as_str())) {
        let swept = OFFERED.iter().any(|o| o.name == name);
        assert!(
            swept != REFUSED.contains(&name.as_str()),
            "{name} must be in exactly one of OFFERED and REFUSED"
        );
        assert_eq!(
            Charset::from_mysql(name).is_some(),
            swept,
            "{name}: ferry offers exactly the sets the sweep measures"
        );
    }
    for name in REFUSED {
        assert!(Charset::from_mysql(name).is_none(), "{name} is refused");
    }
}

/// Per column: the set and three texts (row 1, row 2, row 1 after the update), each exercising
/// non-ASCII characters and, where there are any, the set's measured exceptions.
const TEXTS: &[(&str, [&str; 3])] = &[
    ("big5", ["繁體中文測試", "臺灣 ァエД", "更新後的文字 •"]),
    ("gbk", ["简体中文测试", "龘靐齉", "更新 丂"]),
    ("gb2312", ["简体中文", "・汉字―", "更新"]),
    ("sjis", ["日本語テキスト", "ｶﾀｶﾅ〜¬", "更新しました"]),
    ("cp932", ["日本語", "①②～", "更新"]),
    ("ujis", ["日本語", "ひらがな ｶﾅ 丂", "更新〜\u{E000}"]),
    ("eucjpms", ["日本語", "①～￤", "更新"]),
    ("euckr", ["한국어 텍스트", "뉯 똠", "갱신"]),
    ("cp1250", ["Zażółć gęślą jaźń", "Příliš žluťoučký", "€ ŠĽ"]),
    ("cp1251", ["Привет, мир", "Ёлка ЂЉ", "обновлено"]),
    ("cp1256", ["مرحبا", "اللغة العربية", "تحديث"]),
    ("cp1257", ["Labdien ąčęėįšųūž", "Ōō Ķķ", "€"]),
    ("greek", ["Καλημέρα", "ʽʼ ΐ", "ενημέρωση"]),
    ("hebrew", ["שלום", "עברית ‾", "עדכון"]),
    ("tis620", ["สวัสดี", "ภาษาไทย", "ปรับปรุง"]),
    ("latin5", ["Günaydın", "ğşİı ĞŞ", "güncellendi"]),
    ("latin7", ["Ąžuolas", "ųū ĀĒ", "atnaujinta"]),
    ("cp866", ["Привет", "ⁿ² ░▒▓", "обновлено"]),
    ("macroman", ["Café ™", "ƒ∆◊", "mise à jour"]),
    ("koi8u", ["Ґанок їжак", "╝╬ •", "оновлено"]),
    ("cp850", ["Ça déjà ÿ", "Ø£ ½¼ ░", "mis à jour"]),
    ("cp852", ["Příliš žluťoučký", "Łódź ąę", "aktualizováno"]),
];

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn write_row(my: &mut mysql_async::Conn, id: i32, which: usize) {
    let values: Vec<String> = TEXTS.iter().map(|(_, t)| sql_text(t[which])).collect();
    my.query_drop(format!(
        "INSERT INTO texts VALUES ({id}, {}, {})",
        values.join(", "),
        sql_text(["テスト", "日本語", "テスト"][which])
    ))
    .await
    .expect("insert texts");
}

/// MariaDB's view (`CONVERT(… USING utf8mb4)`) against PostgreSQL's, row by row.
async fn assert_same(db: &TestDb, my: &mut mysql_async::Conn, rows: usize) {
    let cols: Vec<String> = TEXTS.iter().map(|(cs, _)| format!("c_{cs}")).collect();
    let my_sql = format!(
        "SELECT id, {}, CONVERT(e_sjis USING utf8mb4) FROM texts",
        cols.iter()
            .map(|c| format!("CONVERT({c} USING utf8mb4)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pg_sql = format!(
        "SELECT id::text, {}, e_sjis::text FROM texts",
        cols.iter()
            .map(|c| format!("{c}::text"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let source = mysql_rows(my, &my_sql).await;
    assert_eq!(source.len(), rows, "rows on the source");
    let target = pg_rows(&db.pg().await, &pg_sql).await;
    for (s, t) in source.iter().zip(&target) {
        for (i, (a, b)) in s.iter().zip(t).enumerate() {
            let name = if i == 0 {
                "id"
            } else {
                cols.get(i - 1).map_or("e_sjis", |c| c)
            };
            assert_eq!(a, b, "row {:?}, column {name}", s[0]);
        }
    }
    assert_eq!(source, target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_offered_set_is_copied_streamed_and_verified() {
    let db = TestDb::new("charsets").await;
    let mut my = db.my().await;
    let cols: Vec<String> = TEXTS
        .iter()
        .map(|(cs, _)| format!("c_{cs} VARCHAR(40) CHARACTER SET {cs}"))
        .collect();
    my.query_drop(format!(
        "CREATE TABLE texts (id INT PRIMARY KEY, {}, \
         e_sjis ENUM('テスト', '日本語') CHARACTER SET sjis)",
        cols.join(", ")
    ))
    .await
    .expect("create table");
    // The source holds the texts themselves, not '?' (strict mode refuses what a set lacks).
    write_row(&mut my, 1, 0).await;
    for (cs, t) in TEXTS {
        let stored: Option<String> = my
            .query_first(format!("SELECT CONVERT(c_{cs} USING utf8mb4) FROM texts"))
            .await
            .expect("read back");
        assert_eq!(stored.as_deref(), Some(t[0]), "{cs} stores the text");
    }

    // Row 1 through the backfill.
    let config = db.config_backfill("main", "chunk_rows = 1", "");
    let mut ferry = Ferry::start(&config, &[]);
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_same(&db, &mut my, 1).await;

    // Row 2 and row 1's new texts through the binlog.
    write_row(&mut my, 2, 1).await;
    let sets: Vec<String> = TEXTS
        .iter()
        .map(|(cs, t)| format!("c_{cs} = {}", sql_text(t[2])))
        .collect();
    my.query_drop(format!(
        "UPDATE texts SET {}, e_sjis = '日本語' WHERE id = 1",
        sets.join(", ")
    ))
    .await
    .expect("update");
    db.wait_caught_up(&db.name, "main", Duration::from_secs(120), &mut ferry)
        .await;
    assert_same(&db, &mut my, 2).await;

    let (code, out) = ferry_cmd(&[
        "verify",
        "--sample",
        "10",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "ferry verify finds the table equal:\n{out}");
    assert!(
        ferry.try_exit().is_none(),
        "ferry still runs:\n{}",
        ferry.log()
    );
    db.cleanup_dir();
}
