//! The header of `CREATE FUNCTION` / `CREATE PROCEDURE`: kind, name,
//! identity argument types and return type.

use super::error::SqlError;
use super::lex::{sig_tokens, Kind};
use super::statement::read_one;
use super::view::{split_name, View};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutineKind {
    Function,
    Procedure,
    Aggregate,
}

/// Header of a `CREATE FUNCTION` / `CREATE PROCEDURE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    pub kind: RoutineKind,
    /// Schema as written, unquoted (`"My S"` -> `My S`; unquoted names lower-cased).
    pub schema: Option<String>,
    /// Unquoted identifiers lower-cased, quoted kept exact.
    pub name: String,
    /// Types of the arguments that make up the identity: IN, INOUT and VARIADIC args. OUT args
    /// are excluded — also for procedures, although PostgreSQL 14+ counts OUT args in a
    /// procedure's identity (`DROP PROCEDURE p(int)` still works when unambiguous). Each is the
    /// type as written without name, mode and default, with canonical spacing (`numeric(10,2)`,
    /// `double precision`, `character varying(20)[]`): valid in `DROP FUNCTION name(types)` and
    /// `to_regprocedure('name(types)')`.
    pub arg_types: Vec<String>,
    /// Argument declarations as written (mode + name + type, defaults stripped, whitespace
    /// collapsed, comments removed), for messages.
    pub args_text: Vec<String>,
    /// Text after RETURNS up to LANGUAGE/AS/other options with canonical spacing (None for
    /// procedures and when absent).
    pub returns: Option<String>,
    /// A SQL-standard body, `BEGIN ATOMIC … END` (PostgreSQL checks it at creation).
    pub atomic: bool,
}

pub(crate) const INTERVAL_FIELDS: [&str; 6] = ["year", "month", "day", "hour", "minute", "second"];

/// Number of tokens forming a type name at the start of `v`, if it starts with one.
pub(crate) fn type_len(v: View) -> Option<usize> {
    let mut i = usize::from(v.is(0, "setof"));
    match v.word(i).as_str() {
        "double" if v.is(i + 1, "precision") => i += 2,
        "national" if v.any(i + 1, &["char", "character"]) => i = v.opt(i + 2, &["varying"]),
        "character" | "char" | "nchar" | "bit" => i = v.opt(i + 1, &["varying"]),
        "time" | "timestamp" => {
            i = v.after_group(i + 1);
            if v.any(i, &["with", "without"]) && v.is(i + 1, "time") && v.is(i + 2, "zone") {
                i += 3;
            }
        }
        "interval" if v.any(i + 1, &INTERVAL_FIELDS) => {
            i += 2;
            if v.is(i, "to") && v.any(i + 1, &INTERVAL_FIELDS) {
                i += 2;
            }
        }
        _ => {
            if !v.is_ident(i) {
                return None;
            }
            i += 1;
            while v.sym(i, ".") && v.is_ident(i + 1) {
                i += 2;
            }
        }
    }
    i = v.after_group(i);
    if v.sym(i, "%") && v.any(i + 1, &["type", "rowtype"]) {
        i += 2;
    }
    loop {
        let j = v.opt(i, &["array"]);
        if v.sym(j, "[") {
            match (j..v.len()).find(|&k| v.sym(k, "]")) {
                Some(k) => i = k + 1,
                None => return Some(i),
            }
        } else if j > i {
            i = j;
        } else {
            return Some(i);
        }
    }
}

/// One argument: (is OUT, type tokens, declaration tokens without the default).
pub(crate) fn parse_arg(a: View) -> (bool, View, View) {
    let mut depth = 0usize;
    let mut cut = a.len();
    for k in 0..a.len() {
        depth = depth.saturating_add_signed(a.nest(k));
        if depth == 0 && (a.is(k, "default") || a.sym(k, "=")) {
            cut = k;
            break;
        }
    }
    let decl = a.sub(0, cut);
    let modes = ["in", "out", "inout", "variadic"];
    let rest = if decl.any(0, &modes) && decl.len() > 1 {
        decl.sub(1, decl.len())
    } else if decl.any(1, &modes) && decl.len() > 2 {
        // old-style `name MODE type`
        return (decl.is(1, "out"), decl.sub(2, decl.len()), decl);
    } else {
        decl
    };
    let is_out = decl.len() > 1 && decl.is(0, "out");
    // `name type` or just `type`: a lone token or a complete type name is the type.
    if rest.len() <= 1 || type_len(rest) == Some(rest.len()) {
        (is_out, rest, decl)
    } else {
        (is_out, rest.sub(1, rest.len()), decl)
    }
}

/// Words that end the RETURNS clause.
pub(crate) const ROUTINE_OPTIONS: &str =
    "language as immutable stable volatile strict called security \
    external cost rows support set parallel leakproof not window transform begin return returns";

/// Parse a `CREATE [OR REPLACE] FUNCTION|PROCEDURE|AGGREGATE name(args) ...` header (the body
/// is ignored).
pub fn parse_routine(stmt: &str) -> Result<Routine, SqlError> {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View::new(stmt, &toks);
    let i = v.opt(1, &["or", "replace"]);
    let kind = match v.word(i).as_str() {
        "function" if v.is(0, "create") => RoutineKind::Function,
        "procedure" if v.is(0, "create") => RoutineKind::Procedure,
        "aggregate" if v.is(0, "create") => RoutineKind::Aggregate,
        _ => {
            return Err(SqlError::new(
                1,
                "not a CREATE FUNCTION, PROCEDURE or AGGREGATE statement",
            ))
        }
    };
    let err = |i: usize, m: &str| v.err(i, m);
    let (parts, open) = v
        .qname(i + 1)
        .ok_or_else(|| err(i + 1, "expected a routine name"))?;
    let (schema, name) = split_name(parts);
    if !v.sym(open, "(") {
        return Err(err(open, "expected '(' after the routine name"));
    }
    let close = v
        .close(open)
        .ok_or_else(|| err(open, "unbalanced parentheses"))?;
    let (mut arg_types, mut args_text) = (Vec::new(), Vec::new());
    for arg in v
        .sub(open + 1, close)
        .parts()
        .into_iter()
        .filter(|a| a.len() > 0)
    {
        let (is_out, ty, decl) = parse_arg(arg);
        if !is_out {
            arg_types.push(ty.render(true));
        }
        args_text.push(decl.render(false));
    }
    let mut returns = None;
    if kind == RoutineKind::Function && v.is(close + 1, "returns") {
        let (start, mut end, mut depth) = (close + 2, close + 2, 0usize);
        while let Some(x) = v.get(end) {
            depth = depth.saturating_add_signed(x.nest(stmt));
            let option = ROUTINE_OPTIONS
                .split_whitespace()
                .any(|w| x.is_word(stmt, w))
                || (x.is_word(stmt, "with") && v.sym(end + 1, "("));
            let stop = (option && end > start && !v.sym(end - 1, "."))
                || x.is_sym(stmt, ";")
                || x.kind == Kind::Dollar;
            if depth == 0 && stop {
                break;
            }
            end += 1;
        }
        returns = Some(v.sub(start, end).render(true)).filter(|r| !r.is_empty());
    }
    let atomic = (close + 1..v.len()).any(|k| v.is(k, "begin") && v.is(k + 1, "atomic"));
    Ok(Routine {
        kind,
        schema,
        name,
        arg_types,
        args_text,
        returns,
        atomic,
    })
}
