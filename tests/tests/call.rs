//! End-to-end tests of `/call`: the real router binary against a real
//! PostgreSQL cluster (see the harness in `tests/src/lib.rs`).

use serde_json::{json, Value};
use stonescriptdb_shared::names;
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir, TestDb};

async fn setup() -> (TestDb, Gateway) {
    let db = TestDb::new().await;
    let gw = Gateway::start(&[]);
    gw.adopt_db(&db).await;
    (db, gw)
}

/// Raw response text of a call (to check numbers digit for digit).
async fn call_text(gw: &Gateway, body: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}/call", gw.url))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn every_type_round_trips_as_argument_and_result() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    let cases: Vec<(&str, Value, Value)> = vec![
        ("echo_int2", json!(32767), json!(32767)),
        ("echo_int4", json!(-2147483648i64), json!(-2147483648i64)),
        (
            "echo_int8",
            json!(9223372036854775807i64),
            json!(9223372036854775807i64),
        ),
        ("echo_numeric_10_2", json!(12.5), json!(12.50)),
        ("echo_float4", json!(1.5), json!(1.5)),
        ("echo_float8", json!(1234.567890123), json!(1234.567890123)),
        ("echo_bool", json!(true), json!(true)),
        ("echo_bool", json!(false), json!(false)),
        (
            "echo_text",
            json!("it's \"quoted\" \\ back\nslash ünïcødé 🎉 ' OR 1=1 --"),
            json!("it's \"quoted\" \\ back\nslash ünïcødé 🎉 ' OR 1=1 --"),
        ),
        ("echo_varchar", json!("abc"), json!("abc")),
        (
            "echo_uuid",
            json!("3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b"),
            json!("3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b"),
        ),
        ("echo_date", json!("2024-02-29"), json!("2024-02-29")),
        ("echo_time", json!("13:14:15.5"), json!("13:14:15.5")),
        (
            "echo_timestamp",
            json!("2024-01-02T03:04:05"),
            json!("2024-01-02T03:04:05"),
        ),
        (
            "echo_timestamptz",
            json!("2024-01-02T03:04:05+02:00"),
            json!("2024-01-02T01:04:05+00:00"),
        ),
        (
            "echo_interval",
            json!("1 day 02:03:04"),
            json!("1 day 02:03:04"),
        ),
        (
            "echo_json",
            json!({"a": [1, 2, {"b": null}], "z": "x"}),
            json!({"a": [1, 2, {"b": null}], "z": "x"}),
        ),
        (
            "echo_jsonb",
            json!({"b": 1, "a": [true, "s"]}),
            json!({"a": [true, "s"], "b": 1}),
        ),
        ("echo_json", json!("just a string"), json!("just a string")),
        ("echo_bytea", json!("\\x00ff10"), json!("\\x00ff10")),
        (
            "echo_mood",
            json!("it's complicated"),
            json!("it's complicated"),
        ),
        (
            "echo_email",
            json!("ann@example.com"),
            json!("ann@example.com"),
        ),
        ("echo_int4_array", json!([1, null, 3]), json!([1, null, 3])),
        (
            "echo_text_array",
            json!(["a", "b,c", "d\"e", null, "{}"]),
            json!(["a", "b,c", "d\"e", null, "{}"]),
        ),
        (
            "echo_mood_array",
            json!(["happy", "sad"]),
            json!(["happy", "sad"]),
        ),
        (
            "echo_address_array",
            json!([{"street": "a", "city": "b", "zip_code": null}]),
            json!([{"street": "a", "city": "b", "zip_code": null}]),
        ),
        (
            "echo_int4_2d",
            json!([[1, 2], [3, 4]]),
            json!([[1, 2], [3, 4]]),
        ),
        (
            "echo_inet",
            json!("192.168.0.1/24"),
            json!("192.168.0.1/24"),
        ),
    ];
    for (func, arg, expected) in &cases {
        let (status, body) = gw.call(p, func, json!([arg])).await;
        assert_eq!(status, 200, "{func}({arg}) -> {body}");
        assert_eq!(body["row_count"], 1, "{func}: {body}");
        assert_eq!(body["rows"][0][*func], *expected, "{func}({arg}) -> {body}");
        // NULL round-trips as null for every type
        let (status, body) = gw.call(p, func, json!([null])).await;
        assert_eq!(status, 200, "{func}(null) -> {body}");
        assert_eq!(
            body["rows"][0][*func],
            Value::Null,
            "{func}(null) -> {body}"
        );
    }
    // a composite result expands into columns, as `SELECT * FROM f()` does
    let addr = json!({"street": "1 Main St", "city": "Oslo", "zip_code": "0150"});
    let (status, body) = gw.call(p, "echo_address", json!([addr])).await;
    assert_eq!((status, body["rows"][0].clone()), (200, addr), "{body}");
    // void
    let (status, body) = gw.call(p, "do_nothing", json!([])).await;
    assert_eq!(
        (status, body),
        (200, json!({"rows": [{"do_nothing": null}], "row_count": 1}))
    );
}

