//! SQL text handling for the migrator: a small hand-written PostgreSQL lexer and everything built
//! on it. One module per reader, all on one tokenizer:
//!
//! - `lex`: the tokenizer — single-quoted strings (`''` escapes), `E''` strings (backslash
//!   escapes), `N''`/`B''`/`X''`/`U&''` strings, quoted identifiers (`""` escapes), dollar quotes
//!   with optional tags, `$n` parameters, `--` comments and nesting `/* */` comments, `:=` and
//!   `..`, a leading BOM; [`tokens`] for readers outside this module;
//! - `view`: the one cursor over significant tokens, and single-token values (identifiers,
//!   strings, qualified names), for every reader below;
//! - `split`: files into statements, and which statements need autocommit;
//! - [`effects`]: the tables, columns and sequences a migration statement creates or renames;
//! - [`function_file`]: what a statement of a `functions/` file is (routine, trigger, about a
//!   routine, skipped, or misplaced with the folder it belongs in);
//! - [`guard`]: what an uploaded statement may do (transaction control, session identity,
//!   database- and cluster-level statements refused; extensions named);
//! - `normalize`: statement text for checksums;
//! - `routines`, `types`, `create_table`, `inserts`: the headers of `CREATE FUNCTION/PROCEDURE`,
//!   `CREATE TYPE/DOMAIN`, `CREATE TABLE` (with foreign keys moved out to break reference
//!   cycles; `ALTER TABLE ... ADD ... REFERENCES` recognized) and `INSERT` statements;
//! - [`ddl`]: the `tables/` DDL reader, which reads a folder's `CREATE TABLE`s, indexes and
//!   sequences into the table model ([`crate::table_model`]);
//! - [`definition`]: definitions as the catalog writes them: the names they mention, a foreign
//!   key's referenced columns, a definition moved to another schema.
//!
//! Every reader returns [`SqlError`] (file, line, message), which the migrator's error type
//! maps once.
//!
//! Nothing here panics on any input, and nothing executes SQL.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

mod create_table;
pub mod ddl;
pub mod definition;
pub mod effects;
pub mod function_file;
pub mod guard;
mod inserts;
mod lex;
mod normalize;
mod routines;
mod split;
#[cfg(test)]
mod tests;
mod types;
mod view;

pub use create_table::{adds_foreign_key, classify_table_stmt, split_foreign_keys, TableStmt};
pub use inserts::{parse_insert, Insert};
pub use lex::{tokens, TokenKind};
pub use normalize::normalize;
pub use routines::{parse_routine, RoutineKind};
pub use split::{needs_autocommit, split_statements, SqlFile};
pub use types::{parse_type, TypeDef};

/// How many statements the readers below have read (normalized, or parsed as
/// a routine, type, table, foreign-key alter or INSERT) since the process started: an upload is
/// read once, whatever number of databases it is deployed into. Served as
/// `stonescriptdb_migrator_sql_reads_total`.
static READS: AtomicU64 = AtomicU64::new(0);

/// See [`READS`].
pub fn reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

fn read_one() {
    READS.fetch_add(1, Ordering::Relaxed);
}

/// An error in SQL text: the file when known, the 1-based line where the problem starts, and
/// what is wrong. Every reader of this module returns it; the migrator's error type maps it once
/// to a 400 (`<file> line <n>: <message>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub file: Option<String>,
    pub line: usize,
    pub message: String,
}

impl SqlError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        let message = message.into();
        SqlError {
            file: None,
            line,
            message,
        }
    }

    /// The error placed in `file` (its line unchanged).
    pub fn in_file(self, file: &str) -> Self {
        SqlError {
            file: Some(file.to_owned()),
            ..self
        }
    }

    /// The error of a statement that starts on `line` of `file`, said at that line (the
    /// statement readers count lines from the statement's own start).
    pub fn at(self, file: &str, line: usize) -> Self {
        SqlError {
            file: Some(file.to_owned()),
            line,
            ..self
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{file} line {}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl std::error::Error for SqlError {}

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement without its terminating ';'. It runs from the first to the last token that
    /// is not a comment: comments inside are kept verbatim, leading and trailing comments are not
    /// part of it (so `format!("{text};")` can never end up inside a `--` comment).
    pub text: String,
    /// 1-based line where the statement starts (first non-whitespace, non-comment character).
    pub line: usize,
}
