//! Deleting (docs/API.md): `DELETE /admin/databases/{database}` and
//! `DELETE /admin/platforms/{platform}`. Careless and hostile requests
//! first: each is refused and changes nothing. Then what a drop leaves
//! (nothing in PostgreSQL, the catalog or the router's pools; a history
//! record), offboarding beside a platform whose name extends it, backups
//! that restore, a pg_dump that fails, and drops a stopped migrator left.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stonescriptdb_tests::{
    cluster, database_exists, find_pg_bin_dir, new_platform, Gateway, SchemaDir, TempDir,
};

/// A small schema: a table with a row-adding function and a ping.
fn schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/items.pssql",
        "CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL);",
    )
    .set(
        "functions/ping.pssql",
        "CREATE OR REPLACE FUNCTION ping() RETURNS TEXT LANGUAGE sql AS $$ SELECT 'pong' $$;",
    )
    .set(
        "functions/add_item.pssql",
        "CREATE OR REPLACE FUNCTION add_item(p_name TEXT) RETURNS INT LANGUAGE sql AS $$ INSERT INTO items (name) VALUES (p_name) RETURNING id $$;",
    );
    s
}

/// `DELETE path` with an optional bearer token and JSON body.
async fn delete(
    gw: &Gateway,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = reqwest::Client::new().delete(format!("{}{path}", gw.url));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("DELETE");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A GET with a bearer token.
async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut rb = reqwest::Client::new().get(format!("{}{path}", gw.url));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let resp = rb.send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Register `platform`'s tenant `tenant` (None: `{platform}_main`).
async fn register(gw: &Gateway, platform: &str, tenant: Option<&str>) -> String {
    let (s, b) = gw.register(platform, tenant, &schema()).await;
    assert_eq!(s, 200, "{b}");
    format!("{platform}_{}", tenant.unwrap_or("main"))
}

async fn call(gw: &Gateway, platform: &str, tenant: &str, function: &str) -> (u16, Value) {
    gw.post(
        "/call",
        &json!({"platform": platform, "tenant_id": tenant, "function": function, "params": []}),
    )
    .await
}

/// The catalog row's state of `database`, if any.
async fn catalog_state(gw: &Gateway, database: &str) -> Option<String> {
    gw.catalog()
        .await
        .query_opt("SELECT state FROM databases WHERE name = $1", &[&database])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// Sessions open on `database`.
async fn sessions(database: &str) -> i64 {
    cluster()
        .connect("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// The newest history record of `database`.
async fn last_record(gw: &Gateway, database: &str, token: Option<&str>) -> Value {
    let (s, b) = get(
        gw,
        &format!("/admin/deployments?database={database}&limit=1"),
        token,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["deployments"][0].clone()
}

const ADMIN: &str = "lifecycle-admin-token-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_and_hostile_drops_are_refused_and_change_nothing() {
    let (p, q) = (new_platform(), new_platform());
    let (tp, tq) = ("lifecycle-deploy-p-0001", "lifecycle-deploy-q-0001");
    let gw = Gateway::start(&[
        ("ADMIN_TOKEN", ADMIN),
        ("DEPLOY_TOKENS", &format!("{p}:{tp},{q}:{tq}")),
    ]);
    // made through a tokenless gateway on the same catalog
    let open = Gateway::start(&[]);
    let db = register(&open, &p, Some("t1")).await;
    register(&open, &q, Some("t1")).await;
    // a template: a v2 database of a stored schema
    let (s, b) = open
        .post("/platform/register", &json!({ "platform": p }))
        .await;
    assert!(s == 201 || s == 200, "{b}");
    let (s, b) = open
        .upload(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "store")],
            schema().tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = open
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "store", "database_id": "d1"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let template: String = gw
        .catalog()
        .await
        .query_one(
            "SELECT name FROM databases WHERE platform = $1 AND kind = 'template'",
            &[&p],
        )
        .await
        .unwrap()
        .get(0);

    let at = |query: &str| format!("/admin/databases/{db}{query}");
    let refused: Vec<(String, Option<&str>, Option<Value>, u16)> = vec![
        (at(""), Some(ADMIN), None, 400),
        (at("?confirm="), Some(ADMIN), None, 400),
        (at("?confirm=nope"), Some(ADMIN), None, 400),
        (
            at(&format!("?confirm={}", db.to_uppercase())),
            Some(ADMIN),
            None,
            400,
        ),
        (at(&format!("?confirm={db}_")), Some(ADMIN), None, 400),
        (at(""), Some(ADMIN), Some(json!({ "confirm": db })), 400),
        (
            at(&format!("?confirm={db}")),
            Some(ADMIN),
            Some(json!({ "confirm": db })),
            400,
        ),
        (
            at(&format!("?confirm={db}&force=true")),
            Some(ADMIN),
            None,
            400,
        ),
        (
            at(&format!("?confirm={db}&backup=yes")),
            Some(ADMIN),
            None,
            400,
        ),
        (
            at(&format!("?confirm={db}&confirm={db}")),
            Some(ADMIN),
            None,
            400,
        ),
        (at(&format!("?confirm={db}")), None, None, 401),
        (
            at(&format!("?confirm={db}")),
            Some("not-a-token"),
            None,
            401,
        ),
        // another platform's deploy token: as if it did not exist
        (at(&format!("?confirm={db}")), Some(tq), None, 404),
        (
            format!("/admin/databases/{template}?confirm={template}"),
            Some(ADMIN),
            None,
            400,
        ),
        (
            format!("/admin/databases/{template}?confirm={template}"),
            Some(tq),
            None,
            404,
        ),
        // a deploy token cannot offboard, not even its own platform
        (
            format!("/admin/platforms/{p}?confirm={p}"),
            Some(tp),
            None,
            403,
        ),
        (format!("/admin/platforms/{p}"), Some(ADMIN), None, 400),
        (
            format!("/admin/platforms/{p}?confirm={q}"),
            Some(ADMIN),
            None,
            400,
        ),
        (
            format!("/admin/platforms/{p}?confirm={}", p.to_uppercase()),
            Some(ADMIN),
            None,
            400,
        ),
        (
            format!("/admin/platforms/{p}"),
            Some(ADMIN),
            Some(json!({ "confirm": p })),
            400,
        ),
    ];
    for (path, token, body, want) in refused {
        let (s, b) = delete(&gw, &path, token, body).await;
        assert_eq!(s, want, "{path}: {b}");
        if want == 400 {
            assert_eq!(b["error"], "invalid_request", "{path}: {b}");
        }
    }
    // the answer for another platform's database is the one for none
    let (_, foreign) = delete(&gw, &at(&format!("?confirm={db}")), Some(tq), None).await;
    let none = format!("{q}_nosuchtenant");
    let (s, missing) = delete(
        &gw,
        &format!("/admin/databases/{none}?confirm={none}"),
        Some(tq),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(foreign["error"], missing["error"]);
    assert_eq!(
        foreign["message"].as_str().unwrap().replace(&db, "X"),
        missing["message"].as_str().unwrap().replace(&none, "X")
    );
    let (_, b) = delete(&gw, &at("?confirm=nope"), Some(ADMIN), None).await;
    assert!(b["message"].as_str().unwrap().contains("exactly"), "{b}");
    let (_, b) = delete(
        &gw,
        &format!("/admin/databases/{template}?confirm={template}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert!(b["message"].as_str().unwrap().contains("template"), "{b}");

    // nothing changed
    for d in [&db, &template, &format!("{p}_store_d1"), &format!("{q}_t1")] {
        assert!(database_exists(d).await, "{d}");
        assert_eq!(catalog_state(&gw, d).await.as_deref(), Some("ready"), "{d}");
    }
    assert_eq!(call(&gw, &p, "t1", "ping").await.0, 200);

    // the owner's deploy token drops it
    let (s, b) = delete(&gw, &at(&format!("?confirm={db}")), Some(tp), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"status": "dropped", "database": db, "platform": p, "kind": "v1"})
    );
    assert!(!database_exists(&db).await);
    let r = last_record(&gw, &db, Some(ADMIN)).await;
    assert_eq!(
        (r["operation"].as_str(), r["status"].as_str()),
        (Some("drop"), Some("dropped")),
        "{r}"
    );
    assert!(r["requested_by"].as_str().unwrap().contains(&p), "{r}");
    // and it is gone for good: a second drop is 404
    let (s, _) = delete(&gw, &at(&format!("?confirm={db}")), Some(tp), None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_tenant_is_gone_from_postgres_the_catalog_and_the_routers_pools() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let db = register(&gw, &p, Some("t1")).await;
    register(&gw, &p, Some("t2")).await;
    let (s, b) = call(&gw, &p, "t1", "ping").await;
    assert_eq!(
        (s, b["rows"][0]["ping"].as_str()),
        (200, Some("pong")),
        "{b}"
    );
    let (_, h) = gw.get("/health").await;
    assert!(h["pools"]["databases"].get(&db).is_some(), "{h}");
    assert!(sessions(&db).await > 0);

    let (s, b) = delete(
        &gw,
        &format!("/admin/databases/{db}?confirm={db}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["backup"], Value::Null, "{b}");
    assert!(!database_exists(&db).await);
    assert_eq!(catalog_state(&gw, &db).await, None);
    let (_, h) = gw.get("/health").await;
    assert!(h["pools"]["databases"].get(&db).is_none(), "{h}");
    let (s, b) = call(&gw, &p, "t1", "ping").await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("database_not_found")),
        "{b}"
    );
    let (_, h) = gw.get("/health").await;
    assert!(h["pools"]["databases"].get(&db).is_none(), "{h}");
    // the platform's other tenant is untouched
    assert_eq!(call(&gw, &p, "t2", "ping").await.0, 200);
    let r = last_record(&gw, &db, None).await;
    assert_eq!(r["operation"], "drop", "{r}");
    assert_eq!(r["status"], "dropped", "{r}");
    assert_eq!(r["requested_by"], "anonymous", "{r}");
    assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
    assert!(r["finished_at"].is_string(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_leaves_nothing_of_the_platform_and_spares_one_whose_name_extends_it() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let open = Gateway::start(&[]);
    let p = new_platform();
    let longer = format!("{p}_admin");
    let mine = [
        register(&open, &p, None).await,
        register(&open, &p, Some("t1")).await,
    ];
    let theirs = register(&open, &longer, None).await;
    let (s, b) = open
        .post("/platform/register", &json!({ "platform": p }))
        .await;
    assert!(s == 201 || s == 200, "{b}");
    let (s, b) = open
        .upload(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "store")],
            schema().tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = open
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "store", "database_id": "d1"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = open
        .post("/admin/platform-token", &json!({ "platform": p }))
        .await;
    assert!(s == 201 || s == 200, "{b}");
    let catalog = gw.catalog().await;
    let names_of = |p: String| {
        let catalog = &catalog;
        async move {
            let rows = catalog
                .query(
                    "SELECT name FROM databases WHERE platform = $1 ORDER BY name",
                    &[&p],
                )
                .await
                .unwrap();
            rows.iter().map(|r| r.get(0)).collect::<Vec<String>>()
        }
    };
    let before = names_of(p.clone()).await;
    assert!(before.len() >= 4, "{before:?}"); // two v1, one v2, a template
    assert!(
        before.iter().any(|n| n.starts_with("sdg_tpl_")),
        "{before:?}"
    );

    let (s, b) = delete(
        &gw,
        &format!("/admin/platforms/{p}?confirm={p}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "offboarded");
    let dropped: Vec<&str> = b["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["database"].as_str().unwrap())
        .collect();
    assert_eq!(
        dropped,
        before.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        b["roles"],
        json!([format!("sdg_{p}_app"), format!("sdg_{p}_owner")])
    );
    assert_eq!(b["backups"], json!([]));
    for d in &before {
        assert!(!database_exists(d).await, "{d}");
    }
    for d in &mine {
        assert!(before.contains(d));
    }
    let admin = cluster().connect("postgres").await;
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)",
            &[&format!("sdg_{p}_owner"), &format!("sdg_{p}_app")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles, 0);
    for table in [
        "platforms",
        "databases",
        "schema_versions",
        "jobs",
        "platform_tokens",
    ] {
        let column = if table == "platforms" {
            "name"
        } else {
            "platform"
        };
        let n: i64 = catalog
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} = $1"),
                &[&p],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    // the history keeps one drop record per database
    let drops: i64 = catalog
        .query_one(
            "SELECT count(*) FROM deployments WHERE platform = $1 AND operation = 'drop' AND status = 'dropped'",
            &[&p],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(drops as usize, before.len());
    // the platform whose name extends it is untouched
    assert!(database_exists(&theirs).await);
    assert_eq!(catalog_state(&gw, &theirs).await.as_deref(), Some("ready"));
    let (s, _) = open
        .post(
            "/call",
            &json!({"platform": longer, "function": "ping", "params": []}),
        )
        .await;
    assert_eq!(s, 200);
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ($1, $2)",
            &[&format!("sdg_{longer}_owner"), &format!("sdg_{longer}_app")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // gone: a second offboarding is 404, a call 404
    let (s, b) = delete(
        &gw,
        &format!("/admin/platforms/{p}?confirm={p}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("platform_not_found")),
        "{b}"
    );
    let (s, _) = open
        .post(
            "/call",
            &json!({"platform": p, "function": "ping", "params": []}),
        )
        .await;
    assert_eq!(s, 404);
}

/// The connection settings of the test cluster as libpq variables.
fn libpq_env(cmd: &mut std::process::Command) {
    let env = cluster().gateway_env();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    cmd.env("PGHOST", get("DB_HOST").unwrap())
        .env("PGPORT", get("DB_PORT").unwrap())
        .env("PGUSER", get("DB_USER").unwrap());
    if let Some(pw) = get("DB_PASSWORD") {
        cmd.env("PGPASSWORD", pw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_an_empty_database() {
    let backups = TempDir::new("backups");
    let dir = backups.0.join("nested");
    let gw = Gateway::start(&[("BACKUP_DIR", dir.to_str().unwrap())]);
    let p = new_platform();
    let db = register(&gw, &p, Some("t1")).await;
    for name in ["apple", "pear"] {
        let (s, b) = gw
            .post(
                "/call",
                &json!({"platform": p, "tenant_id": "t1", "function": "add_item", "params": [name]}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = delete(
        &gw,
        &format!("/admin/databases/{db}?confirm={db}&backup=TRUE"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let file = b["backup"].as_str().expect("a backup file").to_owned();
    assert!(file.starts_with(dir.to_str().unwrap()), "{file}");
    let base = Path::new(&file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        base.starts_with(&format!("{db}-")) && base.ends_with("Z.dump"),
        "{base}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!database_exists(&db).await);
    let r = last_record(&gw, &db, None).await;
    assert_eq!(r["counts"]["backup"].as_str(), Some(file.as_str()), "{r}");

    // restore as the documentation says
    let target = format!("{p}_restored");
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!("CREATE DATABASE {target}"))
        .await
        .unwrap();
    let bin = find_pg_bin_dir().unwrap();
    let mut cmd = std::process::Command::new(bin.join("pg_restore"));
    cmd.args(["--no-owner", "--no-privileges", "--dbname", &target, &file]);
    libpq_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = cluster().connect(&target).await;
    let rows: Vec<String> = restored
        .query("SELECT name FROM items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["apple", "pear"]);
    drop(restored);
    admin
        .batch_execute(&format!("DROP DATABASE {target} WITH (FORCE)"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pg_dump_drops_nothing_and_never_has_the_password_on_its_command_line() {
    let fake = TempDir::new("fake-pg-dump");
    let script = fake.0.join("pg_dump");
    let record = fake.0.display().to_string();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > '{record}/argv'\nprintf '%s' \"${{PGPASSWORD-}}\" > '{record}/password'\necho 'pg_dump: error: the fake cannot dump' >&2\nexit 1\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.0.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // the test cluster trusts local connections, so any password works
    let secret = "not-on-the-command-line-7f3a";
    let backups = TempDir::new("backups-failing");
    let gw = Gateway::start(&[
        ("PATH", &path),
        ("DB_PASSWORD", secret),
        ("BACKUP_DIR", backups.0.to_str().unwrap()),
    ]);
    let p = new_platform();
    let db = register(&gw, &p, Some("t1")).await;
    let (s, b) = delete(
        &gw,
        &format!("/admin/databases/{db}?confirm={db}&backup=1"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (500, Some("backup_failed")),
        "{b}"
    );
    let m = b["message"].as_str().unwrap();
    assert!(
        m.contains("the fake cannot dump") && m.contains("nothing was dropped"),
        "{m}"
    );
    // nothing dropped, nothing left behind
    assert!(database_exists(&db).await);
    assert_eq!(catalog_state(&gw, &db).await.as_deref(), Some("ready"));
    assert_eq!(call(&gw, &p, "t1", "ping").await.0, 200);
    assert_eq!(std::fs::read_dir(&backups.0).unwrap().count(), 0);
    let r = last_record(&gw, &db, None).await;
    assert_eq!(
        (r["operation"].as_str(), r["status"].as_str()),
        (Some("drop"), Some("failed")),
        "{r}"
    );
    // what pg_dump was given
    let argv = std::fs::read_to_string(fake.0.join("argv")).unwrap();
    assert!(!argv.contains(secret), "{argv}");
    assert!(argv.contains("--format=custom"), "{argv}");
    let password = std::fs::read_to_string(fake.0.join("password")).unwrap();
    assert_eq!(password, secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_deployment_is_not_dropped_under() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let db = register(&gw, &p, Some("t1")).await;
    // what a deployment holds while it runs (exec::LOCK_CLASS, LOCK_OBJ)
    let deploying = cluster().connect(&db).await;
    deploying
        .query_one("SELECT pg_advisory_lock(1396983639, 1)", &[])
        .await
        .unwrap();
    let (s, b) = delete(
        &gw,
        &format!("/admin/databases/{db}?confirm={db}"),
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("deployment_running")),
        "{b}"
    );
    assert!(database_exists(&db).await);
    assert_eq!(catalog_state(&gw, &db).await.as_deref(), Some("ready"));
    assert_eq!(call(&gw, &p, "t1", "ping").await.0, 200);
    drop(deploying);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, b) = delete(
        &gw,
        &format!("/admin/databases/{db}?confirm={db}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_or_an_offboarding_a_stopped_migrator_left_is_finished_at_start() {
    let mut gw = Gateway::start(&[]);
    let p = new_platform();
    let db = register(&gw, &p, Some("t1")).await;
    let q = new_platform();
    let qdb = register(&gw, &q, Some("t1")).await;
    let catalog = gw.catalog().await;
    gw.kill_migrator();
    // as a migrator that stopped half-way leaves them: a free lease
    catalog
        .execute(
            "UPDATE databases SET state = 'dropping', lease = 2147000001 WHERE name = $1",
            &[&db],
        )
        .await
        .unwrap();
    catalog
        .execute(
            "UPDATE platforms SET offboarding_since = now() WHERE name = $1",
            &[&q],
        )
        .await
        .unwrap();
    // while dropping, nothing reaches it
    let (s, _) = call(&gw, &p, "t1", "ping").await;
    assert_eq!(s, 404);
    gw.restart_migrator();
    assert!(!database_exists(&db).await);
    assert_eq!(catalog_state(&gw, &db).await, None);
    assert!(!database_exists(&qdb).await);
    let left: i64 = catalog
        .query_one("SELECT count(*) FROM platforms WHERE name = $1", &[&q])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    let r = last_record(&gw, &db, None).await;
    assert_eq!(
        (r["operation"].as_str(), r["status"].as_str()),
        (Some("drop"), Some("dropped")),
        "{r}"
    );
    assert_eq!(r["requested_by"], "migrator", "{r}");
    // an offboarding finished at start backs up what it drops
    let r = last_record(&gw, &qdb, None).await;
    assert!(
        r["counts"]["backup"]
            .as_str()
            .is_some_and(|f| f.ends_with(".dump")),
        "{r}"
    );
    assert!(gw.log().contains("finished the drop of"), "{}", gw.log());
}
