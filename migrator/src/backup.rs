//! Backups taken before a drop (`backup=true`): `pg_dump` of one database
//! in its custom format, restored with `pg_restore` (docs/OPERATIONS.md),
//! written to `BACKUP_DIR` (default `$DATA_DIR/backups`) as
//! `{database}-{UTC timestamp}.dump`, mode 0600, never over an existing
//! file. pg_dump connects as the gateway's admin role with the admin
//! connection's host, port and TLS mode (`DB_SSLMODE`, `DB_SSLROOTCERT`);
//! everything reaches it through its environment — the password as
//! `PGPASSWORD`, never on its command line, which any local user can read
//! in `ps`. It is the first `pg_dump` on `PATH`, else the one in the bin
//! directory of the server's major version (`/usr/lib/postgresql/N/bin`,
//! `/usr/pgsql-N/bin`). A dump that fails removes its file and says why,
//! with pg_dump's own error.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use stonescriptdb_shared::config::{Config, SslMode};
use tokio_postgres::config::Host;
use tokio_postgres::Client;

use crate::error::{pg_message, MigratorError};

/// Most of pg_dump's error output kept in an answer.
const STDERR_KEPT: usize = 4096;
/// Seconds pg_dump waits for its connection.
const CONNECT_TIMEOUT_SECS: &str = "10";

/// Where backups go and how pg_dump reaches PostgreSQL.
#[derive(Debug, Clone)]
pub struct Backups {
    pub dir: PathBuf,
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
}

impl Backups {
    pub fn new(config: &Config) -> Self {
        Backups {
            dir: config.backup_dir.clone(),
            sslmode: config.db_tls.mode,
            sslrootcert: config.db_tls.root_cert.clone(),
        }
    }
}

/// libpq's word for a TLS mode.
fn libpq_sslmode(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
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

/// pg_dump's arguments: the format and nothing secret. The database, the
/// login and the password are in its environment ([`environment`]); the
/// output is its standard output, the file [`create`] made.
fn arguments() -> Vec<&'static str> {
    vec!["--format=custom", "--no-password"]
}

