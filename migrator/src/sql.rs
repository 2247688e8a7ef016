//! SQL text handling for the migrator: a small hand-written PostgreSQL lexer and everything built
//! on it — splitting files into statements, normalizing statements for checksums, reading the
//! headers of `CREATE FUNCTION/PROCEDURE`, `CREATE TYPE/DOMAIN`, `CREATE TABLE` and `INSERT`
//! statements, and moving foreign keys out of `CREATE TABLE` to break reference cycles.
//!
//! Everything shares one tokenizer pass (`tokenize`) that understands single-quoted strings
//! (`''` escapes), `E''` strings (backslash escapes), `N''`/`B''`/`X''`/`U&''` strings, quoted
//! identifiers (`""` escapes), dollar quotes with optional tags, `$n` parameters, `--` comments
//! and nesting `/* */` comments. Nothing here panics on any input, and nothing executes SQL.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many statements the readers below have read (normalized, or parsed as
/// a routine, type, table or INSERT) since the process started: an upload is
/// read once, whatever number of databases it is deployed into. Served as
/// `stonescriptdb_migrator_sql_reads_total`.
static READS: AtomicU64 = AtomicU64::new(0);

/// See [`READS`].
pub fn reads() -> u64 {
    READS.load(Ordering::Relaxed)
}

fn read_one() {
    READS.fetch_add(1, Ordering::Relaxed);
}

/// An error in SQL text, with the 1-based line where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub line: usize,
    pub message: String,
}

impl SqlError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        let message = message.into();
        SqlError { line, message }
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
    /// The statement without its terminating ';'. It runs from the first to the last token that
    /// is not a comment: comments inside are kept verbatim, leading and trailing comments are not
    /// part of it (so `format!("{text};")` can never end up inside a `--` comment).
    pub text: String,
    /// 1-based line where the statement starts (first non-whitespace, non-comment character).
    pub line: usize,
}

