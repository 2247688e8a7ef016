//! End-to-end tests of the deployment files: the platform-side scripts
//! (`deploy/register-with-gateway.sh`, `deploy/migrate-schema.sh`, generated
//! from `deploy/lib/`) and the smoke test (`tests/run-tests.sh`) against a
//! running gateway, the installer
//! (`deploy/install.sh`) into a staging root, and the systemd units (parsed,
//! and checked with `systemd-analyze verify` where it exists).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stonescriptdb_shared::config::Config;
use stonescriptdb_tests::{binary, database_exists, json, new_platform, Gateway, TempDir, Value};

const SCRIPTS: [&str; 5] = [
    "deploy/install.sh",
    "deploy/register-with-gateway.sh",
    "deploy/migrate-schema.sh",
    "deploy/lib/generate.sh",
    "tests/run-tests.sh",
];
/// The platform scripts `deploy/lib/generate.sh` writes.
const GENERATED: [&str; 2] = ["register-with-gateway.sh", "migrate-schema.sh"];
const UNITS: [&str; 2] = [
    "stonescriptdb-migrator.service",
    "stonescriptdb-router.service",
];
const SOCKET: &str = "/run/stonescriptdb-gateway/migrator.sock";
const STATE_DIR: &str = "/var/lib/stonescriptdb-gateway";

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A repository script, run directly (shebang and executable bit count), with
/// none of the scripts' knobs inherited from the caller's environment.
fn script(rel: &str) -> Command {
    let mut c = Command::new(repo().join(rel));
    for k in [
        "DB_GATEWAY_URL",
        "PLATFORM_ID",
        "TENANT_ID",
        "SCHEMA_DIR",
        "FORCE",
        "REGISTER_RETRIES",
        "REGISTER_RETRY_DELAY",
        "MIGRATE_RETRIES",
        "MIGRATE_RETRY_DELAY",
        "GATEWAY_TIMEOUT",
        "GATEWAY_TOKEN",
        "GATEWAY_CALL_TOKEN",
        "GATEWAY_URL",
        "GATEWAY_PROGRESS_INTERVAL",
        "DRY_RUN",
        "SCHEMA_NAME",
        "DATABASE_ID",
        "VERSION",
        "SMOKE_PLATFORM",
        "INSTALL_ROOT",
        "DESTDIR",
    ] {
        c.env_remove(k);
    }
    c.stdin(Stdio::null());
    c
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("$ {cmd:?}\n{}", r.describe());
    r
}

/// Is `tool` installed (does `tool --version` run)?
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The platform scripts and the smoke test need curl and tar: say so plainly.
fn require_script_tools() {
    for tool in ["curl", "tar"] {
        assert!(
            have(tool),
            "{tool} is required by deploy/*.sh and tests/run-tests.sh (apt-get install -y {tool})"
        );
    }
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dirs");
    std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A local port nobody listens on (right now).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn greet(word: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION greet(p_name text)\nRETURNS text\nLANGUAGE sql\n\
         AS $$ SELECT '{word} ' || p_name $$;\n"
    )
}

/// A schema folder at `dir` whose `greet` says `word`.
fn write_schema(dir: &Path, word: &str) {
    write(&dir.join("functions/greet.pssql"), &greet(word));
    write(
        &dir.join("functions/count_notes.pssql"),
        "CREATE OR REPLACE FUNCTION count_notes() RETURNS bigint LANGUAGE sql STABLE\n\
         AS $$ SELECT count(*) FROM notes $$;\n",
    );
    write(
        &dir.join("tables/notes.pssql"),
        "CREATE TABLE notes (\n    id serial PRIMARY KEY,\n    body text NOT NULL\n);\n",
    );
    write(
        &dir.join("seeders/notes.pssql"),
        "INSERT INTO notes (body) VALUES ('first');\n",
    );
}

async fn call_greet(gw: &Gateway, platform: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut body = json!({"platform": platform, "function": "greet", "params": ["Ann"]});
    if let Some(t) = tenant {
        body["tenant_id"] = json!(t);
    }
    let (s, b) = gw.post("/call", &body).await;
    (s, b["rows"][0]["greet"].clone())
}

