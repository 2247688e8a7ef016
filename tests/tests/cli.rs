//! End-to-end tests of the `stonescriptdb` CLI against a running gateway:
//! each command as a person or a CI job runs it (environment variables,
//! exit codes, what it prints), and `check` giving the gateway's own
//! message for a broken folder without a server.

use std::process::{Command, Output};

use serde_json::{json, Value};
use stonescriptdb_tests::{binary, new_platform, Gateway, SchemaDir, TempDir};

/// Run the CLI with `env` (and nothing of the test process's GATEWAY_*).
fn cli(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(binary("stonescriptdb"));
    for k in [
        "GATEWAY_URL",
        "GATEWAY_TOKEN",
        "GATEWAY_CALL_TOKEN",
        "GATEWAY_CA_FILE",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied()).args(args);
    cmd.output().expect("run stonescriptdb")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `schema` written out as a folder (what a platform keeps in its repository).
fn folder(schema: &SchemaDir, tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    for (path, content) in &schema.files {
        let p = dir.0.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

fn app() -> SchemaDir {
    let mut s = SchemaDir::default();
    s.set(
        "tables/notes.pssql",
        "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);",
    )
    .set(
        "functions/add_note.pssql",
        "CREATE FUNCTION add_note(p_body text) RETURNS integer LANGUAGE sql AS $$ INSERT INTO notes (body) VALUES (p_body) RETURNING id $$;",
    )
    .set(
        "functions/sum_of.pssql",
        "CREATE FUNCTION sum_of(a integer, b integer DEFAULT 2) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;",
    );
    s
}

fn dir_arg(d: &TempDir) -> &str {
    d.0.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gives_the_gateways_message_for_a_broken_folder_without_a_server() {
    let gw = Gateway::start(&[]);
    // nothing listens here: check never asks
    let env = [("GATEWAY_URL", "http://127.0.0.1:9")];
    let good = folder(&app(), "cli-check-good");
    let out = cli(&env, &["check", dir_arg(&good)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("tables/ 1 file, functions/ 2 files"),
        "{stdout}"
    );
    assert!(stdout.contains("at deployment"), "{stdout}");

    for (path, content) in [
        // a misspelled header
        (
            "functions/typo.pssql",
            "CREATE FUNCTON f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
        ),
        // an unterminated body
        (
            "functions/open.pssql",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1;",
        ),
        // a migration leaving the transaction
        (
            "migrations/001_commit.sql",
            "CREATE TABLE x (id int);\nCOMMIT;\n",
        ),
        // a file the folder does not read
        ("tables/notes.txt", "CREATE TABLE y (id int);"),
    ] {
        let mut broken = app();
        broken.set(path, content);
        let dir = folder(&broken, "cli-check-broken");
        let out = cli(&env, &["check", dir_arg(&dir)]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{path}: {stderr}");
        // the gateway's answer to the same folder
        let (s, b) = gw.register(&new_platform(), None, &broken).await;
        assert_eq!(s, 400, "{path}: {b}");
        let message = b["message"].as_str().unwrap();
        assert!(
            stderr.contains(message),
            "{path}: check said {stderr:?}, the gateway {message:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_platform_deploys_calls_and_inspects_through_the_cli() {
    const ADMIN: &str = "cli-admin-token-00000001";
    let p = new_platform();
    let deploy = "cli-deploy-token-0000001";
    let gw = Gateway::start(&[
        ("ADMIN_TOKEN", ADMIN),
        ("DEPLOY_TOKENS", &format!("{p}:{deploy}")),
    ]);
    let url = gw.url.clone();
    let env = [("GATEWAY_URL", url.as_str()), ("GATEWAY_TOKEN", deploy)];
    let dir = folder(&app(), "cli-v1");

    // no token: the gateway's 401, and the variable to set
    let out = cli(
        &[("GATEWAY_URL", &url)],
        &["register", "--platform", &p, dir_arg(&dir)],
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("401 unauthorized") && stderr.contains("set GATEWAY_TOKEN"),
        "{stderr}"
    );

    // a dry run prints its plan and creates nothing
    let out = cli(
        &env,
        &[
            "register",
            "--platform",
            &p,
            "--tenant",
            "t1",
            "--dry-run",
            dir_arg(&dir),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{p}_t1: would_create")),
        "{stdout}"
    );
    assert!(
        stdout.contains("PHASE") && stdout.contains("notes"),
        "{stdout}"
    );
    assert!(!stonescriptdb_tests::database_exists(&format!("{p}_t1")).await);

    let out = cli(
        &env,
        &[
            "register",
            "--platform",
            &p,
            "--tenant",
            "t1",
            dir_arg(&dir),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{p}_t1: created")), "{stdout}");
    assert!(stdout.contains("1 tables created"), "{stdout}");

    // call: JSON values or plain strings; the call token falls back to GATEWAY_TOKEN
    let call_env = [
        ("GATEWAY_URL", url.as_str()),
        ("GATEWAY_CALL_TOKEN", deploy),
    ];
    let out = cli(
        &call_env,
        &[
            "call",
            "--platform",
            &p,
            "--tenant",
            "t1",
            "add_note",
            "hello world",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "add_note\n1\n(1 row)\n");
    let out = cli(
        &env,
        &[
            "--json",
            "call",
            "--platform",
            &p,
            "--tenant",
            "t1",
            "sum_of",
            "40",
        ],
    );
    let (stdout, _) = text(&out);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["rows"], json!([{"sum_of": 42}]), "{stdout}");
    let out = cli(
        &env,
        &["call", "--platform", &p, "--tenant", "t1", "no_such_fn"],
    );
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("404 function_not_found"),
        "{stderr}"
    );

    // a data-losing change: refused with the blocking change named and the way through
    let mut narrower = app();
    narrower.set(
        "tables/notes.pssql",
        "CREATE TABLE notes (id serial PRIMARY KEY);",
    );
    let narrower_dir = folder(&narrower, "cli-v1-drop");
    let out = cli(
        &env,
        &[
            "migrate",
            "--platform",
            &p,
            "--tenant",
            "t1",
            dir_arg(&narrower_dir),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("409") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(
        stdout.contains("data-losing change") && stdout.contains("body"),
        "{stdout}"
    );
    let out = cli(
        &env,
        &[
            "migrate",
            "--platform",
            &p,
            "--tenant",
            "t1",
            "--force",
            dir_arg(&narrower_dir),
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));

    // listings
    let out = cli(&env, &["databases", "--platform", &p]);
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("NAME"), "{stdout}");
    assert!(
        stdout.contains(&format!("{p}_t1")) && stdout.contains("ready"),
        "{stdout}"
    );
    let out = cli(&env, &["functions", "--platform", &p, "--tenant", "t1"]);
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("sum_of(a integer, b integer = 2) → integer  [immutable]"),
        "{stdout}"
    );
    let out = cli(&env, &["deployments", "--platform", &p, "--limit", "2"]);
    let (stdout, _) = text(&out);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.contains("migrate") && stdout.contains(&format!("deploy:{p}")),
        "{stdout}"
    );
    let out = cli(&env, &["status"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains(": healthy (postgres:"), "{stdout}");

    // a gateway that is not there
    let out = cli(&[("GATEWAY_URL", "http://127.0.0.1:9")], &["status"]);
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("cannot reach the gateway at http://127.0.0.1:9"),
        "{stderr}"
    );
    let out = cli(&[("GATEWAY_URL", "localhost:9000")], &["status"]);
    assert!(
        text(&out).1.contains("must start with http://"),
        "{:?}",
        text(&out)
    );
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_migration_shows_its_progress_line_by_line() {
    let gw = Gateway::start(&[]);
    let url = gw.url.clone();
    let env = [("GATEWAY_URL", url.as_str())];
    let p = gw.register_platform().await;
    let dir = folder(&app(), "cli-v2");
    let out = cli(
        &env,
        &[
            "register",
            "--platform",
            &p,
            "--schema",
            "store",
            dir_arg(&dir),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("store version 1"), "{stdout}");
    for id in ["a1", "a2", "a3"] {
        let out = cli(
            &env,
            &[
                "create",
                "--platform",
                &p,
                "--schema",
                "store",
                "--database",
                id,
            ],
        );
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let mut v2 = app();
    v2.set(
        "functions/sum_of.pssql",
        "CREATE FUNCTION sum_of(a integer, b integer DEFAULT 3) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;",
    );
    let dir2 = folder(&v2, "cli-v2-next");
    let out = cli(
        &env,
        &[
            "register",
            "--platform",
            &p,
            "--schema",
            "store",
            dir_arg(&dir2),
        ],
    );
    assert!(
        text(&out).0.starts_with("store version 2"),
        "{:?}",
        text(&out)
    );

    let out = cli(&env, &["migrate", "--platform", &p, "--schema", "store"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    // not a terminal: one line per database as it finishes, counted
    let progress: Vec<&str> = stderr.lines().collect();
    assert_eq!(progress.len(), 3, "{stderr}");
    for (i, line) in progress.iter().enumerate() {
        assert!(
            line.starts_with(&format!("[{}/3] {p}_store_a", i + 1)),
            "{stderr}"
        );
        assert!(line.ends_with(" updated"), "{stderr}");
    }
    assert!(stdout.contains("\ncompleted in "), "{stdout}");
    let (s, b) = gw
        .post("/call", &json!({"platform": p, "database": format!("{p}_store_a2"), "function": "sum_of", "params": [1]}))
        .await;
    assert_eq!((s, b["rows"][0]["sum_of"].clone()), (200, json!(4)), "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_rollback_pull_and_drop_through_the_cli() {
    let gw = Gateway::start(&[]);
    let url = gw.url.clone();
    let env = [("GATEWAY_URL", url.as_str())];
    let p = gw.register_platform().await;
    let one = folder(&app(), "cli-life-1");
    let mut next = app();
    next.set(
        "functions/sum_of.pssql",
        "CREATE FUNCTION sum_of(a integer, b integer DEFAULT 5) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT a + b $$;",
    );
    let two = folder(&next, "cli-life-2");
    for (dir, v) in [(&one, "1"), (&two, "2"), (&two, "2")] {
        let out = cli(
            &env,
            &[
                "register",
                "--platform",
                &p,
                "--schema",
                "store",
                dir_arg(dir),
            ],
        );
        let (stdout, stderr) = text(&out);
        assert!(
            stdout.starts_with(&format!("store version {v}")),
            "{stdout}{stderr}"
        );
    }
    let out = cli(
        &env,
        &[
            "create",
            "--platform",
            &p,
            "--schema",
            "store",
            "--database",
            "a1",
        ],
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(&env, &["versions", "--platform", &p, "--schema", "store"]);
    let (stdout, _) = text(&out);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(
        rows[0].starts_with("VERSION") && rows[2].starts_with("2 "),
        "{stdout}"
    );
    assert!(rows[2].contains(" yes "), "the latest: {stdout}");

    // back to version 1: the default of version 1 answers again
    let out = cli(
        &env,
        &[
            "rollback",
            "--platform",
            &p,
            "--schema",
            "store",
            "--database",
            "a1",
            "--version",
            "1",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let db = format!("{p}_store_a1");
    let call = cli(
        &env,
        &["call", "--platform", &p, "--database", &db, "sum_of", "1"],
    );
    assert_eq!(text(&call).0, "sum_of\n3\n(1 row)\n", "{:?}", text(&call));
    let out = cli(&env, &["databases", "--platform", &p]);
    let (stdout, _) = text(&out);
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&db))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains(" 1 ") && line.contains(" yes "),
        "pinned at 1: {line}"
    );

    // pull the database into a folder, which checks offline
    let pulled = TempDir::new("cli-pull");
    let into = pulled.0.join("schema");
    let into_arg = into.to_str().unwrap();
    let out = cli(
        &env,
        &[
            "pull",
            "--platform",
            &p,
            "--database",
            &db,
            "--out",
            into_arg,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{db} exported into")), "{stdout}");
    assert!(into.join("functions/sum_of.sql").exists() && into.join("export-report.json").exists());
    assert!(into.join("tables/notes.sql").exists());
    let out = cli(&env, &["check", into_arg]);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = cli(&env, &["pull", "--database", &db, "--out", into_arg]);
    assert!(text(&out).1.contains("is not empty"), "{:?}", text(&out));
    let out = cli(
        &env,
        &[
            "pull",
            "--platform",
            &new_platform(),
            "--database",
            &db,
            "--out",
            "/tmp/x",
        ],
    );
    assert!(
        !out.status.success(),
        "another platform's database: {:?}",
        text(&out)
    );

    // drop: the name again, or nothing happens
    let out = cli(&env, &["drop", "--database", &db, "--confirm", "nope"]);
    let (_, stderr) = text(&out);
    assert!(
        !out.status.success() && stderr.contains("400 invalid_request"),
        "{stderr}"
    );
    let out = cli(&env, &["drop", "--database", &db, "--confirm", &db]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, format!("dropped {db}\n"));
    assert!(!stonescriptdb_tests::database_exists(&db).await);
}

#[test]
fn an_https_gateway_is_reached_with_its_ca_from_gateway_ca_file() {
    let c = stonescriptdb_tests::certs();
    let gw = Gateway::start(&[("TLS_CERT_FILE", &c.cert), ("TLS_KEY_FILE", &c.key)]);
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let url = gw.url.as_str();
    let out = cli(
        &[("GATEWAY_URL", url), ("GATEWAY_CA_FILE", &c.ca)],
        &["status"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("at {url}: healthy")), "{stdout}");
    // a CA that did not sign the certificate, or none: refused
    for env in [vec![("GATEWAY_CA_FILE", c.other_ca.as_str())], vec![]] {
        let mut env = env;
        env.push(("GATEWAY_URL", url));
        let out = cli(&env, &["status"]);
        let (_, stderr) = text(&out);
        assert!(
            !out.status.success() && stderr.contains("cannot reach the gateway"),
            "{stderr}"
        );
        assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    }
    let out = cli(
        &[
            ("GATEWAY_URL", url),
            ("GATEWAY_CA_FILE", "/nonexistent/ca.pem"),
        ],
        &["status"],
    );
    assert!(
        text(&out).1.contains("GATEWAY_CA_FILE /nonexistent/ca.pem"),
        "{:?}",
        text(&out)
    );
}
