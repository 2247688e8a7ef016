//! Splitting a file into statements, and which statements cannot run in a
//! transaction block.

use super::error::SqlError;
use super::lex::{tokenize, unterminated, Kind, Tok};
use super::normalize::normalize;
use super::statement::Statement;

/// Statements PostgreSQL refuses inside a transaction block that a
/// deployment runs after its commit (the database- and cluster-level ones
/// among them are refused before anything runs: [`super::guard`]).
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
        | ["vacuum", ..] => true,
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
    /// A whole-file `BEGIN;` … `COMMIT;` wrapper (indices of those two
    /// statements), which a deployment does not run ([`super::guard::wrapper`]).
    pub wrapper: Option<(usize, usize)>,
}

impl SqlFile {
    /// A file of `path` whose statements are `texts`, one per line (for
    /// plan tests: `checksum` "x", no wrapper).
    #[cfg(test)]
    pub fn of_lines(path: &str, texts: &[&str]) -> SqlFile {
        SqlFile {
            path: path.to_owned(),
            statements: texts
                .iter()
                .enumerate()
                .map(|(i, t)| Statement {
                    text: (*t).to_owned(),
                    line: i + 1,
                })
                .collect(),
            checksum: "x".into(),
            wrapper: None,
        }
    }

    /// The statements a deployment runs, with their index in the file
    /// (everything but a whole-file wrapper).
    pub fn runnable(&self) -> impl Iterator<Item = (usize, &Statement)> {
        let wrapper = self.wrapper;
        self.statements
            .iter()
            .enumerate()
            .filter(move |(i, _)| !wrapper.is_some_and(|(a, b)| *i == a || *i == b))
    }
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
