//! `GET /health`: PostgreSQL reachability (503 when down), the migrator's
//! readiness (`degraded` when it is down or not ready: `/call` still
//! works), version and pool figures; `GET /health/ready`: PostgreSQL
//! reachability alone, for orchestrators (`/health/live` needs no check:
//! the process answers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stonescriptdb_shared::wire::{
    HealthResponse, HealthStatus, MigratorStatus, PostgresStatus, ProbeResponse, ProbeStatus,
};
use stonescriptdb_shared::VERSION;
use stonescriptdb_startup::tls::PgTls;
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::pool::Pools;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The migrator's readiness, on its socket.
const MIGRATOR_READY: &str = stonescriptdb_shared::wire::MIGRATOR_READY_PATH;

fn postgres_status(up: bool) -> PostgresStatus {
    if up {
        PostgresStatus::Connected
    } else {
        PostgresStatus::Unreachable
    }
}

/// Keeps one admin connection open for health checks (outside the pools).
pub struct Health {
    admin: tokio_postgres::Config,
    tls: PgTls,
    client: Mutex<Option<Client>>,
    migrator_socket: PathBuf,
}

impl Health {
    pub fn new(mut admin: tokio_postgres::Config, tls: PgTls, migrator_socket: PathBuf) -> Self {
        admin.connect_timeout(CHECK_TIMEOUT);
        Self {
            admin,
            tls,
            client: Mutex::new(None),
            migrator_socket,
        }
    }

    async fn postgres_version(&self) -> Option<String> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, conn) =
                tokio::time::timeout(CHECK_TIMEOUT, self.admin.connect(self.tls.clone()))
                    .await
                    .ok()?
                    .ok()?;
            tokio::spawn(conn);
            *guard = Some(client);
        }
        let client = guard.as_ref()?;
        match tokio::time::timeout(CHECK_TIMEOUT, client.query_one("SHOW server_version", &[]))
            .await
        {
            // "15.18 (Debian 15.18-0+deb12u1)": the number, as documented
            Ok(Ok(row)) => row
                .try_get::<_, String>(0)
                .ok()
                .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned()),
            _ => {
                *guard = None;
                None
            }
        }
    }

    /// `up`, `not_ready` (it answers but cannot open its control catalog:
    /// schema routes would answer 503) or `down` (nothing answers on its
    /// socket).
    async fn migrator(&self) -> MigratorStatus {
        match crate::forward::get(&self.migrator_socket, MIGRATOR_READY).await {
            Some((200, _)) => MigratorStatus::Up,
            Some(_) => MigratorStatus::NotReady,
            None => MigratorStatus::Down,
        }
    }

    /// Status code and body; `names`: may the caller see database names
    /// (no token configured, or the admin token)?
    pub async fn check(&self, pools: &Arc<Pools>, names: bool) -> (u16, HealthResponse) {
        let (version, migrator) = tokio::join!(self.postgres_version(), self.migrator());
        let up = version.is_some();
        let body = HealthResponse {
            status: match (up, migrator) {
                (false, _) => HealthStatus::Unhealthy,
                (true, MigratorStatus::Up) => HealthStatus::Healthy,
                (true, _) => HealthStatus::Degraded,
            },
            postgres: postgres_status(up),
            postgres_version: version,
            migrator,
            version: VERSION.into(),
            pools: {
                let mut stats = pools.stats();
                if !names {
                    stats.databases.clear();
                }
                stats
            },
        };
        (if up { 200 } else { 503 }, body)
    }

    /// `/health/ready`: can this router serve `/call`?
    pub async fn ready(&self) -> (u16, ProbeResponse) {
        let up = self.postgres_version().await.is_some();
        let body = ProbeResponse {
            status: if up {
                ProbeStatus::Ready
            } else {
                ProbeStatus::NotReady
            },
            postgres: Some(postgres_status(up)),
            reason: None,
        };
        (if up { 200 } else { 503 }, body)
    }
}
