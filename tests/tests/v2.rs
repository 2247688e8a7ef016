//! End-to-end tests of the v2 stored-schema API (docs/API.md, "v2"): registry,
//! template-based database creation, fleet migration.

use std::time::Instant;

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, database_exists, new_platform, Gateway, SchemaDir};

async fn upload_schema(
    gw: &Gateway,
    platform: &str,
    name_field: &str,
    name: &str,
    file_field: &str,
    schema: &SchemaDir,
) -> (u16, Value) {
    let path = format!("/platform/{platform}/schema");
    gw.upload_as(&path, &[(name_field, name)], file_field, schema.tar_gz())
        .await
}

fn tenant_schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set("extensions/uuid-ossp.sql", "-- UUID generation\n")
        .set("types/order_status.pssql", "CREATE TYPE order_status AS ENUM ('pending', 'shipped');")
        .set("tables/orders.pssql", "CREATE TABLE orders (id SERIAL PRIMARY KEY, ref UUID NOT NULL DEFAULT uuid_generate_v4(), status order_status NOT NULL DEFAULT 'pending', total NUMERIC(10,2) NOT NULL DEFAULT 0);")
        .set("tables/roles.pssql", "CREATE TABLE roles (id INT PRIMARY KEY, name TEXT NOT NULL);")
        .set("migrations/001_index.pssql", "CREATE INDEX IF NOT EXISTS idx_orders_status ON orders (status);")
        .set("functions/create_order.pssql", "CREATE OR REPLACE FUNCTION create_order(p_total NUMERIC) RETURNS INT LANGUAGE sql AS $$ INSERT INTO orders (total) VALUES (p_total) RETURNING id $$;")
        .set("functions/order_count.pssql", "CREATE OR REPLACE FUNCTION order_count() RETURNS BIGINT LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders $$;")
        .set("seeders/roles.pssql", "INSERT INTO roles (id, name) VALUES (1, 'owner'), (2, 'staff');");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_workflow_examples() {
    let mut gw = Gateway::start(&[]);
    let p = new_platform();
    // 1. register the platform
    let (s, b) = gw.post("/platform/register", &json!({"platform": p})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b,
        json!({"status": "registered", "platform": p,
               "message": format!("Platform registered. Use POST /platform/{p}/schema to add schemas.")})
    );
    let (s, b) = gw.post("/platform/register", &json!({"platform": p})).await;
    // 409, what StoneScriptPHP's CLI expects (the v2 guide's 400 predates it)
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("platform_already_registered"))
    );
    assert_eq!(
        b["message"],
        format!("Platform '{p}' is already registered")
    );

    // 2. upload schemas (both field spellings)
    let (s, b) = upload_schema(
        &gw,
        &p,
        "schema_name",
        "tenant_db",
        "schema",
        &tenant_schema(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "registered");
    assert_eq!(b["schema_name"], "tenant_db");
    assert_eq!(
        (
            b["has_tables"].clone(),
            b["has_functions"].clone(),
            b["has_migrations"].clone()
        ),
        (json!(true), json!(true), json!(true))
    );
    assert_eq!(b["checksum"].as_str().unwrap().len(), 64);
    let (s, b) = upload_schema(
        &gw,
        &p,
        "name",
        "main_db",
        "file",
        &SchemaDir::fixture("shop"),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = upload_schema(
        &gw,
        "nosuchplatform",
        "name",
        "main_db",
        "file",
        &tenant_schema(),
    )
    .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("platform_not_found")),
        "{b}"
    );

    // the migrator restarts between steps: nothing is lost
    gw.restart_migrator();

    // 3. create databases on demand
    let started = Instant::now();
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "tenant_db", "database_id": "store_001"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    eprintln!(
        "first database (builds the template): {:?}",
        started.elapsed()
    );
    assert_eq!(b["status"], "created");
    assert_eq!(b["database_name"], format!("{p}_tenant_db_store_001"));
    assert_eq!(
        (
            b["extensions_installed"].clone(),
            b["types_deployed"].clone(),
            b["tables_created"].clone(),
            b["functions_deployed"].clone()
        ),
        (json!(1), json!(1), json!(2), json!(2)),
        "{b}"
    );
    assert_eq!(
        b["seeders"],
        json!([{"table": "roles", "file": "seeders/roles.pssql", "inserted": 2, "skipped": 0,
                "present": 2, "missing": 0}])
    );
    let started = Instant::now();
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "tenant_db", "database_id": "store_002"}),
        )
        .await;
    let one = started.elapsed();
    assert_eq!(s, 201, "{b}");
    eprintln!("creating one tenant database from the template: {one:?}");
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "tenant_db", "database_id": "store_001"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone(), b["database"].clone()),
        (
            409,
            json!("database_already_exists"),
            json!(format!("{p}_tenant_db_store_001"))
        )
    );
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "nope_db", "database_id": "x"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("schema_not_found")),
        "{b}"
    );
    let (s, _) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "main_db", "database_id": "main"}),
        )
        .await;
    assert_eq!(s, 201);

    // identical tracking tables whether cloned or deployed
    let c = cluster().connect(&format!("{p}_tenant_db_store_002")).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM _stonescriptdb_gateway_functions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    // /call reaches v2 databases by name, without a router restart
    let (s, b) = gw.post("/call", &json!({"platform": p, "database": format!("{p}_tenant_db_store_002"), "function": "create_order", "params": [9.5]})).await;
    assert_eq!(
        (s, b["rows"][0]["create_order"].clone()),
        (200, json!(1)),
        "{b}"
    );

    // listings
    let (_, b) = gw.get(&format!("/platform/{p}/schemas")).await;
    assert_eq!(b["count"], 2);
    assert_eq!(b["schemas"][1]["name"], "tenant_db");
    assert_eq!(b["schemas"][1]["has_seeders"], true);
    let (_, b) = gw
        .get(&format!("/platform/{p}/databases?schema=tenant_db"))
        .await;
    assert_eq!(b["count"], 2, "{b}");
    assert_eq!(b["databases"][0]["id"], "store_001");
    assert_eq!(b["databases"][0]["schema_name"], "tenant_db");
    assert!(b["databases"][0]["created_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let (_, b) = gw.get(&format!("/platform/{p}/databases")).await;
    assert_eq!(b["count"], 3);
    let (_, b) = gw.get("/platforms").await;
    let me = b["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == p.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        me,
        json!({"name": p, "kind": "v2", "schemas": 2, "databases": 3})
    );

    // 4. migrate every database of a schema type
    let mut v2 = tenant_schema();
    v2.set("migrations/002_note.pssql", "ALTER TABLE orders ADD COLUMN note TEXT;")
        .set("functions/order_count.pssql", "CREATE OR REPLACE FUNCTION order_count() RETURNS BIGINT LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders WHERE status <> 'shipped' $$;");
    assert_eq!(
        upload_schema(&gw, &p, "schema_name", "tenant_db", "schema", &v2)
            .await
            .0,
        201
    );
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "completed");
    assert_eq!(
        b["databases_updated"],
        json!([
            format!("{p}_tenant_db_store_001"),
            format!("{p}_tenant_db_store_002")
        ])
    );
    assert_eq!(b["migrations_applied"], 2);
    assert_eq!(b["functions_updated"], 2);
    assert_eq!(
        b["verification"],
        json!({"passed": true, "extensions_verified": true, "types_verified": true, "tables_verified": true, "seeders_verified": true})
    );
    assert_eq!(
        b["schema_validation"],
        json!({"safe_changes": [], "dataloss_changes": [], "incompatible_changes": []})
    );
    assert!(b["execution_time_ms"].is_u64());
    // again: already at the target version, skipped without touching them
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["databases_updated"], json!([]));
    assert!(
        b["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "skipped"),
        "{b}"
    );
    // one database
    let (s, b) = gw.post("/v2/migrate", &json!({"platform": p, "schema_name": "tenant_db", "database_id": "store_001", "force": true})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["results"].as_array().unwrap().len(), 1);
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db", "database_id": "store_999"}),
        )
        .await;
    assert_eq!((s, b["error"].clone()), (404, json!("database_not_found")));

    // a recorded database dropped by hand is reported, not hidden
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{p}_main_db_main\""))
        .await
        .unwrap();
    let (_, b) = gw.get(&format!("/platform/{p}/databases")).await;
    assert_eq!(
        b["inconsistencies"]["recorded_but_missing"],
        json!([format!("{p}_main_db_main")]),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_of_200_databases_created_then_migrated_in_one_call() {
    let gw = Gateway::start(&[("MIGRATE_CONCURRENCY", "4")]);
    let p = gw.register_platform().await;
    assert_eq!(
        upload_schema(
            &gw,
            &p,
            "schema_name",
            "tenant_db",
            "schema",
            &tenant_schema()
        )
        .await
        .0,
        201
    );
    let started = Instant::now();
    for i in 0..200 {
        let (s, b) = gw.post("/database/create", &json!({"platform": p, "schema_name": "tenant_db", "database_id": format!("t{i:03}")})).await;
        assert_eq!(s, 201, "{b}");
    }
    let create_200 = started.elapsed();
    eprintln!(
        "created 200 tenant databases in {create_200:?} ({:?} each)",
        create_200 / 200
    );

    let mut v2 = tenant_schema();
    v2.set(
        "migrations/002_note.pssql",
        "ALTER TABLE orders ADD COLUMN note TEXT;",
    );
    assert_eq!(
        upload_schema(&gw, &p, "schema_name", "tenant_db", "schema", &v2)
            .await
            .0,
        201
    );
    // one database broken by hand: it already has the column
    let broken = format!("{p}_tenant_db_t137");
    cluster()
        .connect(&broken)
        .await
        .batch_execute("ALTER TABLE orders ADD COLUMN note TEXT")
        .await
        .unwrap();

    // NDJSON progress: one line per database, then the summary
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/v2/migrate", gw.url))
        .header("Accept", "application/x-ndjson")
        .json(&json!({"platform": p, "schema_name": "tenant_db"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let migrate_200 = started.elapsed();
    eprintln!("migrated 200 tenant databases in {migrate_200:?}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 201);
    let summary = lines.last().unwrap();
    assert_eq!(summary["status"], "partial");
    assert_eq!(summary["databases_updated"].as_array().unwrap().len(), 199);
    let failed: Vec<&Value> = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["database"], broken.as_str());
    assert_eq!(failed[0]["error"]["sqlstate"], "42701");
    assert_eq!(failed[0]["error"]["file"], "migrations/002_note.pssql");
    assert_eq!(summary["verification"]["passed"], false);

    // the broken one is still behind; fix it and migrate again: only it is touched
    cluster()
        .connect(&broken)
        .await
        .batch_execute("ALTER TABLE orders DROP COLUMN note")
        .await
        .unwrap();
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["databases_updated"], json!([broken]));
    assert_eq!(b["verification"]["passed"], true);

    // stop_on_error and canary
    let mut v3 = v2.clone();
    v3.set(
        "migrations/003_boom.pssql",
        "ALTER TABLE nope ADD COLUMN x INT;",
    );
    assert_eq!(
        upload_schema(&gw, &p, "schema_name", "tenant_db", "schema", &v3)
            .await
            .0,
        201
    );
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db", "canary": true}),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let results = b["details"]["results"].as_array().unwrap();
    assert_eq!(
        results.iter().filter(|r| r["status"] == "failed").count(),
        1,
        "only the canary ran"
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| r["status"] == "not_attempted")
            .count(),
        199
    );
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db", "stop_on_error": true}),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let results = b["details"]["results"].as_array().unwrap();
    let failed = results.iter().filter(|r| r["status"] == "failed").count();
    assert!(
        (1..=4).contains(&failed),
        "at most the running ones failed: {failed}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r["status"] == "not_attempted")
            .count()
            >= 190
    );
    // nothing was half-applied
    let c = cluster().connect(&format!("{p}_tenant_db_t000")).await;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM _stonescriptdb_gateway_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    assert!(database_exists(&format!("{p}_tenant_db_t199")).await);
}

/// `stonescriptdb_migrator_sql_reads_total`, through the router's /metrics.
async fn sql_reads(gw: &Gateway) -> u64 {
    let (_, text) = gw.get("/metrics").await;
    let text = text.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("stonescriptdb_migrator_sql_reads_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sql_reads metric in {text}"))
}

/// A stored schema version is read once — when it is uploaded, or after a
/// restart by the first request that needs it — whatever number of
/// databases it reaches: migrating a version over 2N databases reads no more
/// SQL than migrating one over N, and a version read at upload is not read
/// again. (The schema changes a function only: no table is created or
/// retyped in an existing database.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_version_is_read_once_whatever_number_of_databases_it_reaches() {
    const N: usize = 2;
    let mut gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    let mut schema = SchemaDir::fixture("shop");
    let bump = |n: u32| {
        format!("CREATE OR REPLACE FUNCTION ping() RETURNS int LANGUAGE sql AS $$ SELECT {n} $$;")
    };
    schema.set("functions/ping.pssql", &bump(1));
    async fn upload(gw: &Gateway, p: &str, schema: &SchemaDir) {
        let (s, b) = upload_schema(gw, p, "schema_name", "tenant_db", "schema", schema).await;
        assert_eq!(s, 201, "{b}");
    }
    async fn create(gw: &Gateway, p: &str, ids: std::ops::Range<usize>) {
        for i in ids {
            let (s, b) = gw
                .post(
                    "/database/create",
                    &json!({"platform": p, "schema_name": "tenant_db", "database_id": format!("d{i}")}),
                )
                .await;
            assert_eq!(s, 201, "{b}");
        }
    }
    // the latest version migrated into every database; the SQL read meanwhile
    async fn migrate_all(gw: &Gateway, p: &str, databases: usize) -> u64 {
        let before = sql_reads(gw).await;
        let (s, b) = gw
            .post(
                "/v2/migrate",
                &json!({"platform": p, "schema_name": "tenant_db"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["databases_updated"].as_array().unwrap().len(),
            databases,
            "{b}"
        );
        sql_reads(gw).await - before
    }
    upload(&gw, &p, &schema).await;
    create(&gw, &p, 0..N).await;
    // a new version, nothing kept after the restart: read once, for N databases
    schema.set("functions/ping.pssql", &bump(2));
    upload(&gw, &p, &schema).await;
    gw.restart_migrator();
    let over_n = migrate_all(&gw, &p, N).await;
    assert!(over_n > 0, "a version nobody kept is read");
    // as many again (made from the kept version, read by nobody)
    let before = sql_reads(&gw).await;
    create(&gw, &p, N..2 * N).await;
    assert_eq!(
        sql_reads(&gw).await,
        before,
        "creating databases read the stored version again"
    );
    // the next version (as many statements), read once for 2N databases
    schema.set("functions/ping.pssql", &bump(3));
    upload(&gw, &p, &schema).await;
    gw.restart_migrator();
    let over_2n = migrate_all(&gw, &p, 2 * N).await;
    assert_eq!(
        over_2n,
        over_n,
        "migrating {} databases read more SQL than migrating {N}",
        2 * N
    );
    // read at upload and kept: migrating it reads nothing
    schema.set("functions/ping.pssql", &bump(4));
    upload(&gw, &p, &schema).await;
    assert_eq!(migrate_all(&gw, &p, 2 * N).await, 0);
}

/// What a deployment does per database reads no SQL text again either: a
/// version whose deployment creates tables in a REFERENCES cycle (their
/// foreign keys split out) and widens a column (the differ reads both type
/// names) reads as much for 2N databases as for N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_reads_no_sql_per_database_for_cycles_and_changed_column_types() {
    const N: usize = 2;
    let mut gw = Gateway::start(&[]);
    let mut base = SchemaDir::default();
    base.set(
        "tables/widths.sql",
        "CREATE TABLE widths (id int PRIMARY KEY, w varchar(10));",
    );
    let mut next = base.clone();
    next.set(
        "tables/widths.sql",
        "CREATE TABLE widths (id int PRIMARY KEY, w varchar(20));",
    )
    .set(
        "tables/ring_a.sql",
        "CREATE TABLE ring_a (id int PRIMARY KEY, b_id int REFERENCES ring_b (id));",
    )
    .set(
        "tables/ring_b.sql",
        "CREATE TABLE ring_b (id int PRIMARY KEY, a_id int REFERENCES ring_a (id));",
    );
    let mut reads = Vec::new();
    for databases in [N, 2 * N] {
        let p = gw.register_platform().await;
        for version in [&base, &next] {
            let (s, b) =
                upload_schema(&gw, &p, "schema_name", "tenant_db", "schema", version).await;
            assert_eq!(s, 201, "{b}");
            if std::ptr::eq(version, &base) {
                for i in 0..databases {
                    let (s, b) = gw
                        .post(
                            "/database/create",
                            &json!({"platform": p, "schema_name": "tenant_db", "database_id": format!("d{i}")}),
                        )
                        .await;
                    assert_eq!(s, 201, "{b}");
                }
            }
        }
        // nothing kept: the new version is read for this migration
        gw.restart_migrator();
        let before = sql_reads(&gw).await;
        let (s, b) = gw
            .post(
                "/v2/migrate",
                &json!({"platform": p, "schema_name": "tenant_db"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["databases_updated"].as_array().unwrap().len(),
            databases,
            "{b}"
        );
        reads.push(sql_reads(&gw).await - before);
    }
    assert!(reads[0] > 0, "the version is read");
    assert_eq!(
        reads[0],
        reads[1],
        "reads for {N} and for {} databases",
        2 * N
    );
}

/// The status of `database`'s latest deployment, as the catalog recorded it
/// (`GET /admin/deployments`), checking it was a `/v2/migrate`.
async fn recorded_status(gw: &Gateway, database: &str) -> Value {
    let (s, b) = gw
        .get(&format!("/admin/deployments?database={database}&limit=1"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["deployments"][0]["operation"], "v2_migrate", "{b}");
    b["deployments"][0]["status"].clone()
}

/// A migration answers each database with the status its deployment is
/// recorded with: a database deployed to that needed nothing is
/// `unchanged` in both (never relabelled `updated`) and not among
/// `databases_updated`; one that changed is `updated` in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_answers_each_database_as_the_catalog_records_it() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    let mut schema = tenant_schema();
    let (s, b) = upload_schema(&gw, &p, "schema_name", "tenant_db", "schema", &schema).await;
    assert_eq!(s, 201, "{b}");
    for id in ["a", "b"] {
        let (s, b) = gw
            .post(
                "/database/create",
                &json!({"platform": p, "schema_name": "tenant_db", "database_id": id}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let databases = [format!("{p}_tenant_db_a"), format!("{p}_tenant_db_b")];

    // forced: deployed to although at the target version, with nothing to do
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db", "force": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["databases_updated"], json!([]), "{b}");
    let results = b["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{b}");
    for r in results {
        assert_eq!(r["status"], "unchanged", "{b}");
        let db = r["database"].as_str().unwrap();
        assert_eq!(recorded_status(&gw, db).await, r["status"], "{db}");
    }

    // a new version changing a function: updated, in the answer and the catalog
    schema.set(
        "functions/order_count.pssql",
        "CREATE OR REPLACE FUNCTION order_count() RETURNS BIGINT LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders WHERE total > 0 $$;",
    );
    let (s, b) = upload_schema(&gw, &p, "schema_name", "tenant_db", "schema", &schema).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["databases_updated"], json!(databases), "{b}");
    for r in b["results"].as_array().unwrap() {
        assert_eq!(r["status"], "updated", "{b}");
        let db = r["database"].as_str().unwrap();
        assert_eq!(recorded_status(&gw, db).await, r["status"], "{db}");
    }
}

/// Today's StoneScriptPHP runtime client (3.x) posts `schema_name` and
/// `uuid` to `/call`: the tenant's database is
/// `{platform}_{schema_name}_{uuid, hyphens as underscores}`, the schema's
/// own one `{platform}_{schema_name}` when `uuid` is null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_address_databases_by_schema_name_and_uuid() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    let (s, b) = upload_schema(&gw, &p, "schema_name", "tenant", "schema", &tenant_schema()).await;
    assert_eq!(s, 201, "{b}");
    // the uuid 0f1e-a2b3, as the database id 0f1e_a2b3
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "tenant", "database_id": "0f1e_a2b3"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // the schema's own database, made by hand and adopted
    let own = format!("{p}_tenant");
    cluster()
        .connect("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {own}"))
        .await
        .unwrap();
    gw.adopt(&p, &[&own]).await;
    cluster()
        .connect(&own)
        .await
        .batch_execute(
            "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS $$ SELECT 7::bigint $$",
        )
        .await
        .unwrap();
    let call = |body: Value| {
        let gw = &gw;
        async move { gw.post("/call", &body).await }
    };
    // exactly what GatewayClient::callFunction sends
    let (s, b) = call(
        json!({"platform": p, "schema_name": "tenant", "uuid": "0f1e-a2b3",
                             "function": "create_order", "params": [12.5]}),
    )
    .await;
    assert_eq!(
        (s, b["rows"][0]["create_order"].clone()),
        (200, json!(1)),
        "{b}"
    );
    let (s, b) = call(json!({"platform": p, "schema_name": "tenant", "uuid": null,
                             "function": "order_count", "params": []}))
    .await;
    assert_eq!(
        (s, b["rows"][0]["order_count"].clone()),
        (200, json!(7)),
        "{b}"
    );
    let (s, b) =
        call(json!({"platform": p, "schema_name": "tenant", "function": "order_count"})).await;
    assert_eq!(
        (s, b["rows"][0]["order_count"].clone()),
        (200, json!(7)),
        "{b}"
    );
    // one uuid rule; one way to name the database per request
    for (body, says) in [
        (
            json!({"platform": p, "schema_name": "tenant", "uuid": "0f1e_a2b3", "function": "order_count"}),
            "invalid uuid",
        ),
        (
            json!({"platform": p, "schema_name": "tenant", "uuid": "0F1E-A2B3", "function": "order_count"}),
            "invalid uuid",
        ),
        (
            json!({"platform": p, "schema_name": "tenant", "tenant_id": "x", "function": "order_count"}),
            "give one of tenant_id, database, or schema_name",
        ),
        (
            json!({"platform": p, "schema_name": "tenant", "database": own, "function": "order_count"}),
            "give one of tenant_id, database, or schema_name",
        ),
        (
            json!({"platform": p, "uuid": "0f1e-a2b3", "function": "order_count"}),
            "uuid goes with schema_name",
        ),
    ] {
        let (s, b) = call(body.clone()).await;
        assert_eq!(
            (s, b["error"].clone()),
            (400, json!("invalid_request")),
            "{body}: {b}"
        );
        assert!(
            b["message"].as_str().unwrap_or_default().contains(says),
            "{body}: {b}"
        );
    }
    // another platform's database answers like a missing one
    let other = new_platform();
    let (s, b) = call(
        json!({"platform": other, "schema_name": "tenant", "uuid": "0f1e-a2b3",
                             "function": "order_count"}),
    )
    .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
}

/// `POST /admin/database/create` as StoneScriptPHP's `TenantProvisioner`
/// sends it: 7.x `{platform, schema_name, uuid}`, 5.5.1 `{platform,
/// schema_name, database_id}` with the hyphenated uuid (and the admin
/// token), nothing for the schema's own database. 409 only for this
/// platform's database of that schema and uuid; any other holder of the
/// name is 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_databases_are_created_as_stonescriptphp_asks() {
    const ADMIN: &str = "admin-token-0123456789abcdef";
    for tokens in [false, true] {
        let env: Vec<(&str, &str)> = if tokens {
            vec![("ADMIN_TOKEN", ADMIN)]
        } else {
            vec![]
        };
        let gw = Gateway::start(&env);
        let post = |path: &'static str, body: Value| {
            let url = format!("{}{path}", gw.url);
            async move {
                let mut req = reqwest::Client::new().post(url).json(&body);
                if tokens {
                    req = req.bearer_auth(ADMIN);
                }
                let r = req.send().await.unwrap();
                let retry = r.headers().get("retry-after").is_some();
                let st = r.status().as_u16();
                (st, r.json::<Value>().await.unwrap_or(Value::Null), retry)
            }
        };
        let p = new_platform();
        assert_eq!(
            post("/platform/register", json!({"platform": p})).await.0,
            201
        );
        let form = reqwest::multipart::Form::new()
            .text("schema_name", "tenant")
            .part(
                "schema",
                reqwest::multipart::Part::bytes(tenant_schema().tar_gz()).file_name("s.tar.gz"),
            );
        let mut up = reqwest::Client::new()
            .post(format!("{}/platform/{p}/schema", gw.url))
            .multipart(form);
        if tokens {
            up = up.bearer_auth(ADMIN);
        }
        assert_eq!(up.send().await.unwrap().status().as_u16(), 201);

        // the schema's own database, then again
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant"}),
        )
        .await;
        assert_eq!(
            (s, b["database_name"].clone()),
            (201, json!(format!("{p}_tenant"))),
            "{b}"
        );
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant"}),
        )
        .await;
        assert_eq!(
            (s, b["error"].clone()),
            (409, json!("database_already_exists")),
            "{b}"
        );
        // a dry run creates nothing
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant", "uuid": "9a-9b", "dry_run": true}),
        )
        .await;
        assert_eq!(
            (s, b["status"].clone()),
            (200, json!("would_create")),
            "{b}"
        );
        assert!(!database_exists(&format!("{p}_tenant_9a_9b")).await);
        // 7.x: uuid; 5.5.1: the same hyphenated uuid as database_id
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant", "uuid": "0f1e-a2b3"}),
        )
        .await;
        assert_eq!(
            (s, b["database_name"].clone()),
            (201, json!(format!("{p}_tenant_0f1e_a2b3"))),
            "{b}"
        );
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant", "database_id": "0f1e-a2b3"}),
        )
        .await;
        assert_eq!(
            (s, b["error"].clone()),
            (409, json!("database_already_exists")),
            "{b}"
        );
        // the runtime client reaches it with hyphens, the CLI migrates it with underscores
        let (s, b, _) = post(
            "/call",
            json!({"platform": p, "schema_name": "tenant", "uuid": "0f1e-a2b3",
                                             "function": "create_order", "params": [5]}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let (s, b, _) = post(
            "/v2/migrate",
            json!({"platform": p, "schema_name": "tenant",
                                                   "database_id": "0f1e_a2b3"}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        // one uuid rule; not both fields; no field the route does not define
        for body in [
            json!({"platform": p, "schema_name": "tenant", "tenant_id": "t1"}),
            json!({"platform": p, "schema_name": "tenant", "uuid": "0f1e_a2b3"}),
            json!({"platform": p, "schema_name": "tenant", "uuid": "a", "database_id": "a"}),
        ] {
            let (s, b, _) = post("/admin/database/create", body.clone()).await;
            assert_eq!(
                (s, b["error"].clone()),
                (400, json!("invalid_request")),
                "{body}: {b}"
            );
        }
        // a name something else holds: a database made by hand, a v2
        // database made through /database/create under another schema's id
        let by_hand = format!("{p}_tenant_ab12");
        cluster()
            .connect("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {by_hand}"))
            .await
            .unwrap();
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant", "uuid": "ab12"}),
        )
        .await;
        assert_eq!(
            (s, b["error"].clone()),
            (422, json!("database_name_collision")),
            "{b}"
        );
        // another platform whose name covers these names
        let longer = format!("{p}_tenant_zz");
        assert_eq!(
            post("/platform/register", json!({"platform": longer}))
                .await
                .0,
            201
        );
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant", "uuid": "zz-1"}),
        )
        .await;
        assert_eq!(
            (s, b["error"].clone()),
            (422, json!("database_name_collision")),
            "{b}"
        );
        // the same name asked for by another platform
        let (s, b, _) = post(
            "/admin/database/create",
            json!({"platform": longer, "schema_name": "x"}),
        )
        .await;
        assert_eq!(s, 404, "no schema x stored: {b}");
        // one still being created (as another request records it): 503, retry
        let catalog = gw.catalog().await;
        catalog
            .execute(
                "INSERT INTO databases (name, platform, kind, schema_name, database_id, owner_role, state, lease)
                 VALUES ($1, $2, 'v2', 'tenant', 'cd34', $3, 'creating', 0)",
                &[&format!("{p}_tenant_cd34"), &p, &format!("sdg_{p}_owner")],
            )
            .await
            .unwrap();
        let (s, b, retry) = post(
            "/admin/database/create",
            json!({"platform": p, "schema_name": "tenant", "uuid": "cd34"}),
        )
        .await;
        assert_eq!((s, retry), (503, true), "{b}");
        catalog
            .execute(
                "DELETE FROM databases WHERE name = $1",
                &[&format!("{p}_tenant_cd34")],
            )
            .await
            .unwrap();
    }
}

