//! `CREATE TABLE` statements of `tables/` as statements: which table each
//! creates and references, and foreign keys moved out into `ALTER TABLE`s to
//! break reference cycles.

use crate::sql::lex::{sig_tokens, tokenize, unterminated, Kind, Tok};
use crate::sql::statement::read_one;
use crate::sql::view::{split_name, View};
use crate::sql::SqlError;

/// What a `tables/` statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStmt {
    /// `CREATE [GLOBAL|LOCAL] [TEMP|TEMPORARY|UNLOGGED] TABLE [IF NOT EXISTS] name ...`: the table
    /// and every table it REFERENCES (inline and table-level foreign keys) as (schema, name),
    /// deduplicated, in order of appearance; a self-reference is included. `INHERITS` and
    /// `PARTITION OF` parents are not foreign keys and are not listed.
    CreateTable {
        schema: Option<String>,
        name: String,
        references: Vec<(Option<String>, String)>,
    },
    /// Anything else (CREATE INDEX, CREATE SEQUENCE, ALTER TABLE, COMMENT ON, ...).
    Other,
}

/// (index of the first name token, index after the name, name parts) of a CREATE TABLE.
pub(super) fn create_table_header(v: View) -> Option<(usize, usize, Vec<String>)> {
    let mut i = v.past_persistence(1);
    if !v.is(0, "create") || !v.is(i, "table") {
        return None;
    }
    i += 1;
    i = v.opt(i, &["if", "not", "exists"]);
    let (parts, end) = v.qname(i)?;
    Some((i, end, parts))
}

/// Classify a `tables/` statement (see `TableStmt`).
pub fn classify_table_stmt(stmt: &str) -> TableStmt {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let Some((_, end, parts)) = create_table_header(v) else {
        return TableStmt::Other;
    };
    let (schema, name) = split_name(parts);
    let mut references = Vec::new();
    for k in (end..v.len()).filter(|&k| v.is(k, "references")) {
        let Some((p, _)) = v.qname(k + 1) else {
            continue;
        };
        let r = split_name(p);
        if !references.contains(&r) {
            references.push(r);
        }
    }
    TableStmt::CreateTable {
        schema,
        name,
        references,
    }
}

/// Does this `tables/` statement add a foreign key to a table: `ALTER TABLE ... ADD ...
/// REFERENCES ...` (a constraint or a column with one)? A deployment runs those once every
/// table of the folder exists. `REFERENCES` in a literal or a name does not count.
pub fn adds_foreign_key(stmt: &str) -> bool {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    v.is(0, "alter")
        && v.is(1, "table")
        && (2..v.len()).any(|i| v.is(i, "add"))
        && (2..v.len()).any(|i| v.is(i, "references"))
}

/// Does the FK target match one of `deferred`? Names compare case-insensitively; schemas only
/// when both sides have one.
pub(super) fn is_deferred(
    target: &(Option<String>, String),
    deferred: &[(Option<String>, String)],
) -> bool {
    let eq = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    deferred.iter().any(|(ds, dn)| {
        eq(dn, &target.1)
            && match (ds, &target.0) {
                (Some(a), Some(b)) => eq(a, b),
                _ => true,
            }
    })
}

/// Index after the foreign-key clause whose referenced name ends at `i`: optional `(cols)`,
/// `MATCH x`, `ON DELETE|UPDATE action`, `[NOT] DEFERRABLE`, `INITIALLY x`, `[NOT] ENFORCED`.
pub(super) fn fk_tail(v: View, i: usize) -> usize {
    let mut k = v.after_group(i);
    loop {
        let w = v.word(k);
        match w.as_str() {
            "match" if !v.word(k + 1).is_empty() => k += 2,
            "on" if v.any(k + 1, &["delete", "update"]) => {
                k += 2;
                if v.is(k, "no") && v.is(k + 1, "action") {
                    k += 2;
                } else if v.any(k, &["restrict", "cascade"]) {
                    k += 1;
                } else if v.is(k, "set") && v.any(k + 1, &["null", "default"]) {
                    k = v.after_group(k + 2);
                }
            }
            "deferrable" | "enforced" => k += 1,
            "not" if v.any(k + 1, &["deferrable", "enforced"]) => k += 2,
            "initially" if v.any(k + 1, &["deferred", "immediate"]) => k += 2,
            _ => return k,
        }
    }
}

