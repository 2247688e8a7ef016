//! Seeded rows, checked row by row (docs/SCHEMA.md, "Seeders": "if you
//! define a seeder for `roles` with 3 roles, the gateway verifies all 3
//! exist").
//!
//! The rows of a seeder's `INSERT … VALUES` are evaluated by PostgreSQL
//! itself, cast to the target columns' types (`SELECT v.column1::integer
//! AS id, … FROM (VALUES …) v`), without writing anything and without DDL.
//! They are matched against the table: on the primary key when the INSERT
//! supplies it, else on every column it supplies (compared as text, so
//! types without an equality operator match too). An `INSERT … SELECT`, a
//! `VALUES` list with `DEFAULT` or `DEFAULT VALUES` are checked by count
//! only: the gateway cannot tell their rows apart. Missing rows can be
//! inserted from the same evaluation.

use stonescriptdb_shared::names::{quote_ident, quote_literal};
use stonescriptdb_shared::wire::MatchedOn;
use tokio_postgres::GenericClient;

use std::collections::HashMap;

use stonescriptdb_shared::wire::SeederResult;

use super::inserts::Insert;
use crate::sql::SqlFile;

/// How rows are matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    PrimaryKey(Vec<String>),
    Columns(Vec<String>),
    Count,
}

impl Match {
    /// What the report says.
    pub fn on(&self) -> MatchedOn {
        match self {
            Match::PrimaryKey(_) => MatchedOn::PrimaryKey,
            Match::Columns(_) => MatchedOn::Columns,
            Match::Count => MatchedOn::Count,
        }
    }
}

/// One seeder INSERT checked against its table.
#[derive(Debug, Clone)]
pub struct Check {
    /// The table as the seeder names it (`roles`, `app.roles`), for reports.
    pub table: String,
    /// The table, quoted for SQL.
    qualified: String,
    /// `SELECT` of the seeded rows, typed and named like the target columns.
    rows_sql: String,
    columns: Vec<String>,
    pub matched: Match,
    /// Rows the statement seeds.
    pub rows: u64,
    pub present: u64,
    pub missing: u64,
    /// Keys of (at most 20) missing rows, `(id)=(3)`.
    pub missing_rows: Vec<String>,
}

/// The label reports use for `ins`'s table.
pub fn label(ins: &Insert) -> String {
    match &ins.schema {
        Some(s) => format!("{s}.{}", ins.table),
        None => ins.table.clone(),
    }
}

