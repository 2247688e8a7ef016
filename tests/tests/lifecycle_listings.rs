//! End-to-end tests of the listings operators and tools read: a platform's
//! databases with their state and last deployment, platforms with the API
//! they use, the functions `/call` can reach (against `pg_proc`), and the
//! deployment history's request id, duration and retention.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir};

const ADMIN: &str = "listings-admin-token-0001";

/// Overloads, defaults, a variadic, OUT and INOUT parameters, a table
/// function, a procedure (never callable), and a function a migration
/// created in a schema of its own.
fn functions_schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "functions/area.pssql",
        "CREATE FUNCTION area(w integer, h integer DEFAULT 2) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT w * h $$;\n\
         CREATE FUNCTION area(r numeric) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT 3 * r * r $$;",
    )
    .set(
        "functions/total.pssql",
        "CREATE FUNCTION total(VARIADIC nums integer[]) RETURNS bigint LANGUAGE sql AS $$ SELECT sum(x) FROM unnest(nums) x $$;",
    )
    .set(
        "functions/split_name.pssql",
        "CREATE FUNCTION split_name(full_name text, OUT first text, OUT last text) LANGUAGE sql AS $$ SELECT split_part(full_name, ' ', 1), split_part(full_name, ' ', 2) $$;",
    )
    .set(
        "functions/bump.pssql",
        "CREATE FUNCTION bump(INOUT n integer, step integer DEFAULT 1) LANGUAGE sql AS $$ SELECT n + step $$;",
    )
    .set(
        "functions/films.pssql",
        "CREATE FUNCTION films(min_year integer) RETURNS TABLE (id integer, title text) LANGUAGE sql AS $$ SELECT 1, 'Alien'::text WHERE min_year < 2000 $$;",
    )
    .set(
        "functions/tidy.pssql",
        "CREATE PROCEDURE tidy() LANGUAGE sql AS $$ SELECT 1 $$;",
    )
    .set(
        "migrations/001_reports.sql",
        "CREATE SCHEMA reports;\n\
         CREATE FUNCTION reports.count_all() RETURNS integer LANGUAGE sql AS $$ SELECT 42 $$;",
    );
    s
}

