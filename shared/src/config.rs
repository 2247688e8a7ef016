//! Configuration: parsed once at start-up from command-line flags, the process
//! environment and `.env` (in that order of precedence) into typed structs.
//!
//! Every setting is declared once, in the `settings!` list below (variable,
//! flag, binaries, type, default, parser, help text); the flags, each
//! binary's `--help`, the table of variables and the parsing all follow
//! from it. Parsing goes through an "env lookup" seam
//! ([`Config::from_lookup`]) so tests feed a map instead of the process
//! environment. Reading `.env` is the binaries' job (this crate does no
//! I/O); they load it into the environment without overriding variables
//! that are already set.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnetwork::IpNetwork;

/// Exit code for bad configuration (sysexits.h EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// Declares every setting once — its field, type, environment variable,
/// flag, the binaries that read it, its default and its parser, with its
/// `--help` text as the doc comment — and every switch; from that one list
/// it builds [`Flags`], the typed [`Settings`] `from_lookup` starts from,
/// and the table ([`SETTINGS`]) behind `--help`, [`variables`] and
/// [`Flags::get`].
///
/// A default is one of: `default(VALUE)` (`--help` shows it), `empty`
/// (nothing: an empty list), `unset` or `unset("TEXT")` (an `Option`: what
/// unset means is decided from other settings, and `TEXT` says it in
/// `--help`), `verbatim` (an `Option`; unlike every other setting, a value
/// of spaces is a value). A blank value counts as unset.
macro_rules! settings {
    (
        settings {$(
            $(#[doc = $help:literal])+
            $field:ident: $ty:ty, $var:literal, $flag:literal, $read_by:ident,
                $kind:ident $(($default:expr))?, $parse:expr;
        )*}
        switches {$(
            $(#[doc = $switch_help:literal])+
            $switch:ident, $switch_flag:literal, $switch_read_by:ident;
        )*}
    ) => {
        /// The command line: each setting's flag (which overrides its
        /// environment variable) and the switches. Parsed by [`Flags::parse`].
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct Flags {
            $($(#[doc = $help])+ pub $field: Option<String>,)*
            $($(#[doc = $switch_help])+ pub $switch: bool,)*
        }

        impl Flags {
            /// The flags from argh's slots, in the order of [`SETTINGS`]
            /// and [`SWITCHES`].
            fn from_slots(
                mut values: impl Iterator<Item = Option<String>>,
                mut switches: impl Iterator<Item = bool>,
            ) -> Self {
                Self {
                    $($field: values.next().flatten(),)*
                    $($switch: switches.next().unwrap_or(false),)*
                }
            }
        }

        /// Every setting parsed to its type, its default applied; what
        /// [`Config::from_lookup`] assembles the configuration from.
        struct Settings {
            $($(#[doc = $help])+ $field: $ty,)*
        }

        impl Settings {
            fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
                Ok(Self {
                    $($field: setting_value!(lookup, $var, $parse, $kind $(($default))?),)*
                })
            }
        }

        /// Every setting: the one table behind [`Flags::get`], [`variables`],
        /// each binary's `--help` and [`foreign_flag`].
        const SETTINGS: &[Setting] = &[$(
            Setting {
                var: $var,
                flag: $flag,
                read_by: ReadBy::$read_by,
                help: concat!($($help),+),
                shown: setting_shown!($ty, $kind $(($default))?),
                field: |f| &f.$field,
            },
        )*];

        /// The switches (flags without a value).
        const SWITCHES: &[Switch] = &[$(
            Switch {
                flag: $switch_flag,
                read_by: ReadBy::$switch_read_by,
                help: concat!($($switch_help),+),
                field: |f| f.$switch,
            },
        )*];
    };
}

/// The value of one setting: parsed when given, else its default.
macro_rules! setting_value {
    ($lookup:ident, $var:literal, $parse:expr, default($default:expr)) => {
        match given($lookup, $var) {
            None => $default,
            Some(raw) => ($parse)($var, raw.as_str())?,
        }
    };
    ($lookup:ident, $var:literal, $parse:expr, empty) => {
        match given($lookup, $var) {
            None => Default::default(),
            Some(raw) => ($parse)($var, raw.as_str())?,
        }
    };
    ($lookup:ident, $var:literal, $parse:expr, unset $(($text:expr))?) => {
        match given($lookup, $var) {
            None => None,
            Some(raw) => Some(($parse)($var, raw.as_str())?),
        }
    };
    ($lookup:ident, $var:literal, $parse:expr, verbatim) => {
        match $lookup($var).filter(|v| !v.is_empty()) {
            None => None,
            Some(raw) => Some(($parse)($var, raw.as_str())?),
        }
    };
}

/// What `--help` says of a setting's default, after its variable.
macro_rules! setting_shown {
    ($ty:ty, default($default:expr)) => {
        || {
            let value: $ty = $default;
            Some(format!("default {value}"))
        }
    };
    ($ty:ty, unset($text:expr)) => {
        || Some(String::from($text))
    };
    ($ty:ty, $kind:ident) => {
        || None
    };
}

/// A variable's value unless it is unset or blank.
fn given(lookup: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var).filter(|v| !v.trim().is_empty())
}

settings! {
    settings {
        /// postgreSQL host or unix-socket directory
        db_host: Option<String>, "DB_HOST", "--db-host", Both,
            unset("default localhost"), text;
        /// postgreSQL port
        db_port: u16, "DB_PORT", "--db-port", Both,
            default(5432), at_least(1);
        /// admin database the gateway connects to for maintenance
        db_name: String, "DB_NAME", "--db-name", Both,
            default("postgres".into()), text;
        /// postgreSQL user
        db_user: String, "DB_USER", "--db-user", Both,
            default("postgres".into()), text;
        /// postgreSQL password; prefer the env variable, flags show up in `ps`
        db_password: Option<String>, "DB_PASSWORD", "--db-password", Both,
            verbatim, text;
        /// postgres://user:pass@host:port/db, used when DB_HOST is not set
        database_url: Option<String>, "DATABASE_URL", "--database-url", Both,
            unset, text;
        /// address the router listens on
        host: IpAddr, "GATEWAY_HOST", "--host", Router,
            default(IpAddr::V4(Ipv4Addr::LOCALHOST)), ip_address;
        /// port the router listens on; 0 picks a free one
        port: u16, "GATEWAY_PORT", "--port", Router,
            default(9000), at_least(0);
        /// connections per database pool
        max_connections_per_pool: usize, "MAX_CONNECTIONS_PER_POOL", "--max-connections-per-pool", Router,
            default(10), at_least(1);
        /// cap on connections across all pools
        max_total_connections: usize, "MAX_TOTAL_CONNECTIONS", "--max-total-connections", Router,
            default(200), at_least(1);
        /// most connections one platform's pools hold together, so another platform always gets one
        max_connections_per_platform: Option<usize>, "MAX_CONNECTIONS_PER_PLATFORM", "--max-connections-per-platform", Router,
            unset("default: half of MAX_TOTAL_CONNECTIONS"), at_least(1);
        /// drop pools (and connections) idle this long
        pool_idle_timeout_secs: u64, "POOL_IDLE_TIMEOUT_SECS", "--pool-idle-timeout-secs", Router,
            default(1800), at_least(1);
        /// expected wait (µs) a /call may queue behind calls already in flight on a shared connection; 0 = share a busy connection only at the pool limit
        call_pipeline_budget_us: u64, "CALL_PIPELINE_BUDGET_US", "--call-pipeline-budget-us", Router,
            default(2000), at_least(0);
        /// how long a request waits for a connection before 503 pool_exhausted
        pool_wait_timeout_ms: u64, "POOL_WAIT_TIMEOUT_MS", "--pool-wait-timeout-ms", Router,
            default(2000), at_least(1);
        /// comma-separated CIDR list of allowed clients; unset = loopback only
        allowed_networks: Option<Vec<IpNetwork>>, "ALLOWED_NETWORKS", "--allowed-networks", Router,
            unset, |_, raw| parse_networks(raw);
        /// log level: error, warn, info, debug or trace
        log_level: LogLevel, "RUST_LOG", "--log-level", Both,
            default(LogLevel::Info), |_, raw| parse_log_level(raw);
        /// directory for the gateway's state
        data_dir: String, "DATA_DIR", "--data-dir", Both,
            default("./data".into()), text;
        /// unix socket the migrator listens on
        migrator_socket: Option<String>, "MIGRATOR_SOCKET", "--migrator-socket", Both,
            unset("default $DATA_DIR/migrator.sock"), text;
        /// largest schema upload, compressed
        archive_max_compressed_bytes: u64, "ARCHIVE_MAX_COMPRESSED_BYTES", "--archive-max-compressed-bytes", Migrator,
            default(16 << 20), at_least(1);
        /// largest schema archive once inflated
        archive_max_uncompressed_bytes: u64, "ARCHIVE_MAX_UNCOMPRESSED_BYTES", "--archive-max-uncompressed-bytes", Migrator,
            default(64 << 20), at_least(1);
        /// most entries in a schema archive
        archive_max_entries: usize, "ARCHIVE_MAX_ENTRIES", "--archive-max-entries", Migrator,
            default(2000), at_least(1);
        /// largest single file in a schema archive
        archive_max_entry_bytes: u64, "ARCHIVE_MAX_ENTRY_BYTES", "--archive-max-entry-bytes", Migrator,
            default(4 << 20), at_least(1);
        /// databases /v2/migrate deploys at the same time
        migrate_concurrency: usize, "MIGRATE_CONCURRENCY", "--migrate-concurrency", Migrator,
            default(1), at_least(1);
        /// days the deployment history (GET /admin/deployments) keeps a record; older ones are removed
        history_retention_days: u32, "HISTORY_RETENTION_DAYS", "--history-retention-days", Migrator,
            default(365), at_least(1);
        /// extensions PostgreSQL does not mark trusted that platforms may still install (comma-separated names; needs a superuser DB_USER); trusted ones need no listing
        extensions_allowed: Vec<String>, "EXTENSIONS_ALLOWED", "--extensions-allowed", Migrator,
            empty, |_, raw| parse_extensions_allowed(raw);
        /// CONNECTION LIMIT of each platform role (PostgreSQL's per-role cap); -1 = none
        platform_connection_limit: i32, "PLATFORM_CONNECTION_LIMIT", "--platform-connection-limit", Migrator,
            default(100), at_least(-1);
        /// how long a deployment waits for a table lock before failing
        deploy_lock_timeout_ms: u64, "DEPLOY_LOCK_TIMEOUT_MS", "--deploy-lock-timeout-ms", Migrator,
            default(5000), at_least(1);
        /// cap on one deployment statement, 0 = none
        deploy_statement_timeout_ms: u64, "DEPLOY_STATEMENT_TIMEOUT_MS", "--deploy-statement-timeout-ms", Migrator,
            default(0), at_least(0);
        /// bearer tokens for /call, per platform: platform:token,... ; once set, a platform without a token is refused unless the router lists it as open; unset = no token needed
        call_tokens: BTreeMap<String, String>, "CALL_TOKENS", "--call-tokens", Both,
            empty, |_, raw| parse_call_tokens(raw);
        /// platforms whose /call needs no token although CALL_TOKENS is set (comma-separated names); without it, once CALL_TOKENS is set a platform it does not list is refused
        call_open_platforms: BTreeSet<String>, "CALL_OPEN_PLATFORMS", "--call-open-platforms", Router,
            empty, parse_platform_list;
        /// platforms whose register, schema upload and listings need no token although tokens are configured (comma-separated names; any client the gateway admits can then replace what they deploy)
        open_deploy_platforms: BTreeSet<String>, "OPEN_DEPLOY_PLATFORMS", "--open-deploy-platforms", Both,
            empty, parse_platform_list;
        /// key the platform tokens of /admin/platform-token are derived from (at least 16 characters; the same on every migrator); unset: a key kept in the control catalog
        platform_token_secret: Option<String>, "PLATFORM_TOKEN_SECRET", "--platform-token-secret", Migrator,
            unset, secret;
        /// bearer token for schema routes and /metrics; unset = no token needed
        admin_token: Option<String>, "ADMIN_TOKEN", "--admin-token", Both,
            unset, secret;
        /// most client connections the router serves at once
        max_client_connections: usize, "MAX_CLIENT_CONNECTIONS", "--max-client-connections", Router,
            default(4096), at_least(1);
        /// a client must send its request headers within this time
        header_read_timeout_secs: u64, "HEADER_READ_TIMEOUT_SECS", "--header-read-timeout-secs", Router,
            default(30), at_least(1);
        /// worker threads of the router
        router_threads: Option<usize>, "ROUTER_THREADS", "--router-threads", Router,
            unset("default: half the CPUs, at least 1"), at_least(1);
        /// the gateway's control catalog database: who owns which database, deployments
        catalog_db: String, "CATALOG_DB", "--catalog-db", Both,
            default(crate::catalog::DEFAULT_CATALOG_DB.into()), catalog_db;
        /// how often routers poll the catalog for changes they may have missed a notification of (ms)
        catalog_poll_ms: u64, "CATALOG_POLL_MS", "--catalog-poll-ms", Router,
            default(2000), at_least(100);
        /// bearer tokens for schema routes, per platform: platform:token,... (several per platform allowed, for rotation)
        deploy_tokens: Vec<DeployToken>, "DEPLOY_TOKENS", "--deploy-tokens", Both,
            empty, |_, raw| parse_deploy_tokens(raw);
        /// longest a /call statement may run before it is cancelled and answered 504 statement_timeout, 0 = no limit
        call_timeout_ms: u64, "CALL_TIMEOUT_MS", "--call-timeout-ms", Router,
            default(30_000), at_least(0);
        /// CALL_TIMEOUT_MS per platform: platform:ms,...
        call_timeouts: BTreeMap<String, Duration>, "CALL_TIMEOUTS", "--call-timeouts", Router,
            empty, |_, raw| parse_call_timeouts(raw);
        /// TLS to PostgreSQL: disable, prefer, require (encrypted, not verified), verify-ca or verify-full (the server's certificate checked against DB_SSLROOTCERT, and its name too)
        db_sslmode: Option<SslMode>, "DB_SSLMODE", "--db-sslmode", Both,
            unset("default disable, or the sslmode of DATABASE_URL"), |var, raw| SslMode::parse(raw, var);
        /// PEM file of the CA(s) that signed PostgreSQL's certificate; needed for verify-ca and verify-full
        db_sslrootcert: Option<PathBuf>, "DB_SSLROOTCERT", "--db-sslrootcert", Both,
            unset("or the sslrootcert of DATABASE_URL"), path;
        /// PEM certificate chain the router serves HTTPS with (with TLS_KEY_FILE); unset = plain HTTP
        tls_cert_file: Option<PathBuf>, "TLS_CERT_FILE", "--tls-cert-file", Router,
            unset, path;
        /// PEM private key of TLS_CERT_FILE
        tls_key_file: Option<PathBuf>, "TLS_KEY_FILE", "--tls-key-file", Router,
            unset, path;
        /// directory the pg_dump backups taken before a drop (DELETE /admin/databases/… or /admin/platforms/… with backup=true) are written to, mode 0600 (custom format: restore with pg_restore)
        backup_dir: Option<PathBuf>, "BACKUP_DIR", "--backup-dir", Migrator,
            unset("default $DATA_DIR/backups"), path;
        /// shipped archives each v1 platform keeps in the control catalog, numbered (GET /platform/{p}/versions lists them, POST /migrate with version=N redeploys one); older ones are removed when the next is kept
        v1_archives_kept: u32, "V1_ARCHIVES_KEPT", "--v1-archives-kept", Migrator,
            default(10), at_least(1);
    }
    switches {
        /// migrator only: print which existing databases the control catalog would record for which platform, change nothing, exit
        check_upgrade, "--check-upgrade", Migrator;
        /// print the version and exit
        version, "--version", Both;
    }
}

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

/// One setting as `--help` and the flags see it (declared in `settings!`).
struct Setting {
    var: &'static str,
    flag: &'static str,
    read_by: ReadBy,
    /// What the doc comment says.
    help: &'static str,
    /// What `--help` adds after the variable's name about its default.
    shown: fn() -> Option<String>,
    /// Its field of [`Flags`].
    field: fn(&Flags) -> &Option<String>,
}

impl Setting {
    /// Its line in `--help`: the text, then the variable and the default.
    fn description(&self) -> String {
        match (self.shown)() {
            Some(default) => format!("{} [{}, {default}]", self.help.trim(), self.var),
            None => format!("{} [{}]", self.help.trim(), self.var),
        }
    }
}

/// A flag without a value.
struct Switch {
    flag: &'static str,
    read_by: ReadBy,
    help: &'static str,
    field: fn(&Flags) -> bool,
}

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

/// Rules `--help` states beside the flags.
const RULES: &str = "Every flag overrides the environment variable shown in brackets; \
unset flags fall back to the environment, then `.env` in the working directory, then the default. \
A token (CALL_TOKENS, DEPLOY_TOKENS, ADMIN_TOKEN) is at least 16 characters; CALL_TOKENS and \
DEPLOY_TOKENS are comma-separated platform:token pairs, and DEPLOY_TOKENS may list several tokens \
per platform (rotation) but never one token for two platforms. Bad configuration prints one line \
and exits 64.";

/// What `--help` and `help` print.
const HELP_TRIGGERS: &[&str] = &["--help", "help"];

/// `--help` of `binary`: its description, the rules, and the flags it
/// reads, laid out as argh lays out help.
pub fn help_of(binary: Binary) -> String {
    let mut usage = format!("Usage: {}", binary.name());
    let mut options = String::new();
    for s in SETTINGS.iter().filter(|s| s.read_by.includes(binary)) {
        usage.push_str(&format!(" [{} <{}>]", s.flag, &s.flag[2..]));
        describe(&mut options, s.flag, &s.description());
    }
    for s in SWITCHES.iter().filter(|s| s.read_by.includes(binary)) {
        usage.push_str(&format!(" [{}]", s.flag));
        describe(&mut options, s.flag, s.help.trim());
    }
    describe(
        &mut options,
        &HELP_TRIGGERS.join(", "),
        "display usage information",
    );
    format!(
        "{usage}\n\n{}\n\n{RULES}\n\nOptions:\n{options}",
        binary.about()
    )
}

/// One option of `--help`: its name, then its description from column 20,
/// wrapped at 80 columns.
fn describe(out: &mut String, name: &str, description: &str) {
    const COLUMN: usize = 20;
    const WIDTH: usize = 80;
    let len = |s: &str| s.chars().count();
    let pad = |line: &mut String| {
        let n = len(line);
        line.extend(std::iter::repeat_n(' ', COLUMN.saturating_sub(n)));
        n < COLUMN
    };
    let mut line = format!("  {name}");
    if !pad(&mut line) {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    let mut words = description.split(' ').peekable();
    while let Some(first) = words.next() {
        pad(&mut line);
        line.push_str(first);
        // the next word, after a space, still fits in WIDTH columns
        while let Some(word) = words.next_if(|w| len(&line) + len(w) < WIDTH) {
            line.push(' ');
            line.push_str(word);
        }
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
}

impl Flags {
    /// Parse the command line of `binary` (`args` without the program's
    /// name) with argh, through the parser argh's derive expands to (its
    /// derive needs each flag written out as a struct field; the flags
    /// here come from the settings table). `--help` is an `Ok` early exit with
    /// that binary's help; an unknown flag, a missing value or a flag given
    /// twice an `Err` one, worded by argh.
    pub fn parse(binary: Binary, args: &[&str]) -> Result<Self, argh::EarlyExit> {
        use argh::{ParseStructOption, ParseStructOptions, ParseStructPositionals};
        static ARG_TO_SLOT: std::sync::OnceLock<Vec<(&'static str, usize)>> =
            std::sync::OnceLock::new();
        let arg_to_slot = ARG_TO_SLOT.get_or_init(|| {
            let flags = SETTINGS.iter().map(|s| s.flag);
            let switches = SWITCHES.iter().map(|s| s.flag);
            flags
                .chain(switches)
                .enumerate()
                .map(|(i, f)| (f, i))
                .collect()
        });
        let mut values: Vec<argh::ParseValueSlotTy<Option<String>, String>> = SETTINGS
            .iter()
            .map(|_| argh::ParseValueSlotTy {
                slot: None,
                parse_func: |_, value| Ok(value.to_owned()),
            })
            .collect();
        let mut switches = vec![false; SWITCHES.len()];
        {
            let values = values.iter_mut().map(|v| ParseStructOption::Value(v));
            let switches = switches.iter_mut().map(|s| ParseStructOption::Flag(s));
            let mut slots: Vec<ParseStructOption<'_>> = values.chain(switches).collect();
            argh::parse_struct_args(
                &[binary.name()],
                args,
                ParseStructOptions {
                    arg_to_slot,
                    slots: &mut slots,
                    help_triggers: HELP_TRIGGERS,
                },
                ParseStructPositionals {
                    positionals: &mut [],
                    last_is_repeating: false,
                    last_is_greedy: false,
                },
                None,
                &|| help_of(binary),
            )?;
        }
        Ok(Self::from_slots(
            values.into_iter().map(|v| v.slot),
            switches.into_iter(),
        ))
    }

    /// The value a flag gives for environment variable `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        SETTINGS
            .iter()
            .find(|s| s.var == name)
            .and_then(|s| (s.field)(self).as_deref())
    }
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
            SWITCHES
                .iter()
                .filter(|s| (s.field)(flags))
                .map(|s| (s.flag, s.read_by)),
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

impl std::fmt::Display for LogLevel {
    /// The name `RUST_LOG` takes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        })
    }
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
    /// Deployment records older than this many days are removed.
    pub history_retention_days: u32,
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
    /// Where backups taken before a drop go (`BACKUP_DIR`, default
    /// `$DATA_DIR/backups`).
    pub backup_dir: PathBuf,
    /// How many shipped archives each v1 platform keeps (`V1_ARCHIVES_KEPT`, at least 1).
    pub v1_archives_kept: u32,
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
fn catalog_db(var: &str, name: &str) -> Result<String, ConfigError> {
    let ok = name.len() <= crate::names::MAX_IDENTIFIER_BYTES
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ConfigError(format!(
            "{var}={name:?} must be a lowercase identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
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
        let ms = parse_num(&format!("CALL_TIMEOUTS ({platform})"), ms, 0u64)?;
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

fn parse_num<T>(name: &str, s: &str, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Range,
{
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

// The parsers `settings!` names: `(variable, value) -> value`, the value
// never blank.

/// A value taken as given.
fn text(_: &str, raw: &str) -> Result<String, ConfigError> {
    Ok(raw.to_owned())
}

/// A file name.
fn path(_: &str, raw: &str) -> Result<PathBuf, ConfigError> {
    Ok(PathBuf::from(raw))
}

/// A whole number of at least `min`.
fn at_least<T>(min: T) -> impl Fn(&str, &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Range + Copy,
{
    move |var, raw| parse_num(var, raw, min)
}

/// A token or key: at least 16 characters.
fn secret(var: &str, raw: &str) -> Result<String, ConfigError> {
    if raw.len() < 16 {
        return Err(ConfigError(format!("{var} is shorter than 16 characters")));
    }
    Ok(raw.to_owned())
}

/// An IP address to listen on (`localhost`: 127.0.0.1).
fn ip_address(var: &str, raw: &str) -> Result<IpAddr, ConfigError> {
    if raw == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    raw.trim().parse().map_err(|_| {
        ConfigError(format!(
            "{var}={raw:?} is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)"
        ))
    })
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
    /// Build the configuration from a lookup of environment-variable names:
    /// every setting parsed as declared (`settings!`), then put together.
    /// Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let s = Settings::from_lookup(&lookup)?;
        let db_configured = s.database_url.is_some() || s.db_host.is_some();
        let (mut url_sslmode, mut url_root) = (None, None);
        let db = match (s.db_host, s.database_url) {
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
                port: s.db_port,
                name: s.db_name,
                user: s.db_user,
                password: s.db_password,
            },
        };
        let db_tls = {
            let mode = match (s.db_sslmode, url_sslmode) {
                (Some(m), _) => m,
                (None, Some(m)) => SslMode::parse(&m, "the sslmode of DATABASE_URL")?,
                (None, None) => SslMode::Disable,
            };
            let root_cert = s.db_sslrootcert.or(url_root.map(PathBuf::from));
            if mode.verifies() && root_cert.is_none() {
                return Err(ConfigError(
                    "DB_SSLMODE=verify-ca and verify-full need DB_SSLROOTCERT (the PEM file of the CA that signed PostgreSQL's certificate)".into(),
                ));
            }
            DbTls { mode, root_cert }
        };
        let listener_tls = match (s.tls_cert_file, s.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
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
        if let Some(both) = s
            .call_open_platforms
            .iter()
            .find(|p| s.call_tokens.contains_key(*p))
        {
            return Err(ConfigError(format!(
                "platform {both} is in CALL_TOKENS and in CALL_OPEN_PLATFORMS: give it a token or list it as open, not both"
            )));
        }
        let data_dir = PathBuf::from(s.data_dir);
        Ok(Self {
            db,
            db_tls,
            listener_tls,
            db_configured,
            gateway_host: s.host,
            gateway_port: s.port,
            max_connections_per_pool: s.max_connections_per_pool,
            max_total_connections: s.max_total_connections,
            max_connections_per_platform: s
                .max_connections_per_platform
                .unwrap_or((s.max_total_connections / 2).max(1)),
            pool_idle_timeout: Duration::from_secs(s.pool_idle_timeout_secs),
            pool_wait_timeout: Duration::from_millis(s.pool_wait_timeout_ms),
            call_pipeline_budget: Duration::from_micros(s.call_pipeline_budget_us),
            allowed_networks: s.allowed_networks.unwrap_or_else(loopback_networks),
            log_level: s.log_level,
            migrator_socket: s
                .migrator_socket
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("migrator.sock")),
            backup_dir: s.backup_dir.unwrap_or_else(|| data_dir.join("backups")),
            data_dir,
            archive: ArchiveCaps {
                max_compressed_bytes: s.archive_max_compressed_bytes,
                max_uncompressed_bytes: s.archive_max_uncompressed_bytes,
                max_entries: s.archive_max_entries,
                max_entry_bytes: s.archive_max_entry_bytes,
            },
            migrate_concurrency: s.migrate_concurrency,
            history_retention_days: s.history_retention_days,
            extensions_allowed: s.extensions_allowed,
            platform_connection_limit: s.platform_connection_limit,
            deploy_lock_timeout: Duration::from_millis(s.deploy_lock_timeout_ms),
            deploy_statement_timeout: Duration::from_millis(s.deploy_statement_timeout_ms),
            call_timeouts: CallTimeouts {
                default: Duration::from_millis(s.call_timeout_ms),
                platforms: s.call_timeouts,
            },
            call_tokens: s.call_tokens,
            call_open_platforms: s.call_open_platforms,
            open_deploy_platforms: s.open_deploy_platforms,
            platform_token_secret: s.platform_token_secret,
            admin_token: s.admin_token,
            max_client_connections: s.max_client_connections,
            header_read_timeout: Duration::from_secs(s.header_read_timeout_secs),
            router_threads: s.router_threads,
            catalog_db: s.catalog_db,
            catalog_poll: Duration::from_millis(s.catalog_poll_ms),
            deploy_tokens: s.deploy_tokens,
            check_upgrade: false,
            v1_archives_kept: s.v1_archives_kept,
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
        for setting in SETTINGS {
            let flags = Flags::parse(Binary::Router, &[setting.flag, "v"]).unwrap();
            assert_eq!(
                flags.get(setting.var),
                Some("v"),
                "argh does not know {}",
                setting.flag
            );
        }
        for binary in [Binary::Router, Binary::Migrator] {
            let help = match Flags::parse(binary, &["--help"]) {
                Err(exit) if exit.status.is_ok() => exit.output,
                _ => panic!("--help parsed as a run"),
            };
            assert_eq!(help, help_of(binary));
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

    /// `--help` says each setting's variable and default as declared, and
    /// argh refuses what it does not know.
    #[test]
    fn help_shows_the_declared_defaults() {
        let help = help_of(Binary::Router);
        for line in [
            "  --db-port         postgreSQL port [DB_PORT, default 5432]\n",
            "  --host            address the router listens on [GATEWAY_HOST, default\n                    127.0.0.1]\n",
            "  --log-level       log level: error, warn, info, debug or trace [RUST_LOG,\n                    default info]\n",
            "  --migrator-socket unix socket the migrator listens on [MIGRATOR_SOCKET,\n                    default $DATA_DIR/migrator.sock]\n",
            "  --tls-key-file    PEM private key of TLS_CERT_FILE [TLS_KEY_FILE]\n",
            "  --help, help      display usage information\n",
        ] {
            assert!(help.contains(line), "{line}{help}");
        }
        let migrator = help_of(Binary::Migrator);
        assert!(
            migrator.contains(
                "\n                    [ARCHIVE_MAX_COMPRESSED_BYTES, default 16777216]\n"
            ),
            "{migrator}"
        );
        let e = Flags::parse(Binary::Router, &["--nope"]).unwrap_err();
        assert!(e.status.is_err() && e.output.contains("--nope"), "{e:?}");
        let e = Flags::parse(Binary::Router, &["--port"]).unwrap_err();
        assert!(e.status.is_err() && e.output.contains("--port"), "{e:?}");
        let flags = Flags::parse(Binary::Migrator, &["--check-upgrade", "--db-port", "1"]).unwrap();
        assert!(flags.check_upgrade && !flags.version);
        assert_eq!(flags.db_port.as_deref(), Some("1"));
    }

    /// A password is a value even when it is only spaces; any other blank
    /// setting is unset.
    #[test]
    fn only_the_password_keeps_a_blank_value() {
        let c = cfg(&[
            ("DB_PASSWORD", "  "),
            ("DB_PORT", " "),
            ("GATEWAY_PORT", ""),
        ])
        .unwrap();
        assert!(
            matches!(c.db, DbTarget::Fields { ref password, port: 5432, .. } if password.as_deref() == Some("  "))
        );
        assert_eq!(c.gateway_port, 9000);
        let c = cfg(&[("DB_PASSWORD", "")]).unwrap();
        assert!(matches!(c.db, DbTarget::Fields { password: None, .. }));
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

    #[test]
    fn v1_platforms_keep_ten_archives_unless_told_and_at_least_one() {
        assert_eq!(cfg(&[]).unwrap().v1_archives_kept, 10);
        let c = cfg(&[("V1_ARCHIVES_KEPT", "2")]).unwrap();
        assert_eq!(c.v1_archives_kept, 2);
        for bad in ["0", "-1", "two", "1.5"] {
            let e = cfg(&[("V1_ARCHIVES_KEPT", bad)]).unwrap_err().to_string();
            assert!(e.contains("V1_ARCHIVES_KEPT"), "{bad}: {e}");
        }
    }
}
