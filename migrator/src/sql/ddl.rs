//! DDL reader for `tables/`: turns the folder's statements into a [`Model`]. It reads the
//! tokens of the one tokenizer every SQL reader of the migrator uses ([`super::tokens`]).
//!
//! Read per statement (see `read_tables`): `CREATE [UNLOGGED] TABLE`, `CREATE [UNIQUE] INDEX`,
//! `CREATE SEQUENCE`, and the pg_dump-style follow-ups `ALTER TABLE ... ADD CONSTRAINT`,
//! `ALTER TABLE ... ALTER COLUMN ... SET DEFAULT | ADD GENERATED ... AS IDENTITY`,
//! `ALTER SEQUENCE ... OWNED BY`. Everything else (triggers, grants, views, comments, `SET`,
//! `SELECT set_config(...)`, `ALTER TABLE ... OWNER TO`) is not part of the model and ignored.
//!
//! Names follow the model's conventions (unquoted identifiers folded to lower case and truncated
//! to 63 bytes, quoted ones verbatim, default schema `public`). Unnamed constraints and indexes
//! get the names PostgreSQL would choose (`makeObjectName`/`ChooseRelationName`: the table and
//! column parts are shortened, the longer first, so the whole fits 63 bytes; a taken name gets a
//! number after the label: `t_check1`). Collisions are looked for among the names this reader
//! has produced so far in the same schema, in file order — PostgreSQL looks at the whole
//! database at the time each object is created, so in rare cases (a table named like another
//! table's generated constraint) the names differ; `tables::align_names` covers that.
//! Tables are read before everything else, so an `ALTER TABLE` or `CREATE INDEX` may come before
//! the table's file.
//!
//! Expressions (defaults, checks, generated columns, index elements and predicates) are kept as
//! text normalized by [`normalize_expr`]; the deployment compares catalog renderings, these are
//! for messages and for comparing two DDL spellings.

use std::collections::{BTreeMap, BTreeSet};

use stonescriptdb_shared::names::quote_literal;

use super::SqlFile;
use crate::error::MigratorError;
use crate::table_model::{
    ident, Column, Constraint, ConstraintKind, Identity, Index, Model, QName, Sequence, Table,
};

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// The declared tables of a `tables/` folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub model: Model,
    /// Which file declared each table (for messages and tracking).
    pub files: BTreeMap<QName, String>,
    /// Which file declared each sequence.
    pub sequence_files: BTreeMap<QName, String>,
}

// ===== Tokens ==================================================================================

/// Token kinds: the SQL reader's (`crate::sql::tokens`, the one tokenizer).
use super::TokenKind as K;

#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    k: K,
    s: &'a str,
    line: usize,
}

/// Significant tokens of `src` (comments dropped), each with its line; `first_line` is the line
/// of the first character of `src`. Never fails: unterminated quotes run to the end.
fn lex(src: &str, first_line: usize) -> Vec<Tok<'_>> {
    super::tokens(src, first_line)
        .into_iter()
        .map(|t| Tok {
            k: t.kind,
            s: t.text,
            line: t.line,
        })
        .collect()
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut n = max.min(s.len());
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    s.get(..n).unwrap_or("")
}

/// Identifier value: unquoted words ASCII-lower-cased, quoted ones verbatim (`""` undoubled),
/// both truncated to 63 bytes like PostgreSQL. None for other tokens and `""`.
fn ident_value(t: &Tok) -> Option<String> {
    let v = match t.k {
        K::Word => t.s.to_ascii_lowercase(),
        K::QIdent => {
            let inner = t.s.get(t.s.find('"')? + 1..).unwrap_or("");
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            inner.replace("\"\"", "\"")
        }
        _ => return None,
    };
    (!v.is_empty()).then(|| clip(&v, MAX_IDENT).to_string())
}

/// Index of the `)` matching the `(` at `open`.
fn close_paren(t: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, x) in t.iter().enumerate().skip(open) {
        if x.k == K::Punct && x.s == "(" {
            depth += 1;
        } else if x.k == K::Punct && x.s == ")" {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

// ===== Token view =============================================================================

/// A statement's tokens (or a part of them) with lookups that answer "no" out of range, and the
/// file path for error messages.
#[derive(Clone, Copy)]
struct P<'a> {
    t: &'a [Tok<'a>],
    path: &'a str,
    line: usize,
}

impl<'a> P<'a> {
    fn get(&self, i: usize) -> Option<&'a Tok<'a>> {
        self.t.get(i)
    }
    fn len(&self) -> usize {
        self.t.len()
    }
    fn is(&self, i: usize, kw: &str) -> bool {
        self.get(i)
            .is_some_and(|t| t.k == K::Word && t.s.eq_ignore_ascii_case(kw))
    }
    fn any(&self, i: usize, kws: &[&str]) -> bool {
        kws.iter().any(|k| self.is(i, k))
    }
    fn sym(&self, i: usize, s: &str) -> bool {
        self.get(i)
            .is_some_and(|t| matches!(t.k, K::Punct | K::Op) && t.s == s)
    }
    /// Lower-cased unquoted word at `i`, or "".
    fn word(&self, i: usize) -> String {
        self.get(i)
            .filter(|t| t.k == K::Word)
            .map(|t| t.s.to_ascii_lowercase())
            .unwrap_or_default()
    }
    fn is_ident(&self, i: usize) -> bool {
        self.get(i)
            .is_some_and(|t| matches!(t.k, K::Word | K::QIdent))
    }
    fn ident(&self, i: usize) -> Option<String> {
        self.get(i).and_then(ident_value)
    }
    fn sub(&self, a: usize, b: usize) -> P<'a> {
        P {
            t: self.t.get(a..b).unwrap_or(&[]),
            ..*self
        }
    }
    fn from(&self, a: usize) -> P<'a> {
        self.sub(a, self.len())
    }
    fn close(&self, open: usize) -> Option<usize> {
        if self.sym(open, "(") {
            close_paren(self.t, open)
        } else {
            None
        }
    }
    /// Parts between top-level commas.
    fn parts(&self) -> Vec<P<'a>> {
        let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0);
        for (k, x) in self.t.iter().enumerate() {
            match (x.k, x.s) {
                (K::Punct, "(" | "[") => depth += 1,
                (K::Punct, ")" | "]") => depth = depth.saturating_sub(1),
                (K::Punct, ",") if depth == 0 => {
                    out.push(self.sub(start, k));
                    start = k + 1;
                }
                _ => {}
            }
        }
        out.push(self.from(start));
        out
    }
    /// Qualified name `a[.b[.c]]` at `i`: (parts, index after it).
    fn qname(&self, i: usize) -> Option<(Vec<String>, usize)> {
        let (mut parts, mut k) = (Vec::new(), i);
        loop {
            parts.push(self.ident(k)?);
            k += 1;
            if !(self.sym(k, ".") && self.is_ident(k + 1)) {
                return Some((parts, k));
            }
            k += 1;
        }
    }
    /// A table/sequence name at `i`: (name, index after it).
    fn rel_name(&self, i: usize) -> Option<(QName, usize)> {
        let (parts, end) = self.qname(i)?;
        Some((qname_of(parts), end))
    }
    fn line_at(&self, i: usize) -> usize {
        self.get(i).or(self.t.last()).map_or(self.line, |t| t.line)
    }
    fn err(&self, i: usize, msg: impl AsRef<str>) -> MigratorError {
        bad(self.path, self.line_at(i), msg.as_ref())
    }
    /// Text of token `i` for messages.
    fn text(&self, i: usize) -> &'a str {
        self.get(i).map_or("end of statement", |t| t.s)
    }
    fn unexpected(&self, i: usize, what: &str) -> MigratorError {
        self.err(i, format!("unexpected \"{}\" in {what}", self.text(i)))
    }
    /// `i` past a parenthesized group at `i`, or `i`.
    fn after_group(&self, i: usize) -> usize {
        self.close(i).map_or(i, |c| c + 1)
    }
}

fn bad(path: &str, line: usize, msg: &str) -> MigratorError {
    MigratorError::BadRequest(format!("{path} line {line}: {msg}"))
}

/// (schema, name) from the parts of a qualified name (`db.schema.name` keeps the last two).
fn qname_of(mut parts: Vec<String>) -> QName {
    let name = parts.pop().unwrap_or_default();
    let schema = parts.pop().unwrap_or_else(|| "public".to_string());
    QName { schema, name }
}

// ===== Types ==================================================================================

const INTERVAL_FIELDS: [&str; 6] = ["year", "month", "day", "hour", "minute", "second"];