/// pg_dump's environment for `database`, from the admin connection's
/// settings: every libpq variable it needs, the password included.
fn environment(
    admin: &tokio_postgres::Config,
    backups: &Backups,
    database: &str,
) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<(&'static str, OsString)> = vec![("PGDATABASE", database.into())];
    match admin.get_hosts().first() {
        Some(Host::Tcp(h)) => env.push(("PGHOST", h.into())),
        Some(Host::Unix(dir)) => env.push(("PGHOST", dir.into())),
        None => {}
    }
    if let Some(port) = admin.get_ports().first() {
        env.push(("PGPORT", port.to_string().into()));
    }
    if let Some(user) = admin.get_user() {
        env.push(("PGUSER", user.into()));
    }
    if let Some(pw) = admin.get_password() {
        env.push((
            "PGPASSWORD",
            String::from_utf8_lossy(pw).into_owned().into(),
        ));
    }
    env.push(("PGSSLMODE", libpq_sslmode(backups.sslmode).into()));
    if let Some(root) = &backups.sslrootcert {
        env.push(("PGSSLROOTCERT", root.into()));
    }
    env.push(("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS.into()));
    env.push(("PGAPPNAME", "stonescriptdb-backup".into()));
    env
}

/// Where to look for pg_dump, in order: each directory of `path` (the
/// `PATH` variable), then the bin directories of the server's `major`
/// version.
fn candidates(path: Option<&OsStr>, major: Option<u32>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path
        .map(|p| {
            std::env::split_paths(p)
                .map(|d| d.join("pg_dump"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(v) = major {
        out.push(PathBuf::from(format!(
            "/usr/lib/postgresql/{v}/bin/pg_dump"
        )));
        out.push(PathBuf::from(format!("/usr/pgsql-{v}/bin/pg_dump")));
    }
    out
}

/// The first candidate that is an executable file.
fn find(candidates: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    candidates
        .iter()
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .cloned()
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

/// Run pg_dump (blocking) with its output going to `out`; `Err` is why it
/// failed, with its error output.
fn run(pg_dump: &Path, env: Vec<(&'static str, OsString)>, out: File) -> Result<(), String> {
    let mut cmd = std::process::Command::new(pg_dump);
    cmd.args(arguments());
    // only our libpq settings: none inherited (PGSERVICE, PGOPTIONS, …)
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", pg_dump.display()))?;
    let mut stderr = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    let status = child
        .wait()
        .map_err(|e| format!("{} did not finish: {e}", pg_dump.display()))?;
    if status.success() {
        return Ok(());
    }
    let stderr = stderr.trim();
    let mut end = stderr.len().min(STDERR_KEPT);
    while !stderr.is_char_boundary(end) {
        end -= 1;
    }
    Err(format!(
        "{} failed ({status}): {}",
        pg_dump.display(),
        &stderr[..end]
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
    let row = admin
        .query_one(
            "SELECT current_setting('server_version_num')::int / 10000,
                    to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"')",
            &[],
        )
        .await
        .map_err(|e| failed(pg_message(&e)))?;
    let (major, utc): (i32, String) = (row.get(0), row.get(1));
    let looked = candidates(
        std::env::var_os("PATH").as_deref(),
        u32::try_from(major).ok(),
    );
    let Some(pg_dump) = find(&looked) else {
        let dirs: Vec<String> = looked
            .iter()
            .filter_map(|p| p.parent().map(|d| d.display().to_string()))
            .collect();
        return Err(failed(format!(
            "pg_dump not found (looked in PATH and the bin directory of PostgreSQL {major}: {}); install the PostgreSQL client tools of version {major} or newer",
            dirs.join(", ")
        )));
    };
    let env = environment(admin_config, backups, database);
    let dir = backups.dir.clone();
    let db = database.to_owned();
    let done = tokio::task::spawn_blocking(move || {
        let (path, file) = create(&dir, &db, &utc)?;
        match run(&pg_dump, env, file) {
            Ok(()) => Ok(path),
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

    fn backups(mode: SslMode) -> Backups {
        Backups {
            dir: PathBuf::from("/b"),
            sslmode: mode,
            sslrootcert: Some(PathBuf::from("/etc/ca.pem")),
        }
    }

    #[test]
    fn the_password_goes_to_the_environment_never_the_command_line() {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("db.example")
            .port(6543)
            .user("gateway")
            .password("s3cret-pw");
        let env = environment(&cfg, &backups(SslMode::VerifyFull), "shop_t1");
        let args = arguments();
        assert!(args.iter().all(|a| !a.contains("s3cret-pw")), "{args:?}");
        assert!(args.contains(&"--no-password") && args.contains(&"--format=custom"));
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PGPASSWORD").as_deref(), Some("s3cret-pw"));
        assert_eq!(get("PGHOST").as_deref(), Some("db.example"));
        assert_eq!(get("PGPORT").as_deref(), Some("6543"));
        assert_eq!(get("PGUSER").as_deref(), Some("gateway"));
        assert_eq!(get("PGDATABASE").as_deref(), Some("shop_t1"));
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/etc/ca.pem"));
    }

    #[test]
    fn no_password_means_no_pgpassword() {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path("/run/postgresql").user("postgres");
        let env = environment(&cfg, &backups(SslMode::Disable), "x");
        assert!(env.iter().all(|(k, _)| *k != "PGPASSWORD"));
        assert!(env
            .iter()
            .any(|(k, v)| *k == "PGHOST" && v == "/run/postgresql"));
    }

    #[test]
    fn every_tls_mode_reaches_pg_dump_in_libpqs_words() {
        for (mode, word) in [
            (SslMode::Disable, "disable"),
            (SslMode::Prefer, "prefer"),
            (SslMode::Require, "require"),
            (SslMode::VerifyCa, "verify-ca"),
            (SslMode::VerifyFull, "verify-full"),
        ] {
            assert_eq!(libpq_sslmode(mode), word);
        }
    }

    #[test]
    fn pg_dump_is_looked_for_on_path_first_then_in_the_servers_bin_directory() {
        let path = std::env::join_paths(["/opt/a", "/opt/b"]).unwrap();
        let c = candidates(Some(&path), Some(15));
        assert_eq!(
            c,
            [
                "/opt/a/pg_dump",
                "/opt/b/pg_dump",
                "/usr/lib/postgresql/15/bin/pg_dump",
                "/usr/pgsql-15/bin/pg_dump"
            ]
            .map(PathBuf::from)
        );
        assert!(candidates(None, None).is_empty());
        assert_eq!(find(&[PathBuf::from("/nonexistent/pg_dump")]), None);
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
