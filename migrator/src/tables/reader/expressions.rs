//! Expressions (defaults, checks, generated columns, index elements and
//! predicates) as normalized text: canonical spacing and case, type names
//! after `::` canonical, regclass literals as PostgreSQL writes them from
//! `search_path = public`; and the identifiers an expression mentions.
//!
//! Type names, here because the two read each other: an expression casts to
//! a type, and a type's modifiers are expressions. Type names as
//! PostgreSQL's `format_type()` spells them: the SQL-standard spellings
//! (`double precision`, `character varying(20)`, `timestamp(3) with time
//! zone`, `interval day to second`), the internal aliases (`int4`, `bpchar`,
//! `float8`), arrays, user types with their schema, and `serial` types as
//! their integer type.

use stonescriptdb_shared::names::quote_literal;

use super::names::rel_name;
use crate::sql::lex::{sig_tokens, Kind, Tok};
use crate::sql::routines::INTERVAL_FIELDS;
use crate::sql::view::{string_value, View};
use crate::tables::model::{ident, QName};

/// Words after which `(` is not a function call and a `-`/`+` is unary.
pub(super) const KEYWORDS: &[&str] = &[
    "all", "and", "any", "as", "between", "case", "check", "default", "distinct", "else", "exists",
    "filter", "from", "ilike", "in", "is", "like", "not", "on", "or", "over", "return", "select",
    "similar", "some", "then", "using", "values", "when", "where", "with", "within",
];

/// `schema.name` for a regclass literal, as regclass output writes it from `search_path = public`.
pub(super) fn regclass_text(q: &QName) -> String {
    if q.schema == "public" {
        ident(&q.name)
    } else {
        format!("{}.{}", ident(&q.schema), ident(&q.name))
    }
}

/// The relation named by a regclass string (`'public.t_id_seq'`, `'"T_seq"'`), normalized.
pub(super) fn regclass_literal(body: &str) -> Option<String> {
    let toks = sig_tokens(body);
    let p = View::new(body, &toks);
    let (q, end) = rel_name(p, 0)?;
    (end == toks.len()).then(|| quote_literal(&regclass_text(&q)))
}

/// Value of a plain `'...'` literal (None for `E''` and other prefixed strings).
pub(super) fn plain_string(src: &str, t: &Tok) -> Option<String> {
    let plain = t.kind == Kind::Str && t.text(src).starts_with('\'');
    plain.then(|| string_value(src, t))
}

/// Would this identifier read the same unquoted? (Like `ident`, but non-ASCII letters, which
/// PostgreSQL does not fold, need no quotes: `"größe"` is `größe`.)
pub(super) fn plain_word(v: &str) -> bool {
    let ascii: String = v
        .chars()
        .map(|c| if c.is_ascii() { c } else { 'a' })
        .collect();
    !ident(&ascii).starts_with('"')
}

/// Tokens rewritten to their normalized text: (kind, text).
pub(super) fn norm_pieces(p: View) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = Vec::new();
    let mut i = 0;
    while let Some(tok) = p.get(i) {
        let s = tok.text(p.src);
        i += 1;
        let piece = match tok.kind {
            Kind::Word | Kind::Number => (tok.kind, s.to_ascii_lowercase()),
            Kind::QIdent if s.starts_with('"') => match p.ident(i - 1) {
                Some(v) if plain_word(&v) => (Kind::Word, v),
                Some(v) => (Kind::QIdent, ident(&v)),
                None => (Kind::QIdent, s.to_string()),
            },
            Kind::Str | Kind::EStr => {
                // A relation name: `'x'::regclass` or the first argument of nextval/currval.
                let cast = p.sym(i, "::") && p.is(i + 1, "regclass");
                let seq_fn = i >= 3
                    && p.sym(i - 2, "(")
                    && p.any(i - 3, &["nextval", "currval", "setval"])
                    && !p.sym(i, "::");
                let rel = if cast || seq_fn {
                    plain_string(p.src, tok).and_then(|b| regclass_literal(&b))
                } else {
                    None
                };
                match rel {
                    Some(r) if seq_fn => (Kind::Str, format!("{r}::regclass")),
                    Some(r) => (Kind::Str, r),
                    None => {
                        let q = s.find('\'').unwrap_or(0);
                        let (prefix, rest) = s.split_at(q);
                        (Kind::Str, format!("{}{rest}", prefix.to_ascii_lowercase()))
                    }
                }
            }
            Kind::Dollar => (Kind::Str, quote_literal(tok.dollar_body(p.src))),
            Kind::Op if s == "::" => {
                if let Some((canon, _, end)) = parse_type(p, i) {
                    out.push((Kind::Op, "::".into()));
                    out.push((Kind::Word, canon));
                    i = end;
                    continue;
                }
                (Kind::Op, "::".into())
            }
            _ => (tok.kind, s.to_string()),
        };
        out.push(piece);
    }
    out
}

/// Normalized text of an expression's tokens (see `normalize_expr` in this folder's `mod.rs`); `strip`: drop one
/// level of parentheses around the whole.
pub(super) fn normalized(p: View, strip: bool) -> String {
    let mut p = p;
    if strip && p.close(0).is_some_and(|c| c + 1 == p.len()) {
        p = p.sub(1, p.len() - 1);
    }
    let pieces = norm_pieces(p);
    let mut out = String::new();
    let mut prev: Option<&(Kind, String)> = None;
    let mut prev_unary = false;
    for cur in &pieces {
        let (ck, cs) = (cur.0, cur.1.as_str());
        let space = match prev {
            None => false,
            Some((pk, ps)) => {
                let ps = ps.as_str();
                let opening = (*pk == Kind::Punct && matches!(ps, "(" | "[" | ".")) || ps == "::";
                let closing =
                    (ck == Kind::Punct && matches!(cs, ")" | "]" | "," | "." | "[")) || cs == "::";
                let call = ck == Kind::Punct
                    && cs == "("
                    && (*pk == Kind::QIdent || (*pk == Kind::Word && !KEYWORDS.contains(&ps)));
                !(prev_unary || opening || closing || call)
            }
        };
        if space {
            out.push(' ');
        }
        out.push_str(cs);
        prev_unary = ck == Kind::Op
            && matches!(cs, "-" | "+")
            && match prev {
                None => true,
                Some((pk, ps)) => {
                    *pk == Kind::Op
                        || (*pk == Kind::Punct && matches!(ps.as_str(), "(" | "," | "["))
                        || (*pk == Kind::Word && KEYWORDS.contains(&ps.as_str()))
                }
            };
        prev = Some(cur);
    }
    out
}

/// Identifiers an expression mentions (not function names, not type names after `::`).
pub(super) fn mentioned(p: View) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in 0..p.len() {
        let after_cast = i > 0 && p.sym(i - 1, "::");
        if p.is_ident(i) && !p.sym(i + 1, "(") && !after_cast {
            if let Some(v) = p.ident(i).filter(|v| !out.contains(v)) {
                out.push(v);
            }
        }
    }
    out
}

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
