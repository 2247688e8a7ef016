//! Type names as PostgreSQL's `format_type()` spells them: the SQL-standard
//! spellings (`double precision`, `character varying(20)`, `timestamp(3)
//! with time zone`, `interval day to second`), the internal aliases (`int4`,
//! `bpchar`, `float8`), arrays, user types with their schema, and `serial`
//! types as their integer type.

use super::expressions::normalized;
use crate::sql::lex::Kind;
use crate::sql::routines::INTERVAL_FIELDS;
use crate::sql::view::View;
use crate::table_model::ident;

/// A type name at `start`: (canonical spelling, the integer type when it is a `serial`, index
/// after the type).
pub(super) fn parse_type(p: View, start: usize) -> Option<(String, Option<&'static str>, usize)> {
    let quoted = |i: usize| p.get(i).is_some_and(|t| t.kind == Kind::QIdent);
    let mut parts = vec![(p.ident(start)?, quoted(start))];
    let mut i = start + 1;
    while p.sym(i, ".") && p.is_ident(i + 1) {
        parts.push((p.ident(i + 1)?, quoted(i + 1)));
        i += 2;
    }
    let (mut name, quoted) = parts.pop()?;
    let schema = parts.pop().map(|s| s.0);
    // SQL-standard spellings (keywords) only when unquoted and unqualified.
    let sql = !quoted && schema.is_none();
    let (mut tz, mut fields, mut mods) = (None, String::new(), None);
    let group = |i: usize| -> Option<(Vec<String>, usize)> {
        let c = p.close(i)?;
        let args = p.sub(i + 1, c).parts();
        let args = args.iter().map(|a| normalized(*a, false).replace(' ', ""));
        Some((args.collect(), c + 1))
    };
    if sql {
        match name.as_str() {
            "double" if p.is(i, "precision") => {
                name = "double precision".into();
                i += 1;
            }
            "national" if p.any(i, &["char", "character"]) => {
                i += 1;
                name = "character".into();
            }
            _ => {}
        }
        match name.as_str() {
            "character" | "char" | "nchar" => {
                name = if p.is(i, "varying") {
                    "varchar"
                } else {
                    "char"
                }
                .into();
                i += usize::from(p.is(i, "varying"));
            }
            "bit" if p.is(i, "varying") => {
                name = "varbit".into();
                i += 1;
            }
            "time" | "timestamp" => {
                if let Some((m, e)) = group(i) {
                    (mods, i) = (Some(m), e);
                }
                if p.any(i, &["with", "without"]) && p.is(i + 1, "time") && p.is(i + 2, "zone") {
                    tz = Some(p.is(i, "with"));
                    i += 3;
                }
            }
            "interval" if p.any(i, &INTERVAL_FIELDS) => {
                fields = format!(" {}", p.word(i));
                i += 1;
                if p.is(i, "to") && p.any(i + 1, &INTERVAL_FIELDS) {
                    fields.push_str(&format!(" to {}", p.word(i + 1)));
                    i += 2;
                }
            }
            _ => {}
        }
    }
    if mods.is_none() {
        if let Some((m, e)) = group(i) {
            (mods, i) = (Some(m), e);
        }
    }
    let mut array = false;
    loop {
        let j = i + usize::from(p.is(i, "array"));
        if p.sym(j, "[") {
            let close = (j..p.len()).find(|&k| p.sym(k, "]"))?;
            (i, array) = (close + 1, true);
        } else if j > i {
            (i, array) = (j, true);
        } else {
            break;
        }
    }
    let builtin = schema.is_none() || schema.as_deref() == Some("pg_catalog");
    let mapped = if builtin {
        builtin_type(&name, sql, mods.as_deref(), tz, &fields)
    } else {
        None
    };
    let (mut canon, serial) = match mapped {
        Some((c, serial)) => (c, serial.filter(|_| mods.is_none() && !array)),
        None => {
            let mut c = match schema.as_deref() {
                None | Some("public" | "pg_catalog") => ident(&name),
                Some(s) => format!("{}.{}", ident(s), ident(&name)),
            };
            if let Some(m) = &mods {
                c.push_str(&format!("({})", m.join(",")));
            }
            (c, None)
        }
    };
    if array {
        canon.push_str("[]");
    }
    Some((canon, serial, i))
}

/// format_type() spelling of a built-in type; `sql`: SQL-standard keyword spellings allowed.
pub(super) fn builtin_type(
    name: &str,
    sql: bool,
    mods: Option<&[String]>,
    tz: Option<bool>,
    fields: &str,
) -> Option<(String, Option<&'static str>)> {
    let with = |base: &str| match mods {
        Some(m) => format!("{base}({})", m.join(",")),
        None => base.to_string(),
    };
    let or_one = |base: &str| match mods {
        Some(m) => format!("{base}({})", m.join(",")),
        None => format!("{base}(1)"),
    };
    let zoned = |base: &str, zone: bool| {
        let p = mods
            .map(|m| format!("({})", m.join(",")))
            .unwrap_or_default();
        let z = if zone { "with" } else { "without" };
        format!("{base}{p} {z} time zone")
    };
    let plain = |s: &str| Some((s.to_string(), None));
    match name {
        "int" | "integer" if sql => plain("integer"),
        "int4" => plain("integer"),
        "smallint" if sql => plain("smallint"),
        "int2" => plain("smallint"),
        "bigint" if sql => plain("bigint"),
        "int8" => plain("bigint"),
        "real" if sql => plain("real"),
        "float4" => plain("real"),
        "double precision" | "float8" => plain("double precision"),
        "float" if sql => {
            let p: Option<i64> = mods.and_then(|m| m.first()).and_then(|x| x.parse().ok());
            plain(if p.is_some_and(|p| p <= 24) {
                "real"
            } else {
                "double precision"
            })
        }
        "decimal" | "dec" if sql => builtin_type("numeric", false, mods, tz, fields),
        "numeric" => match mods {
            Some([p]) => Some((format!("numeric({p},0)"), None)),
            _ => Some((with("numeric"), None)),
        },
        "boolean" if sql => plain("boolean"),
        "bool" => plain("boolean"),
        "varchar" => Some((with("character varying"), None)),
        "char" if sql => Some((or_one("character"), None)),
        "bpchar" => Some((mods.map_or("bpchar".into(), |_| with("character")), None)),
        "timestamp" => Some((zoned("timestamp", tz == Some(true)), None)),
        "timestamptz" => Some((zoned("timestamp", true), None)),
        "time" => Some((zoned("time", tz == Some(true)), None)),
        "timetz" => Some((zoned("time", true), None)),
        "interval" => Some((with(&format!("interval{fields}")), None)),
        "bit" if sql => Some((or_one("bit"), None)),
        "varbit" => Some((with("bit varying"), None)),
        "serial" | "serial4" if sql => Some(("integer".into(), Some("integer"))),
        "bigserial" | "serial8" if sql => Some(("bigint".into(), Some("bigint"))),
        "smallserial" | "serial2" if sql => Some(("smallint".into(), Some("smallint"))),
        _ => None,
    }
}
