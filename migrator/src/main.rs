//! `stonescriptdb-migrator`: all schema work (archives, deployment, the
//! control catalog), served over HTTP/1.1 on the Unix socket
//! `MIGRATOR_SOCKET` only. Parses flags and configuration, binds the
//! socket, opens the control catalog in the background (creating it on
//! first start, importing an older installation's files once, resolving
//! what a stopped migrator left), and runs [`server::run`] until SIGTERM or
//! SIGINT.
//! `--check-upgrade` prints the import report and changes nothing.
#![forbid(unsafe_code)]

mod admin;
mod archive;
mod catalog;
mod deploy;
mod error;
mod form;
#[cfg(test)]
mod fuzz;
mod metrics;
mod multipart;
mod operator;
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
mod table_model;
mod tables;
mod upgrade;
mod v1;
mod v2;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use slog::{error, info, warn};
use stonescriptdb_shared::auth::Tokens;
use stonescriptdb_startup as startup;

const BINARY: &str = "stonescriptdb-migrator";

fn main() -> ExitCode {
    // The migrator waits on PostgreSQL most of the time: tokio's default.
    startup::main(
        stonescriptdb_shared::config::Binary::Migrator,
        |_, _| None,
        serve,
    )
}

async fn serve(
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
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{BINARY}: {}", e.to_wire().1.message);
                ExitCode::FAILURE
            }
        };
    }
    let peers = match socket::Peers::of_this_process() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{BINARY}: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    let state = Arc::new(state::State {
        metrics: metrics::Metrics::default(),
        admin,
        catalog: tokio::sync::OnceCell::new(),
        catalog_open: tokio::sync::Notify::new(),
        catalog_name: config.catalog_db.clone(),
        catalog_error: std::sync::Mutex::new(None),
        probe: tokio::sync::Mutex::new(None),
        tokens: Tokens {
            call: config.call_tokens.clone(),
            // `/call` tokens are the router's to check
            call_open: Default::default(),
            open_deploy: config.open_deploy_platforms.clone(),
            deploy: config.deploy_tokens.clone(),
            admin: config.admin_token.clone(),
        },
        template_locks: Default::default(),
        migrate_concurrency: config.migrate_concurrency,
        extensions_allowed: config.extensions_allowed.clone(),
        platform_connection_limit: config.platform_connection_limit,
        platform_token_secret: config.platform_token_secret.clone(),
        limits: archive::Limits::from(&config.archive),
        log: log.clone(),
    });
    // PostgreSQL is usually up: open the catalog before answering anything;
    // if it is not, keep trying in the background (schema routes answer 503
    // meanwhile, /call through the router does not need the migrator).
    if let Err(e) = try_open_catalog(&state, &config.data_dir).await {
        tokio::spawn(open_catalog(state.clone(), config.data_dir.clone(), e));
    }
    info!(log, "listening"; "socket" => %config.migrator_socket.display(), "catalog" => &config.catalog_db);
    println!(
        "{BINARY} listening on unix:{}",
        config.migrator_socket.display()
    );
    let _ = std::io::stdout().flush();
    server::run(listener, peers, state, startup::shutdown_signal()).await;
    // A socket systemd owns stays; it keeps queueing requests for the next start.
    if !activated {
        let _ = std::fs::remove_file(&config.migrator_socket);
    }
    ExitCode::SUCCESS
}

/// Keep trying [`try_open_catalog`], with backoff, one log line per failed
/// attempt; meanwhile the migrator reports itself not ready.
async fn open_catalog(state: Arc<state::State>, data_dir: std::path::PathBuf, first: String) {
    let mut backoff = Duration::from_millis(200);
    let mut error = first;
    for attempt in 1.. {
        warn!(state.log, "cannot open the control catalog (is PostgreSQL reachable?); retrying";
              "catalog" => &state.catalog_name, "error" => &error, "attempt" => attempt,
              "retry_in_ms" => backoff.as_millis() as u64);
        *state
            .catalog_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(error);
        tokio::time::sleep(backoff).await;
        match try_open_catalog(&state, &data_dir).await {
            Ok(()) => return,
            Err(e) => {
                error = e;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Open the control catalog (creating and upgrading it), import an older
/// installation's files once, and resolve what a stopped migrator left.
async fn try_open_catalog(state: &state::State, data_dir: &std::path::Path) -> Result<(), String> {
    let log = &state.log;
    let opened = async {
        let client = state.admin.connect(None).await?;
        catalog::Catalog::open(
            state.admin.config(),
            state.admin.tls(),
            &client,
            &state.catalog_name,
        )
        .await
    }
    .await;
    let catalog = opened.map_err(|e| e.to_wire().1.message)?;
    match upgrade::import(
        &catalog,
        &state.admin,
        state.platform_connection_limit,
        data_dir,
    )
    .await
    {
        Ok(Some(lines)) => {
            for l in lines {
                info!(log, "upgrade import"; "what" => l);
            }
        }
        Ok(None) => {}
        // Not marked done: the next start tries again.
        Err(e) => {
            error!(log, "importing the older installation failed"; "data_dir" => %data_dir.display(), "error" => ?e)
        }
    }
    match state.admin.connect(None).await {
        Ok(client) => match catalog.resolve_leftovers(&client).await {
            Ok(done) => {
                for what in done {
                    warn!(log, "resolved a stopped migrator's leftover"; "what" => what);
                }
            }
            Err(e) => warn!(log, "could not resolve leftovers"; "error" => ?e),
        },
        Err(e) => warn!(log, "could not resolve leftovers"; "error" => ?e),
    }
    // Databases and roles an older version made get today's rights.
    let settled = match catalog.conn().await {
        Ok(c) => rights::settle_all(&state.admin, &**c, state.platform_connection_limit).await,
        Err(e) => Err(e),
    };
    match settled {
        Ok(lines) => {
            for l in lines {
                info!(log, "rights brought up to date"; "what" => l);
            }
        }
        Err(e) => {
            warn!(log, "could not bring every database's rights up to date; retried at the next start"; "error" => ?e)
        }
    }
    info!(log, "control catalog open"; "catalog" => &state.catalog_name);
    let _ = state.catalog.set(catalog);
    state.catalog_open.notify_waiters();
    Ok(())
}
