//! Pure diff of table models: (desired, observed, previously declared) → an
//! ordered plan of classified [`Step`]s with their SQL. No I/O.
//!
//! Ownership: the gateway manages exactly what `tables/` declares. An object
//! declared now is created or altered until the database matches; an object
//! in the database that was declared at the last deployment (`previous`) but
//! is not declared any more is dropped; an object never declared is left
//! alone and never appears in the plan. Renames are not guessed.
//!
//! Phases, in order (each step is valid when the plan runs top to bottom):
//! 1. drop foreign keys that go, change, or are in the way (they point to a
//!    dropped table, a key that changes or a column whose type changes);
//! 2. drop other constraints and indexes that go or change;
//! 3. create/alter sequences; 4. create tables;
//! 5. column changes (add, drop identity, drop NOT NULL, type/collation,
//!    default, SET NOT NULL, identity);
//! 6. drop columns; 7. add PK/unique/check/exclude constraints and indexes;
//! 8. add foreign keys; 9. drop tables (referencing ones first);
//! 10. drop sequences; 11. `ALTER SEQUENCE ... OWNED BY`.

use std::collections::BTreeSet;
use stonescriptdb_shared::names::quote_literal;

use super::model::{
    ident, Change, Class, Column, Constraint, ConstraintKind, Identity, Index, Model, QName,
    Sequence, Step, Table,
};
use crate::sql::definition::{fk_referenced_columns, mentions, not_valid};

const DROP_FKS: usize = 0;
const DROP_KEYS: usize = 1;
const SEQUENCES: usize = 2;
const CREATE_TABLES: usize = 3;
const COLUMNS: usize = 4;
const DROP_COLUMNS: usize = 5;
const ADD_KEYS: usize = 6;
const ADD_FKS: usize = 7;
const DROP_TABLES: usize = 8;
const DROP_SEQUENCES: usize = 9;
const OWNERSHIP: usize = 10;
const PHASES: usize = 11;

/// Compare `desired` (what `tables/` declares now) with `observed` (the
/// database) given `previous` (what `tables/` declared at the last successful
/// deployment) and return the ordered, classified plan.
pub fn diff(desired: &Model, observed: &Model, previous: &Model) -> Vec<Step> {
    let mut differ = Differ {
        desired,
        observed,
        previous,
        dropped_tables: BTreeSet::new(),
        moved_columns: BTreeSet::new(),
        dropped_columns: BTreeSet::new(),
        rebuilt_columns: BTreeSet::new(),
        key_changed: BTreeSet::new(),
        phases: Default::default(),
    };
    differ.run();
    differ.phases.into_iter().flatten().collect()
}

/// Class of changing a column's type from `old` to `new` (canonical
/// `format_type` spellings), or None when they are the same type.
pub fn type_change(old: &str, new: &str) -> Option<Class> {
    let (o, n) = (norm(old), norm(new));
    if o == n {
        return None;
    }
    match (o.strip_suffix("[]"), n.strip_suffix("[]")) {
        (Some(oe), Some(ne)) => return type_change(oe, ne),
        (None, None) => {}
        _ => return Some(Class::Incompatible),
    }
    let (a, b) = (Ty::parse(&o), Ty::parse(&n));
    if a == b {
        None
    } else if widens(&a, &b) {
        Some(Class::Safe)
    } else if a.family().is_some() && a.family() == b.family() {
        Some(Class::Dataloss)
    } else {
        Some(Class::Incompatible)
    }
}

// ---------------------------------------------------------------------------
// Types

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ty {
    /// Width in bytes: 2, 4, 8.
    Int(u8),
    Numeric(Option<(i64, i64)>),
    Real,
    Double,
    Varchar(Option<i64>),
    Char(Option<i64>),
    Text,
    Date,
    Timestamp {
        tz: bool,
        precision: i64,
    },
    Time {
        tz: bool,
        precision: i64,
    },
    Json,
    Jsonb,
    Inet,
    Cidr,
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Number,
    String,
    DateTime,
    Time,
    Json,
    Network,
}

impl Ty {
    fn parse(s: &str) -> Ty {
        // One alias table for both sides: the DDL reader's.
        let n = super::reader::canonical_type(&norm(s));
        let l = n.to_ascii_lowercase();
        let simple = match l.as_str() {
            "smallint" | "int2" => Some(Ty::Int(2)),
            "integer" | "int" | "int4" => Some(Ty::Int(4)),
            "bigint" | "int8" => Some(Ty::Int(8)),
            "real" | "float4" => Some(Ty::Real),
            "double precision" | "float8" | "float" => Some(Ty::Double),
            "text" => Some(Ty::Text),
            "date" => Some(Ty::Date),
            "json" => Some(Ty::Json),
            "jsonb" => Some(Ty::Jsonb),
            "inet" => Some(Ty::Inet),
            "cidr" => Some(Ty::Cidr),
            "bpchar" => Some(Ty::Char(None)),
            "timestamptz" => Some(Ty::Timestamp {
                tz: true,
                precision: 6,
            }),
            "timetz" => Some(Ty::Time {
                tz: true,
                precision: 6,
            }),
            _ => None,
        };
        if let Some(t) = simple {
            return t;
        }
        for base in ["numeric", "decimal"] {
            if let Some((m, "")) = typmod(&l, base) {
                return match m.as_slice() {
                    [] => Ty::Numeric(None),
                    [p] => Ty::Numeric(Some((*p, 0))),
                    [p, s] => Ty::Numeric(Some((*p, *s))),
                    _ => Ty::Other(n),
                };
            }
        }
        for base in ["character varying", "varchar"] {
            if let Some((m, "")) = typmod(&l, base) {
                if m.len() <= 1 {
                    return Ty::Varchar(m.first().copied());
                }
            }
        }
        for base in ["character", "char"] {
            if let Some((m, "")) = typmod(&l, base) {
                if m.len() <= 1 {
                    return Ty::Char(Some(m.first().copied().unwrap_or(1)));
                }
            }
        }
        for (base, is_time) in [("timestamp", false), ("time", true)] {
            if let Some((m, rest)) = typmod(&l, base) {
                let tz = match rest {
                    "" | "without time zone" => Some(false),
                    "with time zone" => Some(true),
                    _ => None,
                };
                if let (Some(tz), true) = (tz, m.len() <= 1) {
                    let precision = m.first().copied().unwrap_or(6);
                    return if is_time {
                        Ty::Time { tz, precision }
                    } else {
                        Ty::Timestamp { tz, precision }
                    };
                }
            }
        }
        Ty::Other(n)
    }

    fn family(&self) -> Option<Family> {
        match self {
            Ty::Int(_) | Ty::Numeric(_) | Ty::Real | Ty::Double => Some(Family::Number),
            Ty::Varchar(_) | Ty::Char(_) | Ty::Text => Some(Family::String),
            Ty::Date | Ty::Timestamp { .. } => Some(Family::DateTime),
            Ty::Time { .. } => Some(Family::Time),
            Ty::Json | Ty::Jsonb => Some(Family::Json),
            Ty::Inet | Ty::Cidr => Some(Family::Network),
            Ty::Other(_) => None,
        }
    }
}

/// `base`, `base(n)` or `base(n,m)` followed by nothing or ` rest`: the
/// modifiers and the rest. None when `s` is not `base` (whole word).
fn typmod<'s>(s: &'s str, base: &str) -> Option<(Vec<i64>, &'s str)> {
    let rest = s.strip_prefix(base)?;
    let (mods, rest) = match rest.strip_prefix('(') {
        Some(inner) => {
            let close = inner.find(')')?;
            let mods = inner[..close]
                .split(',')
                .map(|p| p.trim().parse::<i64>().ok())
                .collect::<Option<Vec<i64>>>()?;
            (mods, &inner[close + 1..])
        }
        None => (Vec::new(), rest),
    };
    if rest.is_empty() {
        Some((mods, rest))
    } else {
        rest.strip_prefix(' ').map(|r| (mods, r.trim_start()))
    }
}

/// Decimal digits an integer type needs before the point.
fn int_digits(bytes: u8) -> i64 {
    match bytes {
        2 => 5,
        4 => 10,
        _ => 19,
    }
}

/// Does every value of `a` convert to `b` without loss?
fn widens(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Int(x), Ty::Int(y)) => y > x,
        (Ty::Int(_), Ty::Numeric(None)) => true,
        (Ty::Int(x), Ty::Numeric(Some((p, s)))) => p - s >= int_digits(*x),
        (Ty::Int(x), Ty::Double) => *x <= 4,
        (Ty::Int(x), Ty::Real) => *x <= 2,
        (Ty::Real, Ty::Double) => true,
        (Ty::Numeric(Some(_)), Ty::Numeric(None)) => true,
        (Ty::Numeric(Some((p, s))), Ty::Numeric(Some((p2, s2)))) => s2 >= s && p2 - s2 >= p - s,
        (Ty::Varchar(_), Ty::Varchar(None) | Ty::Text) => true,
        (Ty::Varchar(Some(n)), Ty::Varchar(Some(m))) => m >= n,
        (Ty::Char(_), Ty::Varchar(None) | Ty::Text | Ty::Char(None)) => true,
        (Ty::Char(Some(n)), Ty::Varchar(Some(m)) | Ty::Char(Some(m))) => m >= n,
        (Ty::Text, Ty::Varchar(None)) => true,
        (Ty::Date, Ty::Timestamp { .. }) => true,
        (
            Ty::Timestamp { tz, precision },
            Ty::Timestamp {
                tz: tz2,
                precision: p2,
            },
        )
        | (
            Ty::Time { tz, precision },
            Ty::Time {
                tz: tz2,
                precision: p2,
            },
        ) => p2 >= precision && (tz == tz2 || !tz),
        (Ty::Json, Ty::Jsonb) | (Ty::Jsonb, Ty::Json) => true,
        (Ty::Cidr, Ty::Inet) => true,
        _ => false,
    }
}

/// A type that is not built in (enum, domain, composite): casts between those
/// and other types go through text.
fn user_type(t: &str) -> bool {
    const BUILTIN: &[&str] = &[
        "boolean", "uuid", "bytea", "money", "interval", "tsvector", "tsquery", "xml", "oid",
        "macaddr", "macaddr8", "point", "line", "box", "circle", "polygon", "path", "lseg",
    ];
    let base = t.split('(').next().unwrap_or(t).trim();
    matches!(Ty::parse(t), Ty::Other(_)) && !BUILTIN.contains(&base) && !base.starts_with("bit")
}

