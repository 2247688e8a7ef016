//! Configuration: parsed once at start-up from command-line flags, the process
//! environment and `.env` (in that order of precedence) into typed structs.
//!
//! Parsing goes through an "env lookup" seam ([`Config::from_lookup`]) so tests
//! feed a map instead of the process environment. Reading `.env` is the
//! binaries' job (this crate does no I/O); they load it into the environment
//! without overriding variables that are already set.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use ipnetwork::IpNetwork;

/// Exit code for bad configuration (sysexits.h EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// Flags shared by both binaries. Every flag overrides the environment variable
/// named in its description; unset flags fall back to the environment, then
/// `.env`, then the default.
#[derive(FromArgs, Debug, Default, Clone, PartialEq, Eq)]
#[argh(
    description = "StoneScriptDB Gateway. Every flag overrides the environment \
variable of the same meaning (shown in brackets); `.env` in the working directory is read too."
)]
pub struct Flags {
    /// postgreSQL host or unix-socket directory [DB_HOST, default localhost]
    #[argh(option)]
    pub db_host: Option<String>,
    /// postgreSQL port [DB_PORT, default 5432]
    #[argh(option)]
    pub db_port: Option<String>,
    /// admin database the gateway connects to for maintenance [DB_NAME, default postgres]
    #[argh(option)]
    pub db_name: Option<String>,
    /// postgreSQL user [DB_USER, default postgres]
    #[argh(option)]
    pub db_user: Option<String>,
    /// postgreSQL password; prefer the env variable, flags show up in `ps` [DB_PASSWORD]
    #[argh(option)]
    pub db_password: Option<String>,
    /// postgres://user:pass@host:port/db, used when DB_HOST is not set [DATABASE_URL]
    #[argh(option)]
    pub database_url: Option<String>,
    /// address the router listens on [GATEWAY_HOST, default 127.0.0.1]
    #[argh(option)]
    pub host: Option<String>,
    /// port the router listens on; 0 picks a free one [GATEWAY_PORT, default 9000]
    #[argh(option)]
    pub port: Option<String>,
    /// connections per database pool [MAX_CONNECTIONS_PER_POOL, default 10]
    #[argh(option)]
    pub max_connections_per_pool: Option<String>,
    /// cap on connections across all pools [MAX_TOTAL_CONNECTIONS, default 200]
    #[argh(option)]
    pub max_total_connections: Option<String>,
    /// most connections one platform's pools hold together, so another platform always gets one [MAX_CONNECTIONS_PER_PLATFORM, default: half of MAX_TOTAL_CONNECTIONS]
    #[argh(option)]
    pub max_connections_per_platform: Option<String>,
    /// drop pools (and connections) idle this long [POOL_IDLE_TIMEOUT_SECS, default 1800]
    #[argh(option)]
    pub pool_idle_timeout_secs: Option<String>,
    /// expected wait (µs) a /call may queue behind calls already in flight on a shared connection; 0 = share a busy connection only at the pool limit [CALL_PIPELINE_BUDGET_US, default 2000]
    #[argh(option)]
    pub call_pipeline_budget_us: Option<String>,
    /// how long a request waits for a connection before 503 pool_exhausted [POOL_WAIT_TIMEOUT_MS, default 2000]
    #[argh(option)]
    pub pool_wait_timeout_ms: Option<String>,
    /// comma-separated CIDR list of allowed clients; unset = loopback only [ALLOWED_NETWORKS]
    #[argh(option)]
    pub allowed_networks: Option<String>,
    /// log level: error, warn, info, debug or trace [RUST_LOG, default info]
    #[argh(option)]
    pub log_level: Option<String>,
    /// directory for the gateway's state [DATA_DIR, default ./data]
    #[argh(option)]
    pub data_dir: Option<String>,
    /// unix socket the migrator listens on [MIGRATOR_SOCKET, default $DATA_DIR/migrator.sock]
    #[argh(option)]
    pub migrator_socket: Option<String>,
    /// largest schema upload, compressed [ARCHIVE_MAX_COMPRESSED_BYTES, default 16777216]
    #[argh(option)]
    pub archive_max_compressed_bytes: Option<String>,
    /// largest schema archive once inflated [ARCHIVE_MAX_UNCOMPRESSED_BYTES, default 67108864]
    #[argh(option)]
    pub archive_max_uncompressed_bytes: Option<String>,
    /// most entries in a schema archive [ARCHIVE_MAX_ENTRIES, default 2000]
    #[argh(option)]
    pub archive_max_entries: Option<String>,
    /// largest single file in a schema archive [ARCHIVE_MAX_ENTRY_BYTES, default 4194304]
    #[argh(option)]
    pub archive_max_entry_bytes: Option<String>,
    /// databases /v2/migrate deploys at the same time [MIGRATE_CONCURRENCY, default 1]
    #[argh(option)]
    pub migrate_concurrency: Option<String>,
    /// extensions PostgreSQL does not mark trusted that platforms may still install (comma-separated names; needs a superuser DB_USER); trusted ones need no listing [EXTENSIONS_ALLOWED]
    #[argh(option)]
    pub extensions_allowed: Option<String>,
    /// CONNECTION LIMIT of each platform role (PostgreSQL's per-role cap); -1 = none [PLATFORM_CONNECTION_LIMIT, default 100]
    #[argh(option)]
    pub platform_connection_limit: Option<String>,
    /// how long a deployment waits for a table lock before failing [DEPLOY_LOCK_TIMEOUT_MS, default 5000]
    #[argh(option)]
    pub deploy_lock_timeout_ms: Option<String>,
    /// cap on one deployment statement, 0 = none [DEPLOY_STATEMENT_TIMEOUT_MS, default 0]
    #[argh(option)]
    pub deploy_statement_timeout_ms: Option<String>,
    /// bearer tokens for /call, per platform: platform:token,... ; once set, a platform without a token is refused unless the router lists it as open; unset = no token needed [CALL_TOKENS]
    #[argh(option)]
    pub call_tokens: Option<String>,
    /// platforms whose /call needs no token although CALL_TOKENS is set (comma-separated names); without it, once CALL_TOKENS is set a platform it does not list is refused [CALL_OPEN_PLATFORMS]
    #[argh(option)]
    pub call_open_platforms: Option<String>,
    /// platforms whose register, schema upload and listings need no token although tokens are configured (comma-separated names; any client the gateway admits can then replace what they deploy) [OPEN_DEPLOY_PLATFORMS]
    #[argh(option)]
    pub open_deploy_platforms: Option<String>,
    /// key the platform tokens of /admin/platform-token are derived from (at least 16 characters; the same on every migrator); unset: a key kept in the control catalog [PLATFORM_TOKEN_SECRET]
    #[argh(option)]
    pub platform_token_secret: Option<String>,
    /// bearer token for schema routes and /metrics; unset = no token needed [ADMIN_TOKEN]
    #[argh(option)]
    pub admin_token: Option<String>,
    /// most client connections the router serves at once [MAX_CLIENT_CONNECTIONS, default 4096]
    #[argh(option)]
    pub max_client_connections: Option<String>,
    /// a client must send its request headers within this time [HEADER_READ_TIMEOUT_SECS, default 30]
    #[argh(option)]
    pub header_read_timeout_secs: Option<String>,
    /// worker threads of the router [ROUTER_THREADS, default: half the CPUs, at least 1]
    #[argh(option)]
    pub router_threads: Option<String>,
    /// the gateway's control catalog database: who owns which database, deployments [CATALOG_DB, default stonescriptdb_gateway]
    #[argh(option)]
    pub catalog_db: Option<String>,
    /// how often routers poll the catalog for changes they may have missed a notification of (ms) [CATALOG_POLL_MS, default 2000]
    #[argh(option)]
    pub catalog_poll_ms: Option<String>,
    /// bearer tokens for schema routes, per platform: platform:token,... (several per platform allowed, for rotation) [DEPLOY_TOKENS]
    #[argh(option)]
    pub deploy_tokens: Option<String>,
    /// longest a /call statement may run before it is cancelled and answered 504 statement_timeout, 0 = no limit [CALL_TIMEOUT_MS, default 30000]
    #[argh(option)]
    pub call_timeout_ms: Option<String>,
    /// CALL_TIMEOUT_MS per platform: platform:ms,... [CALL_TIMEOUTS]
    #[argh(option)]
    pub call_timeouts: Option<String>,
    /// TLS to PostgreSQL: disable, prefer, require (encrypted, not verified), verify-ca or verify-full (the server's certificate checked against DB_SSLROOTCERT, and its name too) [DB_SSLMODE, default disable, or the sslmode of DATABASE_URL]
    #[argh(option)]
    pub db_sslmode: Option<String>,
    /// PEM file of the CA(s) that signed PostgreSQL's certificate; needed for verify-ca and verify-full [DB_SSLROOTCERT, or the sslrootcert of DATABASE_URL]
    #[argh(option)]
    pub db_sslrootcert: Option<String>,
    /// PEM certificate chain the router serves HTTPS with (with TLS_KEY_FILE); unset = plain HTTP [TLS_CERT_FILE]
    #[argh(option)]
    pub tls_cert_file: Option<String>,
    /// PEM private key of TLS_CERT_FILE [TLS_KEY_FILE]
    #[argh(option)]
    pub tls_key_file: Option<String>,
    /// migrator only: print which existing databases the control catalog would record for which platform, change nothing, exit
    #[argh(switch)]
    pub check_upgrade: bool,
    /// print the version and exit
    #[argh(switch)]
    pub version: bool,
}

