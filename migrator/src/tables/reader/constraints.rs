//! Constraints as read (`PCon`) before they are named and checked against
//! their table: primary keys, unique, foreign keys, checks and exclusion
//! constraints, table-level and inline, with their attributes, written back
//! as `pg_get_constraintdef` writes them; and index elements.

use super::expressions::{mentioned, normalized, regclass_text};
use super::names::{idents, rel_name};
use crate::sql::view::View;
use crate::sql::SqlError;
use crate::tables::model::{ident, ConstraintKind, QName};

/// A constraint as read, before it is named and checked against its table.
#[derive(Debug, Clone)]
pub(super) struct PCon {
    pub(super) name: Option<String>,
    pub(super) kind: ConstraintKind,
    /// Key columns (FK: referencing columns).
    pub(super) columns: Vec<String>,
    pub(super) include: Vec<String>,
    pub(super) nulls_not_distinct: bool,
    pub(super) references: Option<QName>,
    pub(super) ref_columns: Vec<String>,
    pub(super) fk_match: Option<&'static str>,
    pub(super) on_update: Option<String>,
    pub(super) on_delete: Option<String>,
    /// CHECK: the normalized expression; EXCLUDE: the whole definition.
    pub(super) expr: String,
    /// CHECK: identifiers the expression mentions; EXCLUDE: element names for naming.
    pub(super) idents: Vec<String>,
    pub(super) deferrable: bool,
    pub(super) deferred: bool,
    pub(super) no_inherit: bool,
    pub(super) not_valid: bool,
    pub(super) not_enforced: bool,
    pub(super) line: usize,
}

impl PCon {
    pub(super) fn new(kind: ConstraintKind, name: Option<String>, line: usize) -> PCon {
        PCon {
            name,
            kind,
            columns: Vec::new(),
            include: Vec::new(),
            nulls_not_distinct: false,
            references: None,
            ref_columns: Vec::new(),
            fk_match: None,
            on_update: None,
            on_delete: None,
            expr: String::new(),
            idents: Vec::new(),
            deferrable: false,
            deferred: false,
            no_inherit: false,
            not_valid: false,
            not_enforced: false,
            line,
        }
    }

    /// As pg_get_constraintdef writes it (as far as practical).
    pub(super) fn definition(&self) -> String {
        let include = if self.include.is_empty() {
            String::new()
        } else {
            format!(" INCLUDE ({})", idents(&self.include))
        };
        let mut d = match self.kind {
            ConstraintKind::PrimaryKey => {
                format!("PRIMARY KEY ({}){include}", idents(&self.columns))
            }
            ConstraintKind::Unique => {
                let nnd = if self.nulls_not_distinct {
                    " NULLS NOT DISTINCT"
                } else {
                    ""
                };
                format!("UNIQUE{nnd} ({}){include}", idents(&self.columns))
            }
            ConstraintKind::ForeignKey => {
                let target = self
                    .references
                    .as_ref()
                    .map_or(String::new(), regclass_text);
                let mut d = format!(
                    "FOREIGN KEY ({}) REFERENCES {target}",
                    idents(&self.columns)
                );
                if !self.ref_columns.is_empty() {
                    d.push_str(&format!("({})", idents(&self.ref_columns)));
                }
                if let Some(m) = self.fk_match {
                    d.push_str(&format!(" MATCH {m}"));
                }
                if let Some(a) = &self.on_update {
                    d.push_str(&format!(" ON UPDATE {a}"));
                }
                if let Some(a) = &self.on_delete {
                    d.push_str(&format!(" ON DELETE {a}"));
                }
                d
            }
            ConstraintKind::Check => {
                let ni = if self.no_inherit { " NO INHERIT" } else { "" };
                format!("CHECK ({}){ni}", self.expr)
            }
            ConstraintKind::Exclude => self.expr.clone(),
        };
        if self.deferrable {
            d.push_str(" DEFERRABLE");
        }
        if self.deferred {
            d.push_str(" INITIALLY DEFERRED");
        }
        if self.not_enforced {
            d.push_str(" NOT ENFORCED");
        }
        if self.not_valid {
            d.push_str(" NOT VALID");
        }
        d
    }
}