#[tokio::test]
async fn numeric_precision_beyond_f64_survives_both_ways() {
    let (db, gw) = setup().await;
    let big = "12345678901234567890.123456789012345678901234567890";
    let body = format!(
        r#"{{"platform":"{}","function":"echo_numeric","params":[{big}]}}"#,
        db.platform
    );
    let (status, text) = call_text(&gw, &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        format!(r#"{{"rows":[{{"echo_numeric":{big}}}],"row_count":1}}"#)
    );
    let body = format!(
        r#"{{"platform":"{}","function":"type_of_numeric","params":[{big}]}}"#,
        db.platform
    );
    let (_, text) = call_text(&gw, &body).await;
    assert!(text.contains(&format!("numeric:{big}")), "{text}");
    // bytea arrives as bytes, composites as composites
    let (_, body) = gw
        .call(&db.platform, "bytea_length", json!(["\\x00ff10"]))
        .await;
    assert_eq!(body["rows"][0]["bytea_length"], 3);
    let (_, body) = gw
        .call(
            &db.platform,
            "address_city",
            json!([{"street": "s", "city": "Lima", "zip_code": "1"}]),
        )
        .await;
    assert_eq!(body["rows"][0]["address_city"], "Lima");
}

#[tokio::test]
async fn result_shapes_set_returning_composite_out_params_and_empty() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    let (status, body) = gw.call(p, "list_users", json!([])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["row_count"], 3);
    assert_eq!(
        body["rows"][0],
        json!({"id": 1, "email": "a@x.io", "name": "Ann", "mood": "happy", "created_at": "2024-01-02T03:04:05+00:00"})
    );
    assert_eq!(body["rows"][1]["mood"], Value::Null);
    let (_, body) = gw.call(p, "get_user_by_id", json!([3])).await;
    assert_eq!(
        body["rows"],
        json!([{"id": 3, "email": "c@x.io", "name": "Cy", "mood": "sad", "created_at": "2024-01-02T03:04:05+00:00"}])
    );
    let (_, body) = gw.call(p, "no_rows", json!([])).await;
    assert_eq!(body, json!({"rows": [], "row_count": 0}));
    let (_, body) = gw
        .call(p, "make_address", json!(["1 Main", "Oslo", "0150"]))
        .await;
    assert_eq!(
        body["rows"],
        json!([{"street": "1 Main", "city": "Oslo", "zip_code": "0150"}])
    );
    let (_, body) = gw.call(p, "split_name", json!(["Ada Lovelace"])).await;
    assert_eq!(
        body["rows"],
        json!([{"first_name": "Ada", "last_name": "Lovelace"}])
    );
    let (_, body) = gw.call(p, "many_rows", json!([100])).await;
    assert_eq!(body["row_count"], 100);
    let last = &body["rows"][99];
    assert_eq!(
        (&last["i"], &last["label"], &last["at"]),
        (&json!(100), &json!("row 100"), &json!("2024-04-10"))
    );
    assert!(
        last["ratio"]
            .as_f64()
            .is_some_and(|r| (r - 33.333).abs() < 0.001),
        "{last}"
    );
    // without params at all
    let (status, body) = gw
        .post("/call", &json!({"platform": p, "function": "list_users"}))
        .await;
    assert_eq!((status, body["row_count"].clone()), (200, json!(3)));
    // writes happen
    let (status, body) = gw.call(p, "add_user", json!(["d@x.io", "Di"])).await;
    assert_eq!(
        (status, body["rows"][0]["add_user"].clone()),
        (200, json!(4))
    );
}

#[tokio::test]
async fn named_arguments_defaults_overloads_variadic_and_schemas() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    let one = |body: &Value, f: &str| body["rows"][0][f].clone();
    let (_, b) = gw.call(p, "greet", json!({"name": "Ann"})).await;
    assert_eq!(one(&b, "greet"), "Hello, Ann");
    let (_, b) = gw
        .call(p, "greet", json!({"greeting": "Hi", "name": "Bo"}))
        .await;
    assert_eq!(one(&b, "greet"), "Hi, Bo");
    let (_, b) = gw.call(p, "greet", json!(["Cy"])).await;
    assert_eq!(one(&b, "greet"), "Hello, Cy");
    let (_, b) = gw.call(p, "greet", json!(["Cy", "Yo"])).await;
    assert_eq!(one(&b, "greet"), "Yo, Cy");
    let (s, b) = gw.call(p, "greet", json!({"nme": "typo"})).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "invalid_request");
    assert!(b["message"].as_str().unwrap().contains("nme"), "{b}");

    let (_, b) = gw.call(p, "pick", json!([1])).await;
    assert_eq!(one(&b, "pick"), "int");
    let (_, b) = gw.call(p, "pick", json!(["one"])).await;
    assert_eq!(one(&b, "pick"), "text");
    let (_, b) = gw.call(p, "pick", json!([1, 2])).await;
    assert_eq!(one(&b, "pick"), "int,int");
    let (s, b) = gw.call(p, "pick", json!([null])).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["message"].as_str().unwrap().contains("ambiguous"), "{b}");
    assert_eq!(b["candidates"].as_array().map(Vec::len), Some(2), "{b}");
    let (s, b) = gw.call(p, "pick", json!([1, 2, 3])).await;
    assert_eq!(s, 400, "{b}");

    let (_, b) = gw.call(p, "sum_all", json!([1, 2, 3])).await;
    assert_eq!(one(&b, "sum_all"), 6);
    let (_, b) = gw.call(p, "sum_all", json!([[4, 5]])).await;
    assert_eq!(one(&b, "sum_all"), 9);

    let (_, b) = gw.call(p, "app.hello", json!(["you"])).await;
    assert_eq!(one(&b, "hello"), "hello you");
    let (s, b) = gw.call(p, "MixedCase", json!([])).await;
    assert_eq!((s, one(&b, "MixedCase")), (200, json!("mixed")), "{b}");
    // unquoted names fold to lower case, as in SQL
    let (s, _) = gw.call(p, "LIST_USERS", json!([])).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn postgres_errors_keep_sqlstate_message_detail_hint() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    let (s, b) = gw.call(p, "fail_with", json!(["insufficient funds"])).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "database_error");
    assert_eq!(b["sqlstate"], "P0001");
    assert_eq!(b["cause"], "insufficient funds");
    assert_eq!(b["detail"], "detail of insufficient funds");
    assert_eq!(b["hint"], "hint for insufficient funds");
    assert_eq!(b["database"], db.database.as_str());
    assert!(b["message"]
        .as_str()
        .unwrap()
        .contains("insufficient funds"));

    let (s, b) = gw.call(p, "divide", json!([1, 0])).await;
    assert_eq!((s, b["sqlstate"].clone()), (400, json!("22012")), "{b}");
    let (s, b) = gw.call(p, "echo_int4", json!(["not a number"])).await;
    assert_eq!((s, b["sqlstate"].clone()), (400, json!("22P02")), "{b}");
    let (s, b) = gw.call(p, "echo_int2", json!([70000])).await;
    assert_eq!((s, b["sqlstate"].clone()), (400, json!("22003")), "{b}");
    let (s, b) = gw.call(p, "echo_email", json!(["not-an-email"])).await;
    assert_eq!((s, b["sqlstate"].clone()), (400, json!("23514")), "{b}");
    let (s, b) = gw.call(p, "echo_mood", json!(["angry"])).await;
    assert_eq!((s, b["sqlstate"].clone()), (400, json!("22P02")), "{b}");
    let (s, b) = gw.call(p, "add_user", json!(["a@x.io", "dup"])).await;
    assert_eq!((s, b["sqlstate"].clone()), (400, json!("23505")), "{b}");
    assert!(b["detail"].as_str().unwrap_or("").contains("a@x.io"), "{b}");
    let (s, b) = gw.call(p, "internal_failure", json!([])).await;
    assert_eq!((s, b["sqlstate"].clone()), (500, json!("XX000")), "{b}");
    let (s, b) = gw.call(p, "echo_int4", json!([[1]])).await;
    assert_eq!(s, 400, "{b}");
}

