//! End-to-end tests of `GET /admin/databases/{name}/export`: a live
//! database exported as a schema folder registers into an empty database
//! with no difference from the source (compared on normalized
//! `pg_dump --schema-only`), what moved where is reported, and nothing is
//! silently left out.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;
use stonescriptdb_tests::{cluster, find_pg_bin_dir, new_platform, Gateway, SchemaDir};

const ADMIN: &str = "export-admin-token-00001";

/// A database made by hand, the way a team's live database is: enums,
/// domains, composite types, identity and serial columns, a partial index,
/// views, a trigger, a table default calling a user function, functions
/// calling functions, a second schema, a policy, comments.
const LIVE: &str = "
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a integer, b text);
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE FUNCTION slug(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT lower(replace(t, ' ', '-')) $$;
CREATE TABLE film (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title text NOT NULL,
    handle text NOT NULL DEFAULT slug('untitled'),
    feeling mood,
    stock posint,
    CONSTRAINT title_not_blank CHECK (length(title) > 0)
);
CREATE TABLE actor (
    id serial PRIMARY KEY,
    film_id integer REFERENCES film (id) ON DELETE CASCADE,
    name text,
    extra pair
);
CREATE INDEX actor_named ON actor (name) WHERE name IS NOT NULL;
CREATE UNIQUE INDEX film_handle ON film (handle);
CREATE SEQUENCE ticket_numbers START 100;
CREATE TABLE ticket (no bigint PRIMARY KEY DEFAULT nextval('ticket_numbers'), note text);
CREATE VIEW film_titles AS SELECT id, title FROM film;
CREATE MATERIALIZED VIEW film_count AS SELECT count(*) AS n FROM film;
CREATE FUNCTION upper_title() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.title := upper(NEW.title);
  RETURN NEW;
END $$;
CREATE TRIGGER film_upper BEFORE INSERT ON film FOR EACH ROW EXECUTE FUNCTION upper_title();
CREATE FUNCTION inner_add(a integer, b integer) RETURNS integer LANGUAGE sql AS $$ SELECT a + b $$;
CREATE FUNCTION outer_add(a integer) RETURNS integer LANGUAGE sql AS $$ SELECT inner_add(a, 1) $$;
CREATE FUNCTION film_total() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (SELECT count(*) FROM film);
END $$;
CREATE SCHEMA reports;
CREATE TABLE reports.daily (day date PRIMARY KEY, films integer NOT NULL DEFAULT 0);
CREATE FUNCTION reports.today() RETURNS date LANGUAGE sql AS $$ SELECT current_date $$;
ALTER TABLE ticket ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_tickets ON ticket USING (note IS NOT NULL);
COMMENT ON TABLE film IS 'every film';
COMMENT ON FUNCTION outer_add(integer) IS 'adds one';
";

/// GET the export of `database` (from a gateway without tokens: anyone
/// is the operator there).
async fn export(gw: &Gateway, database: &str) -> (u16, Vec<u8>, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/databases/{database}/export", gw.url))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, resp.bytes().await.unwrap().to_vec(), kind)
}

/// The archive's files: path → text.
fn unpack(archive: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        out.insert(path, text);
    }
    out
}

/// The exported folder as a schema to register.
fn folder(files: &BTreeMap<String, String>) -> SchemaDir {
    let mut s = SchemaDir::default();
    for (path, text) in files {
        if let Some(inner) = path.strip_prefix("postgresql/") {
            s.set(inner, text);
        }
    }
    s
}

/// `pg_dump --schema-only` of `database`, normalized: owners, privileges,
/// comments, settings and the gateway's own tracking objects left out,
/// each object's text with its whitespace collapsed, sorted.
fn schema_of(database: &str) -> Vec<String> {
    let c = cluster();
    let bin = find_pg_bin_dir().unwrap();
    let mut cmd = std::process::Command::new(bin.join("pg_dump"));
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-comments",
    ])
    .args([
        "-h",
        &c.host,
        "-p",
        &c.port.to_string(),
        "-U",
        &c.user,
        database,
    ]);
    if let Some(p) = &c.password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut objects = Vec::new();
    for block in text.split("\n--\n-- Name: ").skip(1) {
        let (header, body) = block.split_once("\n--\n").unwrap_or((block, ""));
        if header.contains("_stonescriptdb_gateway") || body.contains("_stonescriptdb_gateway") {
            continue;
        }
        let body: Vec<&str> = body
            .lines()
            .filter(|l| !l.starts_with("SET ") && !l.starts_with('\\') && !l.starts_with("--"))
            .collect();
        let body = body
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // an entry with no SQL (pg_dump notes the public schema's rights,
        // which the gateway sets on every database it makes)
        if body.is_empty() {
            continue;
        }
        let header = header.split("; Owner:").next().unwrap_or(header);
        objects.push(format!("{header}: {body}"));
    }
    objects.sort();
    objects
}

