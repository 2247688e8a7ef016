//! Running `pg_dump` against one database on the gateway's server, for
//! backups before a drop (`backup`) and for exporting a database as a
//! schema folder (`export`). It connects as the gateway's admin role with
//! the admin connection's host, port and TLS mode (`DB_SSLMODE`,
//! `DB_SSLROOTCERT`); everything reaches it through its environment — the
//! password as `PGPASSWORD`, never on its command line, which any local
//! user can read in `ps` — and no libpq variable of the migrator's own
//! environment is inherited. It is the first `pg_dump` on `PATH`, else the
//! one in the bin directory of the server's major version
//! (`/usr/lib/postgresql/N/bin`, `/usr/pgsql-N/bin`). A failure says why,
//! with pg_dump's own error.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;

use stonescriptdb_shared::config::{Config, SslMode};
use tokio_postgres::config::Host;
use tokio_postgres::Client;

use crate::error::pg_message;

/// Most of pg_dump's error output kept in an answer.
const STDERR_KEPT: usize = 4096;
/// Seconds pg_dump waits for its connection.
const CONNECT_TIMEOUT_SECS: &str = "10";

/// How pg_dump reaches PostgreSQL beyond the admin connection's settings:
/// its TLS mode and CA.
#[derive(Debug, Clone)]
pub struct Tls {
    sslmode: SslMode,
    sslrootcert: Option<PathBuf>,
}

impl Tls {
    pub fn new(config: &Config) -> Self {
        Tls {
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

/// pg_dump's environment for `database`, from the admin connection's
/// settings: every libpq variable it needs, the password included.
fn environment(
    admin: &tokio_postgres::Config,
    tls: &Tls,
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
    env.push(("PGSSLMODE", libpq_sslmode(tls.sslmode).into()));
    if let Some(root) = &tls.sslrootcert {
        env.push(("PGSSLROOTCERT", root.into()));
    }
    env.push(("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS.into()));
    env.push(("PGAPPNAME", "stonescriptdb-pg_dump".into()));
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

/// pg_dump, found for the server, with the environment that reaches one
/// database; and the server's UTC time when it was found (`YYYYMMDDTHHMMSSZ`).
pub struct PgDump {
    path: PathBuf,
    env: Vec<(&'static str, OsString)>,
    pub utc: String,
}

impl PgDump {
    /// Find pg_dump for the server `admin` (a connection to the admin
    /// database) is on, to dump `database`. `Err` says why not (where it
    /// looked).
    pub async fn locate(
        tls: &Tls,
        admin_config: &tokio_postgres::Config,
        admin: &Client,
        database: &str,
    ) -> Result<PgDump, String> {
        let row = admin
            .query_one(
                "SELECT current_setting('server_version_num')::int / 10000,
                        to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"')",
                &[],
            )
            .await
            .map_err(|e| pg_message(&e))?;
        let (major, utc): (i32, String) = (row.get(0), row.get(1));
        let looked = candidates(
            std::env::var_os("PATH").as_deref(),
            u32::try_from(major).ok(),
        );
        let Some(path) = find(&looked) else {
            let dirs: Vec<String> = looked
                .iter()
                .filter_map(|p| p.parent().map(|d| d.display().to_string()))
                .collect();
            return Err(format!(
                "pg_dump not found (looked in PATH and the bin directory of PostgreSQL {major}: {}); install the PostgreSQL client tools of version {major} or newer",
                dirs.join(", ")
            ));
        };
        Ok(PgDump {
            path,
            env: environment(admin_config, tls, database),
            utc,
        })
    }

    /// Run pg_dump (blocking: call it from `spawn_blocking`) with `args`
    /// (never a secret) and its output going to `out`; what it wrote when
    /// `out` is piped. `Err` is why it failed, with its error output.
    pub fn run(&self, args: &[&str], out: Stdio) -> Result<Vec<u8>, String> {
        let mut cmd = std::process::Command::new(&self.path);
        cmd.args(args);
        // only our libpq settings: none inherited (PGSERVICE, PGOPTIONS, …)
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        // read the error output on its own thread: a pipe either side that
        // fills up would stall pg_dump
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                text
            })
        });
        let mut written = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            o.read_to_end(&mut written)
                .map_err(|e| format!("reading {}'s output: {e}", self.path.display()))?;
        }
        let status = child
            .wait()
            .map_err(|e| format!("{} did not finish: {e}", self.path.display()))?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(written);
        }
        let stderr = stderr.trim();
        let mut end = stderr.len().min(STDERR_KEPT);
        while !stderr.is_char_boundary(end) {
            end -= 1;
        }
        Err(format!(
            "{} failed ({status}): {}",
            self.path.display(),
            &stderr[..end]
        ))
    }

    /// Its arguments and environment, for a test that nothing secret is an
    /// argument.
    #[cfg(test)]
    fn env(&self) -> &[(&'static str, OsString)] {
        &self.env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode) -> Tls {
        Tls {
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
        let dump = PgDump {
            path: PathBuf::from("/usr/bin/pg_dump"),
            env: environment(&cfg, &tls(SslMode::VerifyFull), "shop_t1"),
            utc: String::new(),
        };
        let get = |k: &str| {
            dump.env()
                .iter()
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
        let env = environment(&cfg, &tls(SslMode::Disable), "x");
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
}
