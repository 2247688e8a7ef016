//! Test harness for StoneScriptDB Gateway.
//!
//! * [`cluster`] starts one throwaway PostgreSQL cluster per test process:
//!   server binaries from `PG_BIN_DIR`, else `pg_config --bindir`, else the
//!   newest `/usr/lib/postgresql/*/bin`; `initdb` runs as the `postgres` user
//!   when we are root; `fsync=off`, a free port, its Unix socket in the temp
//!   directory; a watchdog stops it and removes the directory when the test
//!   process exits, however it exits. With `DATABASE_URL` set, that server is
//!   used instead. Without server binaries the harness fails and says how to
//!   install them; it never skips.
//! * [`TestDb`] gives each test its own platform and database, cloned from a
//!   prepared template.
//! * [`Gateway`] starts the real `stonescriptdb-router` binary (built on first
//!   use) against that cluster and speaks HTTP to it.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub use serde_json::{json, Value};

/// Where the test cluster listens.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// Server binaries (None for an external `DATABASE_URL` server).
    pub bin_dir: Option<PathBuf>,
    /// Data directory of our own cluster.
    pub data_dir: Option<PathBuf>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a PostgreSQL server binary, as `postgres` when we are root.
fn pg_cmd(bin_dir: &Path, tool: &str) -> Command {
    let exe = bin_dir.join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    }
}

/// Locate the PostgreSQL server binaries.
pub fn find_pg_bin_dir() -> Result<PathBuf, String> {
    let has_initdb = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(d) = std::env::var("PG_BIN_DIR") {
        let d = PathBuf::from(d);
        return if has_initdb(&d) {
            Ok(d)
        } else {
            Err(format!("PG_BIN_DIR={} has no initdb/pg_ctl", d.display()))
        };
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&d) {
            return Ok(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let d = e.path().join("bin");
            has_initdb(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d).ok_or_else(|| {
        "PostgreSQL server binaries not found (no initdb in PG_BIN_DIR, `pg_config --bindir` or \
         /usr/lib/postgresql/*/bin). Install them with `sudo apt-get install -y postgresql` \
         (Debian/Ubuntu), set PG_BIN_DIR, or point DATABASE_URL at a server you own."
            .to_string()
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster for this test process, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => external(&url),
        _ => start_cluster()
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}")),
    })
}

fn external(url: &str) -> Cluster {
    let cfg: tokio_postgres::Config = url
        .parse()
        .expect("DATABASE_URL must be a valid PostgreSQL URL");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    Cluster {
        host,
        port: cfg.get_ports().first().copied().unwrap_or(5432),
        user: cfg.get_user().unwrap_or("postgres").to_owned(),
        password: cfg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        bin_dir: None,
        data_dir: None,
    }
}

fn start_cluster() -> Result<Cluster, String> {
    start_cluster_with("", |_| {})
}

/// Another cluster of this test process, for a test that needs a server
/// set up otherwise: `setup` gets the data directory after `initdb`, before
/// the server starts (to write `pg_hba.conf`, certificates); `opts` are
/// extra server options (`-c ssl=on`). Its [`Cluster::host`] is its Unix
/// socket directory, which `pg_hba.conf` should trust for the test's own
/// connections. Stopped and removed when the test process exits.
pub fn extra_cluster(opts: &str, setup: impl FnOnce(&Path)) -> Result<Cluster, String> {
    let mut c = start_cluster_with(opts, setup)?;
    c.host = c
        .data_dir
        .as_ref()
        .and_then(|d| d.parent())
        .map(|r| r.display().to_string())
        .unwrap_or_default();
    Ok(c)
}

/// Give `path` (a file or directory written by this process) to the
/// `postgres` user when we are root, so that the server can read it.
pub fn give_to_postgres(path: &Path) {
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status();
    }
}

