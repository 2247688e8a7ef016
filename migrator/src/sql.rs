//! SQL text handling for the migrator: a small hand-written PostgreSQL lexer and everything built on
//! it — splitting files into statements, normalizing statements for checksums, and reading the
//! headers of `CREATE FUNCTION/PROCEDURE`, `CREATE TYPE/DOMAIN`, `CREATE TABLE` and `INSERT`
//! statements, plus moving foreign keys out of `CREATE TABLE` to break reference cycles.
//!
//! All functions share one tokenizer pass (`tokenize`) that understands single-quoted strings
//! (`''` escapes), `E''` strings (backslash escapes), `N''`/`B''`/`X''`/`U&''` strings, quoted
//! identifiers (`""` escapes), dollar quotes with optional tags, `$n` parameters, `--` comments and
//! nesting `/* */` comments. Nothing here panics on any input, and nothing here executes SQL.

use std::fmt;

/// An error in SQL text, with the 1-based line where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub line: usize,
    pub message: String,
}

impl SqlError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        SqlError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SqlError {}

/// One statement of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement without its terminating ';'. It starts at the first token that is not a
    /// comment and ends at the last such token: comments inside are kept verbatim, leading and
    /// trailing comments are not part of it (so `format!("{text};")` is always safe).
    pub text: String,
    /// 1-based line where the statement starts (first non-whitespace, non-comment character).
    pub line: usize,
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Unquoted identifier or keyword (may contain `$` after the first character).
    Word,
    /// `"..."` or `U&"..."`.
    QIdent,
    /// `'...'`, `N'...'`, `B'...'`, `X'...'`, `U&'...'`.
    Str,
    /// `E'...'` (backslash escapes).
    EStr,
    /// `$tag$...$tag$`.
    Dollar,
    Number,
    /// `$1`.
    Param,
    /// `( ) , ; [ ] . :`
    Punct,
    /// Operators, including `::`, `:=` and `..`.
    Op,
    /// Any other single character (`\`, `{`, control characters...).
    Other,
    LineComment,
    BlockComment,
}

#[derive(Debug, Clone, Copy)]
struct Tok {
    kind: Kind,
    /// Byte offsets into the source (always char boundaries).
    start: usize,
    end: usize,
    line: usize,
    /// Length of the dollar-quote delimiter (`$$` = 2, `$body$` = 6); 0 for other tokens.
    tag: usize,
    /// Unterminated quote, dollar quote or block comment (runs to the end of the input).
    open: bool,
}

impl Tok {
    fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.start..self.end).unwrap_or("")
    }
    fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::LineComment | Kind::BlockComment)
    }
    fn is_word(&self, src: &str, kw: &str) -> bool {
        self.kind == Kind::Word && self.text(src).eq_ignore_ascii_case(kw)
    }
    fn is_punct(&self, src: &str, p: &str) -> bool {
        self.kind == Kind::Punct && self.text(src) == p
    }
    fn is_ident(&self) -> bool {
        matches!(self.kind, Kind::Word | Kind::QIdent)
    }
    /// Body of a dollar-quoted string (without the delimiters).
    fn dollar_body<'a>(&self, src: &'a str) -> &'a str {
        let end = if self.open {
            self.end
        } else {
            self.end.saturating_sub(self.tag)
        };
        src.get(self.start + self.tag..end).unwrap_or("")
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn is_op_char(c: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?".contains(&c)
}

/// Scans a quoted token whose opening quote is at `pos`; returns (end, unterminated).
fn scan_quoted(b: &[u8], pos: usize, quote: u8, backslash: bool) -> (usize, bool) {
    let mut k = pos + 1;
    loop {
        match b.get(k) {
            None => return (b.len(), true),
            Some(&c) if backslash && c == b'\\' => k += 2,
            Some(&c) if c == quote => {
                if b.get(k + 1) == Some(&quote) {
                    k += 2;
                } else {
                    return (k + 1, false);
                }
            }
            Some(_) => k += 1,
        }
    }
}

