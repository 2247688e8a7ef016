//! The migrator's HTTP server on its Unix socket: accept loop, routing to
//! [`crate::handlers`], graceful shutdown (stop accepting, finish running
//! deployments).

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use slog::{info, warn, Logger};
use tokio::net::UnixListener;

use crate::admin::Admin;
use crate::archive::Limits;
use crate::error::MigratorError;
use crate::handlers::{self, Answer};
use crate::store::Store;

/// Longest a deployment may still run after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Body limit for JSON routes.
const JSON_BODY_LIMIT: usize = 64 * 1024;

pub struct State {
    pub metrics: crate::metrics::Metrics,
    pub admin: Admin,
    pub store: Store,
    pub registry: crate::registry::Registry,
    pub roles: crate::roles::Roles,
    /// One lock per template database being built.
    pub template_locks: tokio::sync::Mutex<
        std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>,
    >,
    pub limits: Limits,
    pub migrate_concurrency: usize,
    pub log: Logger,
}

type Body = BoxBody<Bytes, Infallible>;

/// A response body fed line by line from a channel (NDJSON progress).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

pub async fn run(
    listener: UnixListener,
    state: std::sync::Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        warn!(state.log, "accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let st = state.clone();
                let svc = service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(handle(&st, req).await) }
                });
                let conn = graceful.watch(http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    info!(state.log, "shutting down: finishing running deployments");
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => warn!(state.log, "deployments did not finish in time"),
    }
    info!(state.log, "stopped");
}

fn respond((status, body): Answer) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error(e: &MigratorError) -> Answer {
    let (status, body) = e.to_wire();
    (status, serde_json::to_vec(&body).unwrap_or_default())
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, MigratorError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(
            MigratorError::PayloadTooLarge(format!("request body is larger than {limit} bytes")),
        ),
        Err(e) => Err(MigratorError::BadRequest(format!(
            "could not read request body: {e}"
        ))),
    }
}

async fn multipart(
    state: &State,
    req: Request<Incoming>,
) -> Result<std::collections::HashMap<String, crate::multipart::Field>, MigratorError> {
    let ct = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let boundary = crate::multipart::boundary(&ct).ok_or_else(|| {
        MigratorError::UnsupportedMediaType(format!(
            "expected multipart/form-data (fields platform, tenant_id, schema), got {:?}",
            ct
        ))
    })?;
    let limit = state.limits.max_compressed_bytes as usize + 1024 * 1024;
    let body = read_body(req.into_body(), limit).await?;
    crate::multipart::parse(&body, &boundary)
        .map_err(|m| MigratorError::BadRequest(format!("invalid multipart body: {m}")))
}

async fn route(
    state: &std::sync::Arc<State>,
    req: Request<Incoming>,
) -> Result<Answer, MigratorError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, ["platform", "register"]) => {
            let body = read_body(req.into_body(), JSON_BODY_LIMIT).await?;
            crate::v2::platform_register(state, &body).await
        }
        (Method::POST, ["platform", p, "schema"]) => {
            let p = (*p).to_owned();
            let fields = multipart(state, req).await?;
            crate::v2::schema_upload(state, &p, fields).await
        }
        (Method::GET, ["platform", p, "schemas"]) => crate::v2::schemas(state, p).await,
        (Method::GET, ["platform", p, "databases"]) => {
            crate::v2::databases(state, p, req.uri().query()).await
        }
        (Method::GET, ["platforms"]) => crate::v2::platforms(state).await,
        (Method::GET, ["metrics"]) => Ok((200, state.metrics.render().into_bytes())),
        (Method::POST, ["database", "create"]) => {
            let body = read_body(req.into_body(), JSON_BODY_LIMIT).await?;
            crate::v2::database_create(state, &body).await
        }
        _ => route_v1(state, req, &path).await,
    }
}

async fn route_v1(
    state: &State,
    req: Request<Incoming>,
    path: &str,
) -> Result<Answer, MigratorError> {
    match (req.method().clone(), path) {
        (Method::POST, "/register") => {
            let fields = multipart(state, req).await?;
            handlers::register(state, fields).await
        }
        (Method::POST, "/migrate") => {
            let fields = multipart(state, req).await?;
            handlers::migrate(state, fields).await
        }
        (Method::GET, "/admin/databases") => handlers::databases(state, req.uri().query()).await,
        (Method::POST, "/admin/create-tenant") => {
            let body = read_body(req.into_body(), JSON_BODY_LIMIT).await?;
            handlers::create_tenant(state, &body).await
        }
        (
            _,
            "/register"
            | "/migrate"
            | "/admin/databases"
            | "/admin/create-tenant"
            | "/platforms"
            | "/platform/register"
            | "/database/create"
            | "/v2/migrate",
        ) => Err(MigratorError::MethodNotAllowed(format!(
            "{} is not allowed on {path}",
            req.method()
        ))),
        _ => Err(MigratorError::NotFound(format!("no route {path}"))),
    }
}

async fn handle(state: &std::sync::Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method == Method::POST && path == "/v2/migrate" {
        let stream = req
            .headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/x-ndjson"));
        let reply = match read_body(req.into_body(), JSON_BODY_LIMIT).await {
            Ok(body) => crate::v2::v2_migrate(state.clone(), &body, stream).await,
            Err(e) => Err(e),
        };
        return match reply {
            Ok(crate::v2::Reply::Stream(rx)) => {
                let mut resp = Response::new(ChannelBody(rx).boxed());
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-ndjson"),
                );
                resp
            }
            Ok(crate::v2::Reply::Full(answer)) => respond(answer),
            Err(e) => respond(error(&e)),
        };
    }
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let answer = route(state, req).await.unwrap_or_else(|e| error(&e));
    if path == "/metrics" {
        let mut resp = respond(answer);
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return resp;
    }
    info!(state.log, "request"; "method" => %method, "path" => &path, "status" => answer.0,
          "ms" => started.elapsed().as_millis() as u64, "request_id" => &request_id);
    respond(answer)
}
