//! End-to-end tests replaying today's StoneScriptPHP CLI against the v2
//! API (docs/API.md, "`POST /v2/migrate`"): one database named by its
//! `uuid` (hyphens, or underscores as `gateway:migrate-tenant` sends it),
//! `allow` letting table changes through class by class, and
//! `skip_verification`.

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, Gateway, SchemaDir};

const UUID: &str = "0f1e-a2b3";
const OTHER: &str = "9c8d-7e6f";

fn schema(items: &str) -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set("tables/items.pssql", items)
        .set(
            "tables/roles.pssql",
            "CREATE TABLE roles (id INT PRIMARY KEY, name TEXT NOT NULL);",
        )
        .set(
            "seeders/roles.pssql",
            "INSERT INTO roles (id, name) VALUES (1, 'owner'), (2, 'staff');",
        )
        .set(
            "functions/item_count.pssql",
            "CREATE OR REPLACE FUNCTION item_count() RETURNS BIGINT LANGUAGE sql STABLE AS $$ SELECT count(*) FROM items $$;",
        );
    s
}

const V1: &str = "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, note TEXT, qty BIGINT);";
/// `note` dropped.
const V2: &str = "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, qty BIGINT);";
/// `qty` narrowed to integer.
const V3: &str = "CREATE TABLE items (id INT PRIMARY KEY, name TEXT, qty INT);";

async fn upload(gw: &Gateway, p: &str, items: &str) {
    let (s, b) = gw
        .upload_as(
            &format!("/platform/{p}/schema"),
            &[("schema_name", "tenant")],
            "schema",
            schema(items).tar_gz(),
        )
        .await;
    assert_eq!(s, 201, "{b}");
}

/// `POST /v2/migrate` as the CLI sends it.
async fn migrate(gw: &Gateway, p: &str, uuid: &str, allow: Value, extra: Value) -> (u16, Value) {
    let mut body = json!({"platform": p, "schema_name": "tenant", "uuid": uuid,
                          "force": false, "allow": allow, "skip_verification": false});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    gw.post("/v2/migrate", &body).await
}