fn start_cluster_with(extra_opts: &str, setup: impl FnOnce(&Path)) -> Result<Cluster, String> {
    let bin = find_pg_bin_dir()?;
    let root = std::env::temp_dir().join(format!(
        "sdg-test-pg-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&root)
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err(format!("chown postgres {} failed", root.display()));
        }
    }
    let data = root.join("data");
    let out = pg_cmd(&bin, "initdb")
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    setup(&data);
    give_to_postgres(&data);
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB -c timezone=UTC \
         {extra_opts}",
        root.display()
    );
    let out = pg_cmd(&bin, "pg_ctl")
        .args(["-w", "-t", "60", "-D"])
        .arg(&data)
        .args(["-l"])
        .arg(root.join("server.log"))
        .args(["-o", &opts, "start"])
        .output()
        .map_err(|e| format!("pg_ctl start: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
        return Err(format!(
            "pg_ctl start failed: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    spawn_watchdog(&bin, &root, &data);
    Ok(Cluster {
        host: "127.0.0.1".into(),
        port,
        user: "postgres".into(),
        password: None,
        bin_dir: Some(bin),
        data_dir: Some(data),
    })
}

/// A detached shell that waits for this process to exit, then stops the
/// cluster and removes its directory.
fn spawn_watchdog(bin: &Path, root: &Path, data: &Path) {
    let pg_ctl = bin.join("pg_ctl");
    let as_pg = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {as_pg}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{root}'",
        pid = std::process::id(),
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        root = root.display()
    );
    let _ = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .or_else(|_| {
            Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        });
}

impl Cluster {
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(dbname);
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// A fresh connection (its driver task runs on the caller's runtime).
    pub async fn connect(&self, dbname: &str) -> Client {
        let (client, conn) = self
            .config(dbname)
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect to {dbname}: {e}"));
        tokio::spawn(conn);
        client
    }

    /// Environment for a gateway process that should use this cluster.
    pub fn gateway_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DB_HOST".to_string(), self.host.clone()),
            ("DB_PORT".to_string(), self.port.to_string()),
            ("DB_USER".to_string(), self.user.clone()),
            ("DB_NAME".to_string(), "postgres".to_string()),
        ];
        if let Some(p) = &self.password {
            env.push(("DB_PASSWORD".to_string(), p.clone()));
        }
        env
    }

    /// `pg_ctl` restart/stop/start of our own cluster (fault tests).
    pub fn pg_ctl(&self, action: &str, extra: &[&str]) -> std::process::Output {
        let bin = self.bin_dir.as_ref().expect("own cluster");
        let data = self.data_dir.as_ref().expect("own cluster");
        // The server must not inherit our pipes (output() would wait for it).
        let log = data.parent().unwrap_or(data).join("server.log");
        pg_cmd(bin, "pg_ctl")
            .args(["-w", "-D"])
            .arg(data)
            .arg("-l")
            .arg(log)
            .args(extra)
            .arg(action)
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl runs")
    }
}

/// Fixture objects every test database starts with (the template).
pub const FIXTURE_SQL: &str = include_str!("fixture.sql");

static TEMPLATE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
/// Per process, so test runs sharing a `DATABASE_URL` server do not collide.
fn template_db() -> String {
    format!("sdg_test_template_{}", std::process::id())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A test's own platform and its `{platform}_main` database.
pub struct TestDb {
    pub platform: String,
    pub database: String,
}

impl TestDb {
    /// A new platform whose `_main` database holds the fixture functions.
    pub async fn new() -> TestDb {
        let c = cluster();
        ensure_template(c).await;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let platform = format!("t{}x{n}", std::process::id());
        let database = format!("{platform}_main");
        create_db_from_template(c, &database).await;
        TestDb { platform, database }
    }

    /// Another database of this platform (a tenant), cloned from the template.
    pub async fn tenant(&self, tenant_id: &str) -> String {
        let name = format!("{}_{tenant_id}", self.platform);
        create_db_from_template(cluster(), &name).await;
        name
    }

    pub async fn client(&self) -> Client {
        cluster().connect(&self.database).await
    }

    /// Run SQL in this test's database.
    pub async fn exec(&self, sql: &str) {
        self.client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

async fn create_db_from_template(c: &Cluster, name: &str) {
    let admin = c.connect("postgres").await;
    // CREATE DATABASE ... TEMPLATE needs the template to have no other
    // sessions; retry briefly if another test is cloning it right now.
    let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE {}", template_db());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match admin.batch_execute(&sql).await {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline && e.to_string().contains("being accessed") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{sql}: {e:?}"),
        }
    }
}