/// The field of [`Flags`] that holds one variable's flag.
type FlagField = fn(&Flags) -> &Option<String>;

/// The two binaries, each reading its own part of the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Router,
    Migrator,
}

/// Which binaries read a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadBy {
    Both,
    Router,
    Migrator,
}

impl ReadBy {
    fn includes(self, binary: Binary) -> bool {
        matches!(
            (self, binary),
            (ReadBy::Both, _)
                | (ReadBy::Router, Binary::Router)
                | (ReadBy::Migrator, Binary::Migrator)
        )
    }
}

impl Binary {
    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Router => "stonescriptdb-router",
            Binary::Migrator => "stonescriptdb-migrator",
        }
    }

    /// The one line `--help` starts with.
    pub fn about(self) -> &'static str {
        match self {
            Binary::Router => {
                "stonescriptdb-router: the StoneScriptDB Gateway's router. It serves /call, \
/health and /metrics from its connection pools and forwards every schema route to \
stonescriptdb-migrator over a Unix socket."
            }
            Binary::Migrator => {
                "stonescriptdb-migrator: the StoneScriptDB Gateway's migrator. It creates \
databases, deploys schema archives and keeps the control catalog, answering the \
schema routes the router forwards to its Unix socket."
            }
        }
    }
}

/// One setting: its environment variable, its flag, and who reads it.
struct Setting {
    var: &'static str,
    flag: &'static str,
    read_by: ReadBy,
    field: FlagField,
}

const fn s(var: &'static str, flag: &'static str, read_by: ReadBy, field: FlagField) -> Setting {
    Setting {
        var,
        flag,
        read_by,
        field,
    }
}

/// Every variable the binaries read, with the flag that sets it and the
/// binaries that read it: the one list behind [`Flags::get`],
/// [`variables`] and each binary's `--help`.
const SETTINGS: &[Setting] = &[
    s("DB_HOST", "--db-host", ReadBy::Both, |f| &f.db_host),
    s("DB_PORT", "--db-port", ReadBy::Both, |f| &f.db_port),
    s("DB_NAME", "--db-name", ReadBy::Both, |f| &f.db_name),
    s("DB_USER", "--db-user", ReadBy::Both, |f| &f.db_user),
    s("DB_PASSWORD", "--db-password", ReadBy::Both, |f| {
        &f.db_password
    }),
    s("DATABASE_URL", "--database-url", ReadBy::Both, |f| {
        &f.database_url
    }),
    s("GATEWAY_HOST", "--host", ReadBy::Router, |f| &f.host),
    s("GATEWAY_PORT", "--port", ReadBy::Router, |f| &f.port),
    s(
        "MAX_CONNECTIONS_PER_POOL",
        "--max-connections-per-pool",
        ReadBy::Router,
        |f| &f.max_connections_per_pool,
    ),
    s(
        "MAX_TOTAL_CONNECTIONS",
        "--max-total-connections",
        ReadBy::Router,
        |f| &f.max_total_connections,
    ),
    s(
        "MAX_CONNECTIONS_PER_PLATFORM",
        "--max-connections-per-platform",
        ReadBy::Router,
        |f| &f.max_connections_per_platform,
    ),
    s(
        "POOL_IDLE_TIMEOUT_SECS",
        "--pool-idle-timeout-secs",
        ReadBy::Router,
        |f| &f.pool_idle_timeout_secs,
    ),
    s(
        "POOL_WAIT_TIMEOUT_MS",
        "--pool-wait-timeout-ms",
        ReadBy::Router,
        |f| &f.pool_wait_timeout_ms,
    ),
    s(
        "CALL_PIPELINE_BUDGET_US",
        "--call-pipeline-budget-us",
        ReadBy::Router,
        |f| &f.call_pipeline_budget_us,
    ),
    s(
        "ALLOWED_NETWORKS",
        "--allowed-networks",
        ReadBy::Router,
        |f| &f.allowed_networks,
    ),
    s("RUST_LOG", "--log-level", ReadBy::Both, |f| &f.log_level),
    s("DATA_DIR", "--data-dir", ReadBy::Both, |f| &f.data_dir),
    s("MIGRATOR_SOCKET", "--migrator-socket", ReadBy::Both, |f| {
        &f.migrator_socket
    }),
    s(
        "ARCHIVE_MAX_COMPRESSED_BYTES",
        "--archive-max-compressed-bytes",
        ReadBy::Migrator,
        |f| &f.archive_max_compressed_bytes,
    ),
    s(
        "ARCHIVE_MAX_UNCOMPRESSED_BYTES",
        "--archive-max-uncompressed-bytes",
        ReadBy::Migrator,
        |f| &f.archive_max_uncompressed_bytes,
    ),
    s(
        "ARCHIVE_MAX_ENTRIES",
        "--archive-max-entries",
        ReadBy::Migrator,
        |f| &f.archive_max_entries,
    ),
    s(
        "ARCHIVE_MAX_ENTRY_BYTES",
        "--archive-max-entry-bytes",
        ReadBy::Migrator,
        |f| &f.archive_max_entry_bytes,
    ),
    s(
        "MIGRATE_CONCURRENCY",
        "--migrate-concurrency",
        ReadBy::Migrator,
        |f| &f.migrate_concurrency,
    ),
    s("CALL_TOKENS", "--call-tokens", ReadBy::Both, |f| {
        &f.call_tokens
    }),
    s(
        "CALL_OPEN_PLATFORMS",
        "--call-open-platforms",
        ReadBy::Router,
        |f| &f.call_open_platforms,
    ),
    s(
        "OPEN_DEPLOY_PLATFORMS",
        "--open-deploy-platforms",
        ReadBy::Both,
        |f| &f.open_deploy_platforms,
    ),
    s(
        "PLATFORM_TOKEN_SECRET",
        "--platform-token-secret",
        ReadBy::Migrator,
        |f| &f.platform_token_secret,
    ),
    s("ADMIN_TOKEN", "--admin-token", ReadBy::Both, |f| {
        &f.admin_token
    }),
    s(
        "MAX_CLIENT_CONNECTIONS",
        "--max-client-connections",
        ReadBy::Router,
        |f| &f.max_client_connections,
    ),
    s(
        "HEADER_READ_TIMEOUT_SECS",
        "--header-read-timeout-secs",
        ReadBy::Router,
        |f| &f.header_read_timeout_secs,
    ),
    s("ROUTER_THREADS", "--router-threads", ReadBy::Router, |f| {
        &f.router_threads
    }),
    s(
        "EXTENSIONS_ALLOWED",
        "--extensions-allowed",
        ReadBy::Migrator,
        |f| &f.extensions_allowed,
    ),
    s(
        "PLATFORM_CONNECTION_LIMIT",
        "--platform-connection-limit",
        ReadBy::Migrator,
        |f| &f.platform_connection_limit,
    ),
    s(
        "DEPLOY_LOCK_TIMEOUT_MS",
        "--deploy-lock-timeout-ms",
        ReadBy::Migrator,
        |f| &f.deploy_lock_timeout_ms,
    ),
    s(
        "DEPLOY_STATEMENT_TIMEOUT_MS",
        "--deploy-statement-timeout-ms",
        ReadBy::Migrator,
        |f| &f.deploy_statement_timeout_ms,
    ),
    s("CATALOG_DB", "--catalog-db", ReadBy::Both, |f| {
        &f.catalog_db
    }),
    s(
        "CATALOG_POLL_MS",
        "--catalog-poll-ms",
        ReadBy::Router,
        |f| &f.catalog_poll_ms,
    ),
    s("DEPLOY_TOKENS", "--deploy-tokens", ReadBy::Both, |f| {
        &f.deploy_tokens
    }),
    s(
        "CALL_TIMEOUT_MS",
        "--call-timeout-ms",
        ReadBy::Router,
        |f| &f.call_timeout_ms,
    ),
    s("CALL_TIMEOUTS", "--call-timeouts", ReadBy::Router, |f| {
        &f.call_timeouts
    }),
    s("DB_SSLMODE", "--db-sslmode", ReadBy::Both, |f| {
        &f.db_sslmode
    }),
    s("DB_SSLROOTCERT", "--db-sslrootcert", ReadBy::Both, |f| {
        &f.db_sslrootcert
    }),
    s("TLS_CERT_FILE", "--tls-cert-file", ReadBy::Router, |f| {
        &f.tls_cert_file
    }),
    s("TLS_KEY_FILE", "--tls-key-file", ReadBy::Router, |f| {
        &f.tls_key_file
    }),
];

