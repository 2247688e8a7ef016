//! `seeders/` (docs/SCHEMA.md, "Seeders"). What each seeder file does is
//! decided by [`decide`] (pure) from the deployment's mode, whether its
//! tables were created now or are empty, and how its checksum compares with
//! the one last recorded; the row-by-row checks and inserts are
//! `crate::seed`'s.

use std::collections::HashMap;

use stonescriptdb_shared::wire::{MatchedOn, SeederResult};

use super::{Mode, Options, Run};
use crate::error::MigratorError;
use crate::schema::{table_key, Parsed};
use crate::seed;
use crate::sql::SqlFile;

/// A seeder file compared with what the gateway last recorded of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    New,
    Changed,
    Unchanged,
}

/// What happens to one seeder file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run the whole file.
    Run,
    /// Check its rows; insert the missing ones when `insert`; when
    /// `missing_fails`, a missing row (matched row by row) fails the deployment.
    Check { insert: bool, missing_fails: bool },
}

/// `/register`: run a seeder when its tables are empty, else only report.
/// `/migrate`: run it whole for a table this deployment created; insert the
/// missing rows of a new or changed one; verify an unchanged one (missing
/// rows fail unless `force`, which inserts them again).
pub fn decide(mode: Mode, created_here: bool, empty: bool, known: Known, force: bool) -> Action {
    match mode {
        Mode::Register if empty => Action::Run,
        Mode::Register => Action::Check {
            insert: false,
            missing_fails: false,
        },
        Mode::Migrate if created_here => Action::Run,
        Mode::Migrate => Action::Check {
            insert: known != Known::Unchanged || force,
            missing_fails: known == Known::Unchanged && !force,
        },
    }
}

/// The checksum each seeder file had when the gateway last seeded or
/// checked it (from the changelog), by path.
async fn recorded(run: &Run<'_>) -> Result<HashMap<String, String>, MigratorError> {
    run.pairs(
        "SELECT DISTINCT ON (object) object, checksum FROM _stonescriptdb_gateway_changelog
         WHERE kind = 'seeder' AND checksum IS NOT NULL ORDER BY object, id DESC",
    )
    .await
}

