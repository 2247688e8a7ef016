//! What a `types/` statement creates: enum (with labels), composite, domain
//! or another type.

use super::error::SqlError;
use super::lex::{sig_tokens, Kind};
use super::statement::read_one;
use super::view::{split_name, string_value, View};

/// What a `types/` statement creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeDef {
    /// `CREATE TYPE name AS ENUM (...)`; labels unescaped (`'it''s'` -> `it's`).
    Enum {
        schema: Option<String>,
        name: String,
        labels: Vec<String>,
    },
    /// `CREATE TYPE name AS (...)`.
    Composite {
        schema: Option<String>,
        name: String,
    },
    /// `CREATE DOMAIN name [AS] ...`.
    Domain {
        schema: Option<String>,
        name: String,
    },
    /// `CREATE TYPE name AS RANGE (...)`, `CREATE TYPE name (INPUT = ...)`, shell `CREATE TYPE x`.
    Other {
        schema: Option<String>,
        name: String,
    },
}

/// Parse `CREATE TYPE name AS ENUM (...)`, `CREATE TYPE name AS (...)`,
/// `CREATE TYPE name AS RANGE (...)`, `CREATE TYPE name (...)`, `CREATE TYPE name` and
/// `CREATE DOMAIN name ...`. Error if the statement is none of these.
pub fn parse_type(stmt: &str) -> Result<TypeDef, SqlError> {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let domain = v.is(1, "domain");
    if !v.is(0, "create") || !(domain || v.is(1, "type")) {
        return Err(SqlError::new(
            1,
            "not a CREATE TYPE or CREATE DOMAIN statement",
        ));
    }
    let err = |i: usize, m: &str| v.err(i, m);
    let i = v.opt(2, &["if", "not", "exists"]);
    let (parts, k) = v.qname(i).ok_or_else(|| err(i, "expected a type name"))?;
    let (schema, name) = split_name(parts);
    if domain {
        return Ok(TypeDef::Domain { schema, name });
    }
    if v.is(k, "as") && v.is(k + 1, "enum") {
        let close = Some(k + 2)
            .filter(|&o| v.sym(o, "("))
            .and_then(|o| v.close(o))
            .ok_or_else(|| err(k + 2, "expected a parenthesized label list after AS ENUM"))?;
        let labels = v
            .sub(k + 3, close)
            .t
            .iter()
            .filter(|x| matches!(x.kind, Kind::Str | Kind::EStr));
        let labels = labels.map(|x| string_value(stmt, x)).collect();
        return Ok(TypeDef::Enum {
            schema,
            name,
            labels,
        });
    }
    if v.is(k, "as") && v.sym(k + 1, "(") {
        return Ok(TypeDef::Composite { schema, name });
    }
    if (v.is(k, "as") && v.is(k + 1, "range")) || v.sym(k, "(") || v.sym(k, ";") || k >= v.len() {
        return Ok(TypeDef::Other { schema, name });
    }
    Err(err(k, "unsupported CREATE TYPE form"))
}