/// What today's StoneScriptPHP CLI and `TenantProvisioner` do with tokens:
/// ask for the platform's token (again and again: the same one comes back),
/// deploy and create tenants with it, twenty signups at once; rotation
/// stops the old one at once. An open platform registers and uploads
/// without a token; nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_tokens_and_open_platforms_as_stonescriptphp_uses_them() {
    const ADMIN: &str = "admin-token-0123456789abcdef";
    let open = new_platform();
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN), ("OPEN_DEPLOY_PLATFORMS", &open)]);
    let send = |path: String, token: Option<String>, body: Option<Value>| {
        let url = format!("{}{path}", gw.url);
        async move {
            let client = reqwest::Client::new();
            let mut req = match body {
                Some(b) => client.post(url).json(&b),
                None => client.get(url),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let upload = |platform: String, token: Option<String>| {
        let url = format!("{}/platform/{platform}/schema", gw.url);
        async move {
            let form = reqwest::multipart::Form::new()
                .text("schema_name", "tenant")
                .part(
                    "schema",
                    reqwest::multipart::Part::bytes(tenant_schema().tar_gz()).file_name("s.tar.gz"),
                );
            let mut req = reqwest::Client::new().post(url).multipart(form);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let admin = Some(ADMIN.to_string());

    // gateway:register-main / register-tenant of an open platform: no token
    let (s, b) = send(
        "/platform/register".into(),
        None,
        Some(json!({"platform": open})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(upload(open.clone(), None).await, 201);
    let (s, b) = send(format!("/platform/{open}/schemas"), None, None).await;
    assert_eq!(s, 200, "{b}");
    // ...but creating a database needs a token, and other platforms need one for everything
    let (s, b) = send(
        "/admin/database/create".into(),
        None,
        Some(json!({"platform": open, "schema_name": "tenant", "uuid": "a-1"})),
    )
    .await;
    assert_eq!(s, 401, "{b}");
    let closed = new_platform();
    let (s, _) = send(
        "/platform/register".into(),
        None,
        Some(json!({"platform": closed})),
    )
    .await;
    assert_eq!(s, 401);

    // the platform token: asked with the admin token, the same one every time
    let (s, b) = send(
        "/platform/register".into(),
        admin.clone(),
        Some(json!({"platform": closed})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, first) = send(
        "/admin/platform-token".into(),
        admin.clone(),
        Some(json!({"platform": closed})),
    )
    .await;
    assert_eq!(s, 201, "{first}");
    let token = first["token"].as_str().unwrap().to_owned();
    assert!(first["created_at"].is_string(), "{first}");
    let (_, again) = send(
        "/admin/platform-token".into(),
        admin.clone(),
        Some(json!({"platform": closed})),
    )
    .await;
    assert_eq!(again, first);
    // it acts for its platform, and only for it
    assert_eq!(upload(closed.clone(), Some(token.clone())).await, 201);
    assert_eq!(upload(open.clone(), Some(token.clone())).await, 403);
    let (s, _) = send(
        "/admin/adopt".into(),
        Some(token.clone()),
        Some(json!({"platform": closed, "databases": ["x"]})),
    )
    .await;
    assert_eq!(s, 403, "operator routes stay the admin's");
    // ...also not for a platform whose name merely starts with its own
    let longer = format!("{closed}_x");
    let (s, b) = send(
        "/platform/register".into(),
        admin.clone(),
        Some(json!({"platform": longer})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(upload(longer.clone(), Some(token.clone())).await, 403);
    // a forged one does not
    let forged = format!("sdgpt.{closed}.1.{}", "0".repeat(64));
    assert_eq!(upload(closed.clone(), Some(forged)).await, 401);

    // twenty TenantProvisioner signups at once, each asking for the token again
    let signups = (0..20).map(|i| {
        let send = &send;
        let closed = closed.clone();
        async move {
            let (_, t) = send(
                "/admin/platform-token".into(),
                Some(token_of_admin()),
                Some(json!({"platform": closed})),
            )
            .await;
            let t = t["token"].as_str().unwrap_or_default().to_owned();
            let (s, b) = send(
                "/admin/database/create".into(),
                Some(t.clone()),
                Some(
                    json!({"platform": closed, "schema_name": "tenant", "uuid": format!("u{i}-x")}),
                ),
            )
            .await;
            (t, s, b)
        }
    });
    let results = futures_join_all(signups).await;
    for (t, s, b) in &results {
        assert_eq!(t, &token);
        assert_eq!(*s, 201, "{b}");
    }

    // rotation: a new token, and the old one stops at once
    let (s, rotated) = send(
        "/admin/platform-token".into(),
        Some(token.clone()),
        Some(json!({"platform": closed, "rotate": true})),
    )
    .await;
    assert_eq!(s, 201, "{rotated}");
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_eq!(upload(closed.clone(), Some(token.clone())).await, 401);
    assert_eq!(upload(closed.clone(), Some(new_token.clone())).await, 201);
    // in every router: a second one in front of the same migrator
    let second = gw.another_router();
    let list = |url: String, t: String| async move {
        reqwest::Client::new()
            .get(url)
            .bearer_auth(t)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let path = format!("/platform/{closed}/schemas");
    for base in [&gw.url, &second.url] {
        assert_eq!(
            list(format!("{base}{path}"), token.clone()).await,
            401,
            "{base}"
        );
        assert_eq!(
            list(format!("{base}{path}"), new_token.clone()).await,
            200,
            "{base}"
        );
    }
    // an unknown platform
    let (s, b) = send(
        "/admin/platform-token".into(),
        admin.clone(),
        Some(json!({"platform": new_platform()})),
    )
    .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("platform_not_found")),
        "{b}"
    );

    // a gateway without tokens: the CLI's bearer is ignored, the token answers,
    // and issuing one turns nothing on
    let bare = Gateway::start(&[]);
    let p = new_platform();
    let r = reqwest::Client::new()
        .post(format!("{}/platform/register", bare.url))
        .bearer_auth("whatever-the-cli-sends")
        .json(&json!({"platform": p}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, b) = bare
        .post("/admin/platform-token", &json!({"platform": p}))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, _) = bare
        .post("/platform/register", &json!({"platform": new_platform()}))
        .await;
    assert_eq!(s, 201, "still no token needed");
}

fn token_of_admin() -> String {
    "admin-token-0123456789abcdef".to_string()
}

/// Run futures concurrently on this task and collect their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