/// Count how many of `ins`'s rows its table holds.
pub async fn check(c: &impl GenericClient, ins: &Insert) -> Result<Check, tokio_postgres::Error> {
    let qualified = format!(
        "{}.{}",
        quote_ident(ins.schema.as_deref().unwrap_or("public")),
        quote_ident(&ins.table)
    );
    let mut out = Check {
        table: label(ins),
        qualified,
        rows_sql: String::new(),
        columns: Vec::new(),
        matched: Match::Count,
        rows: 0,
        present: 0,
        missing: 0,
        missing_rows: Vec::new(),
    };
    let shape = match ins.values {
        Some(v) if v.plain => v,
        Some(v) => return count_only(c, out, v.rows as u64).await,
        None if ins.source.to_ascii_lowercase().starts_with("default") => {
            return count_only(c, out, 1).await
        }
        None => {
            // rows computed by a query: count them
            let n: i64 = c
                .query_one(
                    &format!("{}SELECT count(*) FROM ({}) AS v", ins.prefix, ins.source),
                    &[],
                )
                .await?
                .get(0);
            return count_only(c, out, n.max(0) as u64).await;
        }
    };
    // the target columns and their types, in the order the VALUES fill them
    let typed: Vec<(String, String)> = if ins.columns.is_empty() {
        c.query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum LIMIT $2",
            &[&out.qualified, &(shape.width as i64)],
        )
        .await?
    } else {
        c.query(
            "SELECT c.name, format_type(a.atttypid, a.atttypmod)
             FROM unnest($2::text[]) WITH ORDINALITY AS c(name, o)
             JOIN pg_attribute a ON a.attrelid = to_regclass($1) AND a.attname = c.name
                                AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY c.o",
            &[&out.qualified, &ins.columns],
        )
        .await?
    }
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    if typed.len() != shape.width {
        return count_only(c, out, shape.rows as u64).await;
    }
    out.rows = shape.rows as u64;
    out.columns = typed.iter().map(|(n, _)| n.clone()).collect();
    out.rows_sql = format!(
        "{}SELECT {} FROM ({}) AS v",
        ins.prefix,
        typed
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| format!("v.column{}::{ty} AS {}", i + 1, quote_ident(name)))
            .collect::<Vec<_>>()
            .join(", "),
        ins.source
    );
    let pk: Vec<String> = c
        .query(
            "SELECT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&out.qualified],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.matched = if !pk.is_empty() && pk.iter().all(|k| out.columns.contains(k)) {
        Match::PrimaryKey(pk)
    } else {
        Match::Columns(out.columns.clone())
    };
    let keys = match &out.matched {
        Match::PrimaryKey(k) | Match::Columns(k) => k.clone(),
        Match::Count => Vec::new(),
    };
    let key_text = format!(
        "{} || '=(' || concat_ws(', ', {}) || ')'",
        quote_literal(&format!("({})", keys.join(", "))),
        keys.iter()
            .map(|k| format!("coalesce(s.{}::text, 'NULL')", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let row = c
        .query_one(
            &format!(
                "SELECT count(*), (array_agg({key_text}))[1:20] FROM ({}) AS s WHERE NOT EXISTS ({})",
                out.rows_sql,
                out.matching()
            ),
            &[],
        )
        .await?;
    let missing: i64 = row.get(0);
    out.missing = missing.max(0) as u64;
    out.present = out.rows.saturating_sub(out.missing);
    out.missing_rows = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
    Ok(out)
}

/// A check by count: `n` seeded rows against the table's row count.
async fn count_only(
    c: &impl GenericClient,
    mut out: Check,
    n: u64,
) -> Result<Check, tokio_postgres::Error> {
    let have: i64 = c
        .query_one(&format!("SELECT count(*) FROM {}", out.qualified), &[])
        .await?
        .get(0);
    out.rows = n;
    out.present = n.min(have.max(0) as u64);
    out.missing = n - out.present;
    Ok(out)
}

impl Check {
    /// `SELECT 1 FROM <table> t WHERE <t matches s>`.
    fn matching(&self) -> String {
        let cond: Vec<String> = match &self.matched {
            Match::PrimaryKey(k) => k
                .iter()
                .map(|c| format!("t.{0} = s.{0}", quote_ident(c)))
                .collect(),
            Match::Columns(k) => k
                .iter()
                .map(|c| {
                    format!(
                        "t.{0}::text IS NOT DISTINCT FROM s.{0}::text",
                        quote_ident(c)
                    )
                })
                .collect(),
            Match::Count => vec!["false".into()],
        };
        format!(
            "SELECT 1 FROM {} t WHERE {}",
            self.qualified,
            if cond.is_empty() {
                "true".into()
            } else {
                cond.join(" AND ")
            }
        )
    }

    /// A check as `check` would return it, for plan tests: `missing` of
    /// `rows` seeded rows of `table` (columns `id`, `name`) are missing.
    #[cfg(test)]
    pub fn missing_of(table: &str, matched: Match, rows: u64, missing: u64) -> Check {
        Check {
            table: table.into(),
            qualified: format!("\"public\".\"{table}\""),
            rows_sql: "VALUES (1, 'a'), (2, 'b')".into(),
            columns: vec!["id".into(), "name".into()],
            matched,
            rows,
            present: rows - missing,
            missing,
            missing_rows: (0..missing).map(|i| format!("(id)=({})", i + 1)).collect(),
        }
    }

    /// The statement that inserts the missing rows (matched as checked);
    /// None when nothing is missing or rows are matched by count only.
    pub fn insert_sql(&self) -> Option<String> {
        if self.matched == Match::Count || self.missing == 0 {
            return None;
        }
        let cols = self
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "INSERT INTO {} ({cols}) SELECT {cols} FROM ({}) AS s WHERE NOT EXISTS ({})",
            self.qualified,
            self.rows_sql,
            self.matching()
        ))
    }
}

/// Per-table results of one seeder file, in the order tables first appear.
pub fn results(
    file: &SqlFile,
    checks: &[(usize, Check)],
    inserted: &HashMap<String, u64>,
) -> Vec<SeederResult> {
    let mut out: Vec<SeederResult> = Vec::new();
    for (_, c) in checks {
        let i = match out.iter().position(|r| r.table == c.table) {
            Some(i) => i,
            None => {
                out.push(SeederResult {
                    table: c.table.clone(),
                    file: file.path.clone(),
                    matched_on: Some(c.matched.on()),
                    ..SeederResult::default()
                });
                out.len() - 1
            }
        };
        let r = &mut out[i];
        r.present += c.present;
        r.missing += c.missing;
        if c.matched == Match::Count {
            r.matched_on = Some(stonescriptdb_shared::wire::MatchedOn::Count);
        }
        for k in &c.missing_rows {
            if r.missing_rows.len() < 20 {
                r.missing_rows.push(k.clone());
            }
        }
    }
    for r in &mut out {
        let ins = inserted.get(&r.table).copied().unwrap_or(0);
        r.inserted = ins;
        r.missing = r.missing.saturating_sub(ins);
        r.present += ins;
        r.skipped = r.present.saturating_sub(ins);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_matched_on_the_key_or_every_column_as_text() {
        let mut c = Check {
            table: "roles".into(),
            qualified: "\"public\".\"roles\"".into(),
            rows_sql: String::new(),
            columns: vec!["id".into(), "name".into()],
            matched: Match::PrimaryKey(vec!["id".into()]),
            rows: 3,
            present: 3,
            missing: 0,
            missing_rows: vec![],
        };
        assert_eq!(
            c.matching(),
            "SELECT 1 FROM \"public\".\"roles\" t WHERE t.\"id\" = s.\"id\""
        );
        c.matched = Match::Columns(c.columns.clone());
        assert!(c
            .matching()
            .ends_with("t.\"id\"::text IS NOT DISTINCT FROM s.\"id\"::text AND t.\"name\"::text IS NOT DISTINCT FROM s.\"name\"::text"));
    }
}
