//! Requests that cannot skip a safety switch by accident, and the smaller
//! answers that must agree with the document (docs/API.md): every
//! route refuses query parameters it does not define (POST routes too, so
//! `?dry_run=true` never deploys for real) and empty ones; form booleans are
//! `true`, `false`, `1` or `0` in any case, nothing else; JSON keys are
//! unique; `/call` of a procedure says what to do; `/platform/register`
//! answers 409 for a registered platform; the catalog is closed to PUBLIC
//! at every start; call tokens leave no platform open unless listed; the
//! migrator's readiness follows PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, database_exists, new_platform, Gateway, SchemaDir};

/// A small schema: one table, a function taking `jsonb`, a procedure and a
/// function that `CALL`s it.
fn schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "migrations/001_notes.sql",
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);",
    )
    .set(
        "functions/ping.sql",
        "CREATE OR REPLACE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'pong' $$;",
    )
    .set(
        "functions/echo_doc.sql",
        "CREATE OR REPLACE FUNCTION echo_doc(p_doc jsonb, p_n int DEFAULT 0) RETURNS jsonb LANGUAGE sql AS $$ SELECT p_doc $$;",
    )
    .set(
        "functions/tidy_up.sql",
        "CREATE OR REPLACE PROCEDURE tidy_up() LANGUAGE sql AS $$ DELETE FROM notes $$;",
    )
    .set(
        "functions/run_tidy_up.sql",
        "CREATE OR REPLACE FUNCTION run_tidy_up() RETURNS void LANGUAGE plpgsql AS $$ BEGIN CALL tidy_up(); END $$;",
    );
    s
}

/// [`schema`] plus a migration creating table `extra`: deployed for real
/// only if `extra` exists afterwards.
fn schema_v2() -> SchemaDir {
    let mut s = schema();
    s.set("migrations/002_extra.sql", "CREATE TABLE extra (id int);");
    s
}

async fn has_table(database: &str, table: &str) -> bool {
    let c = cluster().connect(database).await;
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

fn is_invalid(status: u16, body: &Value, needle: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {message:?}");
}

/// `POST /register?dry_run=true` (and the other deploying routes with that
/// query string) used to ignore the query string and deploy for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_routes_refuse_query_parameters_so_a_dry_run_is_never_skipped() {
    let gw = Gateway::start(&[]);
    // v1: a new platform's /register, then /migrate of a new migration
    let p = new_platform();
    let (s, b) = gw
        .upload(
            "/register?dry_run=true",
            &[("platform", &p)],
            schema().tar_gz(),
        )
        .await;
    is_invalid(s, &b, "\"dry_run\"");
    assert!(!database_exists(&format!("{p}_main")).await);
    assert_eq!(gw.register(&p, None, &schema()).await.0, 200);
    let main = format!("{p}_main");
    let (s, b) = gw
        .upload(
            "/migrate?dry_run=true",
            &[("platform", &p)],
            schema_v2().tar_gz(),
        )
        .await;
    is_invalid(s, &b, "\"dry_run\"");
    assert!(!has_table(&main, "extra").await, "deployed for real");
    // create-tenant (JSON) with the switch in the query string
    let (s, b) = gw
        .post(
            "/admin/create-tenant?dry_run=true",
            &json!({"platform": p, "tenant_id": "t1"}),
        )
        .await;
    is_invalid(s, &b, "\"dry_run\"");
    assert!(!database_exists(&format!("{p}_t1")).await);

    // v2: /database/create and /v2/migrate
    let v2 = gw.register_platform().await;
    let up = format!("/platform/{v2}/schema");
    let (s, b) = gw
        .upload(&up, &[("schema_name", "store")], schema().tar_gz())
        .await;
    assert_eq!(s, 201, "{b}");
    let create = json!({"platform": v2, "schema_name": "store", "database_id": "d1"});
    let (s, b) = gw.post("/database/create?dry_run=true", &create).await;
    is_invalid(s, &b, "\"dry_run\"");
    let d1 = format!("{v2}_store_d1");
    assert!(!database_exists(&d1).await);
    let (s, b) = gw.post("/database/create", &create).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .upload(&up, &[("schema_name", "store")], schema_v2().tar_gz())
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .post(
            "/v2/migrate?dry_run=true",
            &json!({"platform": v2, "schema_name": "store"}),
        )
        .await;
    is_invalid(s, &b, "\"dry_run\"");
    assert!(!has_table(&d1, "extra").await, "deployed for real");
    // the message lists what the route takes: nothing
    assert!(b["message"].as_str().unwrap().contains("takes none"), "{b}");

    // routes the router serves itself refuse them too
    for path in ["/health?verbose=1", "/health/live?x", "/openapi.json?v=2"] {
        let (s, b) = gw.get(path).await;
        is_invalid(s, &b, "query parameter");
    }
    let (s, b) = gw
        .post(
            "/call?tenant_id=t1",
            &json!({"platform": p, "function": "ping"}),
        )
        .await;
    is_invalid(s, &b, "\"tenant_id\"");
    // the switch where it belongs still works
    let (s, b) = gw
        .upload(
            "/migrate",
            &[("platform", &p), ("dry_run", "true")],
            schema_v2().tar_gz(),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("dry_run")), "{b}");
    assert!(!has_table(&main, "extra").await);
}