/// Constraint attributes after a constraint: `[NOT] DEFERRABLE`, `INITIALLY x`, `NOT VALID`,
/// `NO INHERIT`, `[NOT] ENFORCED`. Returns the index after them.
pub(super) fn con_attrs(p: View, mut i: usize, c: &mut PCon) -> usize {
    loop {
        if p.is(i, "deferrable") {
            c.deferrable = true;
            i += 1;
        } else if p.is(i, "not") && p.is(i + 1, "deferrable") {
            c.deferrable = false;
            i += 2;
        } else if p.is(i, "initially") && p.any(i + 1, &["deferred", "immediate"]) {
            c.deferred = p.is(i + 1, "deferred");
            i += 2;
        } else if p.is(i, "not") && p.is(i + 1, "valid") {
            c.not_valid = true;
            i += 2;
        } else if p.is(i, "no") && p.is(i + 1, "inherit") {
            c.no_inherit = true;
            i += 2;
        } else if p.is(i, "enforced") {
            i += 1;
        } else if p.is(i, "not") && p.is(i + 1, "enforced") {
            c.not_enforced = true;
            i += 2;
        } else {
            return i;
        }
    }
}

/// `( col, ... )` at `i`: (names, index after).
pub(super) fn column_list(p: View, i: usize) -> Result<(Vec<String>, usize), SqlError> {
    let close = p
        .close(i)
        .ok_or_else(|| p.err(i, "expected a parenthesized column list"))?;
    let mut cols = Vec::new();
    for part in p.sub(i + 1, close).parts() {
        match (part.len(), part.ident(0)) {
            (1, Some(c)) => cols.push(c),
            _ => return Err(part.err(0, "expected a column name in the column list")),
        }
    }
    Ok((cols, close + 1))
}

/// Index options after PRIMARY KEY / UNIQUE columns: `INCLUDE (..)`, `WITH (..)`,
/// `USING INDEX TABLESPACE x`.
pub(super) fn index_params(p: View, mut i: usize, c: &mut PCon) -> Result<usize, SqlError> {
    loop {
        if p.is(i, "include") {
            let (cols, e) = column_list(p, i + 1)?;
            c.include = cols;
            i = e;
        } else if p.is(i, "with") && p.sym(i + 1, "(") {
            i = p.after_group(i + 1);
        } else if p.is(i, "using") && p.is(i + 1, "index") && p.is(i + 2, "tablespace") {
            i += 4;
        } else if p.is(i, "using") && p.is(i + 1, "index") {
            return Err(p.err(
                i,
                "ADD CONSTRAINT ... USING INDEX is not supported in tables/",
            ));
        } else {
            return Ok(i);
        }
    }
}

/// `REFERENCES t [(cols)] [MATCH x] [ON DELETE|UPDATE action]` with REFERENCES at `i`.
pub(super) fn references(p: View, i: usize, c: &mut PCon) -> Result<usize, SqlError> {
    let (target, mut k) =
        rel_name(p, i + 1).ok_or_else(|| p.err(i + 1, "expected a table name after REFERENCES"))?;
    c.references = Some(target);
    if p.sym(k, "(") {
        let (cols, e) = column_list(p, k)?;
        c.ref_columns = cols;
        k = e;
    }
    loop {
        if p.is(k, "match") && p.any(k + 1, &["full", "partial", "simple"]) {
            c.fk_match = match p.word(k + 1).as_str() {
                "full" => Some("FULL"),
                "partial" => Some("PARTIAL"),
                _ => None,
            };
            k += 2;
        } else if p.is(k, "on") && p.any(k + 1, &["delete", "update"]) {
            let delete = p.is(k + 1, "delete");
            k += 2;
            let action = if p.is(k, "no") && p.is(k + 1, "action") {
                k += 2;
                None
            } else if p.any(k, &["restrict", "cascade"]) {
                k += 1;
                Some(p.word(k - 1).to_ascii_uppercase())
            } else if p.is(k, "set") && p.any(k + 1, &["null", "default"]) {
                let mut a = format!("SET {}", p.word(k + 1).to_ascii_uppercase());
                k += 2;
                if p.sym(k, "(") {
                    let (cols, e) = column_list(p, k)?;
                    a.push_str(&format!(" ({})", idents(&cols)));
                    k = e;
                }
                Some(a)
            } else {
                return Err(p.err(k, "expected a referential action after ON DELETE/UPDATE"));
            };
            if delete {
                c.on_delete = action;
            } else {
                c.on_update = action;
            }
        } else {
            return Ok(k);
        }
    }
}

