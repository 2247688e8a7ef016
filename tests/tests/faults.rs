//! Faults survived (docs/SECURITY.md): PostgreSQL
//! restarted under load, router killed, the migrator's DATA_DIR unwritable,
//! PostgreSQL refusing connections below our cap. This file is its own test
//! process, so restarting its PostgreSQL cluster disturbs no other test.

use std::time::{Duration, Instant};

use serde_json::json;
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir, TestDb};

/// One test at a time: one of them restarts the cluster they all share.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_recovers_without_a_manual_step() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new().await;
    let gw = Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "4")]);
    gw.adopt_db(&db).await;
    let url = gw.url.clone();
    let platform = db.platform.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, platform, stop) = (url.clone(), platform.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .post(format!("{url}/call"))
                    .json(&json!({"platform": platform, "function": "echo_int4", "params": [1]}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 200 => ok += 1,
                    Ok(r) => {
                        let s = r.status().as_u16();
                        assert!(
                            s == 500 || s == 503,
                            "unexpected status {s} during the restart"
                        );
                        failed += 1;
                    }
                    Err(e) => panic!("the router itself failed: {e}"),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = tokio::task::block_in_place(|| cluster().pg_ctl("restart", &["-m", "immediate"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // after the restart every call succeeds again, with no manual step
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, _) = gw.call(&db.platform, "echo_int4", json!([2])).await;
        if s == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after the PostgreSQL restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..20 {
        assert_eq!(gw.call(&db.platform, "echo_int4", json!([3])).await.0, 200);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ok = 0;
    for l in load {
        let (ok, _failed) = l.await.unwrap();
        total_ok += ok;
    }
    assert!(total_ok > 0);
    assert_eq!(gw.get("/health").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_and_migrator_survive_each_other() {
    let _serial = SERIAL.lock().await;
    let mut gw = Gateway::start(&[]);
    let p = new_platform();
    let schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    // router killed: the migrator keeps serving its socket
    let migrator_pid = gw.migrator_pid().unwrap();
    gw.signal("KILL");
    tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(5)));
    let mut s =
        std::os::unix::net::UnixStream::connect(&gw.socket).expect("migrator still listening");
    use std::io::{Read, Write};
    s.write_all(b"GET /platforms HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(std::path::Path::new(&format!("/proc/{migrator_pid}")).exists());
    // migrator killed: a new one takes over the (stale) socket; data intact
    gw.restart_migrator();
    let gw2 = Gateway::start(&[]);
    let (s, b) = gw2.call(&p, "count_roles", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["count_roles"].clone()),
        (200, json!(3)),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrator_keeps_its_state_in_the_catalog_not_in_data_dir() {
    let _serial = SERIAL.lock().await;
    let mut gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    let (s, b) = gw
        .upload(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "tenant_db")],
            SchemaDir::fixture("shop").tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "tenant_db", "database_id": "a1"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // a migrator on a wiped DATA_DIR (a new machine) knows everything
    gw.kill_migrator();
    for e in std::fs::read_dir(&gw.data_dir.0).unwrap().flatten() {
        if e.path() != gw.socket && !e.file_name().to_string_lossy().ends_with(".log") {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
    gw.restart_migrator();
    let (s, b) = gw.get(&format!("/platform/{p}/schemas")).await;
    assert_eq!((s, b["count"].clone()), (200, json!(1)), "{b}");
    let (s, b) = gw.get(&format!("/platform/{p}/databases")).await;
    assert_eq!((s, b["count"].clone()), (200, json!(1)), "{b}");
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "database": format!("{p}_tenant_db_a1"), "function": "count_roles"}),
        )
        .await;
    assert_eq!(
        (s, b["rows"][0]["count_roles"].clone()),
        (200, json!(3)),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "tenant_db", "database_id": "a2"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusing_connections_below_our_cap_gives_503() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new().await;
    let gw = Gateway::start(&[
        ("MAX_CONNECTIONS_PER_POOL", "6"),
        ("POOL_WAIT_TIMEOUT_MS", "500"),
    ]);
    gw.adopt_db(&db).await;
    // The platform's login role may open only 2 connections, while our cap is higher.
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!(
            "ALTER ROLE \"sdg_{}_app\" CONNECTION LIMIT 2",
            db.platform
        ))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (url, platform) = (gw.url.clone(), db.platform.clone());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{url}/call"))
                .json(&json!({"platform": platform, "function": "sleep_ms", "params": [700]}))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        let (s, b) = t.await.unwrap();
        if s != 200 {
            assert_eq!(s, 503, "{b}");
            assert_eq!(b["error"], "database_unavailable", "{b}");
            assert_eq!(b["sqlstate"], serde_json::Value::Null);
        }
        statuses.push(s);
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&503),
        "{statuses:?}"
    );
    // the router is fine and serves again once connections free up
    assert_eq!(gw.call(&db.platform, "echo_int4", json!([1])).await.0, 200);
}

/// A migrator that cannot reach PostgreSQL keeps retrying with one log line
/// per attempt and says it is not ready; the router's `/health` reports it
/// (`migrator: not_ready`), and schema routes answer 503 meanwhile.
#[tokio::test]
async fn a_migrator_that_cannot_reach_postgresql_retries_and_reports_not_ready() {
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let gw = Gateway::start(&[("DB_HOST", "127.0.0.1"), ("DB_PORT", &port)]);
    let (s, h) = gw.get("/health").await;
    assert_eq!(
        (s, &h["postgres"], &h["migrator"]),
        (503, &json!("unreachable"), &json!("not_ready")),
        "{h}"
    );
    let (s, b) = gw
        .post("/platform/register", &json!({"platform": new_platform()}))
        .await;
    assert_eq!(s, 503, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempts = gw
            .log()
            .lines()
            .filter(|l| {
                l.contains("cannot open the control catalog (is PostgreSQL reachable?); retrying")
            })
            .count();
        if attempts >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{attempts} retry lines:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gw.log();
    assert!(
        log.contains("attempt: 3") || log.contains("attempt=3"),
        "{log}"
    );
}