/// Every variable the binaries read (each also has a flag: [`Flags::get`]).
pub fn variables() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.var)
}

/// The variables `binary` reads.
pub fn variables_of(binary: Binary) -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .filter(move |s| s.read_by.includes(binary))
        .map(|s| s.var)
}

/// Switches (no value) and the binaries that take them.
const SWITCHES: &[(&str, ReadBy)] = &[
    ("--check-upgrade", ReadBy::Migrator),
    ("--version", ReadBy::Both),
    ("--help", ReadBy::Both),
];

/// Rules `--help` states beside the flags.
const RULES: &str = "Every flag overrides the environment variable shown in brackets; \
unset flags fall back to the environment, then `.env` in the working directory, then the default. \
A token (CALL_TOKENS, DEPLOY_TOKENS, ADMIN_TOKEN) is at least 16 characters; CALL_TOKENS and \
DEPLOY_TOKENS are comma-separated platform:token pairs, and DEPLOY_TOKENS may list several tokens \
per platform (rotation) but never one token for two platforms. Bad configuration prints one line \
and exits 64.";

/// `--help` of `binary`: argh's text for [`Flags`] (`full`), keeping only
/// the flags that binary reads, under its own description.
pub fn help_of(binary: Binary, full: &str) -> String {
    let takes = |flag: &str| {
        let read_by = SETTINGS
            .iter()
            .find(|s| s.flag == flag)
            .map(|s| s.read_by)
            .or_else(|| SWITCHES.iter().find(|(f, _)| *f == flag).map(|(_, r)| *r));
        !matches!(read_by, Some(r) if !r.includes(binary))
    };
    let mut usage = format!("Usage: {}", binary.name());
    let mut options = String::new();
    let mut keep = true;
    let mut in_options = false;
    for line in full.lines() {
        if let Some(rest) = line.strip_prefix("Usage: ") {
            // "name [--flag <flag>] [--switch]": keep this binary's
            for part in rest.split(" [").skip(1) {
                let flag = part.split([' ', ']']).next().unwrap_or_default();
                if takes(flag) {
                    usage.push_str(" [");
                    usage.push_str(part);
                }
            }
        } else if line.starts_with("Options:") {
            in_options = true;
        } else if in_options {
            if let Some(entry) = line.strip_prefix("  --") {
                let flag = format!("--{}", entry.split([' ', ',']).next().unwrap_or_default());
                keep = takes(&flag);
            } else if !line.starts_with("   ") {
                in_options = false;
                keep = true;
            }
            if keep && in_options {
                options.push_str(line);
                options.push('\n');
            }
        }
    }
    format!(
        "{usage}\n\n{}\n\n{RULES}\n\nOptions:\n{options}",
        binary.about()
    )
}

/// The first flag given to `binary` that only the other binary reads, as
/// the one line to print.
pub fn foreign_flag(binary: Binary, flags: &Flags) -> Option<String> {
    let other = match binary {
        Binary::Router => Binary::Migrator,
        Binary::Migrator => Binary::Router,
    };
    let given = SETTINGS
        .iter()
        .filter(|s| (s.field)(flags).is_some())
        .map(|s| (s.flag, s.read_by))
        .chain(
            flags
                .check_upgrade
                .then_some(("--check-upgrade", ReadBy::Migrator)),
        );
    for (flag, read_by) in given {
        if !read_by.includes(binary) {
            return Some(format!(
                "{flag} is a flag of {}; {} does not read it",
                other.name(),
                binary.name()
            ));
        }
    }
    None
}

/// Warnings about variables the gateway does not read, one line each:
/// every key of `.env` (the gateway's own file) it does not know, with the
/// nearest known name when one is close; in the process environment, which
/// holds other programs' variables too, only near-misses of known names (at
/// most two letters away).
pub fn unknown_variables<'a>(
    dotenv: impl IntoIterator<Item = &'a str>,
    env: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let known = |k: &str| variables().any(|v| v == k);
    let near = |k: &str| crate::names::nearest(k, variables(), 2);
    let mut out = Vec::new();
    for k in dotenv {
        if !known(k) {
            out.push(match near(k) {
                Some(n) => {
                    format!(".env sets {k}, which the gateway does not read (did you mean {n}?)")
                }
                None => format!(".env sets {k}, which the gateway does not read"),
            });
        }
    }
    for k in env {
        if let (false, Some(n)) = (known(k), near(k)) {
            out.push(format!(
                "the environment sets {k}, which the gateway does not read (did you mean {n}?)"
            ));
        }
    }
    out
}

/// Refuse `.env` lines that the binaries and systemd's `EnvironmentFile=`
/// would read differently: a comment after an unquoted value (`KEY=value #
/// note` is `value` here but `value # note` to systemd).
pub fn check_dotenv_syntax(text: &str) -> Result<(), ConfigError> {
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((key, value)) = t.split_once('=') else {
            continue;
        };
        let value = value.trim_start();
        if value.starts_with('"') || value.starts_with('\'') {
            continue;
        }
        if value.contains(" #") || value.contains("\t#") {
            return Err(ConfigError(format!(
                ".env line {}: {} has a comment after its value, which systemd's EnvironmentFile= would read as part of the value; move the comment to a line of its own",
                n + 1,
                key.trim()
            )));
        }
    }
    Ok(())
}

