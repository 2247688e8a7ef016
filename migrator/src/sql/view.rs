//! The one cursor over the lexer's significant tokens (`View`) and the
//! values of single tokens (identifiers, strings, qualified names), used by
//! every reader of this module: statements, `tables/` DDL, catalog text.

use super::error::SqlError;
use super::lex::{Kind, Tok};

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
pub(crate) const MAX_IDENT: usize = 63;

/// A list of significant tokens with lookups; out-of-range lookups simply answer "no".
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) src: &'a str,
    pub(crate) t: &'a [Tok],
    /// The line `src` starts on: token lines (and errors) are offset by it.
    pub(crate) first_line: usize,
}

impl<'a> View<'a> {
    /// The tokens `t` of `src` (from `lex::sig_tokens`), `src` starting on line 1.
    pub(crate) fn new(src: &'a str, t: &'a [Tok]) -> View<'a> {
        View::at(src, t, 1)
    }
    /// Like [`View::new`], `src` starting on line `first_line` of its file.
    pub(crate) fn at(src: &'a str, t: &'a [Tok], first_line: usize) -> View<'a> {
        View { src, t, first_line }
    }
    pub(crate) fn get(&self, i: usize) -> Option<&'a Tok> {
        self.t.get(i)
    }
    pub(crate) fn len(&self) -> usize {
        self.t.len()
    }
    /// Lower-cased text of the unquoted word at `i`, or "".
    pub(crate) fn word(&self, i: usize) -> String {
        let w = self.get(i).filter(|x| x.kind == Kind::Word);
        w.map(|x| x.text(self.src).to_ascii_lowercase())
            .unwrap_or_default()
    }
    pub(crate) fn is(&self, i: usize, kw: &str) -> bool {
        self.get(i).is_some_and(|x| x.is_word(self.src, kw))
    }
    pub(crate) fn any(&self, i: usize, kws: &[&str]) -> bool {
        kws.iter().any(|k| self.is(i, k))
    }
    pub(crate) fn sym(&self, i: usize, p: &str) -> bool {
        self.get(i).is_some_and(|x| x.is_sym(self.src, p))
    }
    pub(crate) fn nest(&self, i: usize) -> isize {
        self.get(i).map_or(0, |x| x.nest(self.src))
    }
    /// Is the token at `i` an identifier (unquoted word or quoted)?
    pub(crate) fn is_ident(&self, i: usize) -> bool {
        self.get(i).is_some_and(Tok::is_ident)
    }
    /// Value of the identifier at `i` (see [`ident_value`]).
    pub(crate) fn ident(&self, i: usize) -> Option<String> {
        self.get(i).and_then(|t| ident_value(self.src, t))
    }
    /// Line of token `i` (or of the last token; of the text's start for no tokens) in the file.
    pub(crate) fn line(&self, i: usize) -> usize {
        self.get(i)
            .or(self.t.last())
            .map_or(self.first_line, |x| x.line + self.first_line - 1)
    }
    /// Text of token `i` for messages ("end of statement" past the end).
    pub(crate) fn shown(&self, i: usize) -> &'a str {
        self.get(i).map_or("end of statement", |t| t.text(self.src))
    }
    /// An error at token `i`.
    pub(crate) fn err(&self, i: usize, message: impl Into<String>) -> SqlError {
        SqlError::new(self.line(i), message)
    }
    /// "unexpected "x" in `what`" at token `i`.
    pub(crate) fn unexpected(&self, i: usize, what: &str) -> SqlError {
        self.err(i, format!("unexpected \"{}\" in {what}", self.shown(i)))
    }
    pub(crate) fn sub(&self, a: usize, b: usize) -> View<'a> {
        View {
            t: self.t.get(a..b).unwrap_or(&[]),
            ..*self
        }
    }
    /// The tokens from `a` to the end.
    pub(crate) fn from(&self, a: usize) -> View<'a> {
        self.sub(a, self.len())
    }
    /// Index of the `)` matching the `(` at `open` (None when `open` is not a `(`).
    pub(crate) fn close(&self, open: usize) -> Option<usize> {
        if !self.sym(open, "(") {
            return None;
        }
        let mut depth = 0usize;
        for (k, x) in self.t.iter().enumerate().skip(open) {
            if x.is_sym(self.src, "(") {
                depth += 1;
            } else if x.is_sym(self.src, ")") {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(k);
                }
            }
        }
        None
    }
    /// Index after a parenthesized group at `i` (or `i` when there is none).
    pub(crate) fn after_group(&self, i: usize) -> usize {
        self.close(i).map_or(i, |c| c + 1)
    }
    /// `i` past the words `kws` when they all follow at `i` (`IF NOT EXISTS`), else `i`.
    pub(crate) fn opt(&self, i: usize, kws: &[&str]) -> usize {
        let all = kws.iter().enumerate().all(|(k, kw)| self.is(i + k, kw));
        if all {
            i + kws.len()
        } else {
            i
        }
    }
    /// `i` past the table words of `CREATE [GLOBAL | LOCAL] [TEMP | TEMPORARY | UNLOGGED]`.
    pub(crate) fn past_persistence(&self, mut i: usize) -> usize {
        while self.any(i, &["global", "local", "temp", "temporary", "unlogged"]) {
            i += 1;
        }
        i
    }
    /// The words among the first `n` tokens, upper-cased and joined by spaces (for messages:
    /// `DROP DATABASE`).
    pub(crate) fn upper_words(&self, n: usize) -> String {
        let words = (0..n.min(self.len())).map(|i| self.word(i).to_ascii_uppercase());
        words
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }
    /// (start, end) index ranges between top-level commas.
    pub(crate) fn ranges(&self) -> Vec<(usize, usize)> {
        let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0);
        for (k, x) in self.t.iter().enumerate() {
            depth = depth.saturating_add_signed(x.nest(self.src));
            if depth == 0 && x.is_sym(self.src, ",") {
                out.push((start, k));
                start = k + 1;
            }
        }
        out.push((start, self.len()));
        out
    }
    pub(crate) fn parts(&self) -> Vec<View<'a>> {
        self.ranges()
            .into_iter()
            .map(|(a, b)| self.sub(a, b))
            .collect()
    }
    /// Source text from the first to the last token, verbatim.
    pub(crate) fn text(&self) -> &'a str {
        match (self.t.first(), self.t.last()) {
            (Some(f), Some(l)) => self.src.get(f.start..l.end).unwrap_or(""),
            _ => "",
        }
    }
    /// Tokens as written. `tight`: canonical spacing (see `needs_space`, plus a space after `)`
    /// or `]` before a word: `timestamp(3) with time zone`); otherwise one space wherever the
    /// source had whitespace or a comment.
    pub(crate) fn render(&self, tight: bool) -> String {
        let mut out = String::new();
        let mut prev: Option<&Tok> = None;
        for t in self.t {
            let space = prev.is_some_and(|p| {
                let closer = p.nest(self.src) < 0 && wordy(t.kind);
                if tight {
                    needs_space(p, t) || closer
                } else {
                    t.start > p.end
                }
            });
            if space {
                out.push(' ');
            }
            out.push_str(t.text(self.src));
            prev = Some(t);
        }
        out
    }
    /// Qualified name `a[.b[.c]]` at `i`: (identifier values, index after the name).
    pub(crate) fn qname(&self, i: usize) -> Option<(Vec<String>, usize)> {
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
}

