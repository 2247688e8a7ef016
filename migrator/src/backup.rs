//! Backups taken before a drop (`backup=true`): `pg_dump` ([`crate::pg_dump`])
//! of one database in its custom format, restored with `pg_restore`
//! (docs/OPERATIONS.md), written to `BACKUP_DIR` (default
//! `$DATA_DIR/backups`) as `{database}-{UTC timestamp}.dump`, mode 0600,
//! never over an existing file. A dump that fails removes its file and
//! says why, with pg_dump's own error.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use stonescriptdb_shared::config::Config;
use tokio_postgres::Client;

use crate::error::MigratorError;
use crate::pg_dump::{PgDump, Tls};

/// pg_dump's arguments for a backup: the format and nothing secret (the
/// database, the login and the password are in its environment); the
/// output is its standard output, the file [`create`] made.
const ARGUMENTS: &[&str] = &["--format=custom", "--no-password"];

/// Where backups go and how pg_dump reaches PostgreSQL.
#[derive(Debug, Clone)]
pub struct Backups {
    pub dir: PathBuf,
    pub tls: Tls,
}

impl Backups {
    pub fn new(config: &Config) -> Self {
        Backups {
            dir: config.backup_dir.clone(),
            tls: Tls::new(config),
        }
    }
}

/// The backup file's name: the database, the UTC time (`20260102T030405Z`),
/// and `-n` from the second try on (never an existing file's name).
fn file_name(database: &str, utc: &str, attempt: u32) -> String {
    if attempt == 0 {
        format!("{database}-{utc}.dump")
    } else {
        format!("{database}-{utc}-{attempt}.dump")
    }
}

/// A new, empty backup file for `database` in `dir` (made 0700 if
/// missing), mode 0600; never an existing one.
fn create(dir: &Path, database: &str, utc: &str) -> Result<(PathBuf, File), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create BACKUP_DIR {}: {e}", dir.display()))?;
    for attempt in 0..100 {
        let path = dir.join(file_name(database, utc, attempt));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    Err(format!(
        "cannot create a backup file for {database} in {}: 100 names taken",
        dir.display()
    ))
}

/// Back up `database` into `backups.dir`; returns the file written.
/// `admin` (a connection to the admin database) gives the server's major
/// version and the time.
pub async fn dump(
    backups: &Backups,
    admin_config: &tokio_postgres::Config,
    admin: &Client,
    database: &str,
) -> Result<PathBuf, MigratorError> {
    let failed = |why: String| {
        MigratorError::BackupFailed(format!(
            "backup of {database} failed, nothing was dropped: {why}"
        ))
    };
    let pg_dump = PgDump::locate(&backups.tls, admin_config, admin, database)
        .await
        .map_err(failed)?;
    let dir = backups.dir.clone();
    let db = database.to_owned();
    let done = tokio::task::spawn_blocking(move || {
        let (path, file): (PathBuf, File) = create(&dir, &db, &pg_dump.utc)?;
        match pg_dump.run(ARGUMENTS, file.into()) {
            Ok(_) => Ok(path),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    })
    .await
    .map_err(|e| failed(format!("the backup task failed: {e}")))?;
    done.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_puts_nothing_secret_on_the_command_line() {
        assert_eq!(ARGUMENTS, ["--format=custom", "--no-password"]);
    }

    #[test]
    fn backup_files_are_named_by_database_and_utc_time_and_never_reused() {
        assert_eq!(
            file_name("shop_t1", "20260102T030405Z", 0),
            "shop_t1-20260102T030405Z.dump"
        );
        assert_eq!(
            file_name("shop_t1", "20260102T030405Z", 2),
            "shop_t1-20260102T030405Z-2.dump"
        );
        let dir = std::env::temp_dir().join(format!("sdg-backup-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (a, _) = create(&dir, "db", "T").unwrap();
        let (b, _) = create(&dir, "db", "T").unwrap();
        assert_ne!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
