//! The archives a v1 platform keeps: every archive `/register` or
//! `/migrate` deployed is kept under the next number (one equal to the
//! latest is not kept twice), the newest `V1_ARCHIVES_KEPT` remain, `GET
//! /platform/{p}/versions` lists them, `/migrate` with `version` redeploys
//! one, and `/admin/create-tenant` deploys the latest. A catalog of an older
//! version brings its single kept archive along as version 1.

use serde_json::{json, Value};
use stonescriptdb_tests::{binary, cluster, new_platform, Gateway, SchemaDir};

/// A small schema whose `ping()` answers `tag`, with `extra()` beside it
/// when `extra` is set.
fn schema(tag: &str, extra: bool) -> Vec<u8> {
    let mut s = SchemaDir::default();
    s.set(
        "functions/ping.pssql",
        &format!("CREATE OR REPLACE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT '{tag}' $$;\n"),
    );
    if extra {
        s.set(
            "functions/extra.pssql",
            "CREATE OR REPLACE FUNCTION extra() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n",
        );
    }
    s.tar_gz()
}

/// The sha256 of `bytes` (hex), as PostgreSQL computes it.
async fn sha256(bytes: &[u8]) -> String {
    cluster()
        .connect("postgres")
        .await
        .query_one("SELECT encode(sha256($1), 'hex')", &[&bytes])
        .await
        .unwrap()
        .get(0)
}

/// A multipart form: its text fields, and the `schema` file when given.
type FormFields<'a> = (&'a [(&'a str, &'a str)], Option<Vec<u8>>);

