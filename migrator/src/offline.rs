//! What can be judged of a schema archive without PostgreSQL, for the
//! `stonescriptdb check` CLI: exactly what the migrator judges when an
//! archive is uploaded ([`schema::from_upload`]: the archive, folders, file
//! names, the statements each folder refuses, unterminated quotes and
//! bodies, names), plus the refusals it makes of pending migrations before
//! a deployment (here every migration counts as pending) — with the same
//! message, file and line. Bodies and table definitions against a database
//! are PostgreSQL's to judge, at deployment.

use std::collections::HashMap;

use crate::archive::Limits;
use crate::deploy::migration_refusal;
use crate::schema;

/// What a readable archive holds, per folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// (folder, files) for each folder the archive has, in deployment order.
    pub folders: Vec<(&'static str, usize)>,
    /// Statements read, over every file.
    pub statements: usize,
}

/// Check `tar_gz` as an upload under the gateway's default caps; `Err` is
/// the message of the 400 (or 413) the gateway would answer.
pub fn check(tar_gz: &[u8]) -> Result<Summary, String> {
    let message = |e: crate::error::MigratorError| e.to_wire().1.message;
    let parsed = schema::from_upload(tar_gz, &Limits::default()).map_err(message)?;
    migration_refusal(&parsed, &HashMap::new()).map_err(message)?;
    let files = [
        ("extensions", parsed.extensions.len(), 0),
        ("types", parsed.types.len(), count(&parsed.types)),
        ("tables", parsed.tables.len(), count(&parsed.tables)),
        (
            "migrations",
            parsed.migrations.len(),
            count(&parsed.migrations),
        ),
        (
            "functions",
            parsed.functions.len(),
            count(&parsed.functions),
        ),
        ("seeders", parsed.seeders.len(), count(&parsed.seeders)),
    ];
    Ok(Summary {
        folders: files
            .iter()
            .filter(|(_, n, _)| *n > 0)
            .map(|(f, n, _)| (*f, *n))
            .collect(),
        statements: files.iter().map(|(_, _, s)| s).sum(),
    })
}

fn count(files: &[schema::SqlFile]) -> usize {
    files.iter().map(|f| f.statements.len()).sum()
}
