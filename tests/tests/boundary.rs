//! The gateway at its seams: between platforms whose names share
//! a prefix, between the migrator and the router (freshness after a
//! deployment, a migrator killed between its commit and its announcement),
//! between a request and the contract (unknown fields, path parameters,
//! methods), and between a dry run and the deployment it previews.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, database_exists, new_platform, Gateway, SchemaDir};

/// A small schema: a table, functions that say who runs them.
fn app_schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/notes.sql",
        "CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL);",
    )
    .set(
        "functions/whoami.sql",
        "CREATE OR REPLACE FUNCTION whoami() RETURNS TEXT LANGUAGE sql AS $$ SELECT current_user::text $$;",
    )
    .set(
        "functions/is_super.sql",
        "CREATE OR REPLACE FUNCTION is_super() RETURNS BOOLEAN LANGUAGE sql AS $$ SELECT rolsuper FROM pg_roles WHERE rolname = current_user $$;",
    );
    s
}

#[tokio::test]
async fn a_shared_name_prefix_never_crosses_platforms() {
    let gw = Gateway::start(&[]);
    let myapp = new_platform();
    let admin = format!("{myapp}_admin");
    // a multi-service stack: myapp_admin registers first, then myapp
    let mut admin_schema = app_schema();
    admin_schema.set(
        "functions/admin_only.sql",
        "CREATE OR REPLACE FUNCTION admin_only() RETURNS TEXT LANGUAGE sql AS $$ SELECT 'admin' $$;",
    );
    assert_eq!(gw.register(&admin, None, &admin_schema).await.0, 200);
    assert_eq!(gw.register(&myapp, None, &app_schema()).await.0, 200);

    // myapp + tenant admin_main names myapp_admin_main: not myapp's
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": myapp, "tenant_id": "admin_main", "function": "whoami"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": myapp, "database": format!("{admin}_main"), "function": "whoami"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
    // ...and answers exactly like a database that does not exist
    let (s2, b2) = gw
        .post(
            "/call",
            &json!({"platform": myapp, "tenant_id": "nobody_here", "function": "whoami"}),
        )
        .await;
    assert_eq!(s2, 404);
    assert_eq!(
        b["message"]
            .as_str()
            .unwrap()
            .replace(&format!("{admin}_main"), "X"),
        b2["message"]
            .as_str()
            .unwrap()
            .replace(&format!("{myapp}_nobody_here"), "X")
    );
    // myapp_admin's own calls run as its app role, never as superuser
    let (s, b) = gw.call(&admin, "whoami", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["whoami"].clone()),
        (200, json!(format!("sdg_{admin}_app"))),
        "{b}"
    );
    let (_, b) = gw.call(&admin, "is_super", json!([])).await;
    assert_eq!(b["rows"][0]["is_super"], false, "{b}");

    // myapp cannot create, register into, or migrate myapp_admin's database
    let (s, b) = gw.register(&myapp, Some("admin_main"), &app_schema()).await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("database_already_exists")),
        "{b}"
    );
    assert!(
        !b["message"]
            .as_str()
            .unwrap()
            .contains(&format!("platform {admin}")),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": myapp, "tenant_id": "admin_main"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("database_already_exists")),
        "{b}"
    );
    let (s, b) = gw
        .migrate(&myapp, Some("admin_main"), &app_schema(), true)
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
    // a fleet /migrate of myapp touches myapp's databases only
    let (s, b) = gw.migrate(&myapp, None, &app_schema(), true).await;
    assert_eq!(s, 200, "{b}");
    let touched: Vec<&str> = b["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["database"].as_str().unwrap())
        .collect();
    assert_eq!(touched, [format!("{myapp}_main")]);
    let (s, b) = gw.call(&admin, "admin_only", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["admin_only"].clone()),
        (200, json!("admin")),
        "{b}"
    );
    // listings are per owner, not per prefix
    let (_, b) = gw.get(&format!("/admin/databases?platform={myapp}")).await;
    assert_eq!(b["databases"], json!([format!("{myapp}_main")]), "{b}");
}