/// The `USING` clause of a type change of column `c` (already quoted).
///
/// - Lengths: an explicit cast to `character varying(n)`, `character(n)` or
///   `bit(n)` silently truncates, the assignment cast PostgreSQL applies without
///   `USING` refuses values that do not fit; so no `USING` for those targets.
/// - Enums and other user types have no cast to each other: go through text.
/// - Scalar → array wraps the value (`ARRAY[c]`); array → scalar keeps the
///   first element (only ever applied under `force`).
fn conversion(c: &str, old: &str, new: &str, class: Class) -> String {
    let length_checked = ["character varying(", "character(", "bit(", "bit varying("]
        .iter()
        .any(|p| new.starts_with(p))
        && !new.ends_with("[]");
    match (old.strip_suffix("[]"), new.strip_suffix("[]")) {
        (None, Some(elem)) => return format!(" USING ARRAY[{c}::{elem}]"),
        (Some(_), None) => return format!(" USING ({c})[1]::{new}"),
        _ => {}
    }
    if length_checked && class != Class::Incompatible {
        return String::new();
    }
    if class == Class::Incompatible && (user_type(old) || user_type(new)) {
        return format!(" USING {c}::text::{new}");
    }
    format!(" USING {c}::{new}")
}

// ---------------------------------------------------------------------------
// Text helpers

/// Collapse whitespace runs to one space and trim.
fn norm(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn norm_opt(s: &Option<String>) -> Option<String> {
    s.as_deref().map(norm)
}

/// `'text'` as an SQL string literal.
fn identity_sql(kind: Identity) -> &'static str {
    match kind {
        Identity::Always => "ALWAYS",
        Identity::ByDefault => "BY DEFAULT",
    }
}

/// `name type [COLLATE c] [GENERATED ...] [DEFAULT e] [NOT NULL]`.
pub(crate) fn column_def(c: &Column) -> String {
    let mut s = format!("{} {}", ident(&c.name), c.data_type);
    if let Some(coll) = &c.collation {
        s.push_str(" COLLATE ");
        s.push_str(coll);
    }
    if let Some(kind) = c.identity {
        s.push_str(" GENERATED ");
        s.push_str(identity_sql(kind));
        s.push_str(" AS IDENTITY");
    } else if let Some(e) = &c.generated {
        s.push_str(&format!(" GENERATED ALWAYS AS ({e}) STORED"));
    } else if let Some(d) = &c.default {
        s.push_str(" DEFAULT ");
        s.push_str(d);
    }
    if c.not_null {
        s.push_str(" NOT NULL");
    }
    s
}

/// Options of `CREATE SEQUENCE` / `ALTER SEQUENCE` (without OWNED BY).
fn sequence_options(s: &Sequence, alter: bool) -> String {
    let mut o = format!("AS {} INCREMENT BY {}", s.data_type, s.increment);
    match s.min_value {
        Some(v) => o.push_str(&format!(" MINVALUE {v}")),
        None => o.push_str(" NO MINVALUE"),
    }
    match s.max_value {
        Some(v) => o.push_str(&format!(" MAXVALUE {v}")),
        None => o.push_str(" NO MAXVALUE"),
    }
    if let Some(v) = s.start {
        o.push_str(&format!(" START WITH {v}"));
    }
    o.push_str(&format!(" CACHE {}", s.cache));
    if s.cycle {
        o.push_str(" CYCLE");
    } else if alter {
        o.push_str(" NO CYCLE");
    }
    o
}

fn same_sequence_options(a: &Sequence, b: &Sequence) -> bool {
    type_change(&a.data_type, &b.data_type).is_none()
        && a.increment == b.increment
        && a.min_value == b.min_value
        && a.max_value == b.max_value
        && a.start == b.start
        && a.cache == b.cache
        && a.cycle == b.cycle
}

fn owned_by_sql(owner: &Option<(QName, String)>) -> String {
    match owner {
        Some((t, c)) => format!("{}.{}", t.sql(), ident(c)),
        None => "NONE".to_owned(),
    }
}

fn same_constraint(a: &Constraint, b: &Constraint) -> bool {
    a.kind == b.kind && norm(&a.definition) == norm(&b.definition)
}

fn same_index(a: &Index, b: &Index) -> bool {
    a.unique == b.unique && norm(&a.definition) == norm(&b.definition)
}

fn is_fk(c: &Constraint) -> bool {
    c.kind == ConstraintKind::ForeignKey
}

fn kind_name(kind: &ConstraintKind) -> &'static str {
    match kind {
        ConstraintKind::PrimaryKey => "primary key",
        ConstraintKind::Unique => "unique constraint",
        ConstraintKind::ForeignKey => "foreign key",
        ConstraintKind::Check => "check constraint",
        ConstraintKind::Exclude => "exclusion constraint",
    }
}

/// `ALTER TABLE t ADD CONSTRAINT n def`, as NOT VALID then VALIDATE for
/// CHECK and FOREIGN KEY (unless the definition itself says NOT VALID).
fn add_constraint_sql(t: &QName, c: &Constraint) -> Vec<String> {
    let head = format!("ALTER TABLE {} ADD CONSTRAINT {} ", t.sql(), ident(&c.name));
    let validatable = matches!(c.kind, ConstraintKind::Check | ConstraintKind::ForeignKey);
    if !validatable {
        return vec![format!("{head}{}", c.definition)];
    }
    if not_valid(&c.definition) {
        return vec![format!("{head}{}", c.definition)];
    }
    vec![
        format!("{head}{} NOT VALID", c.definition),
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            t.sql(),
            ident(&c.name)
        ),
    ]
}

fn drop_constraint_sql(t: &QName, name: &str) -> String {
    format!("ALTER TABLE {} DROP CONSTRAINT {}", t.sql(), ident(name))
}

fn drop_index_sql(t: &QName, name: &str) -> String {
    format!("DROP INDEX {}", QName::new(&t.schema, name).sql())
}

fn step(class: Class, object: String, reason: String, sql: Vec<String>) -> Step {
    Step {
        change: Change::Other,
        class,
        object,
        reason,
        sql,
    }
}

// ---------------------------------------------------------------------------
// The differ

struct Differ<'a> {
    desired: &'a Model,
    observed: &'a Model,
    previous: &'a Model,
    /// Tables in observed and previous, not in desired.
    dropped_tables: BTreeSet<QName>,
    /// Columns whose type changes, that are rebuilt or dropped: foreign keys
    /// on or to them are dropped first and re-added after.
    moved_columns: BTreeSet<(QName, String)>,
    dropped_columns: BTreeSet<(QName, String)>,
    /// Columns dropped and re-added (generated columns).
    rebuilt_columns: BTreeSet<(QName, String)>,
    /// Tables whose PRIMARY KEY / UNIQUE constraint or unique index is dropped.
    key_changed: BTreeSet<QName>,
    phases: [Vec<Step>; PHASES],
}

impl<'a> Differ<'a> {
    fn push(&mut self, phase: usize, s: Step) {
        self.phases[phase].push(s);
    }

    fn run(&mut self) {
        self.dropped_tables = self
            .observed
            .tables
            .keys()
            .filter(|t| {
                self.previous.tables.contains_key(*t) && !self.desired.tables.contains_key(*t)
            })
            .cloned()
            .collect();
        let empty = Table::default();
        let desired = self.desired;
        let observed = self.observed;
        for d in desired.tables.values() {
            match observed.tables.get(&d.name) {
                None => self.create_table(d),
                Some(o) => self.columns(d, o),
            }
        }
        for d in desired.tables.values() {
            self.keys(d, observed.tables.get(&d.name).unwrap_or(&empty));
        }
        for d in desired.tables.values() {
            self.foreign_keys(d, observed.tables.get(&d.name).unwrap_or(&empty));
        }
        self.drop_tables();
        self.sequences();
    }

    /// Sequences of the database that go with table `t` (column `col`, or any
    /// column when None) and are not declared any more.
    fn owned_sequences(&self, t: &QName, col: Option<&str>) -> Vec<String> {
        self.observed
            .sequences
            .values()
            .filter(|s| !self.desired.sequences.contains_key(&s.name))
            .filter(|s| {
                s.owned_by
                    .as_ref()
                    .is_some_and(|(ot, oc)| ot == t && (col.is_none() || col == Some(oc.as_str())))
            })
            .map(|s| s.name.to_string())
            .collect()
    }

    fn with_sequences(reason: String, seqs: &[String]) -> String {
        match seqs {
            [] => reason,
            [one] => format!("{reason}; its sequence {one} goes with it"),
            many => format!("{reason}; its sequences {} go with it", many.join(", ")),
        }
    }

    // -- tables and columns ------------------------------------------------

    fn create_table(&mut self, d: &Table) {
        let cols = d.columns.iter().map(column_def).collect::<Vec<_>>();
        let sql = format!("CREATE TABLE {} ({})", d.name.sql(), cols.join(", "));
        self.push(
            CREATE_TABLES,
            step(
                Class::Safe,
                d.name.to_string(),
                format!("{}: new table", d.name),
                vec![sql],
            )
            .made(Change::CreateTable),
        );
    }

    fn columns(&mut self, d: &Table, o: &Table) {
        let t = &d.name;
        for c in d.columns.iter().filter(|c| o.column(&c.name).is_none()) {
            self.add_column(t, c);
        }
        for c in &d.columns {
            if let Some(oc) = o.column(&c.name) {
                self.change_column(t, oc, c);
            }
        }
        let prev = self.previous.tables.get(t);
        for oc in &o.columns {
            let declared_before = prev.is_some_and(|p| p.column(&oc.name).is_some());
            if d.column(&oc.name).is_some() || !declared_before {
                continue;
            }
            let key = (t.clone(), oc.name.clone());
            self.dropped_columns.insert(key.clone());
            self.moved_columns.insert(key);
            let seqs = self.owned_sequences(t, Some(&oc.name));
            let reason = format!(
                "{t}.{}: column no longer declared in tables/ (its values are lost)",
                oc.name
            );
            self.push(
                DROP_COLUMNS,
                step(
                    Class::Dataloss,
                    format!("{t}.{}", oc.name),
                    Self::with_sequences(reason, &seqs),
                    vec![format!(
                        "ALTER TABLE {} DROP COLUMN {}",
                        t.sql(),
                        ident(&oc.name)
                    )],
                )
                .made(Change::DropColumn),
            );
        }
    }

