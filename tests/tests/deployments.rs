//! Deployments a user can trust, tried the way a team changes a schema:
//! function files read strictly (a typo never drops a function), bodies
//! checked before anything is deployed, folders that mean what they say,
//! and `tables/` additions made before the migrations that fill them.

use serde_json::{json, Value};
use stonescriptdb_tests::{cluster, new_platform, Gateway, SchemaDir};

fn base() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/orgs.sql",
        "CREATE TABLE orgs (id serial PRIMARY KEY, name text NOT NULL);",
    )
    .set(
        "functions/org_count.sql",
        "CREATE OR REPLACE FUNCTION org_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orgs $$;",
    )
    .set(
        "seeders/orgs.sql",
        "INSERT INTO orgs (id, name) VALUES (1, 'Acme'), (2, 'Globex');",
    );
    s
}

async fn registered() -> (Gateway, String) {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (st, b) = gw.register(&p, None, &base()).await;
    assert_eq!(st, 200, "{b}");
    (gw, p)
}

fn message(b: &Value) -> String {
    b["message"].as_str().unwrap_or_default().to_owned()
}

async fn functions_of(db: &str) -> Vec<String> {
    let c = cluster().connect(db).await;
    c.query(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND p.proname NOT LIKE '\\_stonescriptdb%' ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn a_typo_in_a_function_file_is_refused_and_drops_nothing() {
    let (gw, p) = registered().await;
    let mut s = base();
    s.set(
        "functions/org_count.sql",
        "-- counts the orgs\nCREATE OR REPLACE FUNCTON org_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orgs $$;",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        message(&b).starts_with("functions/org_count.sql statement 1 (line 2): CREATE OR REPLACE (not a CREATE FUNCTION, PROCEDURE or AGGREGATE header: misspelled?) does not belong in functions/"),
        "{b}"
    );
    assert_eq!(functions_of(&format!("{p}_main")).await, ["org_count"]);
    let (st, b) = gw.call(&p, "org_count", json!([])).await;
    assert_eq!((st, b["rows"][0]["org_count"].clone()), (200, json!(2)));

    // a DROP, a table, a file without a routine: each named with its folder
    for (path, sql, says) in [
        ("functions/x.sql", "DROP FUNCTION org_count();", "DROP FUNCTION does not belong in functions/ (its files define routines, with their triggers, comments and grants); it belongs in migrations/"),
        ("functions/x.sql", "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nCREATE TABLE t (id int);", "functions/x.sql statement 2 (line 2): CREATE TABLE does not belong in functions/"),
        ("functions/x.sql", "-- nothing yet\nCOMMENT ON FUNCTION org_count() IS 'x';", "functions/x.sql: defines no routine"),
        ("functions/x.sql", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nGRANT EXECUTE ON FUNCTION g() TO PUBLIC;", "this statement is about g, which functions/ does not define"),
    ] {
        let mut s = base();
        s.set(path, sql);
        let (st, b) = gw.migrate(&p, None, &s, false).await;
        assert_eq!(st, 400, "{sql}: {b}");
        assert!(message(&b).contains(says), "{sql}: {b}");
    }
    // pg_dump's preamble and OWNER TO are skipped, and said
    let mut s = base();
    s.set(
        "functions/dumped.sql",
        "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\
         CREATE FUNCTION public.twice(n int) RETURNS int LANGUAGE sql AS $$ SELECT n * 2 $$;\n\
         ALTER FUNCTION public.twice(n int) OWNER TO postgres;\n\
         COMMENT ON FUNCTION public.twice(int) IS 'doubles';",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let notes = b["databases"][0]["notes"].to_string();
    assert!(
        notes.contains("functions/dumped.sql statement 1 (line 1): a session setting")
            && notes.contains("statement 4 (line 4): OWNER TO is not run"),
        "{b}"
    );
    let (st, b) = gw.call(&p, "twice", json!([21])).await;
    assert_eq!((st, b["rows"][0]["twice"].clone()), (200, json!(42)));
}

#[tokio::test]
async fn function_bodies_are_checked_before_anything_is_deployed() {
    let (gw, p) = registered().await;
    let db = format!("{p}_main");
    for (file, sql, sqlstate) in [
        (
            "functions/bad_plpgsql.sql",
            "CREATE FUNCTION next_id(p_id int) RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN p_id +;\nEND $$;",
            "42601",
        ),
        (
            "functions/bad_sql.sql",
            "CREATE FUNCTION one() RETURNS int LANGUAGE sql AS $$ SELEC 1 $$;",
            "42601",
        ),
        (
            "functions/missing_table.sql",
            "CREATE FUNCTION n() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM no_such_table $$;",
            "42P01",
        ),
    ] {
        let mut s = base();
        s.set(file, sql);
        for dry in ["true", "false"] {
            let (st, b) = gw
                .upload(
                    "/migrate",
                    &[("platform", p.as_str()), ("dry_run", dry)],
                    s.tar_gz(),
                )
                .await;
            assert_eq!((st, b["sqlstate"].clone()), (409, json!(sqlstate)), "{file} dry_run={dry}: {b}");
            assert_eq!(b["file"], json!(file), "{b}");
            assert!(message(&b).contains("does not check"), "{b}");
        }
        assert_eq!(functions_of(&db).await, ["org_count"], "nothing deployed");
    }
    // the opt-out, for a body that needs objects created at run time
    let mut s = base();
    s.set(
        "functions/later.sql",
        "-- stonescriptdb: no-body-check\nCREATE FUNCTION later() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM made_at_run_time $$;",
    );
    // functions calling each other in any file order, SQL-standard bodies too
    s.set(
        "functions/a_total.sql",
        "CREATE FUNCTION a_total() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT z_half() + z_half(); END;",
    )
    .set(
        "functions/z_half.sql",
        "CREATE FUNCTION z_half() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 21; END;",
    )
    .set(
        "functions/m_calls.sql",
        "CREATE FUNCTION m_calls() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN a_total(); END $$;",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = gw.call(&p, "m_calls", json!([])).await;
    assert_eq!(
        (st, b["rows"][0]["m_calls"].clone()),
        (200, json!(42)),
        "{b}"
    );
}

#[tokio::test]
async fn an_archive_without_functions_leaves_them_and_an_empty_folder_drops_them() {
    let (gw, p) = registered().await;
    let db = format!("{p}_main");
    let mut s = base();
    s.remove("functions/org_count.sql");
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(
        (st, b["databases"][0]["functions_dropped"].clone()),
        (200, json!(0)),
        "{b}"
    );
    assert_eq!(functions_of(&db).await, ["org_count"]);
    s.set("functions/.keep", "");
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(
        (st, b["databases"][0]["functions_dropped"].clone()),
        (200, json!(1)),
        "{b}"
    );
    assert!(functions_of(&db).await.is_empty());
}

#[tokio::test]
async fn folders_and_files_mean_what_they_say() {
    let (gw, p) = registered().await;
    // .pgsql (StoneScriptPHP's archive builder) is a schema file
    let mut s = base();
    s.set(
        "functions/hello.pgsql",
        "CREATE FUNCTION hello() RETURNS text LANGUAGE sql AS $$ SELECT 'hi' $$;",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = gw.call(&p, "hello", json!([])).await;
    assert_eq!((st, b["rows"][0]["hello"].clone()), (200, json!("hi")));
    // an archive with nothing in it says nothing (an empty functions/ does:
    // drop the functions, tested above)
    let mut empty = SchemaDir::default();
    empty.set("tables/.keep", "");
    let (st, b) = gw.migrate(&p, None, &empty, false).await;
    assert_eq!(st, 400, "{b}");
    assert!(
        message(&b).contains("schema archive holds no .sql, .pssql or .pgsql file"),
        "{b}"
    );
    for (path, says) in [
        ("views/active.sql", "views/active.sql: the gateway does not read views/ (it reads extensions/, types/, tables/, migrations/, functions/, seeders/); views, triggers, policies and grants belong in migrations/"),
        ("functions/notes.txt", "functions/notes.txt: functions/ holds only .sql, .pssql or .pgsql files"),
        ("cross_db/copy.sql", "the gateway does not copy rows between databases"),
    ] {
        let mut s = base();
        s.set(path, "SELECT 1;");
        let (st, b) = gw.migrate(&p, None, &s, false).await;
        assert_eq!(st, 400, "{path}: {b}");
        assert!(message(&b).contains(says), "{path}: {b}");
    }
}

/// `orgs` gains `slug`, declared in tables/ and filled by a migration, in
/// the two styles teams use.
fn with_slug(migration_adds_it: bool) -> SchemaDir {
    let mut s = base();
    s.set(
        "tables/orgs.sql",
        "CREATE TABLE orgs (id serial PRIMARY KEY, name text NOT NULL, slug text NOT NULL UNIQUE);",
    );
    let fill = "UPDATE orgs SET slug = lower(name);";
    if migration_adds_it {
        s.set(
            "migrations/001_slug.sql",
            &format!("ALTER TABLE orgs ADD COLUMN slug text;\n{fill}"),
        );
    } else {
        s.set("migrations/001_slug.sql", fill);
    }
    // the seeder of a new database needs the column too
    s.set(
        "seeders/orgs.sql",
        "INSERT INTO orgs (id, name, slug) VALUES (1, 'Acme', 'acme'), (2, 'Globex', 'globex');",
    );
    s
}

async fn slugs(db: &str) -> Vec<String> {
    let c = cluster().connect(db).await;
    c.query("SELECT slug FROM orgs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn tables_additions_come_before_the_migrations_that_fill_them() {
    for migration_adds_it in [false, true] {
        // an existing database
        let (gw, p) = registered().await;
        let s = with_slug(migration_adds_it);
        let (st, b) = gw.migrate(&p, None, &s, false).await;
        assert_eq!(st, 200, "migration adds it: {migration_adds_it}: {b}");
        assert_eq!(slugs(&format!("{p}_main")).await, ["acme", "globex"]);
        let c = cluster().connect(&format!("{p}_main")).await;
        let not_null: bool = c
            .query_one(
                "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orgs'::regclass AND attname = 'slug'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(not_null, "tightened after the migration");
        // a new database, with the same files
        let (st, b) = gw.register(&p, Some("fresh"), &s).await;
        assert_eq!(
            st, 200,
            "new database, migration adds it: {migration_adds_it}: {b}"
        );
        assert_eq!(slugs(&format!("{p}_fresh")).await, ["acme", "globex"]);
    }
    // a rename in a migration is not a drop
    let (gw, p) = registered().await;
    let mut s = base();
    s.set(
        "tables/orgs.sql",
        "CREATE TABLE orgs (id serial PRIMARY KEY, title text NOT NULL);",
    )
    .set(
        "migrations/001_rename.sql",
        "ALTER TABLE orgs RENAME COLUMN name TO title;",
    )
    .set(
        "seeders/orgs.sql",
        "INSERT INTO orgs (id, title) VALUES (1, 'Acme'), (2, 'Globex');",
    )
    .set(
        "functions/org_count.sql",
        "CREATE OR REPLACE FUNCTION org_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orgs WHERE title <> '' $$;",
    );
    let (st, b) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["databases"][0]["schema_validation"]["dataloss_changes"],
        json!([]),
        "{b}"
    );
    let (st, b) = gw.call(&p, "org_count", json!([])).await;
    assert_eq!(
        (st, b["rows"][0]["org_count"].clone()),
        (200, json!(2)),
        "{b}"
    );
    let (st, b) = gw.register(&p, Some("fresh"), &s).await;
    assert_eq!(st, 200, "{b}");
}

/// The command tag PostgreSQL's `ddl_command_start` gives a statement
/// (`CREATE OR REPLACE FUNCTION` is `CREATE FUNCTION`), None for one that
/// is not DDL (INSERT, SET, SELECT).
fn ddl_tag(sql: &str) -> Option<String> {
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .filter(|w| w != "OR" && w != "REPLACE" && w != "UNIQUE")
        .collect();
    matches!(
        words.first()?.as_str(),
        "CREATE" | "ALTER" | "DROP" | "COMMENT"
    )
    .then(|| format!("{} {}", words[0], words.get(1).cloned().unwrap_or_default()))
}

#[tokio::test]
async fn a_dry_runs_plan_is_what_the_real_deployment_runs() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let mut s = base();
    s.set("types/mood.sql", "CREATE TYPE mood AS ENUM ('happy', 'sad');")
        .set(
            "functions/label.sql",
            "CREATE FUNCTION label(p_id int) RETURNS text LANGUAGE sql AS $$ SELECT name FROM orgs WHERE id = p_id $$;",
        );
    let (st, b) = gw.register(&p, None, &s).await;
    assert_eq!(st, 200, "{b}");
    let db = format!("{p}_main");

    // a change in every phase: an enum value, a new column and a new table,
    // a migration (with a statement for after the commit), a body change,
    // a return type change (DROP + CREATE), a new seeded row
    s.set("types/mood.sql", "CREATE TYPE mood AS ENUM ('happy', 'ok', 'sad');")
        .set(
            "tables/orgs.sql",
            "CREATE TABLE orgs (id serial PRIMARY KEY, name text NOT NULL, city text);",
        )
        .set("tables/teams.sql", "CREATE TABLE teams (id int PRIMARY KEY, org_id int REFERENCES orgs (id));")
        .set(
            "migrations/001_city.sql",
            "UPDATE orgs SET city = 'Springfield';\nCREATE INDEX CONCURRENTLY orgs_city ON orgs (city);",
        )
        .set(
            "functions/org_count.sql",
            "CREATE OR REPLACE FUNCTION org_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM orgs WHERE id > 0 $$;",
        )
        .set(
            "functions/label.sql",
            "CREATE FUNCTION label(p_id int) RETURNS varchar LANGUAGE sql AS $$ SELECT name FROM orgs WHERE id = p_id $$;",
        )
        .set(
            "seeders/orgs.sql",
            "INSERT INTO orgs (id, name) VALUES (1, 'Acme'), (2, 'Globex'), (3, 'Initech');",
        );
    let (st, dry) = gw
        .upload(
            "/migrate",
            &[("platform", p.as_str()), ("dry_run", "true")],
            s.tar_gz(),
        )
        .await;
    assert_eq!(st, 200, "{dry}");
    let dry = &dry["databases"][0];
    assert_eq!(dry["status"], "dry_run", "{dry}");

    let watch = stonescriptdb_tests::watch_ddl(&db).await;
    let (st, real) = gw.migrate(&p, None, &s, false).await;
    assert_eq!(st, 200, "{real}");
    let real = &real["databases"][0];
    assert_eq!(real["status"], "updated", "{real}");

    // the same steps, in the same order, with the same statements (the
    // statement for after the commit: not run by the dry run, run by the
    // real one)
    let steps = |r: &Value| -> Vec<(Value, Value, Value)> {
        r["plan"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|s| (s["phase"].clone(), s["object"].clone(), s["sql"].clone()))
            .collect()
    };
    assert_eq!(steps(dry), steps(real), "dry run: {dry}\nreal: {real}");
    let phases: Vec<String> = steps(real)
        .into_iter()
        .filter_map(|(p, _, _)| p.as_str().map(str::to_owned))
        .collect();
    for phase in [
        "types",
        "tables",
        "migrations",
        "functions",
        "seeders",
        "after_commit",
    ] {
        assert!(
            phases.iter().any(|p| p == phase),
            "no {phase} step in {real}"
        );
    }
    assert!(
        real["plan"].to_string().contains("DROP ROUTINE"),
        "a return type change is DROP + CREATE, planned: {real}"
    );

    // and what PostgreSQL saw run, DDL command by DDL command, is that list
    let planned: Vec<String> = steps(real)
        .iter()
        .flat_map(|(_, _, sql)| sql.as_array().cloned().unwrap_or_default())
        .filter_map(|s| ddl_tag(s.as_str().unwrap_or_default()))
        .collect();
    let ran: Vec<String> = watch
        .query("SELECT tag FROM test_ddl_log ORDER BY at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(planned, ran, "{real}");
}

#[tokio::test]
async fn a_new_database_is_answered_and_recorded_created() {
    let gw = Gateway::start(&[]);
    let p = new_platform();
    let (st, b) = gw.register(&p, Some("t1"), &base()).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["databases"][0]["status"], "created", "{b}");
    let db = format!("{p}_t1");
    let (st, d) = gw
        .get(&format!("/admin/deployments?database={db}&limit=1"))
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(
        d["deployments"][0]["status"], "created",
        "the catalog agrees with the answer: {d}"
    );
    // the same registration again: unchanged in both
    let (st, b) = gw.register(&p, Some("t1"), &base()).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["databases"][0]["status"], "unchanged", "{b}");
    let (_, d) = gw
        .get(&format!("/admin/deployments?database={db}&limit=1"))
        .await;
    assert_eq!(d["deployments"][0]["status"], "unchanged", "{d}");
}
