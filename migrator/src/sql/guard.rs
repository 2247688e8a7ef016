//! What an uploaded statement may do: the reader's part of keeping platform
//! SQL inside its deployment's transaction and its platform's rights.
//!
//! [`classify`] sorts one statement by its first words into what a
//! deployment runs as it is, what it refuses before anything runs
//! (transaction control, session identity, database- and cluster-level
//! statements), and `CREATE`/`ALTER EXTENSION`, whose extensions the
//! deployment checks against the operator's list. [`wrapper`] recognizes a
//! whole-file `BEGIN;` … `COMMIT;` (psql style), which is dropped instead of
//! refused.
//!
//! This is a convenience in front of the real boundary: each statement is
//! sent on its own through the extended protocol, the executor checks that
//! the transaction is still its own after each one, and PostgreSQL's
//! privileges refuse database-level statements (docs/SECURITY.md).

use std::fmt;

use super::lex::sig_tokens;
use super::view::View;

/// Why a statement is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `SAVEPOINT`, `PREPARE TRANSACTION`, …
    TransactionControl,
    /// `SET ROLE`, `SET SESSION AUTHORIZATION`, `RESET ROLE`, …
    SessionIdentity,
    /// Databases, roles, tablespaces, `ALTER SYSTEM`, `LOAD`.
    ClusterLevel,
}

impl Refusal {
    /// The sentence that says why, for the 400.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TransactionControl => {
                "transaction control is not allowed: the gateway runs each database's deployment in one transaction of its own (a whole-file BEGIN; ... COMMIT; wrapper is dropped, nothing else is)"
            }
            Refusal::SessionIdentity => {
                "changing the session's role is not allowed: uploaded SQL runs as the platform's own role"
            }
            Refusal::ClusterLevel => {
                "database- and cluster-level statements (databases, roles, tablespaces, ALTER SYSTEM, LOAD) are not allowed: the gateway owns the databases and roles"
            }
        }
    }
}

/// What one statement is, for the deployment's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Runs as it is.
    Plain,
    /// `BEGIN` / `START TRANSACTION` (refused, unless it opens a whole-file wrapper).
    Begin,
    /// `COMMIT` / `END` (refused, unless it closes a whole-file wrapper).
    Commit,
    /// Refused: `what` names the statement (`ROLLBACK`, `DROP DATABASE`).
    Refused { refusal: Refusal, what: String },
    /// `CREATE EXTENSION` / `ALTER EXTENSION`: the extension's name, and
    /// whether `CASCADE` may install what it requires.
    Extension { name: String, cascade: bool },
}