    fn add_column(&mut self, t: &QName, c: &Column) {
        let obj = format!("{t}.{}", c.name);
        let (class, what) = if c.identity.is_some() {
            (Class::Safe, "new identity column")
        } else if c.generated.is_some() {
            (Class::Safe, "new generated column")
        } else if c.default.is_some() {
            (Class::Safe, "new column with a default")
        } else if !c.not_null {
            (Class::Safe, "new nullable column")
        } else {
            (
                Class::Dataloss,
                "new NOT NULL column without a default (existing rows have no value for it)",
            )
        };
        let sql = format!("ALTER TABLE {} ADD COLUMN {}", t.sql(), column_def(c));
        self.push(
            COLUMNS,
            step(class, obj.clone(), format!("{obj}: {what}"), vec![sql]).made(Change::AddColumn),
        );
    }

    fn change_column(&mut self, t: &QName, o: &Column, d: &Column) {
        let obj = format!("{t}.{}", d.name);
        let c = ident(&d.name);
        let alter = |what: &str| format!("ALTER TABLE {} ALTER COLUMN {c} {what}", t.sql());
        let type_class = type_change(&o.data_type, &d.data_type);

        // Generated columns: derived values are recomputed on re-add.
        let rebuild = match (&o.generated, &d.generated) {
            (Some(og), Some(dg)) => {
                if norm(og) != norm(dg) {
                    Some((Class::Safe, "generated expression changed"))
                } else if type_class.is_some() || o.collation != d.collation {
                    Some((Class::Safe, "generated column's type changes"))
                } else {
                    None
                }
            }
            (None, Some(_)) => Some((
                Class::Dataloss,
                "becomes a generated column (its stored values are replaced)",
            )),
            _ => None,
        };
        if let Some((class, why)) = rebuild {
            let key = (t.clone(), d.name.clone());
            self.rebuilt_columns.insert(key.clone());
            self.moved_columns.insert(key);
            let sql = vec![
                format!("ALTER TABLE {} DROP COLUMN {c}", t.sql()),
                format!("ALTER TABLE {} ADD COLUMN {}", t.sql(), column_def(d)),
            ];
            let reason = format!("{obj}: {why}; the column is dropped and re-added");
            self.push(COLUMNS, step(class, obj, reason, sql));
            return;
        }
        if o.generated.is_some() && d.generated.is_none() {
            self.push(
                COLUMNS,
                step(
                    Class::Safe,
                    obj.clone(),
                    format!("{obj}: no longer generated (stored values are kept)"),
                    vec![alter("DROP EXPRESSION")],
                ),
            );
        }

        if o.identity.is_some() && d.identity.is_none() {
            self.push(
                COLUMNS,
                step(
                    Class::Dataloss,
                    obj.clone(),
                    format!("{obj}: identity removed (its sequence and counter are dropped)"),
                    vec![alter("DROP IDENTITY")],
                ),
            );
        }
        if o.not_null && !d.not_null {
            self.push(
                COLUMNS,
                step(
                    Class::Safe,
                    obj.clone(),
                    format!("{obj}: NOT NULL dropped"),
                    vec![alter("DROP NOT NULL")],
                ),
            );
        }

        let mut default_done = false;
        if let Some(class) = type_class {
            self.moved_columns.insert((t.clone(), d.name.clone()));
            let mut sql = Vec::new();
            if o.default.is_some() || d.default.is_some() {
                sql.push(alter("DROP DEFAULT"));
            }
            let coll = d
                .collation
                .as_ref()
                .map(|x| format!(" COLLATE {x}"))
                .unwrap_or_default();
            let using = conversion(&c, &o.data_type, &d.data_type, class);
            sql.push(alter(&format!("TYPE {}{coll}{using}", d.data_type)));
            if let Some(e) = &d.default {
                sql.push(alter(&format!("SET DEFAULT {e}")));
            }
            default_done = true;
            let what = match class {
                Class::Safe => "widens values",
                Class::Dataloss => "narrows values",
                Class::Incompatible => "has no implicit conversion",
            };
            let reason = format!("{obj}: type {} → {} {what}", o.data_type, d.data_type);
            self.push(
                COLUMNS,
                step(class, obj.clone(), reason, sql).made(Change::ModifyType),
            );
        } else if o.collation != d.collation {
            let coll = d
                .collation
                .as_ref()
                .map(|x| format!(" COLLATE {x}"))
                .unwrap_or_default();
            let from = o.collation.as_deref().unwrap_or("default");
            let to = d.collation.as_deref().unwrap_or("default");
            self.push(
                COLUMNS,
                step(
                    Class::Safe,
                    obj.clone(),
                    format!("{obj}: collation {from} → {to}"),
                    vec![alter(&format!("TYPE {}{coll}", d.data_type))],
                ),
            );
        }

        if !default_done && norm_opt(&o.default) != norm_opt(&d.default) {
            let (sql, reason) = match (&o.default, &d.default) {
                (_, Some(e)) if o.default.is_none() => (
                    alter(&format!("SET DEFAULT {e}")),
                    format!("{obj}: default set to {e}"),
                ),
                (Some(old), Some(e)) => (
                    alter(&format!("SET DEFAULT {e}")),
                    format!("{obj}: default {old} → {e}"),
                ),
                _ => (alter("DROP DEFAULT"), format!("{obj}: default dropped")),
            };
            self.push(COLUMNS, step(Class::Safe, obj.clone(), reason, vec![sql]));
        }

        if !o.not_null && d.not_null {
            let fills = d.default.is_some() || d.identity.is_some() || d.generated.is_some();
            let (class, why) = match (o.has_nulls, fills) {
                (Some(false), true) => (Class::Safe, "no NULLs present and new rows get a value"),
                (Some(true), _) => (Class::Dataloss, "the column holds NULLs"),
                (_, false) => (Class::Dataloss, "the column has no default"),
                (None, true) => (Class::Dataloss, "whether the column holds NULLs is unknown"),
            };
            self.push(
                COLUMNS,
                step(
                    class,
                    obj.clone(),
                    format!("{obj}: SET NOT NULL ({why})"),
                    vec![alter("SET NOT NULL")],
                )
                .made(Change::SetNotNull),
            );
        }

        match (o.identity, d.identity) {
            (None, Some(kind)) => {
                let sync = format!(
                    "SELECT setval(pg_get_serial_sequence({}, {}), GREATEST(MAX({c}), 0) + 1, false) FROM {}",
                    quote_literal(&t.sql()),
                    quote_literal(&d.name),
                    t.sql()
                );
                self.push(
                    COLUMNS,
                    step(
                        Class::Safe,
                        obj.clone(),
                        format!("{obj}: becomes an identity column (counter starts after the largest value)"),
                        vec![
                            alter(&format!("ADD GENERATED {} AS IDENTITY", identity_sql(kind))),
                            sync,
                        ],
                    ),
                );
            }
            (Some(a), Some(b)) if a != b => {
                self.push(
                    COLUMNS,
                    step(
                        Class::Safe,
                        obj.clone(),
                        format!("{obj}: identity becomes GENERATED {}", identity_sql(b)),
                        vec![alter(&format!("SET GENERATED {}", identity_sql(b)))],
                    ),
                );
            }
            _ => {}
        }
    }

    // -- constraints and indexes -----------------------------------------

    /// Does a constraint or index of table `t` involve a rebuilt column?
    fn touches_rebuilt(&self, t: &QName, columns: &[String], definition: &str) -> bool {
        self.rebuilt_columns
            .iter()
            .filter(|(rt, _)| rt == t)
            .any(|(_, c)| columns.contains(c) || mentions(definition, c))
    }

    /// PRIMARY KEY, UNIQUE, CHECK, EXCLUDE constraints and indexes.
    fn keys(&mut self, d: &Table, o: &Table) {
        let t = &d.name;
        let prev = self.previous.tables.get(t);
        for oc in o.constraints.iter().filter(|c| !is_fk(c)) {
            let obj = format!("{t}.{}", oc.name);
            let reason = match d.constraint(&oc.name) {
                None if prev.is_some_and(|p| p.constraint(&oc.name).is_some()) => {
                    format!(
                        "{obj}: {} no longer declared in tables/",
                        kind_name(&oc.kind)
                    )
                }
                None => continue,
                Some(dc) if !same_constraint(oc, dc) => {
                    format!("{obj}: definition changed (dropped here, re-added after the column changes)")
                }
                Some(_) if self.touches_rebuilt(t, &oc.columns, &oc.definition) => {
                    format!("{obj}: involves a rebuilt column (dropped here, re-added after)")
                }
                Some(_) => continue,
            };
            if matches!(oc.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique) {
                self.key_changed.insert(t.clone());
            }
            self.push(
                DROP_KEYS,
                step(
                    Class::Safe,
                    obj,
                    reason,
                    vec![drop_constraint_sql(t, &oc.name)],
                ),
            );
        }
        for oi in &o.indexes {
            let obj = format!("{t}.{}", oi.name);
            let reason = match d.index(&oi.name) {
                None if prev.is_some_and(|p| p.index(&oi.name).is_some()) => {
                    format!("{obj}: index no longer declared in tables/")
                }
                None => continue,
                Some(di) if !same_index(oi, di) => {
                    format!("{obj}: definition changed (dropped here, re-added after the column changes)")
                }
                Some(_) if self.touches_rebuilt(t, &[], &oi.definition) => {
                    format!("{obj}: involves a rebuilt column (dropped here, re-added after)")
                }
                Some(_) => continue,
            };
            if oi.unique {
                self.key_changed.insert(t.clone());
            }
            self.push(
                DROP_KEYS,
                step(Class::Safe, obj, reason, vec![drop_index_sql(t, &oi.name)]),
            );
        }
        for dc in d.constraints.iter().filter(|c| !is_fk(c)) {
            let obj = format!("{t}.{}", dc.name);
            let reason = match o.constraint(&dc.name) {
                None => format!("{obj}: new {}", kind_name(&dc.kind)),
                Some(oc) if !same_constraint(oc, dc) => {
                    format!(
                        "{obj}: {} re-added with its new definition",
                        kind_name(&dc.kind)
                    )
                }
                Some(oc) if self.touches_rebuilt(t, &oc.columns, &oc.definition) => {
                    format!(
                        "{obj}: {} re-added after its column was rebuilt",
                        kind_name(&dc.kind)
                    )
                }
                Some(_) => continue,
            };
            self.push(
                ADD_KEYS,
                step(Class::Safe, obj, reason, add_constraint_sql(t, dc)),
            );
        }
        for di in &d.indexes {
            let obj = format!("{t}.{}", di.name);
            let reason = match o.index(&di.name) {
                None => format!("{obj}: new index"),
                Some(oi) if !same_index(oi, di) => {
                    format!("{obj}: index re-created with its new definition")
                }
                Some(oi) if self.touches_rebuilt(t, &[], &oi.definition) => {
                    format!("{obj}: index re-created after its column was rebuilt")
                }
                Some(_) => continue,
            };
            self.push(
                ADD_KEYS,
                step(Class::Safe, obj, reason, vec![di.definition.clone()]),
            );
        }
    }