// ===== Tokenizer ==============================================================================

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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
struct Tok {
    kind: Kind,
    start: usize, // byte offsets into the source, always on char boundaries
    end: usize,
    line: usize,
    tag: usize, // dollar-quote delimiter length ($$ = 2, $body$ = 6), else 0
    open: bool, // unterminated quote / dollar quote / block comment (runs to the end)
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
    /// Punctuation or operator with exactly this text.
    fn is_sym(&self, src: &str, p: &str) -> bool {
        matches!(self.kind, Kind::Punct | Kind::Op) && self.text(src) == p
    }
    fn is_ident(&self) -> bool {
        matches!(self.kind, Kind::Word | Kind::QIdent)
    }
    /// Nesting change: +1 for `(` `[`, -1 for `)` `]`.
    fn nest(&self, src: &str) -> isize {
        match (self.kind, self.text(src)) {
            (Kind::Punct, "(" | "[") => 1,
            (Kind::Punct, ")" | "]") => -1,
            _ => 0,
        }
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
fn lex_dollar(src: &str, pos: usize) -> (Kind, usize, usize, bool) {
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
fn lex_one(src: &str, pos: usize) -> (Kind, usize, usize, bool) {
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
fn tokenize(src: &str) -> Vec<Tok> {
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

/// The kind of a significant token, for readers outside this module (the
/// `tables/` DDL reader): `E''` strings count as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    QIdent,
    Str,
    Dollar,
    Number,
    Param,
    Punct,
    Op,
    Other,
}

/// A significant token: its kind, its text and the line it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: TokenKind,
    pub text: &'a str,
    pub line: usize,
}

/// The significant tokens (comments dropped) of `src`, from the one
/// tokenizer every SQL reader of the migrator uses; `first_line` is the
/// line `src` starts on.
pub fn tokens(src: &str, first_line: usize) -> Vec<Token<'_>> {
    sig_tokens(src)
        .into_iter()
        .map(|t| Token {
            kind: match t.kind {
                Kind::Word => TokenKind::Word,
                Kind::QIdent => TokenKind::QIdent,
                Kind::Str | Kind::EStr => TokenKind::Str,
                Kind::Dollar => TokenKind::Dollar,
                Kind::Number => TokenKind::Number,
                Kind::Param => TokenKind::Param,
                Kind::Punct => TokenKind::Punct,
                Kind::Op => TokenKind::Op,
                Kind::Other | Kind::LineComment | Kind::BlockComment => TokenKind::Other,
            },
            text: t.text(src),
            line: t.line + first_line - 1,
        })
        .collect()
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

// ===== Token views ============================================================================

/// A list of significant tokens with lookups; out-of-range lookups simply answer "no".
#[derive(Clone, Copy)]
struct View<'a> {
    src: &'a str,
    t: &'a [Tok],
}

impl<'a> View<'a> {
    fn get(&self, i: usize) -> Option<&'a Tok> {
        self.t.get(i)
    }
    fn len(&self) -> usize {
        self.t.len()
    }
    /// Lower-cased text of the unquoted word at `i`, or "".
    fn word(&self, i: usize) -> String {
        let w = self.get(i).filter(|x| x.kind == Kind::Word);
        w.map(|x| x.text(self.src).to_ascii_lowercase())
            .unwrap_or_default()
    }
    fn is(&self, i: usize, kw: &str) -> bool {
        self.get(i).is_some_and(|x| x.is_word(self.src, kw))
    }
    fn any(&self, i: usize, kws: &[&str]) -> bool {
        kws.iter().any(|k| self.is(i, k))
    }
    fn sym(&self, i: usize, p: &str) -> bool {
        self.get(i).is_some_and(|x| x.is_sym(self.src, p))
    }
    fn nest(&self, i: usize) -> isize {
        self.get(i).map_or(0, |x| x.nest(self.src))
    }
    /// Line of token `i` (or of the last token), for error messages.
    fn line(&self, i: usize) -> usize {
        self.get(i).or(self.t.last()).map_or(1, |x| x.line)
    }
    fn sub(&self, a: usize, b: usize) -> View<'a> {
        View {
            src: self.src,
            t: self.t.get(a..b).unwrap_or(&[]),
        }
    }
    /// Index of the `)` matching the `(` at `open`.
    fn close(&self, open: usize) -> Option<usize> {
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
    fn after_group(&self, i: usize) -> usize {
        if self.sym(i, "(") {
            self.close(i).map_or(i, |c| c + 1)
        } else {
            i
        }
    }
    /// `i + 1` if the word at `i` is `kw`, else `i`.
    fn opt(&self, i: usize, kw: &str) -> usize {
        i + usize::from(self.is(i, kw))
    }
    /// (start, end) index ranges between top-level commas.
    fn ranges(&self) -> Vec<(usize, usize)> {
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
    fn parts(&self) -> Vec<View<'a>> {
        self.ranges()
            .into_iter()
            .map(|(a, b)| self.sub(a, b))
            .collect()
    }
    /// Source text from the first to the last token, verbatim.
    fn text(&self) -> &'a str {
        match (self.t.first(), self.t.last()) {
            (Some(f), Some(l)) => self.src.get(f.start..l.end).unwrap_or(""),
            _ => "",
        }
    }
    /// Tokens as written. `tight`: canonical spacing (see `needs_space`, plus a space after `)`
    /// or `]` before a word: `timestamp(3) with time zone`); otherwise one space wherever the
    /// source had whitespace or a comment.
    fn render(&self, tight: bool) -> String {
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
    fn qname(&self, i: usize) -> Option<(Vec<String>, usize)> {
        let (mut parts, mut k) = (Vec::new(), i);
        loop {
            parts.push(ident_value(self.src, self.get(k)?)?);
            k += 1;
            if !(self.sym(k, ".") && self.get(k + 1).is_some_and(Tok::is_ident)) {
                return Some((parts, k));
            }
            k += 1;
        }
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

/// Strips an optional prefix (`U&`, `N`...) and the quotes, and undoubles the quote character.
fn unquote(text: &str, q: char) -> String {
    let Some(i) = text.find(q) else {
        return text.to_string();
    };
    let inner = text.get(i + 1..).unwrap_or("");
    let inner = inner.strip_suffix(q).unwrap_or(inner);
    inner.replace(&format!("{q}{q}"), &q.to_string())
}

/// Value of a string literal token (`E''` escapes decoded, `''` undoubled).
fn string_value(src: &str, t: &Tok) -> String {
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
fn split_name(mut parts: Vec<String>) -> (Option<String>, String) {
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

fn wordy(k: Kind) -> bool {
    use Kind::*;
    matches!(k, Word | QIdent | Str | EStr | Dollar | Number | Param)
}

/// Canonical spacing: a space only where two words/literals or two operators meet, i.e. where
/// dropping it would change how the text tokenizes.
fn needs_space(a: &Tok, b: &Tok) -> bool {
    let opish = |k: Kind| matches!(k, Kind::Op | Kind::Other);
    (wordy(a.kind) && wordy(b.kind)) || (opish(a.kind) && opish(b.kind))
}

// ===== Statements =============================================================================

/// Statements PostgreSQL refuses inside a transaction block (a deployment
/// runs them after its commit).
pub fn needs_autocommit(stmt: &str) -> bool {
    let n = normalize(stmt);
    let words: Vec<&str> = n
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty())
        .collect();
    match words.as_slice() {
        ["create", "index", "concurrently", ..]
        | ["create", "unique", "index", "concurrently", ..]
        | ["drop", "index", "concurrently", ..]
        | ["vacuum", ..]
        | ["alter", "system", ..]
        | ["create", "database", ..]
        | ["drop", "database", ..]
        | ["create", "tablespace", ..]
        | ["drop", "tablespace", ..] => true,
        ["reindex", rest @ ..] => rest.contains(&"concurrently"),
        _ => false,
    }
}

/// One SQL file of the schema, split into statements.
#[derive(Debug, Clone)]
pub struct SqlFile {
    /// `folder/name`, e.g. `migrations/001_init.sql`.
    pub path: String,
    pub statements: Vec<Statement>,
    /// sha256 of the normalized file (whitespace, comments, keyword case ignored).
    pub checksum: String,
}

/// Split a SQL file into statements on top-level ';'.
///
/// Quotes, dollar quotes, comments and parameters are understood (see the module docs). A ';'
/// inside parentheses still splits. Like psql, a ';' inside the `BEGIN ATOMIC ... END` body of a
/// `CREATE [OR REPLACE] FUNCTION|PROCEDURE` does not split. Empty and comment-only statements
/// are dropped. An unterminated quote, dollar quote or block comment is an error at the line
/// where it starts.
pub fn split_statements(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let toks = tokenize(sql);
    if let Some(t) = toks.iter().find(|t| t.open) {
        return Err(unterminated(t));
    }
    let mut out = Vec::new();
    let (mut first, mut last): (Option<Tok>, Option<Tok>) = (None, None);
    let mut words: Vec<String> = Vec::new(); // first words, to recognize CREATE FUNCTION
    let (mut paren, mut begin_depth) = (0usize, 0usize);
    let stmt = |f: Tok, l: Tok| {
        let text = sql.get(f.start..l.end).unwrap_or("").to_string();
        Statement { text, line: f.line }
    };
    for t in toks.iter().filter(|t| !t.is_comment()) {
        if t.is_sym(sql, ";") && begin_depth == 0 {
            if let (Some(f), Some(l)) = (first.take(), last.take()) {
                out.push(stmt(f, l));
            }
            (words, paren) = (Vec::new(), 0);
            continue;
        }
        first = first.or(Some(*t));
        last = Some(*t);
        paren = paren.saturating_add_signed(t.nest(sql));
        if t.kind != Kind::Word {
            continue;
        }
        let w = t.text(sql).to_ascii_lowercase();
        if words.len() < 4 {
            words.push(w.clone());
        }
        let is = |k: usize, s: &[&str]| words.get(k).is_some_and(|x| s.contains(&x.as_str()));
        let routine = is(0, &["create"])
            && (is(1, &["function", "procedure"])
                || (is(1, &["or"]) && is(2, &["replace"]) && is(3, &["function", "procedure"])));
        if routine && paren == 0 {
            if w == "begin" || (w == "case" && begin_depth > 0) {
                begin_depth += 1;
            } else if w == "end" {
                begin_depth = begin_depth.saturating_sub(1);
            }
        }
    }
    if let (Some(f), Some(l)) = (first, last) {
        out.push(stmt(f, l));
    }
    Ok(out)
}

// ===== Normalization ==========================================================================

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

fn normalize_into(src: &str, top: bool, out: &mut String) {
    let mut toks = sig_tokens(src);
    while top && toks.last().is_some_and(|t| t.is_sym(src, ";")) {
        toks.pop();
    }
    let code = if top {
        code_bodies(View { src, t: &toks })
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
fn code_bodies(v: View) -> Vec<bool> {
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
                    _ => ident_value(v.src, n)
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
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

// ===== Routines ===============================================================================

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
}

const INTERVAL_FIELDS: [&str; 6] = ["year", "month", "day", "hour", "minute", "second"];

/// Number of tokens forming a type name at the start of `v`, if it starts with one.
fn type_len(v: View) -> Option<usize> {
    let mut i = usize::from(v.is(0, "setof"));
    match v.word(i).as_str() {
        "double" if v.is(i + 1, "precision") => i += 2,
        "national" if v.any(i + 1, &["char", "character"]) => i = v.opt(i + 2, "varying"),
        "character" | "char" | "nchar" | "bit" => i = v.opt(i + 1, "varying"),
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
            if !v.get(i).is_some_and(Tok::is_ident) {
                return None;
            }
            i += 1;
            while v.sym(i, ".") && v.get(i + 1).is_some_and(Tok::is_ident) {
                i += 2;
            }
        }
    }
    i = v.after_group(i);
    if v.sym(i, "%") && v.any(i + 1, &["type", "rowtype"]) {
        i += 2;
    }
    loop {
        let j = v.opt(i, "array");
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
fn parse_arg(a: View) -> (bool, View, View) {
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
const ROUTINE_OPTIONS: &str = "language as immutable stable volatile strict called security \
    external cost rows support set parallel leakproof not window transform begin return returns";

/// Parse a `CREATE [OR REPLACE] FUNCTION|PROCEDURE name(args) ...` header (the body is ignored).
pub fn parse_routine(stmt: &str) -> Result<Routine, SqlError> {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View {
        src: stmt,
        t: &toks,
    };
    let i = if v.is(1, "or") && v.is(2, "replace") {
        3
    } else {
        1
    };
    let kind = match v.word(i).as_str() {
        "function" if v.is(0, "create") => RoutineKind::Function,
        "procedure" if v.is(0, "create") => RoutineKind::Procedure,
        _ => {
            return Err(SqlError::new(
                1,
                "not a CREATE FUNCTION or CREATE PROCEDURE statement",
            ))
        }
    };
    let err = |i: usize, m: &str| SqlError::new(v.line(i), m);
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
    Ok(Routine {
        kind,
        schema,
        name,
        arg_types,
        args_text,
        returns,
    })
}

// ===== Types ==================================================================================

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
    let v = View {
        src: stmt,
        t: &toks,
    };
    let domain = v.is(1, "domain");
    if !v.is(0, "create") || !(domain || v.is(1, "type")) {
        return Err(SqlError::new(
            1,
            "not a CREATE TYPE or CREATE DOMAIN statement",
        ));
    }
    let err = |i: usize, m: &str| SqlError::new(v.line(i), m);
    let i = if v.is(2, "if") && v.is(3, "not") && v.is(4, "exists") {
        5
    } else {
        2
    };
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

// ===== Tables =================================================================================

/// What a `tables/` statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStmt {
    /// `CREATE [GLOBAL|LOCAL] [TEMP|TEMPORARY|UNLOGGED] TABLE [IF NOT EXISTS] name ...`: the table
    /// and every table it REFERENCES (inline and table-level foreign keys) as (schema, name),
    /// deduplicated, in order of appearance; a self-reference is included. `INHERITS` and
    /// `PARTITION OF` parents are not foreign keys and are not listed.
    CreateTable {
        schema: Option<String>,
        name: String,
        references: Vec<(Option<String>, String)>,
    },
    /// Anything else (CREATE INDEX, CREATE SEQUENCE, ALTER TABLE, COMMENT ON, ...).
    Other,
}

/// (index of the first name token, index after the name, name parts) of a CREATE TABLE.
fn create_table_header(v: View) -> Option<(usize, usize, Vec<String>)> {
    let mut i = 1;
    while v.any(i, &["global", "local", "temp", "temporary", "unlogged"]) {
        i += 1;
    }
    if !v.is(0, "create") || !v.is(i, "table") {
        return None;
    }
    i += 1;
    if v.is(i, "if") && v.is(i + 1, "not") && v.is(i + 2, "exists") {
        i += 3;
    }
    let (parts, end) = v.qname(i)?;
    Some((i, end, parts))
}

/// Classify a `tables/` statement (see `TableStmt`).
pub fn classify_table_stmt(stmt: &str) -> TableStmt {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View {
        src: stmt,
        t: &toks,
    };
    let Some((_, end, parts)) = create_table_header(v) else {
        return TableStmt::Other;
    };
    let (schema, name) = split_name(parts);
    let mut references = Vec::new();
    for k in (end..v.len()).filter(|&k| v.is(k, "references")) {
        let Some((p, _)) = v.qname(k + 1) else {
            continue;
        };
        let r = split_name(p);
        if !references.contains(&r) {
            references.push(r);
        }
    }
    TableStmt::CreateTable {
        schema,
        name,
        references,
    }
}

/// Does the FK target match one of `deferred`? Names compare case-insensitively; schemas only
/// when both sides have one.
fn is_deferred(target: &(Option<String>, String), deferred: &[(Option<String>, String)]) -> bool {
    let eq = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    deferred.iter().any(|(ds, dn)| {
        eq(dn, &target.1)
            && match (ds, &target.0) {
                (Some(a), Some(b)) => eq(a, b),
                _ => true,
            }
    })
}

/// Index after the foreign-key clause whose referenced name ends at `i`: optional `(cols)`,
/// `MATCH x`, `ON DELETE|UPDATE action`, `[NOT] DEFERRABLE`, `INITIALLY x`, `[NOT] ENFORCED`.
fn fk_tail(v: View, i: usize) -> usize {
    let mut k = v.after_group(i);
    loop {
        let w = v.word(k);
        match w.as_str() {
            "match" if !v.word(k + 1).is_empty() => k += 2,
            "on" if v.any(k + 1, &["delete", "update"]) => {
                k += 2;
                if v.is(k, "no") && v.is(k + 1, "action") {
                    k += 2;
                } else if v.any(k, &["restrict", "cascade"]) {
                    k += 1;
                } else if v.is(k, "set") && v.any(k + 1, &["null", "default"]) {
                    k = v.after_group(k + 2);
                }
            }
            "deferrable" | "enforced" => k += 1,
            "not" if v.any(k + 1, &["deferrable", "enforced"]) => k += 2,
            "initially" if v.any(k + 1, &["deferred", "immediate"]) => k += 2,
            _ => return k,
        }
    }
}

/// Start of the removal of an inline constraint starting at byte `s`: also drop the whitespace
/// before it, unless that would join a `--` comment with the text that follows.
fn back_over_ws(src: &str, all: &[Tok], s: usize) -> usize {
    let b = src.as_bytes();
    let ws = |p: usize, nl: bool| {
        let c = p
            .checked_sub(1)
            .and_then(|q| b.get(q))
            .copied()
            .unwrap_or(b'x');
        c == b' ' || c == b'\t' || (nl && c.is_ascii_whitespace())
    };
    let (mut p, mut q) = (s, s);
    while ws(p, false) {
        p -= 1;
    }
    while ws(q, true) {
        q -= 1;
    }
    let after_comment = all
        .iter()
        .any(|t| t.kind == Kind::LineComment && t.end == q);
    if after_comment {
        p
    } else {
        q
    }
}

/// For breaking REFERENCES cycles: remove from a CREATE TABLE every foreign key pointing to one
/// of `deferred` and return (rewritten statement, `ALTER TABLE ... ADD ...` statements that add
/// them back, without trailing ';').
///
/// An inline `col type [CONSTRAINT n] REFERENCES t [(c)] [MATCH ..] [ON ..] [DEFERRABLE ..]`
/// becomes `ALTER TABLE tbl ADD [CONSTRAINT n] FOREIGN KEY (col) REFERENCES ...`; table-level
/// `[CONSTRAINT n] FOREIGN KEY (...) REFERENCES ...` elements are moved whole. Everything else
/// is kept verbatim. Deferred names compare case-insensitively; a schema is compared only when
/// both the deferred entry and the reference have one. A CREATE TABLE without a column list
/// (`AS SELECT ...`) is returned unchanged.
pub fn split_foreign_keys(
    stmt: &str,
    deferred: &[(Option<String>, String)],
) -> Result<(String, Vec<String>), SqlError> {
    let all = tokenize(stmt);
    if let Some(t) = all.iter().find(|t| t.open) {
        return Err(unterminated(t));
    }
    let toks: Vec<Tok> = all.iter().copied().filter(|x| !x.is_comment()).collect();
    let v = View {
        src: stmt,
        t: &toks,
    };
    let (name_start, name_end, _) =
        create_table_header(v).ok_or_else(|| SqlError::new(1, "not a CREATE TABLE statement"))?;
    let table = v.sub(name_start, name_end).text();
    let mut i = name_end;
    if v.is(i, "partition") && v.is(i + 1, "of") {
        i = v.qname(i + 2).map_or(i, |(_, e)| e);
    } else if v.is(i, "of") {
        i = v.qname(i + 1).map_or(i, |(_, e)| e);
    }
    if !v.sym(i, "(") {
        return Ok((stmt.to_string(), Vec::new()));
    }
    let close = v
        .close(i)
        .ok_or_else(|| SqlError::new(v.line(i), "unbalanced parentheses"))?;
    let inner = v.sub(i + 1, close);
    let ranges = inner.ranges();
    let (mut cuts, mut alters) = (Vec::new(), Vec::new());
    let mut removed = vec![false; ranges.len()];
    for (k, &(a, b)) in ranges.iter().enumerate() {
        let e = inner.sub(a, b);
        if e.is(0, "foreign") || (e.is(0, "constraint") && e.is(2, "foreign")) {
            let r = (0..e.len()).find(|&r| e.is(r, "references"));
            let target = r.and_then(|r| e.qname(r + 1)).map(|(p, _)| split_name(p));
            if target.is_some_and(|t| is_deferred(&t, deferred)) {
                if let Some(r) = removed.get_mut(k) {
                    *r = true;
                }
                alters.push(format!("ALTER TABLE {table} ADD {}", e.text()));
            }
            continue;
        }
        let exclude = e.is(0, "exclude") && (e.is(1, "using") || e.sym(1, "("));
        if exclude || e.any(0, &["constraint", "check", "unique", "primary", "like"]) {
            continue;
        }
        // A column definition: look for inline REFERENCES at its top level.
        let col = e.get(0).map_or("", |c| c.text(stmt));
        let (mut depth, mut j) = (0usize, 1);
        while j < e.len() {
            depth = depth.saturating_add_signed(e.nest(j));
            let Some((parts, qend)) = e
                .qname(j + 1)
                .filter(|_| depth == 0 && e.is(j, "references"))
            else {
                j += 1;
                continue;
            };
            let end = fk_tail(e, qend);
            if is_deferred(&split_name(parts), deferred) {
                let named = j >= 2 && e.is(j - 2, "constraint");
                let from = if named { j - 2 } else { j };
                let cname = if named {
                    format!("CONSTRAINT {} ", e.sub(j - 1, j).text())
                } else {
                    String::new()
                };
                let refs = e.sub(j, end).text();
                alters.push(format!(
                    "ALTER TABLE {table} ADD {cname}FOREIGN KEY ({col}) {refs}"
                ));
                if let (Some(s), Some(x)) = (e.get(from), e.get(end - 1)) {
                    cuts.push((back_over_ws(stmt, &all, s.start), x.end));
                }
            }
            j = end;
        }
    }
    // Whole elements: drop the comma before them (or, for leading elements, the one after).
    for (k, &(a, b)) in ranges.iter().enumerate() {
        let e = inner.sub(a, b);
        let (Some(first), Some(last)) = (e.t.first(), e.t.last()) else {
            continue;
        };
        if !removed.get(k).copied().unwrap_or(false) {
            continue;
        }
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
    let (mut out, mut pos) = (String::with_capacity(stmt.len()), 0);
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

// ===== Inserts ================================================================================

/// An `INSERT` statement, taken apart so its rows can be evaluated into
/// another table: the seeders' row-by-row checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub schema: Option<String>,
    pub table: String,
    /// Target columns (empty without a column list).
    pub columns: Vec<String>,
    /// `WITH …` before `INSERT`, as written (empty when none).
    pub prefix: String,
    /// The column list with its parentheses, as written (empty when none).
    pub column_list: String,
    /// The rows: `VALUES …`, `SELECT …`, `DEFAULT VALUES`…, as written,
    /// without `OVERRIDING …`, `ON CONFLICT …` or `RETURNING …`.
    pub source: String,
    /// The rows are a `VALUES` list (not computed by a query).
    pub values: Option<Values>,
}

/// The shape of an `INSERT`'s `VALUES` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Values {
    pub rows: usize,
    /// Items of the first row.
    pub width: usize,
    /// Every row is as wide, none holds the `DEFAULT` keyword, and the
    /// target columns are plain (no `tags[1]`): each row can be evaluated
    /// on its own, typed like its columns.
    pub plain: bool,
}

/// Take an `INSERT` statement apart (see [`Insert`]); `None` for anything else.
pub fn parse_insert(stmt: &str) -> Option<Insert> {
    read_one();
    let toks = sig_tokens(stmt);
    let v = View {
        src: stmt,
        t: &toks,
    };
    let mut i = 0;
    if v.is(0, "with") {
        let mut depth = 0usize;
        i = (0..v.len()).find(|&k| {
            depth = depth.saturating_add_signed(v.nest(k));
            depth == 0 && v.is(k, "insert")
        })?;
    }
    if !v.is(i, "insert") || !v.is(i + 1, "into") {
        return None;
    }
    let prefix = stmt.get(..v.get(i)?.start).unwrap_or("").to_owned();
    let (parts, mut k) = v.qname(i + 2)?;
    if v.is(k, "as") {
        k += 2;
    }
    let query = v.any(k + 1, &["select", "values", "with", "table"]) || v.sym(k + 1, "(");
    let mut columns = Vec::new();
    let mut column_list = String::new();
    let mut plain_columns = true;
    if let Some(close) = v.close(k).filter(|_| v.sym(k, "(") && !query) {
        let items = v.sub(k + 1, close).parts();
        plain_columns = items.iter().all(|c| c.len() == 1);
        columns = items
            .iter()
            .filter_map(|c| c.get(0).and_then(|x| ident_value(stmt, x)))
            .collect();
        column_list = v.sub(k, close + 1).text().to_owned();
        k = close + 1;
    }
    if v.is(k, "overriding") {
        k += 3;
    }
    let start = k;
    let mut depth = 0usize;
    let mut end = v.len();
    for j in start..v.len() {
        if depth == 0 && ((v.is(j, "on") && v.is(j + 1, "conflict")) || v.is(j, "returning")) {
            end = j;
            break;
        }
        depth = depth.saturating_add_signed(v.nest(j));
    }
    if start >= end {
        return None;
    }
    let (schema, table) = split_name(parts);
    let values = v.is(start, "values").then(|| {
        let mut shape = values_shape(v.sub(start + 1, end));
        shape.plain &= plain_columns;
        shape
    });
    Some(Insert {
        schema,
        table,
        columns,
        prefix,
        column_list,
        source: v.sub(start, end).text().to_owned(),
        values,
    })
}

/// Rows and width of a `VALUES` list (the tokens after `VALUES`).
fn values_shape(v: View<'_>) -> Values {
    let rows = v.parts();
    let mut shape = Values {
        rows: rows.len(),
        width: 0,
        plain: true,
    };
    for (n, row) in rows.iter().enumerate() {
        let Some(close) = row
            .close(0)
            .filter(|c| row.sym(0, "(") && *c + 1 == row.len())
        else {
            shape.plain = false;
            continue;
        };
        let items = row.sub(1, close).parts();
        if items.iter().any(|i| i.len() == 1 && i.is(0, "default")) {
            shape.plain = false;
        }
        if n == 0 {
            shape.width = items.len();
        } else if items.len() != shape.width {
            shape.plain = false;
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_need_autocommit() {
        for s in [
            "CREATE INDEX CONCURRENTLY idx ON t (a)",
            "create unique index concurrently if not exists i on t(a)",
            "DROP INDEX CONCURRENTLY idx",
            "REINDEX TABLE CONCURRENTLY t",
            "VACUUM ANALYZE t",
            "ALTER SYSTEM SET work_mem = '8MB'",
        ] {
            assert!(needs_autocommit(s), "{s}");
        }
        for s in [
            "CREATE INDEX idx ON t (a)",
            "REINDEX TABLE t",
            "ALTER TABLE t ADD COLUMN concurrently int",
            "SELECT 'vacuum'",
        ] {
            assert!(!needs_autocommit(s), "{s}");
        }
    }

    /// Statements joined by " ¦ ".
    fn split(sql: &str) -> String {
        let stmts = split_statements(sql).unwrap();
        stmts
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join(" ¦ ")
    }
    fn lines(sql: &str) -> Vec<usize> {
        split_statements(sql)
            .unwrap()
            .iter()
            .map(|s| s.line)
            .collect()
    }
    fn err(sql: &str) -> String {
        split_statements(sql).unwrap_err().to_string()
    }
    fn n(s: &str) -> String {
        normalize(s)
    }
    fn qualified(schema: &Option<String>, name: &str) -> String {
        schema
            .as_ref()
            .map_or(name.to_string(), |s| format!("{s}.{name}"))
    }
    /// `Kind schema.name(types) -> returns ¦ decl|decl`
    fn sig(sql: &str) -> String {
        let r = parse_routine(sql).unwrap();
        let ret = r.returns.map(|x| format!(" -> {x}")).unwrap_or_default();
        let name = qualified(&r.schema, &r.name);
        let (types, decls) = (r.arg_types.join(", "), r.args_text.join("|"));
        format!("{:?} {name}({types}){ret} ¦ {decls}", r.kind)
    }
    fn types(args: &str) -> String {
        let r = parse_routine(&format!("CREATE FUNCTION f({args}) RETURNS void AS $$ $$"));
        r.unwrap().arg_types.join(", ")
    }
    fn returns(tail: &str) -> String {
        let r = parse_routine(&format!("CREATE FUNCTION f() {tail}")).unwrap();
        r.returns.unwrap_or_else(|| "None".into())
    }
    fn ty(sql: &str) -> String {
        match parse_type(sql) {
            Ok(TypeDef::Enum {
                schema,
                name,
                labels,
            }) => {
                format!("Enum {} {}", qualified(&schema, &name), labels.join("|"))
            }
            Ok(TypeDef::Composite { schema, name }) => {
                format!("Composite {}", qualified(&schema, &name))
            }
            Ok(TypeDef::Domain { schema, name }) => format!("Domain {}", qualified(&schema, &name)),
            Ok(TypeDef::Other { schema, name }) => format!("Other {}", qualified(&schema, &name)),
            Err(e) => format!("Err {}", e.line),
        }
    }
    fn tbl(sql: &str) -> String {
        match classify_table_stmt(sql) {
            TableStmt::CreateTable {
                schema,
                name,
                references,
            } => {
                let refs: Vec<_> = references.iter().map(|(s, n)| qualified(s, n)).collect();
                format!("{} -> {}", qualified(&schema, &name), refs.join(", "))
            }
            TableStmt::Other => "Other".into(),
        }
    }
    fn ins(sql: &str) -> String {
        match parse_insert(sql) {
            Some(i) => format!(
                "{} ({})",
                qualified(&i.schema, &i.table),
                i.columns.join(", ")
            ),
            None => "None".into(),
        }
    }
    fn q(schema: Option<&str>, name: &str) -> (Option<String>, String) {
        (schema.map(str::to_string), name.to_string())
    }
    /// split_foreign_keys with schema-less deferred names.
    fn defer(sql: &str, names: &[&str]) -> (String, Vec<String>) {
        let d: Vec<_> = names.iter().map(|x| q(None, x)).collect();
        split_foreign_keys(sql, &d).unwrap()
    }
    fn check(f: fn(&str) -> String, cases: &[(&str, &str)]) {
        for (input, want) in cases {
            assert_eq!(f(input), *want, "input: {input}");
        }
    }

    // ----- split_statements -----

    #[test]
    fn split_basic() {
        #[rustfmt::skip]
        check(split, &[
            ("SELECT 1;\n\n  SELECT 2 ;\nSELECT 3", "SELECT 1 ¦ SELECT 2 ¦ SELECT 3"),
            ("BEGIN; SELECT 1; COMMIT;", "BEGIN ¦ SELECT 1 ¦ COMMIT"),
        ]);
    }

    #[test]
    fn split_semicolons_in_strings() {
        #[rustfmt::skip]
        check(split, &[
            ("INSERT INTO t VALUES ('a;b', 'it''s; ok');", "INSERT INTO t VALUES ('a;b', 'it''s; ok')"),
            ("SELECT 'x'';'';'; SELECT ';'", "SELECT 'x'';'';' ¦ SELECT ';'"),
        ]);
    }

    #[test]
    fn split_e_strings_with_backslashes() {
        #[rustfmt::skip]
        check(split, &[
            (r"SELECT E'it\'s; \\'; SELECT e'a\\';", r"SELECT E'it\'s; \\' ¦ SELECT e'a\\'"),
            (r"SELECT 'C:\'; SELECT 4", r"SELECT 'C:\' ¦ SELECT 4"),
            (r"SELECT E'\\\'';", r"SELECT E'\\\''"),
        ]);
    }

    #[test]
    fn split_other_string_prefixes() {
        #[rustfmt::skip]
        check(split, &[
            ("SELECT N'x;', B'01', X'f;'; SELECT 2", "SELECT N'x;', B'01', X'f;' ¦ SELECT 2"),
            ("SELECT U&'d\\0061;', U&\"a;\";", "SELECT U&'d\\0061;', U&\"a;\""),
        ]);
    }

    #[test]
    fn split_quoted_identifiers() {
        #[rustfmt::skip]
        check(split, &[
            ("CREATE TABLE \"a;\"\"b\" (x int); SELECT 1", "CREATE TABLE \"a;\"\"b\" (x int) ¦ SELECT 1"),
            ("SELECT \"日本;\", \"é\"\"--\"; SELECT 2", "SELECT \"日本;\", \"é\"\"--\" ¦ SELECT 2"),
        ]);
    }

    #[test]
    fn split_plpgsql_body() {
        let sql = "CREATE FUNCTION f(a int) RETURNS int AS $body$\nDECLARE x int := $1;\n\
                   BEGIN\n  EXECUTE $q$ SELECT ';' $$ not end $$ $q$;\n  RETURN x; -- $body\n\
                   END;\n$body$ LANGUAGE plpgsql;\nSELECT 2;";
        let s = split_statements(sql).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[0].text.ends_with("END;\n$body$ LANGUAGE plpgsql"));
        assert!(s[0]
            .text
            .contains("EXECUTE $q$ SELECT ';' $$ not end $$ $q$;"));
        assert_eq!((s[1].text.as_str(), s[1].line), ("SELECT 2", 8));
    }

    #[test]
    fn split_params_are_not_dollar_quotes() {
        #[rustfmt::skip]
        check(split, &[
            ("PREPARE p(int) AS SELECT $1 + $2; SELECT 3", "PREPARE p(int) AS SELECT $1 + $2 ¦ SELECT 3"),
            ("SELECT $1$x; SELECT $12;", "SELECT $1$x ¦ SELECT $12"),
        ]);
    }

    #[test]
    fn split_identifiers_containing_dollars() {
        check(
            split,
            &[(
                "SELECT a$b$c, x$$ FROM t$1; SELECT 2",
                "SELECT a$b$c, x$$ FROM t$1 ¦ SELECT 2",
            )],
        );
    }

    #[test]
    fn split_dollar_tags() {
        #[rustfmt::skip]
        check(split, &[
            ("SELECT $fn_1$ a;$b$ ; $fn_1$; SELECT 2", "SELECT $fn_1$ a;$b$ ; $fn_1$ ¦ SELECT 2"),
            ("SELECT $é$;$é$; SELECT $$$$; SELECT $a$$$$a$", "SELECT $é$;$é$ ¦ SELECT $$$$ ¦ SELECT $a$$$$a$"),
        ]);
    }

    #[test]
    fn split_comments_with_quotes_and_semicolons() {
        #[rustfmt::skip]
        check(split, &[
            ("-- it's; a\nSELECT 1 /* ; */ , '--;', '/*' -- x; 'y\n;\nSELECT 2", "SELECT 1 /* ; */ , '--;', '/*' ¦ SELECT 2"),
            ("SELECT a<>b--c;\n;SELECT 2", "SELECT a<>b ¦ SELECT 2"),
        ]);
    }

    #[test]
    fn split_nested_block_comments() {
        check(
            split,
            &[(
                "/* a /* b; */ still; 'x */ SELECT 1; /*/ x */ SELECT 2;",
                "SELECT 1 ¦ SELECT 2",
            )],
        );
    }

    #[test]
    fn split_drops_empty_and_comment_only() {
        #[rustfmt::skip]
        check(split, &[
            (";;  -- x\n ; /* y */; \n\n", ""),
            ("", ""),
            ("SELECT 1 -- no semicolon at the end", "SELECT 1"),
        ]);
    }

    #[test]
    fn split_semicolon_inside_parens_splits() {
        check(split, &[("SELECT (1; SELECT 2)", "SELECT (1 ¦ SELECT 2)")]);
    }

    #[test]
    fn split_begin_atomic_bodies() {
        let sql = "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  \
                   SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END;\n  SELECT a;\nEND;\n\
                   CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END;\nSELECT 3";
        let s: Vec<String> = split_statements(sql)
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].ends_with("SELECT a;\nEND"));
        assert_eq!(
            s[1],
            "CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); END"
        );
    }

    #[test]
    fn split_line_numbers() {
        assert_eq!(lines("SELECT 1;\n\n  SELECT 2 ;\nSELECT 3"), [1, 3, 4]);
        assert_eq!(lines("-- c\n/* x\ny */\n\n  SELECT 1;"), [5]);
        assert_eq!(
            lines("SELECT 'a\nb';\n/* x\ny */\nSELECT $$\n;\n$$;\nSELECT 3;"),
            [1, 5, 8]
        );
        assert_eq!(lines("SELECT \"a\nb\", E'\\\n';\n\nSELECT 2"), [1, 5]);
    }

    #[test]
    fn split_crlf_and_bom() {
        assert_eq!(lines("SELECT 1;\r\n\r\n-- c\r\nSELECT\r\n 2;"), [1, 4]);
        assert_eq!(
            split("\u{FEFF}SELECT 1;\r\nSELECT\r\n 2"),
            "SELECT 1 ¦ SELECT\r\n 2"
        );
    }

    #[test]
    fn split_keeps_inner_comments_only() {
        let s = split_statements("-- lead\nSELECT 1 /* in */ , 2 -- tail\n;").unwrap();
        assert_eq!(
            (s[0].text.as_str(), s[0].line),
            ("SELECT 1 /* in */ , 2", 2)
        );
    }

    #[test]
    fn split_unterminated() {
        #[rustfmt::skip]
        check(err, &[
            ("SELECT 1;\nSELECT 'abc;\n\n", "line 2: unterminated quoted string"),
            ("SELECT E'abc\\';", "line 1: unterminated quoted string"),
            ("SELECT 1;\n\nDO $x$ BEGIN END $y$;", "line 3: unterminated dollar-quoted string"),
            ("SELECT 1;\n--x\n$$", "line 3: unterminated dollar-quoted string"),
            ("/* a /* b */ SELECT 1;", "line 1: unterminated block comment"),
            ("\nSELECT \"abc", "line 2: unterminated quoted identifier"),
        ]);
        let e = split_statements("'").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (1, "unterminated quoted string")
        );
        let _: &dyn std::error::Error = &e;
    }

    // ----- normalize -----

    #[test]
    fn normalize_whitespace_case_comments() {
        #[rustfmt::skip]
        check(n, &[
            ("CREATE  TABLE Foo (\n  id INT, -- the id\n  name TEXT /* n */\n);\n", "create table foo(id int,name text)"),
            ("SELECT f( a , b ) ;;  ", "select f(a,b)"),
            ("  ;  ", ""),
        ]);
    }

    #[test]
    fn normalize_punctuation_and_operators() {
        #[rustfmt::skip]
        check(n, &[
            ("SELECT a + b = c", "select a+b=c"),
            ("SELECT a=-1, a = - 1", "select a= -1,a= -1"),
            ("SELECT x :: text, y := 1", "select x::text,y:=1"),
            ("SELECT a < = b, a <= b", "select a< =b,a<=b"),
        ]);
        assert_ne!(n("SELECT a b"), n("SELECT ab"));
    }

    #[test]
    fn normalize_keeps_literals_exact() {
        assert_ne!(n("SELECT 'Hello'"), n("SELECT 'hello'"));
        assert_ne!(n("SELECT \"Col\""), n("SELECT \"col\""));
        assert_ne!(n("SELECT 'a  b'"), n("SELECT 'a b'"));
        assert_ne!(n("SELECT 'a' 'b'"), n("SELECT 'a''b'"));
        assert_ne!(n("SELECT \"a\" \"b\""), n("SELECT \"a\"\"b\""));
        assert_eq!(n("SELECT '--x', '/*y*/'"), "select '--x','/*y*/'");
    }

    #[test]
    fn normalize_string_prefixes_and_numbers() {
        #[rustfmt::skip]
        check(n, &[
            ("SELECT E'X\\n', U&'d' , N'é', U&\"Q\"", "select e'X\\n',u&'d',n'é',u&\"Q\""),
            ("SELECT 1.5E-3, .5, 0X1F, 1_000, t.* ;", "select 1.5e-3,.5,0x1f,1_000,t.*"),
        ]);
        assert_ne!(n("SELECT E'X'"), n("SELECT E'x'"));
    }

    #[test]
    fn normalize_function_body_is_code() {
        let a = "CREATE FUNCTION f() RETURNS int AS $body$\nBEGIN\n    -- hi\n    \
                 RETURN  1;\nEND;\n$body$ LANGUAGE plpgsql;";
        let want = "create function f()returns int as $$begin return 1;end;$$ language plpgsql";
        #[rustfmt::skip]
        check(n, &[
            (a, want),
            ("create function f() returns int as $$ begin return 1; end; $$ language PLPGSQL", want),
        ]);
    }

    #[test]
    fn normalize_body_literals_exact() {
        let body = |s: &str| {
            n(&format!(
                "CREATE FUNCTION f() RETURNS text AS $$ RETURN {s}; $$"
            ))
        };
        assert_ne!(body("'Hello'"), body("'hello'"));
        assert_eq!(body("'Hello'"), body("/* x */ 'Hello'"));
        assert_ne!(body("$q$Hello$q$"), body("$q$hello$q$"));
        assert_ne!(body("\"X\""), body("\"x\""));
        assert!(body("$q$ A $q$").ends_with("as $$return $q$ A $q$;$$"));
    }

    #[test]
    fn normalize_do_and_sql_bodies() {
        #[rustfmt::skip]
        check(n, &[
            ("DO $x$ BEGIN PERFORM 1; END $x$;", "do $$begin perform 1;end$$"),
            ("DO LANGUAGE plpgsql $$ BEGIN NULL; END $$", "do language plpgsql $$begin null;end$$"),
            ("CREATE FUNCTION f() LANGUAGE 'sql' AS $$SELECT  1$$", "create function f()language 'sql' as $$select 1$$"),
            ("CREATE FUNCTION f() RETURNS TABLE(language text) LANGUAGE sql AS $$ SELECT 1 $$",
             "create function f()returns table(language text)language sql as $$select 1$$"),
        ]);
    }

    #[test]
    fn normalize_other_languages_exact() {
        let py = |s: &str| {
            n(&format!(
                "CREATE FUNCTION f() LANGUAGE plpython3u AS $$ {s} $$"
            ))
        };
        assert_ne!(py("return X"), py("return x"));
        assert_eq!(
            py("return X"),
            "create function f()language plpython3u as $$ return X $$"
        );
    }

    #[test]
    fn normalize_plain_dollar_literals_exact() {
        assert_ne!(
            n("INSERT INTO t VALUES ($$Hi$$)"),
            n("INSERT INTO t VALUES ($$hi$$)")
        );
        assert_ne!(
            n("COMMENT ON TABLE t IS $$Hi$$"),
            n("COMMENT ON TABLE t IS $$hi$$")
        );
    }

    #[test]
    fn normalize_plpgsql_ranges_and_casts() {
        let a = "DO $$ BEGIN FOR i IN 1..10 LOOP x := i::text; END LOOP; END $$";
        let b = "DO $$ begin for i in 1 .. 10 loop x:=i :: TEXT; end loop; end $$";
        assert_eq!(n(a), n(b));
    }

    #[test]
    fn normalize_is_idempotent() {
        for s in [
            "CREATE FUNCTION f(a int DEFAULT 1) RETURNS SETOF t AS $b$ SELECT a + -1 -- c\n $b$;",
            "select a<-b, x::int[], \"Q\"\"x\", E'\\'', $1 from t where a !~~ 'x' /* c */",
            "DO $$ BEGIN RAISE NOTICE 'Hi %', 1; END $$",
            "CREATE  TABLE Foo (\n  id INT, -- the id\n  name TEXT /* n */\n);\n",
        ] {
            assert_eq!(n(&n(s)), n(s), "{s}");
        }
    }

    #[test]
    fn normalize_unterminated_input() {
        check(
            n,
            &[
                ("SELECT 'abc", "select 'abc"),
                ("DO $$ BEGIN", "do $$ BEGIN"),
            ],
        );
    }

    // ----- parse_routine -----

    #[test]
    fn routine_defaults_with_commas_and_parens() {
        let sql = "CREATE OR REPLACE FUNCTION public.Add_Item(\n  p_name varchar(500),\n  \
                   p_tags text[] DEFAULT ARRAY['a,b', 'c)'],\n  x numeric(10,2) = 0.5,\n  \
                   d timestamptz DEFAULT now(),\n  s text DEFAULT 'x, (y)'\n) RETURNS integer\n\
                   LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$";
        let want = "Function public.add_item(varchar(500), text[], numeric(10,2), timestamptz, text) \
                    -> integer ¦ p_name varchar(500)|p_tags text[]|x numeric(10,2)|d timestamptz|s text";
        assert_eq!(sig(sql), want);
    }

    #[test]
    fn routine_procedure_modes() {
        let sql = "create procedure app.do_it(IN a int, OUT b text, InOut c bigint, \
                   variadic d int[], e OUT int, f IN text)\nlanguage plpgsql as $$begin end$$";
        let want = "Procedure app.do_it(int, bigint, int[], text) ¦ \
                    IN a int|OUT b text|InOut c bigint|variadic d int[]|e OUT int|f IN text";
        assert_eq!(sig(sql), want);
    }

    #[test]
    fn routine_unnamed_args() {
        #[rustfmt::skip]
        check(types, &[
            ("integer, text, public.my_type, double precision", "integer, text, public.my_type, double precision"),
            ("out int, in text, inout \"T\"", "text, \"T\""),
            ("", ""),
        ]);
    }

    #[test]
    fn routine_names_that_look_like_types() {
        #[rustfmt::skip]
        check(types, &[
            ("text text, integer integer, date date", "text, integer, date"),
            ("time time with time zone, double double precision", "time with time zone, double precision"),
            ("\"x\" int, interval interval, zone text", "int, interval, text"),
        ]);
    }

    #[test]
    fn routine_multi_word_types() {
        #[rustfmt::skip]
        check(types, &[
            ("a character varying(255), b timestamp with time zone", "character varying(255), timestamp with time zone"),
            ("c time without time zone, d bit varying(8)", "time without time zone, bit varying(8)"),
            ("e interval day to second, f national character varying(3)", "interval day to second, national character varying(3)"),
            ("j timestamp(3) without time zone, l interval second(3)", "timestamp(3) without time zone, interval second(3)"),
            ("m char(2), o interval", "char(2), interval"),
        ]);
    }

    #[test]
    fn routine_array_types_and_spacing() {
        #[rustfmt::skip]
        check(types, &[
            ("g character varying(20)[], h integer ARRAY", "character varying(20)[], integer ARRAY"),
            ("i int[][], j int ARRAY[3], k numeric ( 10 , 2 )", "int[][], int ARRAY[3], numeric(10,2)"),
        ]);
    }

    #[test]
    fn routine_type_references_and_defaults() {
        #[rustfmt::skip]
        check(types, &[
            ("p users.id%TYPE, VARIADIC \"any\"", "users.id%TYPE, \"any\""),
            ("x numeric(10,2) DEFAULT round(1.5, 2), y text = 'a = b, c'", "numeric(10,2), text"),
            ("z int[] DEFAULT '{1,2}', w text DEFAULT E'\\', '", "int[], text"),
        ]);
    }

    #[test]
    fn routine_quoted_and_non_ascii_names() {
        #[rustfmt::skip]
        check(sig, &[
            ("CREATE FUNCTION \"My S\".\"Fn \"\"é\"\"\"(\"日本\" text) RETURNS void AS 'x'",
             "Function My S.Fn \"é\"(text) -> void ¦ \"日本\" text"),
            ("CREATE FUNCTION café.Été(x \"MyType\"[]) RETURNS \"MyType\" AS $$$$",
             "Function café.Été(\"MyType\"[]) -> \"MyType\" ¦ x \"MyType\"[]"),
        ]);
    }

    #[test]
    fn routine_three_part_name() {
        let sql = "CREATE FUNCTION db.s.f() RETURNS void AS $$ $$ LANGUAGE sql";
        assert_eq!(sig(sql), "Function s.f() -> void ¦ ");
    }

    #[test]
    fn routine_comments_in_header() {
        let sql = "-- lead\nCREATE /* x */ OR REPLACE FUNCTION /* y */ s.f( -- args\n  a int, \
                   /* b */ b text -- last\n) RETURNS /* r */ int AS $$ $$ LANGUAGE sql";
        assert_eq!(sig(sql), "Function s.f(int, text) -> int ¦ a int|b text");
    }

    #[test]
    fn routine_returns_table() {
        let tail = "RETURNS TABLE (id int, total numeric(10,2), at timestamptz) LANGUAGE sql";
        assert_eq!(
            returns(tail),
            "TABLE(id int,total numeric(10,2),at timestamptz)"
        );
    }

    #[test]
    fn routine_returns_clause_ends() {
        #[rustfmt::skip]
        check(returns, &[
            ("RETURNS SETOF public.users STABLE LANGUAGE sql AS $$ $$", "SETOF public.users"),
            ("RETURNS trigger AS $$ $$ LANGUAGE plpgsql", "trigger"),
            ("RETURNS int RETURNS NULL ON NULL INPUT IMMUTABLE RETURN 1", "int"),
            ("RETURNS timestamp with time zone\nLANGUAGE sql AS 'x'", "timestamp with time zone"),
            ("RETURNS double precision WITH (isStrict) AS 'x' LANGUAGE c", "double precision"),
            ("RETURNS text[] /* c */ SECURITY DEFINER SET search_path = public AS 'x'", "text[]"),
            ("RETURNS cost.set COST 10 AS $$ $$", "cost.set"),
            ("LANGUAGE sql AS $$ $$", "None"),
        ]);
    }

    #[test]
    fn routine_errors() {
        let line = |s: &str| parse_routine(s).unwrap_err().line.to_string();
        #[rustfmt::skip]
        check(line, &[
            ("CREATE TABLE t (a int)", "1"),
            ("", "1"),
            ("SELECT f(1)", "1"),
            ("CREATE VIEW v AS SELECT 1", "1"),
            ("CREATE FUNCTION f RETURNS int", "1"),
            ("CREATE FUNCTION f(a int", "1"),
            ("CREATE FUNCTION (a)", "1"),
            ("CREATE FUNCTION\n\nf RETURNS int", "3"),
        ]);
    }

    // ----- parse_type -----

    #[test]
    fn type_enums() {
        #[rustfmt::skip]
        check(ty, &[
            ("CREATE TYPE app.\"Mood\" AS ENUM ('sad', 'it''s ok', 'x,y', '日本')", "Enum app.Mood sad|it's ok|x,y|日本"),
            ("CREATE TYPE e AS ENUM (E'a\\'b\\n', e'\\x41\\101\\u00e9\\\\', U&'x')", "Enum e a'b\n|AAé\\|x"),
            ("create type E as enum ()", "Enum e "),
        ]);
    }

    #[test]
    fn type_composite_domain_other() {
        #[rustfmt::skip]
        check(ty, &[
            ("CREATE TYPE Addr AS (street text, zip varchar(10))", "Composite addr"),
            ("CREATE DOMAIN public.email AS citext CHECK (VALUE ~ '@')", "Domain public.email"),
            ("CREATE DOMAIN pos int CHECK (VALUE > 0)", "Domain pos"),
            ("CREATE TYPE fr AS RANGE (subtype = float8)", "Other fr"),
            ("CREATE TYPE b (INPUT = i, OUTPUT = o)", "Other b"),
            ("CREATE TYPE \"Shell\"", "Other Shell"),
        ]);
    }

    #[test]
    fn type_errors() {
        #[rustfmt::skip]
        check(ty, &[
            ("CREATE TABLE t (a int)", "Err 1"),
            ("CREATE TYPE x AS ENUM 'a'", "Err 1"),
            ("CREATE TYPE x\nFOO", "Err 2"),
            ("CREATE VIEW v", "Err 1"),
            ("CREATE TYPE", "Err 1"),
        ]);
    }

    // ----- classify_table_stmt -----

    #[test]
    fn classify_references() {
        let sql = "CREATE UNLOGGED TABLE IF NOT EXISTS App.Orders (\n  id serial PRIMARY KEY,\n  \
                   user_id int NOT NULL REFERENCES users(id),\n  s int REFERENCES \"Shop\".\"S\",\n  \
                   note text DEFAULT 'REFERENCES x',\n  FOREIGN KEY (user_id) REFERENCES Users (id),\n  \
                   CONSTRAINT fk FOREIGN KEY (p) REFERENCES public.products, p int REFERENCES orders\n)";
        assert_eq!(
            tbl(sql),
            "app.orders -> users, Shop.S, public.products, orders"
        );
    }

    #[test]
    fn classify_table_variants() {
        #[rustfmt::skip]
        check(tbl, &[
            ("create temp table \"T\" as select 1", "T -> "),
            ("CREATE GLOBAL TEMPORARY TABLE x.\"é\" (a int REFERENCES \"日本\")", "x.é -> 日本"),
            ("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)", "p1 -> "),
        ]);
    }

    #[test]
    fn classify_other_statements() {
        #[rustfmt::skip]
        check(tbl, &[
            ("CREATE INDEX i ON t (a)", "Other"),
            ("ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES u", "Other"),
            ("COMMENT ON TABLE t IS 'x'", "Other"),
            ("CREATE FOREIGN TABLE ft (a int) SERVER s", "Other"),
            ("", "Other"),
        ]);
    }

    // ----- split_foreign_keys -----

    #[test]
    fn fk_inline_reference() {
        let sql = "CREATE TABLE a (\n  id int PRIMARY KEY,\n  b_id int REFERENCES b(id) \
                   ON DELETE CASCADE NOT NULL DEFAULT 1,\n  c_id int REFERENCES c\n)";
        let (t, alters) = defer(sql, &["B"]);
        let want = "CREATE TABLE a (\n  id int PRIMARY KEY,\n  b_id int NOT NULL DEFAULT 1,\n  \
                    c_id int REFERENCES c\n)";
        assert_eq!(t, want);
        let want = "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b(id) ON DELETE CASCADE";
        assert_eq!(alters, [want]);
    }

    #[test]
    fn fk_named_inline_constraint() {
        let sql = "CREATE TABLE s.\"A\" (\"B Id\" bigint CONSTRAINT fk_b REFERENCES s.b (id) \
                   MATCH FULL ON UPDATE SET NULL (\"B Id\") DEFERRABLE INITIALLY DEFERRED \
                   CHECK (\"B Id\" > 0))";
        let (t, alters) = split_foreign_keys(sql, &[q(Some("S"), "b")]).unwrap();
        assert_eq!(
            t,
            "CREATE TABLE s.\"A\" (\"B Id\" bigint CHECK (\"B Id\" > 0))"
        );
        let want = "ALTER TABLE s.\"A\" ADD CONSTRAINT fk_b FOREIGN KEY (\"B Id\") REFERENCES \
                    s.b (id) MATCH FULL ON UPDATE SET NULL (\"B Id\") DEFERRABLE INITIALLY DEFERRED";
        assert_eq!(alters, [want]);
    }

    #[test]
    fn fk_table_level_constraint() {
        let sql = "CREATE TABLE a (\n  id int,\n  b_id int,\n  -- the b link\n  CONSTRAINT fk_b \
                   FOREIGN KEY (b_id) REFERENCES b (id) ON DELETE SET NULL NOT DEFERRABLE,\n  \
                   CHECK (id > 0)\n)";
        let (t, alters) = defer(sql, &["b"]);
        assert_eq!(
            t,
            "CREATE TABLE a (\n  id int,\n  b_id int,\n  CHECK (id > 0)\n)"
        );
        let want = "ALTER TABLE a ADD CONSTRAINT fk_b FOREIGN KEY (b_id) REFERENCES b (id) \
                    ON DELETE SET NULL NOT DEFERRABLE";
        assert_eq!(alters, [want]);
    }

    #[test]
    fn fk_leading_and_consecutive_elements() {
        let sql = "CREATE TABLE a (FOREIGN KEY (x) REFERENCES b, FOREIGN KEY (y) REFERENCES c, \
                   x int, y int, FOREIGN KEY (x) REFERENCES b, FOREIGN KEY (y) REFERENCES b)";
        let (t, alters) = defer(sql, &["b", "c"]);
        assert_eq!(t, "CREATE TABLE a (x int, y int)");
        assert_eq!(alters.len(), 4);
        assert_eq!(alters[1], "ALTER TABLE a ADD FOREIGN KEY (y) REFERENCES c");
        let (t, _) = defer("CREATE TABLE a (FOREIGN KEY (x) REFERENCES b)", &["b"]);
        assert_eq!(t, "CREATE TABLE a ()");
    }

    #[test]
    fn fk_schema_matching() {
        let sql =
            "CREATE TABLE a (x int REFERENCES public.b, y int REFERENCES o.b, z int REFERENCES b)";
        let (t, alters) = split_foreign_keys(sql, &[q(Some("public"), "b")]).unwrap();
        assert_eq!(t, "CREATE TABLE a (x int, y int REFERENCES o.b, z int)");
        assert_eq!(alters.len(), 2);
        let (t, alters) = defer(sql, &["B"]);
        assert_eq!(
            (t.as_str(), alters.len()),
            ("CREATE TABLE a (x int, y int, z int)", 3)
        );
        assert_eq!(defer(sql, &["c"]), (sql.to_string(), vec![]));
    }

    #[test]
    fn fk_round_trip_keeps_everything_else() {
        let sql = "CREATE TABLE IF NOT EXISTS app.orders (\n    id bigserial PRIMARY KEY, -- pk\n    \
                   customer_id bigint NOT NULL\n        REFERENCES app.customers(id) ON DELETE \
                   RESTRICT,\n    note text DEFAULT 'REFERENCES x, FOREIGN KEY' CHECK (note <> ';'),\n    \
                   parent_id bigint REFERENCES app.orders, -- self\n    UNIQUE (customer_id, id)\n)";
        let deferred = [q(Some("app"), "customers")];
        let (t, alters) = split_foreign_keys(sql, &deferred).unwrap();
        for part in [
            "CREATE TABLE IF NOT EXISTS app.orders (\n    id bigserial PRIMARY KEY, -- pk\n",
            "customer_id bigint NOT NULL,",
            "note text DEFAULT 'REFERENCES x, FOREIGN KEY' CHECK (note <> ';'),",
            "parent_id bigint REFERENCES app.orders, -- self\n    UNIQUE (customer_id, id)\n)",
        ] {
            assert!(t.contains(part), "missing {part:?} in {t}");
        }
        let want = "ALTER TABLE app.orders ADD FOREIGN KEY (customer_id) REFERENCES \
                    app.customers(id) ON DELETE RESTRICT";
        assert_eq!(alters, [want]);
        assert_eq!(split_statements(&t).unwrap().len(), 1);
        assert_eq!(tbl(&t), "app.orders -> app.orders");
        assert_eq!(
            split_foreign_keys(&t, &deferred).unwrap(),
            (t.clone(), vec![])
        );
    }

    #[test]
    fn fk_line_comments_stay_safe() {
        let sql =
            "CREATE TABLE a (\n  b_id int -- link\n    REFERENCES b,\n  x int REFERENCES b -- c\n)";
        let (t, alters) = defer(sql, &["b"]);
        assert_eq!(
            t,
            "CREATE TABLE a (\n  b_id int -- link\n,\n  x int -- c\n)"
        );
        assert_eq!(
            alters[0],
            "ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b"
        );
        assert_eq!(alters[1], "ALTER TABLE a ADD FOREIGN KEY (x) REFERENCES b");
        assert_eq!(n(&t), "create table a(b_id int,x int)");
    }

    #[test]
    fn fk_partition_and_exclude() {
        let p = "CREATE TABLE p1 PARTITION OF p (CONSTRAINT f FOREIGN KEY (a) REFERENCES q) \
                 FOR VALUES IN (1)";
        let (t, alters) = defer(p, &["q"]);
        assert_eq!(t, "CREATE TABLE p1 PARTITION OF p () FOR VALUES IN (1)");
        assert_eq!(
            alters,
            ["ALTER TABLE p1 ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES q"]
        );
        let x = "CREATE TABLE t (exclude int REFERENCES q, EXCLUDE USING gist (c WITH &&))";
        let want = "CREATE TABLE t (exclude int, EXCLUDE USING gist (c WITH &&))";
        assert_eq!(defer(x, &["q"]).0, want);
    }

    #[test]
    fn fk_passthrough_and_errors() {
        let s = "CREATE TABLE t AS SELECT 1";
        assert_eq!(defer(s, &["t"]), (s.to_string(), vec![]));
        let line = |s: &str| split_foreign_keys(s, &[]).unwrap_err().to_string();
        #[rustfmt::skip]
        check(line, &[
            ("CREATE INDEX i ON t (a)", "line 1: not a CREATE TABLE statement"),
            ("CREATE TABLE t (\na text DEFAULT 'x", "line 2: unterminated quoted string"),
            ("CREATE TABLE t (a int", "line 1: unbalanced parentheses"),
        ]);
    }

    // ----- parse_insert -----

    #[test]
    fn insert_targets() {
        #[rustfmt::skip]
        check(ins, &[
            ("INSERT INTO Public.\"Users\" (ID, \"Name\", tags[1]) VALUES (1, 'a', 'b')", "public.Users (id, Name, tags)"),
            ("INSERT INTO t AS x (a) SELECT 1 ON CONFLICT DO NOTHING", "t (a)"),
            ("insert into t values (1)", "t ()"),
            ("INSERT INTO t (SELECT 1)", "t ()"),
            ("/* s */ INSERT INTO t DEFAULT VALUES", "t ()"),
        ]);
    }

    #[test]
    fn insert_after_cte() {
        #[rustfmt::skip]
        check(ins, &[
            ("WITH x AS (INSERT INTO a VALUES (1) RETURNING 1) INSERT INTO b (c) SELECT 1", "b (c)"),
            ("WITH x AS (SELECT 1) SELECT * FROM x", "None"),
        ]);
    }

    #[test]
    fn insert_rows_and_their_shape() {
        let i = parse_insert(
            "INSERT INTO roles (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'a'), (2, 'b;c') ON CONFLICT (id) DO NOTHING",
        )
        .unwrap();
        assert_eq!(
            i.values,
            Some(Values {
                rows: 2,
                width: 2,
                plain: true
            })
        );
        assert_eq!(i.source, "VALUES (1, 'a'), (2, 'b;c')");
        assert_eq!(i.column_list, "(id, name)");
        let i = parse_insert("WITH n AS (SELECT 1 AS v) INSERT INTO t SELECT v FROM n RETURNING *")
            .unwrap();
        assert_eq!(i.values, None);
        assert_eq!(i.prefix, "WITH n AS (SELECT 1 AS v) ");
        assert_eq!(i.source, "SELECT v FROM n");
        let i = parse_insert("INSERT INTO t VALUES ((SELECT 1 ON CONFLICT), 2)").unwrap();
        assert_eq!(i.source, "VALUES ((SELECT 1 ON CONFLICT), 2)");
        assert_eq!(
            i.values,
            Some(Values {
                rows: 1,
                width: 2,
                plain: true
            })
        );
        for (odd, rows) in [
            ("INSERT INTO t VALUES (1, DEFAULT), (2, 3)", 2),
            ("INSERT INTO t VALUES (1), (1, 2)", 2),
            ("INSERT INTO t (tags[1]) VALUES ('a')", 1),
        ] {
            let v = parse_insert(odd).unwrap().values.unwrap();
            assert_eq!((v.plain, v.rows), (false, rows), "{odd}");
        }
        assert_eq!(
            parse_insert("INSERT INTO t DEFAULT VALUES").unwrap().values,
            None
        );
        assert!(parse_insert("INSERT INTO t ON CONFLICT DO NOTHING").is_none());
    }

    #[test]
    fn insert_other_statements() {
        for s in [
            "UPDATE t SET a = 1",
            "INSERT t VALUES (1)",
            "",
            "SELECT 'INSERT INTO t'",
        ] {
            assert_eq!(ins(s), "None", "{s}");
        }
    }

    // ----- a pg_dump-style file end to end -----

    #[test]
    fn pg_dump_style_file() {
        let dump = "--\n-- PostgreSQL database dump\n--\nSET statement_timeout = 0;\n\n\
            CREATE FUNCTION public.calc(p_id integer, OUT total numeric, VARIADIC x numeric[] \
            DEFAULT '{}'::numeric[]) RETURNS numeric\n    LANGUAGE plpgsql STABLE\n    \
            SET search_path TO 'public'\n    AS $_$\nBEGIN\n  SELECT sum(p) INTO total \
            WHERE id = $1; -- ;\nEND;\n$_$;\n\nCREATE TABLE public.orders (\n    id integer,\n    \
            c_id integer REFERENCES public.customers(id)\n);\n";
        let s = split_statements(dump).unwrap();
        assert_eq!(s.iter().map(|s| s.line).collect::<Vec<_>>(), [4, 6, 15]);
        let r = parse_routine(&s[1].text).unwrap();
        assert_eq!(
            (r.arg_types.join(", "), r.returns),
            ("integer, numeric[]".into(), Some("numeric".into()))
        );
        assert!(n(&s[1].text).ends_with("as $$begin select sum(p)into total where id=$1;end;$$"));
        assert_eq!(tbl(&s[2].text), "public.orders -> public.customers");
        let (t, _) = defer(&s[2].text, &["customers"]);
        assert_eq!(
            t,
            "CREATE TABLE public.orders (\n    id integer,\n    c_id integer\n)"
        );
    }

    // ----- robustness -----

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        let corpus = "CREATE OR REPLACE FUNCTION \"S\".f(a int DEFAULT 'x,(', OUT b text[], \
            c numeric(10,2) = 0.5)\nRETURNS TABLE(x int) AS $b$ BEGIN EXECUTE $q$ ';' $q$; \
            RETURN; END $b$ LANGUAGE plpgsql;\nCREATE TABLE t (id int CONSTRAINT k REFERENCES \
            u(id) ON DELETE SET NULL (id), FOREIGN KEY (id) REFERENCES v);\nCREATE TYPE e AS \
            ENUM ('a', E'\\x41\\u00e9\\101\\'', 'b''c'); /* /* n */ */ -- é日本\nINSERT INTO t \
            (id) VALUES ($1), (1e5), (.5), ('\\'); SELECT U&\"x\" :: int, a<=>b ..;\r\n";
        let deferred = [q(None, "u"), q(None, "v")];
        let mut inputs: Vec<String> = corpus
            .char_indices()
            .map(|(i, _)| corpus[..i].into())
            .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet: Vec<char> = "'\"$;()[],.-*/\\eE&U:=<>_ab1 \n\té日".chars().collect();
        for _ in 0..300 {
            let mut s = String::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            inputs.extend([
                format!("CREATE TABLE t ({s}"),
                format!("CREATE FUNCTION f({s}"),
                s,
            ]);
        }
        for s in &inputs {
            let _ = split_statements(s);
            let _ = n(&n(s));
            let _ = (parse_routine(s), parse_type(s), classify_table_stmt(s));
            let _ = (split_foreign_keys(s, &deferred), parse_insert(s));
        }
        assert_eq!(split_statements(corpus).unwrap().len(), 5);
    }
}
