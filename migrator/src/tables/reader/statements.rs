//! The reader of a `tables/` folder's statements: which statement declares
//! what (`classify`), and `Reader`, which builds the model statement by
//! statement — tables and sequences, then indexes, pg_dump-style `ALTER
//! TABLE`s and sequence ownership — naming constraints as PostgreSQL would
//! and refusing what `tables/` cannot declare.

use std::collections::{BTreeMap, BTreeSet};

use stonescriptdb_shared::names::quote_literal;

use super::columns::{column_def, generated};
use super::constraints::{
    column_list, index_elem, index_method, is_table_constraint, table_constraint, PCon,
};
use super::expressions::{normalized, regclass_text};
use super::names::{choose_name, idents, index_column_names, rel_name};
use super::sequences::{new_sequence, seq_options};
use crate::sql::view::View;
use crate::sql::SqlError;
use crate::tables::model::{ident, Column, Constraint, ConstraintKind, Index, Model, QName, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stmt {
    Table,
    Sequence,
    Index,
    AlterTable,
    AlterSequence,
    Other,
}

pub(super) fn classify(p: View) -> Stmt {
    if p.is(0, "create") {
        let i = p.past_persistence(1);
        if p.is(i, "table") {
            return Stmt::Table;
        }
        if p.is(i, "sequence") {
            return Stmt::Sequence;
        }
        if p.is(1, "index") || (p.is(1, "unique") && p.is(2, "index")) {
            return Stmt::Index;
        }
    } else if p.is(0, "alter") && p.is(1, "table") {
        return Stmt::AlterTable;
    } else if p.is(0, "alter") && p.is(1, "sequence") {
        return Stmt::AlterSequence;
    }
    Stmt::Other
}

#[derive(Default)]
pub(super) struct Reader {
    pub(super) model: Model,
    pub(super) files: BTreeMap<QName, String>,
    pub(super) sequence_files: BTreeMap<QName, String>,
    /// Relation names used per schema: tables, sequences, indexes (incl. constraint indexes).
    rels: BTreeSet<QName>,
    /// Constraint names used per schema.
    cons: BTreeSet<QName>,
    /// Sequences with an explicit OWNED BY (file, line), to check once every table is known.
    pub(super) owned: Vec<(QName, String, usize)>,
    /// The file being read.
    pub(super) file: String,
}

/// Name, check and add constraints to `tbl` (PostgreSQL's order: checks, primary key,
/// unique/exclude, foreign keys).
pub(super) fn add_constraints(
    tbl: &mut Table,
    rels: &mut BTreeSet<QName>,
    cons: &mut BTreeSet<QName>,
    pcons: Vec<PCon>,
) -> Result<(), SqlError> {
    let schema = tbl.name.schema.clone();
    let q = |n: &str| QName::new(&schema, n);
    let tname = tbl.name.clone();
    let mut pending: Vec<PCon> = Vec::new();
    for mut c in pcons {
        let err = |m: String| SqlError::new(c.line, m);
        if c.kind == ConstraintKind::Check {
            c.columns = tbl
                .columns
                .iter()
                .filter(|col| c.idents.contains(&col.name))
                .map(|col| col.name.clone())
                .collect();
        } else {
            for col in c.columns.iter().chain(&c.include) {
                if tbl.column(col).is_none() {
                    return Err(err(format!(
                        "column {col} of table {tname} is not declared"
                    )));
                }
            }
        }
        if c.kind == ConstraintKind::PrimaryKey {
            let has_pk = |k: &ConstraintKind| *k == ConstraintKind::PrimaryKey;
            if tbl.constraints.iter().any(|x| has_pk(&x.kind))
                || pending.iter().any(|x| has_pk(&x.kind))
            {
                return Err(err(format!("multiple primary keys for table {tname}")));
            }
            for col in tbl.columns.iter_mut() {
                if c.columns.contains(&col.name) {
                    col.not_null = true;
                }
            }
        }
        if let Some(n) = &c.name {
            let indexed = matches!(
                c.kind,
                ConstraintKind::PrimaryKey | ConstraintKind::Unique | ConstraintKind::Exclude
            );
            let dup = tbl.constraint(n).is_some()
                || pending.iter().any(|x| x.name.as_ref() == Some(n))
                || (indexed && rels.contains(&q(n)));
            if dup {
                return Err(err(format!(
                    "constraint {n} is declared twice (table {tname})"
                )));
            }
            cons.insert(q(n));
            if indexed {
                rels.insert(q(n));
            }
        }
        pending.push(c);
    }
    let rank = |k: &ConstraintKind| match k {
        ConstraintKind::Check => 0,
        ConstraintKind::PrimaryKey => 1,
        ConstraintKind::Unique | ConstraintKind::Exclude => 2,
        ConstraintKind::ForeignKey => 3,
    };
    pending.sort_by_key(|c| rank(&c.kind));
    for c in pending {
        let name = match &c.name {
            Some(n) => n.clone(),
            None => {
                let (name2, label) = match c.kind {
                    ConstraintKind::Check => {
                        let one = (c.columns.len() == 1).then(|| c.columns.concat());
                        (one, "check")
                    }
                    ConstraintKind::PrimaryKey => (None, "pkey"),
                    ConstraintKind::Unique => {
                        let all: Vec<String> =
                            c.columns.iter().chain(&c.include).cloned().collect();
                        (Some(index_column_names(&all).join("_")), "key")
                    }
                    ConstraintKind::Exclude => {
                        (Some(index_column_names(&c.idents).join("_")), "excl")
                    }
                    ConstraintKind::ForeignKey => (Some(c.columns.join("_")), "fkey"),
                };
                let relation =
                    !matches!(c.kind, ConstraintKind::Check | ConstraintKind::ForeignKey);
                let n = choose_name(&tname.name, name2.as_deref(), label, |n| {
                    cons.contains(&q(n)) || (relation && rels.contains(&q(n)))
                });
                cons.insert(q(&n));
                if relation {
                    rels.insert(q(&n));
                }
                n
            }
        };
        tbl.constraints.push(Constraint {
            definition: c.definition(),
            name,
            kind: c.kind,
            columns: c.columns,
            references: c.references,
        });
    }
    Ok(())
}

impl Reader {
    fn table_mut(&mut self, p: View, i: usize, q: &QName) -> Result<&mut Table, SqlError> {
        let msg = format!("table {q} is not declared in tables/");
        self.model.tables.get_mut(q).ok_or_else(|| p.err(i, msg))
    }

    /// A serial column: its sequence (named like PostgreSQL does), NOT NULL and nextval default.
    fn serial(&mut self, table: &QName, col: &mut Column, ty: &str) {
        let rels = &self.rels;
        let name = choose_name(&table.name, Some(&col.name), "seq", |n| {
            rels.contains(&QName::new(&table.schema, n))
        });
        let q = QName::new(&table.schema, &name);
        self.rels.insert(q.clone());
        col.data_type = ty.to_string();
        col.not_null = true;
        col.default = Some(format!(
            "nextval({}::regclass)",
            quote_literal(&regclass_text(&q))
        ));
        let mut s = new_sequence(q.clone());
        s.data_type = ty.to_string();
        s.owned_by = Some((table.clone(), col.name.clone()));
        self.model.sequences.insert(q, s);
    }

    pub(super) fn create_table(&mut self, p: View) -> Result<(), SqlError> {
        let mut i = 1;
        while p.any(i, &["global", "local", "temp", "temporary", "unlogged"]) {
            if p.any(i, &["temp", "temporary"]) {
                return Err(p.err(i, "temporary tables cannot be declared in tables/"));
            }
            i += 1;
        }
        i += 1;
        i = p.opt(i, &["if", "not", "exists"]);
        let name_at = i;
        let (qn, k) = rel_name(p, i).ok_or_else(|| p.err(i, "expected a table name"))?;
        if p.is(k, "partition") && p.is(k + 1, "of") {
            return Err(p.err(
                k,
                format!("table {qn}: CREATE TABLE ... PARTITION OF is not supported in tables/"),
            ));
        }
        if p.is(k, "of") {
            return Err(p.err(k, format!("table {qn}: typed tables (CREATE TABLE ... OF type) are not supported in tables/")));
        }
        if p.is(k, "as") || p.is(k, "execute") {
            return Err(p.err(k, format!("table {qn}: CREATE TABLE ... AS is not supported in tables/; declare the columns")));
        }
        let close = p.close(k).ok_or_else(|| {
            p.err(
                k,
                format!("table {qn}: expected a parenthesized column list"),
            )
        })?;
        let mut depth = 0usize;
        for j in close + 1..p.len() {
            if p.sym(j, "(") {
                depth += 1;
            } else if p.sym(j, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && p.any(j, &["as", "execute"]) {
                return Err(p.err(j, format!("table {qn}: CREATE TABLE ... AS is not supported in tables/; declare the columns")));
            }
        }
        if let Some(first) = self.files.get(&qn) {
            return Err(p.err(
                name_at,
                format!("table {qn} is declared twice (also in {first})"),
            ));
        }
        if self.rels.contains(&qn) {
            return Err(p.err(
                name_at,
                format!("{qn} is declared twice (also as a sequence or index)"),
            ));
        }
        let mut tbl = Table {
            name: qn.clone(),
            ..Table::default()
        };
        let (mut pcons, mut serials, mut not_null) = (Vec::new(), Vec::new(), Vec::new());
        let elements = p.sub(k + 1, close).parts();
        let single = elements.len() == 1;
        for e in elements {
            if e.len() == 0 {
                if single {
                    continue;
                }
                return Err(p.err(
                    close,
                    format!("table {qn}: empty element in the column list (stray comma?)"),
                ));
            }
            if is_table_constraint(e) {
                match table_constraint(e)? {
                    Ok(c) => pcons.push(c),
                    Err(col) => not_null.push((col, e.line(0))),
                }
                continue;
            }
            if e.is(0, "like") {
                continue;
            }
            let (col, cons, serial) = column_def(e)?;
            if tbl.column(&col.name).is_some() {
                return Err(e.err(
                    0,
                    format!("column {} of table {qn} is declared twice", col.name),
                ));
            }
            if let Some(ty) = serial {
                serials.push((tbl.columns.len(), ty));
            }
            pcons.extend(cons);
            tbl.columns.push(col);
        }
        for (col, line) in not_null {
            let c = tbl.columns.iter_mut().find(|c| c.name == col);
            let msg = format!("column {col} of table {qn} is not declared");
            let c = c.ok_or_else(|| SqlError::new(line, msg))?;
            c.not_null = true;
        }
        for (idx, ty) in serials {
            if let Some(mut col) = tbl.columns.get(idx).cloned() {
                self.serial(&qn, &mut col, ty);
                if let Some(slot) = tbl.columns.get_mut(idx) {
                    *slot = col;
                }
            }
        }
        self.rels.insert(qn.clone());
        add_constraints(&mut tbl, &mut self.rels, &mut self.cons, pcons)?;
        self.files.insert(qn.clone(), self.file.clone());
        self.model.tables.insert(qn, tbl);
        Ok(())
    }

    pub(super) fn create_sequence(&mut self, p: View) -> Result<(), SqlError> {
        let mut i = 1;
        while p.any(i, &["temp", "temporary", "unlogged"]) {
            if !p.is(i, "unlogged") {
                return Err(p.err(i, "temporary sequences cannot be declared in tables/"));
            }
            i += 1;
        }
        i += 1;
        i = p.opt(i, &["if", "not", "exists"]);
        let (qn, k) = rel_name(p, i).ok_or_else(|| p.err(i, "expected a sequence name"))?;
        if self.rels.contains(&qn) {
            return Err(p.err(i, format!("{qn} is declared twice")));
        }
        let mut s = new_sequence(qn.clone());
        let mut owned = None;
        seq_options(p, k, &mut s, &mut owned)?;
        if let Some(line) = owned {
            self.owned.push((qn.clone(), self.file.clone(), line));
        }
        self.rels.insert(qn.clone());
        self.sequence_files.insert(qn.clone(), self.file.clone());
        self.model.sequences.insert(qn, s);
        Ok(())
    }

    pub(super) fn alter_sequence(&mut self, p: View) -> Result<(), SqlError> {
        let mut i = 2;
        i = p.opt(i, &["if", "exists"]);
        let (qn, k) = rel_name(p, i).ok_or_else(|| p.err(i, "expected a sequence name"))?;
        if p.any(k, &["owner", "rename", "set"]) {
            if p.is(k, "owner") {
                return Ok(());
            }
            return Err(p.err(
                k,
                format!("ALTER SEQUENCE {} is not supported in tables/", p.shown(k)),
            ));
        }
        let s = self
            .model
            .sequences
            .get_mut(&qn)
            .ok_or_else(|| p.err(i, format!("sequence {qn} is not declared in tables/")))?;
        let mut owned = None;
        seq_options(p, k, s, &mut owned)?;
        if let Some(line) = owned {
            self.owned.push((qn, self.file.clone(), line));
        }
        Ok(())
    }

    pub(super) fn create_index(&mut self, p: View) -> Result<(), SqlError> {
        let unique = p.is(1, "unique");
        let mut i = 2 + usize::from(unique);
        i += usize::from(p.is(i, "concurrently"));
        i = p.opt(i, &["if", "not", "exists"]);
        let mut name = None;
        if !p.is(i, "on") {
            let (parts, end) = p
                .qname(i)
                .ok_or_else(|| p.err(i, "expected an index name or ON"))?;
            name = parts.last().cloned();
            i = end;
        }
        if !p.is(i, "on") {
            return Err(p.err(i, "expected ON after the index name"));
        }
        i += 1 + usize::from(p.is(i + 1, "only"));
        let (table, mut k) = rel_name(p, i).ok_or_else(|| p.err(i, "expected a table name"))?;
        let table_at = i;
        k += usize::from(p.sym(k, "*"));
        let (method, mut k) = index_method(p, k, "btree")?;
        let close = p
            .close(k)
            .ok_or_else(|| p.err(k, "expected a parenthesized list of index elements"))?;
        let (mut elems, mut names, mut columns) = (Vec::new(), Vec::new(), Vec::new());
        for e in p.sub(k + 1, close).parts() {
            if e.len() == 0 {
                return Err(p.err(k, "empty index element"));
            }
            let (text, col) = index_elem(e)?;
            elems.push(text);
            names.push(col.clone().unwrap_or_else(|| "expr".into()));
            columns.extend(col);
        }
        let mut tail = String::new();
        k = close + 1;
        if p.is(k, "include") {
            let (cols, end) = column_list(p, k + 1)?;
            tail.push_str(&format!(" INCLUDE ({})", idents(&cols)));
            names.extend(cols.iter().cloned());
            columns.extend(cols);
            k = end;
        }
        if p.is(k, "nulls") && p.is(k + 1, "not") && p.is(k + 2, "distinct") {
            tail.push_str(" NULLS NOT DISTINCT");
            k += 3;
        } else if p.is(k, "nulls") && p.is(k + 1, "distinct") {
            k += 2;
        }
        if p.is(k, "with") {
            let c = p
                .close(k + 1)
                .ok_or_else(|| p.err(k + 1, "expected a parenthesized option list after WITH"))?;
            tail.push_str(&format!(" WITH ({})", normalized(p.sub(k + 2, c), false)));
            k = c + 1;
        }
        if p.is(k, "tablespace") {
            k += 2;
        }
        if p.is(k, "where") {
            if k + 1 >= p.len() {
                return Err(p.err(k, "expected a predicate after WHERE"));
            }
            tail.push_str(&format!(" WHERE ({})", normalized(p.from(k + 1), true)));
            k = p.len();
        }
        if k < p.len() {
            return Err(p.unexpected(k, "CREATE INDEX"));
        }
        let rels = &self.rels;
        let name = match name {
            Some(n) => {
                if rels.contains(&QName::new(&table.schema, &n)) {
                    return Err(p.err(2, format!("index {n} is declared twice")));
                }
                n
            }
            None => {
                let cols = index_column_names(&names).join("_");
                choose_name(&table.name, Some(&cols), "idx", |n| {
                    rels.contains(&QName::new(&table.schema, n))
                })
            }
        };
        let def = format!(
            "CREATE {}INDEX {} ON {} USING {} ({}){tail}",
            if unique { "UNIQUE " } else { "" },
            ident(&name),
            table.sql(),
            ident(&method),
            elems.join(", ")
        );
        let tbl = self.table_mut(p, table_at, &table)?;
        if let Some(col) = columns.iter().find(|c| tbl.column(c).is_none()) {
            let msg = format!("index {name}: column {col} of table {table} is not declared");
            return Err(p.err(close, msg));
        }
        tbl.indexes.push(Index {
            name: name.clone(),
            unique,
            definition: def,
        });
        self.rels.insert(QName::new(&table.schema, &name));
        Ok(())
    }

    pub(super) fn alter_table(&mut self, p: View) -> Result<(), SqlError> {
        let mut i = 2;
        i = p.opt(i, &["if", "exists"]);
        i += usize::from(p.is(i, "only"));
        let table_at = i;
        let (table, mut k) = rel_name(p, i).ok_or_else(|| p.err(i, "expected a table name"))?;
        k += usize::from(p.sym(k, "*"));
        const IGNORED: &[&str] = &[
            "owner", "enable", "disable", "force", "no", "replica", "cluster", "reset", "inherit",
            "of", "not", "attach", "detach", "validate",
        ];
        for a in p.from(k).parts() {
            if a.any(0, IGNORED) || (a.is(0, "set") && !a.is(1, "schema")) {
                continue;
            }
            if a.any(0, &["drop", "rename", "set"]) {
                let msg = format!(
                    "ALTER TABLE {table} {} ...: tables/ declares the end state; change the CREATE TABLE instead",
                    a.shown(0).to_ascii_uppercase()
                );
                return Err(a.err(0, msg));
            }
            if a.is(0, "add") {
                let e = a.from(1);
                if is_table_constraint(e) {
                    let line = e.line(0);
                    let Reader {
                        model, rels, cons, ..
                    } = self;
                    let msg = format!("table {table} is not declared in tables/");
                    let tbl = model
                        .tables
                        .get_mut(&table)
                        .ok_or_else(|| p.err(table_at, msg))?;
                    match table_constraint(e)? {
                        Ok(c) => add_constraints(tbl, rels, cons, vec![c])?,
                        Err(col) => {
                            let c = tbl.columns.iter_mut().find(|c| c.name == col);
                            let msg = format!("column {col} of table {table} is not declared");
                            c.ok_or_else(|| SqlError::new(line, msg))?.not_null = true;
                        }
                    }
                    continue;
                }
                let mut j = usize::from(e.is(0, "column"));
                j = e.opt(j, &["if", "not", "exists"]);
                self.add_column(e.from(j), &table, table_at, p)?;
                continue;
            }
            if a.is(0, "alter") {
                self.alter_column(a, &table, table_at, p)?;
                continue;
            }
            return Err(a.unexpected(0, "ALTER TABLE (supported: ADD, ALTER COLUMN, OWNER TO)"));
        }
        Ok(())
    }

    fn add_column(
        &mut self,
        e: View,
        table: &QName,
        table_at: usize,
        p: View,
    ) -> Result<(), SqlError> {
        let (mut col, pcons, serial) = column_def(e)?;
        self.table_mut(p, table_at, table)?;
        if self
            .model
            .tables
            .get(table)
            .is_some_and(|t| t.column(&col.name).is_some())
        {
            return Err(e.err(
                0,
                format!("column {} of table {table} is declared twice", col.name),
            ));
        }
        if let Some(ty) = serial {
            self.serial(table, &mut col, ty);
        }
        let Reader {
            model, rels, cons, ..
        } = self;
        if let Some(tbl) = model.tables.get_mut(table) {
            tbl.columns.push(col);
            add_constraints(tbl, rels, cons, pcons)?;
        }
        Ok(())
    }

    fn alter_column(
        &mut self,
        a: View,
        table: &QName,
        table_at: usize,
        p: View,
    ) -> Result<(), SqlError> {
        let j = 1 + usize::from(a.is(1, "column"));
        let name = a
            .ident(j)
            .ok_or_else(|| a.err(j, "expected a column name"))?;
        let k = j + 1;
        const IGNORED: &[&str] = &["statistics", "storage", "compression"];
        if (a.is(k, "set") && (a.any(k + 1, IGNORED) || a.sym(k + 1, "(")))
            || a.is(k, "reset")
            || a.is(k, "options")
        {
            return Ok(());
        }
        let tbl = self.table_mut(p, table_at, table)?;
        let col = tbl
            .columns
            .iter_mut()
            .find(|c| c.name == name)
            .ok_or_else(|| a.err(j, format!("column {name} of table {table} is not declared")))?;
        if a.is(k, "set") && a.is(k + 1, "default") {
            if k + 2 >= a.len() {
                return Err(a.err(k + 1, "expected an expression after SET DEFAULT"));
            }
            let d = normalized(a.from(k + 2), true);
            col.default = (d != "null" && !d.starts_with("null::")).then_some(d);
        } else if a.is(k, "drop") && a.is(k + 1, "default") {
            col.default = None;
        } else if a.is(k, "set") && a.is(k + 1, "not") && a.is(k + 2, "null") {
            col.not_null = true;
        } else if a.is(k, "add") && a.is(k + 1, "generated") {
            let end = generated(a, k + 1, col)?;
            if col.identity.is_none() {
                return Err(a.err(k + 1, "expected GENERATED ... AS IDENTITY"));
            }
            if end != a.len() {
                return Err(a.unexpected(end, "ALTER COLUMN ... ADD GENERATED"));
            }
        } else {
            let msg = format!(
                "ALTER TABLE {table} ALTER COLUMN {name} {}: not supported in tables/ (tables/ declares the end state; change the CREATE TABLE instead)",
                a.shown(k).to_ascii_uppercase()
            );
            return Err(a.err(k, msg));
        }
        Ok(())
    }
}