    /// Why an existing foreign key must be dropped and re-added around the
    /// changes of this plan, if it must.
    fn fk_disturbed(&self, t: &QName, fk: &Constraint) -> Option<String> {
        if let Some(r) = &fk.references {
            if self.dropped_tables.contains(r) {
                return Some(format!("points to {r}, which is dropped"));
            }
            if self.key_changed.contains(r) {
                return Some(format!("a key of {r} it points to changes"));
            }
            let referenced = fk_referenced_columns(&fk.definition);
            for (mt, mc) in &self.moved_columns {
                let hit = mt == r
                    && match &referenced {
                        Some(cols) => cols.contains(mc),
                        None => true,
                    };
                if hit {
                    return Some(format!("{r}.{mc}, which it points to, changes"));
                }
            }
        }
        fk.columns
            .iter()
            .find(|c| self.moved_columns.contains(&(t.clone(), (*c).clone())))
            .map(|c| format!("its column {t}.{c} changes"))
    }

    fn foreign_keys(&mut self, d: &Table, o: &Table) {
        let t = &d.name;
        let prev = self.previous.tables.get(t);
        for oc in o.constraints.iter().filter(|c| is_fk(c)) {
            let obj = format!("{t}.{}", oc.name);
            let reason = match d.constraint(&oc.name) {
                None if prev.is_some_and(|p| p.constraint(&oc.name).is_some()) => {
                    format!("{obj}: foreign key no longer declared in tables/")
                }
                None => continue,
                Some(dc) if !same_constraint(oc, dc) => {
                    format!("{obj}: definition changed (dropped here, re-added at the end)")
                }
                Some(_) => match self.fk_disturbed(t, oc) {
                    Some(why) => format!("{obj}: {why} (dropped here, re-added at the end)"),
                    None => continue,
                },
            };
            self.push(
                DROP_FKS,
                step(
                    Class::Safe,
                    obj,
                    reason,
                    vec![drop_constraint_sql(t, &oc.name)],
                ),
            );
        }
        for dc in d.constraints.iter().filter(|c| is_fk(c)) {
            let obj = format!("{t}.{}", dc.name);
            let reason = match o.constraint(&dc.name) {
                None => format!("{obj}: new foreign key"),
                Some(oc) if !same_constraint(oc, dc) => {
                    format!("{obj}: foreign key re-added with its new definition")
                }
                Some(oc) => match self.fk_disturbed(t, oc) {
                    Some(why) => format!("{obj}: foreign key re-added ({why})"),
                    None => continue,
                },
            };
            self.push(
                ADD_FKS,
                step(Class::Safe, obj, reason, add_constraint_sql(t, dc)),
            );
        }
    }

    // -- drops of whole tables, sequences ---------------------------------