#[tokio::test]
async fn bad_requests_and_not_found() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    let (s, b) = gw.call(p, "no_such_function", json!([])).await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("function_not_found")),
        "{b}"
    );
    assert_eq!(b["database"], db.database.as_str());
    // system and extension functions are not callable
    for f in [
        "pg_sleep",
        "pg_catalog.pg_sleep",
        "pg_catalog.pg_terminate_backend",
        "information_schema._pg_truetypid",
    ] {
        let (s, b) = gw.call(p, f, json!([1])).await;
        assert_eq!(s, 404, "{f}: {b}");
    }
    let (s, b) = gw.call("nosuchplatform", "f", json!([])).await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
    assert_eq!(b["database"], "nosuchplatform_main");
    let (_, h) = gw.get("/health").await;
    assert!(
        h["pools"]["databases"].get("nosuchplatform_main").is_none(),
        "no pool kept: {h}"
    );

    for (body, needle) in [
        (
            json!({"platform": p, "function": "f(); drop table users; --"}),
            "function",
        ),
        (json!({"platform": p, "function": "a b"}), "function"),
        (json!({"platform": "Bad-Name", "function": "f"}), "platform"),
        (
            json!({"platform": p, "tenant_id": "a;b", "function": "f"}),
            "tenant_id",
        ),
        (
            json!({"platform": p, "tenant_id": "x".repeat(64), "function": "f"}),
            "63 bytes",
        ),
        (
            json!({"platform": p, "database": "Other_main", "function": "f"}),
            "database",
        ),
        (
            json!({"platform": p, "database": format!("{p}_main"), "tenant_id": "a", "function": "f"}),
            "either",
        ),
        (
            json!({"platform": p, "function": "echo_int4", "params": 5}),
            "params",
        ),
        (json!({"platform": p}), "function"),
    ] {
        let (s, b) = gw.post("/call", &body).await;
        assert_eq!(s, 400, "{body} -> {b}");
        assert_eq!(b["error"], "invalid_request");
        assert!(
            b["message"].as_str().unwrap().contains(needle),
            "{body} -> {b}"
        );
    }
    // a database the platform does not own answers like a missing one
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "database": "other_main", "function": "f"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
    let (s, b) = gw.post_raw("/call", "{not json").await;
    assert_eq!((s, b["error"].clone()), (400, json!("invalid_request")));
    let (s, b) = gw.post_raw("/call", vec![b' '; 2 * 1024 * 1024]).await;
    assert_eq!((s, b["error"].clone()), (413, json!("payload_too_large")));
    let (s, b) = gw.get("/call").await;
    assert_eq!(s, 405, "{b}");
    let (s, b) = gw.get("/nope").await;
    assert_eq!((s, b["error"].clone()), (404, json!("not_found")));
    // tenant ids may be numbers, and a v2 database name may be given
    let tenant = db.tenant("42").await;
    gw.adopt(p, &[&tenant]).await;
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": 42, "function": "echo_int4", "params": [7]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = gw
        .post("/call", &json!({"platform": p, "database": format!("{p}_42"), "function": "echo_int4", "params": [7]}))
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn session_state_never_leaks_between_calls() {
    // a database deployed by an older migrator: reset statement after each call
    let db = TestDb::new().await;
    assert_no_session_leaks(&db).await;
}