impl Flags {
    /// The value a flag gives for environment variable `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        SETTINGS
            .iter()
            .find(|s| s.var == name)
            .and_then(|s| (s.field)(self).as_deref())
    }
}

/// How to reach PostgreSQL with the admin role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    /// `DATABASE_URL` as given (the binaries parse it with their driver).
    Url(String),
    /// `DB_HOST`/`DB_PORT`/`DB_NAME`/`DB_USER`/`DB_PASSWORD`.
    Fields {
        host: String,
        port: u16,
        name: String,
        user: String,
        password: Option<String>,
    },
}

/// How the gateway's connections to PostgreSQL use TLS (libpq's `sslmode`
/// names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never.
    Disable,
    /// When the server offers it, without checking its certificate.
    Prefer,
    /// Always, without checking the server's certificate.
    Require,
    /// Always; the certificate must chain to `DB_SSLROOTCERT`.
    VerifyCa,
    /// Always; the certificate must chain to `DB_SSLROOTCERT` and name the
    /// host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(raw: &str, from: &str) -> Result<Self, ConfigError> {
        Ok(match raw.trim() {
            "disable" => Self::Disable,
            "prefer" | "allow" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(ConfigError(format!(
                    "{from}={other:?} is not an sslmode: use disable, prefer, require, verify-ca or verify-full"
                )))
            }
        })
    }

    /// Whether the server's certificate is checked (against `DB_SSLROOTCERT`).
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// TLS to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTls {
    pub mode: SslMode,
    /// CA certificates (PEM) the server's certificate must chain to.
    pub root_cert: Option<PathBuf>,
}

/// `DATABASE_URL` without its `sslmode` and `sslrootcert` parameters (which
/// the gateway handles itself: the driver knows no `verify-*` modes), and
/// their values.
fn split_url_tls(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None, None);
    };
    let (mut mode, mut root) = (None, None);
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("sslmode", v)) => {
                mode = Some(v.to_owned());
                false
            }
            Some(("sslrootcert", v)) => {
                root = Some(v.to_owned());
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, mode, root)
}

/// Log levels as `RUST_LOG` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// The whole configuration of one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub db: DbTarget,
    /// TLS to PostgreSQL (`DB_SSLMODE`, `DB_SSLROOTCERT`).
    pub db_tls: DbTls,
    /// The router's HTTPS certificate chain and key (`TLS_CERT_FILE`,
    /// `TLS_KEY_FILE`); `None`: plain HTTP.
    pub listener_tls: Option<(PathBuf, PathBuf)>,
    /// False when neither `DB_HOST` nor `DATABASE_URL` was given.
    pub db_configured: bool,
    pub gateway_host: IpAddr,
    pub gateway_port: u16,
    pub max_connections_per_pool: usize,
    pub max_total_connections: usize,
    /// Most connections one platform's pools hold together (default: half
    /// of `max_total_connections`, at least 1).
    pub max_connections_per_platform: usize,
    pub pool_idle_timeout: Duration,
    pub pool_wait_timeout: Duration,
    /// How long a `/call` may expect to queue behind calls already in flight
    /// on a shared connection (zero: share a busy one only at the pool limit).
    pub call_pipeline_budget: Duration,
    pub allowed_networks: Vec<IpNetwork>,
    pub log_level: LogLevel,
    pub data_dir: PathBuf,
    pub migrator_socket: PathBuf,
    pub archive: ArchiveCaps,
    pub migrate_concurrency: usize,
    /// Extensions not marked trusted that platforms may install anyway
    /// (`EXTENSIONS_ALLOWED`), sorted.
    pub extensions_allowed: Vec<String>,
    /// `CONNECTION LIMIT` of platform roles (`-1`: none).
    pub platform_connection_limit: i32,
    /// `lock_timeout` of deployment transactions.
    pub deploy_lock_timeout: Duration,
    /// `statement_timeout` of deployment statements (zero = none).
    pub deploy_statement_timeout: Duration,
    /// `statement_timeout` of `/call` sessions.
    pub call_timeouts: CallTimeouts,
    /// Bearer token per platform for `/call`; once any is set, a platform
    /// not listed is refused unless `call_open_platforms` names it.
    pub call_tokens: std::collections::BTreeMap<String, String>,
    /// `CALL_OPEN_PLATFORMS`: platforms whose `/call` needs no token.
    pub call_open_platforms: std::collections::BTreeSet<String>,
    /// `OPEN_DEPLOY_PLATFORMS`: platforms whose register, schema upload and
    /// listings need no token.
    pub open_deploy_platforms: std::collections::BTreeSet<String>,
    /// `PLATFORM_TOKEN_SECRET` (None: a key kept in the control catalog).
    pub platform_token_secret: Option<String>,
    /// Bearer token for schema routes and `/metrics`.
    pub admin_token: Option<String>,
    pub max_client_connections: usize,
    /// Slow-header (slowloris) guard.
    pub header_read_timeout: Duration,
    /// Worker threads of the router's runtime; `None`: half the CPUs, at
    /// least 1 (see [`Config::router_threads_or_default`]).
    pub router_threads: Option<usize>,
    /// The control catalog database (docs/OPERATIONS.md).
    pub catalog_db: String,
    /// How often routers poll the catalog's generations (backstop to LISTEN).
    pub catalog_poll: Duration,
    /// Bearer tokens for schema routes, each good for one platform
    /// (`DEPLOY_TOKENS`), in the order given.
    pub deploy_tokens: Vec<DeployToken>,
    /// `--check-upgrade` (migrator only).
    pub check_upgrade: bool,
}

/// One `DEPLOY_TOKENS` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct DeployToken {
    pub platform: String,
    pub token: String,
    /// How deployments record who asked: `deploy:<platform>`, with `#<n>`
    /// for the n-th token of the same platform (n ≥ 2), so a rotation shows.
    pub name: String,
}

impl std::fmt::Debug for DeployToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Parse `DEPLOY_TOKENS`: `platform:token` pairs separated by commas; a
/// platform may have several (rotation). Tokens are at least 16 characters
/// and each token belongs to one platform only.
pub fn parse_deploy_tokens(raw: &str) -> Result<Vec<DeployToken>, ConfigError> {
    let mut out: Vec<DeployToken> = Vec::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (platform, token) = pair.split_once(':').ok_or_else(|| {
            ConfigError("DEPLOY_TOKENS entries must look like platform:token".into())
        })?;
        crate::names::validate_platform(platform)
            .map_err(|e| ConfigError(format!("DEPLOY_TOKENS: {e}")))?;
        if token.len() < 16 {
            return Err(ConfigError(format!(
                "DEPLOY_TOKENS: a token of {platform} is shorter than 16 characters"
            )));
        }
        if out.iter().any(|t| t.token == token) {
            return Err(ConfigError(
                "DEPLOY_TOKENS: the same token is listed twice; each token belongs to one platform"
                    .into(),
            ));
        }
        let n = out.iter().filter(|t| t.platform == platform).count() + 1;
        out.push(DeployToken {
            platform: platform.to_owned(),
            token: token.to_owned(),
            name: if n == 1 {
                format!("deploy:{platform}")
            } else {
                format!("deploy:{platform}#{n}")
            },
        });
    }
    Ok(out)
}

