//! `migrations/`: each file runs once, in filename order, and is tracked by
//! name and checksum. An applied migration whose text changed is an error
//! unless `force`, which records the new checksum without running it again.
//! A pending migration with a statement `sql::guard` refuses is 400 before
//! anything runs ([`refusal`]); one applied before is not judged again.
//! Statements PostgreSQL refuses in a transaction block run after the
//! commit; the migration is recorded with them pending, and a later
//! deployment runs only those again.
//!
//! Migrations run forward only. In a rollback (`Options::rollback`: an
//! older version than the database's), a migration recorded in the
//! database is skipped whatever its checksum, and one recorded that the
//! older version does not have stays applied and is listed as kept.

use std::collections::HashMap;

use stonescriptdb_shared::wire::{Kept, KeptKind};

use crate::error::MigratorError;
use crate::exec::Run;
use crate::schema::Parsed;
use crate::sql::effects::Effect;
use crate::step::{
    wrapper_note, AfterCommit, At, Counter, Done, Options, Phase, Refusal, Sql, Step,
};

/// What happens to one migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Applied before with this text.
    Skip,
    /// Applied before with this text, but some of its statements that run
    /// after the commit have not succeeded yet: run those again.
    RetryDeferred,
    /// New: run it and record it.
    Apply,
    /// Applied before with another text, and `force`: record the new text.
    AcceptEdited,
    /// Applied before with another text: refuse the deployment.
    RefuseEdited,
    /// Applied before with another text, in a rollback: not judged, not
    /// run, its record left as it is.
    SkipEdited,
}

/// The tracked name of a `migrations/` file.
pub fn name(path: &str) -> &str {
    path.trim_start_matches("migrations/")
}

/// What the database has recorded of one migration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub checksum: String,
    /// 1-based indices of its statements still to run after a commit.
    pub pending: Vec<i32>,
}

/// Decide each file's fate from what is applied (name → record).
pub fn decide(
    files: &[(&str, &str)],
    applied: &HashMap<String, Applied>,
    opts: Options,
) -> Vec<Action> {
    files
        .iter()
        .map(|(name, checksum)| match applied.get(*name) {
            None => Action::Apply,
            Some(a) if a.checksum == *checksum && !a.pending.is_empty() => Action::RetryDeferred,
            Some(a) if a.checksum == *checksum => Action::Skip,
            Some(_) if opts.rollback => Action::SkipEdited,
            Some(_) if opts.force => Action::AcceptEdited,
            Some(_) => Action::RefuseEdited,
        })
        .collect()
}

/// In a rollback: the migrations the database records that the deployed
/// (older) version does not have, by name — they stay applied.
pub fn kept(schema: &Parsed, applied: &HashMap<String, Applied>) -> Vec<Kept> {
    let mut names: Vec<&String> = applied
        .keys()
        .filter(|n| {
            !schema
                .migrations
                .iter()
                .any(|f| name(&f.path) == n.as_str())
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| Kept {
            kind: KeptKind::Migration,
            name: n.clone(),
            why: "applied by a later version; migrations run forward only, so it is not undone"
                .into(),
        })
        .collect()
}

/// What the database connected to has recorded (nothing when it has no
/// tracking table yet).
pub async fn recorded(
    c: &impl tokio_postgres::GenericClient,
) -> Result<HashMap<String, Applied>, tokio_postgres::Error> {
    let row = c
        .query_one(
            "SELECT to_regclass('public._stonescriptdb_gateway_migrations') IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('public._stonescriptdb_gateway_migrations')
                            AND attname = 'deferred_pending' AND NOT attisdropped)",
            &[],
        )
        .await?;
    let (table, pending_column): (bool, bool) = (row.get(0), row.get(1));
    if !table {
        return Ok(HashMap::new());
    }
    let rows = c
        .query(
            if pending_column {
                "SELECT filename, checksum, deferred_pending FROM _stonescriptdb_gateway_migrations"
            } else {
                "SELECT filename, checksum, '{}'::int[] FROM _stonescriptdb_gateway_migrations"
            },
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let applied = Applied {
                checksum: r.get(1),
                pending: r.get(2),
            };
            (r.get(0), applied)
        })
        .collect())
}

