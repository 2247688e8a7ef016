//! End-to-end tests of `/v2/migrate-all` jobs (docs/API.md, "Asynchronous
//! migration"), replaying the requests StoneScriptPHP's CLI sends: start a
//! job, attach to a running one through 409, poll until it ends, start a
//! new one after `interrupted`; with platform tokens, so another platform's
//! job answers 404.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, Gateway, PlatformClient, SchemaDir};

const ADMIN: &str = "admin-token-jobs-0123456789abcdef";

fn schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/orders.pssql",
        "CREATE TABLE orders (id SERIAL PRIMARY KEY, total NUMERIC(10,2) NOT NULL DEFAULT 0);",
    )
    .set(
        "functions/order_count.pssql",
        "CREATE OR REPLACE FUNCTION order_count() RETURNS BIGINT LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders $$;",
    );
    s
}

/// The schema with a migration that takes `seconds` in each database.
fn slow(seconds: f64) -> SchemaDir {
    let mut s = schema();
    s.set(
        "migrations/002_slow.pssql",
        &format!("SELECT pg_sleep({seconds});"),
    );
    s
}

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
    /// Register a platform with the admin token and take its token.
    async fn new(gw: &Gateway, platform: &str) -> Client {
        Client(PlatformClient::register(gw, platform, ADMIN).await)
    }

    /// The schema's own database (no uuid) and tenant databases `uuids`.
    async fn databases(&self, schema_name: &str, uuids: &[&str]) {
        let mut bodies = vec![json!({"platform": self.platform, "schema_name": schema_name})];
        for u in uuids {
            bodies.push(json!({"platform": self.platform, "schema_name": schema_name, "uuid": u}));
        }
        for b in bodies {
            let (s, r) = self.send("/admin/database/create", Some(b)).await;
            assert_eq!(s, 201, "{r}");
        }
    }

    /// `POST /v2/migrate-all` as the CLI sends it.
    async fn start(&self, schema_name: &str) -> (u16, Value) {
        self.start_allowing(schema_name, &[]).await
    }

    /// The same, letting the table-change classes `allow` through.
    async fn start_allowing(&self, schema_name: &str, allow: &[&str]) -> (u16, Value) {
        let body = json!({
            "platform": self.platform,
            "schema_name": schema_name,
            "force": false,
            "allow": allow,
            "skip_verification": false,
        });
        self.send("/v2/migrate-all", Some(body)).await
    }

    async fn poll(&self, job_id: &str) -> (u16, Value) {
        self.send(&format!("/v2/migrate-all/{job_id}"), None).await
    }

    /// Poll through `queued` and `running` until the job ends (the CLI
    /// backs off from 3 s; a test polls faster).
    async fn wait(&self, job_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, b) = self.poll(job_id).await;
            assert_eq!(s, 200, "{b}");
            match b["status"].as_str().unwrap() {
                "queued" | "running" => {}
                _ => return b,
            }
            assert!(Instant::now() < deadline, "the job never ended: {b}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn statuses(job: &Value) -> Vec<String> {
    job["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

fn databases(job: &Value) -> Vec<String> {
    let mut d: Vec<String> = job["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["database"].as_str().unwrap().to_owned())
        .collect();
    d.sort();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_migrates_every_tenant_database_and_a_second_start_attaches() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN), ("MIGRATE_CONCURRENCY", "2")]);
    let p = stonescriptdb_tests::new_platform();
    let a = Client::new(&gw, &p).await;
    let other = Client::new(&gw, &stonescriptdb_tests::new_platform()).await;
    a.upload("tenant", &schema()).await;
    a.databases("tenant", &["u1", "u2", "u3"]).await;
    a.upload("tenant", &slow(0.7)).await;

    let (s, started) = a.start("tenant").await;
    assert_eq!(s, 202, "{started}");
    assert_eq!(
        started["total_databases"], 3,
        "the schema's own database is not part of it"
    );
    assert_eq!(started["status"], "queued");
    let job_id = started["job_id"].as_str().unwrap().to_owned();

    // a second start while it runs: 409, and its job_id is the one to follow
    let (s, again) = a.start("tenant").await;
    assert_eq!(s, 409, "{again}");
    assert_eq!(again["error"], "job_already_running");
    assert_eq!(again["job_id"], job_id.as_str());

    // another platform's token: like a job that does not exist
    let (s, b) = other.poll(&job_id).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("job_not_found")),
        "{b}"
    );
    let (s, b) = a.poll("00000000-0000-0000-0000-000000000000").await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = a.poll("not-a-job").await;
    assert_eq!(s, 404, "{b}");

    let job = a.wait(&job_id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(
        (job["succeeded"].as_u64(), job["failed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(statuses(&job), ["completed"; 3]);
    assert_eq!(
        databases(&job),
        ["u1", "u2", "u3"].map(|u| format!("{p}_tenant_{u}"))
    );
    for r in job["results"].as_array().unwrap() {
        assert_eq!(r["migrations_applied"], 1, "{r}");
        assert!(r.get("error").is_none(), "{r}");
    }
    assert!(job["execution_time_ms"].as_u64().unwrap() >= 700, "{job}");
    assert!(job["error"].is_null(), "{job}");
    // the slot is free: a new job, every database already there → completed
    let (s, b) = a.start("tenant").await;
    assert_eq!(s, 202, "{b}");
    let job = a.wait(b["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(statuses(&job), ["completed"; 3]);

    // a schema without tenant databases: 204, no job
    a.upload("solo", &schema()).await;
    a.databases("solo", &[]).await;
    let (s, b) = a.start("solo").await;
    assert_eq!((s, b), (204, Value::String(String::new())));
    // another platform's schema: as if it were not there
    let (s, b) = other.start("tenant").await;
    assert_eq!(s, 404, "{b}");
    // a strict request
    let (s, b) = a
        .send(
            "/v2/migrate-all",
            Some(json!({"platform": p, "schema_name": "tenant", "database_id": "u1"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    // /v2/migrate keeps answering synchronously
    let (s, b) = a
        .send(
            "/v2/migrate",
            Some(json!({"platform": p, "schema_name": "tenant"})),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("completed")), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_where_one_database_fails_is_partial() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let p = stonescriptdb_tests::new_platform();
    let a = Client::new(&gw, &p).await;
    a.upload("tenant", &schema()).await;
    a.databases("tenant", &["u1", "u2", "u3"]).await;
    // one database broken by hand: it has the column already
    let broken = format!("{p}_tenant_u2");
    cluster()
        .connect(&broken)
        .await
        .batch_execute("ALTER TABLE orders ADD COLUMN note TEXT")
        .await
        .unwrap();
    let mut v2 = schema();
    v2.set(
        "migrations/002_note.pssql",
        "ALTER TABLE orders ADD COLUMN note TEXT;",
    );
    a.upload("tenant", &v2).await;
    let (s, b) = a.start("tenant").await;
    assert_eq!(s, 202, "{b}");
    let job = a.wait(b["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(
        (job["succeeded"].as_u64(), job["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(job["error"].as_str().unwrap().contains("1 of 3"), "{job}");
    let failed: Vec<&Value> = job["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "completed")
        .collect();
    assert_eq!(failed.len(), 1, "{job}");
    assert_eq!(failed[0]["status"], "failed");
    assert_eq!(failed[0]["database"], broken.as_str());
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{job}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_migrator_dies_is_interrupted_and_frees_its_slot() {
    let mut gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN), ("MIGRATE_CONCURRENCY", "1")]);
    let p = stonescriptdb_tests::new_platform();
    let a = Client::new(&gw, &p).await;
    a.upload("tenant", &schema()).await;
    a.databases("tenant", &["u1", "u2", "u3", "u4"]).await;
    a.upload("tenant", &slow(1.5)).await;
    let (s, b) = a.start("tenant").await;
    assert_eq!(s, 202, "{b}");
    let job_id = b["job_id"].as_str().unwrap().to_owned();
    // running, well before its end (four databases of 1.5 s, one at a time)
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = a.poll(&job_id).await;
        assert_eq!(s, 200, "{b}");
        if b["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.restart_migrator();

    let (s, job) = a.poll(&job_id).await;
    assert_eq!(s, 200, "{job}");
    assert_eq!(job["status"], "interrupted", "{job}");
    assert!(job["error"].as_str().unwrap().contains("stopped"), "{job}");
    assert!(job["results"].as_array().unwrap().len() < 4, "{job}");

    // the CLI starts one new job and expects 202
    let (s, b) = a.start("tenant").await;
    assert_eq!(s, 202, "{b}");
    assert_ne!(b["job_id"], job_id.as_str());
    let job = a.wait(b["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(statuses(&job), ["completed"; 4]);
}

/// `allow` in a job means what it means on `/v2/migrate`: a dropped column
/// is refused in every database without it, and goes through with
/// `["drop_column"]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lets_through_the_classes_it_allows() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let p = stonescriptdb_tests::new_platform();
    let a = Client::new(&gw, &p).await;
    let mut with_note = schema();
    with_note.set(
        "tables/orders.pssql",
        "CREATE TABLE orders (id SERIAL PRIMARY KEY, total NUMERIC(10,2) NOT NULL DEFAULT 0, note TEXT);",
    );
    a.upload("tenant", &with_note).await;
    a.databases("tenant", &["u1", "u2"]).await;
    // the next version drops the column
    a.upload("tenant", &schema()).await;

    let (s, started) = a.start("tenant").await;
    assert_eq!(s, 202, "{started}");
    let job = a.wait(started["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "refused without allow: {job}");
    assert_eq!(statuses(&job), ["failed", "failed"], "{job}");
    assert!(
        job["results"][0]["error"]
            .to_string()
            .contains("drop_column"),
        "{job}"
    );

    let (s, started) = a.start_allowing("tenant", &["drop_column"]).await;
    assert_eq!(s, 202, "{started}");
    let job = a.wait(started["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(statuses(&job), ["completed", "completed"], "{job}");
}

/// The seams a job crosses: a request with a field the route does not define
/// (a client that believes it asked for a dry run) starts nothing; a
/// platform whose name extends another's keeps its databases out of the
/// other's job; and the worst a platform can upload in a stored version
/// (transaction control, a DROP DATABASE of another platform's database)
/// is refused in every database of the job, which changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_strict_stays_in_its_platform_and_runs_nothing_hostile() {
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN)]);
    let p = stonescriptdb_tests::new_platform();
    let a = Client::new(&gw, &p).await;
    let b = Client::new(&gw, &format!("{p}z")).await;
    for c in [&a, &b] {
        c.upload("tenant", &schema()).await;
    }
    a.databases("tenant", &["u1", "u2"]).await;
    b.databases("tenant", &["u1"]).await;
    let victim = format!("{p}z_tenant_u1");

    // a field the route does not define: 400 naming it, no job
    let (s, r) = a
        .send(
            "/v2/migrate-all",
            Some(json!({"platform": p, "schema_name": "tenant", "dry_run": true})),
        )
        .await;
    assert_eq!(s, 400, "{r}");
    assert!(r["message"].as_str().unwrap().contains("dry_run"), "{r}");

    // a version whose migrations escape the transaction and drop another
    // platform's database
    let mut hostile = schema();
    hostile
        .set(
            "migrations/001_drop.pssql",
            &format!("CREATE TABLE escaped (id int);\nDROP DATABASE {victim};"),
        )
        .set(
            "migrations/002_commit.pssql",
            "CREATE TABLE committed (id int);\nCOMMIT;",
        );
    a.upload("tenant", &hostile).await;
    let (s, started) = a.start("tenant").await;
    assert_eq!(s, 202, "{started}");
    assert_eq!(
        started["total_databases"], 2,
        "only this platform's tenant databases, not {victim}: {started}"
    );
    let job = a.wait(started["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(statuses(&job), ["failed", "failed"], "{job}");
    assert!(
        job["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("DROP DATABASE: database- and cluster-level"),
        "{job}"
    );
    assert!(stonescriptdb_tests::database_exists(&victim).await);
    for u in ["u1", "u2"] {
        let c = cluster().connect(&format!("{p}_tenant_{u}")).await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname IN ('escaped', 'committed')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "nothing of the refused version ran in {u}");
    }
}
