//! What every handler gets: the migrator's shared state (the admin
//! connection settings, the control catalog once open, the tokens, limits),
//! the request as read ([`Req`]), and how a handler answers.

use std::collections::VecDeque;
use std::sync::Arc;
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
use crate::schema::Parsed;

/// How long a request waits for the catalog to open.
const CATALOG_WAIT: Duration = Duration::from_secs(5);
/// Most stored schema versions kept parsed ([`Kept`]).
const KEPT_VERSIONS: usize = 16;
/// Most SQL text the kept versions may hold together (a version larger than
/// this is parsed per request instead).
const KEPT_BYTES: usize = 64 * 1024 * 1024;

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
    /// `HISTORY_RETENTION_DAYS`.
    pub history_retention_days: u32,
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
    /// Stored v2 schema versions, parsed once and kept by the checksum the
    /// catalog records for each (at most 16 versions and 64 MiB of SQL text,
    /// least recently used out).
    pub parsed_versions: Kept<Arc<Parsed>>,
    pub migrate_concurrency: usize,
    /// Set once the migrator is stopping: runs over many databases start no
    /// further database (the `fleet` runner).
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Runs over many databases in progress (the migrator waits for them
    /// before it exits, even when their client went away).
    pub fleet_runs: tokio::sync::watch::Sender<usize>,
    /// Extensions not marked trusted that platforms may install
    /// (`EXTENSIONS_ALLOWED`).
    pub extensions_allowed: Vec<String>,
    /// `CONNECTION LIMIT` of platform roles (`PLATFORM_CONNECTION_LIMIT`).
    pub platform_connection_limit: i32,
    /// `PLATFORM_TOKEN_SECRET` (None: the key kept in the catalog).
    pub platform_token_secret: Option<String>,
    /// The key platform tokens are derived from, once read.
    pub token_key: tokio::sync::OnceCell<Vec<u8>>,
    /// Where backups before a drop go (`BACKUP_DIR`) and how pg_dump connects.
    pub backups: crate::backup::Backups,
    /// Shipped archives each v1 platform keeps (`V1_ARCHIVES_KEPT`).
    pub v1_archives_kept: u32,
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
            history_retention_days: config.history_retention_days,
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
            parsed_versions: Kept::new(KEPT_VERSIONS, KEPT_BYTES),
            stopping: tokio::sync::watch::Sender::new(false),
            fleet_runs: tokio::sync::watch::Sender::new(0),
            migrate_concurrency: config.migrate_concurrency,
            extensions_allowed: config.extensions_allowed.clone(),
            platform_connection_limit: config.platform_connection_limit,
            platform_token_secret: config.platform_token_secret.clone(),
            token_key: tokio::sync::OnceCell::new(),
            backups: crate::backup::Backups::new(config),
            limits: Limits::from(&config.archive),
            v1_archives_kept: config.v1_archives_kept,
            log,
        }
    }

    /// The migrator is stopping: no run over many databases starts another
    /// database.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
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

/// A small cache of values by key (the checksum of what they were read
/// from), bounded by count and by total weight: the least recently used go
/// first, and a value heavier than the whole budget is not kept.
pub struct Kept<T> {
    max_entries: usize,
    max_weight: usize,
    /// Least recently used first: (key, weight, value).
    entries: std::sync::Mutex<VecDeque<(String, usize, T)>>,
}

impl<T: Clone> Kept<T> {
    pub fn new(max_entries: usize, max_weight: usize) -> Self {
        Kept {
            max_entries,
            max_weight,
            entries: std::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// The value kept under `key` (now the most recently used).
    pub fn get(&self, key: &str) -> Option<T> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let i = entries.iter().position(|(k, ..)| k == key)?;
        let entry = entries.remove(i)?;
        let value = entry.2.clone();
        entries.push_back(entry);
        Some(value)
    }

    /// Keep `value` under `key`, making room as the bounds require.
    pub fn keep(&self, key: &str, weight: usize, value: T) {
        if weight > self.max_weight || self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(k, ..)| k != key);
        entries.push_back((key.to_owned(), weight, value));
        let mut total: usize = entries.iter().map(|(_, w, _)| w).sum();
        while entries.len() > self.max_entries || total > self.max_weight {
            match entries.pop_front() {
                Some((_, w, _)) => total -= w,
                None => break,
            }
        }
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

    /// A boolean query parameter: `true`, `false`, `1` or `0` in any case;
    /// absent is false.
    pub fn query_flag(&mut self, name: &str) -> Result<bool, MigratorError> {
        match self.query.take(name) {
            None => Ok(false),
            Some(v) => stonescriptdb_shared::request::form_flag(&v).ok_or_else(|| {
                MigratorError::BadRequest(format!(
                    "query parameter {name} must be true, false, 1 or 0 (any case), got {v:?}"
                ))
            }),
        }
    }
}

/// What a route call resolves to: a JSON answer, or NDJSON lines.
pub enum Reply {
    Full(Answer),
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
    /// 200 with a body of this content type (an export's gzip tar).
    Bytes(&'static str, Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::Kept;

    fn keys(k: &Kept<u32>) -> Vec<String> {
        k.entries
            .lock()
            .unwrap()
            .iter()
            .map(|(k, ..)| k.clone())
            .collect()
    }

    /// The cache stays within its count and its weight, the least recently
    /// used going first; what is over the whole budget is never kept.
    #[test]
    fn kept_values_stay_within_their_bounds() {
        let k = Kept::new(3, 100);
        k.keep("a", 10, 1);
        k.keep("b", 10, 2);
        k.keep("c", 10, 3);
        assert_eq!(k.get("a"), Some(1)); // a is now the most recent
        k.keep("d", 10, 4);
        assert_eq!(keys(&k), ["c", "a", "d"]);
        assert_eq!(k.get("b"), None);
        // 85 more: past the weight with c or a still kept
        k.keep("e", 85, 5);
        assert_eq!(keys(&k), ["d", "e"]);
        k.keep("huge", 101, 6);
        assert_eq!(k.get("huge"), None);
        assert_eq!(keys(&k), ["d", "e"]);
        // the same key again replaces the value
        k.keep("d", 10, 7);
        assert_eq!(k.get("d"), Some(7));
        assert_eq!(keys(&k), ["e", "d"]);
    }
}
