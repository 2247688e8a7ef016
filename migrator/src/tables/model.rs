//! The table model shared by the DDL reader (`reader`), the catalog reader
//! (`tables::introspect`) and the differ (`tables::diff`): tables with their
//! columns, constraints and indexes, free-standing sequences, and the steps a
//! diff plans. It uses no other module, so the reader and the differ can both
//! use it.
//!
//! Conventions, which every producer of a `Model` follows so that equal
//! schemas give equal models:
//! - Names are stored as PostgreSQL stores them: unquoted identifiers folded to
//!   lower case, quoted ones verbatim, without quotes. A missing schema is
//!   `public`.
//! - `Column::data_type` is the canonical spelling of `format_type()`:
//!   `integer`, `bigint`, `character varying(20)`, `numeric(10,2)`,
//!   `timestamp with time zone`, `integer[]`, user types by name (qualified
//!   only when not in `public`, quoted only when they need it).
//! - Expressions (defaults, checks, index definitions) are text. Models read
//!   from the catalog carry PostgreSQL's own rendering (`pg_get_expr`,
//!   `pg_get_constraintdef`, `pg_get_indexdef`); models read from DDL carry a
//!   whitespace/keyword-case normalized rendering of the source text. The
//!   deployment always compares two catalog-rendered models (the desired side is
//!   created in a scratch schema inside a rolled-back savepoint, see
//!   `normalize`), so expression texts compare exactly.
//! - Constraint and index names are always present: unnamed ones get the name
//!   PostgreSQL would choose (`t_pkey`, `t_a_key`, `t_a_fkey`, `t_a_check`,
//!   `t_a_idx`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A schema-qualified name.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QName {
    pub schema: String,
    pub name: String,
}

impl QName {
    pub fn new(schema: &str, name: &str) -> QName {
        QName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        }
    }

    #[cfg(test)]
    pub fn public(name: &str) -> QName {
        QName::new("public", name)
    }

    /// `schema.name`, each part quoted when needed (for SQL).
    pub fn sql(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

impl fmt::Display for QName {
    /// `name` for `public`, else `schema.name` (for messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.schema == "public" {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}.{}", self.schema, self.name)
        }
    }
}

pub use crate::sql::ident;

/// Every table and free-standing sequence of the gateway-managed part of a
/// database (or of a `tables/` folder).
/// Not serialized as a whole (JSON map keys must be strings): the deployment
/// records each `Table` and `Sequence` on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub tables: BTreeMap<QName, Table>,
    /// Sequences that are not an identity column's internal sequence. A
    /// `serial` column's sequence is here too, with `owned_by` set.
    pub sequences: BTreeMap<QName, Sequence>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    pub name: QName,
    /// In declaration (attnum) order.
    pub columns: Vec<Column>,
    /// PRIMARY KEY, UNIQUE, FOREIGN KEY and CHECK constraints (NOT NULL is
    /// `Column::not_null`), in name order.
    pub constraints: Vec<Constraint>,
    /// Indexes that do not belong to a constraint, in name order.
    pub indexes: Vec<Index>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn constraint(&self, name: &str) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.name == name)
    }
    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|c| c.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    Always,
    ByDefault,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// Canonical type, see the module docs. `serial` is `integer` with a
    /// `nextval(...)` default and an owned sequence.
    pub data_type: String,
    /// Explicit collation when it is not the type's default (`"C"`, `"en_US"`),
    /// as `format`ed by PostgreSQL (quoted when needed).
    pub collation: Option<String>,
    pub not_null: bool,
    /// Default expression; None for none (also for identity columns).
    pub default: Option<String>,
    pub identity: Option<Identity>,
    /// Expression of a `GENERATED ALWAYS AS (...) STORED` column.
    pub generated: Option<String>,
    /// Observed side only: does the column hold NULLs? Filled in by the
    /// catalog reader for nullable columns the desired model wants NOT NULL;
    /// None when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_nulls: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKind {
    PrimaryKey,
    Unique,
    ForeignKey,
    Check,
    Exclude,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub name: String,
    pub kind: ConstraintKind,
    /// Columns of the constraint (key columns; for a CHECK the columns it
    /// mentions when known, may be empty).
    pub columns: Vec<String>,
    /// For a FOREIGN KEY: the referenced table.
    pub references: Option<QName>,
    /// The definition as `pg_get_constraintdef` writes it, without the name:
    /// `PRIMARY KEY (id)`, `FOREIGN KEY (a) REFERENCES t(id) ON DELETE CASCADE`,
    /// `CHECK ((price > (0)::numeric))`. Referenced tables are written as
    /// seen from `search_path = public`.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    /// `CREATE [UNIQUE] INDEX name ON schema.table USING method (...) [INCLUDE
    /// (...)] [WHERE ...]` as `pg_get_indexdef` writes it, table qualified.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub name: QName,
    /// `bigint` unless declared otherwise.
    pub data_type: String,
    pub increment: i64,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub start: Option<i64>,
    pub cache: i64,
    pub cycle: bool,
    /// `(table, column)` for `OWNED BY` / serial columns.
    pub owned_by: Option<(QName, String)>,
}

