//! What a statement of a `functions/` file is. The folder defines routines
//! (`CREATE [OR REPLACE] FUNCTION | PROCEDURE | AGGREGATE`), triggers beside
//! their function, and comments, grants, revokes and alterations of those
//! routines; pg_dump's session preamble and `OWNER TO` are skipped (the
//! platform's role owns what it creates). Anything else — a misspelled
//! header, a `DROP`, a table — belongs in another folder, which
//! [`FnStmt::Misplaced`] names: a deployment never runs it, and never drops a
//! function because its file did not read as one.

use super::lex::sig_tokens;
use super::view::{split_name, View};

/// A routine's name: (schema as written, name), unquoted like PostgreSQL.
pub type RoutineName = (Option<String>, String);

/// One statement of a `functions/` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FnStmt {
    /// `CREATE [OR REPLACE] FUNCTION | PROCEDURE | AGGREGATE`.
    Routine,
    /// `CREATE [OR REPLACE] TRIGGER … EXECUTE FUNCTION | PROCEDURE f(…)`:
    /// the function it runs.
    Trigger { function: RoutineName },
    /// `COMMENT ON`, `GRANT … ON`, `REVOKE … ON`, `ALTER` of a routine: its
    /// name (`None`: all routines of a schema, `GRANT … ON ALL FUNCTIONS IN
    /// SCHEMA s`).
    About { routine: Option<RoutineName> },
    /// Not run, said in the report: pg_dump's session settings, `OWNER TO`.
    Skip(&'static str),
    /// Not a statement of this folder: what it is and where it belongs.
    Misplaced { what: String, belongs: &'static str },
}

const ROUTINE_KINDS: [&str; 4] = ["function", "procedure", "aggregate", "routine"];

/// Classify one statement of a `functions/` file.
pub fn classify(stmt: &str) -> FnStmt {
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let w = |i: usize| v.word(i);
    let name_at = |i: usize| v.qname(i).map(|(parts, _)| split_name(parts));
    match w(0).as_str() {
        "create" => {
            let k = v.opt(1, &["or", "replace"]);
            match w(k).as_str() {
                "function" | "procedure" | "aggregate" => FnStmt::Routine,
                "trigger" | "constraint" => {
                    let exec = (k..v.len())
                        .find(|&i| v.is(i, "execute") && v.any(i + 1, &["function", "procedure"]));
                    match exec.and_then(|i| name_at(i + 2)) {
                        Some(function) => FnStmt::Trigger { function },
                        None => misplaced(&v, "a trigger without EXECUTE FUNCTION", "migrations/"),
                    }
                }
                "table" | "unlogged" | "temp" | "temporary" => {
                    misplaced(&v, "CREATE TABLE", "tables/")
                }
                "index" | "unique" | "sequence" => misplaced(&v, "", "tables/"),
                "type" | "domain" => misplaced(&v, "", "types/"),
                "extension" => misplaced(&v, "", "extensions/ (one file per extension)"),
                "view" | "materialized" | "recursive" | "policy" | "rule" | "schema" | "event"
                | "cast" | "operator" | "publication" => misplaced(&v, "", "migrations/"),
                _ => misplaced_header(&v),
            }
        }
        "comment" if v.is(1, "on") => {
            if v.any(2, &ROUTINE_KINDS) {
                FnStmt::About {
                    routine: name_at(3),
                }
            } else if v.is(2, "trigger") {
                FnStmt::About { routine: None }
            } else {
                misplaced(&v, "", "migrations/ (comments on routines stay here)")
            }
        }
        "grant" | "revoke" => {
            let on = (1..v.len()).find(|&i| v.is(i, "on"));
            match on {
                Some(i) if v.any(i + 1, &ROUTINE_KINDS) => FnStmt::About {
                    routine: name_at(i + 2),
                },
                Some(i)
                    if v.is(i + 1, "all")
                        && v.any(i + 2, &["functions", "procedures", "routines"]) =>
                {
                    FnStmt::About { routine: None }
                }
                _ => misplaced(&v, "", "migrations/ (grants on routines stay here)"),
            }
        }
        "alter" if v.any(1, &ROUTINE_KINDS) => {
            let owner = (2..v.len()).any(|i| v.is(i, "owner") && v.is(i + 1, "to"));
            if owner {
                FnStmt::Skip("OWNER TO is not run: the platform's role owns what it creates")
            } else {
                FnStmt::About {
                    routine: name_at(2),
                }
            }
        }
        // pg_dump's session preamble
        "set" => FnStmt::Skip("a session setting (pg_dump's preamble) is not run"),
        "select" if is_set_config(&v) => {
            FnStmt::Skip("a session setting (pg_dump's preamble) is not run")
        }
        "insert" | "update" | "delete" | "copy" | "merge" | "truncate" => {
            misplaced(&v, "", "seeders/ (rows) or migrations/ (changes to data)")
        }
        "drop" | "alter" | "do" | "select" | "call" | "with" => misplaced(&v, "", "migrations/"),
        _ => misplaced_header(&v),
    }
}

/// A `CREATE` statement of this folder as `CREATE OR REPLACE` (rewritten
/// after the `CREATE` token, whatever the spacing or comments around it):
/// how a deployment re-creates a changed routine or trigger in place. A
/// constraint trigger (PostgreSQL cannot replace one) and a statement that
/// already says `OR REPLACE` are left as they are.
pub fn or_replace(stmt: &str) -> String {
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let replaces = v.is(1, "or") && v.is(2, "replace");
    match v.get(0) {
        Some(create) if v.is(0, "create") && !replaces && !v.is(1, "constraint") => {
            let (head, tail) = stmt.split_at(create.end);
            format!("{head} OR REPLACE{tail}")
        }
        _ => stmt.to_owned(),
    }
}

/// `SELECT pg_catalog.set_config(…)` alone.
fn is_set_config(v: &View) -> bool {
    let k = if v.is(1, "pg_catalog") && v.sym(2, ".") {
        3
    } else {
        1
    };
    v.is(k, "set_config") && v.sym(k + 1, "(")
}

fn misplaced(v: &View, what: &str, belongs: &'static str) -> FnStmt {
    let what = if what.is_empty() {
        v.upper_words(2)
    } else {
        what.to_owned()
    };
    FnStmt::Misplaced { what, belongs }
}

/// A statement that starts like nothing this folder or another one holds:
/// most often a misspelled `CREATE FUNCTION` header.
fn misplaced_header(v: &View) -> FnStmt {
    let what = v.upper_words(3);
    FnStmt::Misplaced {
        what: if what.is_empty() {
            "this statement".into()
        } else {
            format!("{what} (not a CREATE FUNCTION, PROCEDURE or AGGREGATE header: misspelled?)")
        },
        belongs: "migrations/, if it is meant to run once",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: Option<&str>, n: &str) -> RoutineName {
        (s.map(str::to_owned), n.to_owned())
    }

    #[test]
    fn routines_triggers_and_statements_about_routines_belong_here() {
        for s in [
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "create or replace procedure p() language sql as $$ select 1 $$",
            "CREATE AGGREGATE s (int) (SFUNC = int4pl, STYPE = int)",
        ] {
            assert_eq!(classify(s), FnStmt::Routine, "{s}");
        }
        assert_eq!(
            classify(
                "CREATE TRIGGER t BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION app.stamp()"
            ),
            FnStmt::Trigger {
                function: name(Some("app"), "stamp")
            }
        );
        assert_eq!(
            classify("create or replace trigger t after update on x for each row execute procedure Stamp()"),
            FnStmt::Trigger {
                function: name(None, "stamp")
            }
        );
        assert_eq!(
            classify("COMMENT ON FUNCTION f(int) IS 'adds'"),
            FnStmt::About {
                routine: Some(name(None, "f"))
            }
        );
        assert_eq!(
            classify("GRANT EXECUTE ON FUNCTION public.f(int) TO app"),
            FnStmt::About {
                routine: Some(name(Some("public"), "f"))
            }
        );
        assert_eq!(
            classify("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC"),
            FnStmt::About { routine: None }
        );
        assert_eq!(
            classify("ALTER FUNCTION f(int) SET search_path = public"),
            FnStmt::About {
                routine: Some(name(None, "f"))
            }
        );
    }

    #[test]
    fn create_becomes_create_or_replace_through_tokens() {
        assert_eq!(
            or_replace("create function f() returns int"),
            "create OR REPLACE function f() returns int"
        );
        // a header split over lines, or with a comment, keeps its text
        assert_eq!(
            or_replace("CREATE\nOR REPLACE FUNCTION f()"),
            "CREATE\nOR REPLACE FUNCTION f()"
        );
        assert_eq!(
            or_replace("CREATE /* x */\nFUNCTION f()"),
            "CREATE OR REPLACE /* x */\nFUNCTION f()"
        );
        assert_eq!(
            or_replace("CREATE TRIGGER t AFTER INSERT ON x EXECUTE FUNCTION f()"),
            "CREATE OR REPLACE TRIGGER t AFTER INSERT ON x EXECUTE FUNCTION f()"
        );
        assert_eq!(
            or_replace("CREATE CONSTRAINT TRIGGER t AFTER INSERT ON x EXECUTE FUNCTION f()"),
            "CREATE CONSTRAINT TRIGGER t AFTER INSERT ON x EXECUTE FUNCTION f()"
        );
    }

    #[test]
    fn pg_dump_preamble_and_owner_are_skipped() {
        for s in [
            "SET statement_timeout = 0",
            "SET check_function_bodies = false",
            "SELECT pg_catalog.set_config('search_path', '', false)",
            "ALTER FUNCTION public.f(integer) OWNER TO postgres",
        ] {
            assert!(matches!(classify(s), FnStmt::Skip(_)), "{s}");
        }
    }

    #[test]
    fn anything_else_is_named_with_the_folder_it_belongs_in() {
        let m = |s: &str| match classify(s) {
            FnStmt::Misplaced { what, belongs } => format!("{what} -> {belongs}"),
            other => format!("{other:?}"),
        };
        assert_eq!(
            m("CREATE OR REPLACE FUNCTON org_revenue(p int) RETURNS int"),
            "CREATE OR REPLACE (not a CREATE FUNCTION, PROCEDURE or AGGREGATE header: misspelled?) -> migrations/, if it is meant to run once"
        );
        assert_eq!(m("CREAT FUNCTION f()"), "CREAT FUNCTION F (not a CREATE FUNCTION, PROCEDURE or AGGREGATE header: misspelled?) -> migrations/, if it is meant to run once");
        assert_eq!(m("DROP FUNCTION f(int)"), "DROP FUNCTION -> migrations/");
        assert_eq!(m("CREATE TABLE t (id int)"), "CREATE TABLE -> tables/");
        assert_eq!(m("CREATE TYPE mood AS ENUM ('a')"), "CREATE TYPE -> types/");
        assert_eq!(m("CREATE VIEW v AS SELECT 1"), "CREATE VIEW -> migrations/");
        assert_eq!(
            m("INSERT INTO t VALUES (1)"),
            "INSERT INTO -> seeders/ (rows) or migrations/ (changes to data)"
        );
        assert_eq!(m("SELECT 1"), "SELECT -> migrations/");
        assert_eq!(
            m("GRANT SELECT ON notes TO app"),
            "GRANT SELECT -> migrations/ (grants on routines stay here)"
        );
    }
}