/// An empty query value is a mistake (an unset shell variable), never
/// "every platform" or "every schema".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_query_parameters_are_refused() {
    let gw = Gateway::start(&[]);
    let v2 = gw.register_platform().await;
    for path in [
        "/admin/deployments?platform=".to_owned(),
        "/admin/deployments?limit=5&database=".to_owned(),
        "/admin/databases?platform=".to_owned(),
        format!("/platform/{v2}/databases?schema="),
        format!("/platform/{v2}/databases?schema"),
    ] {
        let (s, b) = gw.get(&path).await;
        is_invalid(s, &b, "is empty");
    }
    let (s, b) = gw
        .get(&format!("/platform/{v2}/databases?schema=store"))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = gw.get("/admin/deployments?limit=1").await;
    assert_eq!(s, 200, "{b}");
}

/// Form booleans: `true`, `false`, `1`, `0`, any case; `-F dry_run=` (an
/// unset variable), `yes`, `no`, `on` are refused naming the field and the
/// spellings, and nothing is deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_booleans_are_true_false_1_or_0_and_nothing_else() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &schema()).await.0, 200);
    let main = format!("{p}_main");
    let migrate = |fields: Vec<(&'static str, &'static str)>| {
        let gw = &gw;
        let p = p.clone();
        async move {
            let mut all = vec![("platform", p.as_str())];
            all.extend(fields);
            gw.upload("/migrate", &all, schema_v2().tar_gz()).await
        }
    };
    for bad in ["", "yes", "no", "on", "off", "2", " "] {
        for field in ["dry_run", "force"] {
            let (s, b) = migrate(vec![(field, bad)]).await;
            is_invalid(s, &b, &format!("field {field} must be true, false, 1 or 0"));
            assert!(!has_table(&main, "extra").await, "{field}={bad:?} deployed");
        }
    }
    // an empty tenant_id (an unset shell variable) is not "every database"
    for empty in ["", " "] {
        let (s, b) = migrate(vec![("tenant_id", empty)]).await;
        is_invalid(s, &b, "field tenant_id is empty");
        assert!(
            !has_table(&main, "extra").await,
            "tenant_id={empty:?} deployed"
        );
    }
    for dry in ["TRUE", "True", "1", "true"] {
        let (s, b) = migrate(vec![("dry_run", dry), ("force", "0")]).await;
        assert_eq!((s, b["status"].as_str()), (200, Some("dry_run")), "{b}");
        assert!(!has_table(&main, "extra").await, "dry_run={dry} deployed");
    }
    // PHP's "1" and the seeds' "true" for force, "False" for dry_run: real
    let (s, b) = migrate(vec![("dry_run", "False"), ("force", "1")]).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("completed")), "{b}");
    assert!(has_table(&main, "extra").await);
}

