//! The router's side of the control catalog (docs/OPERATIONS.md, "The control catalog"): one connection to
//! the catalog database (as the admin role, which owns it) that
//!
//! * answers who owns a database and which login role `/call` uses there
//!   (on a pool miss only: the answer lives with the pool);
//! * LISTENs on [`CHANNEL`]: each notification drops what the router cached
//!   about that database (its pool, so its connections, prepared statements
//!   and function catalog) before its next `/call`;
//! * polls the catalog's generations every `CATALOG_POLL_MS` as a backstop:
//!   a database whose generation moved, or whose deployment's migrator died
//!   before it could announce it (its lease is free), is dropped the same way;
//! * reconnects with backoff; after a reconnect every cached database is
//!   dropped, since notifications may have been missed meanwhile.
//!
//! Notifications are handled inline, in the order the connection delivers
//! them, so a query answered on this connection after the migrator's commit
//! (see [`Control::sync`]) is answered after the invalidation happened.

use std::collections::HashSet;
use std::future::poll_fn;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use slog::{debug, info, warn, Logger};
use stonescriptdb_shared::catalog::{self, Notice, CHANNEL, GENERATION_SQL, POLL_SQL, ROUTE_SQL};
use stonescriptdb_startup::tls::PgTls;
use tokio_postgres::{AsyncMessage, Client, Statement};

use crate::error::{pg_message, RouterError};
use crate::pool::{Pools, Route};

struct Conn {
    client: Client,
    route: Statement,
    poll: Statement,
}

pub struct Control {
    config: tokio_postgres::Config,
    tls: PgTls,
    conn: RwLock<Option<Arc<Conn>>>,
    /// Bumped whenever a connection is set up (lookups wait for the first).
    up: tokio::sync::watch::Sender<u64>,
    poll_every: Duration,
    /// Highest generation seen (notification or poll).
    generation: AtomicI64,
    /// Deployments with a dead lease already acted on.
    dead: Mutex<HashSet<i64>>,
    pools: Weak<Pools>,
    log: Logger,
}

const SYNC_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a lookup waits for the catalog connection to come (back) up.
const CONNECT_WAIT: Duration = Duration::from_secs(2);

impl Control {
    /// `admin` connects as the gateway's admin role; its database is
    /// replaced by `catalog_db`.
    pub fn new(
        mut admin: tokio_postgres::Config,
        tls: PgTls,
        catalog_db: &str,
        poll_every: Duration,
        pools: &Arc<Pools>,
        log: Logger,
    ) -> Arc<Self> {
        admin.dbname(catalog_db);
        admin.connect_timeout(Duration::from_secs(5));
        Arc::new(Self {
            config: admin,
            tls,
            conn: RwLock::new(None),
            up: tokio::sync::watch::Sender::new(0),
            poll_every,
            generation: AtomicI64::new(0),
            dead: Mutex::new(HashSet::new()),
            pools: Arc::downgrade(pools),
            log,
        })
    }

    fn current(&self) -> Option<Arc<Conn>> {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Who owns `database` (`None`: nobody the catalog records as ready).
    pub async fn lookup(&self, database: &str) -> Result<Option<Route>, RouterError> {
        let unavailable = |message: String| RouterError::DatabaseUnavailable {
            database: database.to_owned(),
            message,
        };
        let conn = match self.current() {
            Some(c) => c,
            // (re)connecting: wait for it a little rather than fail the call
            None => {
                let mut up = self.up.subscribe();
                let _ = tokio::time::timeout(CONNECT_WAIT, up.changed()).await;
                self.current().ok_or_else(|| {
                    unavailable(
                        "the gateway's control catalog is not reachable (is PostgreSQL up, and has the migrator created it?)"
                            .into(),
                    )
                })?
            }
        };
        let row = conn
            .client
            .query_opt(&conn.route, &[&database])
            .await
            .map_err(|e| unavailable(format!("control catalog: {}", pg_message(&e))))?;
        Ok(row.map(|r| Route {
            platform: r.get(0),
            role: r.get(1),
            password: r.get(2),
        }))
    }

    /// Make sure every notification committed before now has been acted
    /// on: a round trip on the listening connection (PostgreSQL delivers
    /// pending notifications before answering), which also polls. Waits at
    /// most a second; the router forwards a migrator's answer after it, so
    /// the client's next `/call` sees the deployment.
    pub async fn sync(&self) {
        if let Some(conn) = self.current() {
            let _ = tokio::time::timeout(SYNC_TIMEOUT, self.poll_once(&conn)).await;
        }
    }

    fn invalidate(&self, notice: &Notice) {
        let Some(pools) = self.pools.upgrade() else {
            return;
        };
        match notice {
            Notice::All => pools.invalidate_all(),
            Notice::Database { name, generation } => {
                pools.invalidate(name);
                if let Some(g) = generation {
                    self.generation.fetch_max(*g, Ordering::Relaxed);
                }
            }
        }
    }

    async fn poll_once(&self, conn: &Conn) -> Result<(), tokio_postgres::Error> {
        let since = self.generation.load(Ordering::Relaxed);
        let rows = conn.client.query(&conn.poll, &[&since]).await?;
        let mut dead_now = HashSet::new();
        for r in rows {
            let kind: &str = r.get(0);
            let name: String = r.get(1);
            let n: i64 = r.get(2);
            if kind == "g" {
                self.invalidate(&Notice::Database {
                    name,
                    generation: Some(n),
                });
            } else {
                dead_now.insert(n);
                let first = self
                    .dead
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(n);
                if first {
                    debug!(self.log, "a deployment's migrator died before announcing it"; "database" => &name, "deployment" => n);
                    self.invalidate(&Notice::Database {
                        name,
                        generation: None,
                    });
                }
            }
        }
        self.dead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id| dead_now.contains(id));
        Ok(())
    }

    /// Connect, LISTEN and poll until the connection ends; then again,
    /// with backoff, until the router stops.
    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            let mut reported = false;
            loop {
                match me.session().await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        reported = false;
                        warn!(me.log, "lost the control catalog connection; reconnecting");
                    }
                    Err(e) => {
                        if !reported {
                            warn!(me.log, "cannot reach the control catalog; retrying"; "error" => e);
                            reported = true;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                if me.pools.strong_count() == 0 {
                    return;
                }
            }
        });
    }

    /// One connection's life. `Err` when it could not be set up.
    async fn session(self: &Arc<Self>) -> Result<(), String> {
        let (client, mut connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| pg_message(&e))?;
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if n.channel() == CHANNEL {
                            if let Some(notice) = catalog::parse_payload(n.payload()) {
                                me.invalidate(&notice);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            let _ = done_tx.send(());
        });
        let setup = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            let generation: i64 = client.query_one(GENERATION_SQL, &[]).await?.get(0);
            let route = client.prepare(ROUTE_SQL).await?;
            let poll = client.prepare(POLL_SQL).await?;
            Ok::<_, tokio_postgres::Error>((generation, route, poll))
        };
        let (generation, route, poll) = setup.await.map_err(|e| pg_message(&e))?;
        // Whatever happened while we were not listening is unknown.
        self.generation.store(generation, Ordering::Relaxed);
        if let Some(pools) = self.pools.upgrade() {
            pools.invalidate_all();
        }
        let conn = Arc::new(Conn {
            client,
            route,
            poll,
        });
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        self.up.send_modify(|n| *n += 1);
        info!(self.log, "listening for catalog changes"; "generation" => generation);
        let mut tick = tokio::time::interval(self.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if self.poll_once(&conn).await.is_err() {
                        break;
                    }
                }
                _ = &mut done_rx => break,
            }
        }
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}