    /// Drop tables, referencing ones first; cycles among them are broken by
    /// dropping the foreign keys in phase 1.
    fn drop_tables(&mut self) {
        let observed = self.observed;
        let mut remaining = self.dropped_tables.clone();
        let mut broken: BTreeSet<(QName, String)> = BTreeSet::new();
        let refs = |u: &QName, target: &QName, broken: &BTreeSet<(QName, String)>| -> Vec<String> {
            observed
                .tables
                .get(u)
                .map(|tb| {
                    tb.constraints
                        .iter()
                        .filter(|c| is_fk(c) && c.references.as_ref() == Some(target))
                        .filter(|c| !broken.contains(&(u.clone(), c.name.clone())))
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        while let Some(first) = remaining.iter().next().cloned() {
            let next = remaining
                .iter()
                .find(|t| {
                    !remaining
                        .iter()
                        .any(|u| u != *t && !refs(u, t, &broken).is_empty())
                })
                .cloned();
            let t = match next {
                Some(t) => t,
                None => {
                    // A cycle: drop the foreign keys pointing to `first`.
                    for u in remaining.iter().filter(|u| **u != first) {
                        for name in refs(u, &first, &broken) {
                            let obj = format!("{u}.{name}");
                            self.phases[DROP_FKS].push(step(
                                Class::Safe,
                                obj.clone(),
                                format!("{obj}: dropped to break a cycle of foreign keys between dropped tables"),
                                vec![drop_constraint_sql(u, &name)],
                            ));
                            broken.insert((u.clone(), name));
                        }
                    }
                    first
                }
            };
            remaining.remove(&t);
            let seqs = self.owned_sequences(&t, None);
            let reason = format!("{t}: table no longer declared in tables/ (its rows are lost)");
            self.push(
                DROP_TABLES,
                step(
                    Class::Dataloss,
                    t.to_string(),
                    Self::with_sequences(reason, &seqs),
                    vec![format!("DROP TABLE {}", t.sql())],
                )
                .made(Change::DropTable),
            );
        }
    }

    /// Does the owner of a sequence disappear in this plan (which would take
    /// the sequence with it)?
    fn owner_goes(&self, owner: &Option<(QName, String)>) -> bool {
        owner.as_ref().is_some_and(|(t, c)| {
            let key = (t.clone(), c.clone());
            self.dropped_tables.contains(t)
                || self.dropped_columns.contains(&key)
                || self.rebuilt_columns.contains(&key)
        })
    }

    fn sequences(&mut self) {
        let (desired, observed, previous) = (self.desired, self.observed, self.previous);
        for (name, ds) in &desired.sequences {
            let obj = name.to_string();
            match observed.sequences.get(name) {
                None => {
                    self.push(
                        SEQUENCES,
                        step(
                            Class::Safe,
                            obj.clone(),
                            format!("{obj}: new sequence"),
                            vec![format!(
                                "CREATE SEQUENCE {} {}",
                                name.sql(),
                                sequence_options(ds, false)
                            )],
                        )
                        .made(Change::CreateSequence),
                    );
                    if ds.owned_by.is_some() {
                        self.owned_by_step(ds, OWNERSHIP);
                    }
                }
                Some(os) => {
                    if !same_sequence_options(os, ds) {
                        let class = match type_change(&os.data_type, &ds.data_type) {
                            Some(Class::Safe) | None => Class::Safe,
                            Some(_) => Class::Dataloss,
                        };
                        self.push(
                            SEQUENCES,
                            step(
                                class,
                                obj.clone(),
                                format!("{obj}: sequence options changed"),
                                vec![format!(
                                    "ALTER SEQUENCE {} {}",
                                    name.sql(),
                                    sequence_options(ds, true)
                                )],
                            ),
                        );
                    }
                    if os.owned_by != ds.owned_by {
                        if ds.owned_by.is_none() || self.owner_goes(&os.owned_by) {
                            let detached = Sequence {
                                owned_by: None,
                                ..ds.clone()
                            };
                            self.owned_by_step(&detached, SEQUENCES);
                        }
                        if ds.owned_by.is_some() {
                            self.owned_by_step(ds, OWNERSHIP);
                        }
                    }
                }
            }
        }
        for (name, os) in &observed.sequences {
            if desired.sequences.contains_key(name)
                || !previous.sequences.contains_key(name)
                || self.owner_goes(&os.owned_by)
            {
                continue;
            }
            let obj = name.to_string();
            self.push(
                DROP_SEQUENCES,
                step(
                    Class::Dataloss,
                    obj.clone(),
                    format!("{obj}: sequence no longer declared in tables/ (its counter is lost)"),
                    vec![format!("DROP SEQUENCE {}", name.sql())],
                ),
            );
        }
    }

    fn owned_by_step(&mut self, s: &Sequence, phase: usize) {
        let obj = s.name.to_string();
        let reason = match &s.owned_by {
            Some((t, c)) => format!("{obj}: owned by {t}.{c}"),
            None => format!("{obj}: no longer owned by a column"),
        };
        self.push(
            phase,
            step(
                Class::Safe,
                obj,
                reason,
                vec![format!(
                    "ALTER SEQUENCE {} OWNED BY {}",
                    s.name.sql(),
                    owned_by_sql(&s.owned_by)
                )],
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // -- builders ----------------------------------------------------------

    fn col(name: &str, ty: &str) -> Column {
        Column {
            name: name.to_owned(),
            data_type: ty.to_owned(),
            ..Column::default()
        }
    }

    trait ColExt {
        fn nn(self) -> Self;
        fn dflt(self, e: &str) -> Self;
        fn ident_(self, k: Identity) -> Self;
        fn generated(self, e: &str) -> Self;
        fn coll(self, c: &str) -> Self;
        fn nulls(self, b: bool) -> Self;
    }

    impl ColExt for Column {
        fn nn(mut self) -> Self {
            self.not_null = true;
            self
        }
        fn dflt(mut self, e: &str) -> Self {
            self.default = Some(e.to_owned());
            self
        }
        fn ident_(mut self, k: Identity) -> Self {
            self.identity = Some(k);
            self.not_null = true;
            self
        }
        fn generated(mut self, e: &str) -> Self {
            self.generated = Some(e.to_owned());
            self
        }
        fn coll(mut self, c: &str) -> Self {
            self.collation = Some(c.to_owned());
            self
        }
        fn nulls(mut self, b: bool) -> Self {
            self.has_nulls = Some(b);
            self
        }
    }

    fn table(name: &str, columns: Vec<Column>) -> Table {
        Table {
            name: QName::public(name),
            columns,
            ..Table::default()
        }
    }

    trait TableExt {
        fn con(self, name: &str, kind: ConstraintKind, cols: &[&str], def: &str) -> Self;
        fn pk(self, cols: &[&str]) -> Self;
        fn uniq(self, name: &str, cols: &[&str]) -> Self;
        fn check(self, name: &str, def: &str) -> Self;
        fn fk(self, name: &str, cols: &[&str], target: &str, tcols: &[&str]) -> Self;
        fn idx(self, name: &str, cols: &str) -> Self;
    }

    impl TableExt for Table {
        fn con(mut self, name: &str, kind: ConstraintKind, cols: &[&str], def: &str) -> Self {
            let references = if kind == ConstraintKind::ForeignKey {
                let r = def.split("REFERENCES ").nth(1).unwrap_or("");
                let r = r.split('(').next().unwrap_or("");
                Some(QName::public(r))
            } else {
                None
            };
            self.constraints.push(Constraint {
                name: name.to_owned(),
                kind,
                columns: cols.iter().map(|c| (*c).to_owned()).collect(),
                references,
                definition: def.to_owned(),
            });
            self.constraints.sort_by(|a, b| a.name.cmp(&b.name));
            self
        }
        fn pk(self, cols: &[&str]) -> Self {
            let name = format!("{}_pkey", self.name.name);
            let def = format!("PRIMARY KEY ({})", cols.join(", "));
            self.con(&name, ConstraintKind::PrimaryKey, cols, &def)
        }
        fn uniq(self, name: &str, cols: &[&str]) -> Self {
            let def = format!("UNIQUE ({})", cols.join(", "));
            self.con(name, ConstraintKind::Unique, cols, &def)
        }
        fn check(self, name: &str, def: &str) -> Self {
            self.con(name, ConstraintKind::Check, &[], def)
        }
        fn fk(self, name: &str, cols: &[&str], target: &str, tcols: &[&str]) -> Self {
            let def = format!(
                "FOREIGN KEY ({}) REFERENCES {target}({})",
                cols.join(", "),
                tcols.join(", ")
            );
            self.con(name, ConstraintKind::ForeignKey, cols, &def)
        }
        fn idx(mut self, name: &str, cols: &str) -> Self {
            let definition = format!(
                "CREATE INDEX {name} ON {} USING btree ({cols})",
                self.name.sql()
            );
            self.indexes.push(Index {
                name: name.to_owned(),
                unique: false,
                definition,
            });
            self.indexes.sort_by(|a, b| a.name.cmp(&b.name));
            self
        }
    }

    fn model(tables: Vec<Table>) -> Model {
        Model {
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
            sequences: Default::default(),
        }
    }

    fn seq(name: &str, owner: Option<(&str, &str)>) -> Sequence {
        Sequence {
            name: QName::public(name),
            data_type: "bigint".to_owned(),
            increment: 1,
            min_value: None,
            max_value: None,
            start: Some(1),
            cache: 1,
            cycle: false,
            owned_by: owner.map(|(t, c)| (QName::public(t), c.to_owned())),
        }
    }

    fn with_seqs(mut m: Model, seqs: Vec<Sequence>) -> Model {
        m.sequences = seqs.into_iter().map(|s| (s.name.clone(), s)).collect();
        m
    }

    fn one_col(ty_col: Column) -> Model {
        model(vec![table("t", vec![col("id", "integer").nn(), ty_col])])
    }

    /// Plan for a single table whose column `c` goes from `old` to `new`
    /// (both declared before).
    fn col_plan(old: Column, new: Column) -> Vec<Step> {
        let observed = one_col(old);
        diff(&one_col(new), &observed, &observed)
    }

    fn index_of(plan: &[Step], sql_part: &str) -> usize {
        plan.iter()
            .position(|s| s.sql.iter().any(|q| q.contains(sql_part)))
            .unwrap_or_else(|| panic!("no step with {sql_part:?} in {plan:#?}"))
    }

    fn only(plan: &[Step]) -> &Step {
        assert_eq!(plan.len(), 1, "{plan:#?}");
        &plan[0]
    }

    // -- type_change table ---------------------------------------------------

    fn tc(old: &str, new: &str) -> Option<Class> {
        type_change(old, new)
    }

    #[test]
    fn type_change_equal_is_none() {
        for t in [
            "integer",
            "numeric(10,2)",
            "character varying(20)",
            "timestamp with time zone",
            "integer[]",
            "mood",
            "public.\"Mood\"",
            "tsvector",
        ] {
            assert_eq!(tc(t, t), None, "{t}");
        }
        assert_eq!(tc("int4", "integer"), None);
        assert_eq!(tc("double  precision", "double precision"), None);
        assert_eq!(tc("timestamp", "timestamp without time zone"), None);
        assert_eq!(tc("timestamp(6) with time zone", "timestamptz"), None);
    }

    #[test]
    fn type_change_integer_widening_is_safe() {
        for (a, b) in [
            ("smallint", "integer"),
            ("smallint", "bigint"),
            ("integer", "bigint"),
            ("smallint", "numeric"),
            ("integer", "numeric"),
            ("bigint", "numeric"),
            ("smallint", "numeric(5,0)"),
            ("integer", "numeric(12,2)"),
            ("bigint", "numeric(21,2)"),
            ("smallint", "double precision"),
            ("integer", "double precision"),
            ("smallint", "real"),
            ("real", "double precision"),
        ] {
            assert_eq!(tc(a, b), Some(Class::Safe), "{a} → {b}");
        }
    }

    #[test]
    fn type_change_numeric_widening_is_safe() {
        for (a, b) in [
            ("numeric(10,2)", "numeric(12,2)"),
            ("numeric(10,2)", "numeric(11,3)"),
            ("numeric(10,2)", "numeric"),
            ("numeric(5)", "numeric(6,0)"),
        ] {
            assert_eq!(tc(a, b), Some(Class::Safe), "{a} → {b}");
        }
    }

    #[test]
    fn type_change_string_and_time_widening_is_safe() {
        for (a, b) in [
            ("character varying(20)", "character varying(40)"),
            ("character varying(20)", "character varying"),
            ("character varying(20)", "text"),
            ("character(3)", "character varying"),
            ("character(3)", "text"),
            ("character varying", "text"),
            ("text", "character varying"),
            ("timestamp without time zone", "timestamp with time zone"),
            ("date", "timestamp without time zone"),
            ("date", "timestamp with time zone"),
            ("time(3) without time zone", "time without time zone"),
            ("timestamp(0) with time zone", "timestamp(3) with time zone"),
            ("json", "jsonb"),
            ("jsonb", "json"),
            ("integer[]", "bigint[]"),
            ("character varying(5)[]", "text[]"),
        ] {
            assert_eq!(tc(a, b), Some(Class::Safe), "{a} → {b}");
        }
    }

    #[test]
    fn type_change_narrowing_is_dataloss() {
        for (a, b) in [
            ("bigint", "integer"),
            ("integer", "smallint"),
            ("double precision", "real"),
            ("numeric", "integer"),
            ("numeric(10,2)", "numeric(8,2)"),
            ("numeric(10,2)", "numeric(10,1)"),
            ("numeric", "numeric(10,2)"),
            ("integer", "numeric(5,2)"),
            ("double precision", "integer"),
            ("bigint", "double precision"),
            ("integer", "real"),
            ("character varying(40)", "character varying(20)"),
            ("text", "character varying(20)"),
            ("timestamp with time zone", "timestamp without time zone"),
            ("timestamp without time zone", "date"),
            (
                "timestamp(6) without time zone",
                "timestamp(0) without time zone",
            ),
            ("bigint[]", "integer[]"),
        ] {
            assert_eq!(tc(a, b), Some(Class::Dataloss), "{a} → {b}");
        }
    }

    #[test]
    fn type_change_across_families_is_incompatible() {
        for (a, b) in [
            ("integer", "text"),
            ("text", "integer"),
            ("boolean", "integer"),
            ("integer", "boolean"),
            ("uuid", "text"),
            ("text", "uuid"),
            ("mood", "text"),
            ("text", "mood"),
            ("mood", "other_mood"),
            ("positive_int", "integer"),
            ("integer[]", "integer"),
            ("text", "text[]"),
            ("date", "integer"),
            ("jsonb", "text"),
            ("integer[]", "text[]"),
        ] {
            assert_eq!(tc(a, b), Some(Class::Incompatible), "{a} → {b}");
        }
    }

    // -- identical models -----------------------------------------------------

    fn rich_model() -> Model {
        let customers = table(
            "customers",
            vec![
                col("id", "bigint").ident_(Identity::Always),
                col("email", "text").coll("\"C\"").nn(),
                col("active", "boolean").nn().dflt("true"),
                col("mood", "mood"),
                col("score", "double precision"),
                col("tags", "text[]"),
                col("amount", "numeric(10,2)").dflt("0"),
                col("seen", "timestamp with time zone").dflt("now()"),
                col("doc", "tsvector"),
                col("code", "positive_int"),
                col("upper_email", "text").generated("upper(email)"),
            ],
        )
        .pk(&["id"])
        .uniq("customers_email_key", &["email"])
        .check("customers_amount_check", "CHECK ((amount >= (0)::numeric))")
        .idx("customers_seen_idx", "seen");
        let orders = table(
            "orders",
            vec![
                col("id", "integer")
                    .nn()
                    .dflt("nextval('orders_id_seq'::regclass)"),
                col("customer_id", "bigint").nn(),
            ],
        )
        .pk(&["id"])
        .fk(
            "orders_customer_id_fkey",
            &["customer_id"],
            "customers",
            &["id"],
        );
        with_seqs(
            model(vec![customers, orders]),
            vec![seq("orders_id_seq", Some(("orders", "id")))],
        )
    }

    #[test]
    fn identical_models_give_an_empty_plan() {
        let m = rich_model();
        assert_eq!(diff(&m, &m, &m), vec![]);
        assert_eq!(diff(&m, &m, &Model::default()), vec![]);
    }

    #[test]
    fn whitespace_in_expressions_is_not_a_change() {
        let m = rich_model();
        let mut spaced = m.clone();
        for t in spaced.tables.values_mut() {
            for c in &mut t.constraints {
                c.definition = c.definition.replace(' ', "  ");
            }
            for c in &mut t.columns {
                c.default = c.default.as_ref().map(|d| format!(" {d}\n"));
            }
        }
        assert_eq!(diff(&spaced, &m, &m), vec![]);
    }

    #[test]
    fn create_from_scratch_matches_identical_after() {
        let m = rich_model();
        let plan = diff(&m, &Model::default(), &Model::default());
        assert!(plan.iter().all(|s| s.class == Class::Safe), "{plan:#?}");
        let seq = index_of(&plan, "CREATE SEQUENCE public.orders_id_seq");
        let orders = index_of(&plan, "CREATE TABLE public.orders");
        let fk = index_of(&plan, "ADD CONSTRAINT orders_customer_id_fkey");
        let pk = index_of(&plan, "ADD CONSTRAINT customers_pkey");
        let owned = index_of(&plan, "OWNED BY public.orders.id");
        assert!(seq < orders && orders < pk && pk < fk && fk < owned);
        assert_eq!(owned, plan.len() - 1);
    }

    // -- tables -------------------------------------------------------------

    #[test]
    fn new_table_sql() {
        let d = model(vec![table(
            "orders",
            vec![
                col("id", "bigint").ident_(Identity::ByDefault),
                col("note", "text").coll("\"C\""),
                col("qty", "integer").nn().dflt("1"),
                col("twice", "integer").generated("qty * 2"),
            ],
        )
        .pk(&["id"])]);
        let plan = diff(&d, &Model::default(), &Model::default());
        assert_eq!(plan.len(), 2, "{plan:#?}");
        assert_eq!(plan[0].object, "orders");
        assert_eq!(plan[0].reason, "orders: new table");
        assert_eq!(
            plan[0].sql,
            vec![
                "CREATE TABLE public.orders (id bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL, \
                 note text COLLATE \"C\", qty integer DEFAULT 1 NOT NULL, \
                 twice integer GENERATED ALWAYS AS (qty * 2) STORED)"
            ]
        );
        assert_eq!(
            plan[1].sql,
            vec!["ALTER TABLE public.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id)"]
        );
        assert_eq!(plan[1].object, "orders.orders_pkey");
    }

    #[test]
    fn new_table_with_serial_creates_sequence_first_and_owns_it_last() {
        let d = with_seqs(
            model(vec![table(
                "t",
                vec![col("id", "integer")
                    .nn()
                    .dflt("nextval('t_id_seq'::regclass)")],
            )]),
            vec![seq("t_id_seq", Some(("t", "id")))],
        );
        let plan = diff(&d, &Model::default(), &Model::default());
        let sql: Vec<&str> = plan
            .iter()
            .flat_map(|s| s.sql.iter().map(|q| q.as_str()))
            .collect();
        assert_eq!(
            sql,
            vec![
                "CREATE SEQUENCE public.t_id_seq AS bigint INCREMENT BY 1 NO MINVALUE NO MAXVALUE START WITH 1 CACHE 1",
                "CREATE TABLE public.t (id integer DEFAULT nextval('t_id_seq'::regclass) NOT NULL)",
                "ALTER SEQUENCE public.t_id_seq OWNED BY public.t.id",
            ]
        );
    }

    #[test]
    fn dropped_table_is_dataloss() {
        let legacy = model(vec![table("legacy", vec![col("id", "integer")])]);
        let plan = diff(&Model::default(), &legacy, &legacy);
        let s = only(&plan);
        assert_eq!(s.class, Class::Dataloss);
        assert_eq!(s.object, "legacy");
        assert_eq!(s.sql, vec!["DROP TABLE public.legacy"]);
        assert_eq!(
            s.reason,
            "legacy: table no longer declared in tables/ (its rows are lost)"
        );
    }

    #[test]
    fn undeclared_table_is_never_touched() {
        let observed = model(vec![table("theirs", vec![col("id", "integer")])]);
        assert_eq!(
            diff(&Model::default(), &observed, &Model::default()),
            vec![]
        );
    }

    #[test]
    fn previously_declared_but_already_gone_table_gives_nothing() {
        let prev = model(vec![table("gone", vec![col("id", "integer")])]);
        assert_eq!(diff(&Model::default(), &Model::default(), &prev), vec![]);
    }

    #[test]
    fn declared_table_missing_in_database_is_created() {
        let d = model(vec![table("t", vec![col("id", "integer")])]);
        let plan = diff(&d, &Model::default(), &d);
        assert_eq!(only(&plan).sql, vec!["CREATE TABLE public.t (id integer)"]);
    }

    #[test]
    fn dropped_tables_referencing_ones_first_and_foreign_keys_pointing_to_them_first() {
        let parent = table("a_parent", vec![col("id", "integer")]).pk(&["id"]);
        let child = table("b_child", vec![col("pid", "integer")]).fk(
            "b_child_pid_fkey",
            &["pid"],
            "a_parent",
            &["id"],
        );
        let keeper = table("keeper", vec![col("pid", "integer")]).fk(
            "keeper_pid_fkey",
            &["pid"],
            "a_parent",
            &["id"],
        );
        let observed = model(vec![parent, child, keeper.clone()]);
        let desired = model(vec![table("keeper", vec![col("pid", "integer")])]);
        let plan = diff(&desired, &observed, &observed);
        let fk = index_of(&plan, "DROP CONSTRAINT keeper_pid_fkey");
        let child_drop = index_of(&plan, "DROP TABLE public.b_child");
        let parent_drop = index_of(&plan, "DROP TABLE public.a_parent");
        assert!(fk < child_drop && child_drop < parent_drop, "{plan:#?}");
        assert_eq!(plan[fk].class, Class::Safe);
        assert_eq!(plan.len(), 3);
    }

    #[test]
    fn cycle_between_dropped_tables_is_broken() {
        let a = table("a", vec![col("id", "integer"), col("b", "integer")]).fk(
            "a_b_fkey",
            &["b"],
            "b",
            &["id"],
        );
        let b = table("b", vec![col("id", "integer"), col("a", "integer")]).fk(
            "b_a_fkey",
            &["a"],
            "a",
            &["id"],
        );
        let observed = model(vec![a, b]);
        let plan = diff(&Model::default(), &observed, &observed);
        let sql: Vec<&str> = plan
            .iter()
            .flat_map(|s| s.sql.iter().map(|q| q.as_str()))
            .collect();
        assert_eq!(
            sql,
            vec![
                "ALTER TABLE public.b DROP CONSTRAINT b_a_fkey",
                "DROP TABLE public.a",
                "DROP TABLE public.b",
            ]
        );
    }

    #[test]
    fn renamed_table_is_drop_plus_create() {
        let old = model(vec![table("old_name", vec![col("id", "integer")])]);
        let new = model(vec![table("new_name", vec![col("id", "integer")])]);
        let plan = diff(&new, &old, &old);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[0].sql,
            vec!["CREATE TABLE public.new_name (id integer)"]
        );
        assert_eq!(plan[1].sql, vec!["DROP TABLE public.old_name"]);
        assert_eq!(plan[1].class, Class::Dataloss);
    }

    // -- columns --------------------------------------------------------------

    fn add_plan(c: Column) -> Vec<Step> {
        let observed = model(vec![table("orders", vec![col("id", "integer")])]);
        let desired = model(vec![table("orders", vec![col("id", "integer"), c])]);
        diff(&desired, &observed, &observed)
    }

    #[test]
    fn add_nullable_column_is_safe() {
        let plan = add_plan(col("note", "text"));
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(s.object, "orders.note");
        assert_eq!(s.reason, "orders.note: new nullable column");
        assert_eq!(
            s.sql,
            vec!["ALTER TABLE public.orders ADD COLUMN note text"]
        );
    }

    #[test]
    fn add_column_with_default_identity_or_generated_is_safe() {
        for c in [
            col("qty", "integer").nn().dflt("0"),
            col("n", "bigint").ident_(Identity::Always),
            col("g", "integer").generated("id * 2"),
        ] {
            let plan = add_plan(c);
            assert_eq!(only(&plan).class, Class::Safe, "{plan:#?}");
        }
        let plan = add_plan(col("qty", "integer").nn().dflt("0"));
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.orders ADD COLUMN qty integer DEFAULT 0 NOT NULL"]
        );
    }

    #[test]
    fn add_not_null_column_without_default_is_dataloss() {
        let plan = add_plan(col("qty", "integer").nn());
        assert_eq!(only(&plan).class, Class::Dataloss);
    }

    #[test]
    fn drop_previously_declared_column_is_dataloss() {
        let observed = model(vec![table(
            "orders",
            vec![col("id", "integer"), col("old", "text")],
        )]);
        let desired = model(vec![table("orders", vec![col("id", "integer")])]);
        let plan = diff(&desired, &observed, &observed);
        let s = only(&plan);
        assert_eq!(s.class, Class::Dataloss);
        assert_eq!(s.object, "orders.old");
        assert_eq!(s.sql, vec!["ALTER TABLE public.orders DROP COLUMN old"]);
    }

    #[test]
    fn undeclared_column_is_never_dropped() {
        let observed = model(vec![table(
            "orders",
            vec![col("id", "integer"), col("theirs", "text")],
        )]);
        let desired = model(vec![table("orders", vec![col("id", "integer")])]);
        assert_eq!(diff(&desired, &observed, &desired), vec![]);
        assert_eq!(diff(&desired, &observed, &Model::default()), vec![]);
    }

    #[test]
    fn renamed_column_is_drop_plus_add() {
        let observed = model(vec![table("t", vec![col("a", "text")])]);
        let desired = model(vec![table("t", vec![col("b", "text")])]);
        let plan = diff(&desired, &observed, &observed);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].sql, vec!["ALTER TABLE public.t ADD COLUMN b text"]);
        assert_eq!(plan[1].sql, vec!["ALTER TABLE public.t DROP COLUMN a"]);
        // Not declared before: the old column is not ours.
        let plan = diff(&desired, &observed, &Model::default());
        assert_eq!(
            only(&plan).sql,
            vec!["ALTER TABLE public.t ADD COLUMN b text"]
        );
    }

    #[test]
    fn type_change_steps_classes_and_sql() {
        let plan = col_plan(col("total", "bigint"), col("total", "integer"));
        let s = only(&plan);
        assert_eq!(s.class, Class::Dataloss);
        assert_eq!(s.object, "t.total");
        assert_eq!(s.reason, "t.total: type bigint → integer narrows values");
        assert_eq!(
            s.sql,
            vec!["ALTER TABLE public.t ALTER COLUMN total TYPE integer USING total::integer"]
        );
        let plan = col_plan(col("total", "integer"), col("total", "bigint"));
        assert_eq!(only(&plan).class, Class::Safe);
        let plan = col_plan(col("total", "integer"), col("total", "text"));
        assert_eq!(only(&plan).class, Class::Incompatible);
        assert_eq!(
            plan[0].reason,
            "t.total: type integer → text has no implicit conversion"
        );
    }

    #[test]
    fn type_change_with_default_drops_and_resets_default_in_one_step() {
        let plan = col_plan(col("n", "integer").dflt("0"), col("n", "bigint").dflt("1"));
        assert_eq!(
            only(&plan).sql,
            vec![
                "ALTER TABLE public.t ALTER COLUMN n DROP DEFAULT",
                "ALTER TABLE public.t ALTER COLUMN n TYPE bigint USING n::bigint",
                "ALTER TABLE public.t ALTER COLUMN n SET DEFAULT 1",
            ]
        );
        let plan = col_plan(col("n", "integer").dflt("0"), col("n", "bigint"));
        assert_eq!(only(&plan).sql.len(), 2);
    }

    #[test]
    fn array_type_change_sql() {
        let plan = col_plan(col("xs", "integer[]"), col("xs", "bigint[]"));
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.sql,
            vec!["ALTER TABLE public.t ALTER COLUMN xs TYPE bigint[] USING xs::bigint[]"]
        );
    }

    #[test]
    fn collation_change_is_safe() {
        let plan = col_plan(col("s", "text"), col("s", "text").coll("\"C\""));
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.sql,
            vec!["ALTER TABLE public.t ALTER COLUMN s TYPE text COLLATE \"C\""]
        );
        let plan = col_plan(col("s", "text").coll("\"C\""), col("s", "text"));
        assert_eq!(
            only(&plan).sql,
            vec!["ALTER TABLE public.t ALTER COLUMN s TYPE text"]
        );
    }

