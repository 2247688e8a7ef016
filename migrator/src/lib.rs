//! The migrator as a library: everything `stonescriptdb-migrator` runs
//! ([`serve`]: all schema work — archives, deployment, the control catalog —
//! served over HTTP/1.1 on the Unix socket `MIGRATOR_SOCKET` only), and the
//! reader the `stonescriptdb` CLI checks a schema folder with, offline
//! ([`offline`]). It opens the control catalog in the background (creating
//! it on first start, importing an older installation's files once,
//! resolving what a stopped migrator left) and runs [`server::run`] until
//! SIGTERM or SIGINT. `--check-upgrade` prints the import report and
//! changes nothing.
#![forbid(unsafe_code)]

mod admin;
mod archive;
mod backup;
mod callable;
mod catalog;
mod deploy;
mod error;
mod exec;
mod export;
mod fleet;
mod form;
#[cfg(test)]
mod fuzz;
mod jobs;
mod lifecycle;
mod metrics;
mod multipart;
pub mod offline;
mod opening;
mod operator;
mod pg_dump;
mod placement;
mod platform_token;
mod provision;
mod rights;
mod roles;
mod schema;
mod seed;
mod server;
mod socket;
mod sql;
mod state;
mod step;
mod tables;
mod templates;
mod upgrade;
mod v1;
mod v2;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use slog::info;
use stonescriptdb_startup as startup;

const BINARY: &str = "stonescriptdb-migrator";
/// Longest the migrator waits, once it stopped serving, for the
/// deployments of runs over many databases to finish.
const FLEET_DRAIN: std::time::Duration = std::time::Duration::from_secs(120);

fn fail(message: String) -> ExitCode {
    eprintln!("{BINARY}: {message}");
    ExitCode::FAILURE
}

/// Run the migrator with `config` until SIGTERM or SIGINT (the binary
/// hands this to `stonescriptdb_startup::main`).
pub async fn serve(
    config: stonescriptdb_shared::config::Config,
    base: tokio_postgres::Config,
    tls: startup::tls::PgTls,
) -> ExitCode {
    let log = startup::logger(config.log_level, "migrator");
    let admin = admin::Admin::new(
        base,
        tls,
        config.deploy_lock_timeout.as_millis(),
        config.deploy_statement_timeout.as_millis(),
    );
    if config.check_upgrade {
        return match upgrade::check(&admin, &config).await {
            Ok(lines) => {
                lines.iter().for_each(|l| println!("{l}"));
                ExitCode::SUCCESS
            }
            Err(e) => fail(e.to_wire().1.message),
        };
    }
    let peers = match socket::Peers::of_this_process() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let (listener, activated) = match socket::listen(&config.migrator_socket) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let state = Arc::new(state::State::new(&config, admin, log.clone()));
    // PostgreSQL is usually up: open the catalog before answering anything;
    // if it is not, keep trying in the background (schema routes answer 503
    // meanwhile, /call through the router does not need the migrator).
    opening::open_or_retry(&state, &config.data_dir).await;
    info!(log, "listening"; "socket" => %config.migrator_socket.display(), "catalog" => &config.catalog_db);
    println!(
        "{BINARY} listening on unix:{}",
        config.migrator_socket.display()
    );
    let _ = std::io::stdout().flush();
    let stopping = state.clone();
    let shutdown = async move {
        startup::shutdown_signal().await;
        stopping.stop();
    };
    server::run(listener, peers, state.clone(), shutdown).await;
    // runs over many databases whose client went away: their running
    // deployments finish (none starts any more)
    let _ = tokio::time::timeout(FLEET_DRAIN, fleet::drained(&state)).await;
    // A socket systemd owns stays; it keeps queueing requests for the next start.
    if !activated {
        let _ = std::fs::remove_file(&config.migrator_socket);
    }
    ExitCode::SUCCESS
}
