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
    // once CALL_TOKENS is set, a platform without a token is refused too
    // (tests/tests/requests.rs: unless CALL_OPEN_PLATFORMS lists it)
    let (s, b) = send(
        &gw,
        "/call",
        None,
        Some(json!({"platform": other.platform, "function": "echo_int4", "params": [1]})),
    )
    .await;
    assert_eq!((s, b["error"].clone()), (401, json!("unauthorized")), "{b}");
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

/// Wait until the gateway's log holds `needle` (a retry line of the migrator).
fn log_shows(gw: &Gateway, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if gw.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Against a PostgreSQL that accepts TCP connections only over TLS, the
/// gateway reaches it through TLS (every connection: admin, catalog, pools)
/// and checks its certificate as `DB_SSLMODE` says; a plain connection, an
/// unknown CA and a name the certificate does not hold are refused, each
/// with PostgreSQL's or the TLS check's reason in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_that_requires_tls_is_reached_through_it_and_checked() {
    let c = stonescriptdb_tests::certs();
    let (cert, key) = (c.cert.clone(), c.key.clone());
    let pg = stonescriptdb_tests::extra_cluster(
        "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
        move |data| {
            std::fs::copy(&cert, data.join("server.crt")).unwrap();
            std::fs::copy(&key, data.join("server.key")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
        },
    )
    .expect("a cluster that requires TLS");
    let port = pg.port.to_string();
    let env = |mode: &'static str, host: &'static str, ca: &str| {
        vec![
            ("DB_HOST", host.to_owned()),
            ("DB_PORT", port.clone()),
            ("DB_USER", "postgres".to_owned()),
            ("DB_SSLMODE", mode.to_owned()),
            ("DB_SSLROOTCERT", ca.to_owned()),
        ]
    };
    let start = |vars: Vec<(&str, String)>| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Gateway::start(&vars)
    };

    let gw = start(env("verify-full", "127.0.0.1", &c.ca));
    let p = stonescriptdb_tests::new_platform();
    let (s, b) = gw
        .register(&p, None, &stonescriptdb_tests::SchemaDir::fixture("shop"))
        .await;
    assert_eq!(s, 200, "{b}\n{}", gw.log());
    let (s, b) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(s, 200, "{b}");
    let (s, h) = gw.get("/health").await;
    assert_eq!((s, &h["status"]), (200, &json!("healthy")), "{h}");
    // every connection of the gateway to this server is encrypted
    let direct = pg.connect("postgres").await;
    let rows = direct
        .query(
            "SELECT a.datname, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        seen.iter().any(|(db, _)| *db == format!("{p}_main")),
        "no pool connection seen: {seen:?}"
    );
    assert!(seen.iter().all(|(_, ssl)| *ssl), "{seen:?}");
    drop(gw);

    for (vars, reason) in [
        (env("disable", "127.0.0.1", &c.ca), "no encryption"),
        (
            env("verify-full", "127.0.0.1", &c.other_ca),
            "invalid peer certificate: UnknownIssuer",
        ),
        (env("verify-full", "localhost", &c.ca), "not valid for name"),
    ] {
        let shown = format!("{vars:?}");
        let gw = start(vars);
        let (s, h) = gw.get("/health").await;
        assert_eq!(
            (s, &h["postgres"]),
            (503, &json!("unreachable")),
            "{shown}: {h}"
        );
        assert!(log_shows(&gw, reason), "{shown}: {reason}:\n{}", gw.log());
    }
    // verify-ca checks the chain, not the name
    let gw = start(env("verify-ca", "localhost", &c.ca));
    let (s, h) = gw.get("/health").await;
    assert_eq!(
        (s, &h["status"]),
        (200, &json!("healthy")),
        "{h}\n{}",
        gw.log()
    );
}

/// With `TLS_CERT_FILE` and `TLS_KEY_FILE` the router serves HTTPS only; a
/// client that does not trust the certificate, or speaks plain HTTP, gets
/// nothing; unusable files are bad configuration (exit 64, one line).
#[test]
fn the_router_serves_https_with_its_certificate() {
    let c = stonescriptdb_tests::certs();
    let gw = Gateway::start(&[("TLS_CERT_FILE", &c.cert), ("TLS_KEY_FILE", &c.key)]);
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let curl = |args: &[&str], url: String| {
        std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "5"])
            .args(args)
            .arg(url)
            .output()
            .expect("curl runs")
    };
    let url = |scheme: &str| format!("{scheme}://127.0.0.1:{}/health/live", gw.port);
    let out = curl(&["--cacert", &c.ca], url("https"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"status":"alive"}"#
    );
    let out = curl(&["--cacert", &c.other_ca], url("https"));
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
    let out = curl(&[], url("http"));
    assert!(
        !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("alive"),
        "plain HTTP was answered on the HTTPS port"
    );
    for (cert, key, needle) in [
        (
            c.cert.as_str(),
            "/nonexistent/key.pem",
            "TLS_KEY_FILE=/nonexistent/key.pem",
        ),
        (c.key.as_str(), c.key.as_str(), "TLS_CERT_FILE="),
    ] {
        let out = std::process::Command::new(stonescriptdb_tests::binary("stonescriptdb-router"))
            .env("GATEWAY_PORT", "0")
            .env("TLS_CERT_FILE", cert)
            .env("TLS_KEY_FILE", key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
}
