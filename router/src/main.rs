//! `stonescriptdb-router`: parses flags and configuration, then runs
//! [`server::run`] until SIGTERM or SIGINT.
#![forbid(unsafe_code)]

mod acl;
mod auth;
mod average;
mod call;
mod catalog;
mod control;
mod error;
mod forward;
#[cfg(test)]
mod fuzz;
mod health;
mod histogram;
mod metrics;
mod pool;
mod server;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use slog::info;
use stonescriptdb_shared::config::Config;
use stonescriptdb_startup as startup;

const BINARY: stonescriptdb_shared::config::Binary = stonescriptdb_shared::config::Binary::Router;

fn main() -> ExitCode {
    startup::main(
        BINARY,
        |config, cpus| Some(config.router_threads_or_default(cpus)),
        serve,
    )
}

async fn serve(config: Config, base: tokio_postgres::Config, tls: startup::tls::PgTls) -> ExitCode {
    let log = startup::logger(config.log_level, "router");
    let https = match &config.listener_tls {
        None => None,
        Some((cert, key)) => match startup::tls::acceptor(cert, key) {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("{}: {e}", BINARY.name());
                return ExitCode::from(stonescriptdb_shared::config::EXIT_USAGE as u8);
            }
        },
    };
    let scheme = if https.is_some() { "https" } else { "http" };
    let addr = std::net::SocketAddr::new(config.gateway_host, config.gateway_port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: cannot listen on {addr}: {e}", BINARY.name());
            return ExitCode::FAILURE;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let pools = pool::Pools::new(
        base.clone(),
        tls.clone(),
        pool::PoolSettings {
            per_pool: config.max_connections_per_pool,
            total: config.max_total_connections,
            per_platform: config.max_connections_per_platform,
            wait_timeout: config.pool_wait_timeout,
            idle_timeout: config.pool_idle_timeout,
            connect_timeout: Duration::from_secs(5),
            pipeline_budget: config.call_pipeline_budget,
            call_timeouts: config.call_timeouts.clone(),
        },
        log.clone(),
    );
    let control = control::Control::new(
        base.clone(),
        tls.clone(),
        &config.catalog_db,
        config.catalog_poll,
        &pools,
        log.clone(),
    );
    control.spawn();
    let state = Arc::new(server::State {
        header_read_timeout: config.header_read_timeout,
        tokens: stonescriptdb_shared::auth::Tokens {
            call: config.call_tokens.clone(),
            call_open: config.call_open_platforms.clone(),
            open_deploy: config.open_deploy_platforms.clone(),
            deploy: config.deploy_tokens.clone(),
            admin: config.admin_token.clone(),
        },
        control,
        connections: Arc::new(tokio::sync::Semaphore::new(config.max_client_connections)),
        metrics: metrics::Metrics::default(),
        pools,
        migrator_socket: config.migrator_socket.clone(),
        health: health::Health::new(base, tls, config.migrator_socket.clone()),
        acl: acl::Acl::new(config.allowed_networks.clone()),
        tls: https,
        log: log.clone(),
    });
    let worker_threads = tokio::runtime::Handle::current().metrics().num_workers();
    info!(log, "listening"; "addr" => %local, "worker_threads" => worker_threads,
          "max_total_connections" => config.max_total_connections,
          "max_connections_per_pool" => config.max_connections_per_pool);
    // Machine-readable start line (tests and scripts read the port from it).
    println!("stonescriptdb-router listening on {scheme}://{local}");
    let _ = std::io::stdout().flush();
    server::run(listener, state, startup::shutdown_signal()).await;
    ExitCode::SUCCESS
}
