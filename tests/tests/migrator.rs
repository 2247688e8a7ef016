//! End-to-end tests of the migrator through the router: register, migrate,
//! function change detection, atomic failure, hostile archives, availability.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stonescriptdb_tests::{
    cluster, database_exists, ddl_count, new_platform, watch_ddl, Gateway, SchemaDir,
};
use tokio_postgres::Client;

const FUNCTIONS: u64 = 24;

fn report(body: &Value) -> &Value {
    &body["databases"][0]
}

/// The named counters of a deployment report, in order, to compare in one
/// assertion.
fn counts(r: &Value, keys: &[&str]) -> Vec<Value> {
    keys.iter().map(|k| r[*k].clone()).collect()
}

/// Everything the deployment owns, to compare before/after a failed deploy.
async fn snapshot(db: &str) -> Vec<String> {
    let c = cluster().connect(db).await;
    let rows = c
        .query(
            "SELECT 'table ' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'S', 'i')
             UNION ALL SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
               FROM information_schema.columns WHERE table_schema = 'public'
             UNION ALL SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'
             UNION ALL SELECT 'migration ' || filename || ' ' || checksum FROM _stonescriptdb_gateway_migrations
             UNION ALL SELECT 'tracked ' || signature || ' ' || checksum FROM _stonescriptdb_gateway_functions
             UNION ALL SELECT 'changelog ' || count(*) FROM _stonescriptdb_gateway_changelog
             ORDER BY 1",
            &[],
        )
        .await
        .expect("snapshot");
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn register_realistic_schema_and_call_it() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let schema = SchemaDir::fixture("shop");
    let (s, b) = gw.register(&p, None, &schema).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "ready");
    let r = report(&b);
    assert_eq!(r["database"], format!("{p}_main"));
    assert_eq!(r["status"], "created");
    assert_eq!(r["extensions_installed"], 1, "{r}");
    assert_eq!(r["types_deployed"], 3, "{r}");
    assert_eq!(r["tables_created"], 9, "{r}");
    assert_eq!(r["migrations_applied"], 3, "{r}");
    assert_eq!(r["functions_created"], FUNCTIONS, "{r}");
    let seeded: Vec<(String, u64)> = r["seeders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["table"].as_str().unwrap().to_owned(),
                s["inserted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        seeded.contains(&("roles".into(), 3)) && seeded.contains(&("categories".into(), 2)),
        "{seeded:?}"
    );

    // The platform's functions are callable through the router.
    let (s, b) = gw.call(&p, "create_user", json!(["ann"])).await;
    assert_eq!(s, 200, "{b}");
    let user = b["rows"][0]["create_user"].as_str().unwrap().to_owned();
    let (_, b) = gw.call(&p, "user_role_names", json!([user])).await;
    assert_eq!(b["rows"][0]["user_role_names"], json!(["user"]));
    let (s, b) = gw
        .call(
            &p,
            "create_customer",
            json!({"p_email": "ann@example.com", "p_city": "Oslo"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let customer = b["rows"][0]["create_customer"].clone();
    let (_, b) = gw
        .call(
            &p,
            "create_product",
            json!(["Book", 12.5, 2, "paper", "new"]),
        )
        .await;
    let product = b["rows"][0]["create_product"].clone();
    let (_, b) = gw.call(&p, "create_order", json!([customer])).await;
    let order = b["rows"][0]["create_order"].clone();
    let (s, b) = gw
        .call(&p, "add_order_item", json!([order, product, 3]))
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = gw.call(&p, "order_summary", json!([order])).await;
    assert_eq!(b["rows"][0]["total"], json!(37.50), "{b}");
    assert_eq!(b["rows"][0]["status"], "pending");
    let (_, b) = gw.call(&p, "audit_count", json!(["orders"])).await;
    assert_eq!(
        b["rows"][0]["audit_count"], 1,
        "trigger from a migration fired: {b}"
    );
    let (s, b) = gw.call(&p, "create_customer", json!([""])).await;
    assert_eq!(
        (s, b["cause"].clone()),
        (400, json!("email is required")),
        "{b}"
    );

    // Tracking tables hold what was deployed.
    let c = cluster().connect(&format!("{p}_main")).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM _stonescriptdb_gateway_functions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n as u64, FUNCTIONS);
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM _stonescriptdb_gateway_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    // admin listing and create-tenant with the stored schema
    let (s, b) = gw.get(&format!("/admin/databases?platform={p}")).await;
    assert_eq!(
        (s, b["databases"].clone()),
        (200, json!([format!("{p}_main")])),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": p, "tenant_id": "acme"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(report(&b)["functions_created"], FUNCTIONS);
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": "acme", "function": "count_roles"}),
        )
        .await;
    assert_eq!(
        (s, b["rows"][0]["count_roles"].clone()),
        (200, json!(3)),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": p, "tenant_id": "acme"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("database_already_exists")),
        "{b}"
    );
}

#[tokio::test]
async fn reregister_is_idempotent_and_runs_no_ddl() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let schema = SchemaDir::fixture("shop");
    let (s, b) = gw.register(&p, None, &schema).await;
    assert_eq!(s, 200, "{b}");
    let watch = watch_ddl(&format!("{p}_main")).await;
    let (s, b) = gw.register(&p, None, &schema).await;
    assert_eq!(s, 200, "{b}");
    let r = report(&b);
    assert_eq!(r["status"], "unchanged", "{r}");
    assert_eq!(r["functions_unchanged"], FUNCTIONS, "{r}");
    assert_eq!(r["migrations_skipped"], 3);
    assert_eq!(
        r["seeders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["inserted"].as_u64().unwrap())
            .sum::<u64>(),
        0
    );
    assert_eq!(ddl_count(&watch).await, 0, "re-register ran DDL");
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ddl_count(&watch).await, 0, "unchanged migrate ran DDL");
}

#[tokio::test]
async fn function_changes_are_detected_precisely() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);

    // whitespace, comments and keyword case only: nothing to do
    let ping = "-- liveness\ncreate or replace function PING()\n   returns text\n   language SQL immutable\nas $$\n  select 'pong'   -- same\n$$;\n";
    schema.set("functions/ping.pssql", ping);
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(report(&b)["functions_updated"], 0, "{b}");
    assert_eq!(report(&b)["functions_unchanged"], FUNCTIONS);

    // a real body change: exactly one update
    schema.set("functions/ping.pssql", "CREATE OR REPLACE FUNCTION ping() RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$ SELECT 'PONG' $$;");
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    let r = report(&b);
    assert_eq!(
        counts(r, &["functions_updated", "functions_unchanged"]),
        [json!(1), json!(FUNCTIONS - 1)],
        "{r}"
    );
    let (_, b) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(b["rows"][0]["ping"], "PONG");

    // signature change: the old one is dropped, the new one created; /call follows
    schema.set(
        "functions/ping.pssql",
        "CREATE OR REPLACE FUNCTION ping(p_echo TEXT) RETURNS TABLE (reply TEXT) LANGUAGE sql IMMUTABLE AS $$ SELECT 'pong ' || p_echo $$;",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    let r = report(&b);
    assert_eq!(
        counts(r, &["functions_created", "functions_dropped"]),
        [json!(1), json!(1)],
        "{r}"
    );
    let (s, b) = gw.call(&p, "ping", json!(["x"])).await;
    assert_eq!(
        (s, b["rows"].clone()),
        (200, json!([{"reply": "pong x"}])),
        "{b}"
    );
    let (s, _) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(s, 400, "old signature is gone");

    // return type change with the same arguments: DROP + CREATE under the hood
    schema.set("functions/audit_count.pssql", "CREATE OR REPLACE FUNCTION audit_count(p_entity TEXT) RETURNS TEXT LANGUAGE sql STABLE AS $$ SELECT count(*)::text FROM audit_log WHERE entity = p_entity $$;");
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(report(&b)["functions_updated"], 1, "{b}");
    let (_, b) = gw.call(&p, "audit_count", json!(["orders"])).await;
    assert_eq!(b["rows"][0]["audit_count"], "0");

    // removed from functions/: dropped; a function a migration created stays
    schema.remove("functions/ping.pssql");
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(report(&b)["functions_dropped"], 1, "{b}");
    let (s, _) = gw.call(&p, "ping", json!(["x"])).await;
    assert_eq!(s, 404);
    let c = cluster().connect(&format!("{p}_main")).await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname = 'audit_orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the migration's trigger function must not be dropped");
}