/// Start of the removal of an inline constraint starting at byte `s`: also drop the whitespace
/// before it, unless that would join a `--` comment with the text that follows.
pub(super) fn back_over_ws(src: &str, all: &[Tok], s: usize) -> usize {
    let b = src.as_bytes();
    let ws = |p: usize, nl: bool| {
        let c = p
            .checked_sub(1)
            .and_then(|q| b.get(q))
            .copied()
            .unwrap_or(b'x');
        c == b' ' || c == b'\t' || (nl && c.is_ascii_whitespace())
    };
    let (mut p, mut q) = (s, s);
    while ws(p, false) {
        p -= 1;
    }
    while ws(q, true) {
        q -= 1;
    }
    let after_comment = all
        .iter()
        .any(|t| t.kind == Kind::LineComment && t.end == q);
    if after_comment {
        p
    } else {
        q
    }
}

/// For breaking REFERENCES cycles: remove from a CREATE TABLE every foreign key pointing to one
/// of `deferred` and return (rewritten statement, `ALTER TABLE ... ADD ...` statements that add
/// them back, without trailing ';').
///
/// An inline `col type [CONSTRAINT n] REFERENCES t [(c)] [MATCH ..] [ON ..] [DEFERRABLE ..]`
/// becomes `ALTER TABLE tbl ADD [CONSTRAINT n] FOREIGN KEY (col) REFERENCES ...`; table-level
/// `[CONSTRAINT n] FOREIGN KEY (...) REFERENCES ...` elements are moved whole. Everything else
/// is kept verbatim. Deferred names compare case-insensitively; a schema is compared only when
/// both the deferred entry and the reference have one. A CREATE TABLE without a column list
/// (`AS SELECT ...`) is returned unchanged.
pub fn split_foreign_keys(
    stmt: &str,
    deferred: &[(Option<String>, String)],
) -> Result<(String, Vec<String>), SqlError> {
    read_one();
    let all = tokenize(stmt);
    if let Some(t) = all.iter().find(|t| t.open) {
        return Err(unterminated(t));
    }
    let toks: Vec<Tok> = all.iter().copied().filter(|x| !x.is_comment()).collect();
    let v = View::new(stmt, &toks);
    let (name_start, name_end, _) =
        create_table_header(v).ok_or_else(|| SqlError::new(1, "not a CREATE TABLE statement"))?;
    let table = v.sub(name_start, name_end).text();
    let mut i = name_end;
    if v.is(i, "partition") && v.is(i + 1, "of") {
        i = v.qname(i + 2).map_or(i, |(_, e)| e);
    } else if v.is(i, "of") {
        i = v.qname(i + 1).map_or(i, |(_, e)| e);
    }
    if !v.sym(i, "(") {
        return Ok((stmt.to_string(), Vec::new()));
    }
    let close = v
        .close(i)
        .ok_or_else(|| SqlError::new(v.line(i), "unbalanced parentheses"))?;
    let inner = v.sub(i + 1, close);
    let ranges = inner.ranges();
    let (mut cuts, mut alters) = (Vec::new(), Vec::new());
    let mut removed = vec![false; ranges.len()];
    for (k, &(a, b)) in ranges.iter().enumerate() {
        let e = inner.sub(a, b);
        if e.is(0, "foreign") || (e.is(0, "constraint") && e.is(2, "foreign")) {
            let r = (0..e.len()).find(|&r| e.is(r, "references"));
            let target = r.and_then(|r| e.qname(r + 1)).map(|(p, _)| split_name(p));
            if target.is_some_and(|t| is_deferred(&t, deferred)) {
                if let Some(r) = removed.get_mut(k) {
                    *r = true;
                }
                alters.push(format!("ALTER TABLE {table} ADD {}", e.text()));
            }
            continue;
        }
        let exclude = e.is(0, "exclude") && (e.is(1, "using") || e.sym(1, "("));
        if exclude || e.any(0, &["constraint", "check", "unique", "primary", "like"]) {
            continue;
        }
        // A column definition: look for inline REFERENCES at its top level.
        let col = e.get(0).map_or("", |c| c.text(stmt));
        let (mut depth, mut j) = (0usize, 1);
        while j < e.len() {
            depth = depth.saturating_add_signed(e.nest(j));
            let Some((parts, qend)) = e
                .qname(j + 1)
                .filter(|_| depth == 0 && e.is(j, "references"))
            else {
                j += 1;
                continue;
            };
            let end = fk_tail(e, qend);
            if is_deferred(&split_name(parts), deferred) {
                let named = j >= 2 && e.is(j - 2, "constraint");
                let from = if named { j - 2 } else { j };
                let cname = if named {
                    format!("CONSTRAINT {} ", e.sub(j - 1, j).text())
                } else {
                    String::new()
                };
                let refs = e.sub(j, end).text();
                alters.push(format!(
                    "ALTER TABLE {table} ADD {cname}FOREIGN KEY ({col}) {refs}"
                ));
                if let (Some(s), Some(x)) = (e.get(from), e.get(end - 1)) {
                    cuts.push((back_over_ws(stmt, &all, s.start), x.end));
                }
            }
            j = end;
        }
    }
    // Whole elements: drop the comma before them (or, for leading elements, the one after).
    for (k, &(a, b)) in ranges.iter().enumerate() {
        let e = inner.sub(a, b);
        let (Some(first), Some(last)) = (e.t.first(), e.t.last()) else {
            continue;
        };
        if !removed.get(k).copied().unwrap_or(false) {
            continue;
        }
        let kept_before = removed.iter().take(k).any(|r| !r);
        let comma_before = a.checked_sub(1).and_then(|c| inner.get(c));
        match (kept_before, comma_before, inner.get(b)) {
            (true, Some(c), _) => cuts.push((c.start, last.end)),
            (_, _, Some(c)) => {
                let next = all
                    .iter()
                    .find(|x| x.start >= c.end)
                    .map_or(c.end, |x| x.start);
                cuts.push((first.start, next));
            }
            _ => cuts.push((first.start, last.end)),
        }
    }
    cuts.sort_unstable();
    let (mut out, mut pos) = (String::with_capacity(stmt.len()), 0);
    for (s, e) in cuts {
        if s < pos {
            continue;
        }
        out.push_str(stmt.get(pos..s).unwrap_or(""));
        pos = e;
    }
    out.push_str(stmt.get(pos..).unwrap_or(""));
    Ok((out, alters))
}
/// One `tables/` file: its `CREATE TABLE`, and how each statement takes part
/// in creating it.
/// A `tables/` file as a deployment uses it: its CREATE TABLE, the table,
/// what it references, and its foreign-key alters.
#[derive(Debug, Clone)]
pub struct TableItem {
    pub file: usize,
    /// Index of the `CREATE TABLE` statement.
    pub create: usize,
    /// (schema, name).
    pub key: (String, String),
    /// Tables it REFERENCES, (schema, name).
    pub references: Vec<(String, String)>,
    /// Per statement: a pg_dump-style `ALTER TABLE … ADD … FOREIGN KEY`.
    pub adds_fk: Vec<bool>,
    /// When it references anything: its CREATE TABLE with every foreign
    /// key moved out, and those as `ALTER TABLE … ADD … FOREIGN KEY`s (read
    /// once at upload; used when the table is created in a REFERENCES cycle).
    pub split: Option<(String, Vec<String>)>,
}