/// Send `method path` with a bearer `token`, and a multipart form of
/// `fields` (and the `schema` file) when `form` is given.
async fn send(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    form: Option<FormFields<'_>>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", gw.url);
    let mut req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((fields, file)) = form {
        let mut f = reqwest::multipart::Form::new();
        for (k, v) in fields {
            f = f.text(k.to_string(), v.to_string());
        }
        if let Some(bytes) = file {
            f = f.part(
                "schema",
                reqwest::multipart::Part::bytes(bytes).file_name("schema.tar.gz"),
            );
        }
        req = req.multipart(f);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `/migrate` (or `/register`) of `platform` with extra `fields` and the
/// `schema` file `archive`, without a token.
async fn ship(
    gw: &Gateway,
    path: &str,
    platform: &str,
    fields: &[(&str, &str)],
    archive: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut all = vec![("platform", platform)];
    all.extend_from_slice(fields);
    send(gw, "POST", path, None, Some((&all, archive))).await
}

/// `/migrate` of the kept archive `version`.
async fn redeploy(gw: &Gateway, platform: &str, version: &str, more: &[(&str, &str)]) -> Value {
    let mut fields = vec![("version", version)];
    fields.extend_from_slice(more);
    let (s, b) = ship(gw, "/migrate", platform, &fields, None).await;
    assert_eq!(s, 200, "redeploying version {version}: {b}");
    b
}

/// The kept versions' numbers, and the latest.
async fn listed(gw: &Gateway, platform: &str) -> (Vec<i64>, Vec<i64>) {
    let (s, b) = gw.get(&format!("/platform/{platform}/versions")).await;
    assert_eq!(s, 200, "{b}");
    let versions = b["versions"].as_array().unwrap();
    assert_eq!(b["count"], versions.len(), "{b}");
    let numbers = versions.iter().map(|v| v["version"].as_i64().unwrap());
    let latest = versions
        .iter()
        .filter(|v| v["latest"] == true)
        .map(|v| v["version"].as_i64().unwrap());
    (numbers.collect(), latest.collect())
}

/// What `ping()` answers in `platform`'s database of `tenant` (`_main`
/// without one).
async fn ping(gw: &Gateway, platform: &str, tenant: Option<&str>) -> Value {
    let mut body = json!({"platform": platform, "function": "ping"});
    if let Some(t) = tenant {
        body["tenant_id"] = json!(t);
    }
    let (s, b) = gw.post("/call", &body).await;
    assert_eq!(s, 200, "{b}");
    b["rows"][0]["ping"].clone()
}

#[tokio::test]
async fn careless_and_hostile_redeploys_are_refused_and_change_nothing() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(
        ship(&gw, "/register", &p, &[], Some(schema("one", false)))
            .await
            .0,
        200
    );
    assert_eq!(
        ship(&gw, "/migrate", &p, &[], Some(schema("two", false)))
            .await
            .0,
        200
    );
    let before = gw
        .catalog()
        .await
        .query_one(
            "SELECT count(*) FROM deployments WHERE platform = $1",
            &[&p],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);

    let refused =
        |fields: Vec<(&'static str, &'static str)>, file: Option<Vec<u8>>, path: &'static str| {
            let (gw, p) = (&gw, p.clone());
            async move {
                let (s, b) = ship(gw, path, &p, &fields, file).await;
                (
                    s,
                    b["error"].as_str().unwrap_or_default().to_owned(),
                    b["message"].as_str().unwrap_or_default().to_owned(),
                )
            }
        };
    // a version and a schema file: which one was meant?
    let (s, e, m) = refused(
        vec![("version", "1")],
        Some(schema("three", false)),
        "/migrate",
    )
    .await;
    assert_eq!((s, e.as_str()), (400, "invalid_request"), "{m}");
    assert!(m.contains("schema") && m.contains("version"), "{m}");
    // neither
    let (s, e, m) = refused(vec![], None, "/migrate").await;
    assert_eq!((s, e.as_str()), (400, "invalid_request"), "{m}");
    assert!(m.contains("version"), "{m}");
    // not a positive whole number, an empty one (an unset shell variable) included
    for bad in ["abc", "0", "-1", "+1", "1.0", "01", "99999999999", ""] {
        let (s, e, m) = refused(vec![("version", bad)], None, "/migrate").await;
        assert_eq!((s, e.as_str()), (400, "invalid_request"), "{bad:?}: {m}");
        assert!(m.contains("version"), "{bad:?}: {m}");
    }
    // a number no kept archive has
    let (s, e, m) = refused(vec![("version", "99")], None, "/migrate").await;
    assert_eq!((s, e.as_str()), (404, "version_not_found"), "{m}");
    assert!(m.contains("99") && m.contains("versions"), "{m}");
    // /register deploys only what it is sent
    let (s, _, m) = refused(vec![("version", "1")], None, "/register").await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("\"version\""), "{m}");
    // in the query string, it is never read as the form field
    let (s, b) = send(
        &gw,
        "POST",
        "/migrate?version=1",
        None,
        Some((&[("platform", p.as_str())], Some(schema("three", false)))),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // a misspelt field
    let (s, _, m) = refused(vec![("versoin", "1")], None, "/migrate").await;
    assert_eq!(s, 400, "{m}");
    // a tenant that does not exist, with a kept version
    let (s, e, _) = refused(
        vec![("version", "1"), ("tenant_id", "nobody")],
        None,
        "/migrate",
    )
    .await;
    assert_eq!((s, e.as_str()), (404, "database_not_found"));
    // a platform that has nothing
    let (s, b) = ship(&gw, "/migrate", &new_platform(), &[("version", "1")], None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("platform_not_found")),
        "{b}"
    );

    // nothing ran, nothing was kept
    assert_eq!(ping(&gw, &p, None).await, "two");
    assert_eq!(listed(&gw, &p).await, (vec![1, 2], vec![2]));
    let after = gw
        .catalog()
        .await
        .query_one(
            "SELECT count(*) FROM deployments WHERE platform = $1",
            &[&p],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(
        after, before,
        "a refused request was recorded as a deployment"
    );
}

