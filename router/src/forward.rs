//! Forwarding of schema routes to `stonescriptdb-migrator` over its Unix
//! socket (HTTP/1.1). Request and response bodies are streamed, never
//! buffered whole; status and headers pass through. When the migrator is not
//! listening the client gets 503 `migrator_unavailable` within a second.

use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use slog::{debug, warn, Logger};
use tokio::net::UnixStream;

use crate::error::RouterError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "upgrade"
    )
}

/// Header carrying the client's address to the migrator (who asked, for
/// the deployment history). The router always sets it itself: a copy the
/// client sent is dropped.
pub const PEER_HEADER: &str = "x-stonescriptdb-peer";

/// Send `req` (from client `peer`) to the migrator and stream its response back.
pub async fn forward(
    socket: &Path,
    mut req: Request<Incoming>,
    peer: std::net::SocketAddr,
    log: &Logger,
) -> Result<Response<Body>, RouterError> {
    let unavailable = |why: String| {
        RouterError::MigratorUnavailable(format!("the migrator is not available: {why}"))
    };
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(unavailable(format!("{}: {e}", socket.display()))),
        Err(_) => {
            return Err(unavailable(format!(
                "{}: connect timed out",
                socket.display()
            )))
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let log_conn = log.clone();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(log_conn, "migrator connection ended"; "error" => %e);
        }
    });
    let headers = req.headers_mut();
    let drop: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for name in drop {
        headers.remove(name);
    }
    let id = request_id(headers);
    headers.insert("x-request-id", id);
    headers.remove(PEER_HEADER);
    let peer = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
    if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
        headers.insert(PEER_HEADER, v);
    }
    headers.insert(HOST, HeaderValue::from_static("migrator"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    let resp = sender.send_request(req).await.map_err(|e| {
        warn!(log, "migrator request failed"; "error" => %e);
        unavailable(format!("lost the connection to the migrator: {e}"))
    })?;
    let (mut parts, body) = resp.into_parts();
    let drop: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|n| hop_by_hop(n))
        .cloned()
        .collect();
    for name in drop {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, body.map_frame(|f| f).boxed()))
}

/// GET `path` from the migrator: its status and body text (`None` when it
/// does not answer within a second).
pub async fn get(socket: &Path, path: &str) -> Option<(u16, String)> {
    let fetch = async {
        let stream = UnixStream::connect(socket).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(HOST, "migrator")
            .body(http_body_util::Empty::<Bytes>::new())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8(body.to_vec()).ok()?))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, fetch)
        .await
        .ok()
        .flatten()
}

/// A request id for the migrator's logs: the client's `x-request-id` if it
/// sent a sane one, else a new one.
fn request_id(headers: &hyper::HeaderMap) -> HeaderValue {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(v) = headers.get("x-request-id") {
        if v.len() <= 128
            && v.to_str()
                .is_ok_and(|s| s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return v.clone();
        }
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("{:x}-{n:x}", std::process::id());
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Response body: a full JSON body, or the migrator's body streamed through.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// Bytes helper so the server can box a full body in the same type.
pub fn full(bytes: Vec<u8>) -> Body {
    http_body_util::Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed()
}