#[tokio::test]
async fn platform_scripts_register_and_migrate_a_schema_folder() {
    require_script_tools();
    let gw = Gateway::start(&[]);
    let platform = new_platform();
    let work = TempDir::new("platform-scripts");
    let register = |dir: &Path| {
        let mut c = script("deploy/register-with-gateway.sh");
        c.current_dir(dir)
            .env("DB_GATEWAY_URL", &gw.url)
            .env("PLATFORM_ID", &platform);
        c
    };
    let migrate = |dir: &Path| {
        let mut c = script("deploy/migrate-schema.sh");
        c.current_dir(dir)
            .env("DB_GATEWAY_URL", &gw.url)
            .env("PLATFORM_ID", &platform);
        c
    };

    // The default folder: ./src/postgresql.
    let app = work.0.join("app");
    write_schema(&app.join("src/postgresql"), "hello");
    let r = run(&mut register(&app));
    assert_eq!(r.code, 0, "register failed: {}", r.describe());
    assert!(
        r.stdout.contains(&format!("{platform}_main")),
        "{}",
        r.describe()
    );
    assert_eq!(
        call_greet(&gw, &platform, None).await,
        (200, json!("hello Ann"))
    );
    let (s, b) = gw.call(&platform, "count_notes", json!([])).await;
    assert_eq!(
        (s, b["rows"][0]["count_notes"].clone()),
        (200, json!(1)),
        "{b}"
    );

    // Registering again is harmless (a container restart).
    let r = run(&mut register(&app));
    assert_eq!(r.code, 0, "second register failed: {}", r.describe());

    // The fallback folder ./postgresql, for a tenant.
    let other = work.0.join("other");
    write_schema(&other.join("postgresql"), "hello");
    let r = run(register(&other).env("TENANT_ID", "acme"));
    assert_eq!(r.code, 0, "tenant register failed: {}", r.describe());
    assert!(database_exists(&format!("{platform}_acme")).await);
    assert_eq!(
        call_greet(&gw, &platform, Some("acme")).await,
        (200, json!("hello Ann"))
    );

    // migrate-schema.sh with SCHEMA_DIR naming a folder not called
    // postgresql: every database of the platform gets the new function.
    let v2 = work.0.join("db-schema-v2");
    write_schema(&v2, "hi");
    let r = run(migrate(&work.0).env("SCHEMA_DIR", &v2));
    assert_eq!(r.code, 0, "migrate failed: {}", r.describe());
    assert_eq!(
        call_greet(&gw, &platform, None).await,
        (200, json!("hi Ann"))
    );
    assert_eq!(
        call_greet(&gw, &platform, Some("acme")).await,
        (200, json!("hi Ann"))
    );

    // A broken schema: non-zero exit, the gateway's error printed, nothing changed.
    let broken = work.0.join("broken/postgresql");
    write_schema(&broken, "broken");
    write(
        &broken.join("migrations/001_broken.sql"),
        "INSERT INTO no_such_table VALUES (1);\n",
    );
    let r = run(migrate(&work.0).env("SCHEMA_DIR", &broken));
    assert_eq!(r.code, 1, "a broken migration must fail: {}", r.describe());
    assert!(r.stderr.contains("migration_failed"), "{}", r.describe());
    assert!(r.stderr.contains("001_broken.sql"), "{}", r.describe());
    assert!(r.stderr.contains("no_such_table"), "{}", r.describe());
    assert_eq!(
        call_greet(&gw, &platform, None).await,
        (200, json!("hi Ann"))
    );

    // The same broken folder registered as a new tenant: refused, no database left.
    let r = run(register(&work.0)
        .env("SCHEMA_DIR", &broken)
        .env("TENANT_ID", "broken"));
    assert_eq!(r.code, 1, "a broken register must fail: {}", r.describe());
    assert!(r.stderr.contains("001_broken.sql"), "{}", r.describe());
    assert!(!database_exists(&format!("{platform}_broken")).await);

    // SQL the gateway cannot parse: 400, non-zero exit.
    let unparsable = work.0.join("unparsable/postgresql");
    write(
        &unparsable.join("functions/bad.pssql"),
        "CREATE FUNCTION bad() RETURNS int LANGUAGE sql AS $$ SELECT 1;\n",
    );
    let r = run(migrate(&work.0).env("SCHEMA_DIR", &unparsable));
    assert_eq!(r.code, 1, "unparsable SQL must fail: {}", r.describe());
    assert!(r.stderr.contains("HTTP 400"), "{}", r.describe());

    // A platform with no databases: 404 platform_not_found.
    let r = run(migrate(&app).env("PLATFORM_ID", new_platform()));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(r.stderr.contains("platform_not_found"), "{}", r.describe());

    // No gateway at the URL: both scripts fail after their attempts.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let r = run(register(&app)
        .env("DB_GATEWAY_URL", &dead)
        .env("REGISTER_RETRIES", "2")
        .env("REGISTER_RETRY_DELAY", "0"));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("cannot reach the gateway"),
        "{}",
        r.describe()
    );
    assert!(r.stderr.contains("attempt 1/2"), "{}", r.describe());
    let r = run(migrate(&app).env("DB_GATEWAY_URL", &dead));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("cannot reach the gateway"),
        "{}",
        r.describe()
    );

    // Usage errors: exit 2 before any request.
    let r = run(script("deploy/register-with-gateway.sh")
        .current_dir(&app)
        .env("DB_GATEWAY_URL", &gw.url));
    assert_eq!(r.code, 2, "{}", r.describe());
    assert!(r.stderr.contains("PLATFORM_ID"), "{}", r.describe());
    let r = run(&mut migrate(&work.0));
    assert_eq!(r.code, 2, "no schema folder: {}", r.describe());
    assert!(r.stderr.contains("SCHEMA_DIR"), "{}", r.describe());
}

