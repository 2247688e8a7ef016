//! `seeders/` (docs/SCHEMA.md, "Seeders"). What each seeder file does is
//! decided by [`decide`] (pure) from the deployment's mode, whether its
//! tables were created now or are empty, and how its checksum compares with
//! the one last recorded; the row-by-row checks and inserts are `rows`'.

use std::collections::HashMap;

use stonescriptdb_shared::wire::SeederResult;

use super::inserts::Insert;
use super::rows as seed;
use crate::error::MigratorError;
use crate::exec::Run;
use crate::sql::SqlFile;
use crate::step::{qualified, wrapper_note, At, Done, Mode, Options, Phase, Refusal, Sql, Step};

/// What the seeders phase is handed of the upload: the `seeders/` files
/// and, per file, its INSERT statements taken apart.
#[derive(Clone, Copy)]
pub struct Seeders<'a> {
    pub files: &'a [SqlFile],
    pub inserts: &'a [Vec<(usize, Insert)>],
}

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

/// What the step reads of one seeder file: how it compares with what was
/// recorded, what [`decide`] makes of it, and — when its rows are checked —
/// the row-by-row checks.
#[derive(Debug)]
pub struct SeenFile {
    pub known: Known,
    pub action: Action,
    pub checks: Vec<(usize, seed::Check)>,
}