#[tokio::test]
async fn session_state_never_leaks_with_the_after_call_function() {
    // a database the migrator deployed: the cleanup runs inside the call statement
    let db = deployed_db().await;
    assert_no_session_leaks(&db).await;
}

#[tokio::test]
async fn concurrent_calls_sharing_one_connection_see_none_of_each_others_state() {
    assert_shared_and_clean(deployed_db().await).await;
}

/// Version 2 of the after-call function (which released advisory locks
/// itself) stays in a database until its next deployment: its connections are
/// still shared, and its sessions still left clean.
#[tokio::test]
async fn a_database_with_the_previous_after_call_function_still_shares_clean_connections() {
    let db = TestDb::new().await;
    db.exec(AFTER_CALL_2).await;
    assert_shared_and_clean(db).await;
}

/// The router after a migrator change: a database deployed while version 2
/// of the after-call function was current gets version 3 at its next
/// deployment (an unchanged one too), and the router, told of the
/// deployment, runs the new statement on fresh connections that are still
/// shared and still left clean.
#[tokio::test]
async fn the_next_deployment_replaces_the_previous_after_call_function_and_the_router_follows() {
    let gw = std::sync::Arc::new(Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "1")]));
    let p = new_platform();
    let mut schema = SchemaDir::default();
    schema.set(
        "functions/locks.pssql",
        "CREATE OR REPLACE FUNCTION take_lock() RETURNS boolean LANGUAGE sql AS $$ SELECT pg_advisory_lock(4242) IS NOT NULL $$;
         CREATE OR REPLACE FUNCTION backend_pid() RETURNS integer LANGUAGE sql AS $$ SELECT pg_backend_pid() $$;",
    );
    let (s, b) = gw.register(&p, None, &schema).await;
    assert_eq!(s, 200, "{b}");
    let database = format!("{p}_main");
    let direct = cluster().connect(&database).await;
    let version = || async {
        direct
            .query_one(
                "SELECT obj_description(to_regprocedure($1), 'pg_proc')",
                &[&names::AFTER_CALL_FUNCTION],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(version().await, names::AFTER_CALL_VERSION);
    // as a migrator of the previous release left it
    direct.batch_execute(AFTER_CALL_2).await.unwrap();
    let shares_cleanly = || async {
        let mut pids = std::collections::BTreeSet::new();
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let (gw, p) = (gw.clone(), p.clone());
                tokio::spawn(async move {
                    let f = if i % 2 == 0 {
                        "take_lock"
                    } else {
                        "backend_pid"
                    };
                    (f, gw.call(&p, f, json!([])).await)
                })
            })
            .collect();
        for c in calls {
            let (f, (s, b)) = c.await.unwrap();
            assert_eq!(s, 200, "{f}: {b}");
            if f == "backend_pid" {
                pids.insert(b["rows"][0]["backend_pid"].to_string());
            }
        }
        let free: bool = direct
            .query_one("SELECT pg_try_advisory_lock(4242)", &[])
            .await
            .unwrap()
            .get(0);
        direct
            .batch_execute("SELECT pg_advisory_unlock_all()")
            .await
            .unwrap();
        // What the router's session ran last: the call statement ending with
        // the after-call function, not a reset of its own (which it sends
        // only where the function is not current, and lends such a
        // connection to one call at a time).
        let (s, b) = gw.call(&p, "backend_pid", json!([])).await;
        assert_eq!(s, 200, "{b}");
        let pid = b["rows"][0]["backend_pid"].as_i64().unwrap() as i32;
        let last: String = direct
            .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get(0);
        let by_function = last.ends_with(&format!(
            "pg_advisory_unlock_all(), {} FROM (SELECT * FROM \"public\".\"backend_pid\"()) AS _sdg_r",
            names::AFTER_CALL_FUNCTION
        ));
        (pids.len(), free, by_function)
    };
    assert_eq!(shares_cleanly().await, (1, true, true), "with version 2");
    let (s, b) = gw.migrate(&p, None, &schema, false).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(version().await, names::AFTER_CALL_VERSION);
    assert_eq!(
        shares_cleanly().await,
        (1, true, true),
        "after the deployment"
    );
}

const AFTER_CALL_2: &str = "
CREATE OR REPLACE FUNCTION public._stonescriptdb_gateway_after_call() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RESET ALL;
    DISCARD SEQUENCES;
    UNLISTEN *;
    PERFORM pg_advisory_unlock_all();
    IF pg_my_temp_schema() <> 0
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = pg_my_temp_schema()) THEN
        DISCARD TEMP;
    END IF;
    RETURN false;
END $$;
COMMENT ON FUNCTION public._stonescriptdb_gateway_after_call() IS 'stonescriptdb-gateway after-call 2';";