#[tokio::test]
async fn platform_scripts_send_the_admin_token() {
    require_script_tools();
    let token = "admin-token-for-scripts-0123";
    let gw = Gateway::start(&[("ADMIN_TOKEN", token)]);
    let platform = new_platform();
    let work = TempDir::new("token-scripts");
    write_schema(&work.0.join("postgresql"), "tok");
    for (name, with_token, expected) in [
        ("deploy/register-with-gateway.sh", false, 1),
        ("deploy/register-with-gateway.sh", true, 0),
        ("deploy/migrate-schema.sh", false, 1),
        ("deploy/migrate-schema.sh", true, 0),
    ] {
        let mut c = script(name);
        c.current_dir(&work.0)
            .env("DB_GATEWAY_URL", &gw.url)
            .env("PLATFORM_ID", &platform)
            .env("REGISTER_RETRIES", "1");
        if with_token {
            c.env("GATEWAY_TOKEN", token);
        }
        let r = run(&mut c);
        assert_eq!(
            r.code,
            expected,
            "{name} token={with_token}: {}",
            r.describe()
        );
        if !with_token {
            assert!(
                r.stderr.contains("unauthorized") || r.stdout.contains("unauthorized"),
                "{}",
                r.describe()
            );
            assert!(
                r.stderr
                    .contains("hint: the gateway requires a token: set GATEWAY_TOKEN"),
                "{}",
                r.describe()
            );
        }
    }
    // A wrong token: the hint says GATEWAY_TOKEN was refused.
    let r = run(script("deploy/migrate-schema.sh")
        .current_dir(&work.0)
        .env("DB_GATEWAY_URL", &gw.url)
        .env("PLATFORM_ID", &platform)
        .env("GATEWAY_TOKEN", "not-the-admin-token-0123"));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("refused GATEWAY_TOKEN"),
        "{}",
        r.describe()
    );

    // GATEWAY_URL alone works; with both set, DB_GATEWAY_URL wins.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let with_urls = |db_url: Option<&str>, url: &str| {
        let mut c = script("deploy/migrate-schema.sh");
        c.current_dir(&work.0)
            .env("GATEWAY_URL", url)
            .env("PLATFORM_ID", &platform)
            .env("GATEWAY_TOKEN", token);
        if let Some(u) = db_url {
            c.env("DB_GATEWAY_URL", u);
        }
        c
    };
    let r = run(&mut with_urls(None, &gw.url));
    assert_eq!(r.code, 0, "GATEWAY_URL alone: {}", r.describe());
    let r = run(&mut with_urls(Some(&gw.url), &dead));
    assert_eq!(r.code, 0, "DB_GATEWAY_URL wins: {}", r.describe());
    let r = run(&mut with_urls(Some(&dead), &gw.url));
    assert_eq!(r.code, 1, "DB_GATEWAY_URL wins: {}", r.describe());
    assert!(r.stderr.contains(&dead), "{}", r.describe());
    assert_eq!(
        call_greet(&gw, &platform, None).await,
        (200, json!("tok Ann"))
    );
}

#[tokio::test]
async fn register_script_waits_for_a_gateway_that_is_still_starting() {
    require_script_tools();
    let port = closed_port();
    let work = TempDir::new("register-wait");
    write_schema(&work.0.join("src/postgresql"), "early");
    let platform = new_platform();
    let mut child = script("deploy/register-with-gateway.sh")
        .current_dir(&work.0)
        .env("DB_GATEWAY_URL", format!("http://127.0.0.1:{port}"))
        .env("PLATFORM_ID", &platform)
        .env("REGISTER_RETRIES", "90")
        .env("REGISTER_RETRY_DELAY", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start register-with-gateway.sh");
    std::thread::sleep(Duration::from_millis(1500));
    let gw = Gateway::start(&[("GATEWAY_PORT", &port.to_string())]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll the script").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("register-with-gateway.sh still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(out.status.success(), "register did not succeed: {stderr}");
    assert!(stderr.contains("gateway not ready"), "{stderr}");
    assert_eq!(
        call_greet(&gw, &platform, None).await,
        (200, json!("early Ann"))
    );
}

/// The same `notes` table with or without its `extra` column: dropping it
/// is a data-losing change.
fn write_notes_table(dir: &Path, extra: bool) {
    let extra = if extra { ",\n    extra text" } else { "" };
    write(
        &dir.join("tables/notes.pssql"),
        &format!(
            "CREATE TABLE notes (\n    id serial PRIMARY KEY,\n    body text NOT NULL{extra}\n);\n"
        ),
    );
}

async fn has_column(db: &str, table: &str, column: &str) -> bool {
    let c = stonescriptdb_tests::cluster().connect(db).await;
    let row = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = $2",
            &[&table, &column],
        )
        .await
        .expect("information_schema");
    row.get::<_, i64>(0) == 1
}

#[test]
fn generated_scripts_match_their_source() {
    // Each script is generated from deploy/lib/ and committed: the copies
    // must be what the generator writes now, byte for byte.
    let out = TempDir::new("generated-scripts");
    let r = run(Command::new(repo().join("deploy/lib/generate.sh")).arg(&out.0));
    assert_eq!(r.code, 0, "generate.sh: {}", r.describe());
    let common = std::fs::read_to_string(repo().join("deploy/lib/common.sh")).unwrap();
    for name in GENERATED {
        let fresh = std::fs::read(out.0.join(name)).unwrap();
        let committed = std::fs::read(repo().join("deploy").join(name)).unwrap();
        assert!(
            fresh == committed,
            "deploy/{name} differs from what deploy/lib/generate.sh writes: run it and commit the result"
        );
        assert_eq!(
            mode(&out.0.join(name)) & 0o111,
            0o111,
            "{name} not executable"
        );
        // One copy of the shared part, included whole; no include line left.
        let text = String::from_utf8(committed).unwrap();
        assert_eq!(text.matches(common.as_str()).count(), 1, "{name}");
        assert!(!text.contains("# @include"), "{name}");
        // Standalone in a platform container: no jq, no python.
        for tool in ["jq ", "python"] {
            assert!(
                !text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with('#'))
                    .any(|l| l.contains(tool)),
                "{name} uses {tool}"
            );
        }
    }
    // The shared loops are written once: not in the templates.
    for name in GENERATED {
        let template =
            std::fs::read_to_string(repo().join(format!("deploy/lib/{name}.in"))).unwrap();
        let code: Vec<&str> = template
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        for shared in ["curl ", "while ", "tar -c", "awk "] {
            assert!(
                !code.iter().any(|l| l.contains(shared)),
                "deploy/lib/{name}.in has its own `{shared}`"
            );
        }
    }
}