/// `CHECK ( expr )` with CHECK at `i`.
pub(super) fn check(p: View, i: usize, c: &mut PCon) -> Result<usize, SqlError> {
    let close = p
        .close(i + 1)
        .ok_or_else(|| p.err(i + 1, "expected a parenthesized expression after CHECK"))?;
    let inner = p.sub(i + 2, close);
    if inner.len() == 0 {
        return Err(p.err(i + 1, "empty CHECK expression"));
    }
    c.expr = normalized(inner, true);
    c.idents = mentioned(inner);
    Ok(close + 1)
}

/// One index element (also of EXCLUDE): (rendered text, column name or None for an expression).
pub(super) fn index_elem(e: View) -> Result<(String, Option<String>), SqlError> {
    let (head, col, mut i) = if e.sym(0, "(") {
        let close = e
            .close(0)
            .ok_or_else(|| e.err(0, "unbalanced parentheses"))?;
        let inner = e.sub(1, close);
        let text = match (inner.len(), inner.ident(0)) {
            (1, Some(c)) => ident(&c),
            _ => format!("({})", normalized(inner, true)),
        };
        (text, None, close + 1)
    } else if e.is_ident(0) {
        let (parts, end) = e
            .qname(0)
            .ok_or_else(|| e.err(0, "expected an index element"))?;
        if e.sym(end, "(") {
            let close = e
                .close(end)
                .ok_or_else(|| e.err(end, "unbalanced parentheses"))?;
            (normalized(e.sub(0, close + 1), false), None, close + 1)
        } else if parts.len() == 1 {
            let c = parts.concat();
            (ident(&c), Some(c), end)
        } else {
            return Err(e.unexpected(1, "an index element"));
        }
    } else {
        return Err(e.unexpected(0, "an index element"));
    };
    let mut text = head;
    let (mut desc, mut nulls_first) = (false, None);
    let mut middle = Vec::new();
    while i < e.len() {
        if e.any(i, &["asc", "desc"]) {
            desc = e.is(i, "desc");
            i += 1;
        } else if e.is(i, "nulls") && e.any(i + 1, &["first", "last"]) {
            nulls_first = Some(e.is(i + 1, "first"));
            i += 2;
        } else if e.is(i, "collate") {
            let (parts, end) = e
                .qname(i + 1)
                .ok_or_else(|| e.err(i + 1, "expected a collation name"))?;
            let names: Vec<String> = parts.iter().map(|x| ident(x)).collect();
            middle.push(format!("COLLATE {}", names.join(".")));
            i = end;
        } else {
            // Operator class, possibly with options.
            let start = i;
            let end = e.qname(i).map_or(i + 1, |(_, end)| e.after_group(end));
            middle.push(normalized(e.sub(start, end), false));
            i = end;
        }
    }
    for m in middle {
        text.push(' ');
        text.push_str(&m);
    }
    if desc {
        text.push_str(" DESC");
    }
    match nulls_first {
        Some(true) if !desc => text.push_str(" NULLS FIRST"),
        Some(false) if desc => text.push_str(" NULLS LAST"),
        _ => {}
    }
    Ok((text, col))
}

/// `EXCLUDE [USING m] ( elem WITH op, ... ) [index params] [WHERE (pred)]` with EXCLUDE at `i`.
/// `[USING method]` at `k`: the method (or `default`) and where the rest begins.
pub(super) fn index_method(p: View, k: usize, default: &str) -> Result<(String, usize), SqlError> {
    if !p.is(k, "using") {
        return Ok((default.to_owned(), k));
    }
    let method = p
        .ident(k + 1)
        .ok_or_else(|| p.err(k + 1, "expected an index method"))?;
    Ok((method, k + 2))
}

