//! Normalized statement text, for checksums: what a change must alter to
//! count as a change.

use super::lex::{sig_tokens, Kind, Tok};
use super::statement::read_one;
use super::view::{needs_space, string_value, View};

/// Text normalized for change detection (checksums).
///
/// Comments are removed; tokens are joined by a single space only where two words/literals (or
/// two operators) meet, so spacing around punctuation does not matter; words, numbers and
/// keywords are ASCII-lower-cased; string literals and quoted identifiers are kept byte-exact
/// (only an `E`/`N`/`U&` prefix is lower-cased); trailing ';' are removed.
///
/// A dollar-quoted routine body — one directly after `AS` or `DO` (or after `LANGUAGE x` in a
/// `DO`) — is code: its tag is ignored and its text is normalized by the same rules, dollar
/// quotes nested inside it being literals kept exact. This only applies when the statement's
/// language is `sql` or `plpgsql` (or not given): bodies in other languages (plpython, C...) and
/// dollar quotes used as plain literals (`VALUES ($$Hello$$)`, `COMMENT ... IS $$x$$`) are kept
/// exact, so a change in them is never missed.
pub fn normalize(sql: &str) -> String {
    read_one();
    let mut out = String::with_capacity(sql.len());
    normalize_into(sql, true, &mut out);
    out
}

pub(super) fn normalize_into(src: &str, top: bool, out: &mut String) {
    let mut toks = sig_tokens(src);
    while top && toks.last().is_some_and(|t| t.is_sym(src, ";")) {
        toks.pop();
    }
    let code = if top {
        code_bodies(View::new(src, &toks))
    } else {
        Vec::new()
    };
    let mut prev: Option<&Tok> = None;
    for (i, t) in toks.iter().enumerate() {
        if prev.is_some_and(|p| needs_space(p, t)) {
            out.push(' ');
        }
        let text = t.text(src);
        match t.kind {
            Kind::Word | Kind::Number | Kind::Param => out.push_str(&text.to_ascii_lowercase()),
            Kind::Str | Kind::EStr | Kind::QIdent => {
                let q = text.find(['\'', '"']).unwrap_or(0);
                out.push_str(&text.get(..q).unwrap_or("").to_ascii_lowercase());
                out.push_str(text.get(q..).unwrap_or(""));
            }
            Kind::Dollar if code.get(i).copied().unwrap_or(false) => {
                out.push_str("$$");
                normalize_into(t.dollar_body(src), false, out);
                out.push_str("$$");
            }
            _ => out.push_str(text),
        }
        prev = Some(t);
    }
}

/// For each token: is it a dollar-quoted routine body in sql/plpgsql (see `normalize`)?
pub(super) fn code_bodies(v: View) -> Vec<bool> {
    let mut flags = vec![false; v.len()];
    let mut seg_start = 0;
    for idx in 0..=v.len() {
        if v.get(idx).is_some_and(|t| !t.is_sym(v.src, ";")) {
            continue;
        }
        let seg = v.sub(seg_start, idx);
        let (mut depth, mut lang) = (0usize, None);
        for k in 0..seg.len() {
            depth = depth.saturating_add_signed(seg.nest(k));
            if depth == 0 && seg.is(k, "language") {
                lang = seg.get(k + 1).map(|n| match n.kind {
                    Kind::Str | Kind::EStr => string_value(v.src, n).to_ascii_lowercase(),
                    _ => seg.ident(k + 1).unwrap_or_default().to_ascii_lowercase(),
                });
            }
        }
        if lang.is_none() || matches!(lang.as_deref(), Some("sql" | "plpgsql")) {
            for k in 0..seg.len() {
                let body = seg
                    .get(k)
                    .is_some_and(|t| t.kind == Kind::Dollar && !t.open)
                    && ((k >= 1 && seg.any(k - 1, &["as", "do"]))
                        || (k >= 2 && seg.is(k - 2, "language")));
                if let Some(f) = flags.get_mut(seg_start + k) {
                    *f = body;
                }
            }
        }
        seg_start = idx + 1;
    }
    flags
}