/// A type name at `start`: (canonical spelling, the integer type when it is a `serial`, index
/// after the type).
fn parse_type(p: P, start: usize) -> Option<(String, Option<&'static str>, usize)> {
    let first = p.get(start)?;
    let mut parts = vec![(ident_value(first)?, first.k == K::QIdent)];
    let mut i = start + 1;
    while p.sym(i, ".") && p.is_ident(i + 1) {
        let t = p.get(i + 1)?;
        parts.push((ident_value(t)?, t.k == K::QIdent));
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
        let args = args.iter().map(|a| render(a.t, false).replace(' ', ""));
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
fn builtin_type(
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

/// Canonical spelling of a type as PostgreSQL's format_type() writes it.
///
/// `serial` types give their integer type. Text that is not a type name is returned
/// lower-cased with normalized spacing.
pub fn canonical_type(text: &str) -> String {
    let toks = lex(text, 1);
    let p = P {
        t: &toks,
        path: "",
        line: 1,
    };
    match parse_type(p, 0) {
        Some((canon, _, end)) if end == toks.len() => canon,
        _ => render(&toks, false),
    }
}

// ===== Expressions ============================================================================

/// Words after which `(` is not a function call and a `-`/`+` is unary.
const KEYWORDS: &[&str] = &[
    "all", "and", "any", "as", "between", "case", "check", "default", "distinct", "else", "exists",
    "filter", "from", "ilike", "in", "is", "like", "not", "on", "or", "over", "return", "select",
    "similar", "some", "then", "using", "values", "when", "where", "with", "within",
];

/// `schema.name` for a regclass literal, as regclass output writes it from `search_path = public`.
fn regclass_text(q: &QName) -> String {
    if q.schema == "public" {
        ident(&q.name)
    } else {
        format!("{}.{}", ident(&q.schema), ident(&q.name))
    }
}

/// The relation named by a regclass string (`'public.t_id_seq'`, `'"T_seq"'`), normalized.
fn regclass_literal(body: &str) -> Option<String> {
    let toks = lex(body, 1);
    let p = P {
        t: &toks,
        path: "",
        line: 1,
    };
    let (q, end) = p.rel_name(0)?;
    (end == toks.len()).then(|| quote_literal(&regclass_text(&q)))
}

/// Value of a plain `'...'` literal (None for `E''` and other prefixed strings).
fn plain_string(t: &Tok) -> Option<String> {
    let inner = t.s.strip_prefix('\'')?;
    let inner = inner.strip_suffix('\'').unwrap_or(inner);
    Some(inner.replace("''", "'"))
}

/// Would this identifier read the same unquoted? (Like `ident`, but non-ASCII letters, which
/// PostgreSQL does not fold, need no quotes: `"größe"` is `größe`.)
fn plain_word(v: &str) -> bool {
    let ascii: String = v
        .chars()
        .map(|c| if c.is_ascii() { c } else { 'a' })
        .collect();
    !ident(&ascii).starts_with('"')
}

/// Tokens rewritten to their normalized text: (kind, text).
fn norm_pieces(t: &[Tok]) -> Vec<(K, String)> {
    let p = P {
        t,
        path: "",
        line: 1,
    };
    let mut out: Vec<(K, String)> = Vec::new();
    let mut i = 0;
    while let Some(tok) = t.get(i) {
        i += 1;
        let piece = match tok.k {
            K::Word | K::Number => (tok.k, tok.s.to_ascii_lowercase()),
            K::QIdent if tok.s.starts_with('"') => match ident_value(tok) {
                Some(v) if plain_word(&v) => (K::Word, v),
                Some(v) => (K::QIdent, ident(&v)),
                None => (K::QIdent, tok.s.to_string()),
            },
            K::Str => {
                // A relation name: `'x'::regclass` or the first argument of nextval/currval.
                let cast = p.sym(i, "::") && p.is(i + 1, "regclass");
                let seq_fn = i >= 3
                    && p.sym(i - 2, "(")
                    && p.any(i - 3, &["nextval", "currval", "setval"])
                    && !p.sym(i, "::");
                let rel = if cast || seq_fn {
                    plain_string(tok).and_then(|b| regclass_literal(&b))
                } else {
                    None
                };
                match rel {
                    Some(r) if seq_fn => (K::Str, format!("{r}::regclass")),
                    Some(r) => (K::Str, r),
                    None => {
                        let q = tok.s.find('\'').unwrap_or(0);
                        let (prefix, rest) = tok.s.split_at(q);
                        (K::Str, format!("{}{rest}", prefix.to_ascii_lowercase()))
                    }
                }
            }
            K::Dollar => {
                let tag_end = tok
                    .s
                    .get(1..)
                    .and_then(|r| r.find('$'))
                    .map_or(1, |j| j + 2);
                let tag = tok.s.get(..tag_end).unwrap_or("$");
                let body = tok.s.get(tag_end..).unwrap_or("");
                let body = body.strip_suffix(tag).unwrap_or(body);
                (K::Str, quote_literal(body))
            }
            K::Op if tok.s == "::" => {
                if let Some((canon, _, end)) = parse_type(p, i) {
                    out.push((K::Op, "::".into()));
                    out.push((K::Word, canon));
                    i = end;
                    continue;
                }
                (K::Op, "::".into())
            }
            _ => (tok.k, tok.s.to_string()),
        };
        out.push(piece);
    }
    out
}

/// Normalized text of tokens; `strip`: drop one level of parentheses around the whole.
fn render(t: &[Tok], strip: bool) -> String {
    let mut t = t;
    let opens = t.first().is_some_and(|x| x.k == K::Punct && x.s == "(");
    if strip && opens && close_paren(t, 0) == Some(t.len() - 1) {
        t = t.get(1..t.len() - 1).unwrap_or(&[]);
    }
    let pieces = norm_pieces(t);
    let mut out = String::new();
    let mut prev: Option<&(K, String)> = None;
    let mut prev_unary = false;
    for cur in &pieces {
        let (ck, cs) = (cur.0, cur.1.as_str());
        let space = match prev {
            None => false,
            Some((pk, ps)) => {
                let ps = ps.as_str();
                let opening = (*pk == K::Punct && matches!(ps, "(" | "[" | ".")) || ps == "::";
                let closing =
                    (ck == K::Punct && matches!(cs, ")" | "]" | "," | "." | "[")) || cs == "::";
                let call = ck == K::Punct
                    && cs == "("
                    && (*pk == K::QIdent || (*pk == K::Word && !KEYWORDS.contains(&ps)));
                !(prev_unary || opening || closing || call)
            }
        };
        if space {
            out.push(' ');
        }
        out.push_str(cs);
        prev_unary = ck == K::Op
            && matches!(cs, "-" | "+")
            && match prev {
                None => true,
                Some((pk, ps)) => {
                    *pk == K::Op
                        || (*pk == K::Punct && matches!(ps.as_str(), "(" | "," | "["))
                        || (*pk == K::Word && KEYWORDS.contains(&ps.as_str()))
                }
            };
        prev = Some(cur);
    }
    out
}

/// Whitespace/keyword-case normalized expression text (used for DDL-side defaults/checks).
///
/// Comments are dropped; unquoted words are lower-cased and quoted identifiers quoted only when
/// needed; string literals are kept exact (dollar-quoted ones become `'...'`); spacing is
/// canonical (`f(a, b)`, `a > -1`, `x::text`); type names after `::` are canonical
/// (`0::int` -> `0::integer`); regclass literals drop `public.` and `nextval('s')` becomes
/// `nextval('s'::regclass)`; one level of parentheses around the whole is removed.
/// (Reading a table normalizes its expressions this way; exposed for tests.)
#[cfg(test)]
pub fn normalize_expr(text: &str) -> String {
    render(&lex(text, 1), true)
}

/// Identifiers an expression mentions (not function names, not type names after `::`).
fn mentioned(p: P) -> Vec<String> {
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

// ===== Names ==================================================================================

/// PostgreSQL's makeObjectName: `name1[_name2][_label]` with name1/name2 shortened (the
/// longer first) so the whole fits 63 bytes.
fn make_object_name(name1: &str, name2: Option<&str>, label: &str) -> String {
    let mut overhead = usize::from(name2.is_some());
    if !label.is_empty() {
        overhead += label.len() + 1;
    }
    let avail = MAX_IDENT.saturating_sub(overhead);
    let (mut n1, mut n2) = (name1.len(), name2.map_or(0, str::len));
    while n1 + n2 > avail {
        if n1 > n2 {
            n1 -= 1;
        } else {
            n2 = n2.saturating_sub(1);
        }
    }
    let mut out = clip(name1, n1).to_string();
    if let Some(n) = name2 {
        out.push('_');
        out.push_str(clip(n, n2));
    }
    if !label.is_empty() {
        out.push('_');
        out.push_str(label);
    }
    out
}

/// ChooseRelationName/ChooseConstraintName: the first of `label`, `label1`, `label2`... whose
/// name is not `taken`.
fn choose_name(
    name1: &str,
    name2: Option<&str>,
    label: &str,
    taken: impl Fn(&str) -> bool,
) -> String {
    let mut pass = 0u32;
    loop {
        let l = if pass == 0 {
            label.to_string()
        } else {
            format!("{label}{pass}")
        };
        let name = make_object_name(name1, name2, &l);
        if !taken(&name) || pass > 100_000 {
            return name;
        }
        pass += 1;
    }
}

/// ChooseIndexColumnNames: repeated names get a number (`expr`, `expr1`).
fn index_column_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let mut cur = n.clone();
        let mut i = 1;
        while out.contains(&cur) {
            cur = format!(
                "{}{i}",
                clip(n, MAX_IDENT.saturating_sub(i.to_string().len()))
            );
            i += 1;
        }
        out.push(cur);
    }
    out
}

fn idents(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

// ===== Constraints ============================================================================

/// A constraint as read, before it is named and checked against its table.
#[derive(Debug, Clone)]
struct PCon {
    name: Option<String>,
    kind: ConstraintKind,
    /// Key columns (FK: referencing columns).
    columns: Vec<String>,
    include: Vec<String>,
    nulls_not_distinct: bool,
    references: Option<QName>,
    ref_columns: Vec<String>,
    fk_match: Option<&'static str>,
    on_update: Option<String>,
    on_delete: Option<String>,
    /// CHECK: the normalized expression; EXCLUDE: the whole definition.
    expr: String,
    /// CHECK: identifiers the expression mentions; EXCLUDE: element names for naming.
    idents: Vec<String>,
    deferrable: bool,
    deferred: bool,
    no_inherit: bool,
    not_valid: bool,
    not_enforced: bool,
    line: usize,
}

impl PCon {
    fn new(kind: ConstraintKind, name: Option<String>, line: usize) -> PCon {
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
    fn definition(&self) -> String {
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
fn con_attrs(p: P, mut i: usize, c: &mut PCon) -> usize {
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
fn column_list(p: P, i: usize) -> Result<(Vec<String>, usize), MigratorError> {
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
fn index_params(p: P, mut i: usize, c: &mut PCon) -> Result<usize, MigratorError> {
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
fn references(p: P, i: usize, c: &mut PCon) -> Result<usize, MigratorError> {
    let (target, mut k) = p
        .rel_name(i + 1)
        .ok_or_else(|| p.err(i + 1, "expected a table name after REFERENCES"))?;
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
fn check(p: P, i: usize, c: &mut PCon) -> Result<usize, MigratorError> {
    let close = p
        .close(i + 1)
        .ok_or_else(|| p.err(i + 1, "expected a parenthesized expression after CHECK"))?;
    let inner = p.sub(i + 2, close);
    if inner.len() == 0 {
        return Err(p.err(i + 1, "empty CHECK expression"));
    }
    c.expr = render(inner.t, true);
    c.idents = mentioned(inner);
    Ok(close + 1)
}

/// One index element (also of EXCLUDE): (rendered text, column name or None for an expression).
fn index_elem(e: P) -> Result<(String, Option<String>), MigratorError> {
    let (head, col, mut i) = if e.sym(0, "(") {
        let close = e
            .close(0)
            .ok_or_else(|| e.err(0, "unbalanced parentheses"))?;
        let inner = e.sub(1, close);
        let text = match (inner.len(), inner.ident(0)) {
            (1, Some(c)) => ident(&c),
            _ => format!("({})", render(inner.t, true)),
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
            (render(e.sub(0, close + 1).t, false), None, close + 1)
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
            middle.push(render(e.sub(start, end).t, false));
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
fn exclude(p: P, i: usize, c: &mut PCon) -> Result<usize, MigratorError> {
    let mut k = i + 1;
    let mut method = "gist".to_string();
    if p.is(k, "using") {
        method = p
            .ident(k + 1)
            .ok_or_else(|| p.err(k + 1, "expected an index method"))?;
        k += 2;
    }
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
        let op: String = part.from(w + 1).t.iter().map(|t| t.s).collect();
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
        def.push_str(&format!(" WHERE ({})", render(p.sub(k + 2, close).t, true)));
        k = close + 1;
    }
    c.expr = def;
    Ok(k)
}

/// A table constraint element: `[CONSTRAINT n] PRIMARY KEY | UNIQUE | FOREIGN KEY | CHECK |
/// EXCLUDE ...`, or a table-level `[CONSTRAINT n] NOT NULL col` (Err side of the Ok).
fn table_constraint(e: P) -> Result<Result<PCon, String>, MigratorError> {
    let mut i = 0;
    let mut name = None;
    if e.is(0, "constraint") {
        name = Some(
            e.ident(1)
                .ok_or_else(|| e.err(1, "expected a constraint name"))?,
        );
        i = 2;
    }
    let line = e.line_at(i);
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
fn is_table_constraint(e: P) -> bool {
    e.any(0, &["constraint", "primary", "unique", "foreign", "check"])
        || (e.is(0, "exclude") && (e.is(1, "using") || e.sym(1, "(")))
        || (e.is(0, "not") && e.is(1, "null"))
}

// ===== Columns ================================================================================

const COLUMN_CONSTRAINT_WORDS: &[&str] = &[
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
fn collation(parts: Vec<String>) -> Option<String> {
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
fn generated(p: P, i: usize, col: &mut Column) -> Result<usize, MigratorError> {
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
    col.generated = Some(render(p.sub(k + 2, close).t, true));
    Ok(close + 1 + usize::from(p.any(close + 1, &["stored", "virtual"])))
}

/// A column definition: (column, its constraints, the serial's integer type).
type ColumnDef = (Column, Vec<PCon>, Option<&'static str>);

fn column_def(e: P) -> Result<ColumnDef, MigratorError> {
    let name = e.ident(0).ok_or_else(|| {
        e.err(
            0,
            format!("expected a column name, found \"{}\"", e.text(0)),
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
        let line = e.line_at(i);
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
                    match (t.k, t.s) {
                        (K::Punct, "(" | "[") => depth += 1,
                        (K::Punct, ")" | "]") => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    k += 1;
                }
                if k == i + 1 {
                    return Err(e.err(i, "expected an expression after DEFAULT"));
                }
                if has_default {
                    return Err(e.err(i, format!("multiple defaults for column {name}")));
                }
                has_default = true;
                let d = render(e.sub(i + 1, k).t, true);
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

// ===== Sequences ==============================================================================

fn new_sequence(name: QName) -> Sequence {
    Sequence {
        name,
        data_type: "bigint".into(),
        increment: 1,
        min_value: None,
        max_value: None,
        start: None,
        cache: 1,
        cycle: false,
        owned_by: None,
    }
}

/// Options equal to their defaults become None (as the catalog reader does).
fn seq_defaults(s: &mut Sequence) {
    *s = Sequence::without_defaults(s.clone());
}

/// A signed integer at `i`: (value, index after).
fn number(p: P, i: usize) -> Result<(i64, usize), MigratorError> {
    let neg = p.sym(i, "-");
    let k = i + usize::from(neg || p.sym(i, "+"));
    let t = p
        .get(k)
        .filter(|t| t.k == K::Number)
        .ok_or_else(|| p.err(k, "expected a number"))?;
    let digits = t.s.replace('_', "");
    let v: i64 = format!("{}{digits}", if neg { "-" } else { "" })
        .parse()
        .map_err(|_| p.err(k, format!("{} is not a valid integer", t.s)))?;
    Ok((v, k + 1))
}

/// Where an `OWNED BY` clause was written, for checking it once every table is known.
type OwnedAt = Option<(String, usize)>;

/// Sequence options from `i` to the end of `p`. `owned` is set to the clause's position when
/// an `OWNED BY t.c` is read.
fn seq_options(
    p: P,
    mut i: usize,
    s: &mut Sequence,
    owned: &mut OwnedAt,
) -> Result<(), MigratorError> {
    while i < p.len() {
        match p.word(i).as_str() {
            "as" => {
                let (t, _, end) =
                    parse_type(p, i + 1).ok_or_else(|| p.err(i + 1, "expected a type after AS"))?;
                if !matches!(t.as_str(), "smallint" | "integer" | "bigint") {
                    return Err(p.err(i + 1, "sequence type must be smallint, integer or bigint"));
                }
                (s.data_type, i) = (t, end);
            }
            "increment" => {
                let (v, end) = number(p, i + 1 + usize::from(p.is(i + 1, "by")))?;
                if v == 0 {
                    return Err(p.err(i, "INCREMENT must not be zero"));
                }
                (s.increment, i) = (v, end);
            }
            "minvalue" => (s.min_value, i) = number(p, i + 1).map(|(v, e)| (Some(v), e))?,
            "maxvalue" => (s.max_value, i) = number(p, i + 1).map(|(v, e)| (Some(v), e))?,
            "no" if p.is(i + 1, "minvalue") => (s.min_value, i) = (None, i + 2),
            "no" if p.is(i + 1, "maxvalue") => (s.max_value, i) = (None, i + 2),
            "no" if p.is(i + 1, "cycle") => (s.cycle, i) = (false, i + 2),
            "cycle" => (s.cycle, i) = (true, i + 1),
            "start" => {
                let k = i + 1 + usize::from(p.is(i + 1, "with"));
                (s.start, i) = number(p, k).map(|(v, e)| (Some(v), e))?;
            }
            "restart" => {
                i += 1 + usize::from(p.is(i + 1, "with"));
                if p.get(i).is_some_and(|t| t.k == K::Number) || p.sym(i, "-") || p.sym(i, "+") {
                    i = number(p, i)?.1;
                }
            }
            "cache" => {
                let (v, end) = number(p, i + 1)?;
                if v < 1 {
                    return Err(p.err(i, "CACHE must be at least 1"));
                }
                (s.cache, i) = (v, end);
            }
            "owned" if p.is(i + 1, "by") => {
                if p.is(i + 2, "none") {
                    (s.owned_by, i) = (None, i + 3);
                    continue;
                }
                let (mut parts, end) = p
                    .qname(i + 2)
                    .filter(|(parts, _)| parts.len() >= 2)
                    .ok_or_else(|| p.err(i + 2, "expected OWNED BY table.column or NONE"))?;
                let col = parts.pop().unwrap_or_default();
                s.owned_by = Some((qname_of(parts), col));
                *owned = Some((p.path.to_string(), p.line_at(i)));
                i = end;
            }
            "sequence" if p.is(i + 1, "name") => {
                i = p
                    .qname(i + 2)
                    .ok_or_else(|| p.err(i + 2, "expected a sequence name"))?
                    .1;
            }
            "logged" | "unlogged" => i += 1,
            _ => return Err(p.unexpected(i, "sequence options")),
        }
    }
    seq_defaults(s);
    Ok(())
}

// ===== Reader =================================================================================

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stmt {
    Table,
    Sequence,
    Index,
    AlterTable,
    AlterSequence,
    Other,
}

fn classify(p: P) -> Stmt {
    if p.is(0, "create") {
        let mut i = 1;
        while p.any(i, &["global", "local", "temp", "temporary", "unlogged"]) {
            i += 1;
        }
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
struct Reader {
    model: Model,
    files: BTreeMap<QName, String>,
    sequence_files: BTreeMap<QName, String>,
    /// Relation names used per schema: tables, sequences, indexes (incl. constraint indexes).
    rels: BTreeSet<QName>,
    /// Constraint names used per schema.
    cons: BTreeSet<QName>,
    /// Sequences with an explicit OWNED BY, to check once every table is known.
    owned: Vec<(QName, String, usize)>,
}

/// Name, check and add constraints to `tbl` (PostgreSQL's order: checks, primary key,
/// unique/exclude, foreign keys).
fn add_constraints(
    tbl: &mut Table,
    rels: &mut BTreeSet<QName>,
    cons: &mut BTreeSet<QName>,
    pcons: Vec<PCon>,
    path: &str,
) -> Result<(), MigratorError> {
    let schema = tbl.name.schema.clone();
    let q = |n: &str| QName::new(&schema, n);
    let tname = tbl.name.clone();
    let mut pending: Vec<PCon> = Vec::new();
    for mut c in pcons {
        let err = |m: String| bad(path, c.line, &m);
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
    fn table_mut(&mut self, p: P, i: usize, q: &QName) -> Result<&mut Table, MigratorError> {
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

    fn create_table(&mut self, p: P) -> Result<(), MigratorError> {
        let mut i = 1;
        while p.any(i, &["global", "local", "temp", "temporary", "unlogged"]) {
            if p.any(i, &["temp", "temporary"]) {
                return Err(p.err(i, "temporary tables cannot be declared in tables/"));
            }
            i += 1;
        }
        i += 1;
        if p.is(i, "if") && p.is(i + 1, "not") && p.is(i + 2, "exists") {
            i += 3;
        }
        let name_at = i;
        let (qn, k) = p
            .rel_name(i)
            .ok_or_else(|| p.err(i, "expected a table name"))?;
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
                    Err(col) => not_null.push((col, e.line_at(0))),
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
            let c = c.ok_or_else(|| {
                bad(
                    p.path,
                    line,
                    &format!("column {col} of table {qn} is not declared"),
                )
            })?;
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
        add_constraints(&mut tbl, &mut self.rels, &mut self.cons, pcons, p.path)?;
        self.files.insert(qn.clone(), p.path.to_string());
        self.model.tables.insert(qn, tbl);
        Ok(())
    }

    fn create_sequence(&mut self, p: P) -> Result<(), MigratorError> {
        let mut i = 1;
        while p.any(i, &["temp", "temporary", "unlogged"]) {
            if !p.is(i, "unlogged") {
                return Err(p.err(i, "temporary sequences cannot be declared in tables/"));
            }
            i += 1;
        }
        i += 1;
        if p.is(i, "if") && p.is(i + 1, "not") && p.is(i + 2, "exists") {
            i += 3;
        }
        let (qn, k) = p
            .rel_name(i)
            .ok_or_else(|| p.err(i, "expected a sequence name"))?;
        if self.rels.contains(&qn) {
            return Err(p.err(i, format!("{qn} is declared twice")));
        }
        let mut s = new_sequence(qn.clone());
        let mut owned = None;
        seq_options(p, k, &mut s, &mut owned)?;
        if let Some((path, line)) = owned {
            self.owned.push((qn.clone(), path, line));
        }
        self.rels.insert(qn.clone());
        self.sequence_files.insert(qn.clone(), p.path.to_string());
        self.model.sequences.insert(qn, s);
        Ok(())
    }

    fn alter_sequence(&mut self, p: P) -> Result<(), MigratorError> {
        let mut i = 2;
        if p.is(i, "if") && p.is(i + 1, "exists") {
            i += 2;
        }
        let (qn, k) = p
            .rel_name(i)
            .ok_or_else(|| p.err(i, "expected a sequence name"))?;
        if p.any(k, &["owner", "rename", "set"]) {
            if p.is(k, "owner") {
                return Ok(());
            }
            return Err(p.err(
                k,
                format!("ALTER SEQUENCE {} is not supported in tables/", p.text(k)),
            ));
        }
        let s = self
            .model
            .sequences
            .get_mut(&qn)
            .ok_or_else(|| p.err(i, format!("sequence {qn} is not declared in tables/")))?;
        let mut owned = None;
        seq_options(p, k, s, &mut owned)?;
        if let Some((path, line)) = owned {
            self.owned.push((qn, path, line));
        }
        Ok(())
    }

    fn create_index(&mut self, p: P) -> Result<(), MigratorError> {
        let unique = p.is(1, "unique");
        let mut i = 2 + usize::from(unique);
        i += usize::from(p.is(i, "concurrently"));
        if p.is(i, "if") && p.is(i + 1, "not") && p.is(i + 2, "exists") {
            i += 3;
        }
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
        let (table, mut k) = p
            .rel_name(i)
            .ok_or_else(|| p.err(i, "expected a table name"))?;
        let table_at = i;
        k += usize::from(p.sym(k, "*"));
        let mut method = "btree".to_string();
        if p.is(k, "using") {
            method = p
                .ident(k + 1)
                .ok_or_else(|| p.err(k + 1, "expected an index method"))?;
            k += 2;
        }
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
            tail.push_str(&format!(" WITH ({})", render(p.sub(k + 2, c).t, false)));
            k = c + 1;
        }
        if p.is(k, "tablespace") {
            k += 2;
        }
        if p.is(k, "where") {
            if k + 1 >= p.len() {
                return Err(p.err(k, "expected a predicate after WHERE"));
            }
            tail.push_str(&format!(" WHERE ({})", render(p.from(k + 1).t, true)));
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

    fn alter_table(&mut self, p: P) -> Result<(), MigratorError> {
        let mut i = 2;
        if p.is(i, "if") && p.is(i + 1, "exists") {
            i += 2;
        }
        i += usize::from(p.is(i, "only"));
        let table_at = i;
        let (table, mut k) = p
            .rel_name(i)
            .ok_or_else(|| p.err(i, "expected a table name"))?;
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
                    a.text(0).to_ascii_uppercase()
                );
                return Err(a.err(0, msg));
            }
            if a.is(0, "add") {
                let e = a.from(1);
                if is_table_constraint(e) {
                    let line = e.line_at(0);
                    let Reader {
                        model, rels, cons, ..
                    } = self;
                    let msg = format!("table {table} is not declared in tables/");
                    let tbl = model
                        .tables
                        .get_mut(&table)
                        .ok_or_else(|| p.err(table_at, msg))?;
                    match table_constraint(e)? {
                        Ok(c) => add_constraints(tbl, rels, cons, vec![c], p.path)?,
                        Err(col) => {
                            let c = tbl.columns.iter_mut().find(|c| c.name == col);
                            let msg = format!("column {col} of table {table} is not declared");
                            c.ok_or_else(|| bad(p.path, line, &msg))?.not_null = true;
                        }
                    }
                    continue;
                }
                let mut j = usize::from(e.is(0, "column"));
                if e.is(j, "if") && e.is(j + 1, "not") && e.is(j + 2, "exists") {
                    j += 3;
                }
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
        e: P,
        table: &QName,
        table_at: usize,
        p: P,
    ) -> Result<(), MigratorError> {
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
            add_constraints(tbl, rels, cons, pcons, p.path)?;
        }
        Ok(())
    }

    fn alter_column(
        &mut self,
        a: P,
        table: &QName,
        table_at: usize,
        p: P,
    ) -> Result<(), MigratorError> {
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
            let d = render(a.from(k + 2).t, true);
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
                a.text(k).to_ascii_uppercase()
            );
            return Err(a.err(k, msg));
        }
        Ok(())
    }
}

/// Read a `tables/` folder: every file must declare at least one table or
/// sequence (a file may hold only a sequence that several tables' defaults
/// share); tables and sequences are read first, then indexes, sequences'
/// ownership and pg_dump-style `ALTER TABLE`s, in file order.
pub fn read_tables(files: &[SqlFile]) -> Result<Declared, MigratorError> {
    let mut r = Reader::default();
    let lexed: Vec<Vec<(Vec<Tok>, usize)>> = files
        .iter()
        .map(|f| {
            f.statements
                .iter()
                .map(|s| (lex(&s.text, s.line), s.line))
                .collect()
        })
        .collect();
    for (f, stmts) in files.iter().zip(&lexed) {
        let mut declares = false;
        for (toks, line) in stmts {
            let p = P {
                t: toks,
                path: &f.path,
                line: *line,
            };
            match classify(p) {
                Stmt::Table => {
                    r.create_table(p)?;
                    declares = true;
                }
                Stmt::Sequence => {
                    r.create_sequence(p)?;
                    declares = true;
                }
                _ => {}
            }
        }
        if !declares {
            let msg = "declares no table or sequence: every tables/ file needs a CREATE TABLE or CREATE SEQUENCE statement";
            return Err(bad(&f.path, 1, msg));
        }
    }
    for (f, stmts) in files.iter().zip(&lexed) {
        for (toks, line) in stmts {
            let p = P {
                t: toks,
                path: &f.path,
                line: *line,
            };
            match classify(p) {
                Stmt::Index => r.create_index(p)?,
                Stmt::AlterTable => r.alter_table(p)?,
                Stmt::AlterSequence => r.alter_sequence(p)?,
                _ => {}
            }
        }
    }
    for (seq, path, line) in &r.owned {
        let Some((table, col)) = r.model.sequences.get(seq).and_then(|s| s.owned_by.as_ref())
        else {
            continue;
        };
        let Some(t) = r.model.tables.get(table) else {
            return Err(bad(path, *line, &format!("sequence {seq} is OWNED BY {table}.{col}, but table {table} is not declared in tables/")));
        };
        if t.column(col).is_none() {
            return Err(bad(
                path,
                *line,
                &format!(
                    "sequence {seq} is OWNED BY {table}.{col}, but {table} has no column {col}"
                ),
            ));
        }
    }
    for t in r.model.tables.values_mut() {
        t.constraints.sort_by(|a, b| a.name.cmp(&b.name));
        t.indexes.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(Declared {
        model: r.model,
        files: r.files,
        sequence_files: r.sequence_files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql;

    fn file(path: &str, text: &str) -> SqlFile {
        SqlFile {
            path: path.into(),
            statements: sql::split_statements(text).unwrap(),
            checksum: String::new(),
            wrapper: None,
        }
    }
    fn read(files: &[(&str, &str)]) -> Declared {
        let f: Vec<SqlFile> = files.iter().map(|(p, t)| file(p, t)).collect();
        match read_tables(&f) {
            Ok(d) => d,
            Err(e) => panic!("{e:?}"),
        }
    }
    fn model(text: &str) -> Model {
        read(&[("tables/t.sql", text)]).model
    }
    /// The only table of a one-file folder.
    fn table(text: &str) -> Table {
        let m = model(text);
        assert_eq!(m.tables.len(), 1, "{m:?}");
        m.tables.into_values().next().unwrap()
    }
    fn err(files: &[(&str, &str)]) -> String {
        let f: Vec<SqlFile> = files.iter().map(|(p, t)| file(p, t)).collect();
        match read_tables(&f) {
            Err(MigratorError::BadRequest(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }
    fn err1(text: &str) -> String {
        err(&[("tables/t.sql", text)])
    }
    fn col<'a>(t: &'a Table, name: &str) -> &'a Column {
        t.column(name)
            .unwrap_or_else(|| panic!("no column {name} in {t:?}"))
    }
    /// `name: definition` of every constraint, in order.
    fn cons(t: &Table) -> Vec<String> {
        let c = t.constraints.iter();
        c.map(|c| format!("{}: {}", c.name, c.definition)).collect()
    }
    fn idx(t: &Table) -> Vec<String> {
        t.indexes.iter().map(|i| i.definition.clone()).collect()
    }
    fn check(f: fn(&str) -> String, cases: &[(&str, &str)]) {
        for (input, want) in cases {
            assert_eq!(f(input), *want, "input: {input}");
        }
    }

    // ----- canonical_type -----

    #[test]
    fn type_integers_and_floats() {
        #[rustfmt::skip]
        check(canonical_type, &[
            ("int", "integer"), ("INTEGER", "integer"), ("int4", "integer"),
            ("pg_catalog.int4", "integer"), ("\"int4\"", "integer"),
            ("int2", "smallint"), ("SmallInt", "smallint"), ("int8", "bigint"), ("bigint", "bigint"),
            ("float", "double precision"), ("float8", "double precision"),
            ("double   precision", "double precision"), ("float(24)", "real"),
            ("float(1)", "real"), ("float(25)", "double precision"), ("float(53)", "double precision"),
            ("float4", "real"), ("real", "real"),
            ("serial", "integer"), ("bigserial", "bigint"), ("serial2", "smallint"),
        ]);
    }

    #[test]
    fn type_numeric_character_bool() {
        #[rustfmt::skip]
        check(canonical_type, &[
            ("decimal", "numeric"), ("numeric", "numeric"), ("NUMERIC(10, 2)", "numeric(10,2)"),
            ("decimal(10,2)", "numeric(10,2)"), ("dec(5)", "numeric(5,0)"),
            ("bool", "boolean"), ("boolean", "boolean"),
            ("varchar", "character varying"), ("varchar(20)", "character varying(20)"),
            ("character varying (20)", "character varying(20)"),
            ("char varying(3)", "character varying(3)"),
            ("national character varying(4)", "character varying(4)"),
            ("char", "character(1)"), ("character", "character(1)"), ("char(5)", "character(5)"),
            ("nchar(2)", "character(2)"), ("bpchar(3)", "character(3)"), ("\"char\"", "\"char\""),
            ("text", "text"), ("bit", "bit(1)"), ("bit(8)", "bit(8)"), ("varbit", "bit varying"),
            ("bit varying(5)", "bit varying(5)"),
        ]);
    }

    #[test]
    fn type_dates_and_times() {
        #[rustfmt::skip]
        check(canonical_type, &[
            ("timestamp", "timestamp without time zone"),
            ("timestamp without time zone", "timestamp without time zone"),
            ("timestamp(3)", "timestamp(3) without time zone"),
            ("TIMESTAMP (3) WITH TIME ZONE", "timestamp(3) with time zone"),
            ("timestamptz", "timestamp with time zone"), ("timestamptz(6)", "timestamp(6) with time zone"),
            ("timestamp with time zone", "timestamp with time zone"),
            ("time", "time without time zone"), ("timetz", "time with time zone"),
            ("time(2) with time zone", "time(2) with time zone"),
            ("date", "date"), ("interval", "interval"), ("interval(3)", "interval(3)"),
            ("INTERVAL YEAR TO MONTH", "interval year to month"), ("interval day", "interval day"),
        ]);
    }

    #[test]
    fn type_arrays_user_types_and_others() {
        #[rustfmt::skip]
        check(canonical_type, &[
            ("int[]", "integer[]"), ("integer ARRAY", "integer[]"), ("int[][]", "integer[]"),
            ("text[3]", "text[]"), ("integer ARRAY[4]", "integer[]"), ("varchar(10)[]", "character varying(10)[]"),
            ("timestamptz[]", "timestamp with time zone[]"),
            ("json", "json"), ("JSONB", "jsonb"), ("uuid", "uuid"), ("bytea", "bytea"), ("inet", "inet"),
            ("cidr", "cidr"), ("tsvector", "tsvector"), ("money", "money"),
            ("public.mytype", "mytype"), ("Public.MyType", "mytype"), ("app.mood", "app.mood"),
            ("\"App\".\"Mood\"[]", "\"App\".\"Mood\"[]"), ("\"MyType\"", "\"MyType\""),
            ("public.\"my type\"", "\"my type\""), ("pg_catalog.text", "text"),
            ("vector(3)", "vector(3)"), ("public.year", "year"), ("\"user\"", "\"user\""),
        ]);
    }

    #[test]
    fn type_garbage_does_not_panic() {
        assert_eq!(canonical_type("  Foo  Bar "), "foo bar");
        for s in [
            "",
            "(",
            "int[",
            "'x",
            "\"",
            "numeric(",
            "timestamp(3",
            "a.",
            "$$",
            "double",
        ] {
            let _ = canonical_type(s);
        }
        assert_eq!(canonical_type("double"), "double");
    }

    // ----- normalize_expr -----

    #[test]
    fn expr_whitespace_case_literals() {
        #[rustfmt::skip]
        check(normalize_expr, &[
            ("NOW( )", "now()"),
            ("  Price   >   0 ", "price > 0"),
            ("price>0", "price > 0"),
            ("(price > 0)", "price > 0"),
            ("((a > 0))", "(a > 0)"),
            ("(a) + (b)", "(a) + (b)"),
            ("'It''s  A' || \"Name\"", "'It''s  A' || \"Name\""),
            ("\"price\" * 2", "price * 2"),
            ("\"größe\" > größe", "größe > größe"), ("\"Größe\" + \"user\"", "\"Größe\" + \"user\""),
            ("a IN (1,2 , 3)", "a in (1, 2, 3)"),
            ("-1", "-1"), ("a > -1", "a > -1"), ("a-1", "a - 1"),
            ("$$x'y$$", "'x''y'"),
            ("CURRENT_TIMESTAMP", "current_timestamp"),
            ("x /* c */ = -- note\n 1", "x = 1"),
            ("E'A\\n'", "e'A\\n'"),
            ("coalesce(a,  b)", "coalesce(a, b)"),
            ("a = ANY (ARRAY[1,2])", "a = any (array[1, 2])"),
        ]);
    }

    #[test]
    fn expr_casts_and_regclass() {
        #[rustfmt::skip]
        check(normalize_expr, &[
            ("0::INT", "0::integer"),
            ("'G'::public.mpaa_rating", "'G'::mpaa_rating"),
            ("'x' :: character   varying", "'x'::character varying"),
            ("nextval('public.film_film_id_seq'::regclass)", "nextval('film_film_id_seq'::regclass)"),
            ("nextval('Film_Id_Seq')", "nextval('film_id_seq'::regclass)"),
            ("nextval('\"Film_id_seq\"'::regclass)", "nextval('\"Film_id_seq\"'::regclass)"),
            ("nextval('app.s'::regclass)", "nextval('app.s'::regclass)"),
            ("'{}'::text[]", "'{}'::text[]"),
        ]);
    }

    // ----- tables -----

    #[test]
    fn columns_in_order_with_attributes() {
        let t = table(
            "CREATE TABLE Public.Orders (\n  id bigint NOT NULL,\n  note text DEFAULT 'x' NULL,\n  \
             total NUMERIC(10,2) DEFAULT (0) NOT NULL,\n  code varchar(8) COLLATE \"C\",\n  \
             d text COLLATE pg_catalog.\"default\" DEFAULT NULL,\n  at timestamptz DEFAULT now()\n)",
        );
        assert_eq!(t.name, QName::public("orders"));
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "note", "total", "code", "d", "at"]);
        assert!(col(&t, "id").not_null && !col(&t, "note").not_null);
        assert_eq!(col(&t, "note").default.as_deref(), Some("'x'"));
        assert_eq!(col(&t, "total").data_type, "numeric(10,2)");
        assert_eq!(col(&t, "total").default.as_deref(), Some("0"));
        assert_eq!(col(&t, "code").collation.as_deref(), Some("\"C\""));
        assert_eq!(col(&t, "code").data_type, "character varying(8)");
        assert_eq!(
            (col(&t, "d").collation.clone(), col(&t, "d").default.clone()),
            (None, None)
        );
        assert_eq!(col(&t, "at").data_type, "timestamp with time zone");
        assert_eq!(col(&t, "at").default.as_deref(), Some("now()"));
        assert!(t.constraints.is_empty() && t.indexes.is_empty());
    }

    #[test]
    fn serial_variants() {
        let m = model(
            "CREATE TABLE t (a serial, b BIGSERIAL PRIMARY KEY, c smallserial, d serial4, \
             e serial8, f serial2)",
        );
        let t = &m.tables[&QName::public("t")];
        for (c, ty) in [
            ("a", "integer"),
            ("b", "bigint"),
            ("c", "smallint"),
            ("d", "integer"),
            ("e", "bigint"),
            ("f", "smallint"),
        ] {
            let column = col(t, c);
            assert_eq!(column.data_type, ty);
            assert!(column.not_null);
            let want = format!("nextval('t_{c}_seq'::regclass)");
            assert_eq!(column.default.as_deref(), Some(want.as_str()));
            let s = &m.sequences[&QName::public(&format!("t_{c}_seq"))];
            assert_eq!(s.data_type, ty);
            assert_eq!(s.owned_by, Some((QName::public("t"), c.to_string())));
            assert_eq!((s.increment, s.cache, s.cycle), (1, 1, false));
            assert_eq!((s.min_value, s.max_value, s.start), (None, None, None));
        }
        assert_eq!(m.sequences.len(), 6);
        let m = model("CREATE TABLE app.\"T\" (\"Id\" serial)");
        let t = &m.tables[&QName::new("app", "T")];
        let want = "nextval('app.\"T_Id_seq\"'::regclass)";
        assert_eq!(col(t, "Id").default.as_deref(), Some(want));
        assert!(m.sequences.contains_key(&QName::new("app", "T_Id_seq")));
    }

    #[test]
    fn identity_columns() {
        let t = table(
            "CREATE TABLE t (a int GENERATED ALWAYS AS IDENTITY, b bigint GENERATED BY DEFAULT \
             AS IDENTITY (START WITH 10 INCREMENT BY 5 CACHE 2), c int)",
        );
        assert_eq!(col(&t, "a").identity, Some(Identity::Always));
        assert_eq!(col(&t, "b").identity, Some(Identity::ByDefault));
        assert!(col(&t, "a").not_null && col(&t, "b").not_null);
        assert_eq!(col(&t, "a").default, None);
        let m = model(
            "CREATE TABLE t (a int NOT NULL, b int NOT NULL, c int);\n\
             ALTER TABLE public.t ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY (\n    \
             SEQUENCE NAME public.t_a_seq\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n    \
             NO MAXVALUE\n    CACHE 1\n);\n\
             ALTER TABLE t ALTER b ADD GENERATED BY DEFAULT AS IDENTITY",
        );
        let a = table(
            "CREATE TABLE t (a int GENERATED ALWAYS AS IDENTITY, b int \
             GENERATED BY DEFAULT AS IDENTITY, c int)",
        );
        assert_eq!(m.tables[&QName::public("t")], a);
        assert!(m.sequences.is_empty());
    }

    #[test]
    fn generated_columns() {
        let t = table(
            "CREATE TABLE t (w numeric, h numeric, area numeric GENERATED ALWAYS AS (w * H) STORED, \
             v int GENERATED ALWAYS AS ((w + 1)) VIRTUAL NOT NULL)",
        );
        assert_eq!(col(&t, "area").generated.as_deref(), Some("w * h"));
        assert_eq!(col(&t, "area").default, None);
        assert_eq!(col(&t, "v").generated.as_deref(), Some("w + 1"));
        assert!(col(&t, "v").not_null);
    }

    #[test]
    fn unnamed_constraint_names() {
        let t = table(
            "CREATE TABLE items (\n  id int PRIMARY KEY,\n  code text UNIQUE,\n  a int, b int,\n  \
             price numeric CHECK (price > 0),\n  owner_id int REFERENCES users,\n  \
             UNIQUE (a, b),\n  CHECK (a < b),\n  CHECK (b > 0),\n  CHECK (true),\n  \
             FOREIGN KEY (a, b) REFERENCES pairs (x, y)\n)",
        );
        #[rustfmt::skip]
        assert_eq!(cons(&t), [
            "items_a_b_fkey: FOREIGN KEY (a, b) REFERENCES pairs(x, y)",
            "items_a_b_key: UNIQUE (a, b)",
            "items_b_check: CHECK (b > 0)",
            "items_check: CHECK (a < b)",
            "items_check1: CHECK (true)",
            "items_code_key: UNIQUE (code)",
            "items_owner_id_fkey: FOREIGN KEY (owner_id) REFERENCES users",
            "items_pkey: PRIMARY KEY (id)",
            "items_price_check: CHECK (price > 0)",
        ]);
        assert!(col(&t, "id").not_null);
        let c = t.constraint("items_check").unwrap();
        assert_eq!(c.columns, ["a", "b"]);
        assert_eq!(
            t.constraint("items_check1").unwrap().columns,
            Vec::<String>::new()
        );
        let fk = t.constraint("items_a_b_fkey").unwrap();
        assert_eq!(fk.references, Some(QName::public("pairs")));
        assert_eq!(
            (fk.kind.clone(), fk.columns.clone()),
            (ConstraintKind::ForeignKey, vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn named_constraints_and_attributes() {
        let t = table(
            "CREATE TABLE s.t (\n  id int CONSTRAINT t_id PRIMARY KEY,\n  \
             o int CONSTRAINT fk_o REFERENCES s.other (id) MATCH FULL ON DELETE CASCADE ON UPDATE \
             SET NULL DEFERRABLE INITIALLY DEFERRED,\n  p int,\n  \
             CONSTRAINT fk_p FOREIGN KEY (p) REFERENCES public.parent ON DELETE SET NULL (p) \
             NOT VALID,\n  CONSTRAINT positive CHECK (p > 0) NO INHERIT,\n  \
             CONSTRAINT u UNIQUE NULLS NOT DISTINCT (o) INCLUDE (p) WITH (fillfactor = 70) \
             USING INDEX TABLESPACE fast\n)",
        );
        #[rustfmt::skip]
        assert_eq!(cons(&t), [
            "fk_o: FOREIGN KEY (o) REFERENCES s.other(id) MATCH FULL ON UPDATE SET NULL ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
            "fk_p: FOREIGN KEY (p) REFERENCES parent ON DELETE SET NULL (p) NOT VALID",
            "positive: CHECK (p > 0) NO INHERIT",
            "t_id: PRIMARY KEY (id)",
            "u: UNIQUE NULLS NOT DISTINCT (o) INCLUDE (p)",
        ]);
        assert_eq!(t.name, QName::new("s", "t"));
        assert_eq!(
            t.constraint("fk_o").unwrap().references,
            Some(QName::new("s", "other"))
        );
    }

    #[test]
    fn check_naming_follows_mentioned_columns() {
        let t = table(
            "CREATE TABLE t (a int CHECK (a > 0) CHECK (a < 10), b int CHECK (a <> b), \
             c int CHECK (lower(x::text) = 'y'), CHECK (c > 1))",
        );
        #[rustfmt::skip]
        assert_eq!(cons(&t), [
            "t_a_check: CHECK (a > 0)",
            "t_a_check1: CHECK (a < 10)",
            "t_c_check: CHECK (c > 1)",
            "t_check: CHECK (a <> b)",
            "t_check1: CHECK (lower(x::text) = 'y')",
        ]);
    }

    #[test]
    fn exclude_constraints() {
        let t = table(
            "CREATE TABLE r (room int, during tsrange, \
             EXCLUDE USING gist (room WITH =, during WITH &&) WHERE (room > 0), \
             CONSTRAINT nx EXCLUDE (lower(during) WITH =))",
        );
        #[rustfmt::skip]
        assert_eq!(cons(&t), [
            "nx: EXCLUDE USING gist (lower(during) WITH =)",
            "r_room_during_excl: EXCLUDE USING gist (room WITH =, during WITH &&) WHERE (room > 0)",
        ]);
        assert_eq!(
            t.constraint("r_room_during_excl").unwrap().kind,
            ConstraintKind::Exclude
        );
        assert_eq!(
            t.constraint("r_room_during_excl").unwrap().columns,
            ["room", "during"]
        );
    }

    #[test]
    fn long_names_are_truncated_like_postgres() {
        let long = "a".repeat(70);
        let t = table(&format!(
            "CREATE TABLE {long} (id int PRIMARY KEY, {c} int UNIQUE)",
            c = "b".repeat(40)
        ));
        assert_eq!(t.name.name, "a".repeat(63));
        assert_eq!(t.constraints[1].name, format!("{}_pkey", "a".repeat(58)));
        // 63 - 1 - 4 = 58 for both parts, taken from the longer first: 29 + 29.
        let want = format!("{}_{}_key", "a".repeat(29), "b".repeat(29));
        assert_eq!(t.constraints[0].name, want);
        assert!(t.constraints.iter().all(|c| c.name.len() <= 63));
        assert_eq!(
            make_object_name("t", Some("é".repeat(40).as_str()), "key").len(),
            62
        );
    }

    #[test]
    fn quoted_mixed_case_and_non_ascii_names() {
        let t = table(
            "CREATE TABLE \"Sales\".\"Order Lines\" (\"ID\" int PRIMARY KEY, Qty int, \
             \"prix_€\" numeric CHECK (\"prix_€\" >= 0), café text UNIQUE, \"a\"\"b\" int)",
        );
        assert_eq!(t.name, QName::new("Sales", "Order Lines"));
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ID", "qty", "prix_€", "café", "a\"b"]);
        #[rustfmt::skip]
        assert_eq!(cons(&t), [
            "Order Lines_café_key: UNIQUE (\"café\")",
            "Order Lines_pkey: PRIMARY KEY (\"ID\")",
            "Order Lines_prix_€_check: CHECK (prix_€ >= 0)",
        ]);
    }

    #[test]
    fn comments_in_odd_places() {
        let sql = "/* header */ CREATE /* x */ TABLE -- name next\n public . /* c */ t (\n  \
                   -- first column\n  id /* type: */ int /* c */ PRIMARY /* k */ KEY, -- pk\n  \
                   n text DEFAULT /* d */ 'a -- not a comment' -- c\n  /* multi\n line */ NOT NULL\n)";
        let t = table(sql);
        assert_eq!(t.name, QName::public("t"));
        assert_eq!(
            col(&t, "n").default.as_deref(),
            Some("'a -- not a comment'")
        );
        assert!(col(&t, "n").not_null);
        assert_eq!(cons(&t), ["t_pkey: PRIMARY KEY (id)"]);
    }

    #[test]
    fn indexes_named_and_unnamed() {
        let t = table(
            "CREATE TABLE t (id int, email text, a int, b int, active bool);\n\
             CREATE INDEX ON t (email);\n\
             CREATE UNIQUE INDEX IF NOT EXISTS t_email_lower ON ONLY public.t USING btree \
             (LOWER(email)) WHERE active;\n\
             create index on T (a desc nulls first, b asc nulls last) include (id);\n\
             CREATE INDEX CONCURRENTLY ON t ((a + b), lower(email));\n\
             CREATE INDEX ix_g ON t USING gin (email gin_trgm_ops) WITH (fastupdate = off);\n\
             CREATE INDEX ON t (email COLLATE \"C\" text_pattern_ops DESC NULLS LAST)",
        );
        #[rustfmt::skip]
        assert_eq!(idx(&t), [
            "CREATE INDEX ix_g ON public.t USING gin (email gin_trgm_ops) WITH (fastupdate = off)",
            "CREATE INDEX t_a_b_id_idx ON public.t USING btree (a DESC, b) INCLUDE (id)",
            "CREATE INDEX t_email_idx ON public.t USING btree (email)",
            "CREATE INDEX t_email_idx1 ON public.t USING btree (email COLLATE \"C\" text_pattern_ops DESC NULLS LAST)",
            "CREATE UNIQUE INDEX t_email_lower ON public.t USING btree (lower(email)) WHERE (active)",
            "CREATE INDEX t_expr_expr1_idx ON public.t USING btree ((a + b), lower(email))",
        ]);
        assert!(t.index("t_email_lower").unwrap().unique);
        assert!(!t.index("t_email_idx").unwrap().unique);
    }

    #[test]
    fn two_index_spellings_are_equal() {
        let a =
            table("CREATE TABLE t (a int, b text); CREATE INDEX i ON t (a, lower(b)) WHERE a > 0");
        let b = table(
            "CREATE TABLE t (a int, b text);\ncreate  index i on public.t using BTREE \
             (A ASC NULLS LAST, LOWER( \"b\" ))  where (A>0)",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn sequences_and_their_defaults() {
        let m = model(
            "CREATE TABLE t (id int);\n\
             CREATE SEQUENCE s1;\n\
             CREATE SEQUENCE IF NOT EXISTS app.s2 AS integer INCREMENT BY -2 MINVALUE -100 \
             MAXVALUE -1 START WITH -1 CACHE 20 CYCLE;\n\
             CREATE SEQUENCE s3 AS smallint START 5 NO MINVALUE NO MAXVALUE INCREMENT 1 NO CYCLE \
             OWNED BY t.id;\n\
             create sequence s4 minvalue 1 maxvalue 9223372036854775807 start with 1",
        );
        let s1 = &m.sequences[&QName::public("s1")];
        assert_eq!(*s1, new_sequence(QName::public("s1")));
        assert_eq!(s1.data_type, "bigint");
        let s2 = &m.sequences[&QName::new("app", "s2")];
        assert_eq!(
            (s2.data_type.as_str(), s2.increment, s2.cache, s2.cycle),
            ("integer", -2, 20, true)
        );
        assert_eq!(
            (s2.min_value, s2.max_value, s2.start),
            (Some(-100), None, None)
        );
        let s3 = &m.sequences[&QName::public("s3")];
        assert_eq!((s3.data_type.as_str(), s3.start), ("smallint", Some(5)));
        assert_eq!(s3.owned_by, Some((QName::public("t"), "id".into())));
        assert_eq!(
            m.sequences[&QName::public("s4")],
            new_sequence(QName::public("s4"))
        );
    }

    const PG_DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\
        SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
        SELECT pg_catalog.set_config('search_path', '', false);\n\
        SET default_tablespace = '';\nSET default_table_access_method = heap;\n\n\
        --\n-- Name: film; Type: TABLE; Schema: public; Owner: postgres\n--\n\n\
        CREATE TABLE public.film (\n\
        \x20   film_id integer NOT NULL,\n\
        \x20   title character varying(255) NOT NULL,\n\
        \x20   description text,\n\
        \x20   language_id smallint NOT NULL,\n\
        \x20   rental_rate numeric(4,2) DEFAULT 4.99 NOT NULL,\n\
        \x20   rating public.mpaa_rating DEFAULT 'G'::public.mpaa_rating,\n\
        \x20   last_update timestamp with time zone DEFAULT now() NOT NULL,\n\
        \x20   special_features text[],\n\
        \x20   CONSTRAINT film_rental_rate_check CHECK ((rental_rate >= 0))\n\
        );\n\n\
        ALTER TABLE public.film OWNER TO postgres;\n\n\
        COMMENT ON TABLE public.film IS 'Films; with a semicolon';\n\n\
        CREATE SEQUENCE public.film_film_id_seq\n\
        \x20   AS integer\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n\
        \x20   CACHE 1;\n\n\
        ALTER SEQUENCE public.film_film_id_seq OWNER TO postgres;\n\
        ALTER SEQUENCE public.film_film_id_seq OWNED BY public.film.film_id;\n\n\
        ALTER TABLE ONLY public.film ALTER COLUMN film_id SET DEFAULT \
        nextval('public.film_film_id_seq'::regclass);\n\n\
        SELECT pg_catalog.setval('public.film_film_id_seq', 1000, true);\n\n\
        ALTER TABLE ONLY public.film\n    ADD CONSTRAINT film_pkey PRIMARY KEY (film_id);\n\n\
        CREATE INDEX film_title_idx ON public.film USING btree (title);\n\n\
        CREATE TRIGGER last_updated BEFORE UPDATE ON public.film FOR EACH ROW EXECUTE FUNCTION \
        public.last_updated();\n\n\
        ALTER TABLE ONLY public.film\n    ADD CONSTRAINT film_language_id_fkey FOREIGN KEY \
        (language_id) REFERENCES public.language(language_id) ON UPDATE CASCADE ON DELETE RESTRICT;\n\n\
        GRANT ALL ON TABLE public.film TO app;\n";

    #[test]
    fn pg_dump_output_of_a_real_table() {
        let m = model(PG_DUMP);
        let t = &m.tables[&QName::public("film")];
        let id = col(t, "film_id");
        assert_eq!(
            id.default.as_deref(),
            Some("nextval('film_film_id_seq'::regclass)")
        );
        assert!(id.not_null);
        assert_eq!(col(t, "rating").data_type, "mpaa_rating");
        assert_eq!(
            col(t, "rating").default.as_deref(),
            Some("'G'::mpaa_rating")
        );
        assert_eq!(col(t, "special_features").data_type, "text[]");
        #[rustfmt::skip]
        assert_eq!(cons(t), [
            "film_language_id_fkey: FOREIGN KEY (language_id) REFERENCES language(language_id) ON UPDATE CASCADE ON DELETE RESTRICT",
            "film_pkey: PRIMARY KEY (film_id)",
            "film_rental_rate_check: CHECK (rental_rate >= 0)",
        ]);
        assert_eq!(
            idx(t),
            ["CREATE INDEX film_title_idx ON public.film USING btree (title)"]
        );
        let s = &m.sequences[&QName::public("film_film_id_seq")];
        assert_eq!(s.owned_by, Some((QName::public("film"), "film_id".into())));
        assert_eq!(
            (s.data_type.as_str(), s.start, s.min_value),
            ("integer", None, None)
        );

        // The same table written by hand.
        let hand = model(
            "create table film (\n  film_id SERIAL primary key,\n  title varchar(255) not null,\n  \
             description TEXT,\n  language_id int2 not null references language (language_id) \
             on update cascade on delete restrict,\n  rental_rate decimal(4, 2) not null default 4.99 \
             check (rental_rate >= 0),\n  rating mpaa_rating default 'G'::mpaa_rating,\n  \
             last_update timestamptz not null default NOW(),\n  special_features text ARRAY\n);\n\
             create index film_title_idx on film (title);",
        );
        assert_eq!(m, hand);
    }

    #[test]
    fn two_spellings_of_a_table_are_equal() {
        let a = model(
            "CREATE TABLE orders (id bigint PRIMARY KEY, user_id int NOT NULL REFERENCES users(id) \
             ON DELETE CASCADE, total numeric(10,2) DEFAULT 0 CHECK (total >= 0), code text UNIQUE)",
        );
        let b = model(
            "create table PUBLIC.\"orders\" (\n  \"id\" INT8 not null,\n  User_Id INTEGER not null,\n  \
             TOTAL NUMERIC (10 , 2) DEFAULT (0),\n  code TEXT,\n  \
             constraint orders_pkey primary key (id),\n  check ((total>=0)),\n  \
             foreign key (user_id) references public.users (id) on delete cascade\n);\n\
             alter table only orders add unique (code)",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn alter_table_forms() {
        let t = table(
            "CREATE TABLE t (a int, b int, c int);\n\
             ALTER TABLE IF EXISTS ONLY t ALTER COLUMN a SET DEFAULT 1, ALTER b SET NOT NULL, \
             ADD CONSTRAINT t_c_nn CHECK (c IS NOT NULL), ADD COLUMN d serial, OWNER TO x;\n\
             ALTER TABLE t ENABLE ROW LEVEL SECURITY;\n\
             ALTER TABLE t ALTER COLUMN c SET STATISTICS 100, CLUSTER ON t_c_nn;\n\
             ALTER TABLE t ADD PRIMARY KEY (a), ALTER COLUMN a DROP DEFAULT",
        );
        assert_eq!(col(&t, "a").default, None);
        assert!(col(&t, "a").not_null && col(&t, "b").not_null);
        assert_eq!(col(&t, "d").data_type, "integer");
        assert_eq!(
            cons(&t),
            ["t_c_nn: CHECK (c is not null)", "t_pkey: PRIMARY KEY (a)"]
        );
    }

    #[test]
    fn ignored_statements() {
        let t = table(
            "SET search_path = public;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
             CREATE TABLE t (a int);\nCOMMENT ON COLUMN t.a IS 'x';\nGRANT SELECT ON t TO r;\n\
             CREATE VIEW v AS SELECT * FROM t;\nCREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW \
             EXECUTE FUNCTION f();\nCREATE FUNCTION f() RETURNS trigger AS $$BEGIN RETURN NEW; END$$ \
             LANGUAGE plpgsql;\nALTER TABLE t OWNER TO app;\nREVOKE ALL ON t FROM PUBLIC",
        );
        assert_eq!(t.columns.len(), 1);
    }

    #[test]
    fn like_inherits_partition_by_with_tablespace_are_ignored() {
        let t = table(
            "CREATE UNLOGGED TABLE IF NOT EXISTS t (LIKE base INCLUDING ALL, a int) \
             INHERITS (base) PARTITION BY RANGE (a) WITH (fillfactor = 70) TABLESPACE fast",
        );
        assert_eq!(t.columns.len(), 1);
        let t = table("CREATE TABLE t ()");
        assert!(t.columns.is_empty());
    }

    #[test]
    fn files_map_and_several_files() {
        let d = read(&[
            (
                "tables/a.sql",
                "CREATE TABLE a (id int); CREATE INDEX ON b (x)",
            ),
            (
                "tables/b.sql",
                "CREATE TABLE app.c (id int);\nCREATE TABLE b (x int)",
            ),
        ]);
        assert_eq!(d.files[&QName::public("a")], "tables/a.sql");
        assert_eq!(d.files[&QName::public("b")], "tables/b.sql");
        assert_eq!(d.files[&QName::new("app", "c")], "tables/b.sql");
        assert_eq!(d.model.tables[&QName::public("b")].indexes.len(), 1);
    }

    // ----- errors -----

    #[test]
    fn error_table_declared_twice() {
        let e = err(&[
            ("tables/a.sql", "CREATE TABLE t (a int)"),
            ("tables/b.sql", "-- again\n\nCREATE TABLE public.T (a int)"),
        ]);
        assert_eq!(
            e,
            "tables/b.sql line 3: table t is declared twice (also in tables/a.sql)"
        );
    }

    #[test]
    fn a_file_may_declare_only_a_shared_sequence() {
        let d = read(&[
            ("tables/00_ids.sql", "CREATE SEQUENCE shared_ids START 1000"),
            (
                "tables/a.sql",
                "CREATE TABLE a (id bigint DEFAULT nextval('shared_ids') PRIMARY KEY)",
            ),
            (
                "tables/b.sql",
                "CREATE TABLE b (id bigint DEFAULT nextval('shared_ids') PRIMARY KEY)",
            ),
        ]);
        assert!(d.model.sequences.contains_key(&QName::public("shared_ids")));
        assert_eq!(
            d.sequence_files[&QName::public("shared_ids")],
            "tables/00_ids.sql"
        );
        assert_eq!(d.model.tables.len(), 2);
    }

    #[test]
    fn error_file_without_table() {
        let e = err(&[
            ("tables/a.sql", "CREATE TABLE t (a int)"),
            ("tables/b.sql", "CREATE INDEX ON t (a)"),
        ]);
        assert!(
            e.starts_with("tables/b.sql line 1: declares no table or sequence"),
            "{e}"
        );
        let e = err(&[("tables/c.sql", "-- nothing\n")]);
        assert!(
            e.starts_with("tables/c.sql line 1: declares no table or sequence"),
            "{e}"
        );
    }

    #[test]
    fn error_undeclared_tables_and_columns() {
        #[rustfmt::skip]
        check(err1, &[
            ("CREATE TABLE t (a int);\nCREATE INDEX i ON u (a)", "tables/t.sql line 2: table u is not declared in tables/"),
            ("CREATE TABLE t (a int);\n\nALTER TABLE ONLY app.u ADD CONSTRAINT k UNIQUE (a)", "tables/t.sql line 3: table app.u is not declared in tables/"),
            ("CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN b SET DEFAULT 1", "tables/t.sql line 2: column b of table t is not declared"),
            ("CREATE TABLE t (a int,\n UNIQUE (b))", "tables/t.sql line 2: column b of table t is not declared"),
            ("CREATE TABLE t (a int);\nCREATE INDEX ON t (b)", "tables/t.sql line 2: index t_b_idx: column b of table t is not declared"),
            ("CREATE TABLE t (a int);\nCREATE SEQUENCE s OWNED BY u.a", "tables/t.sql line 2: sequence s is OWNED BY u.a, but table u is not declared in tables/"),
            ("CREATE TABLE t (a int);\nALTER SEQUENCE s OWNED BY t.a", "tables/t.sql line 2: sequence s is not declared in tables/"),
        ]);
    }

    #[test]
    fn error_duplicates() {
        #[rustfmt::skip]
        check(err1, &[
            ("CREATE TABLE t (\n  a int,\n  A text\n)", "tables/t.sql line 3: column a of table t is declared twice"),
            ("CREATE TABLE t (a int PRIMARY KEY,\n b int PRIMARY KEY)", "tables/t.sql line 2: multiple primary keys for table t"),
            ("CREATE TABLE t (a int CONSTRAINT k CHECK (a > 0),\n CONSTRAINT k CHECK (a < 9))", "tables/t.sql line 2: constraint k is declared twice (table t)"),
            ("CREATE TABLE t (a int);\nCREATE INDEX i ON t (a);\nCREATE INDEX i ON t (a)", "tables/t.sql line 3: index i is declared twice"),
            ("CREATE TABLE t (a int DEFAULT 1 DEFAULT 2)", "tables/t.sql line 1: multiple defaults for column a"),
            ("CREATE TABLE t (a int CONSTRAINT k)", "tables/t.sql line 1: column a: CONSTRAINT name without a constraint"),
            ("CREATE TABLE t (a serial DEFAULT 1)", "tables/t.sql line 1: column a: a serial column cannot have a default"),
        ]);
    }

    #[test]
    fn error_unsupported_create_table_forms() {
        #[rustfmt::skip]
        check(err1, &[
            ("CREATE TABLE t AS SELECT 1", "tables/t.sql line 1: table t: CREATE TABLE ... AS is not supported in tables/; declare the columns"),
            ("CREATE TABLE t (a, b) AS SELECT 1, 2", "tables/t.sql line 1: table t: CREATE TABLE ... AS is not supported in tables/; declare the columns"),
            ("CREATE TABLE p1\n PARTITION OF p FOR VALUES IN (1)", "tables/t.sql line 2: table p1: CREATE TABLE ... PARTITION OF is not supported in tables/"),
            ("CREATE TEMP TABLE t (a int)", "tables/t.sql line 1: temporary tables cannot be declared in tables/"),
            ("CREATE TABLE t", "tables/t.sql line 1: table t: expected a parenthesized column list"),
        ]);
    }

    #[test]
    fn error_syntax_in_create_table() {
        #[rustfmt::skip]
        check(err1, &[
            ("CREATE TABLE t (\n  a int,\n  b int FOO\n)", "tables/t.sql line 3: unexpected \"FOO\" in the definition of column b"),
            ("CREATE TABLE t (a int,, b int)", "tables/t.sql line 1: table t: empty element in the column list (stray comma?)"),
            ("CREATE TABLE t (a int,\n PRIMARY KEY)", "tables/t.sql line 2: expected a parenthesized column list"),
            ("CREATE TABLE t (a PRIMARY KEY)", "tables/t.sql line 1: expected a type for column a"),
            ("CREATE TABLE t (a int CHECK)", "tables/t.sql line 1: expected a parenthesized expression after CHECK"),
            ("CREATE TABLE t (a int REFERENCES)", "tables/t.sql line 1: expected a table name after REFERENCES"),
            ("CREATE TABLE t (a int GENERATED ALWAYS)", "tables/t.sql line 1: expected AS after GENERATED ..."),
            ("CREATE TABLE t (a int); CREATE SEQUENCE s INCREMENT 0", "tables/t.sql line 1: INCREMENT must not be zero"),
            ("CREATE TABLE t (a int);\nALTER TABLE t DROP COLUMN a", "tables/t.sql line 2: ALTER TABLE t DROP ...: tables/ declares the end state; change the CREATE TABLE instead"),
        ]);
    }

    #[test]
    fn never_panics() {
        let corpus = "CREATE TABLE \"S\".t (id serial PRIMARY KEY, a numeric(10,2) DEFAULT -1.5 CHECK \
            (a > 0), b int REFERENCES u (id) ON DELETE SET NULL (b), c text COLLATE \"C\" UNIQUE, \
            d int GENERATED ALWAYS AS (a * 2) STORED, EXCLUDE USING gist (c WITH =), FOREIGN KEY \
            (b) REFERENCES v); CREATE UNIQUE INDEX ON \"S\".t ((a + 1) DESC) INCLUDE (b) WHERE b > 0; \
            CREATE SEQUENCE s AS int OWNED BY \"S\".t.b; ALTER TABLE \"S\".t ALTER b ADD GENERATED BY DEFAULT \
            AS IDENTITY (START 1)";
        let mut inputs: Vec<String> = corpus
            .char_indices()
            .map(|(i, _)| corpus[..i].to_string())
            .collect();
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let words = [
            "(",
            ")",
            ",",
            "int",
            "CHECK",
            "DEFAULT",
            "PRIMARY",
            "KEY",
            "REFERENCES",
            "'x",
            "\"",
            "$$",
            "::",
            "-",
            "[",
            "]",
            "é",
            "NOT",
            "NULL",
            "GENERATED",
            "AS",
            "IDENTITY",
            "t",
            ".",
        ];
        for _ in 0..400 {
            let mut s = String::from("CREATE TABLE t (");
            for _ in 0..(seed % 24) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(words[(seed % words.len() as u64) as usize]);
                s.push(' ');
            }
            inputs.push(s);
        }
        for s in &inputs {
            let _ = (canonical_type(s), normalize_expr(s));
            let statements: Vec<sql::Statement> = match sql::split_statements(s) {
                Ok(st) => st,
                Err(_) => vec![sql::Statement {
                    text: s.clone(),
                    line: 1,
                }],
            };
            let f = SqlFile {
                path: "tables/f.sql".into(),
                statements,
                checksum: String::new(),
                wrapper: None,
            };
            let _ = read_tables(&[f]);
        }
        let m = read(&[("tables/f.sql", corpus)]).model;
        assert_eq!(m.tables[&QName::new("S", "t")].constraints.len(), 6);
    }
}
