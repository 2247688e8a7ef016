//! `stonescriptdb check DIR`: the folder packed as `register` packs it and
//! read by the migrator's own reader ([`stonescriptdb_migrator::offline`]),
//! with no server: the same message, file and line the gateway would give.

use std::path::Path;

use crate::client::Failure;

/// The report of a readable folder, or the gateway's message for it.
pub fn check(dir: &Path) -> Result<String, Failure> {
    let archive = crate::pack::pack(dir)?;
    let summary = stonescriptdb_migrator::offline::check(&archive)
        .map_err(|m| Failure(format!("{}: {m}", dir.display())))?;
    let folders: Vec<String> = summary
        .folders
        .iter()
        .map(|(f, n)| format!("{f}/ {n} file{}", if *n == 1 { "" } else { "s" }))
        .collect();
    Ok(format!(
            "{}: ok — {}; {} statements read\n\
             Function bodies and table definitions are checked against a database at deployment (try --dry-run).\n",
            dir.display(),
            if folders.is_empty() { "no files".into() } else { folders.join(", ") },
            summary.statements
    ))
}