/// Identifier value as PostgreSQL reads it: unquoted words ASCII-lower-cased, quoted ones kept
/// exact (`""` undoubled), both truncated to 63 bytes. None for other tokens and for `""`
/// (PostgreSQL refuses a zero-length identifier).
pub(crate) fn ident_value(src: &str, t: &Tok) -> Option<String> {
    let v = match t.kind {
        Kind::Word => t.text(src).to_ascii_lowercase(),
        Kind::QIdent => unquote(t.text(src), '"'),
        _ => return None,
    };
    (!v.is_empty()).then(|| clip(&v, MAX_IDENT).to_string())
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn clip(s: &str, max: usize) -> &str {
    let mut n = max.min(s.len());
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    s.get(..n).unwrap_or("")
}

/// Strips an optional prefix (`U&`, `N`...) and the quotes, and undoubles the quote character.
pub(crate) fn unquote(text: &str, q: char) -> String {
    let Some(i) = text.find(q) else {
        return text.to_string();
    };
    let inner = text.get(i + 1..).unwrap_or("");
    let inner = inner.strip_suffix(q).unwrap_or(inner);
    inner.replace(&format!("{q}{q}"), &q.to_string())
}

/// Value of a string literal token (`E''` escapes decoded, `''` undoubled).
pub(crate) fn string_value(src: &str, t: &Tok) -> String {
    let text = t.text(src);
    if t.kind != Kind::EStr {
        return unquote(text, '\'');
    }
    let inner = text.get(2..).unwrap_or("");
    let inner = if t.open {
        inner
    } else {
        inner.strip_suffix('\'').unwrap_or(inner)
    };
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.peek() == Some(&'\'') {
            chars.next();
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().unwrap_or('\\');
        let (radix, max) = match e {
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='7' => (8, 3),
            _ => {
                let simple = [
                    ('b', '\u{8}'),
                    ('f', '\u{c}'),
                    ('n', '\n'),
                    ('r', '\r'),
                    ('t', '\t'),
                ];
                out.push(simple.iter().find(|(k, _)| *k == e).map_or(e, |(_, v)| *v));
                continue;
            }
        };
        let (mut v, mut n) = if radix == 8 {
            (e.to_digit(8).unwrap_or(0), 1)
        } else {
            (0, 0)
        };
        while let Some(d) = chars
            .peek()
            .and_then(|d| d.to_digit(radix))
            .filter(|_| n < max)
        {
            v = v.saturating_mul(radix).saturating_add(d);
            chars.next();
            n += 1;
        }
        out.push(if n == 0 {
            e
        } else {
            char::from_u32(v).unwrap_or('\u{FFFD}')
        });
    }
    out
}

/// (schema, name) from the parts of a qualified name (`db.schema.name` keeps `schema`).
pub(crate) fn split_name(mut parts: Vec<String>) -> (Option<String>, String) {
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

/// (schema, name) from the parts of a qualified name, an unqualified name in `public`.
pub(crate) fn qualified(parts: Vec<String>) -> (String, String) {
    let (schema, name) = split_name(parts);
    (schema.unwrap_or_else(|| "public".into()), name)
}

pub(crate) fn wordy(k: Kind) -> bool {
    use Kind::*;
    matches!(k, Word | QIdent | Str | EStr | Dollar | Number | Param)
}

/// Canonical spacing: a space only where two words/literals or two operators meet, i.e. where
/// dropping it would change how the text tokenizes.
pub(crate) fn needs_space(a: &Tok, b: &Tok) -> bool {
    let opish = |k: Kind| matches!(k, Kind::Op | Kind::Other);
    (wordy(a.kind) && wordy(b.kind)) || (opish(a.kind) && opish(b.kind))
}
