//! What platform SQL can do, read as a hostile platform developer with a
//! valid token would read it: uploaded SQL stays inside its deployment's
//! transaction (the reader refuses transaction control, session identity
//! and database- or cluster-level statements; each statement is sent on
//! its own), platforms get trusted extensions only, databases belong to the
//! gateway, and no platform creates under another's name prefix.

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, database_exists, new_platform, Gateway, SchemaDir};

fn base() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/notes.sql",
        "CREATE TABLE notes (id serial PRIMARY KEY, body text);",
    )
    .set(
        "functions/ping.sql",
        "CREATE OR REPLACE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'pong' $$;",
    );
    s
}

/// A gateway, and a new platform registered with [`base`].
async fn registered() -> (Gateway, String) {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (st, b) = gw.register(&p, None, &base()).await;
    assert_eq!(st, 200, "{b}");
    (gw, p)
}

/// [`base`] with one more file.
fn with(path: &str, sql: &str) -> SchemaDir {
    let mut s = base();
    s.set(path, sql);
    s
}

async fn table_exists(db: &str, table: &str) -> bool {
    let c = cluster().connect(db).await;
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

async fn applied(db: &str) -> Vec<String> {
    let c = cluster().connect(db).await;
    c.query(
        "SELECT filename FROM _stonescriptdb_gateway_migrations ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn message(b: &Value) -> String {
    b["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn transaction_control_in_a_migration_is_refused_before_anything_runs_dry_run_or_not() {
    let (gw, p) = registered().await;
    let db = format!("{p}_main");
    let s = with(
        "migrations/002_escape.sql",
        "CREATE TABLE dry_marker (id int);\nINSERT INTO dry_marker VALUES (1);\nCOMMIT;\nCREATE TABLE dry_marker2 (id int);",
    );
    for dry in ["true", "false"] {
        let (st, b) = gw
            .upload(
                "/migrate",
                &[("platform", p.as_str()), ("dry_run", dry)],
                s.tar_gz(),
            )
            .await;
        assert_eq!(
            (st, b["error"].clone()),
            (400, json!("invalid_request")),
            "{b}"
        );
        let m = message(&b);
        assert!(
            m.contains("migrations/002_escape.sql statement 3 (line 3): COMMIT: transaction control is not allowed"),
            "{m}"
        );
        assert!(
            !table_exists(&db, "dry_marker").await,
            "dry_run={dry}: nothing ran"
        );
        assert!(!table_exists(&db, "dry_marker2").await);
        assert!(applied(&db).await.is_empty(), "nothing recorded");
    }
    // every other way out of the transaction or the role, in a pending migration
    for (sql, what) in [
        ("ROLLBACK;", "ROLLBACK: transaction control"),
        ("SAVEPOINT a;", "SAVEPOINT: transaction control"),
        (
            "PREPARE TRANSACTION 'x';",
            "PREPARE TRANSACTION: transaction control",
        ),
        (
            "SET ROLE postgres;",
            "SET ROLE: changing the session's role",
        ),
        (
            "SET SESSION AUTHORIZATION postgres;",
            "SET SESSION AUTHORIZATION: changing",
        ),
        (
            "ALTER SYSTEM SET fsync = off;",
            "ALTER SYSTEM: database- and cluster-level",
        ),
        (
            "CREATE ROLE evil SUPERUSER;",
            "CREATE ROLE: database- and cluster-level",
        ),
        (
            "ALTER ROLE CURRENT_USER PASSWORD 'known';",
            "ALTER ROLE: database-",
        ),
        ("LOAD 'auto_explain';", "LOAD: database-"),
    ] {
        let s = with("migrations/003_x.sql", &format!("SELECT 1;\n{sql}"));
        let (st, b) = gw.migrate(&p, None, &s, false).await;
        assert_eq!(st, 400, "{sql}: {b}");
        assert!(
            message(&b).contains(&format!(
                "migrations/003_x.sql statement 2 (line 2): {what}"
            )),
            "{sql}: {b}"
        );
    }
    // function files and seeders: refused at upload, whatever the database
    for (path, sql) in [
        (
            "functions/ping.sql",
            "CREATE OR REPLACE FUNCTION ping() RETURNS text LANGUAGE sql AS $$ SELECT 'pong' $$;\nCOMMIT;",
        ),
        ("seeders/notes.sql", "INSERT INTO notes (body) VALUES ('a');\nEND;"),
    ] {
        let (st, b) = gw.migrate(&p, None, &with(path, sql), false).await;
        assert_eq!(st, 400, "{path}: {b}");
        assert!(message(&b).contains(&format!("{path} statement 2 (line 2)")), "{b}");
    }
    let (st, b) = gw.call(&p, "ping", json!([])).await;
    assert_eq!((st, b["rows"][0]["ping"].clone()), (200, json!("pong")));
}

#[tokio::test]
async fn a_statement_the_reader_misses_cannot_smuggle_a_second_one() {
    // `begin` in a routine's header makes the splitter wait for an `end`,
    // so the rest of the file reaches PostgreSQL as one text; sent through
    // the extended protocol, PostgreSQL refuses a second statement in it.
    let (gw, p) = registered().await;
    let s = with(
        "functions/sneaky.sql",
        "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql SET search_path = begin AS 'SELECT 1';\nCOMMIT;\nCREATE TABLE smuggled (id int);",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 409, "{b}");
    assert!(
        b["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot insert multiple commands into a prepared statement"),
        "{b}"
    );
    assert!(!table_exists(&format!("{p}_main"), "smuggled").await);
}

#[tokio::test]
async fn a_whole_file_wrapper_runs_without_it_and_applied_migrations_are_not_judged_again() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = base();
    s.set(
        "migrations/001_psql.sql",
        "BEGIN;\nCREATE TABLE wrapped (id int);\nINSERT INTO wrapped VALUES (1);\nCOMMIT;\n",
    );
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    let notes = b["databases"][0]["notes"].to_string();
    assert!(
        notes.contains("migrations/001_psql.sql: its whole-file transaction wrapper (statements 1 and 4) was not run"),
        "{b}"
    );
    let db = format!("{p}_main");
    assert!(table_exists(&db, "wrapped").await);
    assert_eq!(applied(&db).await, ["001_psql.sql"]);

    // a migration with transaction control applied by an older gateway
    // (recorded as applied) does not block later deployments. Its text is
    // written in normalized form, so its checksum is the sha256 of it.
    let old = "create table legacy(id int);commit;select 1";
    s.set("migrations/000_legacy.sql", old);
    let c = cluster().connect(&db).await;
    c.execute(
        "INSERT INTO _stonescriptdb_gateway_migrations (filename, checksum) VALUES ('000_legacy.sql', $1)",
        &[&sha256(old)],
    )
    .await
    .unwrap();
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["databases"][0]["migrations_skipped"], json!(2), "{b}");
}

fn sha256(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn extensions_of(db: &str) -> Vec<(String, String)> {
    let c = cluster().connect(db).await;
    c.query(
        "SELECT extname::text, pg_get_userbyid(extowner)::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test]
async fn platforms_get_trusted_extensions_and_only_those_the_operator_allows() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let db = format!("{p}_main");
    // dblink is not trusted: refused by name, before anything is created
    let s = with("extensions/dblink.sql", "-- connections from the server\n");
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 400, "{b}");
    let m = message(&b);
    assert!(
        m.contains("extensions/dblink.sql: extension \"dblink\" is not allowed")
            && m.contains("EXTENSIONS_ALLOWED"),
        "{m}"
    );
    assert!(
        !database_exists(&db).await,
        "a refused registration creates nothing"
    );

    // trusted ones are installed by the platform's own role
    let s = with("extensions/pgcrypto.sql", "");
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        extensions_of(&db).await,
        [("pgcrypto".to_string(), format!("sdg_{p}_owner"))]
    );

    // in a pending migration, also through CASCADE
    for (sql, ext) in [
        ("CREATE EXTENSION dblink;", "dblink"),
        (
            "CREATE EXTENSION IF NOT EXISTS postgres_fdw CASCADE;",
            "postgres_fdw",
        ),
        (
            "ALTER EXTENSION pgcrypto UPDATE;\nCREATE EXTENSION file_fdw;",
            "file_fdw",
        ),
    ] {
        let mut s2 = s.clone();
        s2.set("migrations/001_ext.sql", sql);
        let (st, b) = gw.migrate(&p, None, &s2, false).await;
        assert_eq!(st, 400, "{sql}: {b}");
        assert!(
            message(&b).contains("migrations/001_ext.sql statement")
                && message(&b).contains(&format!("extension \"{ext}\" is not allowed")),
            "{sql}: {b}"
        );
    }
    // a trusted one is fine in a migration too (earthdistance is not
    // trusted; CASCADE judges what it would install: cube)
    let mut s3 = s.clone();
    s3.set(
        "migrations/001_ext.sql",
        "CREATE EXTENSION earthdistance CASCADE;",
    );
    let (st, b) = gw.migrate(&p, None, &s3, false).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        message(&b).contains("\"earthdistance\" is not allowed"),
        "{b}"
    );
    s3.set("migrations/001_ext.sql", "CREATE EXTENSION hstore CASCADE;");
    let (st, b) = gw.migrate(&p, None, &s3, false).await;
    assert_eq!(st, 200, "{b}");
    let exts: Vec<String> = extensions_of(&db).await.into_iter().map(|e| e.0).collect();
    assert_eq!(exts, ["hstore", "pgcrypto"]);

    // a v2 schema version declaring one is refused at upload
    let v2 = gw.register_platform().await;
    let s4 = with("extensions/dblink.sql", "");
    let (st, b) = gw
        .upload(
            &format!("/platform/{v2}/schema"),
            &[("schema_name", "tenant_db")],
            s4.tar_gz(),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    assert!(message(&b).contains("\"dblink\" is not allowed"), "{b}");
}

#[tokio::test]
async fn an_extension_the_operator_allows_is_installed_by_the_gateway() {
    let gw = Gateway::start(&[("EXTENSIONS_ALLOWED", "dblink")]);
    let p = new_platform();
    let (st, b) = gw
        .register(&p, None, &with("extensions/dblink.sql", ""))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        extensions_of(&format!("{p}_main")).await,
        [("dblink".to_string(), cluster().user.clone())]
    );
}