async fn ensure_template(c: &Cluster) {
    let template_db = template_db();
    let template_db = template_db.as_str();
    TEMPLATE
        .get_or_init(|| async {
            let admin = c.connect("postgres").await;
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {template_db}"))
                .await
                .expect("drop old template");
            admin
                .batch_execute(&format!("CREATE DATABASE {template_db}"))
                .await
                .expect("create template");
            let t = c.connect(template_db).await;
            t.batch_execute(FIXTURE_SQL)
                .await
                .unwrap_or_else(|e| panic!("fixture.sql: {e:?}"));
        })
        .await;
}

/// The workspace's target directory for this build profile (`target/debug`).
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("test binary lives in target/<profile>/deps")
}

static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// Path of a gateway binary (or the `stonescriptdb` CLI), building the
/// binaries once per test process so the tests never run a stale one.
pub fn binary(name: &str) -> PathBuf {
    let dir = BUILT
        .get_or_init(|| {
            let dir = target_profile_dir();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&workspace).args([
                "build",
                "--quiet",
                "--bins",
                "-p",
                "stonescriptdb-router",
                "-p",
                "stonescriptdb-migrator",
                "-p",
                "stonescriptdb-cli",
            ]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let out = cmd.output().map_err(|e| format!("cargo build: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cargo build failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(dir)
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    dir.join(name)
}

/// A running gateway: `stonescriptdb-migrator` on a Unix socket in a temp
/// directory and `stonescriptdb-router` on a free port; killed when dropped.
pub struct Gateway {
    child: Child,
    migrator: Option<Child>,
    pub url: String,
    pub port: u16,
    pub socket: PathBuf,
    pub stderr_path: PathBuf,
    env: Vec<(String, String)>,
    pub data_dir: TempDir,
}

/// A router started by [`Gateway::another_router`].
pub struct ExtraRouter {
    child: Child,
    pub url: String,
}

impl Drop for ExtraRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("sdg-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Spawn a gateway binary and wait for its start line on stdout.
fn spawn_with_start_line(
    name: &str,
    dir: &Path,
    env: &[(String, String)],
    log: &Path,
) -> Result<(Child, String), String> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    let mut child = Command::new(binary(name))
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("spawn {name}: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => Ok((child, line)),
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            Err(format!(
                "{name}: no start line; exit {status:?}; stderr: {log}"
            ))
        }
    }
}

impl Gateway {
    /// Start migrator and router against the test cluster, with extra environment.
    pub fn start(extra_env: &[(&str, &str)]) -> Gateway {
        Self::try_start(extra_env).unwrap_or_else(|e| panic!("gateway did not start: {e}"))
    }

    /// Start both; `Err` carries an exit status and stderr.
    pub fn try_start(extra_env: &[(&str, &str)]) -> Result<Gateway, String> {
        let data = TempDir::new("gw");
        let socket = data.0.join("migrator.sock");
        let mut env: Vec<(String, String)> = vec![
            ("GATEWAY_HOST".into(), "127.0.0.1".into()),
            ("GATEWAY_PORT".into(), "0".into()),
            ("DATA_DIR".into(), data.0.display().to_string()),
            ("MIGRATOR_SOCKET".into(), socket.display().to_string()),
            ("RUST_LOG".into(), "info".into()),
        ];
        env.extend(cluster().gateway_env());
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let stderr_path = data.0.join("gateway.log");
        let (migrator, _) =
            spawn_with_start_line("stonescriptdb-migrator", &data.0, &env, &stderr_path)?;
        let (child, line) =
            match spawn_with_start_line("stonescriptdb-router", &data.0, &env, &stderr_path) {
                Ok(x) => x,
                Err(e) => {
                    let mut m = migrator;
                    let _ = m.kill();
                    let _ = m.wait();
                    return Err(e);
                }
            };
        let url = line
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or_else(|| format!("unexpected start line {line:?}"))?
            .to_owned();
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Ok(Gateway {
            child,
            migrator: Some(migrator),
            url,
            port,
            socket,
            stderr_path,
            env,
            data_dir: data,
        })
    }

    /// Kill the migrator (SIGKILL), leaving the router running.
    pub fn kill_migrator(&mut self) {
        if let Some(mut m) = self.migrator.take() {
            let _ = m.kill();
            let _ = m.wait();
        }
    }

    /// Start the migrator again (after [`Gateway::kill_migrator`]).
    pub fn restart_migrator(&mut self) {
        self.kill_migrator();
        let (m, _) = spawn_with_start_line(
            "stonescriptdb-migrator",
            &self.data_dir.0,
            &self.env,
            &self.stderr_path,
        )
        .unwrap_or_else(|e| panic!("migrator did not restart: {e}"));
        self.migrator = Some(m);
    }

    /// Another router in front of the same migrator and catalog (the
    /// scale-out shape: stateless routers behind a balancer), on its own
    /// free port; stopped when dropped.
    pub fn another_router(&self) -> ExtraRouter {
        let (child, line) = spawn_with_start_line(
            "stonescriptdb-router",
            &self.data_dir.0,
            &self.env,
            &self.stderr_path,
        )
        .unwrap_or_else(|e| panic!("second router did not start: {e}"));
        let url = line.rsplit(' ').next().unwrap_or_default().to_owned();
        ExtraRouter { child, url }
    }

    pub fn migrator_pid(&self) -> Option<u32> {
        self.migrator.as_ref().map(Child::id)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Wait for the process to exit; `None` if it is still running at the deadline.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// POST JSON to `path`; returns status and parsed body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = http()
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read(resp).await
    }

    /// POST a raw body to `path`.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = http()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read(resp).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = http()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        read(resp).await
    }

    /// Hand databases made outside the gateway (a [`TestDb`] and its
    /// tenants) to `platform` through `POST /admin/adopt`, as an operator
    /// would: ownership is recorded in the control catalog, never inferred
    /// from names, so `/call` reaches only what was adopted or created.
    pub async fn adopt(&self, platform: &str, databases: &[&str]) {
        let mut req = http()
            .post(format!("{}/admin/adopt", self.url))
            .json(&json!({"platform": platform, "databases": databases}));
        if let Some((_, t)) = self.env.iter().find(|(k, _)| k == "ADMIN_TOKEN") {
            req = req.bearer_auth(t);
        }
        let (s, b) = read(req.send().await.expect("POST /admin/adopt")).await;
        assert_eq!(s, 200, "adopting {databases:?} for {platform}: {b}");
    }

    /// The control catalog database this gateway uses (`CATALOG_DB`).
    pub fn catalog_db(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "CATALOG_DB")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "stonescriptdb_gateway".into())
    }

    /// A connection to the control catalog (as the admin role).
    pub async fn catalog(&self) -> Client {
        cluster().connect(&self.catalog_db()).await
    }

    /// [`Gateway::adopt`] of a test database (its `_main`).
    pub async fn adopt_db(&self, db: &TestDb) {
        self.adopt(&db.platform, &[&db.database]).await;
    }

    /// Register a new v2 platform (`POST /platform/register`, 201) and return
    /// its name.
    pub async fn register_platform(&self) -> String {
        let p = new_platform();
        let (s, b) = self
            .post("/platform/register", &serde_json::json!({ "platform": p }))
            .await;
        assert_eq!(s, 201, "{b}");
        p
    }

    /// `/call` with positional or named `params`.
    pub async fn call(&self, platform: &str, function: &str, params: Value) -> (u16, Value) {
        self.post(
            "/call",
            &json!({"platform": platform, "function": function, "params": params}),
        )
        .await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_migrator();
    }
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client")
    })
}