    #[test]
    fn default_set_change_drop_are_safe() {
        let plan = col_plan(col("n", "integer"), col("n", "integer").dflt("0"));
        assert_eq!(only(&plan).class, Class::Safe);
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n SET DEFAULT 0"]
        );
        let plan = col_plan(col("n", "integer").dflt("0"), col("n", "integer").dflt("1"));
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n SET DEFAULT 1"]
        );
        assert_eq!(plan[0].reason, "t.n: default 0 → 1");
        let plan = col_plan(col("n", "integer").dflt("0"), col("n", "integer"));
        assert_eq!(only(&plan).class, Class::Safe);
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n DROP DEFAULT"]
        );
    }

    #[test]
    fn drop_not_null_is_safe() {
        let plan = col_plan(col("n", "integer").nn(), col("n", "integer"));
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n DROP NOT NULL"]
        );
    }

    #[test]
    fn set_not_null_is_safe_only_without_nulls_and_with_default() {
        let safe = col_plan(
            col("n", "integer").dflt("0").nulls(false),
            col("n", "integer").dflt("0").nn(),
        );
        assert_eq!(only(&safe).class, Class::Safe);
        assert_eq!(
            safe[0].sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n SET NOT NULL"]
        );
        for (old, new) in [
            (
                col("n", "integer").dflt("0").nulls(true),
                col("n", "integer").dflt("0").nn(),
            ),
            (
                col("n", "integer").dflt("0"),
                col("n", "integer").dflt("0").nn(),
            ),
            (col("n", "integer").nulls(false), col("n", "integer").nn()),
        ] {
            let plan = col_plan(old, new);
            assert_eq!(only(&plan).class, Class::Dataloss, "{plan:#?}");
        }
    }

    #[test]
    fn drop_not_null_before_type_change_set_not_null_after() {
        let plan = col_plan(col("a", "integer").nn(), col("a", "bigint"));
        assert_eq!(plan.len(), 2);
        assert!(index_of(&plan, "DROP NOT NULL") < index_of(&plan, "TYPE bigint"));
        let plan = col_plan(
            col("a", "integer").nulls(false).dflt("0"),
            col("a", "bigint").nn().dflt("0"),
        );
        assert!(index_of(&plan, "TYPE bigint") < index_of(&plan, "SET NOT NULL"));
    }

    #[test]
    fn identity_add_drop_and_set_generated() {
        let plan = col_plan(
            col("n", "bigint").nn().nulls(false),
            col("n", "bigint").ident_(Identity::Always),
        );
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.sql[0],
            "ALTER TABLE public.t ALTER COLUMN n ADD GENERATED ALWAYS AS IDENTITY"
        );
        assert!(s.sql[1].starts_with("SELECT setval(pg_get_serial_sequence('public.t', 'n')"));

        let plan = col_plan(
            col("n", "bigint").ident_(Identity::Always),
            col("n", "bigint").nn(),
        );
        assert_eq!(only(&plan).class, Class::Dataloss);
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n DROP IDENTITY"]
        );

        let plan = col_plan(
            col("n", "bigint").ident_(Identity::Always),
            col("n", "bigint").ident_(Identity::ByDefault),
        );
        assert_eq!(only(&plan).class, Class::Safe);
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.t ALTER COLUMN n SET GENERATED BY DEFAULT"]
        );
    }

    #[test]
    fn nullable_column_becoming_identity_sets_not_null_before_identity() {
        let plan = col_plan(
            col("n", "bigint").nulls(false),
            col("n", "bigint").ident_(Identity::Always),
        );
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].class, Class::Safe);
        assert!(index_of(&plan, "SET NOT NULL") < index_of(&plan, "ADD GENERATED"));
    }

    #[test]
    fn serial_to_identity_drops_default_then_sequence() {
        let old_col = col("id", "integer")
            .nn()
            .nulls(false)
            .dflt("nextval('t_id_seq'::regclass)");
        let observed = with_seqs(
            model(vec![table("t", vec![old_col])]),
            vec![seq("t_id_seq", Some(("t", "id")))],
        );
        let desired = model(vec![table(
            "t",
            vec![col("id", "integer").ident_(Identity::ByDefault)],
        )]);
        let plan = diff(&desired, &observed, &observed);
        let dd = index_of(&plan, "DROP DEFAULT");
        let add = index_of(&plan, "ADD GENERATED BY DEFAULT AS IDENTITY");
        let ds = index_of(&plan, "DROP SEQUENCE public.t_id_seq");
        assert!(dd < add && add < ds, "{plan:#?}");
        assert_eq!(plan[ds].class, Class::Dataloss);
    }

    #[test]
    fn generated_expression_change_rebuilds_column_and_its_index() {
        let old = table(
            "t",
            vec![
                col("a", "integer"),
                col("g", "integer").generated("(a * 2)"),
            ],
        )
        .idx("t_g_idx", "g");
        let new = table(
            "t",
            vec![
                col("a", "integer"),
                col("g", "integer").generated("(a * 3)"),
            ],
        )
        .idx("t_g_idx", "g");
        let observed = model(vec![old]);
        let plan = diff(&model(vec![new]), &observed, &observed);
        assert_eq!(plan.len(), 3, "{plan:#?}");
        assert_eq!(plan[0].sql, vec!["DROP INDEX public.t_g_idx"]);
        assert_eq!(
            plan[1].sql,
            vec![
                "ALTER TABLE public.t DROP COLUMN g",
                "ALTER TABLE public.t ADD COLUMN g integer GENERATED ALWAYS AS ((a * 3)) STORED",
            ]
        );
        assert_eq!(plan[1].class, Class::Safe);
        assert!(plan[2].sql[0].starts_with("CREATE INDEX t_g_idx"));
    }

    #[test]
    fn generated_to_plain_keeps_values() {
        let plan = col_plan(
            col("g", "integer").generated("(id * 2)"),
            col("g", "integer"),
        );
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.sql,
            vec!["ALTER TABLE public.t ALTER COLUMN g DROP EXPRESSION"]
        );
        let plan = col_plan(
            col("g", "integer"),
            col("g", "integer").generated("(id * 2)"),
        );
        assert_eq!(only(&plan).class, Class::Dataloss);
    }

    // -- constraints and indexes ---------------------------------------------

    fn key_plan(old: Table, new: Table, prev: Option<Table>) -> Vec<Step> {
        let observed = model(vec![old]);
        let previous = prev.map(|p| model(vec![p])).unwrap_or_default();
        diff(&model(vec![new]), &observed, &previous)
    }

    fn base() -> Table {
        table(
            "orders",
            vec![
                col("id", "integer").nn(),
                col("qty", "integer"),
                col("cid", "integer"),
            ],
        )
    }

    #[test]
    fn add_check_is_not_valid_then_validate() {
        let new = base().check("orders_qty_check", "CHECK ((qty > 0))");
        let plan = key_plan(base(), new, Some(base()));
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(s.object, "orders.orders_qty_check");
        assert_eq!(
            s.sql,
            vec![
                "ALTER TABLE public.orders ADD CONSTRAINT orders_qty_check CHECK ((qty > 0)) NOT VALID",
                "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_qty_check",
            ]
        );
    }

    #[test]
    fn add_primary_key_unique_and_index_are_safe() {
        let new = base()
            .pk(&["id"])
            .uniq("orders_cid_key", &["cid"])
            .idx("orders_qty_idx", "qty");
        let plan = key_plan(base(), new, None);
        assert_eq!(plan.len(), 3);
        assert!(plan.iter().all(|s| s.class == Class::Safe));
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.orders ADD CONSTRAINT orders_cid_key UNIQUE (cid)"]
        );
        assert_eq!(
            plan[1].sql,
            vec!["ALTER TABLE public.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id)"]
        );
        assert_eq!(
            plan[2].sql,
            vec!["CREATE INDEX orders_qty_idx ON public.orders USING btree (qty)"]
        );
    }

    #[test]
    fn undeclared_constraint_and_index_are_left_alone() {
        let old = base()
            .check("their_check", "CHECK ((qty > 0))")
            .idx("their_idx", "qty");
        assert_eq!(key_plan(old.clone(), base(), Some(base())), vec![]);
        assert_eq!(key_plan(old, base(), None), vec![]);
    }

    #[test]
    fn previously_declared_constraint_and_index_are_dropped_safely() {
        let old = base()
            .check("orders_qty_check", "CHECK ((qty > 0))")
            .idx("orders_qty_idx", "qty");
        let plan = key_plan(old.clone(), base(), Some(old));
        assert_eq!(plan.len(), 2);
        assert!(plan.iter().all(|s| s.class == Class::Safe));
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.orders DROP CONSTRAINT orders_qty_check"]
        );
        assert_eq!(plan[1].sql, vec!["DROP INDEX public.orders_qty_idx"]);
    }

    #[test]
    fn changed_check_is_dropped_before_type_change_and_re_added_after() {
        let old = base().check("orders_qty_check", "CHECK ((qty > 0))");
        let mut new = base().check("orders_qty_check", "CHECK ((qty > (0)::numeric))");
        new.columns[1].data_type = "numeric".to_owned();
        let plan = key_plan(old.clone(), new, Some(old));
        assert_eq!(plan.len(), 3, "{plan:#?}");
        let drop = index_of(&plan, "DROP CONSTRAINT orders_qty_check");
        let ty = index_of(&plan, "TYPE numeric");
        let add = index_of(&plan, "ADD CONSTRAINT orders_qty_check");
        assert!(drop < ty && ty < add);
        assert!(plan.iter().all(|s| s.class == Class::Safe));
    }

    #[test]
    fn changed_index_is_recreated() {
        let old = base().idx("orders_qty_idx", "qty");
        let new = base().idx("orders_qty_idx", "qty, cid");
        let plan = key_plan(old.clone(), new, Some(old));
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].sql, vec!["DROP INDEX public.orders_qty_idx"]);
        assert_eq!(
            plan[1].sql,
            vec!["CREATE INDEX orders_qty_idx ON public.orders USING btree (qty, cid)"]
        );
    }

    fn customers() -> Table {
        table("customers", vec![col("id", "integer").nn()]).pk(&["id"])
    }

    #[test]
    fn foreign_key_added_after_referenced_table_is_created() {
        let observed = model(vec![base()]);
        let desired = model(vec![
            customers(),
            base().fk("orders_cid_fkey", &["cid"], "customers", &["id"]),
        ]);
        let plan = diff(&desired, &observed, &observed);
        let create = index_of(&plan, "CREATE TABLE public.customers");
        let pk = index_of(&plan, "ADD CONSTRAINT customers_pkey");
        let fk = index_of(&plan, "ADD CONSTRAINT orders_cid_fkey");
        assert!(create < pk && pk < fk);
        assert_eq!(
            plan[fk].sql,
            vec![
                "ALTER TABLE public.orders ADD CONSTRAINT orders_cid_fkey FOREIGN KEY (cid) REFERENCES customers(id) NOT VALID",
                "ALTER TABLE public.orders VALIDATE CONSTRAINT orders_cid_fkey",
            ]
        );
    }

    #[test]
    fn foreign_key_to_type_changed_column_is_dropped_and_re_added() {
        let orders = base().fk("orders_cid_fkey", &["cid"], "customers", &["id"]);
        let observed = model(vec![customers(), orders.clone()]);
        let mut new_customers = customers();
        new_customers.columns[0].data_type = "bigint".to_owned();
        let mut new_orders = orders;
        new_orders.columns[2].data_type = "bigint".to_owned();
        let desired = model(vec![new_customers, new_orders]);
        let plan = diff(&desired, &observed, &observed);
        let drop = index_of(&plan, "DROP CONSTRAINT orders_cid_fkey");
        let t1 = index_of(&plan, "customers ALTER COLUMN id TYPE bigint");
        let t2 = index_of(&plan, "orders ALTER COLUMN cid TYPE bigint");
        let add = index_of(&plan, "ADD CONSTRAINT orders_cid_fkey");
        assert_eq!(drop, 0);
        assert!(drop < t1 && t1 < t2 && t2 < add, "{plan:#?}");
        assert_eq!(plan.len(), 4);
    }

    #[test]
    fn changed_and_removed_foreign_keys() {
        let old = base().fk("orders_cid_fkey", &["cid"], "customers", &["id"]);
        let mut changed = base().fk("orders_cid_fkey", &["cid"], "customers", &["id"]);
        changed.constraints[0]
            .definition
            .push_str(" ON DELETE CASCADE");
        let observed = model(vec![customers(), old.clone()]);
        let plan = diff(&model(vec![customers(), changed]), &observed, &observed);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE public.orders DROP CONSTRAINT orders_cid_fkey"]
        );
        assert!(plan[1].sql[0].ends_with("ON DELETE CASCADE NOT VALID"));

        let plan = diff(&model(vec![customers(), base()]), &observed, &observed);
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.reason,
            "orders.orders_cid_fkey: foreign key no longer declared in tables/"
        );
    }

    #[test]
    fn foreign_key_re_added_when_referenced_unique_key_changes() {
        let cust_old = table("customers", vec![col("id", "integer"), col("code", "text")])
            .uniq("customers_code_key", &["code"]);
        let cust_new = table("customers", vec![col("id", "integer"), col("code", "text")])
            .uniq("customers_code_key", &["code", "id"]);
        let orders = table("orders", vec![col("code", "text")]).fk(
            "orders_code_fkey",
            &["code"],
            "customers",
            &["code"],
        );
        let observed = model(vec![cust_old, orders.clone()]);
        let plan = diff(&model(vec![cust_new, orders]), &observed, &observed);
        let fk_drop = index_of(&plan, "DROP CONSTRAINT orders_code_fkey");
        let key_drop = index_of(&plan, "DROP CONSTRAINT customers_code_key");
        let key_add = index_of(&plan, "ADD CONSTRAINT customers_code_key");
        let fk_add = index_of(&plan, "ADD CONSTRAINT orders_code_fkey");
        assert!(fk_drop < key_drop && key_drop < key_add && key_add < fk_add);
    }

    // -- sequences --------------------------------------------------------------

    #[test]
    fn free_standing_sequences_follow_ownership() {
        let observed = with_seqs(
            Model::default(),
            vec![seq("mine", None), seq("theirs", None)],
        );
        let previous = with_seqs(Model::default(), vec![seq("mine", None)]);
        let plan = diff(&Model::default(), &observed, &previous);
        let s = only(&plan);
        assert_eq!(s.class, Class::Dataloss);
        assert_eq!(s.sql, vec!["DROP SEQUENCE public.mine"]);
    }

    #[test]
    fn sequence_owned_by_dropped_table_goes_with_it() {
        let observed = with_seqs(
            model(vec![table(
                "t",
                vec![col("id", "integer").dflt("nextval('t_id_seq'::regclass)")],
            )]),
            vec![seq("t_id_seq", Some(("t", "id")))],
        );
        let plan = diff(&Model::default(), &observed, &observed);
        let s = only(&plan);
        assert_eq!(s.sql, vec!["DROP TABLE public.t"]);
        assert!(s.reason.contains("t_id_seq"), "{}", s.reason);
    }

    #[test]
    fn sequence_options_change_is_altered() {
        let old = with_seqs(Model::default(), vec![seq("s", None)]);
        let mut changed = seq("s", None);
        changed.increment = 10;
        changed.cycle = false;
        let new = with_seqs(Model::default(), vec![changed]);
        let plan = diff(&new, &old, &old);
        let s = only(&plan);
        assert_eq!(s.class, Class::Safe);
        assert_eq!(
            s.sql,
            vec!["ALTER SEQUENCE public.s AS bigint INCREMENT BY 10 NO MINVALUE NO MAXVALUE START WITH 1 CACHE 1 NO CYCLE"]
        );
    }

    // -- naming, determinism --------------------------------------------------------

    #[test]
    fn quoted_and_schema_qualified_names() {
        let t = Table {
            name: QName::new("Sales", "Order"),
            columns: vec![col("User", "integer")],
            ..Table::default()
        };
        let observed = Model {
            tables: [(t.name.clone(), t.clone())].into_iter().collect(),
            sequences: Default::default(),
        };
        let mut t2 = t.clone();
        t2.columns.push(col("select", "text"));
        t2.columns[0].data_type = "bigint".to_owned();
        let desired = Model {
            tables: [(t2.name.clone(), t2)].into_iter().collect(),
            sequences: Default::default(),
        };
        let plan = diff(&desired, &observed, &observed);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[0].sql,
            vec!["ALTER TABLE \"Sales\".\"Order\" ADD COLUMN \"select\" text"]
        );
        assert_eq!(plan[0].object, "Sales.Order.select");
        assert_eq!(
            plan[1].sql,
            vec!["ALTER TABLE \"Sales\".\"Order\" ALTER COLUMN \"User\" TYPE bigint USING \"User\"::bigint"]
        );
    }

    #[test]
    fn plan_is_deterministic_and_phase_ordered() {
        let observed = rich_model();
        let mut desired = rich_model();
        desired.tables.remove(&QName::public("orders"));
        if let Some(c) = desired.tables.get_mut(&QName::public("customers")) {
            c.columns[4].data_type = "real".to_owned();
            c.columns.push(col("extra", "text"));
            c.indexes.clear();
        }
        let a = diff(&desired, &observed, &observed);
        let b = diff(&desired, &observed, &observed);
        assert_eq!(a, b);
        let idx = index_of(&a, "DROP INDEX public.customers_seen_idx");
        let add = index_of(&a, "ADD COLUMN extra");
        let ty = index_of(&a, "TYPE real");
        let drop = index_of(&a, "DROP TABLE public.orders");
        assert!(idx < add && add < ty && ty < drop, "{a:#?}");
        assert_eq!(a.len(), 4);
        // The FK sits on the dropped table: it goes with the table.
        assert!(a
            .iter()
            .all(|s| !s.object.contains("orders_customer_id_fkey")));
        assert_eq!(a[ty].class, Class::Dataloss);
        // The serial's sequence goes with its table.
        assert!(a
            .iter()
            .all(|s| !s.sql.iter().any(|q| q.contains("DROP SEQUENCE"))));
    }

    #[test]
    fn helpers() {
        assert!(mentions("CHECK ((qty > 0))", "qty"));
        assert!(!mentions("CHECK ((quantity > 0))", "qty"));
        assert!(!mentions("CHECK ((note <> 'qty'))", "qty"));
        assert!(mentions("CHECK ((\"Qty\" > 0))", "Qty"));
        assert_eq!(
            fk_referenced_columns("FOREIGN KEY (a, b) REFERENCES t(x, \"Y\") ON DELETE CASCADE"),
            Some(vec!["x".to_owned(), "Y".to_owned()])
        );
        assert_eq!(fk_referenced_columns("CHECK (true)"), None);
    }
}