/// JSON booleans are already strict (serde), top-level keys are unique
/// (serde's derive), and so are `/call`'s named arguments; a duplicate
/// key inside a json value is the function's business.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_booleans_are_strict_and_keys_unique() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &schema()).await.0, 200);
    let v2 = gw.register_platform().await;
    for (path, body, needle) in [
        (
            "/v2/migrate",
            json!({"platform": v2, "schema_name": "store", "dry_run": "true"}),
            "dry_run: invalid type",
        ),
        (
            "/database/create",
            json!({"platform": v2, "schema_name": "store", "database_id": "a", "dry_run": 1}),
            "dry_run: invalid type",
        ),
        (
            "/admin/create-tenant",
            json!({"platform": p, "tenant_id": "t1", "dry_run": "yes"}),
            "dry_run: invalid type",
        ),
    ] {
        let (s, b) = gw.post(path, &body).await;
        is_invalid(s, &b, needle);
    }
    assert!(!database_exists(&format!("{p}_t1")).await);
    // a top-level key given twice: which would win is a guess
    for (path, raw, key) in [
        (
            "/v2/migrate",
            format!(
                r#"{{"platform":"{v2}","schema_name":"store","dry_run":true,"dry_run":false}}"#
            ),
            "dry_run",
        ),
        (
            "/admin/create-tenant",
            format!(r#"{{"platform":"{p}","tenant_id":"t1","tenant_id":"t2"}}"#),
            "tenant_id",
        ),
        (
            "/call",
            format!(r#"{{"platform":"{p}","function":"ping","function":"echo_doc"}}"#),
            "function",
        ),
    ] {
        let (s, b) = gw.post_raw(path, raw).await;
        is_invalid(s, &b, &format!("duplicate field `{key}`"));
    }
    // a named argument given twice in params
    let raw = format!(
        r#"{{"platform":"{p}","function":"echo_doc","params":{{"p_doc":{{"a":1}},"p_n":1,"p_doc":{{"a":2}}}}}}"#
    );
    let (s, b) = gw.post_raw("/call", raw).await;
    is_invalid(s, &b, "\"p_doc\" more than once");
    // a duplicate key inside a jsonb value is passed as given
    let raw = format!(
        r#"{{"platform":"{p}","function":"echo_doc","params":{{"p_doc":{{"k":1,"k":2}}}}}}"#
    );
    let (s, b) = gw.post_raw("/call", raw).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"][0]["echo_doc"], json!({"k": 2}), "{b}");
    let (s, b) = gw
        .call(&p, "echo_doc", json!({"p_doc": [1], "p_n": 2}))
        .await;
    assert_eq!((s, &b["rows"][0]["echo_doc"]), (200, &json!([1])), "{b}");
}

/// `/call` of a procedure: 400 `not_callable` saying what to do, not 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_procedure_is_not_callable_and_a_function_may_call_it() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (s, b) = gw.register(&p, None, &schema()).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = gw.call(&p, "tidy_up", json!([])).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("not_callable")), "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(
        message.contains("tidy_up() is a procedure") && message.contains("CALL"),
        "{message}"
    );
    assert_eq!(b["database"], json!(format!("{p}_main")));
    // case folds as for functions; a missing name is still 404
    let (s, b) = gw.call(&p, "TIDY_UP", json!([])).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("not_callable")), "{b}");
    let (s, b) = gw.call(&p, "no_such_thing", json!([])).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("function_not_found")),
        "{b}"
    );
    let (s, b) = gw.call(&p, "run_tidy_up", json!([])).await;
    assert_eq!(s, 200, "{b}");
}

/// `/platform/register`: 409 `platform_already_registered` for a v2
/// platform (StoneScriptPHP's CLI accepts 200, 201 or 409), 201 for a
/// platform known only from v1, which is then v1 and v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_register_is_409_when_registered_and_201_for_a_v1_platform() {
    let gw = Gateway::start(&[]);
    let v2 = gw.register_platform().await;
    let (s, b) = gw
        .post("/platform/register", &json!({"platform": v2}))
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("platform_already_registered")),
        "{b}"
    );
    assert_eq!(
        b["message"],
        format!("Platform '{v2}' is already registered")
    );

    let v1 = new_platform();
    assert_eq!(gw.register(&v1, None, &schema()).await.0, 200);
    let (s, b) = gw
        .post("/platform/register", &json!({"platform": v1}))
        .await;
    assert_eq!((s, b["status"].as_str()), (201, Some("registered")), "{b}");
    let (s, b) = gw
        .post("/platform/register", &json!({"platform": v1}))
        .await;
    assert_eq!(s, 409, "{b}");
    // v2 now: it stores schemas, and its v1 database still answers
    let up = format!("/platform/{v1}/schema");
    let (s, b) = gw
        .upload(&up, &[("schema_name", "store")], schema().tar_gz())
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw.call(&v1, "ping", json!([])).await;
    assert_eq!(s, 200, "{b}");
    // a dry run of create-tenant answers 200 (documented), creating nothing
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": v1, "tenant_id": "t7", "dry_run": true}),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("dry_run")), "{b}");
    assert_eq!(b["databases"][0]["status"], "would_create", "{b}");
    assert!(!database_exists(&format!("{v1}_t7")).await);
}