async fn assert_shared_and_clean(db: TestDb) {
    // one connection for the whole database: every call is pipelined on it
    let gw = std::sync::Arc::new(Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "1")]));
    gw.adopt_db(&db).await;
    let p = db.platform.clone();
    let mut calls = Vec::new();
    for i in 0..240 {
        let (function, params) = match i % 6 {
            0 => ("set_custom", json!([format!("secret-{i}")])),
            1 => ("get_custom", json!([])),
            2 => ("make_temp", json!([])),
            3 => ("temp_exists", json!([])),
            4 => ("lock_then_fail", json!([])),
            _ => ("backend_pid", json!([])),
        };
        let gw = gw.clone();
        let p = p.clone();
        calls.push(tokio::spawn(async move {
            let (s, b) = gw.call(&p, function, params).await;
            (function, s, b)
        }));
    }
    let mut pids = std::collections::BTreeSet::new();
    for c in calls {
        let (function, s, b) = c.await.unwrap();
        match function {
            "get_custom" => assert!(
                matches!(b["rows"][0]["get_custom"].as_str(), None | Some("")),
                "a setting leaked into a concurrent call: {b}"
            ),
            "temp_exists" => assert_eq!(b["rows"][0]["temp_exists"], false, "{b}"),
            // a temp table of a previous call would make this fail
            "make_temp" => assert_eq!(s, 200, "{b}"),
            "lock_then_fail" => assert_eq!(s, 400, "{b}"),
            "backend_pid" => {
                pids.insert(b["rows"][0]["backend_pid"].to_string());
            }
            _ => assert_eq!(s, 200, "{b}"),
        }
    }
    assert_eq!(
        pids.len(),
        1,
        "calls did not share the connection: {pids:?}"
    );
    // nothing is left behind once they are all answered
    assert!(
        advisory_lock_is_free(&db, 4343).await,
        "advisory lock leaked"
    );
}

/// A function's rows are rendered with the settings it left (before the
/// session is reset), and the next call starts from the defaults: for a
/// function that returns one row (rendered in the statement's select list) and
/// one that returns a set (aggregated), with and without the after-call
/// function.
#[tokio::test]
async fn rows_are_rendered_with_the_functions_settings_and_the_next_call_starts_clean() {
    for db in [TestDb::new().await, deployed_db().await] {
        db.exec(
            "CREATE FUNCTION in_tokyo() RETURNS timestamptz LANGUAGE plpgsql AS $$
             BEGIN PERFORM set_config('TimeZone', 'Asia/Tokyo', false);
                   RETURN timestamptz '2024-01-01 00:00:00+00'; END $$;
             CREATE FUNCTION in_tokyo_set() RETURNS SETOF timestamptz LANGUAGE plpgsql AS $$
             BEGIN PERFORM set_config('TimeZone', 'Asia/Tokyo', false);
                   RETURN NEXT timestamptz '2024-01-01 00:00:00+00';
                   RETURN NEXT timestamptz '2024-01-02 00:00:00+00'; END $$;
             CREATE FUNCTION zone() RETURNS text LANGUAGE sql AS $$ SELECT current_setting('TimeZone') $$;",
        )
        .await;
        let gw = Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "1")]);
        gw.adopt_db(&db).await;
        let p = db.platform.as_str();
        let (_, b) = gw.call(p, "zone", json!([])).await;
        let default_zone = b["rows"][0]["zone"].clone();
        assert_ne!(default_zone, "Asia/Tokyo");
        for (function, rows) in [
            (
                "in_tokyo",
                json!([{"in_tokyo": "2024-01-01T09:00:00+09:00"}]),
            ),
            (
                "in_tokyo_set",
                json!([{"in_tokyo_set": "2024-01-01T09:00:00+09:00"}, {"in_tokyo_set": "2024-01-02T09:00:00+09:00"}]),
            ),
        ] {
            let (s, b) = gw.call(p, function, json!([])).await;
            assert_eq!((s, b["rows"].clone()), (200, rows), "{b}");
            let (_, b) = gw.call(p, "zone", json!([])).await;
            assert_eq!(b["rows"][0]["zone"], default_zone, "after {function}: {b}");
        }
    }
}

#[tokio::test]
async fn a_long_call_does_not_hold_up_short_calls_on_a_shared_connection() {
    let db = deployed_db().await;
    let gw = std::sync::Arc::new(Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "4")]));
    gw.adopt_db(&db).await;
    let p = db.platform.clone();
    // backend_pid is short once timed
    for _ in 0..5 {
        let (s, _) = gw.call(&p, "backend_pid", json!([])).await;
        assert_eq!(s, 200);
    }
    let slow = {
        let (gw, p) = (gw.clone(), p.clone());
        tokio::spawn(async move { gw.call(&p, "sleep_ms", json!([4000])).await })
    };
    // let the long call reach its connection
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut short = Vec::new();
    for _ in 0..40 {
        let (gw, p) = (gw.clone(), p.clone());
        short.push(tokio::spawn(async move {
            gw.call(&p, "backend_pid", json!([])).await
        }));
    }
    for c in short {
        let (s, b) = c.await.unwrap();
        assert_eq!(s, 200, "{b}");
    }
    assert!(
        !slow.is_finished(),
        "short calls waited for the long one to finish"
    );
    let (s, b) = slow.await.unwrap();
    assert_eq!((s, b["rows"][0]["sleep_ms"].clone()), (200, json!("slept")));
}

