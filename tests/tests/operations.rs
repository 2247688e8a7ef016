//! End-to-end tests of the router's operational behaviour: allowlist, pool
//! caps and eviction, health, graceful shutdown, configuration errors.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stonescriptdb_tests::{binary, cluster, new_platform, Gateway, SchemaDir, TempDir, TestDb};

/// Connections the router holds to databases of `platform` right now.
async fn router_backends(db: &TestDb) -> i64 {
    let c = cluster().connect("postgres").await;
    let row = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stonescriptdb-router' AND datname LIKE $1",
            &[&format!("{}\\_%", db.platform)],
        )
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn clients_outside_allowed_networks_get_403_on_every_route() {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[("ALLOWED_NETWORKS", "10.0.0.0/8,192.168.1.0/24")]);
    let (s, b) = gw.get("/health").await;
    assert_eq!((s, b["error"].clone()), (403, json!("forbidden")), "{b}");
    let (s, _) = gw.call(&db.platform, "echo_int4", json!([1])).await;
    assert_eq!(s, 403);
    let (s, _) = gw.get("/register").await;
    assert_eq!(s, 403);
    // X-Forwarded-For is not trusted
    let resp = reqwest::Client::new()
        .get(format!("{}/health", gw.url))
        .header("X-Forwarded-For", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    drop(gw);

    let gw = Gateway::start(&[("ALLOWED_NETWORKS", "127.0.0.1/32")]);
    gw.adopt_db(&db).await;
    let (s, _) = gw.call(&db.platform, "echo_int4", json!([1])).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn ipv4_mapped_peers_are_checked_as_ipv4() {
    let db = TestDb::new().await;
    // ownership is in the control catalog the gateways share
    Gateway::start(&[]).adopt_db(&db).await;
    // A dual-stack listener sees IPv4 clients as ::ffff:127.0.0.1.
    let gw =
        match Gateway::try_start(&[("GATEWAY_HOST", "::"), ("ALLOWED_NETWORKS", "127.0.0.0/8")]) {
            Ok(gw) => gw,
            Err(e) => panic!("router on [::] did not start (IPv6 disabled?): {e}"),
        };
    let url = format!("http://127.0.0.1:{}/call", gw.port);
    let resp = reqwest::Client::new()
        .post(url)
        .json(&json!({"platform": db.platform, "function": "echo_int4", "params": [5]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn total_connection_cap_is_real_and_answers_503_not_a_hang() {
    let db = TestDb::new().await;
    let other = db.tenant("other").await;
    // one platform may take the whole cap here (the per-platform share,
    // half of it by default, has a test of its own)
    let gw = Gateway::start(&[
        ("MAX_TOTAL_CONNECTIONS", "2"),
        ("MAX_CONNECTIONS_PER_POOL", "2"),
        ("MAX_CONNECTIONS_PER_PLATFORM", "2"),
        ("POOL_WAIT_TIMEOUT_MS", "300"),
    ]);
    gw.adopt(&db.platform, &[&db.database, &other]).await;
    let p = db.platform.clone();
    // Two slow calls hold both connections of the cap.
    let slow = |gw_url: String, p: String| async move {
        reqwest::Client::new()
            .post(format!("{gw_url}/call"))
            .json(&json!({"platform": p, "function": "sleep_ms", "params": [1500]}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let a = tokio::spawn(slow(gw.url.clone(), p.clone()));
    let b = tokio::spawn(slow(gw.url.clone(), p.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let (s, body) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": "other", "function": "echo_int4", "params": [1]}),
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(
        (s, body["error"].clone()),
        (503, json!("pool_exhausted")),
        "{body}"
    );
    assert_eq!(body["database"], other.as_str());
    assert!(waited < Duration::from_secs(5), "503 took {waited:?}");
    let (_, h) = gw.get("/health").await;
    assert_eq!(h["pools"]["total_connections"], 2, "{h}");
    assert!(h["pools"]["exhausted_total"].as_u64().unwrap() >= 1);
    assert!(
        h["pools"]["databases"][&other]["exhausted"]
            .as_u64()
            .unwrap()
            >= 1,
        "{h}"
    );
    assert!(router_backends(&db).await <= 2);
    assert_eq!(a.await.unwrap(), 200);
    assert_eq!(b.await.unwrap(), 200);
    // Now the first pool's connections are idle: they are closed to make room.
    let (s, body) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": "other", "function": "echo_int4", "params": [1]}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, h) = gw.get("/health").await;
    assert!(
        h["pools"]["total_connections"].as_u64().unwrap() <= 2,
        "{h}"
    );
    assert!(router_backends(&db).await <= 2);
}

/// Connections open as `platform`'s login role (its pools' connections).
async fn platform_backends(platform: &str) -> i64 {
    let c = cluster().connect("postgres").await;
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
        &[&format!("sdg_{platform}_app")],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn one_platform_never_takes_every_connection() {
    // 4 connections in all, so 2 per platform by default
    let gw = Gateway::start(&[
        ("MAX_TOTAL_CONNECTIONS", "4"),
        ("POOL_WAIT_TIMEOUT_MS", "1500"),
    ]);
    let mut schema = SchemaDir::default();
    schema
        .set(
            "functions/slow.sql",
            "CREATE OR REPLACE FUNCTION slow() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(4); RETURN 1; END $$;",
        )
        .set(
            "functions/quick.sql",
            "CREATE OR REPLACE FUNCTION quick() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
        );
    let (a, b) = (new_platform(), new_platform());
    for p in [&a, &b] {
        let (s, body) = gw.register(p, None, &schema).await;
        assert_eq!(s, 200, "{body}");
    }
    // How many connections a holds, sampled until its calls are answered.
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (a, done, most) = (a.clone(), done.clone(), most.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(platform_backends(&a).await, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    // Four slow calls of a at once: as many connections as the whole cap.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let (url, a) = (gw.url.clone(), a.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{url}/call"))
                    .json(&json!({"platform": a, "function": "slow", "params": []}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while platform_backends(&a).await < 2 {
        assert!(Instant::now() < deadline, "a's slow calls never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // the other two arrive
                                                          // b's first call gets a connection of its own at once, not a 503.
    let started = Instant::now();
    let (s, body) = gw.call(&b, "quick", json!([])).await;
    assert_eq!(s, 200, "{body} after {:?}", started.elapsed());
    assert!(
        slow.iter().all(|h| !h.is_finished()),
        "b was answered while a's calls still ran"
    );
    for h in slow {
        assert_eq!(h.await.unwrap(), 200, "a's calls share its 2 connections");
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&most),
        "a held {most} connections; its share is 2"
    );
}

#[tokio::test]
async fn idle_pools_are_dropped() {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[("POOL_IDLE_TIMEOUT_SECS", "1")]);
    gw.adopt_db(&db).await;
    let (s, _) = gw.call(&db.platform, "echo_int4", json!([1])).await;
    assert_eq!(s, 200);
    let (_, h) = gw.get("/health").await;
    assert_eq!(h["pools"]["databases"][&db.database]["size"], 1, "{h}");
    assert_eq!(router_backends(&db).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, h) = gw.get("/health").await;
        if h["pools"]["databases"].get(&db.database).is_none() && router_backends(&db).await == 0 {
            assert_eq!(h["pools"]["total_connections"], 0, "{h}");
            break;
        }
        assert!(Instant::now() < deadline, "pool still there: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // and it comes back on the next call
    let (s, _) = gw.call(&db.platform, "echo_int4", json!([1])).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn health_reports_postgres_pools_and_version() {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[]);
    gw.adopt_db(&db).await;
    gw.call(&db.platform, "echo_int4", json!([1])).await;
    let (s, h) = gw.get("/health").await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["postgres"], "connected");
    assert_eq!(h["migrator"], "up");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    // the version number as documented ("15.18"), not the build string
    let version = h["postgres_version"].as_str().unwrap();
    assert!(
        version.starts_with(char::is_numeric)
            && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "{h}"
    );
    assert_eq!(h["pools"]["max_total_connections"], 200);
    assert_eq!(h["pools"]["databases"][&db.database]["size"], 1);

    // PostgreSQL unreachable: 503, and /call says the database is unavailable.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = closed_port.to_string();
    let gw = Gateway::start(&[("DB_PORT", port.as_str())]);
    let (s, h) = gw.get("/health").await;
    assert_eq!(
        (s, h["status"].clone(), h["postgres"].clone()),
        (503, json!("unhealthy"), json!("unreachable"))
    );
    let (s, r) = gw.get("/health/ready").await;
    assert_eq!((s, &r["status"]), (503, &json!("not_ready")), "{r}");
    let (s, l) = gw.get("/health/live").await;
    assert_eq!((s, &l["status"]), (200, &json!("alive")), "{l}");
    let (s, b) = gw.call(&db.platform, "echo_int4", json!([1])).await;
    assert_eq!(
        (s, b["error"].clone()),
        (503, json!("database_unavailable")),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let db = TestDb::new().await;
    let mut gw = Gateway::start(&[]);
    gw.adopt_db(&db).await;
    let url = gw.url.clone();
    let p = db.platform.clone();
    let inflight = tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .post(format!("{url}/call"))
            .json(&json!({"platform": p, "function": "sleep_ms", "params": [1000]}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // no new connections are accepted
    let refused = reqwest::Client::new()
        .get(format!("{}/health", gw.url))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "accepted a connection after SIGTERM");
    let (status, body) = inflight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("slept"), "{body}");
    let exit = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "log: {}", gw.log());
    // pools were closed
    let deadline = Instant::now() + Duration::from_secs(5);
    while router_backends(&db).await > 0 {
        assert!(
            Instant::now() < deadline,
            "connections left open after exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn run_router(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    run_binary("stonescriptdb-router", args, env)
}

fn run_binary(name: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = std::env::temp_dir();
    Command::new(binary(name))
        .current_dir(dir)
        .args(args)
        .env("GATEWAY_PORT", "0")
        .envs(env.iter().copied())
        .output()
        .expect("router runs")
}

/// The `worker_threads` field of the router's "listening" log line.
fn logged_worker_threads(gw: &Gateway) -> usize {
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("listening") && l.contains("worker_threads"))
        .unwrap_or_else(|| panic!("no listening line with worker_threads:\n{log}"));
    line.split("worker_threads: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable worker_threads in {line}"))
}

#[tokio::test]
async fn router_threads_sets_the_routers_worker_threads_and_defaults_to_half_the_cpus() {
    let gw = Gateway::start(&[("ROUTER_THREADS", "3")]);
    assert_eq!(logged_worker_threads(&gw), 3);
    assert_eq!(gw.get("/health").await.0, 200);
    drop(gw);
    let gw = Gateway::start(&[]);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(logged_worker_threads(&gw), (cpus / 2).max(1));
}

#[test]
fn bad_configuration_exits_64_with_one_line() {
    for (env, needle) in [
        (vec![("GATEWAY_PORT", "http")], "GATEWAY_PORT"),
        (
            vec![("MAX_TOTAL_CONNECTIONS", "0")],
            "MAX_TOTAL_CONNECTIONS",
        ),
        (
            vec![("ALLOWED_NETWORKS", "10.0.0.0/99")],
            "ALLOWED_NETWORKS",
        ),
        (vec![("RUST_LOG", "chatty")], "RUST_LOG"),
        (vec![("ROUTER_THREADS", "0")], "ROUTER_THREADS"),
        (
            vec![("DATABASE_URL", "postgres://a:b@host:notaport/db")],
            "DATABASE_URL",
        ),
    ] {
        let out = run_router(&[], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{env:?}: {stderr}");
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let out = run_router(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let out = run_router(&["--port", "nope"], &[]);
    assert_eq!(out.status.code(), Some(64));
}

/// What an operator gets wrong in `.env` and the environment is named: a
/// misspelt key (with the name it was meant to be), a near-miss in the
/// environment, a number out of range (with the range), and a comment after
/// a value, which systemd's `EnvironmentFile=` would read into the value.
#[test]
fn configuration_mistakes_are_named() {
    let dir = TempDir::new("dotenv");
    let run = |dotenv: &str, env: &[(&str, &str)]| {
        std::fs::write(dir.0.join(".env"), dotenv).unwrap();
        let out = Command::new(binary("stonescriptdb-router"))
            .current_dir(&dir.0)
            .env_remove("GATEWAY_PORT")
            .envs(env.iter().copied())
            .output()
            .expect("router runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    let (code, stderr) = run(
        "GATWAY_HOST=127.0.0.1\nGATEWAY_PORT=70000\n",
        &[("DB_HOTS", "db")],
    );
    assert_eq!(code, Some(64), "{stderr}");
    for needle in [
        "warning: .env sets GATWAY_HOST, which the gateway does not read (did you mean GATEWAY_HOST?)",
        "warning: the environment sets DB_HOTS, which the gateway does not read (did you mean DB_HOST?)",
        "GATEWAY_PORT=\"70000\" is out of range: it must be between 0 and 65535",
    ] {
        assert!(stderr.contains(needle), "{needle}\n{stderr}");
    }
    let (code, stderr) = run("RUST_LOG=info\nGATEWAY_PORT=9000 # the port\n", &[]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains(".env line 2: GATEWAY_PORT has a comment after its value")
            && stderr.contains("move the comment to a line of its own"),
        "{stderr}"
    );
}

/// Each binary's `--help` describes that binary and lists the settings it
/// reads, and only those; a flag of the other binary is refused with one
/// line naming the binary that reads it; `--help | head` is no error.
#[test]
fn help_documents_each_binary_its_own_settings() {
    use stonescriptdb_shared::config::{variables, variables_of, Binary};
    for which in [Binary::Router, Binary::Migrator] {
        let out = run_binary(which.name(), &["--help"], &[]);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(which.about()), "{help}");
        let own: Vec<&str> = variables_of(which).collect();
        for var in variables() {
            assert_eq!(
                help.contains(var),
                own.contains(&var),
                "{}: --help and {var}:\n{help}",
                which.name()
            );
        }
        assert_eq!(help.contains("--check-upgrade"), which == Binary::Migrator);
        assert!(help.contains("at least 16 characters"), "{help}");
        // a reader that stops early
        let mut child = Command::new(binary(which.name()))
            .arg("--help")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (name, flag, owner) in [
        (
            "stonescriptdb-router",
            "--check-upgrade",
            "stonescriptdb-migrator",
        ),
        ("stonescriptdb-migrator", "--port", "stonescriptdb-router"),
    ] {
        let args: &[&str] = if flag == "--port" {
            &[flag, "9100"]
        } else {
            &[flag]
        };
        let out = run_binary(name, args, &[]);
        assert_eq!(out.status.code(), Some(64));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim(),
            format!("{name}: {flag} is a flag of {owner}; {name} does not read it")
        );
    }
}

#[test]
fn migrator_socket_is_exclusive_and_stale_files_are_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = stonescriptdb_tests::TempDir::new("sock");
    let sock = dir.0.join("m.sock");
    let sock_s = sock.display().to_string();
    let mut env: Vec<(String, String)> = cluster().gateway_env();
    env.push(("MIGRATOR_SOCKET".into(), sock_s.clone()));
    env.push(("DATA_DIR".into(), dir.0.display().to_string()));
    let spawn = || {
        Command::new(binary("stonescriptdb-migrator"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // a stale socket file (nobody listening) is replaced
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut first = spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "migrator did not take over the stale socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // a second migrator on the live socket refuses to start
    let second = spawn().wait_with_output().unwrap();
    assert_ne!(second.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already listening"),
        "{second:?}"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&sock).is_ok(),
        "the first one still serves"
    );
    let _ = first.kill();
    let _ = first.wait();
    // a path that is not a socket is never deleted
    let _ = std::fs::remove_file(&sock);
    std::fs::write(&sock, "precious").unwrap();
    let third = spawn().wait_with_output().unwrap();
    assert_ne!(third.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "precious");
}

/// Socket activation: the migrator serves on a socket systemd hands it
/// (`LISTEN_FDS`), started on the first connection, which waits instead of
/// failing; on exit it leaves the socket file to systemd.
#[test]
fn migrator_takes_its_socket_from_systemd() {
    use std::io::{Read, Write};
    let Ok(activate) = which("systemd-socket-activate") else {
        eprintln!("NOTE: systemd-socket-activate is not installed (Debian package systemd); socket activation not exercised");
        return;
    };
    let dir = stonescriptdb_tests::TempDir::new("activate");
    let sock = dir.0.join("m.sock");
    let mut cmd = Command::new(activate);
    cmd.arg("-l").arg(&sock);
    for (k, v) in cluster().gateway_env() {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    cmd.arg("-E")
        .arg(format!("DATA_DIR={}", dir.0.display()))
        .arg("-E")
        .arg(format!(
            "MIGRATOR_SOCKET={}",
            dir.0.join("not-this-one.sock").display()
        ))
        .arg(binary("stonescriptdb-migrator"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The migrator is not running yet: this request waits for it.
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /platforms HTTP/1.1\r\nHost: migrator\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"platforms\":["), "{resp}");
    assert!(
        !dir.0.join("not-this-one.sock").exists(),
        "it must use the passed socket"
    );
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(tool))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

/// The migrator answers only its own user, root and its group: a process of
/// another user that reaches the socket (here through a socket made
/// world-writable by mistake) is refused with a log line.
#[test]
fn the_migrator_refuses_peers_of_another_user() {
    use std::os::unix::fs::PermissionsExt;
    let nobody_ok = Command::new("runuser")
        .args(["-u", "nobody", "--", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !nobody_ok {
        eprintln!("NOTE: cannot run a process as user nobody (needs root and runuser); peer check not exercised");
        return;
    }
    let gw = Gateway::start(&[]);
    std::fs::set_permissions(&gw.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let curl = |as_nobody: bool| {
        let mut cmd = if as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--", "curl"]);
            c
        } else {
            Command::new("curl")
        };
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--unix-socket")
        .arg(&gw.socket)
        .arg("http://migrator/platforms")
        .output()
        .expect("curl runs")
    };
    let out = curl(true);
    assert!(
        !out.status.success(),
        "nobody got an answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw
        .log()
        .contains("refused a connection on the migrator socket")
    {
        assert!(
            Instant::now() < deadline,
            "no refusal logged:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.log().contains("uid 65534"), "{}", gw.log());
    // the migrator's own user is served
    let out = curl(false);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
}