#[tokio::test]
async fn dry_runs_have_the_rights_of_the_deployment_they_preview() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &app_schema()).await.0, 200);
    let marker = format!("/tmp/sdg-dry-run-{p}");
    let _ = std::fs::remove_file(&marker);
    // PostgreSQL refuses the first as the platform's role; the reader
    // refuses the second before anything runs (sql::guard)
    let evil = [
        (
            format!("COPY (SELECT 1) TO PROGRAM 'touch {marker}';"),
            (409, json!("42501")),
        ),
        (
            format!("CREATE ROLE {p}_evil SUPERUSER;"),
            (400, json!(null)),
        ),
    ];
    for (sql, expected) in &evil {
        let mut s = app_schema();
        s.set("migrations/001_evil.sql", sql);
        // an existing database; one that does not exist yet (deployed into
        // a throwaway one); a platform that does not exist yet
        let newcomer = new_platform();
        for (path, fields) in [
            ("/migrate", vec![("platform", p.as_str())]),
            (
                "/register",
                vec![("platform", p.as_str()), ("tenant_id", "fresh")],
            ),
            ("/register", vec![("platform", newcomer.as_str())]),
        ] {
            let mut fields = fields.clone();
            fields.push(("dry_run", "true"));
            let (st, b) = gw.upload(path, &fields, s.tar_gz()).await;
            assert_eq!(
                &(st, b["sqlstate"].clone()),
                expected,
                "{path} {fields:?} {sql}: {b}"
            );
            // the error names the database the caller asked for, not the throwaway one
            if st == 409 {
                assert!(
                    b["database"].as_str().unwrap().starts_with(fields[0].1),
                    "{b}"
                );
            }
        }
        assert!(!database_exists(&format!("{newcomer}_main")).await);
    }
    assert!(
        !std::path::Path::new(&marker).exists(),
        "a dry run ran COPY TO PROGRAM"
    );
    let admin = cluster().connect("postgres").await;
    let leftovers: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname LIKE '\\_sdg\\_dry\\_%' OR rolname = $1)
                  + (SELECT count(*) FROM pg_database WHERE datname LIKE '\\_sdg\\_dry\\_%')",
            &[&format!("{p}_evil")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "a dry run left a role or a database behind");

    // a harmless dry run of a new database answers the plan, validated by
    // PostgreSQL, and creates nothing
    let (st, b) = gw
        .upload(
            "/register",
            &[
                ("platform", &p),
                ("tenant_id", "fresh"),
                ("dry_run", "true"),
            ],
            app_schema().tar_gz(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["databases"][0]["status"], "would_create", "{b}");
    assert!(
        b["databases"][0]["plan"].as_array().unwrap().len() >= 2,
        "{b}"
    );
    assert!(!database_exists(&format!("{p}_fresh")).await);
    // dry_run exists on /database/create and /v2/migrate too, and changes nothing
    let v2 = gw.register_platform().await;
    let (st, _) = gw
        .upload(
            &format!("/platform/{v2}/schema"),
            &[("schema_name", "tenant_db")],
            app_schema().tar_gz(),
        )
        .await;
    assert_eq!(st, 201);
    let (st, b) = gw
        .post(
            "/database/create",
            &json!({"platform": v2, "schema_name": "tenant_db", "database_id": "x1", "dry_run": true}),
        )
        .await;
    assert_eq!(
        (st, b["status"].clone()),
        (200, json!("would_create")),
        "{b}"
    );
    assert!(!database_exists(&format!("{v2}_tenant_db_x1")).await);
    let (st, _) = gw
        .post(
            "/database/create",
            &json!({"platform": v2, "schema_name": "tenant_db", "database_id": "x1"}),
        )
        .await;
    assert_eq!(st, 201);
    let mut changed = app_schema();
    changed.set(
        "migrations/002_more.sql",
        "ALTER TABLE notes ADD COLUMN extra TEXT;",
    );
    gw.upload(
        &format!("/platform/{v2}/schema"),
        &[("schema_name", "tenant_db")],
        changed.tar_gz(),
    )
    .await;
    let (st, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": v2, "schema_name": "tenant_db", "dry_run": true}),
        )
        .await;
    assert_eq!((st, b["status"].clone()), (200, json!("dry_run")), "{b}");
    let c = cluster().connect(&format!("{v2}_tenant_db_x1")).await;
    let extra: i64 = c
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'extra'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(extra, 0, "a dry run changed the database");
}

/// Drop a database of this test (an isolated catalog) when its gateway is gone.
async fn drop_database(name: &str) {
    let admin = cluster().connect("postgres").await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
}

/// A schema whose functions return a table's row type.
fn customers(columns: &str) -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/customers.sql",
        &format!("CREATE TABLE customers (id INT PRIMARY KEY, name TEXT{columns});"),
    )
    .set(
        "seeders/customers.sql",
        "INSERT INTO customers (id, name) VALUES (1, 'Ann'), (2, 'Bob');",
    )
    .set(
        "functions/get_customer.sql",
        "CREATE OR REPLACE FUNCTION get_customer(p INT) RETURNS customers LANGUAGE sql AS $$ SELECT * FROM customers WHERE id = p $$;",
    )
    .set(
        "functions/all_customers.sql",
        "CREATE OR REPLACE FUNCTION all_customers() RETURNS SETOF customers LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT * FROM customers ORDER BY id; END $$;",
    );
    s
}

