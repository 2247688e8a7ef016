//! The HTTP server: accept loop, per-connection allowlist check, routing by
//! the shared route table (404, and 405 with `Allow`, answered here), and
//! graceful shutdown (stop accepting, let in-flight requests finish, close
//! the pools). A request enters in [`handle`]; `/call` goes to
//! [`crate::call`], `/health` to [`crate::health`], every schema route to the
//! migrator ([`crate::forward`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use slog::{debug, info, warn, Logger};
use tokio::net::TcpListener;

use crate::acl::Acl;
use crate::error::RouterError;
use crate::forward::Body;
use crate::health::Health;
use crate::pool::Pools;
use stonescriptdb_shared::routes::{self, RouteId, RouterRoute as R};

/// The OpenAPI 3 description of the whole API (v1 + v2), served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Largest `/call` body accepted.
pub const CALL_BODY_LIMIT: usize = 1024 * 1024;
/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler needs.
pub struct State {
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    pub tokens: stonescriptdb_shared::auth::Tokens,
    /// The control catalog: database ownership, change notifications.
    pub control: Arc<crate::control::Control>,
    /// Caps the client connections served at once (`MAX_CLIENT_CONNECTIONS`).
    pub connections: Arc<tokio::sync::Semaphore>,
    pub metrics: crate::metrics::Metrics,
    pub pools: Arc<Pools>,
    pub migrator_socket: std::path::PathBuf,
    pub health: Health,
    pub acl: Acl,
    /// HTTPS (`TLS_CERT_FILE`, `TLS_KEY_FILE`); `None`: plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub log: Logger,
}

/// Serve until `shutdown` resolves, then drain and close the pools.
pub async fn run(listener: TcpListener, state: Arc<State>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    state.pools.spawn_sweeper();
    loop {
        // At the cap, stop accepting: new clients wait in the listen backlog.
        let slot = tokio::select! {
            slot = state.connections.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // e.g. EMFILE: back off instead of spinning
                        warn!(state.log, "accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let allowed = state.acl.allows(peer.ip());
                if !allowed {
                    info!(state.log, "client not in ALLOWED_NETWORKS"; "peer" => %peer);
                }
                let st = state.clone();
                let svc = service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(handle(&st, allowed, peer, req).await) }
                });
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(state.header_read_timeout);
                let Some(tls) = state.tls.clone() else {
                    let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        let _ = conn.await;
                        drop(slot);
                    });
                    continue;
                };
                // The handshake runs in the connection's own task, within
                // the time a client has to send its headers.
                let watcher = graceful.watcher();
                let (log, handshake_timeout) = (state.log.clone(), state.header_read_timeout);
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = watcher
                                .watch(http.serve_connection(TokioIo::new(stream), svc))
                                .await;
                        }
                        Ok(Err(e)) => {
                            debug!(log, "TLS handshake failed"; "peer" => %peer, "error" => %e)
                        }
                        Err(_) => debug!(log, "TLS handshake timed out"; "peer" => %peer),
                    }
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    info!(state.log, "shutting down: finishing in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            warn!(state.log, "in-flight requests did not finish in time");
        }
    }
    state.pools.close_all();
    info!(state.log, "stopped");
}

type Resp = Response<Body>;