#[tokio::test]
async fn each_archive_deployed_is_kept_under_the_next_number_and_an_identical_one_is_not() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let archives: Vec<Vec<u8>> = ["one", "two", "three"]
        .iter()
        .map(|t| schema(t, false))
        .collect();
    let (s, b) = ship(&gw, "/register", &p, &[], Some(archives[0].clone())).await;
    assert_eq!((s, b["version"].clone()), (200, json!(1)), "{b}");
    for (i, a) in archives.iter().enumerate().skip(1) {
        let (s, b) = ship(&gw, "/migrate", &p, &[], Some(a.clone())).await;
        assert_eq!((s, b["version"].clone()), (200, json!(i + 1)), "{b}");
    }
    let (s, b) = gw.get(&format!("/platform/{p}/versions")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["platform"].as_str(), b["count"].as_u64()),
        (Some(p.as_str()), Some(3)),
        "{b}"
    );
    for (i, (v, a)) in b["versions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&archives)
        .enumerate()
    {
        assert_eq!(v["version"], i + 1, "{b}");
        assert_eq!(v["archive_sha256"], sha256(a).await, "{b}");
        assert_eq!(v["size"], a.len(), "{b}");
        assert_eq!(v["latest"], i == 2, "{b}");
        assert!(v["uploaded_at"].as_str().unwrap().ends_with('Z'), "{b}");
        assert!(v.get("redeployed_from").is_none(), "{b}");
    }
    // the same archive again: deployed (nothing to do), not kept twice
    let (s, b) = ship(&gw, "/migrate", &p, &[], Some(archives[2].clone())).await;
    assert_eq!((s, b["version"].clone()), (200, json!(3)), "{b}");
    let (s, b) = ship(&gw, "/register", &p, &[], Some(archives[2].clone())).await;
    assert_eq!((s, b["version"].clone()), (200, json!(3)), "{b}");
    // a dry run and a failed migration keep nothing
    let (s, b) = ship(
        &gw,
        "/migrate",
        &p,
        &[("dry_run", "true")],
        Some(schema("four", false)),
    )
    .await;
    assert_eq!((s, b.get("version")), (200, None), "{b}");
    let mut broken = SchemaDir::default();
    broken.set(
        "migrations/001_bad.pssql",
        "ALTER TABLE no_such_table ADD COLUMN x int;\n",
    );
    let (s, b) = ship(&gw, "/migrate", &p, &[], Some(broken.tar_gz())).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(listed(&gw, &p).await, (vec![1, 2, 3], vec![3]));
    // the archive kept before is what /admin/create-tenant still deploys
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": p, "tenant_id": "t1"}),
        )
        .await;
    assert_eq!((s, b["version"].clone()), (201, json!(3)), "{b}");
    assert_eq!(ping(&gw, &p, Some("t1")).await, "three");

    // a platform without a v1 archive lists none; an unknown one is 404
    let v2 = gw.register_platform().await;
    let (s, b) = gw.get(&format!("/platform/{v2}/versions")).await;
    assert_eq!(
        (s, b["versions"].clone(), b["count"].clone()),
        (200, json!([]), json!(0)),
        "{b}"
    );
    let (s, b) = gw
        .get(&format!("/platform/{}/versions", new_platform()))
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("platform_not_found")),
        "{b}"
    );
    let (s, b) = gw.get("/platform/Not-A-Name/versions").await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, _) = gw.get(&format!("/platform/{p}/versions?all=1")).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn only_the_newest_kept_archives_remain_and_numbers_are_never_given_again() {
    let gw = Gateway::start(&[("V1_ARCHIVES_KEPT", "2")]);
    let p = new_platform();
    assert_eq!(
        ship(&gw, "/register", &p, &[], Some(schema("v1", false)))
            .await
            .0,
        200
    );
    for t in ["v2", "v3", "v4"] {
        assert_eq!(
            ship(&gw, "/migrate", &p, &[], Some(schema(t, false)))
                .await
                .0,
            200
        );
    }
    assert_eq!(listed(&gw, &p).await, (vec![3, 4], vec![4]));
    let kept: i64 = gw
        .catalog()
        .await
        .query_one(
            "SELECT count(*) FROM v1_archives WHERE platform = $1",
            &[&p],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2, "pruned archives stay in the catalog");
    // a pruned one is gone
    let (s, b) = ship(&gw, "/migrate", &p, &[("version", "1")], None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("version_not_found")),
        "{b}"
    );
    // the next is 5, never 1 or 3 again
    let (s, b) = ship(&gw, "/migrate", &p, &[], Some(schema("v5", false))).await;
    assert_eq!((s, b["version"].clone()), (200, json!(5)), "{b}");
    assert_eq!(listed(&gw, &p).await, (vec![4, 5], vec![5]));
    // the content of a pruned version shipped again is a new number too
    let (s, b) = ship(&gw, "/migrate", &p, &[], Some(schema("v1", false))).await;
    assert_eq!((s, b["version"].clone()), (200, json!(6)), "{b}");
    assert_eq!(listed(&gw, &p).await, (vec![5, 6], vec![6]));
}