#[tokio::test]
async fn a_function_dropped_by_hand_is_recreated_by_the_next_migrate() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    let c = cluster().connect(&format!("{p}_main")).await;
    c.batch_execute("DROP FUNCTION ping()").await.unwrap();
    assert_eq!(gw.call(&p, "ping", json!([])).await.0, 404);

    // same folder, same checksums: the tracked signature no longer exists,
    // so the function is deployed again and only it
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    let r = report(&b);
    assert_eq!(
        counts(r, &["functions_created", "functions_unchanged"]),
        [json!(1), json!(FUNCTIONS - 1)],
        "{r}"
    );
    let (s, b) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["ping"].clone()),
        (200, json!("pong")),
        "{b}"
    );
}

#[tokio::test]
async fn broken_migration_leaves_the_database_exactly_as_it_was() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    let db = format!("{p}_main");
    let before = snapshot(&db).await;
    schema
        .set("migrations/004_add_wishlist.pssql", "CREATE TABLE wishlist (id SERIAL PRIMARY KEY, product_id INT REFERENCES products(id));")
        .set("migrations/005_broken.pssql", "ALTER TABLE customers ADD COLUMN loyalty INT;\nALTER TABLE nope ADD COLUMN x INT;")
        .set("migrations/006_after.pssql", "CREATE TABLE never (id INT);")
        .set("functions/ping.pssql", "CREATE OR REPLACE FUNCTION ping() RETURNS TEXT LANGUAGE sql AS $$ SELECT 'changed' $$;")
        .set("tables/j_extra.pssql", "CREATE TABLE extra (id INT PRIMARY KEY);");
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"], "migration_failed");
    assert_eq!(b["file"], "migrations/005_broken.pssql", "{b}");
    assert_eq!(b["statement"], 2, "{b}");
    assert_eq!(b["line"], 2, "{b}");
    assert_eq!(b["sqlstate"], "42P01", "{b}");
    assert!(b["cause"].as_str().unwrap().contains("nope"), "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("migrations/005_broken.pssql"),
        "{b}"
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "a failed deployment changed the database"
    );
    let (_, b) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(b["rows"][0]["ping"], "pong");

    // fixed: everything applies
    schema.set(
        "migrations/005_broken.pssql",
        "ALTER TABLE customers ADD COLUMN loyalty INT;",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(report(&b)["migrations_applied"], 3, "{b}");
    assert_eq!(report(&b)["tables_created"], 1, "{b}");

    // an applied migration edited afterwards is refused unless forced
    schema.set(
        "migrations/001_customer_notes.pssql",
        "ALTER TABLE customers ADD COLUMN IF NOT EXISTS notes VARCHAR(500);",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["file"], "migrations/001_customer_notes.pssql");
    let (s, b) = gw.migrate(&p, None, &schema, true).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn failed_register_of_a_new_database_drops_it() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    schema.set("functions/zz_broken.pssql", "CREATE FUNCTION zz_broken() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN nope; END $$ ;\nCREATE FUNCTION x( RETURNS;");
    let (s, b) = gw.register(&p, None, &schema).await;
    assert!(s == 400 || s == 409, "{s} {b}");
    assert!(!database_exists(&format!("{p}_main")).await);
    let mut schema = SchemaDir::fixture("shop");
    schema.set("extensions/no_such_extension.sql", "-- nope\n");
    let (s, b) = gw.register(&p, None, &schema).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("no_such_extension"),
        "{b}"
    );
    assert_eq!(b["file"], "extensions/no_such_extension.sql");
    assert!(!database_exists(&format!("{p}_main")).await);
}