fn scan_number(b: &[u8], pos: usize) -> usize {
    let digit = |k: usize| b.get(k).is_some_and(|d| d.is_ascii_digit() || *d == b'_');
    let mut k = pos;
    if b.get(k) == Some(&b'0')
        && matches!(b.get(k + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B'))
        && b.get(k + 2).is_some_and(|d| d.is_ascii_hexdigit())
    {
        k += 2;
        while b
            .get(k)
            .is_some_and(|d| d.is_ascii_alphanumeric() || *d == b'_')
        {
            k += 1;
        }
        return k;
    }
    while digit(k) {
        k += 1;
    }
    if b.get(k) == Some(&b'.') && b.get(k + 1) != Some(&b'.') {
        k += 1;
        while digit(k) {
            k += 1;
        }
    }
    if matches!(b.get(k), Some(b'e' | b'E')) {
        let mut j = k + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if b.get(j).is_some_and(u8::is_ascii_digit) {
            k = j;
            while digit(k) {
                k += 1;
            }
        }
    }
    k
}

/// One pass over the source producing every token (comments included) with its line.
fn tokenize(src: &str) -> Vec<Tok> {
    let b = src.as_bytes();
    let at = |k: usize| b.get(k).copied();
    let mut toks = Vec::new();
    let mut pos = if src.starts_with('\u{FEFF}') { 3 } else { 0 };
    let mut line = 1usize;
    while let Some(c) = at(pos) {
        if c.is_ascii_whitespace() || c == 0x0b {
            if c == b'\n' {
                line += 1;
            }
            pos += 1;
            continue;
        }
        let start = pos;
        let mut tag = 0;
        let mut open = false;
        let kind;
        if c == b'-' && at(pos + 1) == Some(b'-') {
            pos += 2;
            while at(pos).is_some_and(|d| d != b'\n' && d != b'\r') {
                pos += 1;
            }
            kind = Kind::LineComment;
        } else if c == b'/' && at(pos + 1) == Some(b'*') {
            pos += 2;
            let mut depth = 1usize;
            loop {
                match (at(pos), at(pos + 1)) {
                    (None, _) => {
                        open = true;
                        break;
                    }
                    (Some(b'/'), Some(b'*')) => {
                        depth += 1;
                        pos += 2;
                    }
                    (Some(b'*'), Some(b'/')) => {
                        depth -= 1;
                        pos += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => pos += 1,
                }
            }
            kind = Kind::BlockComment;
        } else if c == b'\'' {
            (pos, open) = scan_quoted(b, pos, b'\'', false);
            kind = Kind::Str;
        } else if c == b'"' {
            (pos, open) = scan_quoted(b, pos, b'"', false);
            kind = Kind::QIdent;
        } else if matches!(c, b'e' | b'E') && at(pos + 1) == Some(b'\'') {
            (pos, open) = scan_quoted(b, pos + 1, b'\'', true);
            kind = Kind::EStr;
        } else if matches!(c, b'n' | b'N' | b'b' | b'B' | b'x' | b'X') && at(pos + 1) == Some(b'\'')
        {
            (pos, open) = scan_quoted(b, pos + 1, b'\'', false);
            kind = Kind::Str;
        } else if matches!(c, b'u' | b'U')
            && at(pos + 1) == Some(b'&')
            && matches!(at(pos + 2), Some(b'\'' | b'"'))
        {
            let q = at(pos + 2).unwrap_or(b'\'');
            (pos, open) = scan_quoted(b, pos + 2, q, false);
            kind = if q == b'"' { Kind::QIdent } else { Kind::Str };
        } else if c == b'$' {
            if at(pos + 1).is_some_and(|d| d.is_ascii_digit()) {
                pos += 1;
                while at(pos).is_some_and(|d| d.is_ascii_digit()) {
                    pos += 1;
                }
                kind = Kind::Param;
            } else {
                let mut k = pos + 1;
                if at(k).is_some_and(is_ident_start) {
                    k += 1;
                    while at(k).is_some_and(|d| d != b'$' && is_ident_cont(d)) {
                        k += 1;
                    }
                }
                if at(k) == Some(b'$') {
                    tag = k + 1 - pos;
                    let delim = src.get(pos..pos + tag).unwrap_or("$$");
                    match src.get(pos + tag..).and_then(|rest| rest.find(delim)) {
                        Some(idx) => pos += tag + idx + tag,
                        None => {
                            pos = b.len();
                            open = true;
                        }
                    }
                    kind = Kind::Dollar;
                } else {
                    pos += 1;
                    kind = Kind::Other;
                }
            }
        } else if c.is_ascii_digit()
            || (c == b'.' && at(pos + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            pos = scan_number(b, pos);
            kind = Kind::Number;
        } else if c == b'.' && at(pos + 1) == Some(b'.') {
            pos += 2;
            kind = Kind::Op;
        } else if is_ident_start(c) {
            while at(pos).is_some_and(is_ident_cont) {
                pos += 1;
            }
            kind = Kind::Word;
        } else if b"(),;[].".contains(&c) {
            pos += 1;
            kind = Kind::Punct;
        } else if c == b':' {
            if matches!(at(pos + 1), Some(b':' | b'=')) {
                pos += 2;
                kind = Kind::Op;
            } else {
                pos += 1;
                kind = Kind::Punct;
            }
        } else if is_op_char(c) {
            let mut k = pos + 1;
            while let Some(d) = at(k) {
                let next = at(k + 1);
                if !is_op_char(d)
                    || (d == b'-' && next == Some(b'-'))
                    || (d == b'/' && next == Some(b'*'))
                {
                    break;
                }
                k += 1;
            }
            // PostgreSQL: a multi-character operator cannot end in + or - unless it contains one
            // of ~ ! @ # % ^ & | ` ? (so `=-1` is `=` followed by `-1`).
            let run = b.get(pos..k).unwrap_or(&[]);
            if run.len() > 1 && !run.iter().any(|x| b"~!@#%^&|`?".contains(x)) {
                while k > pos + 1 && matches!(at(k - 1), Some(b'+' | b'-')) {
                    k -= 1;
                }
            }
            pos = k;
            kind = Kind::Op;
        } else {
            pos += 1;
            kind = Kind::Other;
        }
        // Defensive: always make progress and stay on a char boundary.
        if pos <= start {
            pos = start + 1;
        }
        while pos < b.len() && !src.is_char_boundary(pos) {
            pos += 1;
        }
        toks.push(Tok {
            kind,
            start,
            end: pos,
            line,
            tag,
            open,
        });
        line += b
            .get(start..pos)
            .map_or(0, |s| s.iter().filter(|&&x| x == b'\n').count());
    }
    toks
}

/// Tokens without comments.
fn sig_tokens(src: &str) -> Vec<Tok> {
    tokenize(src)
        .into_iter()
        .filter(|t| !t.is_comment())
        .collect()
}

fn unterminated(t: &Tok) -> SqlError {
    let what = match t.kind {
        Kind::QIdent => "quoted identifier",
        Kind::Dollar => "dollar-quoted string",
        Kind::BlockComment => "block comment",
        _ => "quoted string",
    };
    SqlError::new(t.line, format!("unterminated {what}"))
}

// ---------------------------------------------------------------------------------------------
// Token helpers
// ---------------------------------------------------------------------------------------------

/// Index of the `)` matching the `(` at `open`.
fn matching(src: &str, t: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, x) in t.iter().enumerate().skip(open) {
        if x.is_punct(src, "(") {
            depth += 1;
        } else if x.is_punct(src, ")") {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Splits a token list on top-level commas; returns (start, end) index ranges (commas excluded).
fn split_ranges(src: &str, t: &[Tok]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (k, x) in t.iter().enumerate() {
        if x.is_punct(src, "(") || x.is_punct(src, "[") {
            depth += 1;
        } else if x.is_punct(src, ")") || x.is_punct(src, "]") {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && x.is_punct(src, ",") {
            out.push((start, k));
            start = k + 1;
        }
    }
    out.push((start, t.len()));
    out
}

fn split_commas<'t>(src: &str, t: &'t [Tok]) -> Vec<&'t [Tok]> {
    split_ranges(src, t)
        .into_iter()
        .filter_map(|(a, b)| t.get(a..b))
        .collect()
}

/// Source text from the first to the last token of `t[a..b]`, verbatim.
fn span_text<'a>(src: &'a str, t: &[Tok], a: usize, b: usize) -> &'a str {
    match (t.get(a), b.checked_sub(1).and_then(|l| t.get(l))) {
        (Some(f), Some(l)) if b > a => src.get(f.start..l.end).unwrap_or(""),
        _ => "",
    }
}

/// Identifier value: unquoted words ASCII-lower-cased (like PostgreSQL), quoted kept exact.
fn ident_value(src: &str, t: &Tok) -> Option<String> {
    match t.kind {
        Kind::Word => Some(t.text(src).to_ascii_lowercase()),
        Kind::QIdent => Some(unquote(t.text(src), '"')),
        _ => None,
    }
}

/// Strips an optional prefix (`U&`, `N`...), the quotes, and undoubles the quote character.
fn unquote(text: &str, q: char) -> String {
    let Some(i) = text.find(q) else {
        return text.to_string();
    };
    let inner = text.get(i + q.len_utf8()..).unwrap_or("");
    let inner = inner.strip_suffix(q).unwrap_or(inner);
    let mut doubled = String::new();
    doubled.push(q);
    doubled.push(q);
    inner.replace(&doubled, &q.to_string())
}

/// Value of a string literal token (`E''` escapes decoded, `''` undoubled).
fn string_value(src: &str, t: &Tok) -> String {
    if t.kind != Kind::EStr {
        return unquote(t.text(src), '\'');
    }
    let text = t.text(src);
    let inner = text.get(2..).unwrap_or("");
    let inner = if t.open {
        inner
    } else {
        inner.strip_suffix('\'').unwrap_or(inner)
    };
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    let to_char = |v: u32| char::from_u32(v).unwrap_or('\u{FFFD}');
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
            }
            out.push('\'');
            continue;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        let (radix, max) = match e {
            'b' => {
                out.push('\u{8}');
                continue;
            }
            'f' => {
                out.push('\u{c}');
                continue;
            }
            'n' => {
                out.push('\n');
                continue;
            }
            'r' => {
                out.push('\r');
                continue;
            }
            't' => {
                out.push('\t');
                continue;
            }
            'x' => (16, 2),
            'u' => (16, 4),
            'U' => (16, 8),
            '0'..='7' => (8, 3),
            other => {
                out.push(other);
                continue;
            }
        };
        let mut v: u32 = if radix == 8 {
            e.to_digit(8).unwrap_or(0)
        } else {
            0
        };
        let mut n = usize::from(radix == 8);
        while n < max {
            match chars.peek().and_then(|d| d.to_digit(radix)) {
                Some(d) => {
                    v = v.saturating_mul(radix).saturating_add(d);
                    chars.next();
                    n += 1;
                }
                None => break,
            }
        }
        if n == 0 {
            out.push(e);
        } else {
            out.push(to_char(v));
        }
    }
    out
}

/// Qualified name `a[.b[.c]]` starting at `i`: (parts, index after the name).
fn parse_qname(src: &str, t: &[Tok], i: usize) -> Option<(Vec<String>, usize)> {
    let mut parts = Vec::new();
    let mut k = i;
    loop {
        parts.push(ident_value(src, t.get(k)?)?);
        k += 1;
        let dot = t.get(k).is_some_and(|x| x.is_punct(src, "."));
        if dot && t.get(k + 1).is_some_and(Tok::is_ident) {
            k += 1;
        } else {
            return Some((parts, k));
        }
    }
}

/// (schema, name) from the parts of a qualified name (`db.schema.name` keeps `schema`).
fn split_name(mut parts: Vec<String>) -> (Option<String>, String) {
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

fn wordy(k: Kind) -> bool {
    matches!(
        k,
        Kind::Word
            | Kind::QIdent
            | Kind::Str
            | Kind::EStr
            | Kind::Dollar
            | Kind::Number
            | Kind::Param
    )
}

fn opish(k: Kind) -> bool {
    matches!(k, Kind::Op | Kind::Other)
}

/// Canonical spacing: a space only where dropping it would merge two tokens.
fn needs_space(a: &Tok, b: &Tok) -> bool {
    (wordy(a.kind) && wordy(b.kind)) || (opish(a.kind) && opish(b.kind))
}

/// Renders tokens as written. `tight`: canonical spacing (plus a space after `)`/`]` before a
/// word, for `timestamp(3) with time zone`); otherwise one space wherever the source had
/// whitespace or a comment.
fn render(src: &str, toks: &[Tok], tight: bool) -> String {
    let mut out = String::new();
    let mut prev: Option<&Tok> = None;
    for t in toks {
        if let Some(p) = prev {
            let space = if tight {
                needs_space(p, t)
                    || ((p.is_punct(src, ")") || p.is_punct(src, "]")) && wordy(t.kind))
            } else {
                t.start > p.end
            };
            if space {
                out.push(' ');
            }
        }
        out.push_str(t.text(src));
        prev = Some(t);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

/// Split a SQL file into statements on top-level ';'.
///
/// Quotes, dollar quotes, comments and parameters are understood (see the module docs). A ';'
/// inside parentheses still splits. Like psql, a ';' inside the `BEGIN ATOMIC ... END` body of a
/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE` does not split. Empty and comment-only statements are
/// dropped. An unterminated quote, dollar quote or block comment is an error at its first line.
pub fn split_statements(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let toks = tokenize(sql);
    if let Some(t) = toks.iter().find(|t| t.open) {
        return Err(unterminated(t));
    }
    let mut out = Vec::new();
    let mut first: Option<Tok> = None;
    let mut last: Option<Tok> = None;
    let mut words: Vec<String> = Vec::new();
    let mut paren = 0usize;
    let mut begin_depth = 0usize;
    let mut flush = |first: &mut Option<Tok>, last: &mut Option<Tok>| {
        if let (Some(f), Some(l)) = (first.take(), last.take()) {
            out.push(Statement {
                text: sql.get(f.start..l.end).unwrap_or("").to_string(),
                line: f.line,
            });
        }
    };
    for t in toks.iter().filter(|t| !t.is_comment()) {
        if t.is_punct(sql, ";") && begin_depth == 0 {
            flush(&mut first, &mut last);
            words.clear();
            paren = 0;
            continue;
        }
        if first.is_none() {
            first = Some(*t);
        }
        last = Some(*t);
        if t.is_punct(sql, "(") {
            paren += 1;
        } else if t.is_punct(sql, ")") {
            paren = paren.saturating_sub(1);
        } else if t.kind == Kind::Word {
            let w = t.text(sql).to_ascii_lowercase();
            if words.len() < 4 {
                words.push(w.clone());
            }
            let w = w.as_str();
            let is = |k: usize, s: &[&str]| words.get(k).is_some_and(|x| s.contains(&x.as_str()));
            let routine = is(0, &["create"])
                && (is(1, &["function", "procedure"])
                    || (is(1, &["or"])
                        && is(2, &["replace"])
                        && is(3, &["function", "procedure"])));
            if routine && paren == 0 {
                if w == "begin" || (w == "case" && begin_depth > 0) {
                    begin_depth += 1;
                } else if w == "end" {
                    begin_depth = begin_depth.saturating_sub(1);
                }
            }
        }
    }
    flush(&mut first, &mut last);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Normalization
// ---------------------------------------------------------------------------------------------

/// Text normalized for change detection (checksums).
///
/// Comments are removed; tokens are joined with a single space only where two words/literals
/// (or two operators) meet, so spacing around punctuation does not matter; words, numbers and
/// keywords are ASCII-lower-cased; string literals and quoted identifiers are kept byte-exact
/// (only an `E`/`N`/`U&` prefix is lower-cased); trailing ';' are removed.
///
/// A dollar-quoted routine body — one directly after `AS` or `DO` (or after `LANGUAGE x` in a
/// `DO`) — is code: its tag is ignored and its text is normalized by the same rules, dollar quotes
/// nested inside it being literals kept exact. This only applies when the statement's language
/// is `sql` or `plpgsql` (or not given): bodies in other languages (plpython, C...) and dollar
/// quotes used as plain literals (`VALUES ($$Hello$$)`, `COMMENT ... IS $$...$$`) are kept exact.
pub fn normalize(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    normalize_into(sql, true, &mut out);
    out
}

fn normalize_into(src: &str, top: bool, out: &mut String) {
    let mut toks = sig_tokens(src);
    if top {
        while toks.last().is_some_and(|t| t.is_punct(src, ";")) {
            toks.pop();
        }
    }
    let code = if top {
        code_bodies(src, &toks)
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
fn code_bodies(src: &str, toks: &[Tok]) -> Vec<bool> {
    let mut flags = vec![false; toks.len()];
    let mut seg_start = 0;
    for idx in 0..=toks.len() {
        if toks.get(idx).is_some_and(|t| !t.is_punct(src, ";")) {
            continue;
        }
        let seg = toks.get(seg_start..idx).unwrap_or(&[]);
        let mut depth = 0usize;
        let mut lang: Option<String> = None;
        for (k, t) in seg.iter().enumerate() {
            if t.is_punct(src, "(") {
                depth += 1;
            } else if t.is_punct(src, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && t.is_word(src, "language") {
                lang = seg.get(k + 1).map(|n| match n.kind {
                    Kind::Str | Kind::EStr => string_value(src, n),
                    _ => ident_value(src, n).unwrap_or_default(),
                });
            }
        }
        let code_lang = lang
            .map(|l| l.to_ascii_lowercase())
            .is_none_or(|l| l == "sql" || l == "plpgsql");
        if code_lang {
            for (k, t) in seg.iter().enumerate() {
                if t.kind != Kind::Dollar || t.open {
                    continue;
                }
                let before = |n: usize| k.checked_sub(n).and_then(|p| seg.get(p));
                let body = before(1).is_some_and(|p| p.is_word(src, "as") || p.is_word(src, "do"))
                    || before(2).is_some_and(|p| p.is_word(src, "language"));
                if let Some(f) = flags.get_mut(seg_start + k) {
                    *f = body;
                }
            }
        }
        seg_start = idx + 1;
    }
    flags
}

// ---------------------------------------------------------------------------------------------
// Routines
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoutineKind {
    Function,
    Procedure,
}

/// Header of a `CREATE FUNCTION` / `CREATE PROCEDURE` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    pub kind: RoutineKind,
    /// Schema as written, unquoted (`"My S"` -> `My S`; unquoted names lower-cased).
    pub schema: Option<String>,
    /// Unquoted identifiers lower-cased, quoted kept exact.
    pub name: String,
    /// Types of the arguments that make up the identity: IN, INOUT and VARIADIC args. OUT args are
    /// excluded — also for procedures, although PostgreSQL 14+ counts OUT args in a procedure's
    /// identity (`DROP PROCEDURE p(int)` still works there when unambiguous). Each is the type as
    /// written with name, mode and default removed and canonical spacing (`numeric(10,2)`,
    /// `double precision`, `character varying(20)[]`): valid in `DROP FUNCTION name(types)` and
    /// `to_regprocedure('name(types)')`.
    pub arg_types: Vec<String>,
    /// Argument declarations as written (mode + name + type, defaults stripped,
    /// whitespace collapsed, comments removed), for messages.
    pub args_text: Vec<String>,
    /// Text after RETURNS up to LANGUAGE/AS/other options, canonical spacing (None for procedures).
    pub returns: Option<String>,
}

const INTERVAL_FIELDS: [&str; 6] = ["year", "month", "day", "hour", "minute", "second"];

/// Number of tokens of `t` forming a type name starting at `t[0]`, if it starts with one.
fn type_len(src: &str, t: &[Tok]) -> Option<usize> {
    let word = |i: usize| -> String {
        t.get(i)
            .filter(|x| x.kind == Kind::Word)
            .map(|x| x.text(src).to_ascii_lowercase())
            .unwrap_or_default()
    };
    let punct = |i: usize, p: &str| t.get(i).is_some_and(|x| x.is_punct(src, p));
    let skip_group = |i: usize| -> usize {
        if punct(i, "(") {
            matching(src, t, i).map_or(i, |c| c + 1)
        } else {
            i
        }
    };
    let skip_brackets =
        |i: usize| -> Option<usize> { (i..t.len()).find(|&k| punct(k, "]")).map(|k| k + 1) };
    let mut i = usize::from(word(0) == "setof");
    match word(i).as_str() {
        "double" if word(i + 1) == "precision" => i += 2,
        "national" if matches!(word(i + 1).as_str(), "char" | "character") => {
            i += 2;
            if word(i) == "varying" {
                i += 1;
            }
        }
        "character" | "char" | "nchar" | "bit" => {
            i += 1;
            if word(i) == "varying" {
                i += 1;
            }
        }
        "time" | "timestamp" => {
            i = skip_group(i + 1);
            if matches!(word(i).as_str(), "with" | "without")
                && word(i + 1) == "time"
                && word(i + 2) == "zone"
            {
                i += 3;
            }
        }
        "interval" => {
            i += 1;
            if INTERVAL_FIELDS.contains(&word(i).as_str()) {
                i += 1;
                if word(i) == "to" && INTERVAL_FIELDS.contains(&word(i + 1).as_str()) {
                    i += 2;
                }
            }
        }
        _ => {
            if !t.get(i).is_some_and(Tok::is_ident) {
                return None;
            }
            i += 1;
            while punct(i, ".") && t.get(i + 1).is_some_and(Tok::is_ident) {
                i += 2;
            }
        }
    }
    i = skip_group(i);
    if t.get(i)
        .is_some_and(|x| x.kind == Kind::Op && x.text(src) == "%")
        && matches!(word(i + 1).as_str(), "type" | "rowtype")
    {
        i += 2;
    }
    loop {
        if punct(i, "[") {
            match skip_brackets(i) {
                Some(k) => i = k,
                None => break,
            }
        } else if word(i) == "array" {
            i += 1;
            if punct(i, "[") {
                match skip_brackets(i) {
                    Some(k) => i = k,
                    None => break,
                }
            }
        } else {
            break;
        }
    }
    Some(i)
}

const MODES: [&str; 4] = ["in", "out", "inout", "variadic"];

/// One argument: (is OUT, type tokens, declaration tokens without the default).
fn parse_arg<'t>(src: &str, arg: &'t [Tok]) -> (bool, &'t [Tok], &'t [Tok]) {
    let cut = arg
        .iter()
        .enumerate()
        .scan(0usize, |depth, (k, x)| {
            if x.is_punct(src, "(") || x.is_punct(src, "[") {
                *depth += 1;
            } else if x.is_punct(src, ")") || x.is_punct(src, "]") {
                *depth = depth.saturating_sub(1);
            }
            let is_default =
                x.is_word(src, "default") || (x.kind == Kind::Op && x.text(src) == "=");
            Some((k, *depth == 0 && is_default))
        })
        .find(|&(_, d)| d)
        .map_or(arg.len(), |(k, _)| k);
    let decl = arg.get(..cut).unwrap_or(arg);
    let is_mode = |i: usize| {
        decl.get(i)
            .filter(|x| x.kind == Kind::Word)
            .map(|x| x.text(src).to_ascii_lowercase())
            .filter(|w| MODES.contains(&w.as_str()))
    };
    let (mode, rest) = match (is_mode(0), is_mode(1)) {
        (Some(m), _) if decl.len() > 1 => (Some(m), decl.get(1..).unwrap_or(&[])),
        (_, Some(m)) if decl.len() > 2 => {
            // Old-style `name MODE type`.
            let ty = decl.get(2..).unwrap_or(&[]);
            return (m == "out", ty, decl);
        }
        _ => (None, decl),
    };
    let is_out = mode.as_deref() == Some("out");
    let ty = if type_len(src, rest) == Some(rest.len()) || rest.len() <= 1 {
        rest
    } else {
        rest.get(1..).unwrap_or(&[])
    };
    (is_out, ty, decl)
}

const ROUTINE_OPTIONS: [&str; 21] = [
    "language",
    "as",
    "immutable",
    "stable",
    "volatile",
    "strict",
    "called",
    "security",
    "external",
    "cost",
    "rows",
    "support",
    "set",
    "parallel",
    "leakproof",
    "not",
    "window",
    "transform",
    "begin",
    "return",
    "returns",
];

/// Parse a `CREATE [OR REPLACE] FUNCTION|PROCEDURE name(args) ...` header (the body is ignored).
pub fn parse_routine(stmt: &str) -> Result<Routine, SqlError> {
    let t = sig_tokens(stmt);
    let not_routine = || SqlError::new(1, "not a CREATE FUNCTION or CREATE PROCEDURE statement");
    let word = |i: usize, w: &str| t.get(i).is_some_and(|x| x.is_word(stmt, w));
    let line_at = |i: usize| t.get(i).or(t.last()).map_or(1, |x| x.line);
    if !word(0, "create") {
        return Err(not_routine());
    }
    let mut i = 1;
    if word(1, "or") && word(2, "replace") {
        i = 3;
    }
    let kind = if word(i, "function") {
        RoutineKind::Function
    } else if word(i, "procedure") {
        RoutineKind::Procedure
    } else {
        return Err(not_routine());
    };
    i += 1;
    let (parts, next) = parse_qname(stmt, &t, i)
        .ok_or_else(|| SqlError::new(line_at(i), "expected a routine name"))?;
    let (schema, name) = split_name(parts);
    i = next;
    if !t.get(i).is_some_and(|x| x.is_punct(stmt, "(")) {
        return Err(SqlError::new(
            line_at(i),
            "expected '(' after the routine name",
        ));
    }
    let close = matching(stmt, &t, i)
        .ok_or_else(|| SqlError::new(line_at(i), "unbalanced parentheses in the argument list"))?;
    let mut arg_types = Vec::new();
    let mut args_text = Vec::new();
    for arg in split_commas(stmt, t.get(i + 1..close).unwrap_or(&[])) {
        if arg.is_empty() {
            continue;
        }
        let (is_out, ty, decl) = parse_arg(stmt, arg);
        if !is_out {
            arg_types.push(render(stmt, ty, true));
        }
        args_text.push(render(stmt, decl, false));
    }
    let mut returns = None;
    if kind == RoutineKind::Function && word(close + 1, "returns") {
        let start = close + 2;
        let mut depth = 0usize;
        let mut end = start;
        while let Some(x) = t.get(end) {
            if x.is_punct(stmt, "(") {
                depth += 1;
            } else if x.is_punct(stmt, ")") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && end > start {
                let after_dot = t.get(end - 1).is_some_and(|p| p.is_punct(stmt, "."));
                let is_opt = ROUTINE_OPTIONS.iter().any(|w| x.is_word(stmt, w))
                    || (x.is_word(stmt, "with")
                        && t.get(end + 1).is_some_and(|n| n.is_punct(stmt, "(")));
                if (is_opt && !after_dot) || x.is_punct(stmt, ";") || x.kind == Kind::Dollar {
                    break;
                }
            }
            end += 1;
        }
        let r = render(stmt, t.get(start..end).unwrap_or(&[]), true);
        if !r.is_empty() {
            returns = Some(r);
        }
    }
    Ok(Routine {
        kind,
        schema,
        name,
        arg_types,
        args_text,
        returns,
    })
}

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

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
    /// `CREATE TYPE name AS RANGE (...)`, `CREATE TYPE name (INPUT = ...)`, shell `CREATE TYPE name`.
    Other {
        schema: Option<String>,
        name: String,
    },
}

/// Parse `CREATE TYPE name AS ENUM (...)`, `CREATE TYPE name AS (...)`,
/// `CREATE TYPE name AS RANGE (...)`, `CREATE TYPE name (...)`, `CREATE TYPE name` and
/// `CREATE DOMAIN name ...`. Error if the statement is none of these.
pub fn parse_type(stmt: &str) -> Result<TypeDef, SqlError> {
    let t = sig_tokens(stmt);
    let word = |i: usize, w: &str| t.get(i).is_some_and(|x| x.is_word(stmt, w));
    let punct = |i: usize, p: &str| t.get(i).is_some_and(|x| x.is_punct(stmt, p));
    let line_at = |i: usize| t.get(i).or(t.last()).map_or(1, |x| x.line);
    let domain = word(1, "domain");
    if !word(0, "create") || !(domain || word(1, "type")) {
        return Err(SqlError::new(
            1,
            "not a CREATE TYPE or CREATE DOMAIN statement",
        ));
    }
    let mut i = 2;
    if word(2, "if") && word(3, "not") && word(4, "exists") {
        i = 5;
    }
    let (parts, k) = parse_qname(stmt, &t, i)
        .ok_or_else(|| SqlError::new(line_at(i), "expected a type name"))?;
    let (schema, name) = split_name(parts);
    if domain {
        return Ok(TypeDef::Domain { schema, name });
    }
    if word(k, "as") && word(k + 1, "enum") {
        if !punct(k + 2, "(") {
            return Err(SqlError::new(line_at(k + 2), "expected '(' after AS ENUM"));
        }
        let close = matching(stmt, &t, k + 2)
            .ok_or_else(|| SqlError::new(line_at(k + 2), "unbalanced parentheses in AS ENUM"))?;
        let labels = t
            .get(k + 3..close)
            .unwrap_or(&[])
            .iter()
            .filter(|x| matches!(x.kind, Kind::Str | Kind::EStr))
            .map(|x| string_value(stmt, x))
            .collect();
        return Ok(TypeDef::Enum {
            schema,
            name,
            labels,
        });
    }
    if word(k, "as") && punct(k + 1, "(") {
        return Ok(TypeDef::Composite { schema, name });
    }
    if (word(k, "as") && word(k + 1, "range")) || punct(k, "(") || k >= t.len() || punct(k, ";") {
        return Ok(TypeDef::Other { schema, name });
    }
    Err(SqlError::new(line_at(k), "unsupported CREATE TYPE form"))
}

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

/// What a `tables/` statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStmt {
    /// `CREATE [GLOBAL|LOCAL] [TEMP|TEMPORARY|UNLOGGED] TABLE [IF NOT EXISTS] name ...`: the table
    /// and every table it REFERENCES (inline and table-level foreign keys), each as
    /// (schema, name), deduplicated, in order of appearance. A self-reference is included.
    /// `INHERITS` / `PARTITION OF` parents are not foreign keys and are not listed.
    CreateTable {
        schema: Option<String>,
        name: String,
        references: Vec<(Option<String>, String)>,
    },
    /// Anything else (CREATE INDEX, CREATE SEQUENCE, ALTER TABLE, COMMENT ON, ...).
    Other,
}

/// (index of the first name token, index after the name, name parts) of a CREATE TABLE.
fn create_table_header(src: &str, t: &[Tok]) -> Option<(usize, usize, Vec<String>)> {
    if !t.first()?.is_word(src, "create") {
        return None;
    }
    let mut i = 1;
    while t.get(i).is_some_and(|x| {
        ["global", "local", "temp", "temporary", "unlogged"]
            .iter()
            .any(|w| x.is_word(src, w))
    }) {
        i += 1;
    }
    if !t.get(i)?.is_word(src, "table") {
        return None;
    }
    i += 1;
    let word = |k: usize, w: &str| t.get(k).is_some_and(|x| x.is_word(src, w));
    if word(i, "if") && word(i + 1, "not") && word(i + 2, "exists") {
        i += 3;
    }
    let (parts, end) = parse_qname(src, t, i)?;
    Some((i, end, parts))
}

pub fn classify_table_stmt(stmt: &str) -> TableStmt {
    let t = sig_tokens(stmt);
    let Some((_, end, parts)) = create_table_header(stmt, &t) else {
        return TableStmt::Other;
    };
    let (schema, name) = split_name(parts);
    let mut references = Vec::new();
    for (k, x) in t.iter().enumerate().skip(end) {
        if x.is_word(stmt, "references") {
            if let Some((p, _)) = parse_qname(stmt, &t, k + 1) {
                let r = split_name(p);
                if !references.contains(&r) {
                    references.push(r);
                }
            }
        }
    }
    TableStmt::CreateTable {
        schema,
        name,
        references,
    }
}

fn eq_ci(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Does the FK target match one of `deferred`? Names case-insensitively; schemas only compared
/// when both sides have one.
fn is_deferred(target: &(Option<String>, String), deferred: &[(Option<String>, String)]) -> bool {
    deferred.iter().any(|(ds, dn)| {
        eq_ci(dn, &target.1)
            && match (ds, &target.0) {
                (Some(a), Some(b)) => eq_ci(a, b),
                _ => true,
            }
    })
}

/// Index after the foreign-key clause whose referenced name ends at `i`: optional `(cols)`,
/// `MATCH x`, `ON DELETE|UPDATE action`, `[NOT] DEFERRABLE`, `INITIALLY x`, `[NOT] ENFORCED`.
fn fk_tail(src: &str, t: &[Tok], i: usize) -> usize {
    let w = |k: usize| {
        t.get(k)
            .filter(|x| x.kind == Kind::Word)
            .map(|x| x.text(src).to_ascii_lowercase())
            .unwrap_or_default()
    };
    let group = |k: usize| {
        if t.get(k).is_some_and(|x| x.is_punct(src, "(")) {
            matching(src, t, k).map_or(k, |c| c + 1)
        } else {
            k
        }
    };
    let mut k = group(i);
    loop {
        match w(k).as_str() {
            "match" if !w(k + 1).is_empty() => k += 2,
            "on" if matches!(w(k + 1).as_str(), "delete" | "update") => {
                k += 2;
                match w(k).as_str() {
                    "no" if w(k + 1) == "action" => k += 2,
                    "restrict" | "cascade" => k += 1,
                    "set" if matches!(w(k + 1).as_str(), "null" | "default") => k = group(k + 2),
                    _ => {}
                }
            }
            "deferrable" | "enforced" => k += 1,
            "not" if matches!(w(k + 1).as_str(), "deferrable" | "enforced") => k += 2,
            "initially" if matches!(w(k + 1).as_str(), "deferred" | "immediate") => k += 2,
            _ => return k,
        }
    }
}

/// Start of the removal for an inline constraint starting at byte `s`: also drop the whitespace
/// before it, unless that would join a `--` comment with the following text.
fn back_over_ws(src: &str, all: &[Tok], s: usize) -> usize {
    let b = src.as_bytes();
    let ws = |p: usize, nl: bool| {
        p.checked_sub(1)
            .and_then(|q| b.get(q))
            .is_some_and(|&c| c == b' ' || c == b'\t' || (nl && c.is_ascii_whitespace()))
    };
    let mut p = s;
    while ws(p, false) {
        p -= 1;
    }
    let mut q = p;
    while ws(q, true) {
        q -= 1;
    }
    if all
        .iter()
        .any(|t| t.kind == Kind::LineComment && t.end == q)
    {
        p
    } else {
        q
    }
}

/// For breaking REFERENCES cycles: remove from a CREATE TABLE every foreign key pointing to one
/// of `deferred` and return (rewritten statement, `ALTER TABLE ... ADD ...` statements adding
/// them back, without trailing ';').
///
/// Inline `col type [CONSTRAINT n] REFERENCES t [(c)] [MATCH ..] [ON ..] [DEFERRABLE ..]` becomes
/// `ALTER TABLE tbl ADD [CONSTRAINT n] FOREIGN KEY (col) REFERENCES ...`; table-level
/// `[CONSTRAINT n] FOREIGN KEY (...) REFERENCES ...` elements are moved whole. Everything else is
/// kept verbatim. Deferred names compare case-insensitively; a schema is compared only when both
/// the deferred entry and the reference have one. Statements without a column list (`AS SELECT`)
/// are returned unchanged.
pub fn split_foreign_keys(
    stmt: &str,
    deferred: &[(Option<String>, String)],
) -> Result<(String, Vec<String>), SqlError> {
    let all = tokenize(stmt);
    if let Some(t) = all.iter().find(|t| t.open) {
        return Err(unterminated(t));
    }
    let t: Vec<Tok> = all.iter().copied().filter(|x| !x.is_comment()).collect();
    let (name_start, name_end, _) = create_table_header(stmt, &t)
        .ok_or_else(|| SqlError::new(1, "not a CREATE TABLE statement"))?;
    let table = span_text(stmt, &t, name_start, name_end);
    let word = |k: usize, w: &str| t.get(k).is_some_and(|x| x.is_word(stmt, w));
    let mut i = name_end;
    if word(i, "partition") && word(i + 1, "of") {
        i = parse_qname(stmt, &t, i + 2).map_or(i, |(_, e)| e);
    } else if word(i, "of") {
        i = parse_qname(stmt, &t, i + 1).map_or(i, |(_, e)| e);
    }
    if !t.get(i).is_some_and(|x| x.is_punct(stmt, "(")) {
        return Ok((stmt.to_string(), Vec::new()));
    }
    let close = matching(stmt, &t, i).ok_or_else(|| {
        SqlError::new(
            t.get(i).map_or(1, |x| x.line),
            "unbalanced parentheses in CREATE TABLE",
        )
    })?;
    let inner = t.get(i + 1..close).unwrap_or(&[]);
    let ranges = split_ranges(stmt, inner);
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut alters = Vec::new();
    let mut removed = vec![false; ranges.len()];
    for (k, &(a, b)) in ranges.iter().enumerate() {
        let elem = inner.get(a..b).unwrap_or(&[]);
        let Some(first) = elem.first() else {
            continue;
        };
        let ew = |j: usize, w: &str| elem.get(j).is_some_and(|x| x.is_word(stmt, w));
        if ew(0, "foreign") || (ew(0, "constraint") && ew(2, "foreign")) {
            let target = elem
                .iter()
                .position(|x| x.is_word(stmt, "references"))
                .and_then(|r| parse_qname(stmt, elem, r + 1));
            if let Some((parts, _)) = target {
                if is_deferred(&split_name(parts), deferred) {
                    if let Some(r) = removed.get_mut(k) {
                        *r = true;
                    }
                    let text = span_text(stmt, elem, 0, elem.len());
                    alters.push(format!("ALTER TABLE {table} ADD {text}"));
                }
            }
            continue;
        }
        let exclude = ew(0, "exclude")
            && (ew(1, "using") || elem.get(1).is_some_and(|x| x.is_punct(stmt, "(")));
        let table_constraint = ["constraint", "check", "unique", "primary", "like"]
            .iter()
            .any(|w| ew(0, w));
        if exclude || table_constraint {
            continue;
        }
        // Column definition: look for inline REFERENCES at the element's top level.
        let col = first.text(stmt);
        let mut depth = 0usize;
        let mut j = 1;
        while let Some(x) = elem.get(j) {
            if x.is_punct(stmt, "(") || x.is_punct(stmt, "[") {
                depth += 1;
            } else if x.is_punct(stmt, ")") || x.is_punct(stmt, "]") {
                depth = depth.saturating_sub(1);
            } else if depth == 0 && x.is_word(stmt, "references") {
                if let Some((parts, qend)) = parse_qname(stmt, elem, j + 1) {
                    let end = fk_tail(stmt, elem, qend);
                    if is_deferred(&split_name(parts), deferred) {
                        let named = j >= 2 && ew(j - 2, "constraint");
                        let (from, cname) = if named {
                            let n = elem.get(j - 1).map_or("", |n| n.text(stmt));
                            (j - 2, format!("CONSTRAINT {n} "))
                        } else {
                            (j, String::new())
                        };
                        let refs = span_text(stmt, elem, j, end);
                        alters.push(format!(
                            "ALTER TABLE {table} ADD {cname}FOREIGN KEY ({col}) {refs}"
                        ));
                        if let (Some(s), Some(e)) = (elem.get(from), elem.get(end - 1)) {
                            cuts.push((back_over_ws(stmt, &all, s.start), e.end));
                        }
                    }
                    j = end;
                    continue;
                }
            }
            j += 1;
        }
    }
    // Whole elements: drop the comma before (or, for leading elements, the one after).
    for (k, &(a, b)) in ranges.iter().enumerate() {
        if !removed.get(k).copied().unwrap_or(false) {
            continue;
        }
        let (Some(first), Some(last)) = (inner.get(a), b.checked_sub(1).and_then(|l| inner.get(l)))
        else {
            continue;
        };
        let kept_before = removed.iter().take(k).any(|r| !r);
        let comma_before = a.checked_sub(1).and_then(|c| inner.get(c));
        match (kept_before, comma_before, inner.get(b)) {
            (true, Some(c), _) => cuts.push((c.start, last.end)),
            (_, _, Some(c)) => {
                let next = all
                    .iter()
                    .find(|x| x.start >= c.end)
                    .map_or(c.end, |x| x.start);
                cuts.push((first.start, next));
            }
            _ => cuts.push((first.start, last.end)),
        }
    }
    cuts.sort_unstable();
    let mut out = String::with_capacity(stmt.len());
    let mut pos = 0;
    for (s, e) in cuts {
        if s < pos {
            continue;
        }
        out.push_str(stmt.get(pos..s).unwrap_or(""));
        pos = e;
    }
    out.push_str(stmt.get(pos..).unwrap_or(""));
    Ok((out, alters))
}

/// Tables an INSERT statement (seeders) writes to: for `[WITH ...] INSERT INTO [schema.]t
/// [AS alias] [(cols)] ...` returns (schema, table, column list — empty when not given), names
/// unquoted (unquoted ones lower-cased). None for other statements.
pub fn parse_insert_target(stmt: &str) -> Option<(Option<String>, String, Vec<String>)> {
    let t = sig_tokens(stmt);
    let mut i = 0;
    if t.first()?.is_word(stmt, "with") {
        let mut depth = 0usize;
        i = t.iter().position(|x| {
            if x.is_punct(stmt, "(") {
                depth += 1;
            } else if x.is_punct(stmt, ")") {
                depth = depth.saturating_sub(1);
            }
            depth == 0 && x.is_word(stmt, "insert")
        })?;
    }
    if !t.get(i)?.is_word(stmt, "insert") || !t.get(i + 1)?.is_word(stmt, "into") {
        return None;
    }
    let (parts, mut k) = parse_qname(stmt, &t, i + 2)?;
    if t.get(k).is_some_and(|x| x.is_word(stmt, "as")) {
        k += 2;
    }
    let mut cols = Vec::new();
    if t.get(k).is_some_and(|x| x.is_punct(stmt, "(")) {
        let query = t.get(k + 1).is_some_and(|x| {
            ["select", "values", "with", "table"]
                .iter()
                .any(|w| x.is_word(stmt, w))
                || x.is_punct(stmt, "(")
        });
        if !query {
            if let Some(close) = matching(stmt, &t, k) {
                for c in split_commas(stmt, t.get(k + 1..close).unwrap_or(&[])) {
                    if let Some(v) = c.first().and_then(|x| ident_value(stmt, x)) {
                        cols.push(v);
                    }
                }
            }
        }
    }
    let (schema, name) = split_name(parts);
    Some((schema, name, cols))
}

#[cfg(test)]
mod tests {
    use super::*;
}
