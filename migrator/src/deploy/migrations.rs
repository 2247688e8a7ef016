//! `migrations/`: each file runs once, in filename order, and is tracked by
//! name and checksum. An applied migration whose text changed is an error
//! unless `force`, which records the new checksum without running it again.

use std::collections::HashMap;

use slog::info;

use super::{Options, Run};
use crate::error::MigratorError;
use crate::schema::Parsed;

/// What happens to one migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Applied before with this text.
    Skip,
    /// New: run it and record it.
    Apply,
    /// Applied before with another text, and `force`: record the new text.
    AcceptEdited,
    /// Applied before with another text: refuse the deployment.
    RefuseEdited,
}

/// The tracked name of a `migrations/` file.
pub fn name(path: &str) -> &str {
    path.trim_start_matches("migrations/")
}

/// Decide each file's fate from what is applied (name → checksum).
pub fn plan(files: &[(&str, &str)], applied: &HashMap<String, String>, force: bool) -> Vec<Action> {
    files
        .iter()
        .map(|(name, checksum)| match applied.get(*name) {
            None => Action::Apply,
            Some(sum) if sum == checksum => Action::Skip,
            Some(_) if force => Action::AcceptEdited,
            Some(_) => Action::RefuseEdited,
        })
        .collect()
}

pub async fn apply(run: &mut Run<'_>, schema: &Parsed, opts: Options) -> Result<(), MigratorError> {
    if schema.migrations.is_empty() {
        return Ok(());
    }
    let applied: HashMap<String, String> = run
        .pairs("SELECT filename, checksum FROM _stonescriptdb_gateway_migrations")
        .await?;
    let files: Vec<(&str, &str)> = schema
        .migrations
        .iter()
        .map(|f| (name(&f.path), f.checksum.as_str()))
        .collect();
    for (i, action) in plan(&files, &applied, opts.force).into_iter().enumerate() {
        let file = &schema.migrations[i];
        let name = name(&file.path);
        match action {
            Action::Skip => run.report.migrations_skipped += 1,
            Action::RefuseEdited => {
                return Err(run.fail(
                    Some(&file.path),
                    None,
                    format!(
                        "migration {name} was already applied and has been edited since (checksum differs); restore it, or deploy with force=true to accept the new text without running it again"
                    ),
                    None,
                ))
            }
            Action::AcceptEdited => {
                run.internal(
                    "UPDATE _stonescriptdb_gateway_migrations SET checksum = $2 WHERE filename = $1",
                    &[&name, &file.checksum],
                )
                .await?;
                run.changelog("migration", name, "checksum_accepted", Some(&file.checksum))
                    .await?;
                run.report.migrations_skipped += 1;
            }
            Action::Apply => {
                // (a failed migration is not recorded: the whole transaction rolls back)
                let autocommit = &schema.model.autocommit[i];
                run.exec_file(file, autocommit, "migration").await?;
                run.internal(
                    "INSERT INTO _stonescriptdb_gateway_migrations (filename, checksum) VALUES ($1, $2)",
                    &[&name, &file.checksum],
                )
                .await?;
                run.changelog("migration", name, "applied", Some(&file.checksum))
                    .await?;
                run.report.migrations_applied += 1;
                info!(run.log, "migration applied"; "database" => run.database, "file" => &file.path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn new_migrations_run_applied_ones_are_skipped() {
        let files = [("001_a.sql", "x"), ("002_b.sql", "y")];
        assert_eq!(
            plan(&files, &applied(&[("001_a.sql", "x")]), false),
            [Action::Skip, Action::Apply]
        );
        assert_eq!(
            plan(&files, &applied(&[]), false),
            [Action::Apply, Action::Apply]
        );
    }

    #[test]
    fn an_edited_applied_migration_is_refused_unless_forced() {
        let files = [("001_a.sql", "new")];
        let was = applied(&[("001_a.sql", "old")]);
        assert_eq!(plan(&files, &was, false), [Action::RefuseEdited]);
        assert_eq!(plan(&files, &was, true), [Action::AcceptEdited]);
    }

    #[test]
    fn a_migration_removed_from_the_folder_is_not_undone() {
        // only files present are planned: what was applied stays applied
        let files = [("002_b.sql", "y")];
        assert_eq!(
            plan(
                &files,
                &applied(&[("001_a.sql", "x"), ("002_b.sql", "y")]),
                false
            ),
            [Action::Skip]
        );
        assert_eq!(name("migrations/001_a.sql"), "001_a.sql");
    }
}
