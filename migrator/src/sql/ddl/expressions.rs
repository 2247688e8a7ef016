//! Expressions (defaults, checks, generated columns, index elements and
//! predicates) as normalized text: canonical spacing and case, type names
//! after `::` canonical, regclass literals as PostgreSQL writes them from
//! `search_path = public`; and the identifiers an expression mentions.

use stonescriptdb_shared::names::quote_literal;

use super::names::rel_name;
use super::types::parse_type;
use crate::sql::lex::{sig_tokens, Kind, Tok};
use crate::sql::view::{string_value, View};
use crate::table_model::{ident, QName};

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

/// Normalized text of an expression's tokens (see `super::normalize_expr`); `strip`: drop one
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