async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(_) => Value::String(text),
    };
    (status, body)
}

/// A schema folder held in memory: relative paths (`functions/ping.pssql`)
/// to contents, loaded from `tests/fixtures/<name>/postgresql` and edited by
/// tests before being packed as the tar.gz a platform would upload.
#[derive(Clone, Debug, Default)]
pub struct SchemaDir {
    pub files: std::collections::BTreeMap<String, String>,
}

impl SchemaDir {
    pub fn fixture(name: &str) -> SchemaDir {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
            .join("postgresql");
        let mut files = std::collections::BTreeMap::new();
        for folder in std::fs::read_dir(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        {
            let folder = folder.expect("dir entry").path();
            for f in std::fs::read_dir(&folder).expect("folder") {
                let f = f.expect("file").path();
                let rel = format!(
                    "{}/{}",
                    folder.file_name().unwrap().to_string_lossy(),
                    f.file_name().unwrap().to_string_lossy()
                );
                files.insert(rel, std::fs::read_to_string(&f).expect("utf-8 fixture"));
            }
        }
        SchemaDir { files }
    }

    pub fn set(&mut self, path: &str, content: &str) -> &mut Self {
        self.files.insert(path.to_owned(), content.to_owned());
        self
    }

    pub fn remove(&mut self, path: &str) -> &mut Self {
        assert!(self.files.remove(path).is_some(), "{path} not in schema");
        self
    }

    pub fn get(&self, path: &str) -> &str {
        self.files
            .get(path)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{path} not in schema"))
    }

    /// tar.gz with a `postgresql/` wrapper folder, as `tar -czf x.tar.gz postgresql` makes it.
    pub fn tar_gz(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, content) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder
                .append_data(
                    &mut header,
                    format!("postgresql/{path}"),
                    content.as_bytes(),
                )
                .expect("append to tar");
        }
        builder
            .into_inner()
            .and_then(|gz| gz.finish())
            .expect("finish tar.gz")
    }
}