/// A catalog database created before the migrator (by an operator, or
/// an older version) is closed to PUBLIC at start, and again at every
/// start after someone opened it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precreated_catalog_is_closed_to_public_at_every_start() {
    let catalog = format!("sdg_precreated_{}", new_platform());
    let admin = cluster().connect("postgres").await;
    for sql in [
        format!("CREATE DATABASE {catalog}"),
        format!("GRANT CONNECT, TEMPORARY ON DATABASE {catalog} TO PUBLIC"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    let public_may = |what: &'static str| {
        let (admin, catalog) = (&admin, catalog.clone());
        async move {
            admin
                .query_one(
                    "SELECT has_database_privilege('public', $1, $2)",
                    &[&catalog, &what],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(public_may("CONNECT").await);
    let mut gw = Gateway::start(&[("CATALOG_DB", &catalog)]);
    wait_for_migrator(&gw, "up").await;
    assert!(!public_may("CONNECT").await, "PUBLIC may connect");
    assert!(
        !public_may("TEMPORARY").await,
        "PUBLIC may create temp tables"
    );
    // opened again by hand: the next start closes it again
    admin
        .batch_execute(&format!("GRANT CONNECT ON DATABASE {catalog} TO PUBLIC"))
        .await
        .unwrap();
    gw.restart_migrator();
    wait_for_migrator(&gw, "up").await;
    assert!(
        !public_may("CONNECT").await,
        "PUBLIC may connect after a restart"
    );
}

/// Wait until `/health` shows the migrator as `want`.
async fn wait_for_migrator(gw: &Gateway, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, h) = gw.get("/health").await;
        if h["migrator"] == want {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "the migrator never showed {want}: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Once `CALL_TOKENS` is set a platform without a token is refused, unless
/// `CALL_OPEN_PLATFORMS` lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_tokens_leave_open_only_the_platforms_listed_as_open() {
    const TOKEN: &str = "requests-call-token-0001";
    let (guarded, open, other) = (new_platform(), new_platform(), new_platform());
    let tokens = format!("{guarded}:{TOKEN}");
    let gw = Gateway::start(&[
        ("CALL_TOKENS", &tokens),
        ("CALL_OPEN_PLATFORMS", &format!("{open}, nobody_yet")),
    ]);
    for p in [&guarded, &open, &other] {
        assert_eq!(gw.register(p, None, &schema()).await.0, 200);
    }
    let call = |p: &str, token: Option<&str>| {
        let mut rb = reqwest::Client::new()
            .post(format!("{}/call", gw.url))
            .json(&json!({"platform": p, "function": "ping"}));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        async move {
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = call(&other, None).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("unauthorized")), "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("CALL_OPEN_PLATFORMS"),
        "{b}"
    );
    assert_eq!(call(&other, Some(TOKEN)).await.0, 401, "another's token");
    assert_eq!(call(&open, None).await.0, 200);
    assert_eq!(call(&guarded, None).await.0, 401);
    assert_eq!(call(&guarded, Some(TOKEN)).await.0, 200);

    // a platform with a token and listed as open is bad configuration
    let out = std::process::Command::new(stonescriptdb_tests::binary("stonescriptdb-router"))
        .env("CALL_TOKENS", &tokens)
        .env("CALL_OPEN_PLATFORMS", &guarded)
        .env("GATEWAY_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CALL_OPEN_PLATFORMS"), "{err}");
}

/// `/health` shows the migrator `not_ready` while its catalog is
/// unreachable (it used to say `up` once the catalog had been opened), and
/// `up` again once PostgreSQL is back. A cluster of its own, so stopping it
/// disturbs no other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrator_is_not_ready_while_postgresql_is_stopped() {
    let pg = stonescriptdb_tests::extra_cluster("", |_| {}).expect("a cluster of its own");
    let port = pg.port.to_string();
    let gw = Gateway::start(&[
        ("DB_HOST", pg.host.as_str()),
        ("DB_PORT", port.as_str()),
        ("DB_USER", "postgres"),
    ]);
    let h = wait_for_migrator(&gw, "up").await;
    assert_eq!(h["status"], "healthy", "{h}");
    let out = tokio::task::block_in_place(|| pg.pg_ctl("stop", &["-m", "fast"]));
    assert!(out.status.success(), "{out:?}");
    let (s, h) = gw.get("/health").await;
    assert_eq!(
        (s, h["postgres"].as_str(), h["migrator"].as_str()),
        (503, Some("unreachable"), Some("not_ready")),
        "{h}"
    );
    // the schema routes say why
    let (s, b) = gw.get("/platforms").await;
    assert_eq!(s, 503, "{b}");
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        pg.host
    );
    let out = tokio::task::block_in_place(|| pg.pg_ctl("start", &["-o", &opts]));
    assert!(out.status.success(), "{out:?}");
    wait_for_migrator(&gw, "up").await;
    let (s, b) = gw.get("/platforms").await;
    assert_eq!(s, 200, "{b}");
}
