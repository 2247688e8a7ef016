//! DDL reader for `tables/`: turns the folder's statements into a [`Model`], walking the one
//! cursor (`crate::sql::view::View`) over the one tokenizer every SQL reader of the migrator uses.
//! One file per part: `expressions` (normalized expression text, and type spellings: each reads the other),
//! `names` (names PostgreSQL chooses), `constraints`, `columns`, `sequences`, and `statements`
//! (statement by statement into the model).
//!
//! Read per statement (see `read_tables`): `CREATE [UNLOGGED] TABLE`, `CREATE [UNIQUE] INDEX`,
//! `CREATE SEQUENCE`, and the pg_dump-style follow-ups `ALTER TABLE ... ADD CONSTRAINT`,
//! `ALTER TABLE ... ALTER COLUMN ... SET DEFAULT | ADD GENERATED ... AS IDENTITY`,
//! `ALTER SEQUENCE ... OWNED BY`. Everything else (triggers, grants, views, comments, `SET`,
//! `SELECT set_config(...)`, `ALTER TABLE ... OWNER TO`) is not part of the model and ignored.
//!
//! Names follow the model's conventions (unquoted identifiers folded to lower case and truncated
//! to 63 bytes, quoted ones verbatim, default schema `public`). Unnamed constraints and indexes
//! get the names PostgreSQL would choose (`makeObjectName`/`ChooseRelationName`: the table and
//! column parts are shortened, the longer first, so the whole fits 63 bytes; a taken name gets a
//! number after the label: `t_check1`). Collisions are looked for among the names this reader
//! has produced so far in the same schema, in file order — PostgreSQL looks at the whole
//! database at the time each object is created, so in rare cases (a table named like another
//! table's generated constraint) the names differ; `tables::align_names` covers that.
//! Tables are read before everything else, so an `ALTER TABLE` or `CREATE INDEX` may come before
//! the table's file.
//!
//! Expressions (defaults, checks, generated columns, index elements and predicates) are kept as
//! text normalized by [`normalize_expr`]; the deployment compares catalog renderings, these are
//! for messages and for comparing two DDL spellings.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use crate::sql::lex::{sig_tokens, Tok};
use crate::sql::statement::read_one;
use crate::sql::view::View;
use crate::sql::SqlError;
use crate::sql::SqlFile;
use crate::tables::model::{Model, QName};
use statements::{classify, Reader, Stmt};

mod columns;
mod constraints;
mod expressions;
mod names;
mod sequences;
mod statements;
#[cfg(test)]
mod tests;

/// The declared tables of a `tables/` folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub model: Model,
    /// Which file declared each table (for messages and tracking).
    pub files: BTreeMap<QName, String>,
    /// Which file declared each sequence.
    pub sequence_files: BTreeMap<QName, String>,
}

/// Read a `tables/` folder: every file must declare at least one table or
/// sequence (a file may hold only a sequence that several tables' defaults
/// share); tables and sequences are read first, then indexes, sequences'
/// ownership and pg_dump-style `ALTER TABLE`s, in file order.
pub fn read_tables(files: &[SqlFile]) -> Result<Declared, SqlError> {
    let mut r = Reader::default();
    let lexed: Vec<Vec<Vec<Tok>>> = files
        .iter()
        .map(|f| f.statements.iter().map(|s| sig_tokens(&s.text)).collect())
        .collect();
    for (f, toks) in files.iter().zip(&lexed) {
        r.file.clone_from(&f.path);
        let in_file = |e: SqlError| e.in_file(&f.path);
        let mut declares = false;
        for (p, stmt) in views(f, toks) {
            match stmt {
                Stmt::Table => r.create_table(p).map_err(in_file)?,
                Stmt::Sequence => r.create_sequence(p).map_err(in_file)?,
                _ => continue,
            }
            declares = true;
        }
        if !declares {
            let msg = "declares no table or sequence: every tables/ file needs a CREATE TABLE or CREATE SEQUENCE statement";
            return Err(SqlError::new(1, msg).in_file(&f.path));
        }
    }
    for (f, toks) in files.iter().zip(&lexed) {
        r.file.clone_from(&f.path);
        let in_file = |e: SqlError| e.in_file(&f.path);
        for (p, stmt) in views(f, toks) {
            match stmt {
                Stmt::Index => r.create_index(p).map_err(in_file)?,
                Stmt::AlterTable => r.alter_table(p).map_err(in_file)?,
                Stmt::AlterSequence => r.alter_sequence(p).map_err(in_file)?,
                _ => {}
            }
        }
    }
    for (seq, path, line) in &r.owned {
        let Some((table, col)) = r.model.sequences.get(seq).and_then(|s| s.owned_by.as_ref())
        else {
            continue;
        };
        let Some(t) = r.model.tables.get(table) else {
            let msg = format!("sequence {seq} is OWNED BY {table}.{col}, but table {table} is not declared in tables/");
            return Err(SqlError::new(*line, msg).in_file(path));
        };
        if t.column(col).is_none() {
            let msg = format!(
                "sequence {seq} is OWNED BY {table}.{col}, but {table} has no column {col}"
            );
            return Err(SqlError::new(*line, msg).in_file(path));
        }
    }
    for t in r.model.tables.values_mut() {
        t.constraints.sort_by(|a, b| a.name.cmp(&b.name));
        t.indexes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(Declared {
        model: r.model,
        files: r.files,
        sequence_files: r.sequence_files,
    })
}

/// Each statement of `f` (its tokens `toks`) with what it declares.
fn views<'a>(f: &'a SqlFile, toks: &'a [Vec<Tok>]) -> Vec<(View<'a>, Stmt)> {
    f.statements
        .iter()
        .zip(toks)
        .map(|(s, t)| {
            let v = View::at(&s.text, t, s.line);
            (v, classify(v))
        })
        .collect()
}

/// Canonical spelling of a type as PostgreSQL's format_type() writes it.
///
/// `serial` types give their integer type. Text that is not a type name is returned
/// lower-cased with normalized spacing.
///
/// The differ asks this of the type names PostgreSQL reports for every
/// database a deployment reaches; each distinct text is read once per
/// process (and counted as a read), then answered from memory.
pub fn canonical_type(text: &str) -> String {
    /// Distinct type texts kept; beyond it, texts are read again.
    const KEPT: usize = 4096;
    static KNOWN: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Default::default);
    if let Some(c) = known.lock().ok().and_then(|k| k.get(text).cloned()) {
        return c;
    }
    read_one();
    let toks = sig_tokens(text);
    let p = View::new(text, &toks);
    let canon = match expressions::parse_type(p, 0) {
        Some((canon, _, end)) if end == toks.len() => canon,
        _ => expressions::normalized(p, false),
    };
    if let Ok(mut k) = known.lock() {
        if k.len() < KEPT {
            k.insert(text.to_owned(), canon.clone());
        }
    }
    canon
}

/// Whitespace/keyword-case normalized expression text (used for DDL-side defaults/checks).
///
/// Comments are dropped; unquoted words are lower-cased and quoted identifiers quoted only when
/// needed; string literals are kept exact (dollar-quoted ones become `'...'`); spacing is
/// canonical (`f(a, b)`, `a > -1`, `x::text`); type names after `::` are canonical
/// (`0::int` -> `0::integer`); regclass literals drop `public.` and `nextval('s')` becomes
/// `nextval('s'::regclass)`; one level of parentheses around the whole is removed.
/// (Reading a table normalizes its expressions this way; exposed for tests.)
#[cfg(test)]
pub fn normalize_expr(text: &str) -> String {
    let toks = sig_tokens(text);
    expressions::normalized(View::new(text, &toks), true)
}
