//! `GET /health`: PostgreSQL reachability (503 when down), the migrator's
//! socket (`degraded` when down: `/call` still works), version and pool
//! figures; `GET /health/ready`: PostgreSQL reachability alone, for
//! orchestrators (`/health/live` needs no check: the process answers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stonescriptdb_shared::wire::{HealthResponse, ProbeResponse};
use stonescriptdb_shared::VERSION;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use crate::pool::Pools;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps one admin connection open for health checks (outside the pools).
pub struct Health {
    admin: tokio_postgres::Config,
    client: Mutex<Option<Client>>,
    migrator_socket: PathBuf,
}

impl Health {
    pub fn new(mut admin: tokio_postgres::Config, migrator_socket: PathBuf) -> Self {
        admin.connect_timeout(CHECK_TIMEOUT);
        Self {
            admin,
            client: Mutex::new(None),
            migrator_socket,
        }
    }

    async fn postgres_version(&self) -> Option<String> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, conn) = tokio::time::timeout(CHECK_TIMEOUT, self.admin.connect(NoTls))
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

    async fn migrator_up(&self) -> bool {
        matches!(
            tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::UnixStream::connect(&self.migrator_socket)
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// Status code and body; `names`: may the caller see database names
    /// (no token configured, or the admin token)?
    pub async fn check(&self, pools: &Arc<Pools>, names: bool) -> (u16, HealthResponse) {
        let (version, migrator_up) = tokio::join!(self.postgres_version(), self.migrator_up());
        let up = version.is_some();
        let body = HealthResponse {
            status: match (up, migrator_up) {
                (false, _) => "unhealthy",
                (true, false) => "degraded",
                (true, true) => "healthy",
            }
            .into(),
            postgres: if up { "connected" } else { "unreachable" }.into(),
            postgres_version: version,
            migrator: if migrator_up { "up" } else { "down" }.into(),
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
            status: if up { "ready" } else { "not_ready" }.into(),
            postgres: Some(if up { "connected" } else { "unreachable" }.into()),
        };
        (if up { 200 } else { 503 }, body)
    }
}