async fn round_trip(gw: &Gateway, source: &str) -> (BTreeMap<String, String>, Value) {
    let (s, archive, kind) = export(gw, source).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&archive));
    assert_eq!(kind, "application/gzip");
    let files = unpack(&archive);
    let report: Value = serde_json::from_str(&files["export-report.json"]).unwrap();
    // register the export into an empty database of another platform
    let p = new_platform();
    let (s, b) = gw.register(&p, Some("copy"), &folder(&files)).await;
    assert_eq!(s, 200, "{b}\n{files:#?}");
    let copy = format!("{p}_copy");
    let (a, b) = (schema_of(source), schema_of(&copy));
    let only_source: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
    let only_copy: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
    assert!(
        only_source.is_empty() && only_copy.is_empty(),
        "differences\nonly in {source}: {only_source:#?}\nonly in {copy}: {only_copy:#?}\nexport: {files:#?}"
    );
    (files, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_made_live_database_exports_to_a_folder_that_registers_identically() {
    let gw = Gateway::start(&[]);
    let live = format!("{}_live", new_platform());
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!("CREATE DATABASE {live}"))
        .await
        .unwrap();
    cluster()
        .connect(&live)
        .await
        .batch_execute(LIVE)
        .await
        .unwrap();

    let (files, report) = round_trip(&gw, &live).await;
    // each folder holds its kind
    for path in [
        "postgresql/types/mood.sql",
        "postgresql/types/pair.sql",
        "postgresql/types/posint.sql",
        "postgresql/tables/ticket.sql",
        "postgresql/tables/ticket_numbers.sql",
        "postgresql/functions/outer_add.sql",
        "postgresql/functions/inner_add.sql",
        "postgresql/functions/reports_today.sql",
        "postgresql/migrations/000_exported.sql",
    ] {
        assert!(
            files.contains_key(path),
            "{path} missing: {:#?}",
            files.keys()
        );
    }
    assert!(files["postgresql/functions/outer_add.sql"].contains("COMMENT ON FUNCTION"));
    let migration = &files["postgresql/migrations/000_exported.sql"];
    for what in [
        "CREATE VIEW public.film_titles",
        "CREATE MATERIALIZED VIEW public.film_count",
        "CREATE TRIGGER film_upper",
        "CREATE POLICY own_tickets",
        "CREATE SCHEMA reports",
        "CREATE TABLE reports.daily",
        // the default's function, and the table it makes move with it
        "CREATE FUNCTION public.slug",
        "CREATE TABLE public.film",
        "CREATE FUNCTION public.upper_title",
    ] {
        assert!(migration.contains(what), "{what} not in {migration}");
    }
    // why each moved, in the report
    let moved = report["moved_to_migrations"].as_array().unwrap();
    let why = |object: &str| {
        moved
            .iter()
            .find(|m| m["object"] == object)
            .map(|m| m["why"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{object} not reported moved: {report:#}"))
    };
    assert!(why("film").contains("slug(text)"), "{report:#}");
    // actor references film, which moved
    assert!(why("actor").contains("film"), "{report:#}");
    assert!(why("film_titles").contains("view"), "{report:#}");
    assert_eq!(report["database"], live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_fixture_exports_to_a_folder_that_registers_identically() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (s, b) = gw
        .register(&p, Some("t1"), &SchemaDir::fixture("shop"))
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, report) = round_trip(&gw, &format!("{p}_t1")).await;
    assert!(report["not_exported"].is_array(), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_is_the_admins_and_of_a_database_that_exists() {
    let deploy = "export-deploy-token-0001";
    let p = new_platform();
    let gw = Gateway::start(&[
        ("ADMIN_TOKEN", ADMIN),
        ("DEPLOY_TOKENS", &format!("{p}:{deploy}")),
    ]);
    let get = |path: String, token: Option<&'static str>| {
        let url = gw.url.clone();
        async move {
            let mut req = reqwest::Client::new().get(format!("{url}{path}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = get("/admin/databases/no_such_db/export".into(), Some(ADMIN)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("database_not_found")),
        "{b}"
    );
    let (s, _) = get("/admin/databases/postgres/export".into(), Some(deploy)).await;
    assert_eq!(s, 403);
    let (s, _) = get("/admin/databases/postgres/export".into(), None).await;
    assert_eq!(s, 401);
    let (s, b) = get("/admin/databases/Bad-Name/export".into(), Some(ADMIN)).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    let (s, b) = get(
        "/admin/databases/postgres/export?tables=1".into(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    // the catalog holds the platforms' role passwords: never exported
    let (s, b) = get(
        "/admin/databases/stonescriptdb_gateway/export".into(),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
}