pub(super) fn exclude(p: View, i: usize, c: &mut PCon) -> Result<usize, SqlError> {
    let (method, mut k) = index_method(p, i + 1, "gist")?;
    let close = p
        .close(k)
        .ok_or_else(|| p.err(k, "expected a parenthesized element list after EXCLUDE"))?;
    let mut elems = Vec::new();
    for part in p.sub(k + 1, close).parts() {
        let w = (0..part.len())
            .rev()
            .find(|&w| part.is(w, "with"))
            .ok_or_else(|| part.err(0, "expected WITH operator in an EXCLUDE element"))?;
        let (text, col) = index_elem(part.sub(0, w))?;
        let op: String = part
            .from(w + 1)
            .t
            .iter()
            .map(|t| t.text(part.src))
            .collect();
        if op.is_empty() {
            return Err(part.err(w, "expected an operator after WITH"));
        }
        elems.push(format!("{text} WITH {op}"));
        c.idents.push(col.clone().unwrap_or_else(|| "expr".into()));
        c.columns.extend(col);
    }
    k = index_params(p, close + 1, c)?;
    let mut def = format!("EXCLUDE USING {} ({})", ident(&method), elems.join(", "));
    if !c.include.is_empty() {
        def.push_str(&format!(" INCLUDE ({})", idents(&c.include)));
    }
    if p.is(k, "where") {
        let close = p
            .close(k + 1)
            .ok_or_else(|| p.err(k + 1, "expected a parenthesized predicate after WHERE"))?;
        def.push_str(&format!(
            " WHERE ({})",
            normalized(p.sub(k + 2, close), true)
        ));
        k = close + 1;
    }
    c.expr = def;
    Ok(k)
}

/// A table constraint element: `[CONSTRAINT n] PRIMARY KEY | UNIQUE | FOREIGN KEY | CHECK |
/// EXCLUDE ...`, or a table-level `[CONSTRAINT n] NOT NULL col` (Err side of the Ok).
pub(super) fn table_constraint(e: View) -> Result<Result<PCon, String>, SqlError> {
    let mut i = 0;
    let mut name = None;
    if e.is(0, "constraint") {
        name = Some(
            e.ident(1)
                .ok_or_else(|| e.err(1, "expected a constraint name"))?,
        );
        i = 2;
    }
    let line = e.line(i);
    let what = "a table constraint";
    let mut c;
    match e.word(i).as_str() {
        "primary" if e.is(i + 1, "key") => {
            c = PCon::new(ConstraintKind::PrimaryKey, name, line);
            let (cols, k) = column_list(e, i + 2)?;
            c.columns = cols;
            i = index_params(e, k, &mut c)?;
        }
        "unique" => {
            c = PCon::new(ConstraintKind::Unique, name, line);
            i += 1;
            if e.is(i, "nulls") {
                c.nulls_not_distinct = e.is(i + 1, "not");
                i += if c.nulls_not_distinct { 3 } else { 2 };
            }
            let (cols, k) = column_list(e, i)?;
            c.columns = cols;
            i = index_params(e, k, &mut c)?;
        }
        "foreign" if e.is(i + 1, "key") => {
            c = PCon::new(ConstraintKind::ForeignKey, name, line);
            let (cols, k) = column_list(e, i + 2)?;
            c.columns = cols;
            if !e.is(k, "references") {
                return Err(e.err(k, "expected REFERENCES after FOREIGN KEY (...)"));
            }
            i = references(e, k, &mut c)?;
        }
        "check" => {
            c = PCon::new(ConstraintKind::Check, name, line);
            i = check(e, i, &mut c)?;
        }
        "exclude" => {
            c = PCon::new(ConstraintKind::Exclude, name, line);
            i = exclude(e, i, &mut c)?;
        }
        "not" if e.is(i + 1, "null") => {
            let col = e
                .ident(i + 2)
                .filter(|_| e.len() == i + 3)
                .ok_or_else(|| e.err(i + 2, "expected a column name after NOT NULL"))?;
            return Ok(Err(col));
        }
        _ => return Err(e.unexpected(i, what)),
    }
    let end = con_attrs(e, i, &mut c);
    if end != e.len() {
        return Err(e.unexpected(end, what));
    }
    Ok(Ok(c))
}

/// Is this CREATE TABLE element a table constraint?
pub(super) fn is_table_constraint(e: View) -> bool {
    e.any(0, &["constraint", "primary", "unique", "foreign", "check"])
        || (e.is(0, "exclude") && (e.is(1, "using") || e.sym(1, "(")))
        || (e.is(0, "not") && e.is(1, "null"))
}