#[test]
fn scripts_refuse_careless_settings_before_any_request() {
    require_script_tools();
    // Nothing listens: a script that sent a request would exit 1, not 2.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let work = TempDir::new("careless-scripts");
    write_schema(&work.0.join("postgresql"), "x");
    for (name, env, says) in [
        (
            "deploy/migrate-schema.sh",
            vec![("FORCE", "yes")],
            "FORCE must be true or false",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("DRY_RUN", "maybe")],
            "DRY_RUN must be true or false",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("PLATFORM_ID", "My App")],
            "PLATFORM_ID='My App' is not a valid name",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("PLATFORM_ID", "a/../b")],
            "PLATFORM_ID",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("DATABASE_ID", "store_1")],
            "DATABASE_ID needs SCHEMA_NAME",
        ),
        (
            "deploy/migrate-schema.sh",
            vec![("DATABASE_ID", "store_1")],
            "DATABASE_ID needs SCHEMA_NAME",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("SCHEMA_NAME", "tenant_db"), ("TENANT_ID", "acme")],
            "TENANT_ID is for /register",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("SCHEMA_NAME", "tenant_db"), ("DATABASE_ID", "a\"b")],
            "DATABASE_ID",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("SCHEMA_NAME", "tenant_db"), ("DRY_RUN", "true")],
            "no dry run",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![
                ("SCHEMA_NAME", "tenant_db"),
                ("DATABASE_ID", "a"),
                ("VERSION", "2.0"),
            ],
            "VERSION must be",
        ),
        (
            "deploy/register-with-gateway.sh",
            vec![("VERSION", "1")],
            "VERSION applies to creating a database",
        ),
        (
            "deploy/migrate-schema.sh",
            vec![("VERSION", "latest")],
            "VERSION must be the number",
        ),
        (
            "deploy/migrate-schema.sh",
            vec![("GATEWAY_PROGRESS_INTERVAL", "0")],
            "GATEWAY_PROGRESS_INTERVAL",
        ),
        (
            "deploy/migrate-schema.sh",
            vec![("GATEWAY_URL", "")],
            "DB_GATEWAY_URL is not set",
        ),
    ] {
        let mut c = script(name);
        c.current_dir(&work.0)
            .env("DB_GATEWAY_URL", &dead)
            .env("PLATFORM_ID", "careless");
        for (k, v) in &env {
            if *k == "GATEWAY_URL" {
                c.env_remove("DB_GATEWAY_URL");
            }
            c.env(k, v);
        }
        let r = run(&mut c);
        assert_eq!(r.code, 2, "{name} {env:?}: {}", r.describe());
        assert!(r.stderr.contains(says), "{name} {env:?}: {}", r.describe());
    }
}

#[tokio::test]
async fn dry_run_plans_and_force_hints_name_the_scripts_own_variables() {
    require_script_tools();
    let gw = Gateway::start(&[]);
    let platform = new_platform();
    let work = TempDir::new("dry-run-scripts");
    let dir = work.0.join("postgresql");
    write_schema(&dir, "hello");
    write_notes_table(&dir, true);
    let script_for = |name: &str| {
        let mut c = script(name);
        c.current_dir(&work.0)
            .env("DB_GATEWAY_URL", &gw.url)
            .env("PLATFORM_ID", &platform);
        c
    };

    // A dry run of a new platform registers nothing and prints the plan.
    let r = run(script_for("deploy/register-with-gateway.sh").env("DRY_RUN", "true"));
    assert_eq!(r.code, 0, "{}", r.describe());
    for want in [
        "dry run",
        "would_create",
        "plan:",
        "tables/notes.pssql",
        "greet",
        "tables altered",
    ] {
        assert!(r.stdout.contains(want), "{want}: {}", r.describe());
    }
    assert!(!database_exists(&format!("{platform}_main")).await);
    let (s, _) = gw.get(&format!("/platform/{platform}/versions")).await;
    assert_eq!(s, 404, "a dry run keeps no archive");

    let r = run(&mut script_for("deploy/register-with-gateway.sh"));
    assert_eq!(r.code, 0, "{}", r.describe());
    let r = run(script_for("deploy/register-with-gateway.sh").env("TENANT_ID", "acme"));
    assert_eq!(r.code, 0, "{}", r.describe());

    // Drop the extra column: data-losing. Dry run: the plan says blocked,
    // the change and the hint are printed, exit 1, nothing changes.
    write_notes_table(&dir, false);
    let change = "notes.extra: column no longer declared in tables/";
    let r = run(script_for("deploy/migrate-schema.sh").env("DRY_RUN", "1"));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(r.stdout.contains("blocked"), "{}", r.describe());
    assert!(
        r.stdout.contains(&format!("data-losing change: {change}")),
        "{}",
        r.describe()
    );
    assert!(r.stdout.contains("FORCE=true"), "{}", r.describe());

    // The real thing without FORCE, one tenant (409 schema_validation_failed)
    // and the whole platform (409 migration_failed, a report per database).
    for tenant in [Some("acme"), None] {
        let mut c = script_for("deploy/migrate-schema.sh");
        if let Some(t) = tenant {
            c.env("TENANT_ID", t);
        }
        let r = run(&mut c);
        assert_eq!(r.code, 1, "{tenant:?}: {}", r.describe());
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains(&format!("data-losing change: {change}")),
            "{}",
            r.describe()
        );
        assert!(
            r.stderr.contains("apply them with FORCE=true"),
            "{}",
            r.describe()
        );
        assert!(
            !all.contains("force=true"),
            "the hint must name FORCE: {}",
            r.describe()
        );
        if tenant.is_none() {
            for db in [format!("{platform}_main"), format!("{platform}_acme")] {
                assert!(
                    r.stderr.contains(&format!("  {db}: failed")),
                    "{}",
                    r.describe()
                );
            }
        }
    }
    assert!(has_column(&format!("{platform}_main"), "notes", "extra").await);
    assert!(has_column(&format!("{platform}_acme"), "notes", "extra").await);

    // FORCE=true: applied; the summary has tables_altered and schema_validation.
    let r = run(script_for("deploy/migrate-schema.sh").env("FORCE", "TRUE"));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(r.stdout.contains("1 tables altered"), "{}", r.describe());
    assert!(
        r.stdout
            .contains("schema_validation: 0 safe, 1 data-losing"),
        "{}",
        r.describe()
    );
    assert!(!has_column(&format!("{platform}_main"), "notes", "extra").await);
    assert!(!has_column(&format!("{platform}_acme"), "notes", "extra").await);
}