fn json(status: u16, body: Vec<u8>) -> Resp {
    let mut resp = Response::new(crate::forward::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error(e: &RouterError) -> Resp {
    let (status, body) = e.to_wire();
    json(status, serde_json::to_vec(&body).unwrap_or_default())
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, RouterError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(RouterError::PayloadTooLarge(
            format!("request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(RouterError::BadRequest(format!(
            "could not read request body: {e}"
        ))),
    }
}

async fn handle(state: &State, allowed: bool, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // one lookup serves the metrics and the routing
    let spec = routes::find(&path).map(|(r, _)| r);
    let kind = crate::metrics::slot(spec);
    let resp = if !allowed {
        error(&RouterError::Forbidden(format!(
            "client {} is not in ALLOWED_NETWORKS",
            peer.ip().to_canonical()
        )))
    } else {
        route(state, peer, req, &path, spec).await
    };
    state
        .metrics
        .record(kind, resp.status().as_u16(), started.elapsed());
    debug!(state.log, "request";
        "method" => %method, "path" => path, "status" => resp.status().as_u16(),
        "peer" => %peer, "micros" => started.elapsed().as_micros() as u64);
    resp
}

async fn route(
    state: &State,
    peer: SocketAddr,
    req: Request<Incoming>,
    path: &str,
    spec: Option<&routes::Route>,
) -> Resp {
    let Some(spec) = spec else {
        return error(&RouterError::NotFound(format!("no route {path}")));
    };
    if !spec.allows(req.method().as_str()) {
        let mut resp = error(&RouterError::MethodNotAllowed(format!(
            "{} is not allowed on {path}",
            req.method()
        )));
        if let Ok(allow) = HeaderValue::from_str(&spec.allow()) {
            resp.headers_mut().insert(ALLOW, allow);
        }
        return resp;
    }
    let id = match spec.id {
        RouteId::Router(id) => id,
        // Every other route belongs to the migrator.
        RouteId::Migrator(_) => return forward(state, peer, req).await,
    };
    // The routes served here define no query parameter; the migrator
    // checks its own routes' (one table for both: `routes::ROUTES`). A
    // request without a query string (every /call a client sends) costs
    // one comparison.
    if let Some(query) = req.uri().query() {
        if let Err(m) = spec.read_query(Some(query)) {
            return error(&RouterError::BadRequest(m));
        }
    }
    match id {
        R::Call => {
            if let Some(ct) = req.headers().get(CONTENT_TYPE) {
                let json_ct = ct
                    .to_str()
                    .map(|v| {
                        v.trim_start()
                            .to_ascii_lowercase()
                            .starts_with("application/json")
                    })
                    .unwrap_or(false);
                if !json_ct {
                    return error(&RouterError::UnsupportedMediaType(
                        "/call takes a JSON body: send Content-Type: application/json".into(),
                    ));
                }
            }
            let (parts, body) = req.into_parts();
            let body = match read_body(body, CALL_BODY_LIMIT).await {
                Ok(b) => b,
                Err(e) => return error(&e),
            };
            let authorize =
                |platform: &str| crate::auth::check_call(&state.tokens, platform, &parts.headers);
            match crate::call::call(&state.pools, &state.control, &body, authorize).await {
                Ok(out) => json(200, out),
                Err(e) => error(&e),
            }
        }
        R::Health => {
            let names = crate::auth::sees_names(&state.tokens, req.headers());
            let (status, body) = state.health.check(&state.pools, names).await;
            json(status, serde_json::to_vec(&body).unwrap_or_default())
        }
        R::HealthLive => json(200, br#"{"status":"alive"}"#.to_vec()),
        R::HealthReady => {
            let (status, body) = state.health.ready().await;
            json(status, serde_json::to_vec(&body).unwrap_or_default())
        }
        R::Metrics => {
            if let Err(e) = crate::auth::check_admin(&state.tokens, req.headers()) {
                return error(&e);
            }
            let migrator = crate::forward::get(&state.migrator_socket, "/metrics")
                .await
                .and_then(|(status, text)| (status == 200).then_some(text));
            let text = state.metrics.render(&state.pools, migrator.as_deref());
            let mut resp = Response::new(crate::forward::full(text.into_bytes()));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        R::OpenApi => json(200, OPENAPI.as_bytes().to_vec()),
    }
}

/// A schema route: checked for a schema token, then forwarded to the
/// migrator.
async fn forward(state: &State, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    if let Err(e) = crate::auth::check_schema(&state.tokens, req.headers()) {
        return error(&e);
    }
    let changes = req.method() == Method::POST || req.method() == Method::DELETE;
    match crate::forward::forward(&state.migrator_socket, req, peer, &state.log).await {
        Ok(resp) => {
            // The migrator answers once its work is committed and
            // announced: act on the announcement before the client
            // can send its next /call here.
            if changes {
                state.control.sync().await;
            }
            resp
        }
        Err(e) => error(&e),
    }
}

#[cfg(test)]
mod tests {
    use stonescriptdb_shared::routes::ROUTES;

    /// Every route the gateway serves is documented in `docs/openapi.json`
    /// with its methods, and nothing else is.
    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let spec: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let paths = spec["paths"].as_object().unwrap();
        for route in ROUTES {
            let ops = paths
                .get(route.pattern)
                .unwrap_or_else(|| panic!("{} is not documented", route.pattern));
            let mut documented: Vec<String> = ops
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            documented.sort();
            let mut served: Vec<String> = route.methods.iter().map(|m| m.to_string()).collect();
            served.sort();
            assert_eq!(documented, served, "{}", route.pattern);
        }
        assert_eq!(paths.len(), ROUTES.len());
    }
}
