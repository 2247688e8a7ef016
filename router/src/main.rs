//! `stonescriptdb-router`: parses flags and configuration, then runs
//! [`server::run`] until SIGTERM or SIGINT.
#![forbid(unsafe_code)]

mod acl;
mod call;
mod catalog;
mod error;
mod health;
mod log;
mod pg;
mod pool;
mod server;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use argh::FromArgs;
use slog::info;
use stonescriptdb_shared::config::{Config, ConfigError, Flags, EXIT_USAGE};

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("stonescriptdb-router: {msg}");
    ExitCode::from(EXIT_USAGE as u8)
}

/// Variables from `.env` in the working directory (absent file = none).
fn dotenv() -> Result<HashMap<String, String>, ConfigError> {
    match dotenvy::from_path_iter(".env") {
        Ok(iter) => iter
            .collect::<Result<HashMap<_, _>, _>>()
            .map_err(|e| ConfigError(format!(".env: {e}"))),
        Err(e) if e.not_found() => Ok(HashMap::new()),
        Err(e) => Err(ConfigError(format!(".env: {e}"))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let cmd = args
        .first()
        .map(String::as_str)
        .unwrap_or("stonescriptdb-router");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let flags = match Flags::from_args(&[cmd], &rest) {
        Ok(f) => f,
        Err(exit) if exit.status.is_ok() => {
            println!("{}", exit.output);
            return ExitCode::SUCCESS;
        }
        Err(exit) => return usage_error(exit.output.trim()),
    };
    if flags.version {
        println!("stonescriptdb-router {}", stonescriptdb_shared::VERSION);
        return ExitCode::SUCCESS;
    }
    let dotenv = match dotenv() {
        Ok(d) => d,
        Err(e) => return usage_error(e),
    };
    let config = match Config::from_flags_and_env(&flags, |k| {
        std::env::var(k).ok().or_else(|| dotenv.get(k).cloned())
    }) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let base = match pg::base_config(&config.db) {
        Ok(b) => b,
        Err(e) => return usage_error(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stonescriptdb-router: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, base))
}

async fn serve(config: Config, base: tokio_postgres::Config) -> ExitCode {
    let log = log::logger(config.log_level);
    let addr = std::net::SocketAddr::new(config.gateway_host, config.gateway_port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stonescriptdb-router: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let pools = pool::Pools::new(
        base.clone(),
        pool::PoolSettings {
            per_pool: config.max_connections_per_pool,
            total: config.max_total_connections,
            wait_timeout: config.pool_wait_timeout,
            idle_timeout: config.pool_idle_timeout,
            connect_timeout: Duration::from_secs(5),
        },
        log.clone(),
    );
    let state = Arc::new(server::State {
        pools,
        health: health::Health::new(base, config.migrator_socket.clone()),
        acl: acl::Acl::new(config.allowed_networks.clone()),
        log: log.clone(),
    });
    info!(log, "listening"; "addr" => %local, "max_total_connections" => config.max_total_connections,
          "max_connections_per_pool" => config.max_connections_per_pool);
    // Machine-readable start line (tests and scripts read the port from it).
    println!("stonescriptdb-router listening on http://{local}");
    let _ = std::io::stdout().flush();
    server::run(listener, state, shutdown_signal()).await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
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