#[tokio::test]
async fn v2_script_variants_upload_create_and_migrate_the_fleet() {
    require_script_tools();
    let gw = Gateway::start(&[]);
    let platform = new_platform();
    let work = TempDir::new("v2-scripts");
    let dir = work.0.join("postgresql");
    write_schema(&dir, "v1");
    write_notes_table(&dir, true);
    let script_for = |name: &str, env: &[(&str, &str)]| {
        let mut c = script(name);
        c.current_dir(&work.0)
            .env("DB_GATEWAY_URL", &gw.url)
            .env("PLATFORM_ID", &platform)
            .env("SCHEMA_NAME", "tenant_db")
            .envs(env.iter().copied());
        c
    };
    let db = |id: &str| format!("{platform}_tenant_db_{id}");

    // Migrating a schema never uploaded: 404, and the hint says what to do.
    let r = run(&mut script_for("deploy/migrate-schema.sh", &[]));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("register-with-gateway.sh"),
        "{}",
        r.describe()
    );

    // Upload twice: a new version, then the same content is not one.
    let r = run(&mut script_for("deploy/register-with-gateway.sh", &[]));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stdout.contains("version 1 (a new version"),
        "{}",
        r.describe()
    );
    let r = run(&mut script_for("deploy/register-with-gateway.sh", &[]));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(r.stdout.contains("not a new version"), "{}", r.describe());

    // Create: a dry run creates nothing; then two databases, one pinned.
    let r = run(&mut script_for(
        "deploy/register-with-gateway.sh",
        &[("DATABASE_ID", "a"), ("DRY_RUN", "true")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(r.stdout.contains("would_create"), "{}", r.describe());
    assert!(!database_exists(&db("a")).await);
    let r = run(&mut script_for(
        "deploy/register-with-gateway.sh",
        &[("DATABASE_ID", "a")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stdout.contains(&format!("Created {}", db("a"))),
        "{}",
        r.describe()
    );
    let r = run(&mut script_for(
        "deploy/register-with-gateway.sh",
        &[("DATABASE_ID", "b")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    let r = run(&mut script_for(
        "deploy/register-with-gateway.sh",
        &[("DATABASE_ID", "pinned"), ("VERSION", "1")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(r.stdout.contains("version 1 (pinned)"), "{}", r.describe());
    // Creating it again: refused, exit 1.
    let r = run(&mut script_for(
        "deploy/register-with-gateway.sh",
        &[("DATABASE_ID", "a")],
    ));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("database_already_exists"),
        "{}",
        r.describe()
    );

    // Version 2: a slow migration and a changed function; the fleet
    // migration prints each database as it finishes and waits out loud.
    write_schema(&dir, "v2");
    write_notes_table(&dir, true);
    write(
        &dir.join("migrations/001_slow.sql"),
        "SELECT pg_sleep(1.5);\n",
    );
    let r = run(&mut script_for("deploy/register-with-gateway.sh", &[]));
    assert!(
        r.stdout.contains("version 2 (a new version"),
        "{}",
        r.describe()
    );
    let r = run(&mut script_for(
        "deploy/migrate-schema.sh",
        &[("DRY_RUN", "true")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(
        r.stdout.contains(&format!("] {}: dry_run", db("a"))),
        "{}",
        r.describe()
    );
    assert!(r.stdout.contains("plan:"), "{}", r.describe());
    let (_, g) = gw.post("/call", &json!({"platform": platform, "database": db("a"), "function": "greet", "params": ["Ann"]})).await;
    assert_eq!(
        g["rows"][0]["greet"],
        json!("v1 Ann"),
        "a dry run changes nothing: {g}"
    );

    let r = run(&mut script_for(
        "deploy/migrate-schema.sh",
        &[("GATEWAY_PROGRESS_INTERVAL", "1")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    let lines: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 3, "one line per database: {}", r.describe());
    for id in ["a", "b"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("{}: updated", db(id)))),
            "{}",
            r.describe()
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("{}: pinned", db("pinned")))),
        "{}",
        r.describe()
    );
    assert!(r.stdout.contains("status: completed"), "{}", r.describe());
    assert!(
        r.stderr.contains("... waiting for POST /v2/migrate"),
        "{}",
        r.describe()
    );
    assert!(r.stderr.contains("s so far"), "{}", r.describe());
    let (_, g) = gw.post("/call", &json!({"platform": platform, "database": db("b"), "function": "greet", "params": ["Ann"]})).await;
    assert_eq!(g["rows"][0]["greet"], json!("v2 Ann"), "{g}");

    // Version 3 drops a column: without FORCE every database fails (exit 1,
    // the change and FORCE=true printed), nothing changes; one database with
    // FORCE=true and DATABASE_ID moves alone.
    write_notes_table(&dir, false);
    let r = run(&mut script_for("deploy/register-with-gateway.sh", &[]));
    assert!(r.stdout.contains("version 3"), "{}", r.describe());
    let r = run(&mut script_for("deploy/migrate-schema.sh", &[]));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(
        r.stdout.contains("data-losing change: notes.extra"),
        "{}",
        r.describe()
    );
    assert!(r.stdout.contains("FORCE=true"), "{}", r.describe());
    assert!(!r.stdout.contains("force=true"), "{}", r.describe());
    assert!(has_column(&db("a"), "notes", "extra").await);
    let r = run(&mut script_for(
        "deploy/migrate-schema.sh",
        &[("DATABASE_ID", "a"), ("FORCE", "true")],
    ));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(!has_column(&db("a"), "notes", "extra").await);
    assert!(has_column(&db("b"), "notes", "extra").await);
}

/// The `N passed, M failed` summary line of run-tests.sh.
fn summary(stdout: &str) -> Option<(u32, u32)> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let (p, rest) = line.split_once(" passed, ")?;
    let f = rest.strip_suffix(" failed")?;
    Some((p.parse().ok()?, f.parse().ok()?))
}

#[tokio::test]
async fn smoke_test_script_passes_against_a_running_gateway() {
    require_script_tools();
    let gw = Gateway::start(&[]);
    let r = run(script("tests/run-tests.sh").env("GATEWAY_URL", &gw.url));
    assert_eq!(r.code, 0, "run-tests.sh failed: {}", r.describe());
    let (passed, failed) = summary(&r.stdout)
        .unwrap_or_else(|| panic!("no `N passed, M failed` line: {}", r.describe()));
    assert_eq!(failed, 0, "{}", r.describe());
    assert!(passed >= 10, "only {passed} checks ran: {}", r.describe());
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("FAIL")),
        "{}",
        r.describe()
    );
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("PASS ")).count() as u32,
        passed
    );

    // With tokens on: GATEWAY_TOKEN for the schema routes, and for /call
    // GATEWAY_CALL_TOKEN, else GATEWAY_TOKEN (a gateway without CALL_TOKENS
    // ignores it).
    let admin = "admin-token-for-smoke-0123";
    let gw_admin = Gateway::start(&[("ADMIN_TOKEN", admin)]);
    let r = run(script("tests/run-tests.sh")
        .env("GATEWAY_URL", &gw_admin.url)
        .env("GATEWAY_TOKEN", admin));
    assert_eq!(r.code, 0, "run-tests.sh with ADMIN_TOKEN: {}", r.describe());
    assert_eq!(
        summary(&r.stdout).map(|(_, f)| f),
        Some(0),
        "{}",
        r.describe()
    );
    let r = run(script("tests/run-tests.sh").env("GATEWAY_URL", &gw_admin.url));
    assert_eq!(r.code, 1, "no token, tokens on: {}", r.describe());
    let smoke = new_platform();
    let call = "call-token-for-smoke-0123";
    let gw_call = Gateway::start(&[
        ("ADMIN_TOKEN", admin),
        ("CALL_TOKENS", &format!("{smoke}:{call}")),
    ]);
    let r = run(script("tests/run-tests.sh")
        .env("GATEWAY_URL", &gw_call.url)
        .env("SMOKE_PLATFORM", &smoke)
        .env("GATEWAY_TOKEN", admin)
        .env("GATEWAY_CALL_TOKEN", call));
    assert_eq!(r.code, 0, "run-tests.sh with CALL_TOKENS: {}", r.describe());
    let (passed, failed) = summary(&r.stdout)
        .unwrap_or_else(|| panic!("no `N passed, M failed` line: {}", r.describe()));
    assert_eq!(failed, 0, "{}", r.describe());
    assert!(passed >= 10, "{}", r.describe());

    // Against no gateway it fails, and still prints the summary.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let r = run(script("tests/run-tests.sh").env("GATEWAY_URL", &dead));
    assert_eq!(r.code, 1, "{}", r.describe());
    let (passed, failed) = summary(&r.stdout)
        .unwrap_or_else(|| panic!("no `N passed, M failed` line: {}", r.describe()));
    assert_eq!(passed, 0);
    assert!(failed >= 1);
}

/// `KEY=value` lines the way systemd's `EnvironmentFile=` reads them: comments
/// only at the start of a line, no inline comments, optional quotes.
fn systemd_env_file(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=value: {line:?}"));
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        env.insert(k.trim().to_owned(), v.to_owned());
    }
    env
}

/// A unit file as sections of `(key, value)` in file order.
type Unit = BTreeMap<String, Vec<(String, String)>>;

fn parse_unit(path: &Path) -> Unit {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "{}:{}: no continuation lines expected",
            path.display(),
            n + 1
        );
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_owned());
            unit.entry(name.to_owned()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}:{}: not key=value: {line}", path.display(), n + 1));
        let s = section
            .as_ref()
            .unwrap_or_else(|| panic!("{}:{}: key outside a section", path.display(), n + 1));
        unit.get_mut(s)
            .expect("section exists")
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    unit
}

fn values<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section)
        .map(|kv| {
            kv.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match values(unit, section, key).as_slice() {
        [v] => v,
        other => panic!("[{section}] {key}= expected once, found {other:?}"),
    }
}

/// `Environment=` assignments of a unit.
fn unit_environment(unit: &Unit) -> BTreeMap<String, String> {
    values(unit, "Service", "Environment")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The configuration a service would run with: its `Environment=` lines,
/// overridden by the `EnvironmentFile=` (as systemd does).
fn service_config(unit: &Unit, env_file: &str) -> Config {
    let mut env = unit_environment(unit);
    env.extend(systemd_env_file(env_file));
    Config::from_lookup(|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("the installed env file does not configure the service: {e}"))
}

#[test]
fn installer_stages_files_with_the_right_modes_and_is_idempotent() {
    let bin_dir = binary("stonescriptdb-router")
        .parent()
        .expect("binary dir")
        .to_path_buf();
    let root = TempDir::new("install-root");
    let install = || {
        let mut c = script("deploy/install.sh");
        c.env("INSTALL_ROOT", &root.0)
            .arg("--bin-dir")
            .arg(&bin_dir);
        c
    };
    let r = run(&mut install());
    assert_eq!(r.code, 0, "install.sh failed: {}", r.describe());
    assert!(r.stdout.contains("not creating user"), "{}", r.describe());
    assert!(r.stdout.contains("Next steps"), "{}", r.describe());

    let at = |p: &str| root.0.join(p.trim_start_matches('/'));
    let check = |p: &str, want: u32| {
        assert_eq!(mode(&at(p)), want, "mode of {p}: {:o}", mode(&at(p)));
    };
    check(STATE_DIR, 0o750);
    assert!(at(STATE_DIR).is_dir());
    check("/etc/stonescriptdb-gateway", 0o755);
    check("/etc/stonescriptdb-gateway/env", 0o640);
    for b in [
        "stonescriptdb-router",
        "stonescriptdb-migrator",
        "stonescriptdb",
    ] {
        let p = format!("/usr/local/bin/{b}");
        check(&p, 0o755);
        assert!(
            std::fs::read(at(&p)).unwrap() == std::fs::read(bin_dir.join(b)).unwrap(),
            "{p} differs from the built binary"
        );
    }
    check("/etc/systemd/system/stonescriptdb-migrator.socket", 0o644);
    for u in UNITS {
        let p = format!("/etc/systemd/system/{u}");
        check(&p, 0o644);
        assert_eq!(
            std::fs::read_to_string(at(&p)).unwrap(),
            std::fs::read_to_string(repo().join("systemd").join(u)).unwrap(),
            "{p} differs from systemd/{u}"
        );
    }
    assert!(!at("/usr/local/bin/.stonescriptdb-router.new").exists());

    // The env file is in systemd's syntax and configures both services the
    // same way: state directory and the socket of the units.
    let env_text = std::fs::read_to_string(at("/etc/stonescriptdb-gateway/env")).unwrap();
    for line in env_text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        if let Some((_, v)) = line.split_once('=') {
            assert!(
                !v.contains('#') && v == v.trim(),
                "inline comment or padding systemd would keep in the value: {line:?}"
            );
        }
    }
    let example = std::fs::read_to_string(repo().join("deploy/env.example")).unwrap();
    let keys = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim().to_owned()))
            .collect()
    };
    assert_eq!(
        keys(&env_text),
        keys(&example),
        "every setting of env.example is kept"
    );
    let mut configs = Vec::new();
    for u in UNITS {
        let unit = parse_unit(&at(&format!("/etc/systemd/system/{u}")));
        let c = service_config(&unit, &env_text);
        assert_eq!(c.data_dir, Path::new(STATE_DIR), "{u}");
        assert_eq!(c.migrator_socket, Path::new(SOCKET), "{u}");
        configs.push(c);
    }
    assert_eq!(configs[0], configs[1], "router and migrator read the same");

    // Run again: same result, and an edited env file is kept as it is.
    let edited = format!("{env_text}# edited by the operator\nDB_PASSWORD=s3cret\n");
    std::fs::write(at("/etc/stonescriptdb-gateway/env"), &edited).unwrap();
    let r = run(&mut install());
    assert_eq!(r.code, 0, "second install.sh failed: {}", r.describe());
    assert!(r.stdout.contains("keeping existing"), "{}", r.describe());
    assert_eq!(
        std::fs::read_to_string(at("/etc/stonescriptdb-gateway/env")).unwrap(),
        edited
    );
    check("/etc/stonescriptdb-gateway/env", 0o640);
    check(STATE_DIR, 0o750);
    check("/usr/local/bin/stonescriptdb-router", 0o755);

    // DESTDIR works as well as INSTALL_ROOT; --root as a flag too.
    let other = TempDir::new("install-destdir");
    let r = run(script("deploy/install.sh")
        .env("DESTDIR", &other.0)
        .arg("--bin-dir")
        .arg(&bin_dir));
    assert_eq!(r.code, 0, "{}", r.describe());
    assert!(other.0.join("etc/stonescriptdb-gateway/env").is_file());

    // Errors: unknown flag (2), no binaries (1).
    let r = run(script("deploy/install.sh")
        .arg("--root")
        .arg(&other.0)
        .arg("--nope"));
    assert_eq!(r.code, 2, "{}", r.describe());
    let r = run(script("deploy/install.sh")
        .arg("--root")
        .arg(&other.0)
        .arg("--bin-dir")
        .arg(root.0.join("no-such-dir")));
    assert_eq!(r.code, 1, "{}", r.describe());
    assert!(r.stderr.contains("not found"), "{}", r.describe());
}

