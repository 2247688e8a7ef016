//! The OpenAPI document is generated from the code and tells the truth:
//! `docs/openapi.json` is what `stonescriptdb_shared::openapi::document()`
//! builds (this test rewrites it when stale, and fails); its name patterns are
//! the ones the gateway enforces; and real requests to every route — the
//! success and every documented error status — answer only documented
//! statuses, with bodies valid against the document.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use stonescriptdb_shared::{names, openapi, routes};
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir, TestDb};

const DOC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

fn generated() -> String {
    serde_json::to_string_pretty(&openapi::document()).unwrap() + "\n"
}

#[test]
fn docs_openapi_json_is_generated_from_the_code() {
    let text = generated();
    let on_disk = std::fs::read_to_string(DOC_PATH).unwrap_or_default();
    if on_disk != text {
        std::fs::write(DOC_PATH, &text).expect("write docs/openapi.json");
        panic!("docs/openapi.json was stale and has been rewritten from the code: review and commit it (the router serves the file, so rebuild it too)");
    }
}

#[test]
fn the_documented_name_rules_are_the_ones_the_gateway_enforces() {
    let long = |n: usize| "a".repeat(n);
    let mut samples: Vec<String> = [
        "a",
        "ab_c",
        "a-b",
        "1a",
        "_a",
        "A",
        "aB",
        "a.b",
        "",
        "a1_",
        "ab-",
        "9",
        "0-_",
        "é",
        "a b",
        "a\n",
        "-a",
        "s.f",
        "S_1.F_2",
        "a.",
        ".a",
        "a.b.c",
        "1.a",
        "a.1",
        "_._",
        "a--b",
        "a__b",
        "a-_b",
        "0f1e_a2b3-c4",
        "a_",
        "a-",
        "0a1b-c2d3-e4",
        "A-b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [52, 53, 54, 62, 63, 64, 127, 128] {
        samples.push(long(n));
        samples.push(format!("{}.{}", long(n), long(3)));
        samples.push(format!("{}.{}", long(63), long(n)));
    }
    type Check = fn(&str) -> bool;
    let cases: [(&str, names::NameRule, Check); 8] = [
        ("platform", names::PLATFORM, |s| {
            names::platform_roles(s).is_ok()
        }),
        ("schema_name", names::SCHEMA_NAME, |s| {
            names::validate_schema_name(s).is_ok()
        }),
        ("tenant_id", names::TENANT_ID, |s| {
            names::validate_tenant_id(s).is_ok()
        }),
        ("database_id", names::DATABASE_ID, |s| {
            names::validate_database_id(s).is_ok()
        }),
        ("database", names::DATABASE, |s| {
            names::validate_database_name(s).is_ok()
        }),
        ("uuid", names::UUID, |s| names::validate_uuid(s).is_ok()),
        ("migrate uuid", names::UUID_EITHER, |s| {
            names::validate_uuid_either(s).is_ok()
        }),
        ("function", names::FUNCTION, |s| {
            names::validate_function_name(s).is_ok()
        }),
    ];
    for (what, rule, code) in cases {
        let re = regex_lite::Regex::new(rule.pattern).unwrap();
        for s in &samples {
            let documented = re.is_match(s) && s.len() <= rule.max_len;
            assert_eq!(
                documented,
                code(s),
                "{what} {s:?}: the document says {documented}, the gateway disagrees"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A small JSON Schema validator: what the generated document uses.

fn validate(
    doc: &Value,
    schema: &Value,
    v: &Value,
    at: &str,
    closed: bool,
    errs: &mut Vec<String>,
) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {r}");
        return validate(doc, target, v, at, closed, errs);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, v, at, closed, errs);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let matching = alts
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    validate(doc, s, v, at, closed, &mut e);
                    e.is_empty()
                })
                .count();
            if matching == 0 || (key == "oneOf" && matching > 1) {
                errs.push(format!("{at}: {v} matches {matching} of {key} {schema}"));
            }
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => panic!("bad type {t}"),
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            other => panic!("unknown type {other}"),
        });
        if !ok {
            errs.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errs.push(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Some(s) = v.as_str() {
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if s.chars().count() as u64 > max {
                errs.push(format!("{at}: {s:?} is longer than {max}"));
            }
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            if !regex_lite::Regex::new(p).unwrap().is_match(s) {
                errs.push(format!("{at}: {s:?} does not match {p}"));
            }
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errs.push(format!("{at}: {n} < {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errs.push(format!("{at}: {n} > {max}"));
            }
        }
    }
    if let (Some(a), Some(items)) = (v.as_array(), schema.get("items")) {
        for (i, x) in a.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"), closed, errs);
        }
    }
    if let Some(o) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !o.contains_key(r.as_str().unwrap()) {
                errs.push(format!("{at}: required {r} missing"));
            }
        }
        for (k, x) in o {
            let at = format!("{at}.{k}");
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => validate(doc, s, x, &at, closed, errs),
                (None, Some(Value::Bool(false))) => errs.push(format!("{at}: not allowed")),
                (None, Some(s @ Value::Object(_))) => validate(doc, s, x, &at, closed, errs),
                // A response's object schema lists every field it has: a
                // field the document does not name is drift.
                (None, None) if closed && props.is_some() => {
                    errs.push(format!("{at}: not in the document"))
                }
                _ => {}
            }
        }
    }
}