/// The first pending migration's refusal (400), and the extensions the
/// pending migrations install: what the deployment checks before it runs
/// anything. Applied migrations are not judged again.
pub fn refusal<'a>(
    schema: &'a Parsed,
    applied: &HashMap<String, Applied>,
) -> Result<Vec<&'a crate::schema::ExtensionUse>, MigratorError> {
    let mut uses = Vec::new();
    for (file, item) in schema.migrations.iter().zip(&schema.model.migrations) {
        if applied.contains_key(name(&file.path)) {
            continue;
        }
        if let Some(why) = &item.refused {
            return Err(MigratorError::BadRequest(why.clone()));
        }
        uses.extend(&item.extensions);
    }
    Ok(uses)
}

/// What the step reads: the migrations recorded as applied. The pending
/// ones are judged again here, under the deployment's lock (they were
/// before the deployment began; this holds whatever ran in between).
pub async fn observe(
    run: &Run<'_>,
    schema: &Parsed,
    opts: Options,
) -> Result<HashMap<String, Applied>, MigratorError> {
    // (a rollback lists the recorded ones the older version lacks)
    if schema.migrations.is_empty() && !opts.rollback {
        return Ok(HashMap::new());
    }
    let applied = recorded(run.tx())
        .await
        .map_err(|e| run.fail(&At::default(), "gateway bookkeeping failed", Some(&e)))?;
    refusal(schema, &applied)?;
    Ok(applied)
}

/// What the pending migrations make themselves (tables, columns,
/// sequences), which `tables/` leaves to them.
pub fn pending_effects(schema: &Parsed, applied: &HashMap<String, Applied>) -> Vec<Effect> {
    schema
        .migrations
        .iter()
        .zip(&schema.model.migrations)
        .filter(|(f, _)| !applied.contains_key(name(&f.path)))
        .flat_map(|(_, m)| m.effects.iter().cloned())
        .collect()
}

