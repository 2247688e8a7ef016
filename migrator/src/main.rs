//! `stonescriptdb-migrator`: all schema work (archives, deployment, registry),
//! served over HTTP/1.1 on the Unix socket `MIGRATOR_SOCKET` only. Parses
//! flags and configuration, binds the socket, then runs [`server::run`] until
//! SIGTERM or SIGINT.
#![forbid(unsafe_code)]

mod admin;
mod archive;
mod deploy;
mod error;
#[cfg(test)]
mod fuzz;
mod handlers;
mod metrics;
mod multipart;
mod registry;
mod roles;
mod schema;
mod server;
mod socket;
mod sql;
mod store;
mod tables;
mod v2;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use slog::info;
use stonescriptdb_shared::startup;

const BINARY: &str = "stonescriptdb-migrator";

fn main() -> ExitCode {
    // The migrator waits on PostgreSQL most of the time: tokio's default.
    startup::main(BINARY, |_, _| None, serve)
}

async fn serve(
    config: stonescriptdb_shared::config::Config,
    base: tokio_postgres::Config,
) -> ExitCode {
    let log = startup::logger(config.log_level, "migrator");
    let (listener, activated) = match socket::from_systemd() {
        Ok(Some(l)) => (l, true),
        Ok(None) => match socket::bind(&config.migrator_socket) {
            Ok(l) => (l, false),
            Err(e) => {
                eprintln!("{BINARY}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("{BINARY}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let state = Arc::new(server::State {
        metrics: metrics::Metrics::default(),
        admin: admin::Admin::new(
            base,
            config.deploy_lock_timeout.as_millis(),
            config.deploy_statement_timeout.as_millis(),
        ),
        store: store::Store::new(config.data_dir.clone()),
        registry: registry::Registry::new(config.data_dir.clone()),
        roles: roles::Roles::new(config.data_dir.clone()),
        template_locks: Default::default(),
        migrate_concurrency: config.migrate_concurrency,
        limits: archive::Limits {
            max_compressed_bytes: config.archive.max_compressed_bytes,
            max_uncompressed_bytes: config.archive.max_uncompressed_bytes,
            max_entries: config.archive.max_entries,
            max_entry_bytes: config.archive.max_entry_bytes,
        },
        log: log.clone(),
    });
    info!(log, "listening"; "socket" => %config.migrator_socket.display());
    println!(
        "{BINARY} listening on unix:{}",
        config.migrator_socket.display()
    );
    let _ = std::io::stdout().flush();
    server::run(listener, state, startup::shutdown_signal()).await;
    // A socket systemd owns stays; it keeps queueing requests for the next start.
    if !activated {
        let _ = std::fs::remove_file(&config.migrator_socket);
    }
    ExitCode::SUCCESS
}
