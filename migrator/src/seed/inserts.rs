//! `INSERT` statements taken apart: target, columns, rows (the seeders).

use crate::sql::lex::sig_tokens;
use crate::sql::statement::read_one;
use crate::sql::view::{split_name, View};

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
    let v = View::new(stmt, &toks);
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
        columns = items.iter().filter_map(|c| c.ident(0)).collect();
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
pub(super) fn values_shape(v: View<'_>) -> Values {
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