#[tokio::test]
async fn a_function_redefined_by_hand_answers_with_its_new_shape() {
    // One connection, so the statement prepared for the first version of each
    // function is the one that meets its replacement: the call statement must
    // not bake in anything of the function's shape (result columns, names).
    let db = deployed_db().await;
    let gw = Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "1")]);
    gw.adopt_db(&db).await;
    let p = db.platform.as_str();
    let rows = |b: &serde_json::Value| (b["rows"].clone(), b["row_count"].clone());
    let recreate = "DROP FUNCTION {f}(int); CREATE FUNCTION {f}";
    for (i, (ddl, expected)) in [
        (
            format!("{recreate}(n int) RETURNS SETOF int LANGUAGE sql AS $$ SELECT generate_series(1, n) $$"),
            json!([{"f": 1}, {"f": 2}, {"f": 3}]),
        ),
        (
            format!("{recreate}(n int) RETURNS text LANGUAGE sql AS $$ SELECT 'n=' || n $$"),
            json!([{"f": "n=3"}]),
        ),
        (
            format!("{recreate}(n int, OUT a int, OUT b text) LANGUAGE sql AS $$ SELECT n, 'x' $$"),
            json!([{"a": 3, "b": "x"}]),
        ),
        (
            format!("{recreate}(n int) RETURNS numeric LANGUAGE sql AS $$ SELECT n / 2.0 $$"),
            json!([{"f": 1.5}]),
        ),
        (
            format!("{recreate}(n int) RETURNS void LANGUAGE sql AS $$ SELECT $$"),
            json!([{"f": null}]),
        ),
        // same oid, same return type, but the column is now named after the OUT parameter
        (
            "CREATE OR REPLACE FUNCTION {f}(n int, OUT total int) LANGUAGE sql AS $$ SELECT n $$"
                .to_owned(),
            json!([{"total": 3}]),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let f = format!("shape_shift_{i}");
        db.exec(&format!(
            "CREATE FUNCTION {f}(n int) RETURNS int LANGUAGE sql AS $$ SELECT n $$"
        ))
        .await;
        let (s, b) = gw.call(p, &f, json!([3])).await;
        assert_eq!((s, rows(&b)), (200, (json!([{ &f: 3 }]), json!(1))));
        db.exec(&ddl.replace("{f}", &f)).await;
        let (s, b) = gw.call(p, &f, json!([3])).await;
        let expected = serde_json::to_string(&expected)
            .unwrap()
            .replace("\"f\"", &format!("\"{f}\""));
        let expected: serde_json::Value = serde_json::from_str(&expected).unwrap();
        let n = expected.as_array().unwrap().len();
        assert_eq!((s, rows(&b)), (200, (expected, json!(n))), "{ddl}");
    }
}

/// A test database with the after-call function the migrator installs in
/// every database it deploys (so the router shares its connections).
async fn deployed_db() -> TestDb {
    let db = TestDb::new().await;
    db.exec(include_str!("../../migrator/src/after_call.sql"))
        .await;
    db
}

/// Whether a session other than the router's can take advisory lock `key`
/// (it lets go of it again).
async fn advisory_lock_is_free(db: &TestDb, key: i64) -> bool {
    let direct = db.client().await;
    let free = direct
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    direct
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    free
}

async fn assert_no_session_leaks(db: &TestDb) {
    // one connection, so every call reuses the same session
    let gw = Gateway::start(&[("MAX_CONNECTIONS_PER_POOL", "1")]);
    gw.adopt_db(db).await;
    let p = db.platform.as_str();
    let (_, b) = gw.call(p, "backend_pid", json!([])).await;
    let pid = b["rows"][0]["backend_pid"].clone();
    gw.call(p, "set_session_path", json!([])).await;
    let (_, b) = gw.call(p, "show_path", json!([])).await;
    assert_eq!(b["rows"][0]["show_path"], "public", "{b}");
    gw.call(p, "set_custom", json!(["secret"])).await;
    let (_, b) = gw.call(p, "get_custom", json!([])).await;
    assert!(
        matches!(b["rows"][0]["get_custom"].as_str(), None | Some("")),
        "{b}"
    );
    let (s, b) = gw.call(p, "make_temp", json!([])).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = gw.call(p, "temp_exists", json!([])).await;
    assert_eq!(b["rows"][0]["temp_exists"], false, "{b}");
    let (_, b) = gw.call(p, "take_lock", json!([])).await;
    assert_eq!(b["rows"][0]["take_lock"], true);
    assert!(
        advisory_lock_is_free(db, 4242).await,
        "advisory lock leaked past the call"
    );
    // a lock taken by a function that then fails is released too
    let (s, _) = gw.call(p, "lock_then_fail", json!([])).await;
    assert_eq!(s, 400);
    assert!(
        advisory_lock_is_free(db, 4343).await,
        "advisory lock of a failed call leaked"
    );
    // sequence cache: lastval() must not see the previous call's nextval()
    let (s, _) = gw.call(p, "next_counter", json!([])).await;
    assert_eq!(s, 200);
    let (s, b) = gw.call(p, "last_counter", json!([])).await;
    assert_eq!((s, b["sqlstate"].clone()), (500, json!("55000")), "{b}");
    // LISTEN registrations
    let (s, b) = gw.call(p, "listen_somewhere", json!([])).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = gw.call(p, "listening", json!([])).await;
    assert_eq!(b["rows"][0]["listening"], 0, "{b}");
    let (_, b) = gw.call(p, "backend_pid", json!([])).await;
    assert_eq!(b["rows"][0]["backend_pid"], pid, "same session was reused");
}