/// `EXTENSIONS_ALLOWED`: comma-separated extension names (letters, digits,
/// `_` and `-`, as PostgreSQL's control files name them), sorted, once each.
pub fn parse_extensions_allowed(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError(format!(
                "EXTENSIONS_ALLOWED: {name:?} is not an extension name (letters, digits, '_' and '-')"
            )));
        }
        out.push(name.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `CATALOG_DB`: a plain lowercase identifier, so it needs no quoting
/// anywhere an operator types it.
fn parse_catalog_db(raw: Option<String>) -> Result<String, ConfigError> {
    let name = raw.unwrap_or_else(|| crate::catalog::DEFAULT_CATALOG_DB.to_owned());
    let ok = name.len() <= crate::names::MAX_IDENTIFIER_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(ConfigError(format!(
            "CATALOG_DB={name:?} must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
        )))
    }
}

/// Parse `CALL_TOKENS`: `platform:token` pairs separated by commas.
pub fn parse_call_tokens(
    raw: &str,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (platform, token) = pair.split_once(':').ok_or_else(|| {
            ConfigError("CALL_TOKENS entries must look like platform:token".into())
        })?;
        crate::names::validate_platform(platform)
            .map_err(|e| ConfigError(format!("CALL_TOKENS: {e}")))?;
        if token.len() < 16 {
            return Err(ConfigError(format!(
                "CALL_TOKENS: the token of {platform} is shorter than 16 characters"
            )));
        }
        out.insert(platform.to_owned(), token.to_owned());
    }
    Ok(out)
}

/// Parse `CALL_OPEN_PLATFORMS`: platform names separated by commas.
pub fn parse_call_open_platforms(
    raw: &str,
) -> Result<std::collections::BTreeSet<String>, ConfigError> {
    parse_platform_list("CALL_OPEN_PLATFORMS", raw)
}

/// A setting that lists platform names separated by commas.
fn parse_platform_list(
    var: &str,
    raw: &str,
) -> Result<std::collections::BTreeSet<String>, ConfigError> {
    let mut out = std::collections::BTreeSet::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        crate::names::validate_platform(name).map_err(|e| ConfigError(format!("{var}: {e}")))?;
        out.insert(name.to_owned());
    }
    Ok(out)
}

/// The `statement_timeout` of `/call` sessions (zero = none):
/// `CALL_TIMEOUT_MS`, and `CALL_TIMEOUTS` for platforms with their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTimeouts {
    pub default: Duration,
    pub platforms: std::collections::BTreeMap<String, Duration>,
}

impl CallTimeouts {
    /// The limit of `platform`'s calls.
    pub fn of(&self, platform: &str) -> Duration {
        self.platforms
            .get(platform)
            .copied()
            .unwrap_or(self.default)
    }
}

/// Parse `CALL_TIMEOUTS`: `platform:milliseconds` pairs separated by commas
/// (0 = no limit for that platform).
pub fn parse_call_timeouts(
    raw: &str,
) -> Result<std::collections::BTreeMap<String, Duration>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (platform, ms) = pair.split_once(':').ok_or_else(|| {
            ConfigError("CALL_TIMEOUTS entries must look like platform:milliseconds".into())
        })?;
        crate::names::validate_platform(platform)
            .map_err(|e| ConfigError(format!("CALL_TIMEOUTS: {e}")))?;
        let ms = parse_num(
            &format!("CALL_TIMEOUTS ({platform})"),
            Some(ms.to_owned()),
            0u64,
            0,
        )?;
        if out
            .insert(platform.to_owned(), Duration::from_millis(ms))
            .is_some()
        {
            return Err(ConfigError(format!("CALL_TIMEOUTS lists {platform} twice")));
        }
    }
    Ok(out)
}

/// Caps on an uploaded schema archive (the migrator enforces them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveCaps {
    pub max_compressed_bytes: u64,
    pub max_uncompressed_bytes: u64,
    pub max_entries: usize,
    pub max_entry_bytes: u64,
}

/// One clear line saying which setting is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Loopback networks: the default for `ALLOWED_NETWORKS`.
pub fn loopback_networks() -> Vec<IpNetwork> {
    vec![
        IpNetwork::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8).expect("valid prefix"),
        IpNetwork::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 128).expect("valid prefix"),
    ]
}

/// The range of a number setting, as its messages say it: "between 1 and
/// 65535" for ports, "at least 1" where the type's limit means nothing to
/// an operator.
trait Range: Sized + std::fmt::Display {
    fn range(min: &Self) -> String;
}

impl Range for u16 {
    fn range(min: &Self) -> String {
        format!("between {min} and {}", u16::MAX)
    }
}

macro_rules! at_least {
    ($($t:ty),*) => {$(impl Range for $t {
        fn range(min: &Self) -> String {
            format!("at least {min}")
        }
    })*};
}
at_least!(i32, u32, u64, usize);

fn parse_num<T>(name: &str, raw: Option<String>, default: T, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Range,
{
    match raw {
        None => Ok(default),
        Some(s) => {
            let range = || {
                ConfigError(format!(
                    "{name}={s:?} is out of range: it must be {}",
                    T::range(&min)
                ))
            };
            let v: T = match s.trim().parse() {
                Ok(v) => v,
                // a whole number the type cannot hold: say the range
                Err(_) if s.trim().parse::<i128>().is_ok() => return Err(range()),
                Err(_) => {
                    return Err(ConfigError(format!(
                        "{name}={s:?} is not a whole number ({})",
                        T::range(&min)
                    )))
                }
            };
            if v < min {
                return Err(range());
            }
            Ok(v)
        }
    }
}

/// Parse a comma-separated CIDR list (`10.0.0.0/8, ::1/128, 192.168.1.7`).
/// A bare address means that single host.
pub fn parse_networks(raw: &str) -> Result<Vec<IpNetwork>, ConfigError> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let net = if part.contains('/') {
            part.parse::<IpNetwork>().map_err(|e| {
                ConfigError(format!(
                    "ALLOWED_NETWORKS entry {part:?} is not a valid CIDR: {e}"
                ))
            })?
        } else {
            let ip: IpAddr = part.parse().map_err(|_| {
                ConfigError(format!(
                    "ALLOWED_NETWORKS entry {part:?} is not an IP address or CIDR"
                ))
            })?;
            IpNetwork::from(ip)
        };
        out.push(net);
    }
    if out.is_empty() {
        return Err(ConfigError(
            "ALLOWED_NETWORKS is set but lists no network (unset it for loopback only)".into(),
        ));
    }
    Ok(out)
}

/// Parse `RUST_LOG`: a level name, or a filter list whose first bare level is used.
pub fn parse_log_level(raw: &str) -> Result<LogLevel, ConfigError> {
    for part in raw.split(',').map(str::trim) {
        let level = part.rsplit('=').next().unwrap_or(part);
        if part.contains('=') {
            continue;
        }
        return match level.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            "off" => Ok(LogLevel::Error),
            _ => Err(ConfigError(format!(
                "RUST_LOG={raw:?}: unknown level {level:?} (use error, warn, info, debug or trace)"
            ))),
        };
    }
    Ok(LogLevel::Info)
}