/// GET with a bearer token and an `X-Request-Id`.
async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", gw.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The argument list as `pg_get_function_arguments` writes it, rebuilt
/// from a listed function.
fn arguments_text(f: &Value) -> String {
    let mut parts = Vec::new();
    let mut inout = BTreeSet::new();
    for a in f["arguments"].as_array().unwrap() {
        let mode = match a["mode"].as_str().unwrap() {
            "in" => "",
            "inout" => "INOUT ",
            "variadic" => "VARIADIC ",
            m => panic!("an input argument of mode {m}: {f}"),
        };
        if a["mode"] == "inout" {
            inout.insert(a["name"].as_str().unwrap_or("").to_owned());
        }
        let name = a["name"]
            .as_str()
            .map(|n| format!("{n} "))
            .unwrap_or_default();
        let default = a["default"]
            .as_str()
            .map(|d| format!(" DEFAULT {d}"))
            .unwrap_or_default();
        parts.push(format!(
            "{mode}{name}{}{default}",
            a["type"].as_str().unwrap()
        ));
    }
    if !f["returns"].as_str().unwrap().starts_with("TABLE(") {
        for c in f["columns"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap_or("");
            if !inout.contains(name) {
                parts.push(format!("OUT {name} {}", c["type"].as_str().unwrap()));
            }
        }
    }
    parts.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_listing_is_what_pg_proc_and_call_say() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (s, b) = gw.register(&p, Some("t1"), &functions_schema()).await;
    assert_eq!(s, 200, "{b}");

    let (s, b) = gw
        .get(&format!("/platform/{p}/functions?tenant_id=t1"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["database"], format!("{p}_t1"), "{b}");
    let listed: Vec<&Value> = b["functions"].as_array().unwrap().iter().collect();
    assert_eq!(b["count"], json!(listed.len()));
    let signatures: BTreeSet<&str> = listed
        .iter()
        .map(|f| f["signature"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        "area(integer,integer)",
        "area(numeric)",
        "bump(integer,integer)",
        "films(integer)",
        "reports.count_all()",
        "split_name(text)",
        "total(integer[])",
    ]
    .into();
    // the procedure is not callable, so not listed
    assert_eq!(signatures, expected, "{b}");

    // each one as PostgreSQL itself describes it
    let tenant = cluster().connect(&format!("{p}_t1")).await;
    for f in &listed {
        let sig = f["signature"].as_str().unwrap();
        let row = tenant
            .query_one(
                "SELECT pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.proretset,
                        p.provolatile::text, p.provariadic <> 0, n.nspname::text, p.proname::text
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE p.oid = $1::text::regprocedure",
                &[&sig],
            )
            .await
            .unwrap();
        assert_eq!(arguments_text(f), row.get::<_, String>(0), "{f}");
        assert_eq!(f["returns"], json!(row.get::<_, String>(1)), "{f}");
        assert_eq!(f["returns_set"], json!(row.get::<_, bool>(2)), "{f}");
        let volatility = match row.get::<_, String>(3).as_str() {
            "i" => "immutable",
            "s" => "stable",
            _ => "volatile",
        };
        assert_eq!(f["volatility"], volatility, "{f}");
        assert_eq!(f["variadic"], json!(row.get::<_, bool>(4)), "{f}");
        assert_eq!(f["schema"], json!(row.get::<_, String>(5)), "{f}");
        assert_eq!(f["name"], json!(row.get::<_, String>(6)), "{f}");
    }
    let by_sig = |sig: &str| *listed.iter().find(|f| f["signature"] == sig).unwrap();
    let area = by_sig("area(integer,integer)");
    assert_eq!(area["arguments"][1]["default"], "2", "{area}");
    assert_eq!(area["columns"], json!([]), "{area}");
    let films = by_sig("films(integer)");
    assert_eq!(
        films["columns"],
        json!([{"name": "id", "type": "integer"}, {"name": "title", "type": "text"}])
    );
    assert_eq!(
        by_sig("total(integer[])")["arguments"][0]["mode"],
        "variadic"
    );

    // and /call reaches each listed name, defaults and all
    let call = |function: &'static str, params: Value| {
        let gw = &gw;
        let p = p.clone();
        async move {
            gw.post(
                "/call",
                &json!({"platform": p, "tenant_id": "t1", "function": function, "params": params}),
            )
            .await
        }
    };
    let (s, b) = call("area", json!({"w": 3})).await;
    assert_eq!((s, b["rows"][0]["area"].clone()), (200, json!(6)), "{b}");
    let (s, b) = call("reports.count_all", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["count_all"].clone()),
        (200, json!(42)),
        "{b}"
    );
    let (s, b) = call("bump", json!({"n": 4})).await;
    assert_eq!((s, b["rows"][0]["n"].clone()), (200, json!(5)), "{b}");
    let (s, b) = call("tidy", json!([])).await;
    assert_eq!(s, 400, "a procedure is not callable: {b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_listing_addresses_a_database_like_call_and_only_the_callers() {
    let (a, b_platform) = (new_platform(), new_platform());
    let deploy_a = "listings-deploy-token-a-01";
    let gw = Gateway::start(&[
        ("ADMIN_TOKEN", ADMIN),
        ("DEPLOY_TOKENS", &format!("{a}:{deploy_a}")),
    ]);
    let mut schema = SchemaDir::default();
    schema.set(
        "functions/ping.pssql",
        "CREATE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'pong' $$;",
    );
    for p in [&a, &b_platform] {
        let form = reqwest::multipart::Form::new()
            .text("platform", p.clone())
            .part(
                "schema",
                reqwest::multipart::Part::bytes(schema.tar_gz()).file_name("s.tar.gz"),
            );
        let r = reqwest::Client::new()
            .post(format!("{}/register", gw.url))
            .bearer_auth(ADMIN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // neither tenant_id nor database: {platform}_main, as /call does
    let (s, body) = get(&gw, &format!("/platform/{a}/functions"), Some(deploy_a)).await;
    assert_eq!(
        (s, body["database"].clone()),
        (200, json!(format!("{a}_main"))),
        "{body}"
    );
    assert_eq!(body["functions"][0]["name"], "ping", "{body}");
    // the same database by its full name
    let q = format!("/platform/{a}/functions?database={a}_main");
    assert_eq!(get(&gw, &q, Some(deploy_a)).await.0, 200);
    // careless requests: refused, naming what is wrong
    for (q, says) in [
        (
            format!("/platform/{a}/functions?tenant_id=x&database={a}_main"),
            "not both",
        ),
        (format!("/platform/{a}/functions?tenant=main"), "\"tenant\""),
        (
            format!("/platform/{a}/functions?uuid=abc"),
            "uuid goes with schema_name",
        ),
        (format!("/platform/{a}/functions?tenant_id="), "empty"),
        (
            format!("/platform/{a}/functions?tenant_id=Main"),
            "tenant_id",
        ),
    ] {
        let (s, body) = get(&gw, &q, Some(deploy_a)).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{q}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains(says),
            "{q}: {body}"
        );
    }
    // another platform's database, through this platform's name: like a missing one
    let q = format!("/platform/{a}/functions?database={b_platform}_main");
    let (s, body) = get(&gw, &q, Some(deploy_a)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("database_not_found")),
        "{body}"
    );
    let (missing, _) = get(
        &gw,
        &format!("/platform/{a}/functions?tenant_id=nobody"),
        Some(deploy_a),
    )
    .await;
    assert_eq!(missing, 404);
    // another platform's listing with this platform's token
    let (s, _) = get(
        &gw,
        &format!("/platform/{b_platform}/functions"),
        Some(deploy_a),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = get(&gw, &format!("/platform/{b_platform}/functions"), None).await;
    assert_eq!(s, 401);
    let (s, body) = get(
        &gw,
        &format!("/platform/{b_platform}/functions"),
        Some(ADMIN),
    )
    .await;
    assert_eq!((s, body["count"].clone()), (200, json!(1)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_and_platform_listings_answer_an_operators_questions() {
    let gw = Gateway::start(&[]);
    let (v1, v2) = (new_platform(), gw.register_platform().await);
    let mut schema = SchemaDir::default();
    schema
        .set(
            "tables/notes.pssql",
            "CREATE TABLE notes (id int PRIMARY KEY, body text);",
        )
        .set(
            "functions/ping.pssql",
            "CREATE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'pong' $$;",
        );
    assert_eq!(gw.register(&v1, None, &schema).await.0, 200);
    assert_eq!(gw.register(&v1, Some("t1"), &schema).await.0, 200);
    let (s, b) = gw
        .upload_as(
            &format!("/platform/{v2}/schema"),
            &[("schema_name", "store")],
            "schema",
            schema.tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": v2, "schema_name": "store", "database_id": "d1"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");

    // a database being created is listed with its state, not as a ready name
    let catalog = gw.catalog().await;
    catalog
        .execute(
            "INSERT INTO databases (name, platform, kind, tenant_id, owner_role, state)
             SELECT $1, name, 'v1', 'ghost', owner_role, 'creating' FROM platforms WHERE name = $2",
            &[&format!("{v1}_ghost"), &v1],
        )
        .await
        .unwrap();

    let (s, b) = gw.get(&format!("/admin/databases?platform={v1}")).await;
    assert_eq!(s, 200, "{b}");
    // the seeds' shape is kept
    assert_eq!(
        b["databases"],
        json!([format!("{v1}_main"), format!("{v1}_t1")]),
        "{b}"
    );
    assert_eq!(b["count"], 2);
    let items = b["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            format!("{v1}_ghost"),
            format!("{v1}_main"),
            format!("{v1}_t1")
        ]
    );
    assert_eq!(items[0]["state"], "creating", "{b}");
    assert!(items[0].get("last_deployment").is_none(), "{b}");
    let t1 = &items[2];
    assert_eq!(
        (
            t1["kind"].clone(),
            t1["tenant_id"].clone(),
            t1["state"].clone(),
            t1["pinned"].clone()
        ),
        (json!("v1"), json!("t1"), json!("ready"), json!(false)),
        "{t1}"
    );
    assert!(items[1].get("tenant_id").is_none(), "{b}");
    let last = &t1["last_deployment"];
    assert_eq!(
        (
            last["operation"].clone(),
            last["status"].clone(),
            last["dry_run"].clone()
        ),
        (json!("register"), json!("created"), json!(false)),
        "{t1}"
    );
    assert!(
        t1.get("size_bytes").is_none(),
        "sizes cost a query each: only when asked"
    );
    let (s, b) = gw
        .get(&format!("/admin/databases?platform={v1}&size=1"))
        .await;
    assert_eq!(s, 200, "{b}");
    let size = |i: usize| b["items"][i]["size_bytes"].as_i64();
    // PostgreSQL's smallest database is several MB; the ghost has none
    assert!(size(2).unwrap() > 1_000_000, "{b}");
    assert_eq!(size(0), None, "{b}");
    for bad in ["yes", "TRUE1"] {
        let (s, b) = gw
            .get(&format!("/admin/databases?platform={v1}&size={bad}"))
            .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("invalid_request")),
            "{b}"
        );
    }
    catalog
        .execute(
            "DELETE FROM databases WHERE name = $1",
            &[&format!("{v1}_ghost")],
        )
        .await
        .unwrap();

    let (s, b) = gw.get(&format!("/admin/databases?platform={v2}")).await;
    assert_eq!(s, 200, "{b}");
    let d1 = &b["items"][0];
    assert_eq!(
        (
            d1["kind"].clone(),
            d1["schema_name"].clone(),
            d1["database_id"].clone(),
            d1["schema_version"].clone()
        ),
        (json!("v2"), json!("store"), json!("d1"), json!(1)),
        "{b}"
    );
    assert_eq!(d1["last_deployment"]["operation"], "database_create", "{b}");

    // platforms say which API they use
    let kind_of = |body: &Value, p: &str| {
        body["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == p)
            .map(|x| x["kind"].clone())
            .unwrap_or(Value::Null)
    };
    let (_, b) = gw.get("/platforms").await;
    assert_eq!(
        (kind_of(&b, &v1), kind_of(&b, &v2)),
        (json!("v1"), json!("v2")),
        "{b}"
    );
    assert_eq!(gw.register(&v2, Some("legacy"), &schema).await.0, 200);
    let (_, b) = gw.get("/platforms").await;
    assert_eq!(kind_of(&b, &v2), json!("both"), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_says_which_request_how_long_and_forgets_past_its_retention() {
    let gw = Gateway::start(&[("HISTORY_RETENTION_DAYS", "2")]);
    let p = gw.register_platform().await;
    let mut schema = SchemaDir::default();
    schema.set(
        "functions/ping.pssql",
        "CREATE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'pong' $$;",
    );
    let (s, b) = gw
        .upload_as(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "store")],
            "schema",
            schema.tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let r = reqwest::Client::new()
        .post(format!("{}/database/create", gw.url))
        .header("X-Request-Id", "req-listings-0001")
        .json(&json!({"platform": p, "schema_name": "store", "database_id": "d1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (s, b) = gw.get(&format!("/admin/deployments?platform={p}")).await;
    assert_eq!(s, 200, "{b}");
    let mine = b["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == format!("{p}_store_d1"))
        .cloned()
        .unwrap_or_else(|| panic!("no record of {p}_store_d1: {b}"));
    assert_eq!(mine["request_id"], "req-listings-0001", "{mine}");
    assert_eq!(mine["schema_version"], 1, "{mine}");
    assert!(mine["duration_ms"].as_u64().is_some(), "{mine}");

    // a record older than HISTORY_RETENTION_DAYS goes when the next is written
    let catalog = gw.catalog().await;
    let n = catalog
        .execute(
            "UPDATE deployments SET started_at = now() - interval '3 days' WHERE id = $1",
            &[&mine["id"].as_i64().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    catalog
        .execute(
            "UPDATE deployments SET started_at = now() - interval '1 day' WHERE platform = $1 AND id <> $2",
            &[&p, &mine["id"].as_i64().unwrap()],
        )
        .await
        .unwrap();
    let (s, b) = gw
        .post(
            "/database/create",
            &json!({"platform": p, "schema_name": "store", "database_id": "d2"}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, b) = gw.get(&format!("/admin/deployments?platform={p}")).await;
    let ids: Vec<i64> = b["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect();
    assert!(!ids.contains(&mine["id"].as_i64().unwrap()), "{b}");
    // one day old is inside two days: kept, beside the new record
    assert!(ids.len() >= 2, "{b}");
}

/// Two platforms whose names share a prefix (`p` and `p_x`): `p`'s tenant
/// `x_main` would be named like `p_x`'s main database. The listings of `p`
/// never show or reach it — ownership is the catalog's, not the name's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_of_a_platform_never_show_a_longer_named_platforms_databases() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let longer = format!("{p}_x");
    let mut schema = SchemaDir::default();
    schema.set(
        "functions/secret.pssql",
        "CREATE FUNCTION secret() RETURNS text LANGUAGE sql AS $$ SELECT 'theirs' $$;",
    );
    assert_eq!(gw.register(&longer, None, &schema).await.0, 200);
    assert_eq!(gw.register(&p, None, &schema).await.0, 200);
    let theirs = format!("{longer}_main");

    let (s, b) = gw
        .get(&format!("/platform/{p}/functions?tenant_id=x_main"))
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("database_not_found")),
        "{b}"
    );
    let (s, b) = gw
        .get(&format!("/platform/{p}/functions?database={theirs}"))
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("database_not_found")),
        "{b}"
    );
    let (s, b) = gw
        .get(&format!("/admin/databases?platform={p}&size=true"))
        .await;
    assert_eq!(s, 200, "{b}");
    let names: Vec<&str> = b["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [format!("{p}_main")], "{b}");
    // and the longer one sees its own
    let (s, b) = gw.get(&format!("/platform/{longer}/functions")).await;
    assert_eq!(
        (s, b["database"].as_str()),
        (200, Some(theirs.as_str())),
        "{b}"
    );
}
