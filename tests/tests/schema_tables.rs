//! End-to-end tests of declarative `tables/` (docs/SCHEMA.md): changes are
//! classified before the migrations run, destructive ones need `force`, the
//! database converges to `tables/` after the migrations, objects the gateway
//! never declared survive, and a dry run changes nothing.

use serde_json::Value;
use stonescriptdb_tests::{cluster, ddl_count, new_platform, watch_ddl, Gateway, SchemaDir};
use tokio_postgres::Client;

fn report(body: &Value) -> &Value {
    &body["databases"][0]
}

/// `schema_validation` lists no change of any class.
fn assert_no_changes(v: &Value) {
    for class in ["safe_changes", "dataloss_changes", "incompatible_changes"] {
        assert!(list(v, class).is_empty(), "{v}");
    }
}

fn list(v: &Value, class: &str) -> Vec<String> {
    v[class]
        .as_array()
        .unwrap_or_else(|| panic!("{class} missing in {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Columns, constraints and indexes of the public tables, to compare states.
async fn catalog(c: &Client) -> Vec<String> {
    c.query(
        "SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
            AND c.relname NOT LIKE '\\_stonescriptdb%'
         UNION ALL
         SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            AND conrelid::regclass::text NOT LIKE '\\_stonescriptdb%'
         UNION ALL
         SELECT 'index ' || indexname || ' ' || indexdef FROM pg_indexes
          WHERE schemaname = 'public' AND tablename NOT LIKE '\\_stonescriptdb%'
         ORDER BY 1",
        &[],
    )
    .await
    .expect("catalog")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn schema(orders: &str) -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set("tables/customers.sql", "CREATE TABLE customers (\n    id serial PRIMARY KEY,\n    name text NOT NULL\n);\n")
        .set("tables/orders.sql", orders)
        .set(
            "functions/order_count.sql",
            "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM orders $$;",
        );
    s
}

const ORDERS: &str = "CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers(id),
    total integer NOT NULL DEFAULT 0,
    note text
);
CREATE INDEX orders_customer_idx ON orders (customer_id);
";

async fn seed(c: &Client) {
    c.batch_execute(
        "INSERT INTO customers (name) VALUES ('ann'), ('bob');
         INSERT INTO orders (customer_id, total, note) VALUES (1, 10, 'first'), (2, 20, NULL), (1, 30, 'third');",
    )
    .await
    .expect("seed rows");
}

#[tokio::test(flavor = "multi_thread")]
async fn dataloss_is_refused_until_forced() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (s, b) = gw.register(&p, None, &schema(ORDERS)).await;
    assert_eq!(s, 200, "{b}");
    let c = cluster().connect(&format!("{p}_main")).await;
    seed(&c).await;
    let before = catalog(&c).await;

    // `note` removed from tables/ and `total` changed to text: dataloss +
    // incompatible, refused as a whole, nothing applied.
    let changed = ORDERS
        .replace("    note text\n", "    shipped boolean\n")
        .replace(
            "total integer NOT NULL DEFAULT 0",
            "total text NOT NULL DEFAULT '0'",
        );
    let (s, b) = gw.migrate(&p, None, &schema(&changed), false).await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["error"], "schema_validation_failed", "{b}");
    let d = &b["details"];
    let dataloss = list(d, "dataloss_changes");
    assert!(
        dataloss.len() == 1 && dataloss[0].contains("note"),
        "{dataloss:?}"
    );
    let incompatible = list(d, "incompatible_changes");
    assert!(
        incompatible.len() == 1 && incompatible[0].contains("total"),
        "{incompatible:?}"
    );
    assert!(
        list(d, "safe_changes")
            .iter()
            .any(|s| s.contains("shipped")),
        "{d}"
    );
    assert!(b["message"].as_str().unwrap().contains("force=true"), "{b}");
    assert_eq!(
        catalog(&c).await,
        before,
        "a refused deployment changed the database"
    );

    // With force: applied, rows kept, values converted.
    let (s, b) = gw.migrate(&p, None, &schema(&changed), true).await;
    assert_eq!(s, 200, "{b}");
    let r = report(&b);
    assert_eq!(r["status"], "updated", "{r}");
    assert!(r["tables_altered"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(list(&r["schema_validation"], "dataloss_changes").len(), 1);
    let rows: Vec<(i32, String, Option<bool>)> = c
        .query("SELECT id, total, shipped FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, "10".to_owned(), None),
            (2, "20".to_owned(), None),
            (3, "30".to_owned(), None)
        ]
    );
    let note: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(note, 0, "dropped column still there");

    // Converged: the same schema again is no change at all.
    let (s, b) = gw.migrate(&p, None, &schema(&changed), false).await;
    assert_eq!(s, 200, "{b}");
    assert_no_changes(&report(&b)["schema_validation"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn safe_changes_apply_without_a_migration_and_keep_the_data() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &schema(ORDERS)).await.0, 200);
    let c = cluster().connect(&format!("{p}_main")).await;
    seed(&c).await;

    // widen a type, add a column with a default, a check and an index, change a default
    let changed = ORDERS
        .replace(
            "total integer NOT NULL DEFAULT 0",
            "total bigint NOT NULL DEFAULT 1 CHECK (total >= 0)",
        )
        .replace(
            "    note text\n",
            "    note text,\n    currency varchar(3) NOT NULL DEFAULT 'EUR'\n",
        )
        + "CREATE INDEX orders_note_idx ON orders (note) WHERE note IS NOT NULL;\n";
    let (s, b) = gw.migrate(&p, None, &schema(&changed), false).await;
    assert_eq!(s, 200, "{b}");
    let r = report(&b);
    let v = &r["schema_validation"];
    assert!(
        list(v, "dataloss_changes").is_empty() && list(v, "incompatible_changes").is_empty(),
        "{v}"
    );
    assert!(list(v, "safe_changes").len() >= 4, "{v}");
    assert!(r["tables_altered"].as_u64().unwrap() >= 4, "{r}");
    let rows: Vec<(i32, i64, String)> = c
        .query("SELECT id, total, currency FROM orders ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, 10, "EUR".to_owned()),
            (2, 20, "EUR".to_owned()),
            (3, 30, "EUR".to_owned())
        ]
    );
    let err = c
        .execute(
            "INSERT INTO orders (customer_id, total) VALUES (1, -1)",
            &[],
        )
        .await
        .expect_err("the new check applies");
    assert_eq!(err.code().unwrap().code(), "23514");
    let default: String = c
        .query_one(
            "SELECT column_default FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'total'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, "1");
    // The function still works against the altered table.
    let (s, b) = gw.call(&p, "order_count", serde_json::json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["order_count"].clone()),
        (200, serde_json::json!(3))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_by_a_migration_and_declared_deploys_cleanly() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    assert_eq!(gw.register(&p, None, &schema(ORDERS)).await.0, 200);
    let c = cluster().connect(&format!("{p}_main")).await;
    seed(&c).await;

    // The user writes the migration AND updates tables/ (INTEGRATION.md's workflow).
    let changed = ORDERS.replace("total integer", "total bigint").replace(
        "    note text\n",
        "    note text,\n    paid_at timestamptz\n",
    );
    let mut s = schema(&changed);
    s.set(
        "migrations/001_paid_at.sql",
        "ALTER TABLE orders ADD COLUMN paid_at timestamptz;\nALTER TABLE orders ALTER COLUMN total TYPE bigint;\n",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let r = report(&b);
    assert_eq!(r["migrations_applied"], 1, "{r}");
    assert_eq!(
        r["tables_altered"], 0,
        "the migration already made the change: {r}"
    );
    // The pre-migration validation saw the (safe) changes.
    assert_eq!(
        list(&r["schema_validation"], "safe_changes").len(),
        2,
        "{r}"
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders WHERE paid_at IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    // and the next deployment has nothing to do
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(report(&b)["status"], "unchanged", "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_created_by_migrations_survive_every_deployment() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = schema(ORDERS);
    s.set(
        "migrations/001_extra.sql",
        "CREATE TABLE order_events (id bigserial PRIMARY KEY, order_id int REFERENCES orders(id), at timestamptz DEFAULT now());
         CREATE INDEX orders_total_idx ON orders (total);
         ALTER TABLE orders ADD COLUMN legacy_code text;
         ALTER TABLE orders ADD CONSTRAINT orders_legacy_code_check CHECK (legacy_code <> '');",
    );
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    let v = &report(&b)["schema_validation"];
    assert!(list(v, "dataloss_changes").is_empty(), "{v}");
    let c = cluster().connect(&format!("{p}_main")).await;
    seed(&c).await;
    c.batch_execute("INSERT INTO order_events (order_id) VALUES (1)")
        .await
        .unwrap();
    let extra = |cat: &[String]| -> Vec<String> {
        cat.iter()
            .filter(|l| {
                l.contains("order_events")
                    || l.contains("orders_total_idx")
                    || l.contains("legacy_code")
            })
            .cloned()
            .collect()
    };
    let before = extra(&catalog(&c).await);
    assert!(before.len() >= 6, "{before:?}");

    // unchanged, a safe change, and a forced destructive change
    let safe = ORDERS.replace("    note text\n", "    note text,\n    tag text\n");
    let forced = ORDERS.replace("    note text\n", "    tag text\n");
    for (schema_text, force) in [
        (ORDERS, false),
        (safe.as_str(), false),
        (forced.as_str(), true),
    ] {
        let mut s2 = schema(schema_text);
        s2.set(
            "migrations/001_extra.sql",
            s.get("migrations/001_extra.sql"),
        );
        let (st, b) = gw.migrate(&p, None, &s2, force).await;
        assert_eq!(st, 200, "{b}");
        let r = report(&b);
        let v = &r["schema_validation"];
        for class in ["safe_changes", "dataloss_changes", "incompatible_changes"] {
            assert!(
                !list(v, class).iter().any(|c| c.contains("order_events")
                    || c.contains("legacy")
                    || c.contains("orders_total_idx")),
                "undeclared objects reported: {v}"
            );
        }
        assert_eq!(
            extra(&catalog(&c).await),
            before,
            "undeclared objects changed"
        );
    }
    let n: i64 = c
        .query_one("SELECT count(*) FROM order_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_reports_the_plan_and_changes_nothing() {
    let gw = Gateway::start(&[]);
    let p = new_platform();

    // register dry run: no database is created
    let s = schema(ORDERS);
    let (st, b) = gw
        .upload(
            "/register",
            &[("platform", &p), ("dry_run", "true")],
            s.tar_gz(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(report(&b)["status"], "would_create", "{b}");
    assert!(!stonescriptdb_tests::database_exists(&format!("{p}_main")).await);

    assert_eq!(gw.register(&p, None, &s).await.0, 200);
    let c = cluster().connect(&format!("{p}_main")).await;
    seed(&c).await;
    let before = catalog(&c).await;

    let changed = ORDERS
        .replace("total integer", "total bigint")
        .replace("    note text\n", "    note varchar(10)\n");
    let mut s2 = schema(&changed);
    s2.set(
        "migrations/001_flag.sql",
        "ALTER TABLE customers ADD COLUMN vip boolean;",
    );
    for (force, status) in [("false", "blocked"), ("true", "dry_run")] {
        let (st, b) = gw
            .upload(
                "/migrate",
                &[("platform", &p), ("dry_run", "true"), ("force", force)],
                s2.tar_gz(),
            )
            .await;
        assert_eq!(st, 200, "{b}");
        let r = report(&b);
        assert_eq!(r["status"], status, "{r}");
        let plan = r["plan"].as_array().unwrap_or_else(|| panic!("{r}"));
        let sql: Vec<String> = plan
            .iter()
            .flat_map(|s| s["sql"].as_array().unwrap().iter())
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        assert!(
            sql.iter()
                .any(|s| s.contains("ALTER COLUMN total TYPE bigint")),
            "{sql:?}"
        );
        let narrow = plan
            .iter()
            .find(|s| s["object"].as_str().unwrap_or("").contains("note"))
            .unwrap_or_else(|| panic!("{r}"));
        assert_eq!(narrow["class"], "dataloss", "{narrow}");
        if force == "true" {
            assert!(sql.iter().any(|s| s.contains("ADD COLUMN vip")), "{sql:?}");
        }
        assert_eq!(catalog(&c).await, before, "dry run changed the database");
    }
    let applied: i64 = c
        .query_one(
            "SELECT count(*) FROM _stonescriptdb_gateway_migrations",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_schema_gives_an_empty_plan_and_runs_no_ddl() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let s = SchemaDir::fixture("shop");
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    let watch = watch_ddl(&format!("{p}_main")).await;
    for force in [false, true] {
        let (st, b) = gw.migrate(&p, None, &s, force).await;
        assert_eq!(st, 200, "{b}");
        let r = report(&b);
        assert_eq!(r["status"], "unchanged", "{r}");
        assert_eq!(r["tables_altered"], 0, "{r}");
        assert_no_changes(&r["schema_validation"]);
    }
    let (st, b) = gw
        .upload(
            "/migrate",
            &[("platform", &p), ("dry_run", "true")],
            s.tar_gz(),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(report(&b)["plan"], Value::Null, "empty plan: {b}");
    assert_eq!(ddl_count(&watch).await, 0, "an unchanged schema ran DDL");

    // The same tables/ in a different spelling is still no change, and
    // normalizing it runs no DDL that persists.
    let mut s2 = s.clone();
    s2.set(
        "tables/g_roles.pssql",
        "-- reformatted\ncreate table public.\"roles\" (\n  \"id\" int4 primary key,\n  name TEXT not null unique\n);\n",
    );
    let (st, b) = gw.migrate(&p, None, &s2, false).await;
    assert_eq!(st, 200, "{b}");
    let r = report(&b);
    assert_eq!(r["tables_altered"], 0, "{r}");
    assert_no_changes(&r["schema_validation"]);
}

/// A `tables/` file that declares only a sequence, shared by several
/// tables' defaults, is created before the tables, changed with `ALTER
/// SEQUENCE` (its counter kept), and left alone, without DDL, when unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_only_tables_file_is_created_changed_and_left_unchanged() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let db = format!("{p}_main");
    let mut s = SchemaDir {
        files: Default::default(),
    };
    s.set("tables/00_ids.sql", "CREATE SEQUENCE shared_ids START 1000;\n")
        .set(
            "tables/a.sql",
            "CREATE TABLE a (id bigint PRIMARY KEY DEFAULT nextval('shared_ids'), n text);\n",
        )
        .set(
            "tables/b.sql",
            "CREATE TABLE b (id bigint PRIMARY KEY DEFAULT nextval('shared_ids'), n text);\n",
        )
        .set(
            "functions/add.sql",
            "CREATE FUNCTION add_a(x text) RETURNS bigint LANGUAGE sql AS $$ INSERT INTO a (n) VALUES (x) RETURNING id $$;\n\
             CREATE FUNCTION add_b(x text) RETURNS bigint LANGUAGE sql AS $$ INSERT INTO b (n) VALUES (x) RETURNING id $$;\n",
        );
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    let id = |b: &Value, f: &str| b["rows"][0][f].as_i64().unwrap_or_else(|| panic!("{b}"));
    let (_, b) = gw.call(&p, "add_a", serde_json::json!(["x"])).await;
    assert_eq!(id(&b, "add_a"), 1000);
    let (_, b) = gw.call(&p, "add_b", serde_json::json!(["y"])).await;
    assert_eq!(id(&b, "add_b"), 1001, "one counter for both tables");

    // changed: INCREMENT BY 10, the counter goes on from where it was
    s.set(
        "tables/00_ids.sql",
        "CREATE SEQUENCE shared_ids START 1000 INCREMENT BY 10;\n",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let safe = list(&report(&b)["schema_validation"], "safe_changes");
    assert!(
        safe.iter()
            .any(|c| c.contains("shared_ids") && c.contains("sequence options changed")),
        "{b}"
    );
    let (_, b) = gw.call(&p, "add_a", serde_json::json!(["z"])).await;
    assert_eq!(id(&b, "add_a"), 1011);

    // unchanged: nothing planned, no DDL
    let watch = watch_ddl(&db).await;
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(report(&b)["status"], "unchanged", "{b}");
    assert_no_changes(&report(&b)["schema_validation"]);
    assert_eq!(ddl_count(&watch).await, 0, "an unchanged sequence ran DDL");
}
