//! The tokenizer: one pass over SQL text giving every token (comments
//! included) with its kind, byte range and line. Every reader of the
//! migrator reads these tokens (inside `sql/` through the one cursor,
//! `view::View`); [`tokens`] hands the significant ones to code outside `sql/`.

use super::error::SqlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Word,   // unquoted identifier or keyword (may contain `$` after the first character)
    QIdent, // "..." or U&"..."
    Str,    // '...', N'...', B'...', X'...', U&'...'
    EStr,   // E'...' (backslash escapes)
    Dollar, // $tag$...$tag$
    Number,
    Param, // $1
    Punct, // ( ) , ; [ ] . :
    Op,    // operators, including :: := ..
    Other, // any other single character (\ { } control characters)
    LineComment,
    BlockComment,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub(crate) kind: Kind,
    pub(crate) start: usize, // byte offsets into the source, always on char boundaries
    pub(crate) end: usize,
    pub(crate) line: usize,
    pub(crate) tag: usize, // dollar-quote delimiter length ($$ = 2, $body$ = 6), else 0
    pub(crate) open: bool, // unterminated quote / dollar quote / block comment (runs to the end)
}

impl Tok {
    pub(crate) fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }
    pub(crate) fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::LineComment | Kind::BlockComment)
    }
    pub(crate) fn is_word(&self, src: &str, kw: &str) -> bool {
        self.kind == Kind::Word && self.text(src).eq_ignore_ascii_case(kw)
    }
    /// Punctuation or operator with exactly this text.
    pub(crate) fn is_sym(&self, src: &str, p: &str) -> bool {
        matches!(self.kind, Kind::Punct | Kind::Op) && self.text(src) == p
    }
    pub(crate) fn is_ident(&self) -> bool {
        matches!(self.kind, Kind::Word | Kind::QIdent)
    }
    /// Nesting change: +1 for `(` `[`, -1 for `)` `]`.
    pub(crate) fn nest(&self, src: &str) -> isize {
        match (self.kind, self.text(src)) {
            (Kind::Punct, "(" | "[") => 1,
            (Kind::Punct, ")" | "]") => -1,
            _ => 0,
        }
    }
    /// Body of a dollar-quoted string (without the delimiters).
    pub(crate) fn dollar_body<'a>(&self, src: &'a str) -> &'a str {
        let end = if self.open {
            self.end
        } else {
            self.end.saturating_sub(self.tag)
        };
        src.get(self.start + self.tag..end).unwrap_or("")
    }
}

pub(crate) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

pub(crate) fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

pub(crate) fn is_op_char(c: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?".contains(&c)
}

/// First index from `k` whose byte does not satisfy `f`.
pub(crate) fn skip(b: &[u8], mut k: usize, f: impl Fn(u8) -> bool) -> usize {
    while b.get(k).is_some_and(|&c| f(c)) {
        k += 1;
    }
    k
}

/// Scans a quoted token whose opening quote is at `pos`; returns (end, unterminated).
pub(crate) fn scan_quoted(b: &[u8], pos: usize, quote: u8, backslash: bool) -> (usize, bool) {
    let mut k = pos + 1;
    loop {
        match b.get(k) {
            None => return (b.len(), true),
            Some(&c) if backslash && c == b'\\' => k += 2,
            Some(&c) if c == quote && b.get(k + 1) == Some(&quote) => k += 2,
            Some(&c) if c == quote => return (k + 1, false),
            Some(_) => k += 1,
        }
    }
}

/// Scans a (nesting) block comment starting at `pos`; returns (end, unterminated).
pub(crate) fn scan_block_comment(b: &[u8], pos: usize) -> (usize, bool) {
    let (mut k, mut depth) = (pos + 2, 1usize);
    while k < b.len() {
        match (b.get(k), b.get(k + 1)) {
            (Some(b'/'), Some(b'*')) => (depth, k) = (depth + 1, k + 2),
            (Some(b'*'), Some(b'/')) => {
                (depth, k) = (depth - 1, k + 2);
                if depth == 0 {
                    return (k, false);
                }
            }
            _ => k += 1,
        }
    }
    (b.len(), true)
}

pub(crate) fn scan_number(b: &[u8], pos: usize) -> usize {
    let digits = |k: usize| skip(b, k, |d| d.is_ascii_digit() || d == b'_');
    if b.get(pos) == Some(&b'0')
        && matches!(
            b.get(pos + 1),
            Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
        )
        && b.get(pos + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        return skip(b, pos + 2, |d| d.is_ascii_alphanumeric() || d == b'_');
    }
    let mut k = digits(pos);
    if b.get(k) == Some(&b'.') && b.get(k + 1) != Some(&b'.') {
        k = digits(k + 1);
    }
    if matches!(b.get(k), Some(b'e' | b'E')) {
        let j = k + 1 + usize::from(matches!(b.get(k + 1), Some(b'+' | b'-')));
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            k = digits(j);
        }
    }
    k
}

pub(crate) fn scan_op(b: &[u8], pos: usize) -> usize {
    let mut k = pos + 1;
    while let Some(&d) = b.get(k) {
        let next = b.get(k + 1).copied();
        if !is_op_char(d) || (d == b'-' && next == Some(b'-')) || (d == b'/' && next == Some(b'*'))
        {
            break;
        }
        k += 1;
    }
    // PostgreSQL: a multi-character operator cannot end in + or - unless it contains one of
    // ~ ! @ # % ^ & | ` ? (so `=-1` is `=` followed by `-1`).
    let run = b.get(pos..k).unwrap_or(&[]);
    if run.len() > 1 && !run.iter().any(|x| b"~!@#%^&|`?".contains(x)) {
        while k > pos + 1 && matches!(b.get(k - 1), Some(b'+' | b'-')) {
            k -= 1;
        }
    }
    k
}