/// One step per migration file: a pending one's statements (those
/// PostgreSQL refuses in a transaction block marked for after the commit)
/// and its tracking row; an applied one with statements still pending
/// after a commit, those statements again.
pub fn plan(
    schema: &Parsed,
    applied: &HashMap<String, Applied>,
    opts: Options,
) -> Result<Vec<Step>, Refusal> {
    let files: Vec<(&str, &str)> = schema
        .migrations
        .iter()
        .map(|f| (name(&f.path), f.checksum.as_str()))
        .collect();
    let mut steps = Vec::new();
    for (i, action) in decide(&files, applied, opts).into_iter().enumerate() {
        let file = &schema.migrations[i];
        let name = name(&file.path);
        let skipped = Step::new(Phase::Migrations, &file.path, "applied before")
            .done(Done::Count(Counter::MigrationsSkipped));
        let late = |index: usize| AfterCommit {
            migration: name.to_owned(),
            number: index as i32 + 1,
        };
        let step = match action {
            Action::Skip => skipped,
            Action::RetryDeferred => {
                let pending = &applied[name].pending;
                let mut step = skipped;
                step.reason = "applied before; its statements that run after the commit have not all succeeded: those run again".into();
                for (index, stmt) in file.runnable() {
                    if pending.contains(&(index as i32 + 1)) {
                        let mut sql = Sql::of_file(&file.path, index, stmt, "migration");
                        sql.after_commit = Some(late(index));
                        step = step.sql(sql);
                    }
                }
                step
            }
            Action::RefuseEdited => {
                return Err(Refusal {
                    at: At::file(&file.path),
                    message: format!(
                        "migration {name} was already applied and has been edited since (checksum differs); restore it, or deploy with force=true to accept the new text without running it again"
                    ),
                })
            }
            Action::SkipEdited => {
                let mut step = skipped.done(Done::Note(format!(
                    "{}: applied with another text; a rollback runs migrations forward only and skips it",
                    file.path
                )));
                step.reason = "applied before (with another text); skipped by a rollback".into();
                step
            }
            Action::AcceptEdited => skipped
                .done(Done::AcceptMigration {
                    name: name.to_owned(),
                    checksum: file.checksum.clone(),
                })
                .done(Done::Changelog {
                    kind: "migration",
                    object: name.to_owned(),
                    action: "checksum_accepted".into(),
                    checksum: Some(file.checksum.clone()),
                }),
            Action::Apply => {
                let autocommit = &schema.model.migrations[i].autocommit;
                let mut step = Step::new(Phase::Migrations, &file.path, "migration");
                let mut pending = Vec::new();
                if let Some((a, b)) = file.wrapper {
                    step = step.done(Done::Note(wrapper_note(&file.path, a, b)));
                }
                for (index, stmt) in file.runnable() {
                    let mut sql = Sql::of_file(&file.path, index, stmt, "migration");
                    if autocommit.get(index).copied().unwrap_or(false) {
                        sql.after_commit = Some(late(index));
                        pending.push(index as i32 + 1);
                    }
                    step = step.sql(sql);
                }
                step.done(Done::TrackMigration {
                    name: name.to_owned(),
                    checksum: file.checksum.clone(),
                    pending,
                })
                .done(Done::Changelog {
                    kind: "migration",
                    object: name.to_owned(),
                    action: "applied".into(),
                    checksum: Some(file.checksum.clone()),
                })
                .done(Done::Count(Counter::MigrationsApplied))
            }
        };
        steps.push(step);
    }
    if opts.rollback {
        let kept = kept(schema, applied);
        if !kept.is_empty() {
            let mut step = Step::new(
                Phase::Migrations,
                "migrations/",
                "applied by a later version: kept",
            );
            step.done = kept.into_iter().map(Done::Kept).collect();
            steps.push(step);
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(texts: &[&str], autocommit: &[bool], wrapped: bool) -> Parsed {
        Parsed {
            migrations: vec![crate::sql::SqlFile {
                wrapper: wrapped.then_some((0, texts.len() - 1)),
                ..crate::sql::SqlFile::of_lines("migrations/001_a.sql", texts)
            }],
            model: crate::schema::Model {
                migrations: vec![crate::schema::MigrationItem {
                    autocommit: autocommit.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const OPTS: Options = Options {
        mode: crate::deploy::Mode::Migrate,
        force: false,
        allow: crate::step::Allowed::NONE,
        dry_run: false,
        rollback: false,
    };
    const FORCED: Options = Options {
        force: true,
        ..OPTS
    };
    const ROLLBACK: Options = Options {
        rollback: true,
        ..OPTS
    };

    #[test]
    fn a_pending_migrations_step_runs_its_statements_and_keeps_the_late_ones_for_after_the_commit()
    {
        let schema = migration(
            &[
                "BEGIN",
                "CREATE TABLE t (a int)",
                "CREATE INDEX CONCURRENTLY i ON t (a)",
                "COMMIT",
            ],
            &[false, false, true, false],
            true,
        );
        let steps = plan(&schema, &HashMap::new(), OPTS).unwrap();
        assert_eq!(steps.len(), 1);
        let sql: Vec<(&str, bool)> = steps[0]
            .sql
            .iter()
            .map(|s| (s.text.as_str(), s.after_commit.is_some()))
            .collect();
        assert_eq!(
            sql,
            [
                ("CREATE TABLE t (a int)", false),
                ("CREATE INDEX CONCURRENTLY i ON t (a)", true)
            ],
            "the wrapper is not run"
        );
        assert_eq!(
            steps[0].sql[1].at,
            At::statement("migrations/001_a.sql", 2, 3)
        );
        assert!(steps[0].done.contains(&Done::TrackMigration {
            name: "001_a.sql".into(),
            checksum: "x".into(),
            pending: vec![3],
        }));
        assert!(steps[0]
            .done
            .iter()
            .any(|d| matches!(d, Done::Note(n) if n.contains("wrapper"))));
        // applied, with statement 3 still pending: only that one, after the commit
        let was: HashMap<String, Applied> = [(
            "001_a.sql".to_string(),
            Applied {
                checksum: "x".into(),
                pending: vec![3],
            },
        )]
        .into();
        let steps = plan(&schema, &was, OPTS).unwrap();
        let sql: Vec<&str> = steps[0].sql.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(sql, ["CREATE INDEX CONCURRENTLY i ON t (a)"]);
        assert!(steps[0].sql[0].after_commit.is_some());
        // edited since: refused, naming the file
        let edited: HashMap<String, Applied> =
            [("001_a.sql".to_string(), Applied::default())].into();
        let r = plan(&schema, &edited, OPTS).unwrap_err();
        assert_eq!(r.at, At::file("migrations/001_a.sql"));
    }

    fn applied(pairs: &[(&str, &str)]) -> HashMap<String, Applied> {
        pairs
            .iter()
            .map(|(a, b)| {
                let rec = Applied {
                    checksum: b.to_string(),
                    pending: vec![],
                };
                (a.to_string(), rec)
            })
            .collect()
    }

    #[test]
    fn a_migration_with_statements_pending_after_a_commit_runs_only_those_again() {
        let mut was = applied(&[("001_a.sql", "x")]);
        if let Some(a) = was.get_mut("001_a.sql") {
            a.pending = vec![2];
        }
        assert_eq!(
            decide(&[("001_a.sql", "x")], &was, OPTS),
            [Action::RetryDeferred]
        );
        // edited since: the edit is what is refused (or accepted under force)
        assert_eq!(
            decide(&[("001_a.sql", "y")], &was, OPTS),
            [Action::RefuseEdited]
        );
    }

    #[test]
    fn new_migrations_run_applied_ones_are_skipped() {
        let files = [("001_a.sql", "x"), ("002_b.sql", "y")];
        assert_eq!(
            decide(&files, &applied(&[("001_a.sql", "x")]), OPTS),
            [Action::Skip, Action::Apply]
        );
        assert_eq!(
            decide(&files, &applied(&[]), OPTS),
            [Action::Apply, Action::Apply]
        );
    }

    #[test]
    fn an_edited_applied_migration_is_refused_unless_forced() {
        let files = [("001_a.sql", "new")];
        let was = applied(&[("001_a.sql", "old")]);
        assert_eq!(decide(&files, &was, OPTS), [Action::RefuseEdited]);
        assert_eq!(decide(&files, &was, FORCED), [Action::AcceptEdited]);
    }

    #[test]
    fn a_migration_removed_from_the_folder_is_not_undone() {
        // only files present are planned: what was applied stays applied
        let files = [("002_b.sql", "y")];
        assert_eq!(
            decide(
                &files,
                &applied(&[("001_a.sql", "x"), ("002_b.sql", "y")]),
                OPTS
            ),
            [Action::Skip]
        );
        assert_eq!(name("migrations/001_a.sql"), "001_a.sql");
    }

    #[test]
    fn a_rollback_skips_recorded_migrations_whatever_their_text_and_keeps_the_later_ones() {
        let files = [
            ("001_a.sql", "edited"),
            ("002_b.sql", "y"),
            ("003_c.sql", "z"),
        ];
        let was = applied(&[
            ("001_a.sql", "x"),
            ("002_b.sql", "y"),
            ("009_late.sql", "l"),
        ]);
        assert_eq!(
            decide(&files, &was, ROLLBACK),
            [Action::SkipEdited, Action::Skip, Action::Apply],
            "an edited one is neither refused nor accepted; an unrecorded one runs"
        );
        let rolled = Options {
            force: true,
            ..ROLLBACK
        };
        assert_eq!(decide(&files, &was, rolled)[0], Action::SkipEdited);
        // the older version has 001 only: 009 (and nothing else) is kept
        let schema = migration(&["CREATE TABLE t (a int)"], &[false], false);
        let kept_now = kept(&schema, &was);
        let names: Vec<&str> = kept_now.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["002_b.sql", "009_late.sql"]);
        assert!(kept_now.iter().all(|k| k.kind == KeptKind::Migration));
        let was = applied(&[("001_a.sql", "old"), ("009_late.sql", "l")]);
        let steps = plan(&schema, &was, ROLLBACK).unwrap();
        let listed: Vec<&Done> = steps.iter().flat_map(|s| &s.done).collect();
        assert!(listed
            .iter()
            .any(|d| matches!(d, Done::Kept(k) if k.name == "009_late.sql")));
        assert!(
            steps.iter().all(|s| s.sql.is_empty()),
            "nothing runs: 001 is recorded (edited or not)"
        );
        // not a rollback: nothing is listed as kept, the edit is refused
        assert!(plan(&schema, &was, OPTS).is_err());
    }
}