impl Class {
    /// The refusal of this statement on its own (a lone `BEGIN` or
    /// `COMMIT` is transaction control).
    pub fn refusal(&self) -> Option<(Refusal, String)> {
        match self {
            Class::Refused { refusal, what } => Some((*refusal, what.clone())),
            Class::Begin => Some((Refusal::TransactionControl, "BEGIN".into())),
            Class::Commit => Some((Refusal::TransactionControl, "COMMIT".into())),
            Class::Plain | Class::Extension { .. } => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Classify one statement (the text of a [`super::statement::Statement`]).
pub fn classify(stmt: &str) -> Class {
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let w = |i: usize| v.word(i);
    let refused = |refusal: Refusal, n: usize| Class::Refused {
        refusal,
        what: v.upper_words(n),
    };
    use Refusal::*;
    match w(0).as_str() {
        // BEGIN ATOMIC only appears inside CREATE FUNCTION
        "begin" => Class::Begin,
        "start" if v.is(1, "transaction") => Class::Begin,
        "commit" if v.is(1, "prepared") => refused(TransactionControl, 2),
        "commit" | "end" => Class::Commit,
        "rollback" | "abort" | "savepoint" | "release" => refused(TransactionControl, 1),
        "prepare" if v.is(1, "transaction") => refused(TransactionControl, 2),
        "set" | "reset" => {
            let k = usize::from(v.any(1, &["session", "local"]));
            let identity = v.any(1 + k, &["role", "session_authorization"])
                || (v.is(1 + k, "session") && v.is(2 + k, "authorization"))
                || (k == 1 && v.is(1, "session") && v.is(2, "authorization"));
            if identity {
                refused(SessionIdentity, 2 + k)
            } else {
                Class::Plain
            }
        }
        "load" => refused(ClusterLevel, 1),
        "reassign" | "drop" if v.is(1, "owned") => refused(ClusterLevel, 2),
        "alter" if v.is(1, "system") => refused(ClusterLevel, 2),
        "create" | "alter" | "drop" => {
            // CREATE [OR REPLACE] ... / DROP ... : the object's kind
            let k = v.opt(1, &["or", "replace"]);
            match w(k).as_str() {
                "database" | "role" | "user" | "group" | "tablespace" => {
                    // `DROP USER MAPPING`, `CREATE USER MAPPING`: objects of a database
                    if w(k) == "user" && v.is(k + 1, "mapping") {
                        return Class::Plain;
                    }
                    refused(ClusterLevel, k + 1)
                }
                "extension" if w(0) != "drop" => extension(&v, k + 1),
                _ => Class::Plain,
            }
        }
        "comment" | "security"
            if {
                // COMMENT ON DATABASE|ROLE|TABLESPACE, SECURITY LABEL ... ON …
                let on = (0..v.len().min(6)).find(|&i| v.is(i, "on"));
                on.is_some_and(|i| v.any(i + 1, &["database", "role", "tablespace"]))
            } =>
        {
            refused(ClusterLevel, 3)
        }
        "grant" | "revoke" if membership(&v) => Class::Refused {
            refusal: ClusterLevel,
            what: format!("{} (role membership)", w(0).to_ascii_uppercase()),
        },
        "grant" | "revoke" if on_database(&v) => refused(ClusterLevel, 1),
        _ => Class::Plain,
    }
}

/// `CREATE EXTENSION [IF NOT EXISTS] name … [CASCADE]`, `ALTER EXTENSION name …`.
fn extension(v: &View, mut i: usize) -> Class {
    i = v.opt(i, &["if", "not", "exists"]);
    let name = v.ident(i).unwrap_or_default();
    let cascade = (i..v.len()).any(|k| v.is(k, "cascade"));
    Class::Extension { name, cascade }
}

/// `GRANT role TO role` / `REVOKE role FROM role`: no `ON` before `TO`/`FROM`.
fn membership(v: &View) -> bool {
    let mut depth = 0isize;
    for i in 1..v.len() {
        depth += v.nest(i);
        if depth == 0 {
            if v.is(i, "on") {
                return false;
            }
            if v.any(i, &["to", "from"]) {
                return true;
            }
        }
    }
    false
}

/// `GRANT … ON DATABASE|TABLESPACE …`.
fn on_database(v: &View) -> bool {
    (1..v.len()).any(|i| v.is(i, "on") && v.any(i + 1, &["database", "tablespace"]))
}

/// The statements of a file that form a whole-file wrapper: `Some((0,
/// last))` when the first statement is `BEGIN`/`START TRANSACTION`, the last
/// is `COMMIT`/`END`, and no other statement is transaction control.
pub fn wrapper(classes: &[Class]) -> Option<(usize, usize)> {
    let last = classes.len().checked_sub(1)?;
    if last == 0 || classes[0] != Class::Begin || classes[last] != Class::Commit {
        return None;
    }
    let inner = &classes[1..last];
    let clean = !inner.iter().any(|c| {
        matches!(
            c,
            Class::Begin
                | Class::Commit
                | Class::Refused {
                    refusal: Refusal::TransactionControl,
                    ..
                }
        )
    });
    clean.then_some((0, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(s: &str) -> Option<Refusal> {
        classify(s).refusal().map(|(r, _)| r)
    }

    #[test]
    fn transaction_control_is_refused_in_every_spelling() {
        for s in [
            "COMMIT",
            "commit work",
            "END",
            "end transaction",
            "ROLLBACK",
            "rollback to savepoint a",
            "ABORT",
            "BEGIN",
            "begin isolation level serializable",
            "START TRANSACTION READ WRITE",
            "SAVEPOINT a",
            "RELEASE SAVEPOINT a",
            "release a",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
            "/* c */ Commit -- done",
        ] {
            assert_eq!(
                refusal(s),
                Some(Refusal::TransactionControl),
                "{s} is transaction control"
            );
        }
        assert_eq!(
            classify("COMMIT PREPARED 'x'").refusal().unwrap().1,
            "COMMIT PREPARED"
        );
    }

    #[test]
    fn session_identity_is_refused() {
        for s in [
            "SET ROLE postgres",
            "set session role postgres",
            "SET LOCAL ROLE x",
            "SET role TO x",
            "set role = 'x'",
            "SET SESSION AUTHORIZATION postgres",
            "SET session_authorization = postgres",
            "RESET ROLE",
            "RESET SESSION AUTHORIZATION",
            "reset session_authorization",
        ] {
            assert_eq!(refusal(s), Some(Refusal::SessionIdentity), "{s}");
        }
        for s in [
            "SET search_path = app",
            "SET LOCAL statement_timeout = 0",
            "RESET ALL",
            "SET client_min_messages TO warning",
        ] {
            assert_eq!(classify(s), Class::Plain, "{s}");
        }
    }

    #[test]
    fn database_and_cluster_statements_are_refused() {
        for (s, what) in [
            ("DROP DATABASE shop_t1", "DROP DATABASE"),
            ("drop database if exists x with (force)", "DROP DATABASE"),
            ("CREATE DATABASE x", "CREATE DATABASE"),
            ("ALTER DATABASE x SET work_mem = '1GB'", "ALTER DATABASE"),
            ("CREATE ROLE evil SUPERUSER", "CREATE ROLE"),
            ("ALTER ROLE CURRENT_USER PASSWORD 'x'", "ALTER ROLE"),
            ("alter user x connection limit -1", "ALTER USER"),
            ("DROP USER x", "DROP USER"),
            ("CREATE GROUP g", "CREATE GROUP"),
            ("CREATE TABLESPACE t LOCATION '/tmp'", "CREATE TABLESPACE"),
            ("ALTER SYSTEM SET fsync = off", "ALTER SYSTEM"),
            ("LOAD 'auto_explain'", "LOAD"),
            (
                "GRANT sdg_other_owner TO CURRENT_USER",
                "GRANT (role membership)",
            ),
            ("REVOKE a FROM b", "REVOKE (role membership)"),
            ("GRANT CREATE ON DATABASE x TO y", "GRANT"),
            ("COMMENT ON DATABASE x IS 'y'", "COMMENT ON DATABASE"),
            ("REASSIGN OWNED BY a TO b", "REASSIGN OWNED"),
            ("DROP OWNED BY a", "DROP OWNED"),
        ] {
            assert_eq!(
                classify(s).refusal(),
                Some((Refusal::ClusterLevel, what.to_string())),
                "{s}"
            );
        }
    }

    #[test]
    fn ordinary_statements_run() {
        for s in [
            "CREATE TABLE t (id int)",
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
            "GRANT SELECT ON t TO PUBLIC",
            "REVOKE ALL ON FUNCTION f() FROM PUBLIC",
            "GRANT USAGE ON SCHEMA s TO x",
            "DO $$ BEGIN EXECUTE 'DROP DATABASE x'; END $$",
            "INSERT INTO roles (name) VALUES ('commit')",
            "CREATE USER MAPPING FOR x SERVER s",
            "COMMENT ON TABLE t IS 'on database'",
            "CREATE INDEX CONCURRENTLY i ON t (id)",
            "SELECT 'COMMIT'",
            "CALL p()",
            "ALTER TABLE t OWNER TO x",
            "CREATE VIEW role AS SELECT 1",
        ] {
            assert_eq!(classify(s), Class::Plain, "{s}");
        }
    }

    #[test]
    fn extensions_are_named() {
        assert_eq!(
            classify("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA public"),
            Class::Extension {
                name: "uuid-ossp".into(),
                cascade: false
            }
        );
        assert_eq!(
            classify("create extension postgres_fdw cascade"),
            Class::Extension {
                name: "postgres_fdw".into(),
                cascade: true
            }
        );
        assert_eq!(
            classify("ALTER EXTENSION dblink UPDATE"),
            Class::Extension {
                name: "dblink".into(),
                cascade: false
            }
        );
        assert_eq!(classify("DROP EXTENSION dblink"), Class::Plain);
    }

    #[test]
    fn a_whole_file_wrapper_is_recognized_and_nothing_else() {
        let c = |s: &[&str]| s.iter().map(|x| classify(x)).collect::<Vec<_>>();
        assert_eq!(
            wrapper(&c(&["BEGIN", "CREATE TABLE t (id int)", "COMMIT"])),
            Some((0, 2))
        );
        assert_eq!(
            wrapper(&c(&["START TRANSACTION", "SELECT 1", "END"])),
            Some((0, 2))
        );
        assert_eq!(wrapper(&c(&["BEGIN", "COMMIT"])), Some((0, 1)));
        // transaction control inside the wrapper: refused as a whole
        assert_eq!(
            wrapper(&c(&["BEGIN", "SELECT 1", "COMMIT", "SELECT 2", "COMMIT"])),
            None
        );
        assert_eq!(wrapper(&c(&["BEGIN", "SAVEPOINT a", "COMMIT"])), None);
        assert_eq!(wrapper(&c(&["CREATE TABLE t (id int)", "COMMIT"])), None);
        assert_eq!(wrapper(&c(&["BEGIN", "SELECT 1"])), None);
        assert_eq!(wrapper(&c(&["COMMIT"])), None);
        assert_eq!(wrapper(&c(&[])), None);
    }
}