/// `$tag$...$tag$` (or a lone `$`) at `pos`.
pub(crate) fn lex_dollar(src: &str, pos: usize) -> (Kind, usize, usize, bool) {
    let b = src.as_bytes();
    let mut k = pos + 1;
    if b.get(k).is_some_and(|&d| is_ident_start(d)) {
        k = skip(b, k + 1, |d| d != b'$' && is_ident_cont(d));
    }
    if b.get(k) != Some(&b'$') {
        return (Kind::Other, pos + 1, 0, false);
    }
    let tag = k + 1 - pos;
    let delim = src.get(pos..pos + tag).unwrap_or("$$");
    match src.get(pos + tag..).and_then(|rest| rest.find(delim)) {
        Some(i) => (Kind::Dollar, pos + tag + i + tag, tag, false),
        None => (Kind::Dollar, b.len(), tag, true),
    }
}

/// The token starting at `pos` (not whitespace): (kind, end, dollar tag length, unterminated).
pub(crate) fn lex_one(src: &str, pos: usize) -> (Kind, usize, usize, bool) {
    let b = src.as_bytes();
    let (c, c1, c2) = (
        b.get(pos).copied().unwrap_or(0),
        b.get(pos + 1).copied(),
        b.get(pos + 2),
    );
    let quoted = |kind: Kind, off: usize, q: u8, backslash: bool| {
        let (end, open) = scan_quoted(b, pos + off, q, backslash);
        (kind, end, 0, open)
    };
    let digit_next = c1.is_some_and(|d| d.is_ascii_digit());
    match c {
        b'-' if c1 == Some(b'-') => {
            let end = skip(b, pos, |d| d != b'\n' && d != b'\r');
            (Kind::LineComment, end, 0, false)
        }
        b'/' if c1 == Some(b'*') => {
            let (end, open) = scan_block_comment(b, pos);
            (Kind::BlockComment, end, 0, open)
        }
        b'\'' => quoted(Kind::Str, 0, b'\'', false),
        b'"' => quoted(Kind::QIdent, 0, b'"', false),
        b'e' | b'E' if c1 == Some(b'\'') => quoted(Kind::EStr, 1, b'\'', true),
        b'n' | b'N' | b'b' | b'B' | b'x' | b'X' if c1 == Some(b'\'') => {
            quoted(Kind::Str, 1, b'\'', false)
        }
        b'u' | b'U' if c1 == Some(b'&') && c2 == Some(&b'\'') => quoted(Kind::Str, 2, b'\'', false),
        b'u' | b'U' if c1 == Some(b'&') && c2 == Some(&b'"') => {
            quoted(Kind::QIdent, 2, b'"', false)
        }
        b'$' if digit_next => (
            Kind::Param,
            skip(b, pos + 1, |d| d.is_ascii_digit()),
            0,
            false,
        ),
        b'$' => lex_dollar(src, pos),
        b'0'..=b'9' => (Kind::Number, scan_number(b, pos), 0, false),
        b'.' if digit_next => (Kind::Number, scan_number(b, pos), 0, false),
        b'.' if c1 == Some(b'.') => (Kind::Op, pos + 2, 0, false),
        b':' if matches!(c1, Some(b':' | b'=')) => (Kind::Op, pos + 2, 0, false),
        b'(' | b')' | b',' | b';' | b'[' | b']' | b'.' | b':' => (Kind::Punct, pos + 1, 0, false),
        c if is_ident_start(c) => (Kind::Word, skip(b, pos, is_ident_cont), 0, false),
        c if is_op_char(c) => (Kind::Op, scan_op(b, pos), 0, false),
        _ => (Kind::Other, pos + 1, 0, false),
    }
}

/// One pass over the source producing every token (comments included) with its line.
pub(crate) fn tokenize(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut pos = if src.starts_with('\u{FEFF}') { 3 } else { 0 };
    let mut line = 1usize;
    while let Some(&c) = b.get(pos) {
        if c.is_ascii_whitespace() || c == 0x0b {
            line += usize::from(c == b'\n');
            pos += 1;
            continue;
        }
        let (kind, end, tag, open) = lex_one(src, pos);
        // Defensive: always make progress and end on a char boundary.
        let mut end = end.max(pos + 1).min(b.len());
        while end < b.len() && !src.is_char_boundary(end) {
            end += 1;
        }
        let newlines = b
            .get(pos..end)
            .map_or(0, |s| s.iter().filter(|&&x| x == b'\n').count());
        toks.push(Tok {
            kind,
            start: pos,
            end,
            line,
            tag,
            open,
        });
        line += newlines;
        pos = end;
    }
    toks
}

/// Tokens without comments.
pub(crate) fn sig_tokens(src: &str) -> Vec<Tok> {
    tokenize(src)
        .into_iter()
        .filter(|t| !t.is_comment())
        .collect()
}

pub(crate) fn unterminated(t: &Tok) -> SqlError {
    let what = match t.kind {
        Kind::QIdent => "quoted identifier",
        Kind::Dollar => "dollar-quoted string",
        Kind::BlockComment => "block comment",
        _ => "quoted string",
    };
    SqlError::new(t.line, format!("unterminated {what}"))
}