/// The keys of the first row of a call, sorted.
async fn keys(gw: &Gateway, p: &str, function: &str, params: Value) -> Vec<String> {
    let (s, b) = gw.call(p, function, params).await;
    assert_eq!(s, 200, "{function}: {b}");
    let mut k: Vec<String> = b["rows"][0].as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn the_first_call_after_a_deployment_sees_the_new_row_shape() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &customers("")).await.0, 200);
    for _ in 0..5 {
        assert_eq!(
            keys(&gw, &p, "get_customer", json!([1])).await,
            ["id", "name"]
        );
        assert_eq!(
            keys(&gw, &p, "all_customers", json!([])).await,
            ["id", "name"]
        );
    }
    let (s, b) = gw
        .migrate(&p, None, &customers(", email TEXT, phone TEXT"), false)
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        keys(&gw, &p, "get_customer", json!([1])).await,
        ["email", "id", "name", "phone"]
    );
    assert_eq!(
        keys(&gw, &p, "all_customers", json!([])).await,
        ["email", "id", "name", "phone"]
    );
    // a forced column drop: the shape shrinks, and nothing fails
    for _ in 0..3 {
        keys(&gw, &p, "all_customers", json!([])).await;
        keys(&gw, &p, "get_customer", json!([2])).await;
    }
    let (s, b) = gw.migrate(&p, None, &customers(", email TEXT"), true).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        keys(&gw, &p, "get_customer", json!([1])).await,
        ["email", "id", "name"]
    );
    assert_eq!(
        keys(&gw, &p, "all_customers", json!([])).await,
        ["email", "id", "name"]
    );
}

/// Arguments travel as parameters typed by the catalog: after a deployment
/// changes a function's argument type, the first call is bound to the new
/// type (the router dropped its statements with the pool), never the old.
#[tokio::test]
async fn the_first_call_after_a_deployment_binds_the_new_argument_types() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = SchemaDir::default();
    s.set(
        "functions/scale.sql",
        "CREATE OR REPLACE FUNCTION scale(a integer) RETURNS integer LANGUAGE sql AS $$ SELECT a * 2 $$;",
    );
    assert_eq!(gw.register(&p, None, &s).await.0, 200);
    for _ in 0..3 {
        let (st, b) = gw.call(&p, "scale", json!([3])).await;
        assert_eq!((st, &b["rows"][0]["scale"]), (200, &json!(6)), "{b}");
    }
    // an integer argument refuses a fraction
    let (st, b) = gw.call(&p, "scale", json!(["2.5"])).await;
    assert_eq!((st, b["sqlstate"].as_str()), (400, Some("22P02")), "{b}");
    s.set(
        "functions/scale.sql",
        "CREATE OR REPLACE FUNCTION scale(a numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT a * 1.5 $$;",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = gw.call(&p, "scale", json!(["2.5"])).await;
    assert_eq!((st, &b["rows"][0]["scale"]), (200, &json!(3.75)), "{b}");
    let (st, b) = gw.call(&p, "scale", json!([3])).await;
    assert_eq!((st, &b["rows"][0]["scale"]), (200, &json!(4.5)), "{b}");
}

