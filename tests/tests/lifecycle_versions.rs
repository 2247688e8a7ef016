//! End-to-end tests of stored v2 schema versions (docs/API.md, "Versions,
//! pinning and rollback"): the upload answer's `version` and `new_version`,
//! `GET /platform/{p}/schemas/{name}/versions`, databases pinned at
//! creation or by `/v2/migrate` with `version`, `"latest"` unpinning, and
//! deploying an older version — the rollback — with what it keeps.
//! Hostile and careless requests first: each gets a clear error and
//! changes nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stonescriptdb_tests::{
    cluster, database_exists, new_platform, Gateway, PlatformClient, SchemaDir,
};

const ADMIN: &str = "admin-token-versions-0123456789abcdef";

/// A platform as the CLI sees it ([`PlatformClient`]), with what these
/// tests ask of it.
struct Client(PlatformClient);

impl std::ops::Deref for Client {
    type Target = PlatformClient;
    fn deref(&self) -> &PlatformClient {
        &self.0
    }
}

impl Client {
    /// Register a new platform with the admin token and take its token.
    async fn new(gw: &Gateway) -> Client {
        Client(PlatformClient::register(gw, &new_platform(), ADMIN).await)
    }

    /// `POST /database/create` of `id` with `extra` fields.
    async fn create(&self, schema_name: &str, id: &str, extra: Value) -> (u16, Value) {
        let mut body =
            json!({"platform": self.platform, "schema_name": schema_name, "database_id": id});
        merge(&mut body, extra);
        self.send("/database/create", Some(body)).await
    }

    /// `POST /v2/migrate` of the schema with `extra` fields.
    async fn migrate(&self, schema_name: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"platform": self.platform, "schema_name": schema_name});
        merge(&mut body, extra);
        self.send("/v2/migrate", Some(body)).await
    }

    async fn versions(&self, schema_name: &str) -> (u16, Value) {
        let path = format!("/platform/{}/schemas/{schema_name}/versions", self.platform);
        self.send(&path, None).await
    }

    fn db(&self, schema_name: &str, id: &str) -> String {
        format!("{}_{schema_name}_{id}", self.platform)
    }
}

fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
}

/// Version 1 of a schema: an enum, a table, a function, a migration.
fn v1() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "types/mood.pssql",
        "CREATE TYPE mood AS ENUM ('happy', 'sad');",
    )
    .set(
        "tables/items.pssql",
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL, feeling mood);",
    )
    .set(
        "functions/release.pssql",
        "CREATE OR REPLACE FUNCTION release() RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$ SELECT 'one'::text $$;",
    )
    .set(
        "migrations/001_start.pssql",
        "INSERT INTO items (id, name) VALUES (1, 'first') ON CONFLICT DO NOTHING;",
    );
    s
}

/// Version 2: the enum gains a value, the table a column, the function a
/// new body, a second function and a second migration.
fn v2() -> SchemaDir {
    let mut s = v1();
    s.set(
        "types/mood.pssql",
        "CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad');",
    )
    .set(
        "tables/items.pssql",
        "CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL, feeling mood, note TEXT);",
    )
    .set(
        "functions/release.pssql",
        "CREATE OR REPLACE FUNCTION release() RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$ SELECT 'two'::text $$;",
    )
    .set(
        "functions/extra.pssql",
        "CREATE OR REPLACE FUNCTION extra() RETURNS INT LANGUAGE sql IMMUTABLE AS $$ SELECT 2 $$;",
    )
    .set(
        "migrations/002_more.pssql",
        "INSERT INTO items (id, name, feeling) VALUES (2, 'second', 'sad') ON CONFLICT DO NOTHING;",
    );
    s
}

/// `schema` with its first migration's text edited.
fn edited(mut schema: SchemaDir) -> SchemaDir {
    schema.set(
        "migrations/001_start.pssql",
        "-- edited after it ran\nINSERT INTO items (id, name) VALUES (1, 'first') ON CONFLICT DO NOTHING;",
    );
    schema
}