fn raw_tar_gz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        {
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
        }
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn hostile_archives_are_refused_and_create_nothing() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let ok: &[u8] = b"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';";
    let bomb = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    };
    let many = {
        let names: Vec<String> = (0..10_000).map(|i| format!("functions/f{i}.sql")).collect();
        let entries: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> = names
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Regular, &b"SELECT 1;"[..], None))
            .collect();
        raw_tar_gz(&entries)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "symlink",
            raw_tar_gz(&[(
                "functions/f.sql",
                tar::EntryType::Symlink,
                b"",
                Some("/etc/passwd"),
            )]),
        ),
        (
            "dotdot",
            raw_tar_gz(&[(
                "postgresql/../../evil.sql",
                tar::EntryType::Regular,
                ok,
                None,
            )]),
        ),
        (
            "absolute",
            raw_tar_gz(&[("/etc/functions/f.sql", tar::EntryType::Regular, ok, None)]),
        ),
        ("not gzip", b"this is not a tar.gz".to_vec()),
        ("gzip bomb", bomb),
        ("10k entries", many),
    ];
    for (what, archive) in cases {
        let started = Instant::now();
        let (s, b) = gw.upload("/register", &[("platform", &p)], archive).await;
        assert!(s == 400 || s == 413, "{what}: {s} {b}");
        assert!(
            b["error"] == "invalid_request" || b["error"] == "payload_too_large",
            "{what}: {b}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            started.elapsed()
        );
        assert!(
            !database_exists(&format!("{p}_main")).await,
            "{what} created a database"
        );
    }
    assert!(
        !gw.data_dir.0.join(&p).exists(),
        "nothing written under DATA_DIR"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_keeps_working_while_the_migrator_is_down_or_busy() {
    let mut gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    gw.kill_migrator();
    let started = Instant::now();
    let (s, b) = gw.register(&p, None, &schema).await;
    assert_eq!(
        (s, b["error"].clone()),
        (503, json!("migrator_unavailable")),
        "{b}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "503 took {:?}",
        started.elapsed()
    );
    let (s, _) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(s, 200);
    // degraded, not unhealthy: a `curl -f /health` healthcheck keeps passing,
    // and the router stays ready for /call
    let (s, h) = gw.get("/health").await;
    assert_eq!(
        (s, &h["status"], &h["migrator"]),
        (200, &json!("degraded"), &json!("down")),
        "{h}"
    );
    let (s, r) = gw.get("/health/ready").await;
    assert_eq!((s, &r["status"]), (200, &json!("ready")), "{r}");
    gw.restart_migrator();
    let (_, h) = gw.get("/health").await;
    assert_eq!(
        (&h["status"], &h["migrator"]),
        (&json!("healthy"), &json!("up")),
        "{h}"
    );

    // a slow deployment does not hold up /call
    schema.set("migrations/004_slow.pssql", "SELECT pg_sleep(2);");
    let url = gw.url.clone();
    let archive = schema.tar_gz();
    let p2 = p.clone();
    let slow = tokio::spawn(async move {
        let form = reqwest::multipart::Form::new().text("platform", p2).part(
            "schema",
            reqwest::multipart::Part::bytes(archive).file_name("s.tar.gz"),
        );
        reqwest::Client::new()
            .post(format!("{url}/migrate"))
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..10 {
        let started = Instant::now();
        let (s, _) = gw.call(&p, "count_roles", json!([])).await;
        assert_eq!(s, 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "/call stalled: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(slow.await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_of_one_database_serialize() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    schema
        .set("migrations/004_slow_add.pssql", "SELECT pg_sleep(1);\nALTER TABLE products ADD COLUMN sku TEXT;")
        .set("migrations/005_counter.pssql", "CREATE TABLE applied_marks (at timestamptz DEFAULT clock_timestamp());\nINSERT INTO applied_marks DEFAULT VALUES;");
    let (a, b) = tokio::join!(
        gw.migrate(&p, None, &schema, false),
        gw.migrate(&p, None, &schema, false)
    );
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    let applied = [&a.1, &b.1]
        .iter()
        .map(|r| report(r)["migrations_applied"].as_u64().unwrap())
        .collect::<Vec<_>>();
    assert!(
        applied.contains(&2) && applied.contains(&0),
        "exactly one applied them: {applied:?}"
    );
    let c = cluster().connect(&format!("{p}_main")).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM applied_marks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn migrate_all_databases_of_a_platform_reports_each() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    assert_eq!(gw.register(&p, Some("t1"), &schema).await.0, 200);
    assert_eq!(gw.register(&p, Some("t2"), &schema).await.0, 200);
    schema.set(
        "migrations/004_x.pssql",
        "ALTER TABLE roles ADD COLUMN description TEXT;",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    let dbs: Vec<&str> = b["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap())
        .collect();
    assert_eq!(
        dbs,
        [format!("{p}_main"), format!("{p}_t1"), format!("{p}_t2")]
    );
    assert!(
        b["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["migrations_applied"] == 1),
        "{b}"
    );
    // one tenant broken by hand: reported, the others still migrate
    let c = cluster().connect(&format!("{p}_t1")).await;
    c.batch_execute("ALTER TABLE roles ADD COLUMN code TEXT")
        .await
        .unwrap();
    schema.set(
        "migrations/005_y.pssql",
        "ALTER TABLE roles ADD COLUMN code TEXT;",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 409, "{b}");
    let results = b["details"]["databases"].as_array().unwrap();
    let status: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["updated", "failed", "updated"], "{b}");
    assert_eq!(results[1]["error"]["sqlstate"], "42701");
    assert_eq!(b["details"]["status"], "partial");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of 3 databases failed"),
        "{b}"
    );
    let (s, b) = gw.migrate(&p, Some("nope"), &schema, false).await;
    assert_eq!((s, b["error"].clone()), (404, json!("database_not_found")));
    // a change every database refuses: the summary says so, and each failed
    // database carries its classification and plan
    schema.remove("migrations/005_y.pssql");
    schema.set(
        "tables/g_roles.pssql",
        "CREATE TABLE roles (id INT PRIMARY KEY);",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["details"]["status"], "failed", "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("3 of 3")
            && b["message"].as_str().unwrap().contains("0 were migrated"),
        "{b}"
    );
    for r in b["details"]["databases"].as_array().unwrap() {
        assert_eq!(r["error"]["error"], "schema_validation_failed", "{r}");
        assert!(
            !r["schema_validation"]["dataloss_changes"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{r}"
        );
        assert!(!r["plan"].as_array().unwrap().is_empty(), "{r}");
    }
    // one database: the 409 carries the schema_validation object clients read
    let (s, b) = gw.migrate(&p, Some("t2"), &schema, false).await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("schema_validation_failed")),
        "{b}"
    );
    assert!(
        !b["schema_validation"]["dataloss_changes"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{b}"
    );
}

#[tokio::test]
async fn statements_refused_in_a_transaction_run_after_commit() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    schema.set(
        "migrations/004_concurrent_index.pssql",
        "ALTER TABLE products ADD COLUMN sku TEXT;\nCREATE INDEX CONCURRENTLY idx_products_sku ON products (sku);",
    );
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        report(&b)["deferred_statements"],
        json!(["migrations/004_concurrent_index.pssql#2"]),
        "{b}"
    );
    let c = cluster().connect(&format!("{p}_main")).await;
    let valid: bool = c
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_products_sku'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    // recorded like any migration: not run again
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(report(&b)["migrations_applied"], 0);
}

/// Backends of `db` running the test's 60 s sleep.
async fn slow_statements(admin: &Client, db: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep(60)%'",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_migrator_mid_deployment_changes_nothing_and_releases_the_lock() {
    let mut gw = Gateway::start(&[]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    let db = format!("{p}_main");
    let before = snapshot(&db).await;
    schema
        .set(
            "migrations/004_first.pssql",
            "CREATE TABLE half_done (id INT);",
        )
        .set("migrations/005_slow.pssql", "SELECT pg_sleep(60);");
    let url = gw.url.clone();
    let archive = schema.tar_gz();
    let p2 = p.clone();
    let slow = tokio::spawn(async move {
        let form = reqwest::multipart::Form::new().text("platform", p2).part(
            "schema",
            reqwest::multipart::Part::bytes(archive).file_name("s.tar.gz"),
        );
        reqwest::Client::new()
            .post(format!("{url}/migrate"))
            .multipart(form)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // wait until the slow statement runs, then kill the migrator
    let admin = cluster().connect("postgres").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = slow_statements(&admin, &db).await;
        if n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow migration never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.kill_migrator();
    let answer = slow.await.unwrap();
    assert!(
        !matches!(answer, Ok(200)),
        "a killed deployment cannot have succeeded: {answer:?}"
    );
    // PostgreSQL stops the orphaned statement and rolls back within seconds
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = slow_statements(&admin, &db).await;
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed migrator's statement keeps running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        snapshot(&db).await,
        before,
        "a killed deployment left changes behind"
    );
    // the lock is free: the next deployment (without the slow migration) succeeds at once
    gw.restart_migrator();
    schema.set("migrations/005_slow.pssql", "SELECT 1;");
    let started = Instant::now();
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(report(&b)["migrations_applied"], 2);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for a stale lock: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_blocked_by_a_busy_table_fails_cleanly_instead_of_stalling_calls() {
    let gw = Gateway::start(&[("DEPLOY_LOCK_TIMEOUT_MS", "500")]);
    let p = new_platform();
    let mut schema = SchemaDir::fixture("shop");
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    let db = format!("{p}_main");
    // a long transaction holds a lock that ALTER TABLE roles has to wait for
    let holder = cluster().connect(&db).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE roles IN ROW EXCLUSIVE MODE;")
        .await
        .unwrap();
    schema.set(
        "migrations/004_roles.pssql",
        "ALTER TABLE roles ADD COLUMN description TEXT;",
    );
    let started = Instant::now();
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["sqlstate"], "55P03", "{b}");
    assert_eq!(b["file"], "migrations/004_roles.pssql");
    assert!(started.elapsed() < Duration::from_secs(10));
    // readers of the table were never queued behind the waiting ALTER
    let (s, _) = gw.call(&p, "count_roles", json!([])).await;
    assert_eq!(s, 200);
    holder.batch_execute("COMMIT").await.unwrap();
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
}

/// An `extensions/` file named after a well-known alias installs the real
/// extension (`pgvector.sql` is `vector`), and a near miss fails naming the
/// extension the server does offer; neither leaves a database behind.
#[tokio::test]
async fn extension_files_resolve_aliases_and_name_near_misses() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = SchemaDir::fixture("shop");
    s.set("extensions/pgvector.sql", "-- the pgvector project\n");
    let (st, b) = gw.register(&p, None, &s).await;
    if st == 200 {
        // a server with pgvector installed: the extension is "vector"
        let c = cluster().connect(&format!("{p}_main")).await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'vector'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    } else {
        // Debian 12 ships no pgvector: the message names PostgreSQL's name
        assert_eq!(
            (st, b["error"].as_str()),
            (409, Some("migration_failed")),
            "{b}"
        );
        let m = b["message"].as_str().unwrap();
        assert!(m.contains("extension \"vector\" is not available"), "{b}");
        assert!(!database_exists(&format!("{p}_main")).await);
    }
    let p = new_platform();
    let mut s = SchemaDir::fixture("shop");
    s.set("extensions/hstor.sql", "");
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 409, "{b}");
    let m = b["message"].as_str().unwrap();
    assert!(
        m.contains("\"hstor\" is not available") && m.contains("offers \"hstore\""),
        "{b}"
    );
    assert!(!database_exists(&format!("{p}_main")).await);
}

/// Files in subfolders of a schema folder are deployed, in path order;
/// migrations are tracked by their path in `migrations/`, so the same file
/// name in two subfolders is two migrations, each applied once.
#[tokio::test(flavor = "multi_thread")]
async fn files_in_subfolders_are_deployed_and_tracked_by_path() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = SchemaDir {
        files: Default::default(),
    };
    s.set("tables/core/users.sql", "CREATE TABLE users (id int PRIMARY KEY, name text);\n")
        .set("migrations/2024/001.sql", "INSERT INTO users VALUES (1, 'ada');\n")
        .set("migrations/2025/001.sql", "INSERT INTO users VALUES (2, 'bob');\n")
        .set(
            "functions/users/get.pssql",
            "CREATE FUNCTION get_user(uid int) RETURNS text LANGUAGE sql AS $$ SELECT name FROM users WHERE id = uid $$;\n",
        )
        .set(
            "functions/users/admin/count.pssql",
            "CREATE FUNCTION count_users() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM users $$;\n",
        );
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    let (_, b) = gw.call(&p, "get_user", json!([2])).await;
    assert_eq!(b["rows"][0]["get_user"], "bob", "{b}");
    let (_, b) = gw.call(&p, "count_users", json!([])).await;
    assert_eq!(b["rows"][0]["count_users"], 2, "{b}");
    let c = cluster().connect(&format!("{p}_main")).await;
    let applied: Vec<String> = c
        .query(
            "SELECT filename FROM _stonescriptdb_gateway_migrations ORDER BY filename",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied, ["2024/001.sql", "2025/001.sql"]);
    // again: each migration once
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let (_, b) = gw.call(&p, "count_users", json!([])).await;
    assert_eq!(b["rows"][0]["count_users"], 2, "{b}");
    // a function file moved out of its subfolder is dropped no more
    s.remove("functions/users/admin/count.pssql");
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let (st, _) = gw.call(&p, "count_users", json!([])).await;
    assert_eq!(st, 404, "a function removed from its subfolder is dropped");
}