impl Config {
    /// Build the configuration from a lookup of environment-variable names.
    /// Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let url = get("DATABASE_URL");
        let host = get("DB_HOST");
        let db_configured = url.is_some() || host.is_some();
        let (mut url_sslmode, mut url_root) = (None, None);
        let db = match (host, url) {
            (None, Some(url)) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError(
                        "DATABASE_URL must start with postgres:// or postgresql://".into(),
                    ));
                }
                let (url, mode, root) = split_url_tls(&url);
                (url_sslmode, url_root) = (mode, root);
                DbTarget::Url(url)
            }
            (host, _) => DbTarget::Fields {
                host: host.unwrap_or_else(|| "localhost".into()),
                port: parse_num("DB_PORT", get("DB_PORT"), 5432u16, 1)?,
                name: get("DB_NAME").unwrap_or_else(|| "postgres".into()),
                user: get("DB_USER").unwrap_or_else(|| "postgres".into()),
                password: lookup("DB_PASSWORD").filter(|p| !p.is_empty()),
            },
        };

        let db_tls = {
            let mode = match (get("DB_SSLMODE"), url_sslmode) {
                (Some(m), _) => SslMode::parse(&m, "DB_SSLMODE")?,
                (None, Some(m)) => SslMode::parse(&m, "the sslmode of DATABASE_URL")?,
                (None, None) => SslMode::Disable,
            };
            let root_cert = get("DB_SSLROOTCERT").or(url_root).map(PathBuf::from);
            if mode.verifies() && root_cert.is_none() {
                return Err(ConfigError(
                    "DB_SSLMODE=verify-ca and verify-full need DB_SSLROOTCERT (the PEM file of the CA that signed PostgreSQL's certificate)".into(),
                ));
            }
            DbTls { mode, root_cert }
        };
        let listener_tls = match (get("TLS_CERT_FILE"), get("TLS_KEY_FILE")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (Some(_), None) => {
                return Err(ConfigError(
                    "TLS_CERT_FILE is set but TLS_KEY_FILE is not: HTTPS needs both".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "TLS_KEY_FILE is set but TLS_CERT_FILE is not: HTTPS needs both".into(),
                ))
            }
        };
        let gateway_host = match get("GATEWAY_HOST") {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(h) if h == "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(h) => h.trim().parse().map_err(|_| {
                ConfigError(format!(
                    "GATEWAY_HOST={h:?} is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)"
                ))
            })?,
        };
        let gateway_port = parse_num("GATEWAY_PORT", get("GATEWAY_PORT"), 9000u16, 0)?;
        let max_connections_per_pool = parse_num(
            "MAX_CONNECTIONS_PER_POOL",
            get("MAX_CONNECTIONS_PER_POOL"),
            10usize,
            1,
        )?;
        let max_total_connections = parse_num(
            "MAX_TOTAL_CONNECTIONS",
            get("MAX_TOTAL_CONNECTIONS"),
            200usize,
            1,
        )?;
        let max_connections_per_platform = parse_num(
            "MAX_CONNECTIONS_PER_PLATFORM",
            get("MAX_CONNECTIONS_PER_PLATFORM"),
            (max_total_connections / 2).max(1),
            1,
        )?;
        let pool_idle_timeout = Duration::from_secs(parse_num(
            "POOL_IDLE_TIMEOUT_SECS",
            get("POOL_IDLE_TIMEOUT_SECS"),
            1800u64,
            1,
        )?);
        let pool_wait_timeout = Duration::from_millis(parse_num(
            "POOL_WAIT_TIMEOUT_MS",
            get("POOL_WAIT_TIMEOUT_MS"),
            2000u64,
            1,
        )?);
        let call_pipeline_budget = Duration::from_micros(parse_num(
            "CALL_PIPELINE_BUDGET_US",
            get("CALL_PIPELINE_BUDGET_US"),
            2000u64,
            0,
        )?);
        let allowed_networks = match get("ALLOWED_NETWORKS") {
            None => loopback_networks(),
            Some(raw) => parse_networks(&raw)?,
        };
        let log_level = match get("RUST_LOG") {
            None => LogLevel::Info,
            Some(raw) => parse_log_level(&raw)?,
        };
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let migrator_socket = get("MIGRATOR_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("migrator.sock"));

        let archive = ArchiveCaps {
            max_compressed_bytes: parse_num(
                "ARCHIVE_MAX_COMPRESSED_BYTES",
                get("ARCHIVE_MAX_COMPRESSED_BYTES"),
                16u64 << 20,
                1,
            )?,
            max_uncompressed_bytes: parse_num(
                "ARCHIVE_MAX_UNCOMPRESSED_BYTES",
                get("ARCHIVE_MAX_UNCOMPRESSED_BYTES"),
                64u64 << 20,
                1,
            )?,
            max_entries: parse_num(
                "ARCHIVE_MAX_ENTRIES",
                get("ARCHIVE_MAX_ENTRIES"),
                2000usize,
                1,
            )?,
            max_entry_bytes: parse_num(
                "ARCHIVE_MAX_ENTRY_BYTES",
                get("ARCHIVE_MAX_ENTRY_BYTES"),
                4u64 << 20,
                1,
            )?,
        };
        let call_tokens = match get("CALL_TOKENS") {
            None => Default::default(),
            Some(raw) => parse_call_tokens(&raw)?,
        };
        let call_open_platforms = match get("CALL_OPEN_PLATFORMS") {
            None => Default::default(),
            Some(raw) => parse_call_open_platforms(&raw)?,
        };
        if let Some(both) = call_open_platforms
            .iter()
            .find(|p| call_tokens.contains_key(*p))
        {
            return Err(ConfigError(format!(
                "platform {both} is in CALL_TOKENS and in CALL_OPEN_PLATFORMS: give it a token or list it as open, not both"
            )));
        }
        Ok(Self {
            db,
            db_tls,
            listener_tls,
            db_configured,
            gateway_host,
            gateway_port,
            max_connections_per_pool,
            max_total_connections,
            max_connections_per_platform,
            pool_idle_timeout,
            pool_wait_timeout,
            call_pipeline_budget,
            allowed_networks,
            log_level,
            data_dir,
            migrator_socket,
            archive,
            migrate_concurrency: parse_num(
                "MIGRATE_CONCURRENCY",
                get("MIGRATE_CONCURRENCY"),
                1usize,
                1,
            )?,
            extensions_allowed: match get("EXTENSIONS_ALLOWED") {
                None => Vec::new(),
                Some(raw) => parse_extensions_allowed(&raw)?,
            },
            platform_connection_limit: parse_num(
                "PLATFORM_CONNECTION_LIMIT",
                get("PLATFORM_CONNECTION_LIMIT"),
                100i32,
                -1,
            )?,
            deploy_lock_timeout: Duration::from_millis(parse_num(
                "DEPLOY_LOCK_TIMEOUT_MS",
                get("DEPLOY_LOCK_TIMEOUT_MS"),
                5000u64,
                1,
            )?),
            deploy_statement_timeout: Duration::from_millis(parse_num(
                "DEPLOY_STATEMENT_TIMEOUT_MS",
                get("DEPLOY_STATEMENT_TIMEOUT_MS"),
                0u64,
                0,
            )?),
            call_timeouts: CallTimeouts {
                default: Duration::from_millis(parse_num(
                    "CALL_TIMEOUT_MS",
                    get("CALL_TIMEOUT_MS"),
                    30_000u64,
                    0,
                )?),
                platforms: match get("CALL_TIMEOUTS") {
                    None => Default::default(),
                    Some(raw) => parse_call_timeouts(&raw)?,
                },
            },
            call_tokens,
            call_open_platforms,
            open_deploy_platforms: match get("OPEN_DEPLOY_PLATFORMS") {
                None => Default::default(),
                Some(raw) => parse_platform_list("OPEN_DEPLOY_PLATFORMS", &raw)?,
            },
            platform_token_secret: match get("PLATFORM_TOKEN_SECRET") {
                Some(t) if t.len() < 16 => {
                    return Err(ConfigError(
                        "PLATFORM_TOKEN_SECRET is shorter than 16 characters".into(),
                    ))
                }
                t => t,
            },
            admin_token: match get("ADMIN_TOKEN") {
                Some(t) if t.len() < 16 => {
                    return Err(ConfigError(
                        "ADMIN_TOKEN is shorter than 16 characters".into(),
                    ))
                }
                t => t,
            },
            max_client_connections: parse_num(
                "MAX_CLIENT_CONNECTIONS",
                get("MAX_CLIENT_CONNECTIONS"),
                4096usize,
                1,
            )?,
            header_read_timeout: Duration::from_secs(parse_num(
                "HEADER_READ_TIMEOUT_SECS",
                get("HEADER_READ_TIMEOUT_SECS"),
                30u64,
                1,
            )?),
            router_threads: get("ROUTER_THREADS")
                .map(|v| parse_num("ROUTER_THREADS", Some(v), 1usize, 1))
                .transpose()?,
            catalog_db: parse_catalog_db(get("CATALOG_DB"))?,
            catalog_poll: Duration::from_millis(parse_num(
                "CATALOG_POLL_MS",
                get("CATALOG_POLL_MS"),
                2000u64,
                100,
            )?),
            deploy_tokens: match get("DEPLOY_TOKENS") {
                None => Vec::new(),
                Some(raw) => parse_deploy_tokens(&raw)?,
            },
            check_upgrade: false,
        })
    }

    /// `ROUTER_THREADS`, or half of `cpus` (at least 1) when unset: the router
    /// usually shares its machine with PostgreSQL, which does most of the
    /// work of a call, and on a small machine a second router thread costs
    /// more in cross-thread wake-ups than it adds (docs/BENCHMARKS.md).
    pub fn router_threads_or_default(&self, cpus: usize) -> usize {
        self.router_threads.unwrap_or((cpus / 2).max(1))
    }

    /// Flags first, then `env` (the process environment, `.env` already merged in).
    pub fn from_flags_and_env(
        flags: &Flags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config =
            Self::from_lookup(|name| flags.get(name).map(str::to_owned).or_else(|| env(name)))?;
        config.check_upgrade = flags.check_upgrade;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_seeds() {
        let c = cfg(&[]).unwrap();
        assert!(!c.db_configured);
        assert_eq!(c.gateway_host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.gateway_port, 9000);
        assert_eq!(c.max_connections_per_pool, 10);
        assert_eq!(c.max_total_connections, 200);
        assert_eq!(c.pool_idle_timeout, Duration::from_secs(1800));
        assert_eq!(c.call_pipeline_budget, Duration::from_micros(2000));
        assert_eq!(c.router_threads, None);
        assert_eq!(c.router_threads_or_default(1), 1);
        assert_eq!(c.router_threads_or_default(2), 1);
        assert_eq!(c.router_threads_or_default(8), 4);
        let c = cfg(&[("ROUTER_THREADS", "3")]).unwrap();
        assert_eq!(c.router_threads_or_default(8), 3);
        let c = cfg(&[("CALL_PIPELINE_BUDGET_US", "0")]).unwrap();
        assert_eq!(c.call_pipeline_budget, Duration::ZERO);
        assert!(cfg(&[("CALL_PIPELINE_BUDGET_US", "-1")]).is_err());
        let c = cfg(&[]).unwrap();
        assert_eq!(c.allowed_networks, loopback_networks());
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.migrator_socket, PathBuf::from("./data/migrator.sock"));
        assert_eq!(
            c.db,
            DbTarget::Fields {
                host: "localhost".into(),
                port: 5432,
                name: "postgres".into(),
                user: "postgres".into(),
                password: None
            }
        );
    }

    #[test]
    fn fields_win_over_url_and_flags_win_over_env() {
        let c = cfg(&[("DB_HOST", "db"), ("DATABASE_URL", "postgres://x@y/z")]).unwrap();
        assert!(matches!(c.db, DbTarget::Fields { ref host, .. } if host == "db"));
        let c = cfg(&[("DATABASE_URL", "postgres://x@y/z")]).unwrap();
        assert_eq!(c.db, DbTarget::Url("postgres://x@y/z".into()));
        let flags = Flags {
            port: Some("9100".into()),
            ..Flags::default()
        };
        let c = Config::from_flags_and_env(&flags, |k| {
            (k == "GATEWAY_PORT").then(|| "9200".to_string())
        })
        .unwrap();
        assert_eq!(c.gateway_port, 9100);
    }

    #[test]
    fn every_variable_has_one_flag() {
        let mut names: Vec<&str> = variables().collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a variable listed twice");
        let flags = Flags {
            db_host: Some("db".into()),
            port: Some("9100".into()),
            ..Flags::default()
        };
        assert_eq!(flags.get("DB_HOST"), Some("db"));
        assert_eq!(flags.get("GATEWAY_PORT"), Some("9100"));
        assert_eq!(flags.get("DB_PORT"), None);
        assert_eq!(flags.get("NOT_A_VARIABLE"), None);
    }

    /// Each binary's `--help` lists exactly the flags it reads: every
    /// flag of the settings table is one argh knows, and the other binary's
    /// flags are left out.
    #[test]
    fn help_lists_each_binary_its_own_flags() {
        let full = match Flags::from_args(&["x"], &["--help"]) {
            Err(exit) => exit.output,
            Ok(_) => panic!("--help parsed as a run"),
        };
        for setting in SETTINGS {
            assert!(
                full.contains(&format!("  {} ", setting.flag))
                    || full.contains(&format!("  {}\n", setting.flag)),
                "argh does not know {}",
                setting.flag
            );
        }
        for binary in [Binary::Router, Binary::Migrator] {
            let help = help_of(binary, &full);
            assert!(help.starts_with(&format!("Usage: {} [--db-host", binary.name())));
            assert!(help.contains(binary.about()));
            assert!(help.contains("at least 16 characters"));
            for setting in SETTINGS {
                let listed = help.contains(&format!("  {} ", setting.flag))
                    || help.contains(&format!("  {}\n", setting.flag));
                assert_eq!(listed, setting.read_by.includes(binary), "{help}");
                assert_eq!(help.contains(&format!("[{} <", setting.flag)), listed);
                assert_eq!(help.contains(setting.var), listed, "{}", setting.var);
            }
            assert_eq!(help.contains("--check-upgrade"), binary == Binary::Migrator);
            assert!(help.contains("--help") && help.contains("--version"));
        }
        let flags = Flags {
            port: Some("9100".into()),
            ..Flags::default()
        };
        assert_eq!(foreign_flag(Binary::Router, &flags), None);
        assert_eq!(
            foreign_flag(Binary::Migrator, &flags).as_deref(),
            Some(
                "--port is a flag of stonescriptdb-router; stonescriptdb-migrator does not read it"
            )
        );
        let flags = Flags {
            check_upgrade: true,
            ..Flags::default()
        };
        assert!(foreign_flag(Binary::Router, &flags)
            .unwrap()
            .starts_with("--check-upgrade is a flag of stonescriptdb-migrator"));
    }

    #[test]
    fn tls_settings_from_variables_and_from_the_url() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.db_tls.mode, SslMode::Disable);
        assert_eq!(c.listener_tls, None);
        let c = cfg(&[(
            "DATABASE_URL",
            "postgres://u@db.example/app?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5",
        )])
        .unwrap();
        assert_eq!(
            c.db,
            DbTarget::Url("postgres://u@db.example/app?connect_timeout=5".into())
        );
        assert_eq!(
            c.db_tls,
            DbTls {
                mode: SslMode::VerifyFull,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        // the variable wins over the URL
        let c = cfg(&[
            ("DATABASE_URL", "postgres://u@db/app?sslmode=require"),
            ("DB_SSLMODE", "disable"),
        ])
        .unwrap();
        assert_eq!(c.db_tls.mode, SslMode::Disable);
        assert_eq!(c.db, DbTarget::Url("postgres://u@db/app".into()));
        for (env, needle) in [
            (vec![("DB_SSLMODE", "verify-full")], "need DB_SSLROOTCERT"),
            (
                vec![("DB_SSLMODE", "on")],
                "DB_SSLMODE=\"on\" is not an sslmode",
            ),
            (vec![("TLS_CERT_FILE", "/c.pem")], "TLS_KEY_FILE is not"),
            (vec![("TLS_KEY_FILE", "/k.pem")], "TLS_CERT_FILE is not"),
        ] {
            let e = cfg(&env).unwrap_err().0;
            assert!(e.contains(needle), "{env:?}: {e}");
        }
    }

    #[test]
    fn a_platforms_share_of_connections_defaults_to_half_the_total() {
        assert_eq!(cfg(&[]).unwrap().max_connections_per_platform, 100);
        let c = cfg(&[("MAX_TOTAL_CONNECTIONS", "4")]).unwrap();
        assert_eq!(c.max_connections_per_platform, 2);
        let c = cfg(&[("MAX_TOTAL_CONNECTIONS", "1")]).unwrap();
        assert_eq!(c.max_connections_per_platform, 1, "at least one");
        let c = cfg(&[
            ("MAX_TOTAL_CONNECTIONS", "4"),
            ("MAX_CONNECTIONS_PER_PLATFORM", "3"),
        ])
        .unwrap();
        assert_eq!(c.max_connections_per_platform, 3);
        assert!(cfg(&[("MAX_CONNECTIONS_PER_PLATFORM", "0")]).is_err());
    }

    #[test]
    fn call_timeouts_have_a_default_and_per_platform_overrides() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.call_timeouts.of("crm"), Duration::from_secs(30));
        let c = cfg(&[
            ("CALL_TIMEOUT_MS", "500"),
            ("CALL_TIMEOUTS", "reports:120000, crm:0"),
        ])
        .unwrap();
        assert_eq!(c.call_timeouts.of("shop"), Duration::from_millis(500));
        assert_eq!(c.call_timeouts.of("reports"), Duration::from_secs(120));
        assert_eq!(c.call_timeouts.of("crm"), Duration::ZERO);
        // a platform whose name only starts like a listed one has the default
        assert_eq!(c.call_timeouts.of("crm_admin"), Duration::from_millis(500));
        assert_eq!(c.call_timeouts.of("cr"), Duration::from_millis(500));
        for (raw, needle) in [
            (
                "crm",
                "CALL_TIMEOUTS entries must look like platform:milliseconds",
            ),
            ("Crm:5", "CALL_TIMEOUTS: "),
            ("crm:-5", "CALL_TIMEOUTS (crm)=\"-5\""),
            ("crm:5,crm:6", "CALL_TIMEOUTS lists crm twice"),
        ] {
            let e = cfg(&[("CALL_TIMEOUTS", raw)]).unwrap_err().0;
            assert!(e.contains(needle), "{raw}: {e}");
        }
    }

    #[test]
    fn unknown_variables_are_named_with_the_nearest_known_one() {
        let w = unknown_variables(
            ["GATWAY_HOST", "DB_HOST", "COLOR"],
            ["DB_HOTS", "HOME", "PATH", "GATEWAY_PORT"],
        );
        assert_eq!(
            w,
            [
                ".env sets GATWAY_HOST, which the gateway does not read (did you mean GATEWAY_HOST?)",
                ".env sets COLOR, which the gateway does not read",
                "the environment sets DB_HOTS, which the gateway does not read (did you mean DB_HOST?)",
            ]
        );
    }

    #[test]
    fn call_open_platforms_are_names_and_never_also_have_a_token() {
        let tokens = "app:call-token-0123456789";
        let c = cfg(&[
            ("CALL_TOKENS", tokens),
            ("CALL_OPEN_PLATFORMS", " demo , public_site,"),
        ])
        .unwrap();
        assert_eq!(
            c.call_open_platforms.iter().collect::<Vec<_>>(),
            ["demo", "public_site"]
        );
        let e = cfg(&[("CALL_OPEN_PLATFORMS", "demo,Bad-Name")]).unwrap_err();
        assert!(e.0.starts_with("CALL_OPEN_PLATFORMS: "), "{e}");
        let e = cfg(&[("CALL_TOKENS", tokens), ("CALL_OPEN_PLATFORMS", "app")]).unwrap_err();
        assert!(
            e.0.contains("CALL_TOKENS and in CALL_OPEN_PLATFORMS"),
            "{e}"
        );
        assert!(cfg(&[]).unwrap().call_open_platforms.is_empty());
    }

    #[test]
    fn a_comment_after_a_value_is_refused_naming_the_line() {
        let ok = "# a comment\nGATEWAY_PORT=9000\nADMIN_TOKEN=\"abc # not a comment\"\nX=a#b\n";
        assert!(check_dotenv_syntax(ok).is_ok());
        let e = check_dotenv_syntax("DB_HOST=db\nGATEWAY_PORT=9000 # the port\n").unwrap_err();
        assert!(
            e.0.starts_with(".env line 2: GATEWAY_PORT has a comment after its value"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (pairs, needle) in [
            (vec![("GATEWAY_PORT", "http")], "GATEWAY_PORT"),
            (vec![("GATEWAY_PORT", "70000")], "GATEWAY_PORT"),
            (
                vec![("MAX_TOTAL_CONNECTIONS", "0")],
                "MAX_TOTAL_CONNECTIONS=\"0\" is out of range: it must be at least 1",
            ),
            (
                vec![("GATEWAY_PORT", "70000")],
                "GATEWAY_PORT=\"70000\" is out of range: it must be between 0 and 65535",
            ),
            (
                vec![("DB_PORT", "0")],
                "DB_PORT=\"0\" is out of range: it must be between 1 and 65535",
            ),
            (
                vec![("GATEWAY_PORT", "90a")],
                "GATEWAY_PORT=\"90a\" is not a whole number (between 0 and 65535)",
            ),
            (vec![("ROUTER_THREADS", "0")], "ROUTER_THREADS"),
            (vec![("ALLOWED_NETWORKS", "10.0.0.0/33")], "10.0.0.0/33"),
            (vec![("ALLOWED_NETWORKS", "nope")], "nope"),
            (vec![("RUST_LOG", "loud")], "RUST_LOG"),
            (vec![("GATEWAY_HOST", "example.com")], "GATEWAY_HOST"),
            (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
        ] {
            let e = cfg(&pairs).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} lacks {needle}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn catalog_and_deploy_tokens() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.catalog_db, "stonescriptdb_gateway");
        assert_eq!(c.catalog_poll, Duration::from_millis(2000));
        assert!(c.deploy_tokens.is_empty());
        assert!(cfg(&[("CATALOG_DB", "My-Catalog")]).is_err());
        assert!(cfg(&[("CATALOG_POLL_MS", "10")]).is_err());
        let c = cfg(&[(
            "DEPLOY_TOKENS",
            "app:0123456789abcdef, app:fedcba9876543210,other:aaaaaaaaaaaaaaaa",
        )])
        .unwrap();
        let names: Vec<&str> = c.deploy_tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["deploy:app", "deploy:app#2", "deploy:other"]);
        for bad in [
            "app:short",
            "App:0123456789abcdef",
            "app0123456789abcdef",
            "a:0123456789abcdef,b:0123456789abcdef",
        ] {
            let e = cfg(&[("DEPLOY_TOKENS", bad)]).unwrap_err().to_string();
            assert!(e.contains("DEPLOY_TOKENS"), "{bad}: {e}");
            assert!(!e.contains("0123456789abcdef"), "a token leaked: {e}");
        }
    }

    #[test]
    fn networks_and_levels() {
        let n = parse_networks("127.0.0.0/8, 192.168.1.100/24 ,::1").unwrap();
        assert_eq!(n.len(), 3);
        assert!(n[1].contains("192.168.1.7".parse().unwrap()));
        assert_eq!(parse_log_level("debug").unwrap(), LogLevel::Debug);
        assert_eq!(
            parse_log_level("hyper=warn,trace").unwrap(),
            LogLevel::Trace
        );
        assert_eq!(parse_log_level("INFO").unwrap(), LogLevel::Info);
    }
}