#[tokio::test]
async fn replaced_function_works_on_next_call_without_restart() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    db.exec("CREATE FUNCTION evolve(a integer) RETURNS integer LANGUAGE sql AS 'SELECT a * 2'")
        .await;
    let (_, b) = gw.call(p, "evolve", json!([21])).await;
    assert_eq!(b["rows"][0]["evolve"], 42);
    // body change
    db.exec("CREATE OR REPLACE FUNCTION evolve(a integer) RETURNS integer LANGUAGE sql AS 'SELECT a * 3'").await;
    let (_, b) = gw.call(p, "evolve", json!([2])).await;
    assert_eq!(b["rows"][0]["evolve"], 6);
    // signature change: new argument types and result type
    db.exec(
        "DROP FUNCTION evolve(integer);
         CREATE FUNCTION evolve(a text, b text) RETURNS TABLE (joined text, n integer)
           LANGUAGE sql AS 'SELECT a || b, 1'",
    )
    .await;
    let (s, b) = gw.call(p, "evolve", json!(["x", "y"])).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"], json!([{"joined": "xy", "n": 1}]));
    // same arity, different type
    db.exec(
        "DROP FUNCTION evolve(text, text);
         CREATE FUNCTION evolve(a jsonb, b integer) RETURNS jsonb LANGUAGE sql AS 'SELECT a || jsonb_build_object(''b'', b)'",
    )
    .await;
    let (s, b) = gw.call(p, "evolve", json!([{"a": 1}, 2])).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"][0]["evolve"], json!({"a": 1, "b": 2}));
    // dropped: 404
    db.exec("DROP FUNCTION evolve(jsonb, integer)").await;
    let (s, _) = gw.call(p, "evolve", json!([{"a": 1}, 2])).await;
    assert_eq!(s, 404);
    // new overload appears after a cached lookup
    db.exec("CREATE FUNCTION evolve() RETURNS text LANGUAGE sql AS 'SELECT ''back'''")
        .await;
    let (s, b) = gw.call(p, "evolve", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["evolve"].clone()),
        (200, json!("back")),
        "{b}"
    );
}

/// Arguments travel as text parameters when every one is a scalar of a type
/// its input function reads, and as one JSON parameter otherwise (an array
/// argument, a composite, VARIADIC). Both ways must answer alike, value for
/// value and error for error: each type has a function taking it alone
/// (text way) and one also taking an array, given one (JSON way).
#[tokio::test]
async fn text_and_json_argument_passing_answer_alike() {
    let (db, gw) = setup().await;
    let p = db.platform.as_str();
    let types = [
        "integer",
        "bigint",
        "numeric",
        "real",
        "boolean",
        "text",
        "character varying(3)",
        "uuid",
        "date",
        "timestamptz",
        "interval",
        "json",
        "jsonb",
        "bytea",
        "int4range",
        "posint",
        "mood2",
        "jsondom",
    ];
    let mut sql = String::from(
        "CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
         CREATE TYPE mood2 AS ENUM ('sad', 'ok', 'it''s fine');
         CREATE DOMAIN jsondom AS jsonb;\n",
    );
    for (i, t) in types.iter().enumerate() {
        sql.push_str(&format!(
            "CREATE FUNCTION eq_t{i}(v {t}) RETURNS {t} LANGUAGE sql AS $$ SELECT v $$;
             CREATE FUNCTION eq_j{i}(v {t}, pad int[]) RETURNS {t} LANGUAGE sql AS $$ SELECT v $$;\n"
        ));
    }
    db.exec(&sql).await;
    let values = [
        json!(1),
        json!(-7),
        json!(1.5),
        json!("12"),
        json!(" 42 "),
        json!("abc"),
        json!(""),
        json!(true),
        json!("yes"),
        json!(null),
        json!({"a": [1, "x"]}),
        json!([1, 2]),
        json!("caf\u{e9} \"q\" \\"),
        json!("a\u{0}b"),
        json!("3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b"),
        json!("2024-02-29T10:00:00+02"),
        json!("1 day"),
        json!("[1,5)"),
        json!("\\x00ff"),
        json!("it's fine"),
        json!("1e3"),
        json!(12345678901234567890u64),
    ];
    for (i, t) in types.iter().enumerate() {
        for v in &values {
            let (st, bt) = gw.call(p, &format!("eq_t{i}"), json!([v])).await;
            let (sj, bj) = gw.call(p, &format!("eq_j{i}"), json!([v, [1]])).await;
            let what = format!("{t} given {v}: text way {st} {bt}, JSON way {sj} {bj}");
            assert_eq!(st, sj, "{what}");
            if st == 200 {
                assert_eq!(
                    bt["rows"][0][format!("eq_t{i}")],
                    bj["rows"][0][format!("eq_j{i}")],
                    "{what}"
                );
            } else {
                assert_eq!(
                    (&bt["error"], &bt["sqlstate"]),
                    (&bj["error"], &bj["sqlstate"]),
                    "{what}"
                );
            }
        }
    }
    // and the two ways really are two: the statements as PostgreSQL got them
    db.exec(
        "CREATE FUNCTION stmt_t(v int) RETURNS text LANGUAGE sql AS $$ SELECT current_query() $$;
         CREATE FUNCTION stmt_j(v int, pad int[]) RETURNS text LANGUAGE sql AS $$ SELECT current_query() $$;",
    )
    .await;
    let (_, b) = gw.call(p, "stmt_t", json!([1])).await;
    let text_way = b["rows"][0]["stmt_t"].as_str().unwrap().to_owned();
    assert!(
        text_way.contains("\"stmt_t\"($1::integer)") && !text_way.contains("json_to_record"),
        "{text_way}"
    );
    let (_, b) = gw.call(p, "stmt_j", json!([1, [1]])).await;
    let json_way = b["rows"][0]["stmt_j"].as_str().unwrap();
    assert!(json_way.contains("json_to_record"), "{json_way}");
    // a set-returning SQL function is inlined: with parameters its plan
    // would be made again at every call, so it goes the JSON way
    db.exec(
        "CREATE FUNCTION stmt_set(v int) RETURNS SETOF text LANGUAGE sql AS $$ SELECT current_query() FROM generate_series(1, v) $$;",
    )
    .await;
    let (_, b) = gw.call(p, "stmt_set", json!([2])).await;
    assert_eq!(b["row_count"], 2, "{b}");
    let set_way = b["rows"][0]["stmt_set"].as_str().unwrap();
    assert!(set_way.contains("json_to_record"), "{set_way}");
}

