//! The migrator's HTTP server on its Unix socket: accept loop, routing by
//! the shared route table, body limits, who is asking (bearer token, the
//! client address the router saw), graceful shutdown (stop accepting, finish
//! running deployments). A request's body is read whole before it is
//! answered, even when the answer is an error, so the router forwarding it
//! never finds the connection closed under an unread upload.

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use slog::{info, warn};
use stonescriptdb_shared::routes::{self, MigratorRoute as M, RouteId};
use tokio::net::UnixListener;

use crate::catalog::Caller;
use crate::error::MigratorError;
use crate::state::{Answer, Reply, Req, State};

/// Longest a deployment may still run after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Body limit for JSON routes.
const JSON_BODY_LIMIT: usize = 64 * 1024;
/// Header the router sets to the client's address (replacing any copy the
/// client sent); recorded with each deployment.
pub const PEER_HEADER: &str = "x-stonescriptdb-peer";

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
    peers: crate::socket::Peers,
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
                if let Err(why) = peers.check(&stream) {
                    warn!(state.log, "refused a connection on the migrator socket"; "why" => why);
                    continue;
                }
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
    if resp.status() != StatusCode::NO_CONTENT {
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    resp
}

fn error(e: &MigratorError) -> Answer {
    let (status, body) = e.to_wire();
    (status, serde_json::to_vec(&body).unwrap_or_default())
}