#[tokio::test]
async fn ddl_by_hand_is_picked_up_after_an_error_or_a_refresh() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &customers("")).await.0, 200);
    for _ in 0..3 {
        keys(&gw, &p, "all_customers", json!([])).await;
        keys(&gw, &p, "get_customer", json!([1])).await;
    }
    let db = cluster().connect(&format!("{p}_main")).await;
    // a dropped column: the stale statement fails, fresh connections answer
    db.batch_execute("ALTER TABLE customers DROP COLUMN name")
        .await
        .unwrap();
    assert_eq!(keys(&gw, &p, "all_customers", json!([])).await, ["id"]);
    assert_eq!(keys(&gw, &p, "get_customer", json!([1])).await, ["id"]);
    // an added column raises no error: the operator announces the change
    db.batch_execute("ALTER TABLE customers ADD COLUMN vip BOOLEAN")
        .await
        .unwrap();
    let (s, b) = gw
        .post("/admin/refresh", &json!({"database": format!("{p}_main")}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        keys(&gw, &p, "get_customer", json!([1])).await,
        ["id", "vip"]
    );
    // or NOTIFYs the catalog's channel by hand
    db.batch_execute("ALTER TABLE customers ADD COLUMN tier INT")
        .await
        .unwrap();
    let catalog = gw.catalog().await;
    catalog
        .batch_execute(&format!("NOTIFY stonescriptdb_gateway, '{p}_main'"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while keys(&gw, &p, "get_customer", json!([1])).await != ["id", "tier", "vip"] {
        assert!(
            Instant::now() < deadline,
            "a hand-written NOTIFY was not acted on"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrator_killed_between_commit_and_announcement_leaves_no_router_stale() {
    // an isolated catalog: this test holds its generation lock
    let catalog_db = format!("sdg_test_catalog_{}", std::process::id());
    let mut gw = Gateway::start(&[("CATALOG_DB", &catalog_db), ("CATALOG_POLL_MS", "300")]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &customers("")).await.0, 200);
    for _ in 0..3 {
        assert_eq!(
            keys(&gw, &p, "get_customer", json!([1])).await,
            ["id", "name"]
        );
    }
    // Hold the row every announcement must update: the migrator commits the
    // deployment, then waits here, and is killed.
    let mut hold = gw.catalog().await;
    let tx = hold.transaction().await.unwrap();
    tx.batch_execute("SELECT * FROM generation FOR UPDATE")
        .await
        .unwrap();
    let (url, platform) = (gw.url.clone(), p.clone());
    let migrate = tokio::spawn(async move {
        let mut form = reqwest::multipart::Form::new().text("platform", platform);
        form = form.part(
            "schema",
            reqwest::multipart::Part::bytes(customers(", email TEXT").tar_gz())
                .file_name("s.tar.gz"),
        );
        reqwest::Client::new()
            .post(format!("{url}/migrate"))
            .multipart(form)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    let db = cluster().connect(&format!("{p}_main")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = db
            .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' AND column_name = 'email'", &[])
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the deployment never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.kill_migrator();
    let _ = migrate.await;
    tx.rollback().await.unwrap();
    // No notification went out; the router sees the dead deployment when it polls.
    let deadline = Instant::now() + Duration::from_secs(3);
    while keys(&gw, &p, "get_customer", json!([1])).await != ["email", "id", "name"] {
        assert!(
            Instant::now() < deadline,
            "the router stayed stale past its poll interval"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the next migrator records what happened
    gw.restart_migrator();
    let (s, b) = gw
        .get(&format!("/admin/deployments?database={p}_main&limit=1"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["deployments"][0]["status"], "interrupted", "{b}");
    drop(gw);
    drop_database(&catalog_db).await;
}

#[tokio::test]
async fn requests_with_unknown_or_mistyped_fields_are_refused() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &app_schema()).await.0, 200);
    let v2 = gw.register_platform().await;
    // JSON bodies
    for (path, body, needle) in [
        (
            "/call",
            json!({"platform": p, "tenant": "t1", "function": "whoami"}),
            "tenant",
        ),
        (
            "/call",
            json!({"platform": p, "function": "whoami", "parms": [1]}),
            "parms",
        ),
        (
            "/v2/migrate",
            json!({"platform": v2, "schema_name": "tenant_db", "dryrun": true}),
            "dryrun",
        ),
        (
            "/v2/migrate",
            json!({"platform": v2, "schema_name": "tenant_db", "force": "yes"}),
            "force",
        ),
        (
            "/database/create",
            json!({"platform": v2, "schema_name": "tenant_db", "database_id": "a", "tenant": "b"}),
            "tenant",
        ),
        (
            "/admin/create-tenant",
            json!({"platform": p, "tenantid": "x"}),
            "tenantid",
        ),
        (
            "/admin/adopt",
            json!({"platform": p, "database": "x"}),
            "database",
        ),
        ("/admin/refresh", json!({"databases": ["x"]}), "databases"),
        (
            "/platform/register",
            json!({"platform": new_platform(), "name": "x"}),
            "name",
        ),
    ] {
        let (s, b) = gw.post(path, &body).await;
        assert_eq!(
            (s, b["error"].clone()),
            (400, json!("invalid_request")),
            "{path} {body}: {b}"
        );
        assert!(
            b["message"].as_str().unwrap().contains(needle),
            "{path} {body}: {b}"
        );
    }
    // forms: an unknown field is named, with the accepted ones; nothing deployed
    for path in ["/register", "/migrate"] {
        let mut s = app_schema();
        s.set(
            "migrations/001_x.sql",
            "CREATE TABLE typo_deployed (id INT);",
        );
        let (st, b) = gw
            .upload(path, &[("platform", &p), ("dryrun", "true")], s.tar_gz())
            .await;
        assert_eq!(
            (st, b["error"].clone()),
            (400, json!("invalid_request")),
            "{path}: {b}"
        );
        let m = b["message"].as_str().unwrap();
        assert!(
            m.contains("\"dryrun\"") && m.contains("dry_run"),
            "{path}: {b}"
        );
    }
    let db = cluster().connect(&format!("{p}_main")).await;
    assert!(db
        .query_opt(
            "SELECT 1 FROM pg_class WHERE relname = 'typo_deployed'",
            &[]
        )
        .await
        .unwrap()
        .is_none());
    let (st, b) = gw
        .upload(
            &format!("/platform/{v2}/schema"),
            &[("schema_nam", "tenant_db")],
            app_schema().tar_gz(),
        )
        .await;
    assert_eq!(
        (st, b["error"].clone()),
        (400, json!("invalid_request")),
        "{b}"
    );
    // query strings
    for path in [
        format!("/admin/databases?platfrom={p}"),
        format!("/platform/{v2}/databases?schem=tenant_db"),
        format!("/platform/{v2}/schemas?x=1"),
        "/platforms?all=1".to_string(),
    ] {
        let (s, b) = gw.get(&path).await;
        assert_eq!(
            (s, b["error"].clone()),
            (400, json!("invalid_request")),
            "{path}: {b}"
        );
    }
    // a form field given twice
    let (st, b) = gw
        .upload(
            "/migrate",
            &[("platform", &p), ("force", "false"), ("force", "true")],
            app_schema().tar_gz(),
        )
        .await;
    assert_eq!(
        (st, b["error"].clone()),
        (400, json!("invalid_request")),
        "{b}"
    );
}

#[tokio::test]
async fn path_parameters_and_methods_are_checked_before_anything_is_looked_up() {
    let gw = Gateway::start(&[]);
    let long = "%C3%A9".repeat(150);
    for path in [
        format!("/platform/{long}/databases"),
        "/platform/../databases".to_string(),
        "/platform/%2e%2e/schemas".to_string(),
        "/platform/My-App/schemas".to_string(),
    ] {
        // sent as written (an HTTP client would remove the dot segments)
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(format!("127.0.0.1:{}", gw.port)).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(resp.contains("invalid_request"), "{path}: {resp}");
        assert!(
            !resp.contains(&gw.data_dir.0.display().to_string()),
            "{path}: {resp}"
        );
    }
    // a method a route does not take: 405 with Allow, body or not
    let form = reqwest::multipart::Form::new().text("platform", "x").part(
        "schema",
        reqwest::multipart::Part::bytes(vec![0u8; 200_000]),
    );
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/register", gw.url))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = reqwest::Client::new()
        .delete(format!("{}/platforms", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
}

#[tokio::test]
async fn void_results_have_one_shape_in_every_language() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = SchemaDir::default();
    s.set(
        "functions/v.sql",
        "CREATE OR REPLACE FUNCTION void_sql() RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;
         CREATE OR REPLACE FUNCTION void_plpgsql(x INT) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM x; END $$;",
    );
    assert_eq!(gw.register(&p, None, &s).await.0, 200);
    let (st, b) = gw.call(&p, "void_sql", json!([])).await;
    assert_eq!(
        (st, b.clone()),
        (200, json!({"rows": [{"void_sql": null}], "row_count": 1})),
        "{b}"
    );
    let (st, b) = gw.call(&p, "void_plpgsql", json!([1])).await;
    assert_eq!(
        (st, b.clone()),
        (
            200,
            json!({"rows": [{"void_plpgsql": null}], "row_count": 1})
        ),
        "{b}"
    );
    // replaced by hand with another return type: re-read, never a stale shape
    let db = cluster().connect(&format!("{p}_main")).await;
    db.batch_execute("DROP FUNCTION void_sql(); CREATE FUNCTION void_sql() RETURNS int LANGUAGE sql AS $$ SELECT 7 $$;")
        .await
        .unwrap();
    let (st, b) = gw.call(&p, "void_sql", json!([])).await;
    assert_eq!(
        (st, b["rows"][0]["void_sql"].clone()),
        (200, json!(7)),
        "{b}"
    );
}

fn seeded() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/roles.sql",
        "CREATE TABLE roles (id INT PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
    )
    .set(
        "seeders/roles.sql",
        "INSERT INTO roles (id, name) VALUES (1, 'admin'), (2, 'user'), (3, 'guest');",
    );
    s
}

#[tokio::test]
async fn seeders_keep_their_promise_row_by_row() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (s, b) = gw.register(&p, None, &seeded()).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["databases"][0]["seeders"][0]["inserted"], 3, "{b}");
    let db = cluster().connect(&format!("{p}_main")).await;
    // a deleted seeded row fails the next /migrate, naming its key
    db.batch_execute("DELETE FROM roles WHERE id = 2")
        .await
        .unwrap();
    let (s, b) = gw.migrate(&p, None, &seeded(), false).await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("migration_failed")),
        "{b}"
    );
    let m = b["message"].as_str().unwrap();
    assert!(m.contains("roles") && m.contains("(id)=(2)"), "{b}");
    // force inserts it again
    let (s, b) = gw.migrate(&p, None, &seeded(), true).await;
    assert_eq!(s, 200, "{b}");
    let r = &b["databases"][0]["seeders"][0];
    assert_eq!(
        (
            r["inserted"].clone(),
            r["present"].clone(),
            r["missing"].clone()
        ),
        (json!(1), json!(3), json!(0)),
        "{b}"
    );
    let n: i64 = db
        .query_one("SELECT count(*) FROM roles", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // a row added to the seeder file is inserted; existing rows stay as they are
    db.batch_execute("UPDATE roles SET name = 'administrator' WHERE id = 1")
        .await
        .unwrap();
    let mut more = seeded();
    more.set(
        "seeders/roles.sql",
        "INSERT INTO roles (id, name) VALUES (1, 'admin'), (2, 'user'), (3, 'guest'), (4, 'auditor');",
    );
    let (s, b) = gw.migrate(&p, None, &more, false).await;
    assert_eq!(s, 200, "{b}");
    let r = &b["databases"][0]["seeders"][0];
    assert_eq!(
        (
            r["inserted"].clone(),
            r["present"].clone(),
            r["skipped"].clone()
        ),
        (json!(1), json!(4), json!(3)),
        "{b}"
    );
    let (name,): (String,) = {
        let r = db
            .query_one("SELECT name FROM roles WHERE id = 4", &[])
            .await
            .unwrap();
        (r.get(0),)
    };
    assert_eq!(name, "auditor");
    // a new table shipped with its seeder in a /migrate
    let mut with_new = more.clone();
    with_new
        .set(
            "tables/statuses.sql",
            "CREATE TABLE statuses (code TEXT PRIMARY KEY, label TEXT);",
        )
        .set(
            "seeders/statuses.sql",
            "INSERT INTO statuses VALUES ('a', 'Active'), ('i', 'Inactive');",
        );
    let (s, b) = gw.migrate(&p, None, &with_new, false).await;
    assert_eq!(s, 200, "{b}");
    let n: i64 = db
        .query_one("SELECT count(*) FROM statuses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "{b}");
    // an unchanged schema verifies and changes nothing
    let (s, b) = gw.migrate(&p, None, &with_new, false).await;
    assert_eq!(
        (s, b["databases"][0]["status"].clone()),
        (200, json!("unchanged")),
        "{b}"
    );

    // v2: seeders are verified on every database reported on, even one
    // already at the target version
    let v2 = gw.register_platform().await;
    gw.upload(
        &format!("/platform/{v2}/schema"),
        &[("schema_name", "tenant_db")],
        seeded().tar_gz(),
    )
    .await;
    for id in ["a", "b"] {
        let (s, b) = gw
            .post(
                "/database/create",
                &json!({"platform": v2, "schema_name": "tenant_db", "database_id": id}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": v2, "schema_name": "tenant_db"}),
        )
        .await;
    assert_eq!(
        (s, b["verification"]["seeders_verified"].clone()),
        (200, json!(true)),
        "{b}"
    );
    cluster()
        .connect(&format!("{v2}_tenant_db_b"))
        .await
        .batch_execute("DELETE FROM roles WHERE id = 3")
        .await
        .unwrap();
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": v2, "schema_name": "tenant_db"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["verification"]["seeders_verified"], false, "{b}");
    let missing: Vec<&Value> = b["seeder_validations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["missing"] == 1)
        .collect();
    assert_eq!(missing.len(), 1, "{b}");
    assert_eq!(missing[0]["missing_rows"], json!(["(id)=(3)"]), "{b}");
}

#[tokio::test]
async fn deploy_tokens_act_for_their_own_platform_only() {
    let (a, b) = (new_platform(), new_platform());
    let (ta, ta2, tb) = (
        "deploy-token-a-0000000001",
        "deploy-token-a-0000000002",
        "deploy-token-b-0000000001",
    );
    let admin = "admin-token-000000000001";
    let tokens = format!("{a}:{ta},{b}:{tb},{a}:{ta2}");
    let gw = Gateway::start(&[("DEPLOY_TOKENS", &tokens), ("ADMIN_TOKEN", admin)]);
    let upload = |path: &'static str, platform: String, token: Option<&'static str>| {
        let url = gw.url.clone();
        async move {
            let form = reqwest::multipart::Form::new()
                .text("platform", platform)
                .part(
                    "schema",
                    reqwest::multipart::Part::bytes(app_schema().tar_gz()).file_name("s.tar.gz"),
                );
            let mut req = reqwest::Client::new()
                .post(format!("{url}{path}"))
                .multipart(form);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(upload("/register", a.clone(), None).await.0, 401);
    assert_eq!(
        upload("/register", a.clone(), Some("not-a-configured-token-x"))
            .await
            .0,
        401
    );
    let (s, body) = upload("/register", b.clone(), Some(ta)).await;
    assert_eq!(
        (s, body["error"].clone()),
        (403, json!("forbidden")),
        "{body}"
    );
    assert_eq!(upload("/register", a.clone(), Some(ta)).await.0, 200);
    // rotation: the platform's second token works too
    assert_eq!(upload("/migrate", a.clone(), Some(ta2)).await.0, 200);
    assert_eq!(upload("/register", b.clone(), Some(tb)).await.0, 200);
    assert_eq!(upload("/migrate", b.clone(), Some(ta)).await.0, 403);
    let get = |path: String, token: &'static str| {
        let url = gw.url.clone();
        async move {
            let r = reqwest::Client::new()
                .get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(
        get(format!("/admin/databases?platform={b}"), ta).await.0,
        403
    );
    assert_eq!(
        get(format!("/admin/databases?platform={a}"), ta).await.0,
        200
    );
    let (s, body) = get("/platforms".into(), ta).await;
    assert_eq!(s, 200);
    assert_eq!(body["platforms"].as_array().unwrap().len(), 1, "{body}");
    // operator routes need the admin token
    let r = reqwest::Client::new()
        .post(format!("{}/admin/refresh", gw.url))
        .bearer_auth(ta)
        .json(&json!({"platform": a}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // who asked is recorded
    let (s, body) = get(format!("/admin/deployments?platform={a}"), admin).await;
    assert_eq!(s, 200, "{body}");
    let by: Vec<&str> = body["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["requested_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        by,
        ["deploy:a#2", "deploy:a"].map(|n| n.replace(":a", &format!(":{a}"))),
        "{body}"
    );
    assert!(
        body["deployments"][0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{body}"
    );
    // a client cannot forge its address
    let form = reqwest::multipart::Form::new()
        .text("platform", a.clone())
        .part(
            "schema",
            reqwest::multipart::Part::bytes(app_schema().tar_gz()).file_name("s.tar.gz"),
        );
    let r = reqwest::Client::new()
        .post(format!("{}/migrate", gw.url))
        .bearer_auth(ta)
        .header("x-stonescriptdb-peer", "10.9.8.7:1")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, body) = get(format!("/admin/deployments?platform={a}&limit=1"), admin).await;
    assert!(
        body["deployments"][0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{body}"
    );
    // /health names databases to the admin token only
    let (_, h) = gw.get("/health").await;
    assert_eq!(h["pools"]["databases"], json!({}), "{h}");
    gw.call(&a, "whoami", json!([])).await;
    let (_, h) = gw.get("/health").await;
    assert_eq!(h["pools"]["databases"], json!({}), "{h}");
    let (_, h) = get("/health".into(), admin).await;
    assert!(
        h["pools"]["databases"].get(format!("{a}_main")).is_some(),
        "{h}"
    );
}

/// A database made the way an older gateway made it (by hand here), with
/// one function, owned by `owner` (the admin role when `None`).
async fn legacy_database(name: &str, owner: Option<&str>) {
    let admin = cluster().connect("postgres").await;
    let owner_sql = owner.map(|o| format!(" OWNER \"{o}\"")).unwrap_or_default();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\"{owner_sql}"))
        .await
        .unwrap();
    let db = cluster().connect(name).await;
    db.batch_execute(
        "CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT);
         CREATE FUNCTION whoami() RETURNS TEXT LANGUAGE sql AS $$ SELECT current_user::text $$;
         CREATE FUNCTION add_note(b TEXT) RETURNS INT LANGUAGE sql AS $$ INSERT INTO notes (body) VALUES (b) RETURNING id $$;",
    )
    .await
    .unwrap();
    if let Some(o) = owner {
        db.batch_execute(&format!(
            "ALTER TABLE notes OWNER TO \"{o}\"; ALTER FUNCTION whoami() OWNER TO \"{o}\"; ALTER FUNCTION add_note(TEXT) OWNER TO \"{o}\";"
        ))
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn an_older_installation_is_imported_and_what_cannot_be_attributed_is_reported() {
    let data = stonescriptdb_tests::TempDir::new("legacy");
    let catalog_db = format!("sdg_test_upgrade_{}", std::process::id());
    let (pa, pb) = (new_platform(), new_platform());
    let pb_admin = format!("{pb}_admin");
    // pa: roles and a credentials file listing its database
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"sdg_{pa}_owner\" LOGIN PASSWORD 'old-owner-pw';
             CREATE ROLE \"sdg_{pa}_app\" LOGIN PASSWORD 'old-app-pw' IN ROLE \"sdg_{pa}_owner\";"
        ))
        .await
        .unwrap();
    legacy_database(&format!("{pa}_main"), Some(&format!("sdg_{pa}_owner"))).await;
    std::fs::create_dir_all(data.0.join("credentials")).unwrap();
    std::fs::write(
        data.0.join("credentials").join(format!("{pa}.json")),
        json!({"platform": pa, "owner_role": format!("sdg_{pa}_owner"), "owner_password": "old-owner-pw",
               "app_role": format!("sdg_{pa}_app"), "app_password": "old-app-pw",
               "databases": [format!("{pa}_main")]})
        .to_string(),
    )
    .unwrap();
    // pb and pb_admin: from before platform roles, known by their last v1 schema
    for p in [&pb, &pb_admin] {
        std::fs::create_dir_all(data.0.join(p).join("v1")).unwrap();
        std::fs::write(
            data.0.join(p).join("v1").join("schema.tar.gz"),
            app_schema().tar_gz(),
        )
        .unwrap();
    }
    legacy_database(&format!("{pb}_main"), None).await;
    legacy_database(&format!("{pb}_t1"), None).await;
    legacy_database(&format!("{pb_admin}_main"), None).await;
    // pc: a v2 registry with one stored schema version and one database
    let pc = new_platform();
    std::fs::create_dir_all(data.0.join(&pc).join("tenant_db")).unwrap();
    std::fs::write(
        data.0.join(&pc).join("tenant_db").join("v1.tar.gz"),
        app_schema().tar_gz(),
    )
    .unwrap();
    std::fs::write(
        data.0.join(&pc).join("platform.json"),
        json!({"name": pc, "registered_at": "2026-01-01T00:00:00Z",
               "schemas": {"tenant_db": {"versions": [{"version": 1, "checksum": "c1", "uploaded_at": "x",
                   "has_tables": true, "has_functions": true, "has_migrations": false, "has_seeders": false}]}},
               "databases": {format!("{pc}_tenant_db_1"): {"id": "1", "database_name": format!("{pc}_tenant_db_1"),
                   "schema_name": "tenant_db", "created_at": "x", "version": 1}}})
        .to_string(),
    )
    .unwrap();
    legacy_database(&format!("{pc}_tenant_db_1"), None).await;

    // --check-upgrade reports and changes nothing
    let out = std::process::Command::new(stonescriptdb_tests::binary("stonescriptdb-migrator"))
        .arg("--check-upgrade")
        .env_remove("DATABASE_URL")
        .envs(cluster().gateway_env())
        .env("DATA_DIR", &data.0)
        .env("CATALOG_DB", &catalog_db)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        format!("record {pa}_main as platform {pa}'s"),
        format!("record {pb}_main as platform {pb}'s"),
        format!("record {pb}_t1 as platform {pb}'s"),
        format!("record {pc}_tenant_db_1 as platform {pc}'s (v2; listed in {pc}'s v2 registry)"),
        // pb's tenant admin_main and pb_admin's main database are one name
        format!("NOT recorded: {pb_admin}_main could belong to {pb} or {pb_admin}"),
    ] {
        assert!(report.contains(&line), "missing {line:?} in\n{report}");
    }
    assert!(
        !database_exists(&catalog_db).await,
        "--check-upgrade created the catalog"
    );

    // the migrator imports it at start
    let data_dir = data.0.display().to_string();
    let gw = Gateway::start(&[("DATA_DIR", &data_dir), ("CATALOG_DB", &catalog_db)]);
    for (p, role) in [
        (&pa, format!("sdg_{pa}_app")),
        (&pb, format!("sdg_{pb}_app")),
    ] {
        let (s, b) = gw.call(p, "whoami", json!([])).await;
        assert_eq!(
            (s, b["rows"][0]["whoami"].clone()),
            (200, json!(role)),
            "{b}"
        );
        assert_eq!(gw.call(p, "add_note", json!(["x"])).await.0, 200);
    }
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": pb, "tenant_id": "t1", "function": "whoami"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // the ambiguous database is nobody's until an operator says whose
    let (s, _) = gw
        .post(
            "/call",
            &json!({"platform": pb, "tenant_id": "admin_main", "function": "whoami"}),
        )
        .await;
    assert_eq!(s, 404);
    assert_eq!(gw.call(&pb_admin, "whoami", json!([])).await.0, 404);
    gw.adopt(&pb_admin, &[&format!("{pb_admin}_main")]).await;
    let (s, b) = gw.call(&pb_admin, "whoami", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["whoami"].clone()),
        (200, json!(format!("sdg_{pb_admin}_app"))),
        "{b}"
    );
    let (s, _) = gw
        .post(
            "/call",
            &json!({"platform": pb, "tenant_id": "admin_main", "function": "whoami"}),
        )
        .await;
    assert_eq!(s, 404);
    assert!(gw.log().contains("upgrade import"));
    // the v2 registry came along: schema, database, and new databases from it
    let (s, b) = gw.get(&format!("/platform/{pc}/schemas")).await;
    assert_eq!((s, b["count"].clone()), (200, json!(1)), "{b}");
    let (s, b) = gw.get(&format!("/platform/{pc}/databases")).await;
    assert_eq!(
        (s, b["databases"][0]["id"].clone()),
        (200, json!("1")),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": pc, "database": format!("{pc}_tenant_db_1"), "function": "whoami"}),
        )
        .await;
    assert_eq!(
        (s, b["rows"][0]["whoami"].clone()),
        (200, json!(format!("sdg_{pc}_app"))),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": pc, "schema_name": "tenant_db", "database_id": "2"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // the last v1 schema came along: create-tenant works
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": pb, "tenant_id": "t2"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    drop(gw);
    drop_database(&catalog_db).await;
}

#[tokio::test]
async fn adoption_attributes_a_database_explicitly_and_hands_it_over() {
    let gw = Gateway::start(&[]);
    let (p, q) = (new_platform(), new_platform());
    let name = format!("legacy_{p}");
    legacy_database(&name, None).await;
    // not attributable by name: unreachable until adopted
    let (s, _) = gw
        .post(
            "/call",
            &json!({"platform": p, "database": name, "function": "whoami"}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, b) = gw
        .post("/admin/adopt", &json!({"platform": p, "databases": [name]}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["databases"][0]["kind"], "adopted", "{b}");
    assert!(
        b["databases"][0]["objects_reassigned"].as_u64().unwrap() >= 3,
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "database": name, "function": "add_note", "params": ["hi"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "database": name, "function": "whoami"}),
        )
        .await;
    assert_eq!(b["rows"][0]["whoami"], format!("sdg_{p}_app"), "{b}");
    // another platform cannot adopt it, nor reach it
    let (s, b) = gw
        .post("/admin/adopt", &json!({"platform": q, "databases": [name]}))
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("database_already_exists")),
        "{b}"
    );
    let (s, _) = gw
        .post(
            "/call",
            &json!({"platform": q, "database": name, "function": "whoami"}),
        )
        .await;
    assert_eq!(s, 404);
    // the gateway's own databases cannot be adopted; a missing one is 404
    for (db, status) in [
        ("stonescriptdb_gateway", 400),
        ("postgres", 400),
        ("no_such_db_here", 404),
    ] {
        let (s, b) = gw
            .post("/admin/adopt", &json!({"platform": p, "databases": [db]}))
            .await;
        assert_eq!(s, status, "{db}: {b}");
    }
}