/// Statements of `database` running `pg_sleep` right now, as the server sees them.
async fn sleeping(db: &TestDb) -> i64 {
    let c = stonescriptdb_tests::cluster().connect("postgres").await;
    c.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query LIKE '%sleep_ms%'",
        &[&db.database],
    )
    .await
    .unwrap()
    .get(0)
}

/// Send a `/call` on a raw connection, without waiting for the answer; the
/// caller hangs up by dropping the stream.
async fn call_raw(gw: &Gateway, platform: &str, function: &str, arg: i64) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let body = json!({"platform": platform, "function": function, "params": [arg]}).to_string();
    let addr = gw.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /call HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    s
}

/// Wait up to `secs` for no statement of `db` to be sleeping.
async fn sleeping_stops_within(db: &TestDb, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if sleeping(db).await == 0 {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// A call that runs longer than `CALL_TIMEOUT_MS` is cancelled by
/// PostgreSQL and answered 504 `statement_timeout` with PostgreSQL's message;
/// the connection serves the next call; a platform listed in `CALL_TIMEOUTS`
/// has its own limit (0: none).
#[tokio::test]
async fn a_call_running_too_long_is_answered_504_and_platforms_have_their_own_limit() {
    let (quick, patient) = (deployed_db().await, TestDb::new().await);
    let gw = Gateway::start(&[
        ("CALL_TIMEOUT_MS", "400"),
        ("CALL_TIMEOUTS", &format!("{}:0", patient.platform)),
    ]);
    gw.adopt_db(&quick).await;
    gw.adopt_db(&patient).await;
    for db in [&quick, &patient] {
        // a function that sets its own, longer timeout gets the limit back
        // after the call (RESET ALL returns to the session's start value)
        let (s, b) = gw
            .call(&db.platform, "set_timeout_and_sleep", json!([100]))
            .await;
        assert_eq!(s, 200, "{b}");
    }
    let started = std::time::Instant::now();
    let (s, b) = gw.call(&quick.platform, "sleep_ms", json!([5000])).await;
    let took = started.elapsed();
    assert_eq!(s, 504, "{b}");
    assert_eq!(b["error"], "statement_timeout", "{b}");
    assert_eq!(b["sqlstate"], "57014", "{b}");
    assert_eq!(b["database"], json!(quick.database), "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("canceling statement due to statement timeout"),
        "{b}"
    );
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    let (s, b) = gw.call(&quick.platform, "sleep_ms", json!([50])).await;
    assert_eq!(
        (s, &b["rows"][0]["sleep_ms"]),
        (200, &json!("slept")),
        "{b}"
    );
    // the override: no limit for this platform
    let (s, b) = gw.call(&patient.platform, "sleep_ms", json!([900])).await;
    assert_eq!(
        (s, &b["rows"][0]["sleep_ms"]),
        (200, &json!("slept")),
        "{b}"
    );
}

/// A client that hangs up mid-call gets its statement cancelled, on a
/// connection of its own and on a shared one, and the gateway goes on
/// answering; a call sharing the connection with the abandoned one is not
/// cancelled with it.
#[tokio::test]
async fn a_client_that_hangs_up_mid_call_gets_its_statement_cancelled() {
    let (own, shared) = (TestDb::new().await, deployed_db().await);
    let gw = std::sync::Arc::new(Gateway::start(&[
        ("CALL_TIMEOUT_MS", "0"),
        ("MAX_CONNECTIONS_PER_POOL", "1"),
    ]));
    gw.adopt_db(&own).await;
    gw.adopt_db(&shared).await;
    for db in [&own, &shared] {
        let client = call_raw(&gw, &db.platform, "sleep_ms", 60_000).await;
        assert_eq!(
            sleeping(db).await,
            1,
            "{}: the call did not start",
            db.database
        );
        drop(client);
        assert!(
            sleeping_stops_within(db, 5).await,
            "{}: the abandoned statement still runs",
            db.database
        );
        let (s, b) = gw.call(&db.platform, "sleep_ms", json!([10])).await;
        assert_eq!(s, 200, "{}: {b}", db.database);
    }
    // One shared connection: the abandoned call is pipelined behind
    // another one, which a cancel request would stop in its place. That
    // call must be answered.
    let ahead = {
        let (gw, p) = (gw.clone(), shared.platform.clone());
        tokio::spawn(async move { gw.call(&p, "sleep_ms", json!([1500])).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(call_raw(&gw, &shared.platform, "sleep_ms", 1000).await);
    let (s, b) = ahead.await.unwrap();
    assert_eq!(s, 200, "the call ahead of the abandoned one: {b}");
    // three calls abandoned, two of them cancelled
    let metrics = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "stonescriptdb_router_calls_abandoned_total 3",
        "stonescriptdb_router_statements_cancelled_total 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }
}