/// The columns of `items` and their types, in order.
async fn columns(db: &str) -> Vec<(String, String)> {
    cluster()
        .connect(db)
        .await
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
              WHERE table_name = 'items' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_one_uuid_letting_table_changes_through_class_by_class() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    upload(&gw, &p, V1).await;
    for uuid in [UUID, OTHER] {
        let (s, b) = gw
            .post(
                "/admin/database/create",
                &json!({"platform": p, "schema_name": "tenant", "uuid": uuid}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let db = format!("{p}_tenant_0f1e_a2b3");
    let other = format!("{p}_tenant_9c8d_7e6f");
    cluster()
        .connect(&db)
        .await
        .batch_execute("INSERT INTO items VALUES (1, 'a', 'kept until dropped', 7)")
        .await
        .unwrap();

    // the dropped column, without allow: refused, naming its class
    upload(&gw, &p, V2).await;
    let (s, b) = migrate(&gw, &p, "0f1e_a2b3", json!([]), json!({})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("migration_failed")),
        "{b}"
    );
    let d = &b["details"];
    assert_eq!(strings(&d["databases_updated"]), Vec::<&str>::new(), "{b}");
    let results = d["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only the uuid's database: {b}");
    assert_eq!(results[0]["database"], db.as_str());
    assert_eq!(
        results[0]["error"]["error"], "schema_validation_failed",
        "{b}"
    );
    let dataloss = strings(&d["schema_validation"]["dataloss_changes"]);
    assert!(
        dataloss.len() == 1
            && dataloss[0].starts_with("items.note")
            && dataloss[0].ends_with("(allow: drop_column)"),
        "{dataloss:?}"
    );
    let plan = results[0]["plan"].as_array().unwrap();
    assert!(
        plan.iter()
            .any(|s| s["object"] == "items.note" && s["allow"] == "drop_column"),
        "{plan:?}"
    );
    assert_eq!(columns(&db).await.len(), 4, "nothing was applied");

    // allow: ["drop_column"] lets it through (the uuid with hyphens now:
    // the same database)
    let (s, b) = migrate(&gw, &p, UUID, json!(["drop_column"]), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(strings(&b["databases_updated"]), [db.as_str()], "{b}");
    assert_eq!(
        columns(&db).await,
        [
            ("id".into(), "integer".into()),
            ("name".into(), "text".into()),
            ("qty".into(), "bigint".into())
        ]
    );
    assert_eq!(
        columns(&other).await.len(),
        4,
        "the other uuid is untouched"
    );

    // a type change is another class: drop_column does not let it through
    upload(&gw, &p, V3).await;
    let (s, b) = migrate(&gw, &p, "0f1e_a2b3", json!(["drop_column"]), json!({})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (409, json!("migration_failed")),
        "{b}"
    );
    let dataloss = strings(&b["details"]["schema_validation"]["dataloss_changes"]);
    assert!(
        dataloss.len() == 1
            && dataloss[0].starts_with("items.qty")
            && dataloss[0].ends_with("(allow: modify_column_type)"),
        "{dataloss:?}"
    );
    assert_eq!(columns(&db).await[2].1, "bigint");
    // its dry run lists the step with its class, changes nothing
    let (s, b) = migrate(
        &gw,
        &p,
        UUID,
        json!(["modify_column_type"]),
        json!({"dry_run": true}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let plan = b["results"][0]["plan"].as_array().unwrap();
    assert!(
        plan.iter()
            .any(|s| s["object"] == "items.qty" && s["allow"] == "modify_column_type"),
        "{plan:?}"
    );
    assert_eq!(columns(&db).await[2].1, "bigint");
    let (s, b) = migrate(&gw, &p, UUID, json!(["modify_column_type"]), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(columns(&db).await[2].1, "integer");
    // /call with the uuid reaches the database migrated, its row kept
    let (s, b) = gw
        .post(
            "/call",
            &json!({"platform": p, "schema_name": "tenant", "uuid": UUID,
                    "function": "item_count", "params": []}),
        )
        .await;
    assert_eq!(
        (s, b["rows"][0]["item_count"].clone()),
        (200, json!(1)),
        "{b}"
    );

    // the other database, every change at once: allow both classes
    let (s, b) = migrate(
        &gw,
        &p,
        "9c8d_7e6f",
        json!(["drop_column", "modify_column_type"]),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(columns(&other).await, columns(&db).await);

    // an unknown class, uuid and database_id together, a bad uuid: 400
    let (s, b) = migrate(&gw, &p, UUID, json!(["drop_everything"]), json!({})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("invalid_request")),
        "{b}"
    );
    assert!(
        b["message"].as_str().unwrap().contains("drop_everything"),
        "{b}"
    );
    let (s, b) = migrate(
        &gw,
        &p,
        UUID,
        json!([]),
        json!({"database_id": "0f1e_a2b3"}),
    )
    .await;
    assert_eq!(
        (s, b["error"].clone()),
        (400, json!("invalid_request")),
        "{b}"
    );
    for bad in ["0F1E-A2B3", "0f1e__a2b3", "-0f1e"] {
        let (s, b) = migrate(&gw, &p, bad, json!([]), json!({})).await;
        assert_eq!(
            (s, b["error"].clone()),
            (400, json!("invalid_request")),
            "{bad}: {b}"
        );
    }
    // a uuid of no database of the platform
    let (s, b) = migrate(&gw, &p, "1234-5678", json!([]), json!({})).await;
    assert_eq!(
        (s, b["error"].clone()),
        (404, json!("database_not_found")),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_verification_reports_a_failed_verification_without_failing() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    upload(&gw, &p, V1).await;
    let (s, b) = gw
        .post(
            "/admin/database/create",
            &json!({"platform": p, "schema_name": "tenant", "uuid": UUID}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let db = format!("{p}_tenant_0f1e_a2b3");
    // a seeded row goes missing
    cluster()
        .connect(&db)
        .await
        .batch_execute("DELETE FROM roles WHERE id = 2")
        .await
        .unwrap();
    for skip in [true, false] {
        let (s, b) = migrate(
            &gw,
            &p,
            "0f1e_a2b3",
            json!([]),
            json!({"skip_verification": skip}),
        )
        .await;
        // verification ran and is reported; it fails nothing
        assert_eq!((s, b["status"].clone()), (200, json!("completed")), "{b}");
        assert_eq!(b["results"][0]["status"], "skipped", "{b}");
        assert_eq!(b["verification"]["passed"], false, "{b}");
        assert_eq!(b["verification"]["seeders_verified"], false, "{b}");
        assert_eq!(b["verification"]["tables_verified"], true, "{b}");
    }
}

/// `allow`, `uuid` and `skip_verification` are the v2 routes' only: v1's
/// `/migrate` still refuses them as unknown fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_migrate_refuses_the_v2_fields() {
    let gw = Gateway::start(&[]);
    let p = stonescriptdb_tests::new_platform();
    for field in ["allow", "uuid", "skip_verification"] {
        let (s, b) = gw
            .upload(
                "/migrate",
                &[("platform", p.as_str()), (field, "drop_column")],
                schema(V1).tar_gz(),
            )
            .await;
        assert_eq!(
            (s, b["error"].clone()),
            (400, json!("invalid_request")),
            "{b}"
        );
        assert!(b["message"].as_str().unwrap().contains(field), "{b}");
    }
}

/// `allow` is consent to lose data, not to leave the transaction: a version
/// that drops an allowed column and carries a migration with COMMIT (or a
/// DROP DATABASE of the next tenant) is refused for the one uuid, in a dry
/// run and a real run alike, and the column is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_never_lets_hostile_sql_through_dry_run_or_not() {
    let gw = Gateway::start(&[]);
    let p = gw.register_platform().await;
    upload(&gw, &p, V1).await;
    for uuid in [UUID, OTHER] {
        let (s, b) = gw
            .post(
                "/admin/database/create",
                &json!({"platform": p, "schema_name": "tenant", "uuid": uuid}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let db = format!("{p}_tenant_0f1e_a2b3");
    let other = format!("{p}_tenant_9c8d_7e6f");
    let before = columns(&db).await;
    for (file, sql, says) in [
        (
            "migrations/001_commit.pssql",
            "CREATE TABLE escaped (id int);\nCOMMIT;".to_owned(),
            "COMMIT: transaction control is not allowed",
        ),
        (
            "migrations/001_drop.pssql",
            format!("DROP DATABASE {other};"),
            "DROP DATABASE: database- and cluster-level",
        ),
    ] {
        let mut version = schema(V2);
        version.set(file, &sql);
        let (s, b) = gw
            .upload_as(
                &format!("/platform/{p}/schema"),
                &[("schema_name", "tenant")],
                "schema",
                version.tar_gz(),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        for dry in [true, false] {
            let (s, b) = migrate(
                &gw,
                &p,
                "0f1e_a2b3",
                json!(["drop_column"]),
                json!({"dry_run": dry}),
            )
            .await;
            assert_ne!(s, 200, "{file} dry_run={dry}: {b}");
            assert!(b.to_string().contains(says), "{file} dry_run={dry}: {b}");
            assert_eq!(
                columns(&db).await,
                before,
                "{file} dry_run={dry}: note is still there"
            );
            assert!(stonescriptdb_tests::database_exists(&other).await);
        }
    }
}