/// Read the whole body. Beyond `limit` the rest is still read (and thrown
/// away) up to four times the limit, so the sender sees the 413 instead of a
/// broken connection.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, MigratorError> {
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| MigratorError::BadRequest(format!("could not read request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= limit {
                buf.extend_from_slice(&data);
            } else if seen > limit.saturating_mul(4) {
                break;
            }
        }
    }
    if seen > limit {
        return Err(MigratorError::PayloadTooLarge(format!(
            "request body is larger than {limit} bytes"
        )));
    }
    Ok(Bytes::from(buf))
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn handle(state: &std::sync::Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let request_id = header(&req, "x-request-id").unwrap_or("-").to_owned();
    let reply = match dispatch(state, req).await {
        Ok(r) => r,
        Err((e, allow)) => {
            let mut resp = respond(error(&e));
            if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
                resp.headers_mut().insert(ALLOW, allow);
            }
            if matches!(e, MigratorError::BeingCreated(_)) {
                resp.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            info!(state.log, "request"; "method" => &method, "path" => &path, "status" => resp.status().as_u16(),
                  "ms" => started.elapsed().as_millis() as u64, "request_id" => &request_id);
            return resp;
        }
    };
    match reply {
        Reply::Stream(rx) => {
            let mut resp = Response::new(ChannelBody(rx).boxed());
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            resp
        }
        Reply::Bytes(content_type, body) => {
            info!(state.log, "request"; "method" => &method, "path" => &path, "status" => 200,
                  "ms" => started.elapsed().as_millis() as u64, "request_id" => &request_id);
            let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        Reply::Full(answer) if path == "/metrics" => {
            let mut resp = respond(answer);
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        Reply::Full(answer) => {
            info!(state.log, "request"; "method" => &method, "path" => &path, "status" => answer.0,
                  "ms" => started.elapsed().as_millis() as u64, "request_id" => &request_id);
            respond(answer)
        }
    }
}

/// What a platform listed in `OPEN_DEPLOY_PLATFORMS` may do without a token.
const OPEN_ROUTES: [M; 4] = [
    M::PlatformRegister,
    M::SchemaUpload,
    M::Schemas,
    M::PlatformDatabases,
];

/// Route a request; an error carries the `Allow` header value for 405s.
async fn dispatch(
    state: &std::sync::Arc<State>,
    req: Request<Incoming>,
) -> Result<Reply, (MigratorError, Option<String>)> {
    let plain = |e: MigratorError| (e, None);
    let path = req.uri().path().to_owned();
    let method = req.method().as_str().to_owned();
    // The migrator's own /metrics (the router appends it to its own).
    if path == "/metrics" && method == "GET" {
        return Ok(Reply::Full((200, state.metrics.render().into_bytes())));
    }
    // Its readiness (the router's /health asks).
    if path == stonescriptdb_shared::wire::MIGRATOR_READY_PATH && method == "GET" {
        let (status, body) = state.readiness().await;
        return Ok(Reply::Full((
            status,
            serde_json::to_vec(&body).unwrap_or_default(),
        )));
    }
    let (route, params) = match routes::find(&path) {
        Some(found) => found,
        None => return Err(plain(MigratorError::NotFound(format!("no route {path}")))),
    };
    if !route.allows(&method) {
        return Err((
            MigratorError::MethodNotAllowed(format!("{method} is not allowed on {path}")),
            Some(route.allow()),
        ));
    }
    let id = match route.id {
        RouteId::Migrator(id) => id,
        RouteId::Router(_) => {
            return Err(plain(MigratorError::NotFound(format!(
                "{} is served by the router, not the migrator",
                route.pattern
            ))))
        }
    };
    let limit = if matches!(id, M::Register | M::Migrate | M::SchemaUpload) {
        state.limits.max_compressed_bytes as usize + 1024 * 1024
    } else {
        JSON_BODY_LIMIT
    };
    let content_type = header(&req, CONTENT_TYPE.as_str()).unwrap_or("").to_owned();
    let stream = header(&req, hyper::header::ACCEPT.as_str())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    let grant = state
        .tokens
        .schema_grant(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()));
    let caller = |name: &str| Caller {
        token_name: name.to_owned(),
        peer: header(&req, PEER_HEADER).map(str::to_owned),
        request_id: header(&req, "x-request-id").map(str::to_owned),
    };
    let caller = caller(grant.as_ref().map(|g| g.name.as_str()).unwrap_or(""));
    // Every route refuses query parameters it does not define, POST routes
    // too: `/register?dry_run=true` must not deploy for real.
    let query = route
        .read_query(req.uri().query())
        .map_err(|m| plain(MigratorError::BadRequest(m)));
    let params: Vec<String> = params.into_iter().map(str::to_owned).collect();
    let body = read_body(req.into_body(), limit).await.map_err(plain)?;
    let grant = grant.map_err(|d| plain(d.into()))?;
    state.wait_for_catalog().await;
    // a platform token is a claim until checked; no token at all is good
    // only on the routes an open platform may use
    if let Some(claim) = &grant.claim {
        crate::platform_token::check(state, claim)
            .await
            .map_err(plain)?;
    }
    if grant.is_open() && !OPEN_ROUTES.contains(&id) {
        return Err(plain(MigratorError::Unauthorized(
            "this route needs a bearer token (tokenless requests of OPEN_DEPLOY_PLATFORMS may register, upload a schema and list)".into(),
        )));
    }
    let mut r = Req {
        body,
        content_type,
        query: query?,
        params,
        grant,
        caller,
        stream,
    };
    let answer = match id {
        M::Register => crate::v1::register(state, &mut r).await,
        M::Migrate => crate::v1::migrate(state, &mut r).await,
        M::AdminDatabases => crate::v1::databases(state, &mut r).await,
        M::AdminCreateTenant => crate::v1::create_tenant(state, &mut r).await,
        M::AdminAdopt => crate::operator::adopt(state, &mut r).await,
        M::AdminRefresh => crate::operator::refresh(state, &mut r).await,
        M::AdminDeployments => crate::operator::deployments(state, &mut r).await,
        M::Platforms => crate::v2::platforms(state, &mut r).await,
        M::PlatformRegister => crate::v2::platform_register(state, &mut r).await,
        M::SchemaUpload => crate::v2::schema_upload(state, &mut r).await,
        M::Schemas => crate::v2::schemas(state, &mut r).await,
        M::PlatformDatabases => crate::v2::databases(state, &mut r).await,
        M::DatabaseCreate => crate::v2::database_create(state, &mut r).await,
        M::AdminDatabaseCreate => crate::v2::admin_database_create(state, &mut r).await,
        M::AdminPlatformToken => crate::platform_token::issue(state, &mut r).await,
        M::V2Migrate => return crate::v2::v2_migrate(state.clone(), r).await.map_err(plain),
        M::MigrateAll => crate::jobs::start(state, &mut r).await,
        M::MigrateAllJob => crate::jobs::poll(state, &mut r).await,
        M::PlatformFunctions => crate::callable::functions(state, &mut r).await,
        M::DropDatabase => crate::lifecycle::drop_database(state, &mut r).await,
        M::Offboard => crate::lifecycle::offboard(state, &mut r).await,
        M::SchemaVersions => crate::v2::schema_versions(state, &mut r).await,
        M::V1Versions => crate::v1::versions(state, &mut r).await,
        M::Export => return crate::export::export(state, &mut r).await.map_err(plain),
    };
    answer.map(Reply::Full).map_err(plain)
}