/// The platform's owner role and its password, from the control catalog.
async fn owner_login(gw: &Gateway, platform: &str) -> (String, String) {
    let c = gw.catalog().await;
    let r = c
        .query_one(
            "SELECT owner_role, owner_password FROM platforms WHERE name = $1",
            &[&platform],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// Database owner, whether `role` has CONNECT and CREATE, whether PUBLIC
/// may connect, and the owner of its public schema.
async fn rights(db: &str, role: &str) -> (String, bool, bool, bool, String) {
    let admin = cluster().connect("postgres").await;
    let r = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text, has_database_privilege($2, datname, 'CONNECT'),
                    has_database_privilege($2, datname, 'CREATE'),
                    NOT coalesce(aclcontains(datacl, makeaclitem(0, datdba, 'CONNECT', false)), true)
             FROM pg_database WHERE datname = $1",
            &[&db, &role],
        )
        .await
        .unwrap();
    let inside = cluster().connect(db).await;
    let public_owner: String = inside
        .query_one(
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    (r.get(0), r.get(1), r.get(2), r.get(3), public_owner)
}

#[tokio::test]
async fn databases_belong_to_the_gateway_so_platform_sql_cannot_drop_or_alter_them() {
    let (gw, p) = registered().await;
    assert_eq!(gw.register(&p, Some("t2"), &base()).await.0, 200);
    let (main, t2) = (format!("{p}_main"), format!("{p}_t2"));
    let (role, password) = owner_login(&gw, &p).await;
    let (owner, connect, create, public, schema_owner) = rights(&t2, &role).await;
    assert_eq!(owner, cluster().user);
    assert!(
        connect && create,
        "the platform's role keeps CONNECT and CREATE"
    );
    assert!(public, "PUBLIC may not connect (no ACL entry)");
    assert_eq!(
        schema_owner, role,
        "the platform's role owns the public schema"
    );

    // the reader refuses it...
    let s = with("migrations/001_drop.sql", &format!("DROP DATABASE {t2};"));
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    // (a migration over the platform answers per database)
    assert_eq!(st, 409, "{b}");
    for d in b["details"]["databases"].as_array().unwrap() {
        assert_eq!(d["error"]["error"], json!("invalid_request"), "{b}");
        assert!(
            d["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("DROP DATABASE: database- and cluster-level"),
            "{b}"
        );
    }
    // ...and so does PostgreSQL, for SQL the reader cannot see
    let s = with(
        "migrations/001_dynamic.sql",
        &format!("DO $$ BEGIN EXECUTE 'ALTER DATABASE {t2} RENAME TO gone'; END $$;"),
    );
    let (st, b) = gw.migrate(&p, Some("t2"), &s, false).await;
    assert_eq!((st, b["sqlstate"].clone()), (409, json!("42501")), "{b}");
    assert!(
        b["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("must be owner of database"),
        "{b}"
    );
    // the platform's own login, straight to PostgreSQL, cannot either
    let mut cfg = cluster().config(&main);
    cfg.user(&role).password(password.as_str());
    let (c, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    for sql in [
        format!("DROP DATABASE {t2}"),
        format!("ALTER DATABASE {t2} SET work_mem = '1GB'"),
        format!("ALTER DATABASE {t2} CONNECTION LIMIT 0"),
    ] {
        let e = c.batch_execute(&sql).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{sql}: {e}");
    }
    assert!(database_exists(&t2).await);
    let (st, _) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": "t2", "function": "ping"}),
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_deferred_statement_that_fails_leaves_its_migration_pending_and_only_it_is_retried() {
    let (gw, p) = registered().await;
    let db = format!("{p}_main");
    let mut s = with(
        "migrations/001_index.sql",
        "INSERT INTO notes (body) VALUES ('once');\nCREATE INDEX CONCURRENTLY notes_later ON later (id);",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 409, "{b}");
    assert!(
        message(&b).contains("stays recorded with it pending"),
        "{b}"
    );
    let c = cluster().connect(&db).await;
    let pending: Vec<i32> = c
        .query_one(
            "SELECT deferred_pending FROM _stonescriptdb_gateway_migrations WHERE filename = '001_index.sql'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, [2]);
    // the next deployment creates the table; only the index runs again
    s.set("tables/later.sql", "CREATE TABLE later (id int);");
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["databases"][0]["deferred_statements"],
        json!(["migrations/001_index.sql#2"]),
        "{b}"
    );
    let rows: i64 = c
        .query_one("SELECT count(*) FROM notes WHERE body = 'once'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the migration's other statements ran once");
    assert!(table_exists(&db, "notes_later").await);
    let pending: Vec<i32> = c
        .query_one(
            "SELECT deferred_pending FROM _stonescriptdb_gateway_migrations WHERE filename = '001_index.sql'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(pending.is_empty());
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(
        (st, b["databases"][0]["status"].clone()),
        (200, json!("unchanged")),
        "{b}"
    );
}

#[tokio::test]
async fn a_platform_cannot_take_another_platforms_names() {
    const ADMIN: &str = "admin-token-0123456789abcdef";
    let shop = new_platform();
    let shop_admin = format!("{shop}_admin");
    let newcomer = format!("{shop}_late");
    let deploy =
        format!("{shop}:deploy-token-shop-0123456789,{newcomer}:deploy-token-late-0123456789");
    let gw = Gateway::start(&[("ADMIN_TOKEN", ADMIN), ("DEPLOY_TOKENS", &deploy)]);
    let upload = |platform: String, tenant: Option<&'static str>, token: &'static str| {
        let url = format!("{}/register", gw.url);
        let archive = base().tar_gz();
        async move {
            let mut form = reqwest::multipart::Form::new().text("platform", platform);
            if let Some(t) = tenant {
                form = form.text("tenant_id", t);
            }
            form = form.part(
                "schema",
                reqwest::multipart::Part::bytes(archive).file_name("schema.tar.gz"),
            );
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(
        upload(shop.clone(), None, "deploy-token-shop-0123456789")
            .await
            .0,
        200
    );
    assert_eq!(upload(shop_admin.clone(), None, ADMIN).await.0, 200);
    // `shop` + tenant `admin_t9` is `shop_admin`'s tenant `t9`: refused
    let (st, b) = upload(
        shop.clone(),
        Some("admin_t9"),
        "deploy-token-shop-0123456789",
    )
    .await;
    assert_eq!(
        (st, b["error"].clone()),
        (409, json!("name_reserved")),
        "{b}"
    );
    assert!(
        !message(&b).contains(&format!("platform {shop_admin}")),
        "the other platform is not named: {b}"
    );
    assert!(!database_exists(&format!("{shop}_admin_t9")).await);
    let (st, b) = upload(shop_admin.clone(), Some("t9"), ADMIN).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = gw
        .post(
            "/call",
            &json!({"platform": shop_admin, "tenant_id": "t9", "function": "ping"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    // a v2 schema that would put databases under shop_admin's names
    let (st, b) = send_json(&gw, "/platform/register", ADMIN, json!({"platform": shop})).await;
    assert_eq!(st, 201, "{b}");
    // (`admin`: every database would be shop_admin's; `admin_x`: so would
    // `shop_admin_x_…`; `adm`: `shop_adm_…` is nobody's)
    for (schema, expected) in [("admin", 409), ("admin_x", 409), ("adm", 201)] {
        let form = reqwest::multipart::Form::new()
            .text("schema_name", schema)
            .part(
                "schema",
                reqwest::multipart::Part::bytes(base().tar_gz()).file_name("s.tar.gz"),
            );
        let r = reqwest::Client::new()
            .post(format!("{}/platform/{shop}/schema", gw.url))
            .bearer_auth(ADMIN)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), expected, "schema {schema}");
    }
    // registering `{shop}_late` (shop's name plus `_…`) needs the admin token
    let (st, b) = upload(newcomer.clone(), None, "deploy-token-late-0123456789").await;
    assert_eq!(st, 403, "{b}");
    assert!(message(&b).contains("needs the admin token"), "{b}");
    assert_eq!(upload(newcomer, None, ADMIN).await.0, 200);
}

async fn send_json(gw: &Gateway, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn cloned_and_adopted_databases_get_the_same_rights() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    let (st, b) = gw
        .upload(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "tenant_db")],
            base().tar_gz(),
        )
        .await;
    assert_eq!(st, 201, "{b}");
    for id in ["a1", "a2"] {
        let (st, b) = gw
            .post(
                "/database/create",
                &json!({"platform": p, "schema_name": "tenant_db", "database_id": id}),
            )
            .await;
        assert_eq!(st, 201, "{b}");
    }
    let role = format!("sdg_{p}_owner");
    let expected = (cluster().user.clone(), true, true, true, role.clone());
    assert_eq!(rights(&format!("{p}_tenant_db_a2"), &role).await, expected);

    // a database made by hand, then adopted
    let adopted = format!("{p}_legacy");
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!("CREATE DATABASE {adopted}"))
        .await
        .unwrap();
    gw.adopt(&p, &[&adopted]).await;
    assert_eq!(rights(&adopted, &role).await, expected);
}

#[tokio::test]
async fn what_an_older_version_made_gets_todays_rights_at_start_and_check_upgrade_says_so_first() {
    let (mut gw, p) = registered().await;
    let (db, owner, app) = (
        format!("{p}_main"),
        format!("sdg_{p}_owner"),
        format!("sdg_{p}_app"),
    );
    // as an older gateway left it: the database owned by the platform's
    // role, its public schema by the database's owner, no connection limit
    let admin = cluster().connect("postgres").await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} OWNER TO {owner}; REVOKE CREATE ON DATABASE {db} FROM {owner};
             ALTER ROLE {app} CONNECTION LIMIT -1"
        ))
        .await
        .unwrap();
    cluster()
        .connect(&db)
        .await
        .batch_execute("ALTER SCHEMA public OWNER TO pg_database_owner")
        .await
        .unwrap();
    // ...and a stored schema that declares an extension it may no longer have
    let old = with("extensions/dblink.sql", "");
    gw.catalog()
        .await
        .execute(
            "INSERT INTO v1_archives (platform, version, archive, archive_sha256, size)
             SELECT $2, max(version) + 1, $1, 'by-hand', 1 FROM v1_archives WHERE platform = $2",
            &[&old.tar_gz(), &p],
        )
        .await
        .unwrap();

    let out = std::process::Command::new(stonescriptdb_tests::binary("stonescriptdb-migrator"))
        .arg("--check-upgrade")
        .env_remove("DATABASE_URL")
        .envs(cluster().gateway_env())
        .env("DATA_DIR", &gw.data_dir.0)
        .env("CATALOG_DB", gw.catalog_db())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{report}");
    for line in [
        format!("database {db}: will belong to the gateway's role; {owner} keeps CONNECT, TEMPORARY, CREATE"),
        format!("role {app}: connection limit -1 -> 100"),
        format!("platform {p}: the next deployment of {db} will be refused: extensions/dblink.sql: extension \"dblink\" is not allowed"),
    ] {
        assert!(report.contains(&line), "missing {line:?} in\n{report}");
    }
    // nothing changed yet
    assert_eq!(rights(&db, &owner).await.0, owner);

    gw.restart_migrator();
    assert_eq!(
        rights(&db, &owner).await,
        (cluster().user.clone(), true, true, true, owner.clone())
    );
    let limit: i32 = admin
        .query_one(
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(limit, 100);
    let (st, b) = gw.call(&p, "ping", json!([])).await;
    assert_eq!(st, 200, "{b}");
    // the next deployment: refused while it declares dblink
    let (st, b) = gw.migrate(&p, None, &old, false).await;
    assert_eq!(st, 400, "{b}");
    assert!(message(&b).contains("\"dblink\" is not allowed"), "{b}");
    assert_eq!(gw.migrate(&p, None, &base(), false).await.0, 200);
}

/// The worst a platform could upload, each as a dry run and for real: a
/// 400 naming what is refused, and nothing changed either way.
#[tokio::test]
async fn hostile_uploads_are_refused_alike_in_dry_runs_and_real_runs() {
    let (gw, p) = registered().await;
    let db = format!("{p}_main");
    let victim = format!("{p}_victim");
    assert_eq!(gw.register(&p, Some("victim"), &base()).await.0, 200);
    let cases = [
        (
            "migrations/001_commit.sql",
            "CREATE TABLE before_commit (id int);\nCOMMIT;",
            "COMMIT: transaction control is not allowed",
        ),
        (
            "migrations/001_drop.sql",
            &*format!("DROP DATABASE {victim};"),
            "DROP DATABASE: database- and cluster-level",
        ),
        (
            "extensions/dblink.sql",
            "",
            "extension \"dblink\" is not allowed",
        ),
        (
            "functions/ping.sql",
            "CREATE OR REPLACE FUNCTON ping() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;",
            "not a CREATE FUNCTION, PROCEDURE or AGGREGATE header: misspelled?",
        ),
    ];
    for (path, sql, says) in cases {
        for dry in ["true", "false"] {
            let (st, b) = gw
                .upload(
                    "/migrate",
                    &[
                        ("platform", p.as_str()),
                        ("tenant_id", "victim"),
                        ("dry_run", dry),
                    ],
                    with(path, sql).tar_gz(),
                )
                .await;
            assert_eq!(st, 400, "{path} dry_run={dry}: {b}");
            assert!(message(&b).contains(says), "{path} dry_run={dry}: {b}");
            // ...and for a database that does not exist yet (a throwaway one)
            let (st, b) = gw
                .upload(
                    "/register",
                    &[
                        ("platform", p.as_str()),
                        ("tenant_id", "fresh"),
                        ("dry_run", dry),
                    ],
                    with(path, sql).tar_gz(),
                )
                .await;
            assert_eq!(st, 400, "{path} new database, dry_run={dry}: {b}");
            assert!(!database_exists(&format!("{p}_fresh")).await);
        }
    }
    assert!(database_exists(&victim).await);
    assert!(!table_exists(&victim, "before_commit").await);
    assert!(extensions_of(&victim).await.is_empty());
    let (st, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "tenant_id": "victim", "function": "ping"}),
        )
        .await;
    assert_eq!(
        (st, b["rows"][0]["ping"].clone()),
        (200, json!("pong")),
        "{b}"
    );
    assert!(applied(&db).await.is_empty());
}
