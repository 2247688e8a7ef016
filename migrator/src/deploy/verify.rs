//! After a deployment (and for `/v2/migrate`'s databases already at the
//! target version, read-only): is everything the schema declares there —
//! extensions installed, types and tables present, tables as declared,
//! seeded rows present row by row?

use std::collections::{BTreeSet, HashMap};

use stonescriptdb_shared::wire::{SeederResult, Verification};
use tokio_postgres::Client;

use crate::error::{pg_message, MigratorError};
use crate::schema::Parsed;
use crate::seed;
use crate::tables::model::QName;
use crate::tables::{diff, introspect};

/// Does every declared table match its recorded declared model (no diff
/// left)? True when the schema has no `tables/`.
async fn tables_as_declared(
    client: &mut Client,
    schema: &Parsed,
) -> Result<bool, tokio_postgres::Error> {
    if schema.declared.is_none() {
        return Ok(true);
    }
    let rows = client
        .query(
            "SELECT name, declared::text, folder_checksum FROM _stonescriptdb_gateway_tables WHERE declared IS NOT NULL",
            &[],
        )
        .await?;
    let (declared, _) = crate::tables::recorded::declared_model(&rows);
    let tables: BTreeSet<QName> = declared.tables.keys().cloned().collect();
    let sequences: BTreeSet<QName> = declared.sequences.keys().cloned().collect();
    let tx = client.transaction().await?;
    let observed = introspect::observe(&tx, &declared, &tables, &sequences).await?;
    tx.rollback().await?;
    Ok(diff::diff(&declared, &observed, &declared).is_empty())
}

/// How many of `names` the database lacks, `missing` being the test per name `n`.
async fn count_missing(
    client: &Client,
    names: &[String],
    missing: &str,
) -> Result<i64, tokio_postgres::Error> {
    let sql_text = format!("SELECT count(*) FROM unnest($1::text[]) n WHERE {missing}");
    Ok(client.query_one(&sql_text, &[&names]).await?.get(0))
}

/// Check the database `client` is connected to; also each seeder's results.
pub async fn verify(
    client: &mut Client,
    schema: &Parsed,
) -> Result<(Verification, Vec<SeederResult>), MigratorError> {
    let q = |e: tokio_postgres::Error| {
        MigratorError::DatabaseUnavailable(format!("verification failed: {}", pg_message(&e)))
    };
    let m = &schema.model;
    let exts: Vec<String> = schema.extensions.iter().map(|e| e.name.clone()).collect();
    let quoted = |s: &str, n: &str| {
        format!(
            "{}.{}",
            stonescriptdb_shared::names::quote_ident(s),
            stonescriptdb_shared::names::quote_ident(n)
        )
    };
    let types: Vec<String> = m.types.iter().map(|t| quoted(&t.schema, &t.name)).collect();
    let tables: Vec<String> = m
        .tables
        .iter()
        .map(|t| quoted(&t.key.0, &t.key.1))
        .collect();
    let missing_ext = count_missing(
        client,
        &exts,
        "NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = n)",
    )
    .await
    .map_err(q)?;
    let missing_types = count_missing(client, &types, "to_regtype(n) IS NULL")
        .await
        .map_err(q)?;
    let missing_tables = count_missing(client, &tables, "to_regclass(n) IS NULL")
        .await
        .map_err(q)?;
    let tables_match = tables_as_declared(&mut *client, schema).await.map_err(q)?;
    // Seeded rows, row by row, in a transaction that is rolled back.
    let mut results = Vec::new();
    let mut unverifiable = false;
    if !schema.seeders.is_empty() {
        let tx = client.transaction().await.map_err(q)?;
        'files: for (fi, file) in schema.seeders.iter().enumerate() {
            let mut checks = Vec::new();
            for (i, ins) in &m.inserts[fi] {
                // a seeder that cannot even be evaluated is not verified
                match seed::check(&tx, ins).await {
                    Ok(c) => checks.push((*i, c)),
                    Err(_) => {
                        unverifiable = true;
                        results.extend(seed::results(file, &checks, &HashMap::new()));
                        break 'files;
                    }
                }
            }
            results.extend(seed::results(file, &checks, &HashMap::new()));
        }
        let _ = tx.rollback().await;
    }
    let found = Found {
        missing_extensions: missing_ext,
        missing_types,
        missing_tables,
        tables_match,
        seeders_unverifiable: unverifiable,
    };
    Ok((found.verdict(&results), results))
}

/// What the checks found.
struct Found {
    missing_extensions: i64,
    missing_types: i64,
    missing_tables: i64,
    /// Every declared table matches its declared model.
    tables_match: bool,
    /// A seeder could not even be evaluated.
    seeders_unverifiable: bool,
}

impl Found {
    /// Passed only when nothing is missing: every extension, type and
    /// table, the tables as declared, every seeded row.
    fn verdict(&self, seeders: &[SeederResult]) -> Verification {
        let v = Verification {
            passed: false,
            extensions_verified: self.missing_extensions == 0,
            types_verified: self.missing_types == 0,
            tables_verified: self.missing_tables == 0 && self.tables_match,
            seeders_verified: !self.seeders_unverifiable && seeders.iter().all(|s| s.missing == 0),
        };
        Verification {
            passed: v.extensions_verified
                && v.types_verified
                && v.tables_verified
                && v.seeders_verified,
            ..v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_there() -> Found {
        Found {
            missing_extensions: 0,
            missing_types: 0,
            missing_tables: 0,
            tables_match: true,
            seeders_unverifiable: false,
        }
    }

    fn seeded(missing: u64) -> Vec<SeederResult> {
        vec![SeederResult {
            table: "roles".into(),
            present: 3 - missing,
            missing,
            ..SeederResult::default()
        }]
    }

    #[test]
    fn everything_there_passes() {
        let v = all_there().verdict(&seeded(0));
        assert!(v.passed && v.extensions_verified && v.types_verified);
        assert!(v.tables_verified && v.seeders_verified);
        assert!(all_there().verdict(&[]).passed, "a schema without seeders");
    }

    #[test]
    fn anything_missing_fails_and_says_what() {
        let v = Found {
            missing_extensions: 1,
            ..all_there()
        }
        .verdict(&[]);
        assert!(!v.passed && !v.extensions_verified && v.types_verified);
        let v = Found {
            missing_types: 2,
            ..all_there()
        }
        .verdict(&[]);
        assert!(!v.passed && !v.types_verified && v.tables_verified);
        let v = Found {
            missing_tables: 1,
            ..all_there()
        }
        .verdict(&[]);
        assert!(!v.passed && !v.tables_verified);
        // present, but no longer as declared (a column changed by hand)
        let v = Found {
            tables_match: false,
            ..all_there()
        }
        .verdict(&[]);
        assert!(!v.passed && !v.tables_verified && v.extensions_verified);
        let v = all_there().verdict(&seeded(1));
        assert!(!v.passed && !v.seeders_verified && v.tables_verified);
        let v = Found {
            seeders_unverifiable: true,
            ..all_there()
        }
        .verdict(&seeded(0));
        assert!(!v.passed && !v.seeders_verified);
    }
}
