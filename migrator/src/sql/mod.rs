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

mod create_table;
pub mod ddl;
pub mod definition;
pub mod effects;
mod error;
mod ident;
pub mod function_file;
pub mod guard;
mod inserts;
mod lex;
mod normalize;
mod routines;
mod split;
mod statement;
#[cfg(test)]
mod tests;
mod types;
mod view;

pub use create_table::{adds_foreign_key, classify_table_stmt, split_foreign_keys, TableStmt};
pub use error::SqlError;
pub use ident::ident;
pub use inserts::{parse_insert, Insert};
pub use lex::{tokens, TokenKind};
pub use normalize::normalize;
pub use routines::{parse_routine, RoutineKind};
pub use split::{needs_autocommit, split_statements, SqlFile};
pub use statement::{reads, Statement};
pub use types::{parse_type, TypeDef};