/// Per-table results of one seeder file, in the order tables first appear.
pub fn results(
    file: &SqlFile,
    checks: &[(usize, seed::Check)],
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
        if c.matched == seed::Match::Count {
            r.matched_on = Some(MatchedOn::Count);
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

pub async fn apply(run: &mut Run<'_>, schema: &Parsed, opts: Options) -> Result<(), MigratorError> {
    if schema.seeders.is_empty() {
        return Ok(());
    }
    let recorded = recorded(run).await?;
    for (fi, file) in schema.seeders.iter().enumerate() {
        let inserts = &schema.model.inserts[fi];
        let created_here = inserts
            .iter()
            .any(|(_, ins)| run.created.contains(&table_key(&ins.schema, &ins.table)));
        let mut empty = true;
        for (_, ins) in inserts {
            let rows = run
                .internal(
                    &format!(
                        "SELECT NOT EXISTS (SELECT 1 FROM {})",
                        super::qualified(&ins.schema, &ins.table)
                    ),
                    &[],
                )
                .await?;
            empty &= rows.first().is_some_and(|r| r.get::<_, bool>(0));
        }
        let known = match recorded.get(&file.path) {
            None => Known::New,
            Some(c) if *c != file.checksum => Known::Changed,
            Some(_) => Known::Unchanged,
        };
        let mut inserted: HashMap<String, u64> = HashMap::new();
        let (insert, missing_fails) =
            match decide(opts.mode, created_here, empty, known, opts.force) {
                Action::Run => {
                    run.note_wrapper(file);
                    for (i, s) in file.runnable() {
                        let rows = run.exec(&file.path, i, s, "seeder").await?;
                        if let Some((_, ins)) = inserts.iter().find(|(si, _)| *si == i) {
                            *inserted.entry(seed::label(ins)).or_default() += rows;
                        }
                    }
                    for (table, rows) in &inserted {
                        run.report.seeders.push(SeederResult {
                            table: table.clone(),
                            file: file.path.clone(),
                            inserted: *rows,
                            present: *rows,
                            ..SeederResult::default()
                        });
                    }
                    if known != Known::Unchanged {
                        run.changelog("seeder", &file.path, "seeded", Some(&file.checksum))
                            .await?;
                    }
                    continue;
                }
                Action::Check {
                    insert,
                    missing_fails,
                } => (insert, missing_fails),
            };
        let mut checks = Vec::new();
        for (i, ins) in inserts {
            let c = seed::check(&run.tx, ins).await.map_err(|e| {
                run.fail(
                    Some(&file.path),
                    Some((*i, &file.statements[*i])),
                    "seeder check failed".into(),
                    Some(&e),
                )
            })?;
            checks.push((*i, c));
        }
        if missing_fails {
            if let Some((i, c)) = checks
                .iter()
                .find(|(_, c)| c.missing > 0 && c.matched != seed::Match::Count)
            {
                let of_table = || checks.iter().filter(|(_, x)| x.table == c.table);
                let total: u64 = of_table().map(|(_, x)| x.rows).sum();
                let lost: u64 = of_table().map(|(_, x)| x.missing).sum();
                return Err(run.fail(
                    Some(&file.path),
                    Some((*i, &file.statements[*i])),
                    format!(
                        "seeded rows missing from {}: {lost} of {total} ({}); deploy with force=true to insert them again",
                        c.table,
                        c.missing_rows.join(", ")
                    ),
                    None,
                ));
            }
        }
        let missing: u64 = checks.iter().map(|(_, c)| c.missing).sum();
        if insert && missing > 0 {
            for (i, c) in &checks {
                let rows = c.insert_missing(&run.tx).await.map_err(|e| {
                    run.fail(
                        Some(&file.path),
                        Some((*i, &file.statements[*i])),
                        format!("inserting the missing seeded rows of {} failed", c.table),
                        Some(&e),
                    )
                })?;
                run.note(
                    "seeders",
                    None,
                    &file.path,
                    "insert missing seeded rows",
                    &format!("-- {rows} row(s) into {}", c.table),
                );
                *inserted.entry(c.table.clone()).or_default() += rows;
            }
            // What else the file does (setval after explicit ids…) follows
            // the rows it seeds.
            if inserted.values().any(|r| *r > 0) {
                for (i, s) in file.runnable() {
                    if !inserts.iter().any(|(si, _)| *si == i) {
                        run.exec(&file.path, i, s, "seeder").await?;
                    }
                }
            }
        }
        run.report.seeders.extend(results(file, &checks, &inserted));
        if opts.mode == Mode::Migrate && known != Known::Unchanged {
            run.changelog(
                "seeder",
                &file.path,
                if insert && missing > 0 {
                    "inserted"
                } else {
                    "verified"
                },
                Some(&file.checksum),
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: Action = Action::Check {
        insert: false,
        missing_fails: false,
    };

    #[test]
    fn register_seeds_empty_tables_and_only_reports_on_others() {
        assert_eq!(
            decide(Mode::Register, false, true, Known::New, false),
            Action::Run
        );
        assert_eq!(
            decide(Mode::Register, false, false, Known::Unchanged, false),
            CHECK
        );
        // force does not make /register insert into a table that has rows
        assert_eq!(
            decide(Mode::Register, false, false, Known::Changed, true),
            CHECK
        );
    }

    #[test]
    fn migrate_runs_a_new_tables_seeder_whole() {
        assert_eq!(
            decide(Mode::Migrate, true, true, Known::New, false),
            Action::Run
        );
    }

    #[test]
    fn migrate_inserts_the_missing_rows_of_a_new_or_changed_seeder() {
        for known in [Known::New, Known::Changed] {
            assert_eq!(
                decide(Mode::Migrate, false, false, known, false),
                Action::Check {
                    insert: true,
                    missing_fails: false
                }
            );
        }
    }

    #[test]
    fn migrate_verifies_an_unchanged_seeder_and_force_inserts_again() {
        assert_eq!(
            decide(Mode::Migrate, false, false, Known::Unchanged, false),
            Action::Check {
                insert: false,
                missing_fails: true
            }
        );
        assert_eq!(
            decide(Mode::Migrate, false, true, Known::Unchanged, true),
            Action::Check {
                insert: true,
                missing_fails: false
            }
        );
    }
}