pub async fn observe(
    run: &Run<'_>,
    seeders: Seeders<'_>,
    opts: Options,
) -> Result<Vec<SeenFile>, MigratorError> {
    if seeders.files.is_empty() {
        return Ok(Vec::new());
    }
    // the checksum each seeder file had when the gateway last seeded or
    // checked it (from the changelog), by path
    let recorded: HashMap<String, String> = run
        .pairs(
            "SELECT DISTINCT ON (object) object, checksum FROM _stonescriptdb_gateway_changelog
             WHERE kind = 'seeder' AND checksum IS NOT NULL ORDER BY object, id DESC",
        )
        .await?;
    let mut seen = Vec::with_capacity(seeders.files.len());
    for (fi, file) in seeders.files.iter().enumerate() {
        let inserts = &seeders.inserts[fi];
        let created_here = inserts.iter().any(|(_, ins)| {
            run.created.contains(&(
                ins.schema.clone().unwrap_or_else(|| "public".into()),
                ins.table.clone(),
            ))
        });
        let mut empty = true;
        for (_, ins) in inserts {
            let rows = run
                .internal(
                    &format!(
                        "SELECT NOT EXISTS (SELECT 1 FROM {})",
                        qualified(&ins.schema, &ins.table)
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
        let action = decide(opts.mode, created_here, empty, known, opts.force);
        let mut checks = Vec::new();
        if matches!(action, Action::Check { .. }) {
            for (i, ins) in inserts {
                let c = seed::check(run.tx(), ins).await.map_err(|e| {
                    let s = &file.statements[*i];
                    run.fail(
                        &At::statement(&file.path, *i, s.line),
                        "seeder check failed",
                        Some(&e),
                    )
                })?;
                checks.push((*i, c));
            }
        }
        seen.push(SeenFile {
            known,
            action,
            checks,
        });
    }
    Ok(seen)
}

/// The steps of `seeders/`, one per file: the whole file, or the missing
/// rows (then what else the file does, e.g. `setval` after explicit ids);
/// a missing row of an unchanged seeder refuses the deployment unless
/// `force`.
pub fn plan(seeders: Seeders<'_>, seen: &[SeenFile], opts: Options) -> Result<Vec<Step>, Refusal> {
    let mut steps = Vec::new();
    for ((fi, file), s) in seeders.files.iter().enumerate().zip(seen) {
        let inserts = &seeders.inserts[fi];
        let seeds = |i: usize| {
            inserts
                .iter()
                .find(|(si, _)| *si == i)
                .map(|(_, ins)| seed::label(ins))
        };
        let changelog = |action: &str| Done::Changelog {
            kind: "seeder",
            object: file.path.clone(),
            action: action.into(),
            checksum: Some(file.checksum.clone()),
        };
        let (insert, missing_fails) = match s.action {
            Action::Run => {
                let mut step = Step::new(Phase::Seeders, &file.path, "seeder");
                if let Some((a, b)) = file.wrapper {
                    step = step.done(Done::Note(wrapper_note(&file.path, a, b)));
                }
                for (i, stmt) in file.runnable() {
                    let mut sql = Sql::of_file(&file.path, i, stmt, "seeder");
                    sql.tally = seeds(i);
                    step = step.sql(sql);
                }
                if s.known != Known::Unchanged {
                    step = step.done(changelog("seeded"));
                }
                steps.push(step);
                continue;
            }
            Action::Check {
                insert,
                missing_fails,
            } => (insert, missing_fails),
        };
        let checks = &s.checks;
        if missing_fails {
            if let Some((i, c)) = checks
                .iter()
                .find(|(_, c)| c.missing > 0 && c.matched != seed::Match::Count)
            {
                let of_table = || checks.iter().filter(|(_, x)| x.table == c.table);
                let total: u64 = of_table().map(|(_, x)| x.rows).sum();
                let lost: u64 = of_table().map(|(_, x)| x.missing).sum();
                return Err(Refusal {
                    at: At::statement(&file.path, *i, file.statements[*i].line),
                    message: format!(
                        "seeded rows missing from {}: {lost} of {total} ({}); deploy with force=true to insert them again",
                        c.table,
                        c.missing_rows.join(", ")
                    ),
                });
            }
        }
        let missing: u64 = checks.iter().map(|(_, c)| c.missing).sum();
        let mut step = Step::new(Phase::Seeders, &file.path, "insert missing seeded rows");
        if insert && missing > 0 {
            for (i, c) in checks {
                if let Some(text) = c.insert_sql() {
                    let at = At::statement(&file.path, *i, file.statements[*i].line);
                    let mut sql = Sql::new(
                        text,
                        at,
                        format!("inserting the missing seeded rows of {} failed", c.table),
                    );
                    sql.tally = Some(c.table.clone());
                    step = step.sql(sql);
                }
            }
            // What else the file does (setval after explicit ids…) follows
            // the rows it seeds.
            if !step.sql.is_empty() {
                for (i, stmt) in file.runnable() {
                    if seeds(i).is_none() {
                        step = step.sql(Sql::of_file(&file.path, i, stmt, "seeder"));
                    }
                }
            }
        }
        if opts.mode == Mode::Migrate && s.known != Known::Unchanged {
            step = step.done(changelog(if insert && missing > 0 {
                "inserted"
            } else {
                "verified"
            }));
        }
        steps.push(step);
    }
    Ok(steps)
}

/// The report's seeder results from the plan's steps (one per file, in
/// order) and the rows each statement affected.
pub fn report(
    seeders: Seeders<'_>,
    seen: &[SeenFile],
    steps: &[Step],
    rows: &[Vec<u64>],
) -> Vec<SeederResult> {
    let mut out = Vec::new();
    for (((file, s), step), rows) in seeders.files.iter().zip(seen).zip(steps).zip(rows) {
        let mut inserted: Vec<(String, u64)> = Vec::new();
        for (sql, n) in step
            .sql
            .iter()
            .filter(|s| s.after_commit.is_none())
            .zip(rows)
        {
            if let Some(table) = &sql.tally {
                match inserted.iter_mut().find(|(t, _)| t == table) {
                    Some((_, total)) => *total += n,
                    None => inserted.push((table.clone(), *n)),
                }
            }
        }
        if s.action == Action::Run {
            out.extend(inserted.into_iter().map(|(table, n)| SeederResult {
                table,
                file: file.path.clone(),
                inserted: n,
                present: n,
                ..SeederResult::default()
            }));
        } else {
            out.extend(seed::results(
                file,
                &s.checks,
                &inserted.into_iter().collect(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rows::{Check, Match};
    use super::*;

    /// One seeder file: an INSERT into `roles` and a `setval` after it.
    fn seeder() -> (Vec<SqlFile>, Vec<Vec<(usize, Insert)>>) {
        let texts = [
            "INSERT INTO roles (id, name) VALUES (1, 'a'), (2, 'b')",
            "SELECT setval('roles_id_seq', 2)",
        ];
        let file = SqlFile::of_lines("seeders/roles.sql", &texts);
        let insert = super::super::inserts::parse_insert(texts[0]).unwrap();
        (vec![file], vec![vec![(0, insert)]])
    }

    fn opts(mode: Mode, force: bool) -> Options {
        Options {
            mode,
            force,
            allow: crate::step::Allowed::NONE,
            dry_run: false,
            rollback: false,
        }
    }

    #[test]
    fn the_plan_runs_a_whole_file_inserts_missing_rows_or_refuses() {
        let (files, inserts) = seeder();
        let seeders = Seeders {
            files: &files,
            inserts: &inserts,
        };
        let sql = |steps: &[Step]| -> Vec<String> {
            steps
                .iter()
                .flat_map(|s| s.sql.iter().map(|q| q.text.clone()))
                .collect()
        };
        // a new table's seeder runs whole; its INSERT's rows count as seeded
        let run = [SeenFile {
            known: Known::New,
            action: Action::Run,
            checks: vec![],
        }];
        let steps = plan(seeders, &run, opts(Mode::Migrate, false)).unwrap();
        assert_eq!(
            sql(&steps),
            [
                files[0].statements[0].text.clone(),
                files[0].statements[1].text.clone()
            ]
        );
        assert_eq!(steps[0].sql[0].tally.as_deref(), Some("roles"));
        assert_eq!(steps[0].sql[1].tally, None);
        let results = report(seeders, &run, &steps, &[vec![2, 1]]);
        assert_eq!(
            (results[0].table.as_str(), results[0].inserted),
            ("roles", 2)
        );

        // a changed seeder with a missing row: the statement that inserts
        // the missing rows, then the rest of the file
        let pk = || Match::PrimaryKey(vec!["id".into()]);
        let changed = [SeenFile {
            known: Known::Changed,
            action: decide(Mode::Migrate, false, false, Known::Changed, false),
            checks: vec![(0, Check::missing_of("roles", pk(), 2, 1))],
        }];
        let steps = plan(seeders, &changed, opts(Mode::Migrate, false)).unwrap();
        let text = sql(&steps);
        assert!(
            text[0].starts_with("INSERT INTO \"public\".\"roles\" (\"id\", \"name\") SELECT"),
            "{text:?}"
        );
        assert_eq!(text[1], "SELECT setval('roles_id_seq', 2)");
        assert!(steps[0]
            .done
            .iter()
            .any(|d| matches!(d, Done::Changelog { action, .. } if action == "inserted")));

        // an unchanged seeder with a missing row: refused, naming file and
        // statement, unless forced
        let unchanged = |force| {
            [SeenFile {
                known: Known::Unchanged,
                action: decide(Mode::Migrate, false, false, Known::Unchanged, force),
                checks: vec![(0, Check::missing_of("roles", pk(), 2, 1))],
            }]
        };
        let r = plan(seeders, &unchanged(false), opts(Mode::Migrate, false)).unwrap_err();
        assert_eq!(r.at, At::statement("seeders/roles.sql", 0, 1));
        assert!(
            r.message.contains("seeded rows missing from roles: 1 of 2"),
            "{}",
            r.message
        );
        assert!(plan(seeders, &unchanged(true), opts(Mode::Migrate, true)).is_ok());
        // nothing missing: no statement at all
        let present = [SeenFile {
            known: Known::Unchanged,
            action: decide(Mode::Migrate, false, false, Known::Unchanged, false),
            checks: vec![(0, Check::missing_of("roles", pk(), 2, 0))],
        }];
        assert!(sql(&plan(seeders, &present, opts(Mode::Migrate, false)).unwrap()).is_empty());
    }

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