impl Gateway {
    /// Multipart POST of a schema archive (`/register` or `/migrate`).
    pub async fn upload(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        archive: Vec<u8>,
    ) -> (u16, Value) {
        self.upload_as(path, fields, "schema", archive).await
    }

    /// Multipart POST with the archive in `file_field` (`schema`, or the v2
    /// alias `file`).
    pub async fn upload_as(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file_field: &str,
        archive: Vec<u8>,
    ) -> (u16, Value) {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let part = reqwest::multipart::Part::bytes(archive)
            .file_name("schema.tar.gz")
            .mime_str("application/gzip")
            .expect("mime");
        form = form.part(file_field.to_owned(), part);
        let resp = http()
            .post(format!("{}{path}", self.url))
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read(resp).await
    }

    pub async fn register(
        &self,
        platform: &str,
        tenant: Option<&str>,
        schema: &SchemaDir,
    ) -> (u16, Value) {
        let mut fields = vec![("platform", platform)];
        if let Some(t) = tenant {
            fields.push(("tenant_id", t));
        }
        self.upload("/register", &fields, schema.tar_gz()).await
    }

    pub async fn migrate(
        &self,
        platform: &str,
        tenant: Option<&str>,
        schema: &SchemaDir,
        force: bool,
    ) -> (u16, Value) {
        let mut fields = vec![("platform", platform)];
        if let Some(t) = tenant {
            fields.push(("tenant_id", t));
        }
        if force {
            fields.push(("force", "true"));
        }
        self.upload("/migrate", &fields, schema.tar_gz()).await
    }
}