#[tokio::test]
async fn a_kept_archive_is_redeployed_to_a_tenant_or_the_whole_platform_and_becomes_the_latest() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (one, two) = (schema("one", false), schema("two", true));
    assert_eq!(
        ship(&gw, "/register", &p, &[], Some(one.clone())).await.0,
        200
    );
    assert_eq!(
        ship(
            &gw,
            "/register",
            &p,
            &[("tenant_id", "t1")],
            Some(one.clone())
        )
        .await
        .0,
        200
    );
    let (s, b) = ship(&gw, "/migrate", &p, &[], Some(two.clone())).await;
    assert_eq!((s, b["version"].clone()), (200, json!(2)), "{b}");
    assert_eq!(
        (ping(&gw, &p, None).await, ping(&gw, &p, Some("t1")).await),
        (json!("two"), json!("two"))
    );
    // /admin/create-tenant deploys the latest: two
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": p, "tenant_id": "t2"}),
        )
        .await;
    assert_eq!((s, b["version"].clone()), (201, json!(2)), "{b}");
    assert_eq!(ping(&gw, &p, Some("t2")).await, "two");

    // a dry run of version 1 changes nothing
    let b = redeploy(&gw, &p, "1", &[("dry_run", "true")]).await;
    assert_eq!(
        (b["status"].as_str(), b.get("version")),
        (Some("dry_run"), None),
        "{b}"
    );
    assert_eq!(ping(&gw, &p, Some("t1")).await, "two");
    assert_eq!(listed(&gw, &p).await, (vec![1, 2], vec![2]));

    // version 1 to one tenant: that tenant only
    let b = redeploy(&gw, &p, "1", &[("tenant_id", "t1")]).await;
    assert_eq!(b["databases"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["databases"][0]["database"], format!("{p}_t1"), "{b}");
    assert_eq!(
        b["version"], 3,
        "an older archive redeployed becomes the latest: {b}"
    );
    assert_eq!(ping(&gw, &p, Some("t1")).await, "one");
    assert_eq!(ping(&gw, &p, None).await, "two");
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": "t1", "function": "extra"}),
        )
        .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("function_not_found")),
        "version 1 has no extra(): {b}"
    );
    let (s, b) = gw.get(&format!("/platform/{p}/versions")).await;
    assert_eq!(s, 200);
    let v = &b["versions"];
    assert_eq!(
        (
            v[2]["version"].clone(),
            v[2]["redeployed_from"].clone(),
            v[2]["latest"].clone()
        ),
        (json!(3), json!(1), json!(true)),
        "{b}"
    );
    assert_eq!(v[2]["archive_sha256"], v[0]["archive_sha256"], "{b}");

    // version 1 to the whole platform: equal to the latest, so not kept again
    let b = redeploy(&gw, &p, "1", &[]).await;
    assert_eq!(
        (b["status"].as_str(), b["version"].clone()),
        (Some("completed"), json!(3)),
        "{b}"
    );
    assert_eq!(b["databases"].as_array().unwrap().len(), 3, "{b}");
    for t in [None, Some("t1"), Some("t2")] {
        assert_eq!(ping(&gw, &p, t).await, "one", "{t:?}");
    }
    // the latest redeployed: nothing new either
    assert_eq!(redeploy(&gw, &p, "3", &[]).await["version"], 3);
    assert_eq!(listed(&gw, &p).await, (vec![1, 2, 3], vec![3]));
    // back to two, and the new tenants get it
    assert_eq!(redeploy(&gw, &p, "2", &[]).await["version"], 4);
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": p, "tenant_id": "t3"}),
        )
        .await;
    assert_eq!((s, b["version"].clone()), (201, json!(4)), "{b}");
    assert_eq!(ping(&gw, &p, Some("t3")).await, "two");
    // the deployments name the archive they deployed
    let sha_two = sha256(&two).await;
    let recorded: String = gw
        .catalog()
        .await
        .query_one(
            "SELECT archive_sha256 FROM deployments WHERE database = $1 ORDER BY id DESC LIMIT 1",
            &[&format!("{p}_t3")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, sha_two);
}

const ADMIN: &str = "lifecycle-admin-token-001";
const TOKEN_A: &str = "lifecycle-deploy-token-a1";
const TOKEN_B: &str = "lifecycle-deploy-token-b1";

