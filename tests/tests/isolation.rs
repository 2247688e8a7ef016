//! Tenant isolation inside PostgreSQL: each platform's databases belong to
//! the gateway's role and give the platform's own role its rights (it owns
//! everything inside), its uploaded SQL runs as that role (never as
//! superuser), and `/call` connects as the platform's login role.

use serde_json::json;
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir};

fn schema() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set("tables/notes.sql", "CREATE TABLE notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL);")
        .set("functions/whoami.sql", "CREATE OR REPLACE FUNCTION whoami() RETURNS TEXT LANGUAGE sql AS $$ SELECT current_user::text $$;")
        .set("functions/read_host.sql", "CREATE OR REPLACE FUNCTION read_host() RETURNS TEXT LANGUAGE sql AS $$ SELECT pg_read_file('/etc/hostname') $$;")
        .set("functions/add_note.sql", "CREATE OR REPLACE FUNCTION add_note(p TEXT) RETURNS INT LANGUAGE sql AS $$ INSERT INTO notes (body) VALUES (p) RETURNING id $$;");
    s
}

#[tokio::test]
async fn platforms_get_their_own_roles_and_cannot_escape_them() {
    let gw = Gateway::start(&[]);
    let (a, b) = (new_platform(), new_platform());
    assert_eq!(gw.register(&a, None, &schema()).await.0, 200);
    assert_eq!(gw.register(&b, None, &schema()).await.0, 200);
    let admin = cluster().connect("postgres").await;

    // databases belong to the gateway's role; the platform's roles may
    // connect, another platform's (and PUBLIC) may not
    let row = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text,
                    has_database_privilege($2, datname, 'CONNECT'),
                    has_database_privilege($3, datname, 'CONNECT')
             FROM pg_database WHERE datname = $1",
            &[
                &format!("{a}_main"),
                &format!("sdg_{a}_app"),
                &format!("sdg_{b}_app"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), cluster().user);
    assert!(row.get::<_, bool>(1), "the platform's app role may connect");
    assert!(!row.get::<_, bool>(2), "another platform's role may not");
    let supers: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 AND (rolsuper OR rolcreaterole OR rolcreatedb)", &[&format!("sdg_{a}_%")])
        .await
        .unwrap()
        .get(0);
    assert_eq!(supers, 0);

    // /call runs as the platform's login role
    let (s, body) = gw.call(&a, "whoami", json!([])).await;
    assert_eq!(
        (s, body["rows"][0]["whoami"].clone()),
        (200, json!(format!("sdg_{a}_app"))),
        "{body}"
    );
    assert_eq!(gw.call(&a, "add_note", json!(["hi"])).await.0, 200);
    let (s, body) = gw.call(&a, "read_host", json!([])).await;
    assert_eq!(
        (s, body["sqlstate"].clone()),
        (500, json!("42501")),
        "superuser-only functions are refused: {body}"
    );

    // uploaded SQL runs as the owner role: no COPY ... TO PROGRAM, no server files
    for (file, sql) in [
        (
            "migrations/001_program.sql",
            "COPY (SELECT 1) TO PROGRAM 'touch /tmp/sdg-pwned';",
        ),
        (
            "migrations/001_files.sql",
            "CREATE TABLE stolen AS SELECT pg_read_file('/etc/hostname') AS f;",
        ),
        // (written plainly, the reader refuses it first: platform_sql.rs;
        // dynamic SQL is seen only by PostgreSQL's privileges)
        (
            "migrations/001_role.sql",
            "DO $$ BEGIN EXECUTE 'ALTER ROLE CURRENT_USER SUPERUSER'; END $$;",
        ),
    ] {
        let mut s2 = schema();
        s2.set(file, sql);
        let (s, body) = gw.migrate(&a, None, &s2, false).await;
        assert_eq!(
            (s, body["sqlstate"].clone()),
            (409, json!("42501")),
            "{file}: {body}"
        );
    }
    assert!(!std::path::Path::new("/tmp/sdg-pwned").exists());

    // another platform's credentials do not open this platform's database
    let catalog = gw.catalog().await;
    let creds = |p: String| {
        let catalog = &catalog;
        async move {
            let r = catalog
                .query_one(
                    "SELECT app_role, app_password, owner_password FROM platforms WHERE name = $1",
                    &[&p],
                )
                .await
                .unwrap();
            (
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
            )
        }
    };
    let (b_role, b_password, _) = creds(b.clone()).await;
    let mut cfg = cluster().config(&format!("{a}_main"));
    cfg.user(&b_role).password(&b_password);
    let err = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("connecting to another platform's database must fail");
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");

    // the role passwords live in the catalog, which no platform role may
    // open; they are never logged
    let (a_role, a_password, a_owner_password) = creds(a.clone()).await;
    let mut cfg = cluster().config(&gw.catalog_db());
    cfg.user(&a_role).password(&a_password);
    let err = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("a platform role must not open the control catalog");
    assert_eq!(err.code().map(|c| c.code()), Some("42501"), "{err}");
    let log = gw.log();
    assert!(!log.contains(&a_password));
    assert!(!log.contains(&a_owner_password));
}

#[tokio::test]
async fn v2_databases_and_templates_give_the_platform_role_its_rights() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    let (s, b) = gw
        .upload(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "tenant_db")],
            schema().tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    for id in ["a1", "a2"] {
        let (s, b) = gw
            .post(
                "/database/create",
                &json!({"platform": p, "schema_name": "tenant_db", "database_id": id}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let db = format!("{p}_tenant_db_a2");
    let admin = cluster().connect("postgres").await;
    let row = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text, has_database_privilege($2, datname, 'CREATE')
             FROM pg_database WHERE datname = $1",
            &[&db, &format!("sdg_{p}_owner")],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), cluster().user);
    assert!(
        row.get::<_, bool>(1),
        "the platform's role keeps CREATE on its clone"
    );
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "database": db, "function": "whoami"}),
        )
        .await;
    assert_eq!(
        (s, b["rows"][0]["whoami"].clone()),
        (200, json!(format!("sdg_{p}_app"))),
        "{b}"
    );
    let (s, b) = gw
        .post(
            "/v2/migrate",
            &json!({"platform": p, "schema_name": "tenant_db", "force": true}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}
