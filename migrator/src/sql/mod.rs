//! SQL text handling for the migrator: a small hand-written PostgreSQL lexer and everything built
//! on it. One module per reader, all on one tokenizer:
//!
//! - `lex`: the tokenizer — single-quoted strings (`''` escapes), `E''` strings (backslash
//!   escapes), `N''`/`B''`/`X''`/`U&''` strings, quoted identifiers (`""` escapes), dollar quotes
//!   with optional tags, `$n` parameters, `--` comments and nesting `/* */` comments, `:=` and
//!   `..`, a leading BOM (nothing outside `sql/` and the readers built on it walks tokens);
//! - `view`: the one cursor over significant tokens, and single-token values (identifiers,
//!   strings, qualified names), for every reader below;
//! - `split`: files into statements, and which statements need autocommit;
//! - [`effects`]: the tables, columns and sequences a migration statement creates or renames;
//! - [`function_file`]: what a statement of a `functions/` file is (routine, trigger, about a
//!   routine, skipped, or misplaced with the folder it belongs in);
//! - [`guard`]: what an uploaded statement may do (transaction control, session identity,
//!   database- and cluster-level statements refused; extensions named);
//! - `normalize`: statement text for checksums;
//! - `routines`, `types`: the headers of `CREATE FUNCTION/PROCEDURE` and `CREATE TYPE/DOMAIN`;
//! - `ident`: identifiers quoted only where PostgreSQL needs it;
//! - [`definition`]: definitions as the catalog writes them: the names they mention, a foreign
//!   key's referenced columns, a definition moved to another schema.
//!
//! Readers of one subject live with it, on this lexer and cursor: the `tables/` DDL reader and a
//! `tables/` file's CREATE TABLE in the `tables` folder, a seeder's INSERTs in the `seed` folder.
//!
//! Every reader returns [`SqlError`] (file, line, message), which the migrator's error type
//! maps once.
//!
//! Nothing here panics on any input, and nothing executes SQL.

pub mod definition;
pub mod effects;
mod error;
pub mod function_file;
pub mod guard;
mod ident;
pub mod lex;
mod normalize;
pub mod routines;
mod split;
pub mod statement;
#[cfg(test)]
mod tests;
mod types;
pub mod view;

pub use error::SqlError;
pub use ident::ident;
pub use normalize::normalize;
pub use routines::{parse_routine, RoutineKind};
pub use split::{needs_autocommit, split_statements, SqlFile};
pub use statement::{reads, Statement};
pub use types::{parse_type, TypeDef};