#[tokio::test]
async fn a_deploy_token_lists_and_redeploys_its_own_platform_only() {
    let (a, b) = (new_platform(), new_platform());
    let tokens = format!("{a}:{TOKEN_A},{b}:{TOKEN_B}");
    let gw = Gateway::start(&[("DEPLOY_TOKENS", &tokens), ("ADMIN_TOKEN", ADMIN)]);
    for (p, t) in [(&a, TOKEN_A), (&b, TOKEN_B)] {
        for tag in ["one", "two"] {
            let path = if tag == "one" {
                "/register"
            } else {
                "/migrate"
            };
            let fields = [("platform", p.as_str())];
            let (s, body) = send(
                &gw,
                "POST",
                path,
                Some(t),
                Some((&fields, Some(schema(tag, false)))),
            )
            .await;
            assert_eq!(s, 200, "{body}");
        }
    }
    let versions = |p: &str| format!("/platform/{p}/versions");
    let (s, body) = send(&gw, "GET", &versions(&a), Some(TOKEN_A), None).await;
    assert_eq!((s, body["count"].as_u64()), (200, Some(2)), "{body}");
    // another platform's, and one that does not exist: the same answer
    let (s, other) = send(&gw, "GET", &versions(&b), Some(TOKEN_A), None).await;
    let (s2, unknown) = send(&gw, "GET", &versions(&new_platform()), Some(TOKEN_A), None).await;
    assert_eq!((s, s2), (403, 403), "{other} {unknown}");
    assert_eq!(other["error"], unknown["error"]);
    assert!(!other.to_string().contains("\"versions\""), "{other}");
    let (s, _) = send(&gw, "GET", &versions(&a), None, None).await;
    assert_eq!(s, 401);
    let (s, body) = send(&gw, "GET", &versions(&b), Some(ADMIN), None).await;
    assert_eq!((s, body["count"].as_u64()), (200, Some(2)), "{body}");
    let (s, body) = send(&gw, "GET", &versions(&new_platform()), Some(ADMIN), None).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (404, Some("platform_not_found")),
        "{body}"
    );

    // redeploying another platform's archive is refused, and b stays on two
    let fields = [("platform", b.as_str()), ("version", "1")];
    let (s, body) = send(
        &gw,
        "POST",
        "/migrate",
        Some(TOKEN_A),
        Some((&fields, None)),
    )
    .await;
    assert_eq!(
        (s, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(
        gw.catalog()
            .await
            .query_one(
                "SELECT max(version) FROM v1_archives WHERE platform = $1",
                &[&b]
            )
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    let (s, body) = send(
        &gw,
        "POST",
        "/migrate",
        Some(TOKEN_B),
        Some((&fields, None)),
    )
    .await;
    assert_eq!((s, body["version"].clone()), (200, json!(3)), "{body}");
}

#[test]
fn a_bad_v1_archives_kept_stops_the_migrator_with_64() {
    for bad in ["0", "-3", "ten"] {
        let out = std::process::Command::new(binary("stonescriptdb-migrator"))
            .env_remove("DATABASE_URL")
            .envs(cluster().gateway_env())
            .env("V1_ARCHIVES_KEPT", bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{bad}: {stderr}");
        assert!(stderr.contains("V1_ARCHIVES_KEPT"), "{bad}: {stderr}");
    }
}

/// The catalog's DDL up to version 3, as an older migrator applied it.
const OLDER_CATALOG: [&str; 3] = [
    include_str!("../../migrator/src/catalog/v1.sql"),
    include_str!("../../migrator/src/catalog/v2.sql"),
    include_str!("../../migrator/src/catalog/v3.sql"),
];

#[tokio::test]
async fn a_catalog_of_version_3_brings_its_kept_v1_archive_along_as_version_1() {
    // a platform with its roles and database, made by today's gateway
    let today = format!("sdg_cat_{}", new_platform());
    let gw = Gateway::start(&[("CATALOG_DB", &today)]);
    let p = new_platform();
    let one = schema("one", false);
    assert_eq!(
        ship(&gw, "/register", &p, &[], Some(one.clone())).await.0,
        200
    );
    let c = gw.catalog().await;
    let platform: String = c
        .query_one(
            "SELECT row_to_json(p)::text FROM platforms p WHERE name = $1",
            &[&p],
        )
        .await
        .unwrap()
        .get(0);
    let database: String = c
        .query_one(
            "SELECT row_to_json(d)::text FROM databases d WHERE platform = $1",
            &[&p],
        )
        .await
        .unwrap()
        .get(0);
    drop(c);
    drop(gw);

    // the same rows in a catalog of version 3, the archive in `platforms`
    let older = format!("sdg_cat_{}", new_platform());
    cluster()
        .connect("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {older}"))
        .await
        .unwrap();
    let c = cluster().connect(&older).await;
    for ddl in OLDER_CATALOG {
        c.batch_execute(ddl).await.unwrap();
    }
    c.batch_execute(
        "CREATE TABLE catalog_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO catalog_version (version) VALUES (1), (2), (3);",
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO platforms SELECT * FROM json_populate_record(NULL::platforms, $1::text::json)",
        &[&platform],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO databases SELECT * FROM json_populate_record(NULL::databases, $1::text::json)",
        &[&database],
    )
    .await
    .unwrap();
    c.execute(
        "UPDATE platforms SET v1_schema = $2, v1_schema_sha256 = 'whatever it said',
                              v1_schema_at = '2024-01-02T03:04:05Z' WHERE name = $1",
        &[&p, &one],
    )
    .await
    .unwrap();
    drop(c);

    let gw = Gateway::start(&[("CATALOG_DB", &older)]);
    let (s, b) = gw.get(&format!("/platform/{p}/versions")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["versions"],
        json!([{"version": 1, "archive_sha256": sha256(&one).await, "size": one.len(),
                "uploaded_at": "2024-01-02T03:04:05Z", "latest": true}]),
        "{b}"
    );
    let c = gw.catalog().await;
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'platforms' AND column_name LIKE 'v1_schema%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the old columns are dropped");
    let version: i32 = c
        .query_one("SELECT max(version) FROM catalog_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version >= 4, "{version}");
    // it is the latest: a new tenant gets it, and the next archive is 2
    let (s, b) = gw
        .post(
            "/admin/create-tenant",
            &json!({"platform": p, "tenant_id": "t1"}),
        )
        .await;
    assert_eq!((s, b["version"].clone()), (201, json!(1)), "{b}");
    assert_eq!(ping(&gw, &p, Some("t1")).await, "one");
    let (s, b) = ship(&gw, "/migrate", &p, &[], Some(schema("two", false))).await;
    assert_eq!((s, b["version"].clone()), (200, json!(2)), "{b}");
    assert_eq!(ping(&gw, &p, None).await, "two");
    assert_eq!(redeploy(&gw, &p, "1", &[]).await["version"], 3);
    assert_eq!(ping(&gw, &p, None).await, "one");
}

#[tokio::test]
async fn redeploying_an_older_archive_is_a_rollback_that_a_migration_edited_since_does_not_block() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let archive = |note: &str, more: bool| {
        let mut s = SchemaDir::default();
        s.set(
            "migrations/001_notes.sql",
            &format!("CREATE TABLE notes (id int PRIMARY KEY, body text DEFAULT '{note}');\n"),
        )
        .set(
            "functions/ping.pssql",
            "CREATE OR REPLACE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'one' $$;\n",
        );
        if more {
            s.set(
                "migrations/002_tags.sql",
                "CREATE TABLE tags (id int PRIMARY KEY);\n",
            );
        }
        s.tar_gz()
    };
    let (s, b) = ship(&gw, "/register", &p, &[], Some(archive("first", false))).await;
    assert_eq!(s, 200, "{b}");
    // version 2 edits the applied migration (forced through) and adds one
    let (s, b) = ship(
        &gw,
        "/migrate",
        &p,
        &[("force", "true")],
        Some(archive("edited", true)),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // back to version 1, without force: recorded migrations are skipped
    // whatever their checksum, and what stays is listed
    let b = redeploy(&gw, &p, "1", &[]).await;
    let report = &b["databases"][0];
    let kept: Vec<(&str, &str)> = report["kept"]
        .as_array()
        .unwrap_or_else(|| panic!("no kept list: {b}"))
        .iter()
        .map(|k| (k["kind"].as_str().unwrap(), k["name"].as_str().unwrap()))
        .collect();
    assert!(kept.contains(&("migration", "002_tags.sql")), "{b}");
    assert_eq!(report["migrations_applied"], 0, "{b}");
    let c = cluster().connect(&format!("{p}_main")).await;
    let tags: i64 = c
        .query_one("SELECT count(*) FROM pg_class WHERE relname = 'tags'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(tags, 1, "a migration applied since stays");
}