#[test]
fn systemd_units_are_hardened_and_agree_on_the_socket() {
    let dir = repo().join("systemd");
    // The migrator's socket is owned by a .socket unit (socket activation),
    // at the path both services use.
    let socket = parse_unit(&dir.join("stonescriptdb-migrator.socket"));
    assert_eq!(one(&socket, "Socket", "ListenStream"), SOCKET);
    assert_eq!(one(&socket, "Socket", "SocketMode"), "0660");
    assert_eq!(one(&socket, "Socket", "SocketUser"), "stonescriptdb");
    assert_eq!(one(&socket, "Install", "WantedBy"), "sockets.target");
    let mut units = BTreeMap::new();
    for u in UNITS {
        let unit = parse_unit(&dir.join(u));
        for s in ["Unit", "Service", "Install"] {
            assert!(unit.contains_key(s), "{u}: no [{s}]");
        }
        let name = u.trim_end_matches(".service");
        assert_eq!(
            one(&unit, "Service", "ExecStart"),
            format!("/usr/local/bin/{name}"),
            "{u}"
        );
        for (k, v) in [
            ("User", "stonescriptdb"),
            ("Group", "stonescriptdb"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("CapabilityBoundingSet", ""),
            ("UMask", "0027"),
            ("Restart", "on-failure"),
            ("EnvironmentFile", "/etc/stonescriptdb-gateway/env"),
            ("WorkingDirectory", STATE_DIR),
        ] {
            assert_eq!(one(&unit, "Service", k), v, "{u}: {k}=");
        }
        assert_eq!(one(&unit, "Install", "WantedBy"), "multi-user.target");
        let env = unit_environment(&unit);
        assert_eq!(
            env.get("MIGRATOR_SOCKET").map(String::as_str),
            Some(SOCKET),
            "{u}"
        );
        assert_eq!(
            env.get("DATA_DIR").map(String::as_str),
            Some(STATE_DIR),
            "{u}"
        );
        units.insert(u, unit);
    }

    let migrator = &units["stonescriptdb-migrator.service"];
    // DATA_DIR is the migrator's StateDirectory= (systemd creates it for the
    // service user); the router may not write there, or anywhere.
    assert_eq!(
        Path::new("/var/lib").join(one(migrator, "Service", "StateDirectory")),
        Path::new(STATE_DIR)
    );
    let router = &units["stonescriptdb-router.service"];
    for k in ["ReadWritePaths", "StateDirectory"] {
        assert!(values(router, "Service", k).is_empty(), "router: {k}=");
    }
    let runtime = one(migrator, "Service", "RuntimeDirectory");
    assert_eq!(
        Path::new(SOCKET).parent(),
        Some(Path::new("/run").join(runtime).as_path()),
        "the socket lives in the migrator's RuntimeDirectory"
    );
    assert_eq!(one(migrator, "Service", "RuntimeDirectoryPreserve"), "yes");
    assert!(
        values(migrator, "Unit", "Requires")
            .iter()
            .any(|v| v.contains("stonescriptdb-migrator.socket")),
        "the migrator service requires its socket unit"
    );

    // The router starts after the migrator but keeps running without it.
    assert!(
        values(router, "Unit", "After").iter().any(|v| v
            .split_whitespace()
            .any(|u| u == "stonescriptdb-migrator.service")),
        "router: After=stonescriptdb-migrator.service"
    );
    for k in ["Requires", "BindsTo", "PartOf", "Requisite"] {
        assert!(
            !values(router, "Unit", k)
                .iter()
                .any(|v| v.contains("stonescriptdb-migrator")),
            "router must not {k}= the migrator"
        );
    }

    // systemd's own parser, where it exists.
    if !have("systemd-analyze") {
        eprintln!(
            "NOTE: systemd-analyze is not installed; checked the units' structure only \
             (apt-get install systemd to verify them with systemd's parser too)"
        );
        return;
    }
    let tmp = TempDir::new("units");
    let mut paths = Vec::new();
    for u in UNITS {
        let name = u.trim_end_matches(".service");
        let text = std::fs::read_to_string(dir.join(u)).unwrap();
        let exe = binary(name);
        let text = text.replace(
            &format!("ExecStart=/usr/local/bin/{name}"),
            &format!("ExecStart={}", exe.display()),
        );
        let p = tmp.0.join(u);
        std::fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let socket_unit = tmp.0.join("stonescriptdb-migrator.socket");
    std::fs::copy(dir.join("stonescriptdb-migrator.socket"), &socket_unit).unwrap();
    paths.push(socket_unit);
    let r = run(Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths));
    assert_eq!(r.code, 0, "systemd-analyze verify: {}", r.describe());
    let complaints: Vec<&str> = r
        .stderr
        .lines()
        .chain(r.stdout.lines())
        .filter(|l| l.contains("stonescriptdb-"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze: {complaints:#?}");

    // And each service's exposure by systemd's own measure: "OK" (<= 2.5).
    for p in &paths[..UNITS.len()] {
        let r = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(p));
        let exposure: f64 = r
            .stdout
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level: {}", r.describe()));
        assert!(
            exposure <= 2.5,
            "{}: exposure {exposure}\n{}",
            p.display(),
            r.stdout
        );
    }
}

#[test]
fn scripts_are_executable_and_pass_shellcheck() {
    for s in SCRIPTS {
        let p = repo().join(s);
        assert_eq!(mode(&p) & 0o111, 0o111, "{s} is not executable");
        let r = run(Command::new("bash").arg("-n").arg(&p));
        assert_eq!(r.code, 0, "bash -n {s}: {}", r.describe());
    }
    if !have("shellcheck") {
        eprintln!("NOTE: shellcheck is not installed; checked the scripts with `bash -n` only");
        return;
    }
    let r = run(Command::new("shellcheck")
        .arg("--severity=style")
        .args(SCRIPTS.iter().map(|s| repo().join(s))));
    assert_eq!(r.code, 0, "shellcheck: {}", r.describe());
}
