//! Start-up shared by both binaries: command-line flags, `.env`, the process
//! environment and the admin connection settings, parsed once into typed
//! values (by `stonescriptdb_shared::config`, which stays pure), the async
//! runtime, the slog logger they both use, and the shutdown signals. The I/O
//! of start-up lives here so that `stonescriptdb-shared` does none.
#![forbid(unsafe_code)]

pub mod tls;

use std::collections::HashMap;
use std::process::ExitCode;

use slog::{o, Drain, Level, LevelFilter, Logger};

use stonescriptdb_shared::config::{
    self, Binary, Config, ConfigError, DbTarget, Flags, LogLevel, EXIT_USAGE,
};

/// What `main` should do after start-up parsing.
pub enum Startup {
    /// The configuration, the admin connection settings derived from it and
    /// the TLS connector of every PostgreSQL connection.
    Run(Box<Config>, Box<tokio_postgres::Config>, tls::PgTls),
    /// `--help`, `--version` (exit 0) or bad configuration (exit 64; the one
    /// line was already printed to stderr).
    Exit(ExitCode),
}

fn usage_error(binary: &str, msg: impl std::fmt::Display) -> Startup {
    eprintln!("{binary}: {msg}");
    Startup::Exit(ExitCode::from(EXIT_USAGE as u8))
}

/// Variables from `.env` in the working directory (absent file = none).
/// Its syntax must read the same to systemd's `EnvironmentFile=`.
fn dotenv() -> Result<HashMap<String, String>, ConfigError> {
    let text = match std::fs::read_to_string(".env") {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(ConfigError(format!(".env: {e}"))),
    };
    config::check_dotenv_syntax(&text)?;
    // the text just read, not the file again
    dotenvy::from_read_iter(text.as_bytes())
        .collect::<Result<HashMap<_, _>, _>>()
        .map_err(|e| ConfigError(format!(".env: {e}")))
}

/// Print to stdout; a closed pipe (`--help | head`) is not an error.
fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Parse flags, `.env` and the environment for `which`.
pub fn load(which: Binary) -> Startup {
    let binary = which.name();
    let args: Vec<String> = std::env::args().collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let flags = match Flags::parse(which, &rest) {
        Ok(f) => f,
        Err(exit) if exit.status.is_ok() => {
            print(&exit.output);
            return Startup::Exit(ExitCode::SUCCESS);
        }
        Err(exit) => return usage_error(binary, exit.output.trim()),
    };
    if let Some(line) = config::foreign_flag(which, &flags) {
        return usage_error(binary, line);
    }
    if flags.version {
        print(&format!("{binary} {}", stonescriptdb_shared::VERSION));
        return Startup::Exit(ExitCode::SUCCESS);
    }
    let dotenv = match dotenv() {
        Ok(d) => d,
        Err(e) => return usage_error(binary, e),
    };
    let env_keys: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    let mut dotenv_keys: Vec<&str> = dotenv.keys().map(String::as_str).collect();
    dotenv_keys.sort();
    for warning in config::unknown_variables(dotenv_keys, env_keys.iter().map(String::as_str)) {
        eprintln!("{binary}: warning: {warning}");
    }
    match Config::from_flags_and_env(&flags, |k| {
        std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
    }) {
        Ok(c) => match pg_config(&c.db, binary).and_then(|mut pg| {
            tls::apply_sslmode(&mut pg, c.db_tls.mode);
            Ok((pg, tls::PgTls::new(&c.db_tls)?))
        }) {
            Ok((pg, tls)) => Startup::Run(Box::new(c), Box::new(pg), tls),
            Err(e) => usage_error(binary, e),
        },
        Err(e) => usage_error(binary, e),
    }
}

/// The whole `main` of a binary: parse start-up settings (exit 0 for
/// `--help`/`--version`, 64 for bad configuration), then run `serve` on a
/// multi-threaded runtime with `threads(&config, cpus)` worker threads
/// (tokio's default, one per CPU, where it gives `None`) and return its exit
/// code.
pub fn main<F, Fut>(
    which: Binary,
    threads: fn(&Config, usize) -> Option<usize>,
    serve: F,
) -> ExitCode
where
    F: FnOnce(Config, tokio_postgres::Config, tls::PgTls) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let binary = which.name();
    let (config, pg, tls) = match load(which) {
        Startup::Run(c, pg, tls) => (c, pg, tls),
        Startup::Exit(code) => return code,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(n) = threads(&config, cpus) {
        builder.worker_threads(n);
    }
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(*config, *pg, tls)),
        Err(e) => {
            eprintln!("{binary}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The admin connection as a `tokio_postgres::Config`, with a fixed
/// `search_path` (`public`) and `application_name`.
pub fn pg_config(
    target: &DbTarget,
    application_name: &str,
) -> Result<tokio_postgres::Config, ConfigError> {
    let mut cfg = match target {
        DbTarget::Url(url) => url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?,
        DbTarget::Fields {
            host,
            port,
            name,
            user,
            password,
        } => {
            let mut c = tokio_postgres::Config::new();
            c.host(host).port(*port).dbname(name).user(user);
            if let Some(p) = password {
                c.password(p);
            }
            c
        }
    };
    if cfg.get_hosts().is_empty() {
        cfg.host("localhost");
    }
    if cfg.get_user().is_none() {
        cfg.user("postgres");
    }
    if cfg.get_dbname().is_none() {
        cfg.dbname("postgres");
    }
    cfg.application_name(application_name);
    cfg.options("-c search_path=public");
    Ok(cfg)
}

/// slog logger to stderr, filtered at `level`, tagged with the process name.
pub fn logger(level: LogLevel, process: &'static str) -> Logger {
    let level = match level {
        LogLevel::Error => Level::Error,
        LogLevel::Warn => Level::Warning,
        LogLevel::Info => Level::Info,
        LogLevel::Debug => Level::Debug,
        LogLevel::Trace => Level::Trace,
    };
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let drain = LevelFilter::new(drain, level).fuse();
    Logger::root(drain, o!("process" => process))
}

/// Resolves on SIGTERM or SIGINT (graceful shutdown of either binary).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
