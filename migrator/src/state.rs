//! What every handler gets: the migrator's shared state (the admin
//! connection settings, the control catalog once open, the tokens, limits),
//! the request as read ([`Req`]), and how a handler answers.

use std::time::Duration;

use hyper::body::Bytes;
use slog::Logger;
use stonescriptdb_shared::auth::{Grant, Tokens};
use stonescriptdb_shared::names;
use stonescriptdb_shared::request::Query;
use stonescriptdb_shared::wire::{PostgresStatus, ProbeResponse, ProbeStatus};

use crate::admin::Admin;
use crate::archive::Limits;
use crate::catalog::{Caller, Catalog};
use crate::error::MigratorError;

/// How long a request waits for the catalog to open.
const CATALOG_WAIT: Duration = Duration::from_secs(5);
/// How long the readiness probe waits for the catalog to answer (the
/// router's `/health` gives the whole probe a second).
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

pub struct State {
    pub metrics: crate::metrics::Metrics,
    pub admin: Admin,
    /// Opened in the background at start (retried while PostgreSQL is not
    /// reachable); until then schema routes answer 503.
    pub catalog: tokio::sync::OnceCell<Catalog>,
    /// Woken once the catalog is open.
    pub catalog_open: tokio::sync::Notify,
    pub catalog_name: String,
    /// Why the catalog could not be opened yet (the last attempt's error).
    pub catalog_error: std::sync::Mutex<Option<String>>,
    /// The readiness probe's own connection to the catalog (outside the
    /// catalog's pool, so busy deployments never make it look down).
    pub probe: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    pub tokens: Tokens,
    /// One lock per template database being built.
    pub template_locks: tokio::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>,
    >,
    pub limits: Limits,
    pub migrate_concurrency: usize,
    /// Extensions not marked trusted that platforms may install
    /// (`EXTENSIONS_ALLOWED`).
    pub extensions_allowed: Vec<String>,
    /// `CONNECTION LIMIT` of platform roles (`PLATFORM_CONNECTION_LIMIT`).
    pub platform_connection_limit: i32,
    /// `PLATFORM_TOKEN_SECRET` (None: the key kept in the catalog).
    pub platform_token_secret: Option<String>,
    /// The key platform tokens are derived from, once read.
    pub token_key: tokio::sync::OnceCell<Vec<u8>>,
    pub log: Logger,
}

impl State {
    /// The state of a migrator started with `config`: the catalog not open
    /// yet (the `opening` module opens it).
    pub fn new(config: &stonescriptdb_shared::config::Config, admin: Admin, log: Logger) -> Self {
        State {
            metrics: crate::metrics::Metrics::default(),
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
            token_key: tokio::sync::OnceCell::new(),
            limits: Limits::from(&config.archive),
            log,
        }
    }

    /// Wait (a few seconds at most) for the catalog to be open: a request
    /// that arrives while the migrator starts is served, not refused.
    pub async fn wait_for_catalog(&self) {
        let wait = async {
            loop {
                let notified = self.catalog_open.notified();
                if self.catalog.initialized() {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(CATALOG_WAIT, wait).await;
    }

    /// The migrator's readiness (`GET /health/ready` on its socket): ready
    /// while the control catalog is open and answers a `SELECT 1`; else 503
    /// with the reason (not open yet, or PostgreSQL stopped answering since).
    pub async fn readiness(&self) -> (u16, ProbeResponse) {
        let not_ready = |postgres: Option<PostgresStatus>, reason: String| {
            (
                503,
                ProbeResponse {
                    status: ProbeStatus::NotReady,
                    postgres,
                    reason: Some(reason),
                },
            )
        };
        if !self.catalog.initialized() {
            let why = self
                .catalog_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "opening the control catalog".into());
            let reason = format!(
                "cannot open the control catalog {}: {why}",
                self.catalog_name
            );
            return not_ready(None, reason);
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.ping_catalog()).await {
            Ok(Ok(())) => (
                200,
                ProbeResponse {
                    status: ProbeStatus::Ready,
                    postgres: Some(PostgresStatus::Connected),
                    reason: None,
                },
            ),
            Ok(Err(why)) => not_ready(
                Some(PostgresStatus::Unreachable),
                format!(
                    "the control catalog {} does not answer: {why}",
                    self.catalog_name
                ),
            ),
            Err(_) => not_ready(
                Some(PostgresStatus::Unreachable),
                format!(
                    "the control catalog {} did not answer within {} ms",
                    self.catalog_name,
                    PROBE_TIMEOUT.as_millis()
                ),
            ),
        }
    }

    /// `SELECT 1` on the probe's connection to the catalog, connecting
    /// (again) when it has none or lost it.
    async fn ping_catalog(&self) -> Result<(), String> {
        let mut probe = self.probe.lock().await;
        if probe.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
            *probe = None;
            let client = self
                .admin
                .connect(Some(&self.catalog_name))
                .await
                .map_err(|e| e.to_wire().1.message)?;
            *probe = Some(client);
        }
        let Some(client) = probe.as_ref() else {
            return Err("no connection".into());
        };
        match client.simple_query("SELECT 1").await {
            Ok(_) => Ok(()),
            Err(e) => {
                *probe = None;
                Err(crate::error::pg_message(&e))
            }
        }
    }

    /// The control catalog, once open.
    pub fn catalog(&self) -> Result<&Catalog, MigratorError> {
        self.catalog.get().ok_or_else(|| {
            MigratorError::DatabaseUnavailable(format!(
                "the control catalog {} is not open yet (is PostgreSQL reachable? see the migrator's log)",
                self.catalog_name
            ))
        })
    }
}

/// A handler's answer: status and JSON body.
pub type Answer = (u16, Vec<u8>);

pub fn json<T: serde::Serialize>(status: u16, body: &T) -> Answer {
    (status, serde_json::to_vec(body).unwrap_or_default())
}

/// Everything a handler gets about its request.
pub struct Req {
    pub body: Bytes,
    pub content_type: String,
    pub query: Query,
    /// Values of the route's `{…}` path segments, in order.
    pub params: Vec<String>,
    pub grant: Grant,
    pub caller: Caller,
    pub stream: bool,
}

impl Req {
    /// A JSON body as `T`, strictly (unknown fields refused, bad types named).
    pub fn json<'a, T: serde::Deserialize<'a>>(&'a self, what: &str) -> Result<T, MigratorError> {
        stonescriptdb_shared::request::parse_json(&self.body, what)
            .map_err(MigratorError::BadRequest)
    }

    /// The `{platform}` path segment, checked against the naming rules
    /// before anything is looked up.
    pub fn path_platform(&self) -> Result<&str, MigratorError> {
        let p = self.params.first().map(String::as_str).unwrap_or("");
        names::validate_platform(p).map_err(crate::error::bad_name)?;
        Ok(p)
    }

    /// A query parameter of this route (the server refused any it does not
    /// define, and empty ones, before the handler runs).
    pub fn query(&mut self, name: &str) -> Option<String> {
        self.query.take(name)
    }
}

/// What a route call resolves to: a JSON answer, or NDJSON lines.
pub enum Reply {
    Full(Answer),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}