/// Version 3: version 2 with another function body.
fn v3() -> SchemaDir {
    let mut s = v2();
    s.set(
        "functions/release.pssql",
        "CREATE OR REPLACE FUNCTION release() RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$ SELECT 'three'::text $$;",
    );
    s
}

/// `release()` in `db`, or the error's text.
async fn release(db: &str) -> String {
    let c = cluster().connect(db).await;
    match c.query_one("SELECT release()", &[]).await {
        Ok(r) => r.get(0),
        Err(e) => format!("error: {e}"),
    }
}

/// `(schema_version, pinned)` the catalog records for `db`.
async fn recorded(gw: &Gateway, db: &str) -> (Option<i32>, bool) {
    let r = gw
        .catalog()
        .await
        .query_one(
            "SELECT schema_version, pinned FROM databases WHERE name = $1",
            &[&db],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// How many deployments the catalog recorded for `db`.
async fn deployments(gw: &Gateway, db: &str) -> i64 {
    gw.catalog()
        .await
        .query_one(
            "SELECT count(*) FROM deployments WHERE database = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

/// Each database's result by name, from a `/v2/migrate` answer (or its
/// `details` when it failed).
fn results(b: &Value) -> Vec<(String, String)> {
    let summary = if b.get("details").is_some() {
        &b["details"]
    } else {
        b
    };
    summary["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {b}"))
        .iter()
        .map(|r| {
            (
                r["database"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn status_of(b: &Value, db: &str) -> String {
    results(b)
        .into_iter()
        .find(|(d, _)| d == db)
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("{db} not in {b}"))
}

/// The columns of `items`, in order.
async fn columns(c: &tokio_postgres::Client) -> Vec<String> {
    let rows = c
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_name = 'items' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Does the function `extra` exist?
async fn extra_exists(c: &tokio_postgres::Client) -> bool {
    c.query_one("SELECT to_regproc('public.extra') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_and_hostile_version_requests_are_refused_and_change_nothing() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let a = Client::new(&gw).await;
    let b = Client::new(&gw).await;
    a.upload("tenant", &v1()).await;
    a.upload("tenant", &v2()).await;
    b.upload("tenant", &v1()).await;
    let (s, r) = a.create("tenant", "one", json!({})).await;
    assert_eq!(s, 201, "{r}");
    let one = a.db("tenant", "one");
    let before = deployments(&gw, &one).await;

    // another platform's schema: its version 2 is not b's, and a's schema
    // is not b's to name at all
    let (s, r) = b.create("tenant", "x", json!({"version": 2})).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("schema_not_found")),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("no version 2"),
        "{r}"
    );
    assert!(!database_exists(&b.db("tenant", "x")).await);
    let (s, r) = b.migrate("tenant", json!({"version": 2})).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("schema_not_found")),
        "{r}"
    );
    let body = json!({"platform": a.platform, "schema_name": "tenant", "version": 1});
    let (s, r) = b.send("/v2/migrate", Some(body)).await;
    assert_eq!(s, 403, "{r}");
    let (s, r) = b
        .send(
            &format!("/platform/{}/schemas/tenant/versions", a.platform),
            None,
        )
        .await;
    assert_eq!(s, 403, "{r}");

    // a version that does not exist: nothing created, nothing deployed
    let (s, r) = a.create("tenant", "two", json!({"version": 9})).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("schema_not_found")),
        "{r}"
    );
    assert!(
        r["message"].as_str().unwrap().contains("no version 9"),
        "{r}"
    );
    assert!(!database_exists(&a.db("tenant", "two")).await);
    let (s, r) = a
        .migrate("tenant", json!({"version": 3, "database_id": "one"}))
        .await;
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("schema_not_found")),
        "{r}"
    );
    let (s, r) = a.versions("nothing").await;
    assert_eq!(
        (s, r["error"].as_str()),
        (404, Some("schema_not_found")),
        "{r}"
    );

    // values that are not a stored version number or "latest"
    for bad in [
        json!(0),
        json!(-1),
        json!("2"),
        json!("newest"),
        json!(1.5),
        json!(2.0),
    ] {
        let (s, r) = a
            .migrate("tenant", json!({"version": bad, "database_id": "one"}))
            .await;
        assert_eq!(s, 400, "{bad}: {r}");
        let m = r["message"].as_str().unwrap();
        assert!(m.contains("version") && m.contains(">= 1"), "{bad}: {r}");
        let (s, r) = a.create("tenant", "three", json!({"version": bad})).await;
        assert_eq!(s, 400, "{bad}: {r}");
    }
    assert!(!database_exists(&a.db("tenant", "three")).await);

    // misspelled, or in the query string: refused, naming it
    let (s, r) = a.migrate("tenant", json!({"versoin": 1})).await;
    assert_eq!(s, 400, "{r}");
    assert!(r["message"].as_str().unwrap().contains("versoin"), "{r}");
    let body = json!({"platform": a.platform, "schema_name": "tenant", "database_id": "one"});
    let (s, r) = a.send("/v2/migrate?version=1", Some(body)).await;
    assert_eq!(s, 400, "{r}");
    assert!(r["message"].as_str().unwrap().contains("version"), "{r}");
    let (s, r) = a.create("tenant", "four", json!({"versoin": 1})).await;
    assert_eq!(s, 400, "{r}");
    assert!(!database_exists(&a.db("tenant", "four")).await);
    let (s, r) = a
        .send(
            "/v2/migrate-all",
            Some(json!({"platform": a.platform, "schema_name": "tenant", "version": "2"})),
        )
        .await;
    assert_eq!(s, 400, "{r}");

    // nothing happened to the database: no deployment, still unpinned at 2
    assert_eq!(deployments(&gw, &one).await, before);
    assert_eq!(recorded(&gw, &one).await, (Some(2), false));
    assert_eq!(release(&one).await, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_answer_their_version_and_the_listing_counts_databases() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let a = Client::new(&gw).await;
    let first = a.upload("tenant", &v1()).await;
    assert_eq!(
        (first["version"].clone(), first["new_version"].clone()),
        (json!(1), json!(true)),
        "{first}"
    );
    assert_eq!(
        first["status"], "registered",
        "the documented answer: {first}"
    );
    let again = a.upload("tenant", &v1()).await;
    assert_eq!(
        (again["version"].clone(), again["new_version"].clone()),
        (json!(1), json!(false)),
        "{again}"
    );
    assert_eq!(again["checksum"], first["checksum"]);
    for id in ["a", "b"] {
        let (s, r) = a.create("tenant", id, json!({})).await;
        assert_eq!(s, 201, "{r}");
    }
    let second = a.upload("tenant", &v2()).await;
    assert_eq!(
        (second["version"].clone(), second["new_version"].clone()),
        (json!(2), json!(true)),
        "{second}"
    );
    assert_ne!(second["checksum"], first["checksum"]);
    let (s, r) = a.create("tenant", "c", json!({})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (r["version"].clone(), r["pinned"].clone()),
        (json!(2), json!(false)),
        "{r}"
    );

    let (s, l) = a.versions("tenant").await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(
        (l["latest"].clone(), l["count"].clone()),
        (json!(2), json!(2)),
        "{l}"
    );
    let v = l["versions"].as_array().unwrap();
    assert_eq!(
        v.iter()
            .map(|v| (
                v["version"].as_i64().unwrap(),
                v["databases"].as_u64().unwrap(),
                v["latest"].as_bool().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(1, 2, false), (2, 1, true)],
        "{l}"
    );
    assert_eq!(v[0]["checksum"], first["checksum"]);
    assert_eq!(v[1]["checksum"], second["checksum"]);
    assert_eq!(v[0]["archive_sha256"].as_str().unwrap().len(), 64, "{l}");
    assert!(v[0]["size"].as_u64().unwrap() > 100, "{l}");
    assert!(v[0]["uploaded_at"].as_str().unwrap().ends_with('Z'), "{l}");
    // the counts follow the databases
    let (s, r) = a.migrate("tenant", json!({})).await;
    assert_eq!(s, 200, "{r}");
    let (_, l) = a.versions("tenant").await;
    assert_eq!(l["versions"][0]["databases"], 0, "{l}");
    assert_eq!(l["versions"][1]["databases"], 3, "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_database_stays_on_its_version_until_moved_and_latest_unpins_it() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let a = Client::new(&gw).await;
    a.upload("tenant", &v1()).await;
    let (s, r) = a.create("tenant", "free", json!({})).await;
    assert_eq!(s, 201, "{r}");
    // pinned at the latest version: still a copy of its template
    let (s, r) = a.create("tenant", "held", json!({"version": 1})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (
            r["version"].clone(),
            r["pinned"].clone(),
            r["full_deployment"].clone()
        ),
        (json!(1), json!(true), json!(false)),
        "{r}"
    );
    a.upload("tenant", &v2()).await;
    // an older version has no template: a full deployment, which says so
    let (s, r) = a
        .create("tenant", "old", json!({"version": 1, "dry_run": true}))
        .await;
    assert_eq!(
        (s, r["status"].as_str(), r["full_deployment"].as_bool()),
        (200, Some("would_create"), Some(true)),
        "{r}"
    );
    assert!(!database_exists(&a.db("tenant", "old")).await);
    let (s, r) = a.create("tenant", "old", json!({"version": 1})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (
            r["version"].clone(),
            r["pinned"].clone(),
            r["full_deployment"].clone()
        ),
        (json!(1), json!(true), json!(true)),
        "{r}"
    );
    // today's StoneScriptPHP's route takes it alike
    let body =
        json!({"platform": a.platform, "schema_name": "tenant", "uuid": "u-1", "version": 1});
    let (s, r) = a.send("/admin/database/create", Some(body)).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (
            r["version"].clone(),
            r["pinned"].clone(),
            r["full_deployment"].clone()
        ),
        (json!(1), json!(true), json!(true)),
        "{r}"
    );
    let uuid_db = a.db("tenant", "u_1");
    assert_eq!(recorded(&gw, &uuid_db).await, (Some(1), true));
    assert_eq!(release(&uuid_db).await, "one");
    let (free, held, old) = (
        a.db("tenant", "free"),
        a.db("tenant", "held"),
        a.db("tenant", "old"),
    );
    assert_eq!(release(&old).await, "one");
    assert_eq!(recorded(&gw, &old).await, (Some(1), true));
    // a new unpinned database is at the latest, from its template
    let (s, r) = a
        .create("tenant", "new", json!({"version": "latest"}))
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (
            r["version"].clone(),
            r["pinned"].clone(),
            r["full_deployment"].clone()
        ),
        (json!(2), json!(false), json!(false)),
        "{r}"
    );

    // /v2/migrate of the latest: the pinned ones are left where they are
    let (s, r) = a.migrate("tenant", json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(status_of(&r, &free), "updated", "{r}");
    assert_eq!(status_of(&r, &held), "pinned", "{r}");
    assert_eq!(status_of(&r, &old), "pinned", "{r}");
    assert_eq!(
        r["verification"]["passed"], true,
        "pinned databases are not reported on: {r}"
    );
    assert_eq!(
        (release(&free).await, release(&held).await),
        ("two".into(), "one".into())
    );
    assert_eq!(recorded(&gw, &held).await, (Some(1), true));

    // a /v2/migrate-all job leaves them too, and calls that completed
    a.upload("tenant", &v3()).await;
    let (s, r) = a
        .send(
            "/v2/migrate-all",
            Some(json!({"platform": a.platform, "schema_name": "tenant"})),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    let job = format!("/v2/migrate-all/{}", r["job_id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (s, r) = a.send(&job, None).await;
        assert_eq!(s, 200, "{r}");
        if r["status"] != "queued" && r["status"] != "running" {
            break r;
        }
        assert!(Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    let each = done["results"].as_array().unwrap();
    assert_eq!(each.len(), 5, "{done}");
    assert!(each.iter().all(|r| r["status"] == "completed"), "{done}");
    assert_eq!(
        (
            release(&free).await,
            release(&held).await,
            release(&old).await
        ),
        ("three".into(), "one".into(), "one".into())
    );
    assert_eq!(recorded(&gw, &old).await, (Some(1), true));

    // moved when asked: to a version, pinned there
    let (s, r) = a
        .migrate("tenant", json!({"database_id": "held", "version": 2}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(status_of(&r, &held), "updated", "{r}");
    assert_eq!(release(&held).await, "two");
    assert_eq!(recorded(&gw, &held).await, (Some(2), true));
    let (s, r) = a.migrate("tenant", json!({})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(status_of(&r, &held), "pinned", "{r}");
    assert_eq!(release(&held).await, "two");
    // pinning a database where it is already changes only the pin
    let (s, r) = a
        .migrate("tenant", json!({"database_id": "free", "version": 3}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(recorded(&gw, &free).await, (Some(3), true));
    // "latest": moved to the latest and unpinned
    let (s, r) = a.migrate("tenant", json!({"version": "latest"})).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(status_of(&r, &held), "updated", "{r}");
    for db in [&free, &held, &old, &uuid_db] {
        assert_eq!(release(db).await, "three", "{db}");
        assert_eq!(recorded(&gw, db).await, (Some(3), false), "{db}");
    }
    let (_, r) = a.migrate("tenant", json!({})).await;
    assert!(results(&r).iter().all(|(_, s)| s == "skipped"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_version_rolls_a_database_back_and_lists_what_it_keeps() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let a = Client::new(&gw).await;
    a.upload("tenant", &v1()).await;
    // version 2 edits migration 001, which the database records as it ran
    // at version 2: rolled back to version 1, it is "edited since"
    a.upload("tenant", &edited(v2())).await;
    let (s, r) = a.create("tenant", "r", json!({})).await;
    assert_eq!(s, 201, "{r}");
    let db = a.db("tenant", "r");
    let c = cluster().connect(&db).await;
    c.batch_execute("UPDATE items SET note = 'kept until dropped' WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(columns(&c).await, ["id", "name", "feeling", "note"]);
    let before = deployments(&gw, &db).await;

    // a dry run of the rollback: the plan, what it keeps, nothing changed
    let (s, r) = a
        .migrate(
            "tenant",
            json!({"database_id": "r", "version": 1, "dry_run": true, "force": true}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let report = &r["results"][0];
    assert_eq!(report["status"], "dry_run", "{r}");
    let plan = serde_json::to_string(&report["plan"]).unwrap();
    assert!(
        plan.contains("DROP COLUMN") && plan.contains("note"),
        "{plan}"
    );
    assert!(plan.contains("'one'"), "the old body: {plan}");
    let kept: Vec<(String, String)> = report["kept"]
        .as_array()
        .unwrap_or_else(|| panic!("no kept: {r}"))
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().unwrap().to_owned(),
                k["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [
            ("enum_value".to_owned(), "public.mood 'ok'".to_owned()),
            ("migration".to_owned(), "002_more.pssql".to_owned())
        ],
        "{r}"
    );
    assert!(extra_exists(&c).await);
    assert_eq!(release(&db).await, "two");
    assert_eq!(columns(&c).await, ["id", "name", "feeling", "note"]);
    assert_eq!(recorded(&gw, &db).await, (Some(2), false));

    // without force: the dropped column is data-losing, refused, nothing changed
    let (s, r) = a
        .migrate("tenant", json!({"database_id": "r", "version": 1}))
        .await;
    assert_eq!(
        (s, r["error"].as_str()),
        (409, Some("migration_failed")),
        "{r}"
    );
    assert_eq!(
        r["details"]["results"][0]["error"]["error"], "schema_validation_failed",
        "{r}"
    );
    let dataloss =
        serde_json::to_string(&r["details"]["schema_validation"]["dataloss_changes"]).unwrap();
    assert!(dataloss.contains("note"), "{r}");
    assert!(extra_exists(&c).await);
    assert_eq!(release(&db).await, "two");
    assert_eq!(columns(&c).await, ["id", "name", "feeling", "note"]);
    assert_eq!(recorded(&gw, &db).await, (Some(2), false));

    // with force: rolled back; the edited migration 001 did not block it
    let (s, r) = a
        .migrate(
            "tenant",
            json!({"database_id": "r", "version": 1, "force": true}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let report = &r["results"][0];
    assert_eq!(report["status"], "updated", "{r}");
    assert_eq!(report["kept"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(report["migrations_applied"], 0, "{r}");
    assert_eq!(
        r["verification"]["passed"], true,
        "verified as version 1: {r}"
    );
    assert!(
        !extra_exists(&c).await,
        "a function of the newer version is gone"
    );
    assert_eq!(release(&db).await, "one", "the old body is back");
    assert_eq!(columns(&c).await, ["id", "name", "feeling"]);
    let labels: Vec<String> = c
        .query("SELECT unnest(enum_range(NULL::mood))::text", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels, ["happy", "ok", "sad"], "an enum value stays");
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
    assert_eq!(
        applied,
        ["001_start.pssql", "002_more.pssql"],
        "migrations stay applied"
    );
    let rows: i64 = c
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2, "the rows the later migration inserted stay");
    assert_eq!(
        recorded(&gw, &db).await,
        (Some(1), true),
        "rolled back and pinned there"
    );
    assert_eq!(deployments(&gw, &db).await, before + 3);
    let (_, l) = a.versions("tenant").await;
    assert_eq!(l["versions"][0]["databases"], 1, "{l}");
    assert_eq!(l["versions"][1]["databases"], 0, "{l}");

    // forward again: the kept enum value and migration are no obstacle
    let (s, r) = a
        .migrate("tenant", json!({"database_id": "r", "version": "latest"}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(release(&db).await, "two");
    assert!(extra_exists(&c).await);
    assert_eq!(columns(&c).await, ["id", "name", "feeling", "note"]);
    assert_eq!(recorded(&gw, &db).await, (Some(2), false));
}

/// The worst a platform could store as a version — a migration that
/// commits, drops the next tenant's database and installs an untrusted
/// extension — is refused when a database is moved to that version or
/// created pinned at it, in a dry run and a real run, and nothing changes:
/// not the database, not its pin, not the other tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_stored_version_is_refused_when_named_and_changes_nothing() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let a = Client::new(&gw).await;
    a.upload("tenant", &v1()).await;
    for id in ["one", "two"] {
        let (s, r) = a.create("tenant", id, json!({})).await;
        assert_eq!(s, 201, "{r}");
    }
    let (one, two) = (a.db("tenant", "one"), a.db("tenant", "two"));
    let mut hostile = v2();
    hostile.set(
        "migrations/009_escape.pssql",
        &format!(
            "CREATE TABLE escaped (id int);\nCOMMIT;\nDROP DATABASE {two};\nCREATE EXTENSION IF NOT EXISTS plperlu;\n"
        ),
    );
    a.upload("tenant", &hostile).await;
    a.upload("tenant", &v3()).await;
    let before = recorded(&gw, &one).await;
    for dry_run in [true, false] {
        let (s, r) = a
            .migrate(
                "tenant",
                json!({"database_id": "one", "version": 2, "dry_run": dry_run}),
            )
            .await;
        assert_ne!(s, 200, "dry_run={dry_run}: {r}");
        let text = r.to_string();
        assert!(
            text.contains("009_escape.pssql") && text.contains("COMMIT"),
            "{r}"
        );
        let (s, r) = a
            .create("tenant", "three", json!({"version": 2, "dry_run": dry_run}))
            .await;
        assert!(s >= 400, "dry_run={dry_run}: {r}");
        assert!(r.to_string().contains("COMMIT"), "{r}");
    }
    assert_eq!(
        recorded(&gw, &one).await,
        before,
        "neither moved nor re-pinned"
    );
    assert!(database_exists(&two).await, "the other tenant is intact");
    assert!(!database_exists(&a.db("tenant", "three")).await);
    let c = cluster().connect(&one).await;
    let escaped: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'escaped'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(escaped, 0, "nothing of the version ran");
}