/// Default bounds of a sequence of `data_type` ascending or descending:
/// (min, max).
fn sequence_bounds(data_type: &str, ascending: bool) -> (i64, i64) {
    let max = match data_type {
        "smallint" => i64::from(i16::MAX),
        "integer" => i64::from(i32::MAX),
        _ => i64::MAX,
    };
    let min = match data_type {
        "smallint" => i64::from(i16::MIN),
        "integer" => i64::from(i32::MIN),
        _ => i64::MIN,
    };
    if ascending {
        (1, max)
    } else {
        (min, -1)
    }
}

impl Sequence {
    /// Options equal to their defaults become None, the way the DDL reader
    /// leaves options that are not written: both readers give the same
    /// sequence whether an option is spelled out or left to its default.
    pub fn without_defaults(mut s: Sequence) -> Sequence {
        let ascending = s.increment > 0;
        let (dmin, dmax) = sequence_bounds(&s.data_type, ascending);
        let (min, max) = (s.min_value.unwrap_or(dmin), s.max_value.unwrap_or(dmax));
        let default_start = if ascending { min } else { max };
        if s.start == Some(default_start) {
            s.start = None;
        }
        if s.min_value == Some(dmin) {
            s.min_value = None;
        }
        if s.max_value == Some(dmax) {
            s.max_value = None;
        }
        s
    }
}

use stonescriptdb_shared::wire::AllowClass;
/// How a change affects the data already in the database (docs/SCHEMA.md):
/// the wire's enum, so plans and reports carry it typed.
pub use stonescriptdb_shared::wire::ChangeClass as Class;

/// What a step of a plan does, where the deployment treats it specially
/// (what a pending migration makes itself, what is made before the
/// migrations, what is tightened after them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    CreateTable,
    DropTable,
    AddColumn,
    DropColumn,
    /// A column's type changes (ALTER COLUMN … TYPE).
    ModifyType,
    SetNotNull,
    CreateSequence,
    #[default]
    Other,
}

/// One step of a plan: a change, its class, why, and the SQL that makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    #[serde(default)]
    pub change: Change,
    pub class: Class,
    /// The object changed: `orders`, `orders.total`, `orders.orders_total_check`.
    pub object: String,
    /// A sentence for people: `orders.total: bigint → integer narrows the type`.
    pub reason: String,
    /// Statements, in order, without trailing `;`.
    pub sql: Vec<String>,
}

impl Step {
    /// The step, saying what it does.
    pub fn made(self, change: Change) -> Step {
        Step { change, ..self }
    }

    /// The `allow` class that lets this step through when it is not safe;
    /// None for a safe step and for one only `force` lets through
    /// (sequences, identity, constraints, …).
    pub fn allow_class(&self) -> Option<AllowClass> {
        if self.class == Class::Safe {
            return None;
        }
        match self.change {
            Change::DropTable => Some(AllowClass::DropTable),
            Change::DropColumn => Some(AllowClass::DropColumn),
            Change::ModifyType => Some(AllowClass::ModifyColumnType),
            Change::AddColumn => Some(AllowClass::AddNotNullColumn),
            Change::SetNotNull => Some(AllowClass::SetNotNull),
            Change::CreateTable | Change::CreateSequence | Change::Other => None,
        }
    }
}
