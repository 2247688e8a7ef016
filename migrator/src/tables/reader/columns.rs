//! Column definitions: name, type, `DEFAULT`, `COLLATE`, `GENERATED` (stored
//! or identity) and inline constraints.

use super::constraints::{check, con_attrs, index_params, references, PCon};
use super::expressions::normalized;
use super::expressions::parse_type;
use super::names::qname_of;
use super::sequences::{new_sequence, seq_options};
use crate::sql::view::View;
use crate::sql::SqlError;
use crate::tables::model::{ident, Column, ConstraintKind, Identity, QName};

pub(super) const COLUMN_CONSTRAINT_WORDS: &[&str] = &[
    "constraint",
    "not",
    "null",
    "default",
    "primary",
    "unique",
    "references",
    "check",
    "generated",
    "collate",
    "deferrable",
    "initially",
];

/// A column's collation as the catalog reader writes it; None for `"default"`.
pub(super) fn collation(parts: Vec<String>) -> Option<String> {
    let q = qname_of(parts.clone());
    if q.name == "default" {
        return None;
    }
    if parts.len() == 1 || q.schema == "pg_catalog" {
        Some(ident(&q.name))
    } else {
        Some(format!("{}.{}", ident(&q.schema), ident(&q.name)))
    }
}

/// `GENERATED ...` at `i` on column `col`.
pub(super) fn generated(p: View, i: usize, col: &mut Column) -> Result<usize, SqlError> {
    let (identity, k) = if p.is(i + 1, "always") {
        (Identity::Always, i + 2)
    } else if p.is(i + 1, "by") && p.is(i + 2, "default") {
        (Identity::ByDefault, i + 3)
    } else {
        return Err(p.err(i + 1, "expected ALWAYS or BY DEFAULT after GENERATED"));
    };
    if !p.is(k, "as") {
        return Err(p.err(k, "expected AS after GENERATED ..."));
    }
    if p.is(k + 1, "identity") {
        let mut k = k + 2;
        if p.sym(k, "(") {
            let close = p
                .close(k)
                .ok_or_else(|| p.err(k, "unbalanced parentheses"))?;
            let mut scratch = new_sequence(QName::default());
            seq_options(p.sub(k + 1, close), 0, &mut scratch, &mut None)?;
            k = close + 1;
        }
        col.identity = Some(identity);
        col.not_null = true;
        return Ok(k);
    }
    if identity != Identity::Always {
        return Err(p.err(i, "a generated column must be GENERATED ALWAYS AS (...)"));
    }
    let close = p
        .close(k + 1)
        .ok_or_else(|| p.err(k + 1, "expected IDENTITY or a parenthesized expression"))?;
    col.generated = Some(normalized(p.sub(k + 2, close), true));
    Ok(close + 1 + usize::from(p.any(close + 1, &["stored", "virtual"])))
}

/// A column definition: (column, its constraints, the serial's integer type).
pub(super) type ColumnDef = (Column, Vec<PCon>, Option<&'static str>);

pub(super) fn column_def(e: View) -> Result<ColumnDef, SqlError> {
    let name = e.ident(0).ok_or_else(|| {
        e.err(
            0,
            format!("expected a column name, found \"{}\"", e.shown(0)),
        )
    })?;
    let no_type = || e.err(1, format!("expected a type for column {name}"));
    if e.any(1, COLUMN_CONSTRAINT_WORDS) {
        return Err(no_type());
    }
    let (data_type, serial, mut i) = parse_type(e, 1).ok_or_else(no_type)?;
    let mut col = Column {
        name: name.clone(),
        data_type,
        ..Column::default()
    };
    let what = format!("the definition of column {name}");
    let mut cons = Vec::new();
    let mut pending: Option<String> = None;
    let mut has_default = false;
    while i < e.len() {
        let line = e.line(i);
        let mut c = match e.word(i).as_str() {
            "constraint" => {
                pending = Some(
                    e.ident(i + 1)
                        .ok_or_else(|| e.err(i + 1, "expected a constraint name"))?,
                );
                i += 2;
                continue;
            }
            "not" if e.is(i + 1, "null") => {
                col.not_null = true;
                (pending, i) = (None, i + 2);
                continue;
            }
            "null" => {
                (pending, i) = (None, i + 1);
                continue;
            }
            "default" => {
                let (mut depth, mut k) = (0usize, i + 1);
                while let Some(t) = e.get(k) {
                    if depth == 0 && k > i + 1 && e.any(k, COLUMN_CONSTRAINT_WORDS) {
                        break;
                    }
                    depth = depth.saturating_add_signed(t.nest(e.src));
                    k += 1;
                }
                if k == i + 1 {
                    return Err(e.err(i, "expected an expression after DEFAULT"));
                }
                if has_default {
                    return Err(e.err(i, format!("multiple defaults for column {name}")));
                }
                has_default = true;
                let d = normalized(e.sub(i + 1, k), true);
                // PostgreSQL stores no default for a NULL constant.
                let null = d == "null" || d.starts_with("null::");
                col.default = (!null).then_some(d);
                (pending, i) = (None, k);
                continue;
            }
            "collate" => {
                let (parts, end) = e
                    .qname(i + 1)
                    .ok_or_else(|| e.err(i + 1, "expected a collation name"))?;
                col.collation = collation(parts);
                i = end;
                continue;
            }
            "generated" => {
                i = generated(e, i, &mut col)?;
                pending = None;
                continue;
            }
            "primary" if e.is(i + 1, "key") => {
                let mut c = PCon::new(ConstraintKind::PrimaryKey, pending.take(), line);
                i = index_params(e, i + 2, &mut c)?;
                c
            }
            "unique" => {
                let mut c = PCon::new(ConstraintKind::Unique, pending.take(), line);
                i += 1;
                if e.is(i, "nulls") {
                    c.nulls_not_distinct = e.is(i + 1, "not");
                    i += if c.nulls_not_distinct { 3 } else { 2 };
                }
                i = index_params(e, i, &mut c)?;
                c
            }
            "references" => {
                let mut c = PCon::new(ConstraintKind::ForeignKey, pending.take(), line);
                i = references(e, i, &mut c)?;
                c
            }
            "check" => {
                let mut c = PCon::new(ConstraintKind::Check, pending.take(), line);
                i = check(e, i, &mut c)?;
                c
            }
            _ => return Err(e.unexpected(i, &what)),
        };
        if c.kind != ConstraintKind::Check {
            c.columns = vec![name.clone()];
        }
        i = con_attrs(e, i, &mut c);
        cons.push(c);
    }
    if pending.is_some() {
        return Err(e.err(
            e.len(),
            format!("column {name}: CONSTRAINT name without a constraint"),
        ));
    }
    if serial.is_some() && (has_default || col.identity.is_some()) {
        return Err(e.err(
            0,
            format!("column {name}: a serial column cannot have a default"),
        ));
    }
    if col.identity.is_some() && has_default {
        return Err(e.err(0, format!("column {name}: both DEFAULT and IDENTITY")));
    }
    Ok((col, cons, serial))
}
