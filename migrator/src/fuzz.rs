//! Property tests ("fuzzing") of everything that reads client input in the
//! migrator: the archive reader, the SQL reader and the multipart parser must
//! never panic, whatever bytes arrive. `PROPTEST_CASES=N` runs more cases.

use proptest::prelude::*;

use crate::archive::{read_schema, Limits};
use crate::{multipart, sql};

fn valid_archive() -> Vec<u8> {
    let mut files = Vec::new();
    for (folder, name, content) in [
        (
            "functions",
            "f.sql",
            "CREATE FUNCTION f(a int DEFAULT 1) RETURNS int LANGUAGE sql AS $$ SELECT a $$;",
        ),
        (
            "tables",
            "t.sql",
            "CREATE TABLE t (id int PRIMARY KEY, p int REFERENCES t(id));",
        ),
        (
            "migrations",
            "001.sql",
            "ALTER TABLE t ADD COLUMN x text; -- note",
        ),
    ] {
        files.push((
            folder.to_string(),
            crate::archive::SchemaFile {
                name: name.into(),
                content: content.into(),
            },
        ));
    }
    crate::archive::to_tar_gz(&crate::archive::schema_from_files(files))
}

proptest! {
    #[test]
    fn archive_reader_survives_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read_schema(&data, &Limits::default());
    }

    #[test]
    fn archive_reader_survives_corrupted_archives(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)) {
        let mut data = valid_archive();
        for (at, byte) in flips {
            let i = at % data.len();
            data[i] = byte;
        }
        let _ = read_schema(&data, &Limits::default());
    }

    #[test]
    fn sql_reader_survives_anything(text in "\\PC{0,400}") {
        if let Ok(stmts) = sql::split_statements(&text) {
            for s in stmts {
                let _ = sql::normalize(&s.text);
                let _ = sql::parse_routine(&s.text);
                let _ = sql::parse_type(&s.text);
                let _ = crate::tables::create_table::classify_table_stmt(&s.text);
                let _ = crate::tables::create_table::split_foreign_keys(&s.text, &[(None, "t".to_string())]);
                let _ = crate::seed::parse_insert(&s.text);
            }
        }
        let _ = sql::normalize(&text);
    }

    #[test]
    fn sql_reader_survives_sql_like_noise(parts in proptest::collection::vec(
        prop_oneof![
            Just("CREATE "), Just("FUNCTION "), Just("TABLE "), Just("TYPE "), Just("AS "), Just("$$"),
            Just("$q$"), Just("'"), Just("\""), Just("("), Just(")"), Just(","), Just(";"), Just("--"),
            Just("/*"), Just("*/"), Just("E'\\'"), Just("REFERENCES "), Just("DEFAULT "), Just("INSERT INTO "),
            Just("x "), Just("int "), Just("\n"), Just("RETURNS "), Just("BEGIN ATOMIC "), Just("END"),
        ], 0..60)) {
        let text: String = parts.concat();
        if let Ok(stmts) = sql::split_statements(&text) {
            for s in stmts {
                let _ = sql::parse_routine(&s.text);
                let _ = sql::parse_type(&s.text);
                let _ = crate::tables::create_table::split_foreign_keys(&s.text, &[(None, "x".to_string())]);
                let _ = crate::seed::parse_insert(&s.text);
            }
        }
        let _ = sql::normalize(&text);
    }

    #[test]
    fn multipart_parser_survives_anything(body in proptest::collection::vec(any::<u8>(), 0..2048), boundary in "[a-zA-Z0-9]{1,20}") {
        let _ = multipart::parse(&body, &boundary);
        let mut framed = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n").into_bytes();
        framed.extend_from_slice(&body);
        let _ = multipart::parse(&framed, &boundary);
    }
}