/// Certificates made with openssl: a CA, a server certificate it signed for
/// 127.0.0.1 only, and a second CA that signed nothing here.
pub struct Certs {
    _dir: TempDir,
    pub ca: String,
    pub other_ca: String,
    pub cert: String,
    pub key: String,
}

pub fn certs() -> Certs {
    let dir = TempDir::new("certs");
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let script = format!(
        "set -e
         openssl req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=sdg-test-ca
         openssl req -x509 {ec} -keyout other.key -out other.crt -days 2 -subj /CN=sdg-other-ca
         openssl req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext.cnf"
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(&dir.0)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = |f: &str| dir.0.join(f).display().to_string();
    Certs {
        ca: path("ca.crt"),
        other_ca: path("other.crt"),
        cert: path("server.crt"),
        key: path("server.key"),
        _dir: dir,
    }
}

/// A platform as StoneScriptPHP's CLI sees it: its name and its platform
/// token (`POST /admin/platform-token`), sending every request with it.
pub struct PlatformClient {
    pub url: String,
    pub platform: String,
    pub token: String,
}

impl PlatformClient {
    /// Register `platform` (v2) with `admin_token` and take its token.
    pub async fn register(gw: &Gateway, platform: &str, admin_token: &str) -> PlatformClient {
        let admin = PlatformClient {
            url: gw.url.clone(),
            platform: platform.to_owned(),
            token: admin_token.to_owned(),
        };
        let (s, b) = admin
            .send("/platform/register", Some(json!({ "platform": platform })))
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = admin
            .send(
                "/admin/platform-token",
                Some(json!({ "platform": platform })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        PlatformClient {
            token: b["token"].as_str().expect("a token").to_owned(),
            ..admin
        }
    }

    /// POST `body` as JSON to `path`, or GET it without one.
    pub async fn send(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let req = match body {
            Some(b) => http().post(url).json(&b),
            None => http().get(url),
        };
        let r = req
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        read(r).await
    }

    /// Upload `schema` as a version of `schema_name` (201): the answer.
    pub async fn upload(&self, schema_name: &str, schema: &SchemaDir) -> Value {
        let form = reqwest::multipart::Form::new()
            .text("schema_name", schema_name.to_owned())
            .part(
                "schema",
                reqwest::multipart::Part::bytes(schema.tar_gz()).file_name("s.tar.gz"),
            );
        let r = http()
            .post(format!("{}/platform/{}/schema", self.url, self.platform))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let (status, b) = read(r).await;
        assert_eq!(status, 201, "{b}");
        b
    }
}

/// A fresh platform name (no database created).
pub fn new_platform() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("p{}x{n}", std::process::id())
}

/// Does a database exist on the test cluster?
pub async fn database_exists(name: &str) -> bool {
    let c = cluster().connect("postgres").await;
    !c.query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query pg_database")
        .is_empty()
}

/// Counts DDL commands run in `db` from now on (an event trigger logs them).
pub async fn watch_ddl(db: &str) -> Client {
    let c = cluster().connect(db).await;
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS test_ddl_log (tag text, at timestamptz DEFAULT clock_timestamp());
         CREATE OR REPLACE FUNCTION test_log_ddl() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
         BEGIN INSERT INTO test_ddl_log (tag) VALUES (tg_tag); END $$;
         DROP EVENT TRIGGER IF EXISTS test_ddl_watch;
         CREATE EVENT TRIGGER test_ddl_watch ON ddl_command_start EXECUTE FUNCTION test_log_ddl();
         TRUNCATE test_ddl_log;",
    )
    .await
    .expect("install DDL watch");
    c
}

/// DDL commands logged since [`watch_ddl`].
pub async fn ddl_count(c: &Client) -> i64 {
    c.query_one("SELECT count(*) FROM test_ddl_log", &[])
        .await
        .unwrap()
        .get(0)
}
