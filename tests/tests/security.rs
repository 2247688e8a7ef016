//! Authentication and HTTP hardening of the router (docs/SECURITY.md): bearer tokens,
//! content types, nesting and size limits, the client-connection cap.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;
use stonescriptdb_tests::{Gateway, TestDb};

const CALL_TOKEN: &str = "call-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

async fn send(
    gw: &Gateway,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut req = match body {
        Some(b) => client.post(format!("{}{path}", gw.url)).json(&b),
        None => client.get(format!("{}{path}", gw.url)),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn bearer_tokens_guard_calls_and_schema_routes() {
    let db = TestDb::new().await;
    let other = TestDb::new().await;
    let tokens = format!("{}:{CALL_TOKEN}", db.platform);
    let gw = Gateway::start(&[
        ("CALL_TOKENS", tokens.as_str()),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ]);
    gw.adopt_db(&db).await;
    gw.adopt_db(&other).await;
    let call = json!({"platform": db.platform, "function": "echo_int4", "params": [1]});
    let (s, b) = send(&gw, "/call", None, Some(call.clone())).await;
    assert_eq!((s, b["error"].clone()), (401, json!("unauthorized")), "{b}");
    let (s, _) = send(
        &gw,
        "/call",
        Some("call-token-0123456789abcdeX"),
        Some(call.clone()),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = send(&gw, "/call", Some(ADMIN_TOKEN), Some(call.clone())).await;
    assert_eq!(s, 401, "the admin token is not a call token");
    let (s, b) = send(&gw, "/call", Some(CALL_TOKEN), Some(call)).await;
    assert_eq!(s, 200, "{b}");
    // a platform without a configured token needs none
    let (s, _) = send(
        &gw,
        "/call",
        None,
        Some(json!({"platform": other.platform, "function": "echo_int4", "params": [1]})),
    )
    .await;
    assert_eq!(s, 200);
    // schema routes and /metrics need the admin token; /health does not
    let (s, _) = send(&gw, "/platforms", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = send(&gw, "/platforms", Some(CALL_TOKEN), None).await;
    assert_eq!(s, 401);
    let (s, b) = send(&gw, "/platforms", Some(ADMIN_TOKEN), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = send(&gw, "/metrics", None, None).await;
    assert_eq!(s, 401);
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", gw.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (s, _) = send(&gw, "/health", None, None).await;
    assert_eq!(s, 200);
    // tokens never reach the logs
    let log = gw.log();
    assert!(!log.contains(CALL_TOKEN) && !log.contains(ADMIN_TOKEN));
}

#[test]
fn short_tokens_are_bad_configuration() {
    let out = std::process::Command::new(stonescriptdb_tests::binary("stonescriptdb-router"))
        .env("ADMIN_TOKEN", "short")
        .env("GATEWAY_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = std::process::Command::new(stonescriptdb_tests::binary("stonescriptdb-router"))
        .env("CALL_TOKENS", "app")
        .env("GATEWAY_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx() {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[]);
    gw.adopt_db(&db).await;
    let body = json!({"platform": db.platform, "function": "echo_int4", "params": [1]}).to_string();
    let client = reqwest::Client::new();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let resp = client
            .post(format!("{}/call", gw.url))
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 415, "{ct}");
    }
    let resp = client
        .post(format!("{}/call", gw.url))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client
        .post(format!("{}/call", gw.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "no content type at all is accepted"
    );
    // deeply nested JSON is refused, not a crash
    let deep = format!(
        "{{\"platform\":\"{}\",\"function\":\"echo_json\",\"params\":[{}1{}]}}",
        db.platform,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (s, b) = gw.post_raw("/call", deep).await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("invalid_request")),
        "{b}"
    );
    // missing fields, wrong types
    for bad in [
        json!({}),
        json!({"platform": 5, "function": "f"}),
        json!([1, 2]),
        json!({"platform": db.platform, "function": ["f"]}),
    ] {
        let (s, b) = gw.post("/call", &bad).await;
        assert_eq!(
            (s, b["error"].clone()),
            (400, json!("invalid_request")),
            "{bad} -> {b}"
        );
    }
    // the router is still healthy
    assert_eq!(gw.get("/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_are_capped() {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[("MAX_CLIENT_CONNECTIONS", "2")]);
    gw.adopt_db(&db).await;
    let addr = format!("127.0.0.1:{}", gw.port);
    // two idle keep-alive connections take both slots
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let body = json!({"platform": db.platform, "function": "echo_int4", "params": [1]}).to_string();
    let request = format!(
        "POST /call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third.write_all(request.as_bytes()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        third.read(&mut buf).is_err(),
        "served beyond MAX_CLIENT_CONNECTIONS"
    );
    drop(held);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut resp = String::new();
    third.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

#[test]
fn slow_header_clients_are_cut_off() {
    let gw = Gateway::start(&[("HEADER_READ_TIMEOUT_SECS", "1")]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let started = std::time::Instant::now();
    // a slowloris client: one header byte at a time, never finishing
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "connection held for {waited:?}"
    );
    // and a normal client is still served
    let mut ok = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    ok.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