fn is_valid(doc: &Value, schema: &Value, v: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    validate(doc, schema, v, "$", false, &mut errs);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

// ---------------------------------------------------------------------------
// Sending requests and checking their answers against the document.

struct Checker {
    doc: Value,
    client: reqwest::Client,
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

enum Payload {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
    Form(Vec<(&'static str, String)>, Option<(&'static str, Vec<u8>)>),
}

impl Checker {
    fn new() -> Checker {
        Checker {
            doc: openapi::document(),
            client: reqwest::Client::new(),
            seen: BTreeMap::new(),
        }
    }

    fn op(&self, method: &str, pattern: &str) -> &Value {
        let op = &self.doc["paths"][pattern][method.to_ascii_lowercase()];
        if op.is_null() {
            // a method the route does not take: only 405 (and 403) apply
            return self.doc["paths"][pattern]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap();
        }
        op
    }

    /// Send `method path` and check the answer against the document of
    /// `pattern` (the route `path` belongs to). Returns status and body.
    async fn send(
        &mut self,
        gw: &Gateway,
        method: &str,
        path: &str,
        token: Option<&str>,
        payload: Payload,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (route, _) = routes::find(path.split('?').next().unwrap())
            .unwrap_or_else(|| panic!("{path} is no route"));
        let pattern = route.pattern;
        let mut rb: RequestBuilder = self.client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", gw.url),
        );
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let sent_json = match &payload {
            Payload::Json(v) => Some(v.clone()),
            _ => None,
        };
        rb = match payload {
            Payload::None => rb,
            Payload::Json(v) => rb.json(&v),
            Payload::Raw(ct, bytes) => rb.header("content-type", ct).body(bytes),
            Payload::Form(fields, file) => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    form = form.text(k, v);
                }
                if let Some((name, bytes)) = file {
                    let part = reqwest::multipart::Part::bytes(bytes)
                        .file_name("schema.tar.gz")
                        .mime_str("application/gzip")
                        .unwrap();
                    form = form.part(name, part);
                }
                rb.multipart(form)
            }
        };
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let text = resp.text().await.unwrap();
        let what = format!(
            "{method} {path} -> {status} {ctype}: {}",
            text.chars().take(600).collect::<String>()
        );
        let op = self.op(method, pattern).clone();
        let documented = &op["responses"][status.to_string()];
        assert!(!documented.is_null(), "undocumented status: {what}");
        let media = &documented["content"][&ctype];
        let body = if documented.get("content").is_none() {
            // an answer documented without a body (204) has none
            assert!(text.is_empty() && ctype.is_empty(), "a body: {what}");
            Value::Null
        } else if ctype == "application/json" {
            assert!(!media.is_null(), "undocumented content type: {what}");
            let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {what}"));
            let mut errs = Vec::new();
            validate(&self.doc, &media["schema"], &body, "$", true, &mut errs);
            assert!(errs.is_empty(), "{errs:#?}\n{what}");
            body
        } else {
            assert!(!media.is_null(), "undocumented content type: {what}");
            Value::String(text)
        };
        // A request the gateway accepted is one the document calls valid.
        if let (Some(sent), true) = (sent_json, (200..300).contains(&status)) {
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            if let Err(e) = is_valid(&self.doc, schema, &sent) {
                panic!("accepted, yet invalid by the document: {sent}: {e:?}");
            }
        }
        // A method the route does not take counts for the route's operation.
        let doc_method = if route.allows(method) {
            method
        } else {
            route.methods[0]
        };
        self.seen
            .entry((doc_method.to_ascii_lowercase(), pattern.to_owned()))
            .or_default()
            .insert(status);
        (status, body)
    }

    /// [`Checker::send`] without token or headers, expecting `status`.
    async fn expect(
        &mut self,
        gw: &Gateway,
        method: &str,
        path: &str,
        payload: Payload,
        status: u16,
    ) -> Value {
        let (s, body) = self.send(gw, method, path, None, payload, &[]).await;
        assert_eq!(s, status, "{method} {path}: {body}");
        body
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn shop() -> SchemaDir {
    let mut s = SchemaDir::fixture("shop");
    s.set(
        "functions/boom.pssql",
        "CREATE OR REPLACE FUNCTION boom() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RAISE EXCEPTION 'internal trouble' USING ERRCODE = 'XX000';\nEND $$;\n",
    );
    s.set(
        "functions/too_slow.pssql",
        "CREATE OR REPLACE FUNCTION too_slow() RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(5) $$;\n",
    );
    s.set(
        "functions/tidy_up.pssql",
        "CREATE OR REPLACE PROCEDURE tidy_up() LANGUAGE sql AS $$ SELECT 1 $$;\n",
    );
    s
}

/// The shop schema with a migration PostgreSQL refuses: the deployment fails.
fn broken() -> SchemaDir {
    let mut s = shop();
    s.set(
        "migrations/004_broken.pssql",
        "ALTER TABLE no_such_table ADD COLUMN x int;\n",
    );
    s
}

const ADMIN: &str = "openapi-admin-token-0001";
const DEPLOY: &str = "openapi-deploy-token-0001";
const CALL: &str = "openapi-call-token-00001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_document_says() {
    let mut c = Checker::new();
    let p1 = new_platform();
    let mut gw = Gateway::start(&[
        ("ARCHIVE_MAX_COMPRESSED_BYTES", "262144"),
        // a backup before a drop cannot be written here (answers 500)
        ("BACKUP_DIR", "/dev/null/backups"),
        // p1's calls are cut off after a second: `too_slow` answers 504
        ("CALL_TIMEOUTS", &format!("{p1}:1000")),
    ]);
    let none = &[][..];
    let archive = || shop().tar_gz();
    let form = |fields: &[(&'static str, &str)], file: Option<Vec<u8>>| {
        Payload::Form(
            fields.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            file.map(|f| ("schema", f)),
        )
    };
    let big_json = |n: usize| Payload::Json(json!({ "platform": "a".repeat(n) }));

    // ---- v1 schema routes
    let (s, b) = c
        .send(
            &gw,
            "POST",
            "/register",
            None,
            form(&[("platform", &p1)], Some(archive())),
            none,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    for t in ["t1", "t2"] {
        let f = form(&[("platform", &p1), ("tenant_id", t)], Some(archive()));
        c.expect(&gw, "POST", "/register", f, 200).await;
    }
    let f = form(&[("platform", &p1), ("tenant", "t1")], Some(archive()));
    c.expect(&gw, "POST", "/register", f, 400).await;
    let f = form(
        &[("platform", &p1), ("tenant_id", "t9")],
        Some(broken().tar_gz()),
    );
    let (s, b) = c.send(&gw, "POST", "/register", None, f, none).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("migration_failed")),
        "{b}"
    );
    let f = form(&[("platform", &p1)], Some(random_bytes(300 * 1024)));
    c.expect(&gw, "POST", "/register", f, 413).await;
    let j = Payload::Json(json!({"platform": p1}));
    c.expect(&gw, "POST", "/register", j, 415).await;

    let f = form(&[("platform", &p1), ("dry_run", "TRUE")], Some(archive()));
    c.expect(&gw, "POST", "/migrate", f, 200).await;
    for flag in ["yes", ""] {
        let f = form(&[("platform", &p1), ("dry_run", flag)], Some(archive()));
        c.expect(&gw, "POST", "/migrate", f, 400).await;
    }
    let f = form(&[("platform", &p1)], Some(archive()));
    c.expect(&gw, "POST", "/migrate?dry_run=true", f, 400).await;
    let f = form(&[("platform", &p1)], Some(archive()));
    c.expect(&gw, "POST", "/migrate", f, 200).await;
    let f = form(&[("platform", &p1), ("forced", "true")], Some(archive()));
    c.expect(&gw, "POST", "/migrate", f, 400).await;
    let f = form(&[("platform", &new_platform())], Some(archive()));
    c.expect(&gw, "POST", "/migrate", f, 404).await;
    let f = form(
        &[("platform", &p1), ("tenant_id", "t1")],
        Some(broken().tar_gz()),
    );
    c.expect(&gw, "POST", "/migrate", f, 409).await;
    let f = form(&[("platform", &p1)], Some(random_bytes(300 * 1024)));
    c.expect(&gw, "POST", "/migrate", f, 413).await;
    let j = Payload::Json(json!({"platform": p1}));
    c.expect(&gw, "POST", "/migrate", j, 415).await;

    let q = format!("/admin/databases?platform={p1}");
    let (s, b) = c.send(&gw, "GET", &q, None, Payload::None, none).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(3)), "{b}");
    c.expect(&gw, "GET", "/admin/databases", Payload::None, 400)
        .await;
    let q = format!("/admin/databases?platform={p1}&size=true");
    let b = c.expect(&gw, "GET", &q, Payload::None, 200).await;
    assert!(b["items"][0]["size_bytes"].as_i64().unwrap_or(0) > 0, "{b}");
    let q = format!("/admin/databases?platform={p1}&size=maybe");
    c.expect(&gw, "GET", &q, Payload::None, 400).await;
    let q = format!("/platform/{p1}/functions?tenant_id=t1");
    let b = c.expect(&gw, "GET", &q, Payload::None, 200).await;
    assert!(b["count"].as_u64().unwrap_or(0) > 0, "{b}");
    let q = format!("/platform/{p1}/functions?tenant_id=t404");
    c.expect(&gw, "GET", &q, Payload::None, 404).await;
    let q = format!("/platform/{p1}/functions?tenant_id=t1&database={p1}_t1");
    c.expect(&gw, "GET", &q, Payload::None, 400).await;

    let t = |tenant: &str| Payload::Json(json!({"platform": p1, "tenant_id": tenant}));
    let j = Payload::Json(json!({"platform": p1, "tenant_id": "t3", "dry_run": true}));
    c.expect(&gw, "POST", "/admin/create-tenant", j, 200).await;
    c.expect(&gw, "POST", "/admin/create-tenant", t("t3"), 201)
        .await;
    c.expect(&gw, "POST", "/admin/create-tenant", t("t3"), 409)
        .await;
    let j = Payload::Json(json!({"platform": new_platform(), "tenant_id": "x"}));
    c.expect(&gw, "POST", "/admin/create-tenant", j, 404).await;
    let j = Payload::Json(json!({"platform": p1, "tenant": "x"}));
    c.expect(&gw, "POST", "/admin/create-tenant", j, 400).await;
    c.expect(&gw, "POST", "/admin/create-tenant", big_json(70_000), 413)
        .await;

    // the archives p1 keeps, and one redeployed
    let versions = format!("/platform/{p1}/versions");
    let b = c.expect(&gw, "GET", &versions, Payload::None, 200).await;
    assert_eq!(b["versions"][0]["latest"], true, "{b}");
    let unknown = format!("/platform/{}/versions", new_platform());
    c.expect(&gw, "GET", &unknown, Payload::None, 404).await;
    let f = form(&[("platform", &p1), ("version", "1")], None);
    let b = c.expect(&gw, "POST", "/migrate", f, 200).await;
    assert_eq!(b["version"], 1, "{b}");
    let f = form(&[("platform", &p1), ("version", "99")], None);
    let b = c.expect(&gw, "POST", "/migrate", f, 404).await;
    assert_eq!(b["error"], "version_not_found", "{b}");

    // ---- operator routes
    let db = TestDb::new().await;
    let main1 = format!("{p1}_main");
    let j = Payload::Json(json!({"platform": db.platform, "databases": [db.database]}));
    c.expect(&gw, "POST", "/admin/adopt", j, 200).await;
    let j = Payload::Json(json!({"platform": db.platform, "databases": [main1]}));
    c.expect(&gw, "POST", "/admin/adopt", j, 409).await;
    let j = Payload::Json(json!({"platform": db.platform, "databases": ["no_such_database_here"]}));
    c.expect(&gw, "POST", "/admin/adopt", j, 404).await;
    let j = Payload::Json(json!({"platform": db.platform, "database": [db.database]}));
    c.expect(&gw, "POST", "/admin/adopt", j, 400).await;
    c.expect(&gw, "POST", "/admin/adopt", big_json(70_000), 413)
        .await;

    let j = Payload::Json(json!({ "database": main1 }));
    c.expect(&gw, "POST", "/admin/refresh", j, 200).await;
    let j = Payload::Json(json!({"database": "no_such_database_here"}));
    c.expect(&gw, "POST", "/admin/refresh", j, 404).await;
    let j = Payload::Json(json!({"databse": main1}));
    c.expect(&gw, "POST", "/admin/refresh", j, 400).await;
    c.expect(&gw, "POST", "/admin/refresh", big_json(70_000), 413)
        .await;

    let q = format!("/admin/deployments?platform={p1}&limit=5");
    let (s, b) = c.send(&gw, "GET", &q, None, Payload::None, none).await;
    assert_eq!((s, b["count"].as_u64()), (200, Some(5)), "{b}");
    let q = "/admin/deployments?limit=0";
    c.expect(&gw, "GET", q, Payload::None, 400).await;

    // ---- exporting a database: the folder, a bad name, a missing one,
    // and pg_dump failing (a table locked past DEPLOY_LOCK_TIMEOUT_MS)
    let export = |db: &str| format!("/admin/databases/{db}/export");
    c.expect(&gw, "GET", &export(&main1), Payload::None, 200)
        .await;
    c.expect(&gw, "GET", &export("Not-A-Name"), Payload::None, 400)
        .await;
    c.expect(
        &gw,
        "GET",
        &export("no_such_database_here"),
        Payload::None,
        404,
    )
    .await;
    let locker = cluster().connect(&format!("{p1}_t2")).await;
    locker
        .batch_execute("CREATE TABLE held (id int)")
        .await
        .unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let b = c
        .expect(&gw, "GET", &export(&format!("{p1}_t2")), Payload::None, 500)
        .await;
    assert!(
        b["message"].as_str().unwrap_or("").contains("pg_dump"),
        "{b}"
    );
    drop(locker);

    // ---- deleting: a drop and an offboarding, each status (BACKUP_DIR
    // is unusable on this gateway: a backup answers 500)
    let p3 = new_platform();
    for t in ["t1", "t2"] {
        let f = form(&[("platform", &p3), ("tenant_id", t)], Some(archive()));
        c.expect(&gw, "POST", "/register", f, 200).await;
    }
    let (t1, t2) = (format!("{p3}_t1"), format!("{p3}_t2"));
    let drop_of = |db: &str, extra: &str| format!("/admin/databases/{db}?confirm={db}{extra}");
    c.expect(
        &gw,
        "DELETE",
        &format!("/admin/databases/{t1}"),
        Payload::None,
        400,
    )
    .await;
    c.expect(
        &gw,
        "DELETE",
        &drop_of("no_such_database_here", ""),
        Payload::None,
        404,
    )
    .await;
    let b = c
        .expect(
            &gw,
            "DELETE",
            &drop_of(&t1, "&backup=true"),
            Payload::None,
            500,
        )
        .await;
    assert_eq!(b["error"], "backup_failed", "{b}");
    // a deployment holds the database's lock (exec::LOCK_CLASS, LOCK_OBJ)
    let deploying = cluster().connect(&t1).await;
    deploying
        .query_one("SELECT pg_advisory_lock(1396983639, 1)", &[])
        .await
        .unwrap();
    let b = c
        .expect(&gw, "DELETE", &drop_of(&t1, ""), Payload::None, 409)
        .await;
    assert_eq!(b["error"], "deployment_running", "{b}");
    let offboard = format!("/admin/platforms/{p3}?confirm={p3}");
    let b = c.expect(&gw, "DELETE", &offboard, Payload::None, 409).await;
    assert_eq!(b["error"], "deployment_running", "{b}");
    drop(deploying);
    c.expect(&gw, "DELETE", &drop_of(&t1, ""), Payload::None, 200)
        .await;
    let other = new_platform();
    let gone = format!("/admin/platforms/{other}?confirm={other}");
    c.expect(&gw, "DELETE", &gone, Payload::None, 404).await;
    let wrong = format!("/admin/platforms/{p3}?confirm={t2}");
    c.expect(&gw, "DELETE", &wrong, Payload::None, 400).await;
    let b = c
        .expect(
            &gw,
            "DELETE",
            &format!("{offboard}&backup=true"),
            Payload::None,
            500,
        )
        .await;
    assert_eq!(b["error"], "backup_failed", "{b}");
    let b = c.expect(&gw, "DELETE", &offboard, Payload::None, 200).await;
    assert_eq!(b["databases"][0]["database"], t2.as_str(), "{b}");

    // ---- v2
    let p2 = new_platform();
    let j = Payload::Json(json!({ "platform": p2 }));
    c.expect(&gw, "POST", "/platform/register", j, 201).await;
    let j = Payload::Json(json!({ "platform": p2 }));
    c.expect(&gw, "POST", "/platform/register", j, 409).await;
    let j = Payload::Json(json!({ "platform": "Not-A-Name" }));
    c.expect(&gw, "POST", "/platform/register", j, 400).await;
    c.expect(&gw, "POST", "/platform/register", big_json(70_000), 413)
        .await;
    c.expect(&gw, "GET", "/platforms", Payload::None, 200).await;
    c.expect(&gw, "GET", "/platforms?all=1", Payload::None, 400)
        .await;

    let up = format!("/platform/{p2}/schema");
    let f = form(&[("schema_name", "store")], Some(archive()));
    c.expect(&gw, "POST", &up, f, 201).await;
    let f = form(
        &[("schema_name", "store"), ("version", "2")],
        Some(archive()),
    );
    c.expect(&gw, "POST", &up, f, 400).await;
    let other = format!("/platform/{}/schema", new_platform());
    let f = form(&[("schema_name", "store")], Some(archive()));
    c.expect(&gw, "POST", &other, f, 404).await;
    let f = form(&[("schema_name", "store")], Some(random_bytes(300 * 1024)));
    c.expect(&gw, "POST", &up, f, 413).await;
    let j = Payload::Json(json!({"schema_name": "store"}));
    c.expect(&gw, "POST", &up, j, 415).await;

    for (list, query) in [("schemas", ""), ("databases", "?schema=store")] {
        let path = format!("/platform/{p2}/{list}{query}");
        c.expect(&gw, "GET", &path, Payload::None, 200).await;
        let path = format!("/platform/{p2}/{list}?x=1");
        c.expect(&gw, "GET", &path, Payload::None, 400).await;
        let path = format!("/platform/{}/{list}", new_platform());
        c.expect(&gw, "GET", &path, Payload::None, 404).await;
    }

    let create = |schema: &str, id: &str| {
        Payload::Json(json!({"platform": p2, "schema_name": schema, "database_id": id}))
    };
    let j = Payload::Json(
        json!({"platform": p2, "schema_name": "store", "database_id": "d1", "dry_run": true}),
    );
    c.expect(&gw, "POST", "/database/create", j, 200).await;
    let (s, b) = c
        .send(
            &gw,
            "POST",
            "/database/create",
            None,
            create("store", "d1"),
            none,
        )
        .await;
    assert_eq!(s, 201, "{b}");
    c.expect(&gw, "POST", "/database/create", create("store", "d1"), 409)
        .await;
    c.expect(&gw, "POST", "/database/create", create("nope", "d2"), 404)
        .await;
    let j = Payload::Json(json!({"platform": p2, "schema": "store", "database_id": "d3"}));
    c.expect(&gw, "POST", "/database/create", j, 400).await;
    c.expect(&gw, "POST", "/database/create", big_json(70_000), 413)
        .await;

    // today's StoneScriptPHP: the tenant as a uuid, or the schema's own database
    let adm = "/admin/database/create";
    let tenant = |body: Value| Payload::Json(body);
    let j = tenant(json!({"platform": p2, "schema_name": "store", "uuid": "u-1", "dry_run": true}));
    c.expect(&gw, "POST", adm, j, 200).await;
    let j = tenant(json!({"platform": p2, "schema_name": "store", "uuid": "u-1"}));
    c.expect(&gw, "POST", adm, j, 201).await;
    let j = tenant(json!({"platform": p2, "schema_name": "store", "database_id": "u-1"}));
    c.expect(&gw, "POST", adm, j, 409).await;
    let j = tenant(json!({"platform": p2, "schema_name": "nope"}));
    c.expect(&gw, "POST", adm, j, 404).await;
    let j = tenant(json!({"platform": p2, "schema_name": "store", "uuid": "u_1"}));
    c.expect(&gw, "POST", adm, j, 400).await;
    c.expect(&gw, "POST", adm, big_json(70_000), 413).await;
    // the platform's token: the same one until rotated
    let tok = "/admin/platform-token";
    c.expect(&gw, "POST", tok, tenant(json!({"platform": p2})), 201)
        .await;
    c.expect(
        &gw,
        "POST",
        tok,
        tenant(json!({"platform": p2, "rotate": true})),
        201,
    )
    .await;
    let j = tenant(json!({"platform": new_platform()}));
    c.expect(&gw, "POST", tok, j, 404).await;
    let j = tenant(json!({"platform": p2, "again": true}));
    c.expect(&gw, "POST", tok, j, 400).await;
    c.expect(&gw, "POST", tok, big_json(70_000), 413).await;
    // a name held by a database the catalog does not record
    cluster()
        .connect("postgres")
        .await
        .batch_execute(&format!("CREATE DATABASE {p2}_store_byhand"))
        .await
        .unwrap();
    let j = tenant(json!({"platform": p2, "schema_name": "store", "uuid": "byhand"}));
    c.expect(&gw, "POST", adm, j, 422).await;
    let creating = format!("{p2}_store_busy");
    gw.catalog()
        .await
        .execute(
            "INSERT INTO databases (name, platform, kind, schema_name, database_id, owner_role, state, lease)
             VALUES ($1, $2, 'v2', 'store', 'busy', $3, 'creating', 0)",
            &[&creating, &p2, &format!("sdg_{p2}_owner")],
        )
        .await
        .unwrap();
    let j = tenant(json!({"platform": p2, "schema_name": "store", "uuid": "busy"}));
    c.expect(&gw, "POST", adm, j, 503).await;
    gw.catalog()
        .await
        .execute("DELETE FROM databases WHERE name = $1", &[&creating])
        .await
        .unwrap();

    let mig = |schema: &str| Payload::Json(json!({"platform": p2, "schema_name": schema}));
    c.expect(&gw, "POST", "/v2/migrate", mig("store"), 200)
        .await;
    let ndjson = [("accept", "application/x-ndjson")];
    let (s, b) = c
        .send(&gw, "POST", "/v2/migrate", None, mig("store"), &ndjson)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        b.as_str().unwrap().lines().count(),
        3,
        "two databases (d1 and the uuid u-1's), then the summary: {b}"
    );
    c.expect(&gw, "POST", "/v2/migrate", mig("nope"), 404).await;
    // the stored versions of a schema
    let versions = |schema: &str| format!("/platform/{p2}/schemas/{schema}/versions");
    let b = c
        .expect(&gw, "GET", &versions("store"), Payload::None, 200)
        .await;
    assert_eq!(b["versions"][0]["version"], 1, "{b}");
    c.expect(&gw, "GET", &versions("nope"), Payload::None, 404)
        .await;
    c.expect(&gw, "GET", &versions("No-Such"), Payload::None, 400)
        .await;

    // /v2/migrate-all: a job of store's two tenant databases. A job held by
    // a live lease (this test's session) owns the slot: 409 names it.
    let all = "/v2/migrate-all";
    let held = gw.catalog().await;
    let lease = 2_000_000_000i32;
    held.execute(
        "SELECT pg_advisory_lock($1, $2)",
        &[&stonescriptdb_shared::catalog::LEASE_CLASS, &lease],
    )
    .await
    .unwrap();
    let running: String = held
        .query_one(
            "INSERT INTO jobs (platform, schema_name, status, total, lease, started_at)
             VALUES ($1, 'store', 'running', 2, $2, now()) RETURNING id",
            &[&p2, &lease],
        )
        .await
        .unwrap()
        .get(0);
    let b = c.expect(&gw, "POST", all, mig("store"), 409).await;
    assert_eq!(b["job_id"], running.as_str(), "{b}");
    let b = c
        .expect(&gw, "GET", &format!("{all}/{running}"), Payload::None, 200)
        .await;
    assert_eq!(b["status"], "running", "{b}");
    // its migrator gone (the lease free): interrupted, and the slot free
    held.execute(
        "SELECT pg_advisory_unlock($1, $2)",
        &[&stonescriptdb_shared::catalog::LEASE_CLASS, &lease],
    )
    .await
    .unwrap();
    let b = c
        .expect(&gw, "GET", &format!("{all}/{running}"), Payload::None, 200)
        .await;
    assert_eq!(b["status"], "interrupted", "{b}");
    let b = c.expect(&gw, "POST", all, mig("store"), 202).await;
    let job = format!("{all}/{}", b["job_id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let b = c.expect(&gw, "GET", &job, Payload::None, 200).await;
        if b["status"] != "queued" && b["status"] != "running" {
            assert_eq!(b["status"], "completed", "{b}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{b}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    c.expect(
        &gw,
        "GET",
        &format!("{all}/no-such-job"),
        Payload::None,
        404,
    )
    .await;
    c.expect(&gw, "POST", all, mig("nope"), 404).await;
    let f = form(&[("schema_name", "solo")], Some(archive()));
    c.expect(&gw, "POST", &up, f, 201).await;
    c.expect(&gw, "POST", all, mig("solo"), 204).await;
    let j = Payload::Json(json!({"platform": p2, "schema_name": "store", "dry_run": true}));
    c.expect(&gw, "POST", all, j, 400).await;
    c.expect(&gw, "POST", all, big_json(70_000), 413).await;
    let j = Payload::Json(json!({"platform": p2, "schema_name": "store", "canary_first": true}));
    c.expect(&gw, "POST", "/v2/migrate", j, 400).await;
    c.expect(&gw, "POST", "/v2/migrate", big_json(70_000), 413)
        .await;
    let f = form(&[("schema_name", "store")], Some(broken().tar_gz()));
    c.expect(&gw, "POST", &up, f, 201).await;
    c.expect(&gw, "POST", "/v2/migrate", mig("store"), 409)
        .await;

    // ---- /call
    let call = |f: &str, extra: Value| {
        let mut body = json!({"platform": p1, "function": f});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Payload::Json(body)
    };
    let (s, b) = c
        .send(&gw, "POST", "/call", None, call("ping", json!({})), none)
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = c
        .send(
            &gw,
            "POST",
            "/call",
            None,
            call("ping", json!({"tenant_id": 1, "params": []})),
            none,
        )
        .await;
    assert_eq!(s, 404, "no tenant 1");
    let (s, _) = c
        .send(
            &gw,
            "POST",
            "/call",
            None,
            call("ping", json!({"tenant_id": "t1"})),
            none,
        )
        .await;
    assert_eq!(s, 200);
    c.expect(
        &gw,
        "POST",
        "/call",
        call("ping", json!({"param": []})),
        400,
    )
    .await;
    c.expect(&gw, "POST", "/call", call("no_such_fn", json!({})), 404)
        .await;
    let b = c
        .expect(&gw, "POST", "/call", call("tidy_up", json!({})), 400)
        .await;
    assert_eq!(b["error"], "not_callable", "{b}");
    c.expect(&gw, "POST", "/call", call("boom", json!({})), 500)
        .await;
    c.expect(&gw, "POST", "/call", call("too_slow", json!({})), 504)
        .await;
    let big = Payload::Raw("application/json", vec![b' '; 1024 * 1024 + 10]);
    c.expect(&gw, "POST", "/call", big, 413).await;
    let plain = Payload::Raw("text/plain", br#"{"platform":"a","function":"f"}"#.to_vec());
    c.expect(&gw, "POST", "/call", plain, 415).await;

    c.expect(&gw, "GET", "/health", Payload::None, 200).await;
    c.expect(&gw, "GET", "/health/live", Payload::None, 200)
        .await;
    c.expect(&gw, "GET", "/health/ready", Payload::None, 200)
        .await;
    c.expect(&gw, "GET", "/metrics", Payload::None, 200).await;
    c.expect(&gw, "GET", "/openapi.json", Payload::None, 200)
        .await;
    // ---- every route: a query parameter it does not define
    for route in routes::ROUTES {
        let path = format!("{}?nope=1", route.pattern.replace("{platform}", &p2));
        let b = c
            .expect(&gw, route.methods[0], &path, Payload::None, 400)
            .await;
        assert!(b["message"].as_str().unwrap().contains("\"nope\""), "{b}");
    }

    // ---- every route: a method it does not take
    for route in routes::ROUTES {
        let path = route.pattern.replace("{platform}", &p2);
        let method = if route.allows("DELETE") {
            "PUT"
        } else {
            "DELETE"
        };
        c.expect(&gw, method, &path, Payload::None, 405).await;
    }

    // ---- tokens configured, none sent: 401 where a token is asked for
    let tokens_gw = Gateway::start(&[
        ("ADMIN_TOKEN", ADMIN),
        ("DEPLOY_TOKENS", &format!("{p1}:{DEPLOY}")),
        ("CALL_TOKENS", &format!("{p1}:{CALL}")),
    ]);
    let outside = Gateway::start(&[("ALLOWED_NETWORKS", "10.0.0.0/8")]);
    for route in routes::ROUTES {
        let path = route.pattern.replace("{platform}", &p1);
        let method = route.methods[0];
        let payload = || {
            if route.pattern == "/call" {
                Payload::Json(json!({"platform": p1, "function": "ping"}))
            } else if method == "POST" {
                Payload::Json(json!({"platform": p1}))
            } else {
                Payload::None
            }
        };
        let asks_token = !matches!(
            route.pattern,
            "/health" | "/health/live" | "/health/ready" | "/openapi.json"
        );
        let (s, b) = c
            .send(&tokens_gw, method, &path, None, payload(), none)
            .await;
        if asks_token {
            assert_eq!(s, 401, "{path}: {b}");
        }
        let (s, b) = c.send(&outside, method, &path, None, payload(), none).await;
        assert_eq!(s, 403, "{path}: {b}");
    }
    drop(outside);

    // ---- another platform's deploy token; a deploy token on an operator route
    let q = format!("/admin/databases?platform={p2}");
    let (s, _) = c
        .send(&tokens_gw, "GET", &q, Some(DEPLOY), Payload::None, none)
        .await;
    assert_eq!(s, 403);
    let j = Payload::Json(json!({ "database": main1 }));
    let (s, _) = c
        .send(&tokens_gw, "POST", "/admin/refresh", Some(DEPLOY), j, none)
        .await;
    assert_eq!(s, 403);
    drop(tokens_gw);

    // ---- no migrator: 503 on every schema route, /call unharmed
    gw.kill_migrator();
    for route in routes::ROUTES
        .iter()
        .filter(|r| r.served() == routes::Served::Migrator)
    {
        let path = route.pattern.replace("{platform}", &p2);
        let (s, b) = c
            .send(&gw, route.methods[0], &path, None, Payload::None, none)
            .await;
        assert_eq!(
            (s, b["error"].as_str()),
            (503, Some("migrator_unavailable")),
            "{path}"
        );
    }
    c.expect(&gw, "POST", "/call", call("ping", json!({})), 200)
        .await;
    let h = c.expect(&gw, "GET", "/health", Payload::None, 200).await;
    assert_eq!(h["status"], "degraded", "{h}");
    c.expect(&gw, "GET", "/health/ready", Payload::None, 200)
        .await;
    gw.restart_migrator();

    // ---- PostgreSQL refuses the platform's connections: /call answers 503
    let admin = cluster().connect("postgres").await;
    let app_role = names::platform_roles(&p1).unwrap().1;
    admin
        .batch_execute(&format!("ALTER ROLE {app_role} CONNECTION LIMIT 0"))
        .await
        .unwrap();
    let (s, b) = c
        .send(
            &gw,
            "POST",
            "/call",
            None,
            call("ping", json!({"tenant_id": "t2"})),
            none,
        )
        .await;
    admin
        .batch_execute(&format!("ALTER ROLE {app_role} CONNECTION LIMIT -1"))
        .await
        .unwrap();
    assert_eq!(s, 503, "{b}");

    // ---- PostgreSQL down: /health answers 503 (last: it stops the cluster)
    let out = cluster().pg_ctl("stop", &["-m", "fast"]);
    assert!(out.status.success(), "{out:?}");
    let (s, b) = c
        .send(&gw, "GET", "/health", None, Payload::None, none)
        .await;
    let (sr, r) = c
        .send(&gw, "GET", "/health/ready", None, Payload::None, none)
        .await;
    let (sl, _) = c
        .send(&gw, "GET", "/health/live", None, Payload::None, none)
        .await;
    let out = cluster().pg_ctl("start", &["-w"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!((s, b["status"].as_str()), (503, Some("unhealthy")), "{b}");
    assert_eq!((sr, r["status"].as_str()), (503, Some("not_ready")), "{r}");
    assert_eq!(sl, 200);

    // ---- every documented status was seen, and nothing else
    let mut missing = Vec::new();
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let documented: BTreeSet<u16> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            let seen = c
                .seen
                .get(&(method.clone(), path.clone()))
                .cloned()
                .unwrap_or_default();
            let not_seen: Vec<_> = documented.difference(&seen).collect();
            if !not_seen.is_empty() {
                missing.push(format!(
                    "{method} {path}: {not_seen:?} documented, never answered"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");

    // ---- and the router serves that document
    let (s, served) = gw.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(
        served == c.doc,
        "the router serves another document than the code generates: rebuild it"
    );
}
