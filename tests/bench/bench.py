#!/usr/bin/env python3
"""StoneScriptDB Gateway benchmark (run through tests/bench/run.sh).

Starts a throwaway PostgreSQL cluster and the release gateway, then measures
in one run on this machine:
  * pgbench (prepared `SELECT ping()`) vs /call of ping() through the router
    with wrk, at 1, 8, 32 and 64 clients: req/s, p50/p99/p999, ratio;
  * /call with arguments (add_them(1, 2), six mixed arguments, ten_rows(10))
    against pgbench running the same prepared statement with the same values,
    at 1 and 8 clients, with PostgreSQL's CPU time per call;
  * /call of a function returning 100 rows of mixed types;
  * /call round-robin over 50 tenant databases (pool churn);
  * the router's /call p99 while the migrator migrates 200 tenant databases,
    vs its idle p99, at 1 client and at 8 (saturating) clients; and, as a
    control, the same for pgbench talking to PostgreSQL directly;
  * re-migrating an unchanged schema across 200 databases (time, and proof
    that no DDL ran: catalogs and changelogs unchanged);
  * creating one tenant database;
  * router RSS and CPU time per request.
Writes bench-results/bench-<timestamp>.json and prints a table.
"""
import io, json, os, re, shutil, signal, socket, subprocess, sys, tarfile, tempfile, threading, time, urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PG_BIN = os.environ["PG_BIN_DIR"]
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CLIENTS = [int(c) for c in os.environ.get("BENCH_CLIENTS", "1,8,32,64").split(",")]
# BENCH_ONLY=call: the trivial /call against pgbench only (back-to-back comparisons);
# BENCH_ONLY=args: the calls with arguments against pgbench only;
# BENCH_ONLY=anchor: ping(), add_them(1, 2) and the six-argument call against
#   pgbench direct and through PgBouncer (session pooling), alternating;
# BENCH_ONLY=deploy: the cost of deploying only (one full deployment of the shop
# fixture, and re-migrating an unchanged schema across 200 databases), ROUNDS times
ONLY = os.environ.get("BENCH_ONLY", "")
ONLY_CALL = ONLY == "call"
# the gateway binaries to measure (another build's, to compare two commits)
BIN_DIR = os.environ.get("BENCH_BIN_DIR", os.path.join(ROOT, "target", "release"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
AS_PG = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


class Cluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sdg-bench-pg-")
        if AS_PG:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        sh(AS_PG + [f"{PG_BIN}/initdb", "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-D", self.data])
        opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=400 "
                "-c shared_buffers=256MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        sh(AS_PG + [f"{PG_BIN}/pg_ctl", "-w", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-o", opts, "start"])

    def psql(self, db, sql):
        return sh([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                   "-v", "ON_ERROR_STOP=1", "-qAtc", sql])

    def stop(self):
        subprocess.run(AS_PG + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Gateway:
    def __init__(self, pg, extra=None):
        self.dir = tempfile.mkdtemp(prefix="sdg-bench-gw-")
        self.port = free_port()
        env = dict(os.environ, DB_HOST="127.0.0.1", DB_PORT=str(pg.port), DB_USER="postgres", DB_NAME="postgres",
                   GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(self.port), DATA_DIR=self.dir,
                   MIGRATOR_SOCKET=os.path.join(self.dir, "m.sock"), RUST_LOG="warn")
        env.update(extra or {})
        env.pop("DATABASE_URL", None)
        log = open(os.path.join(self.dir, "log"), "w")
        rel = BIN_DIR
        self.migrator = subprocess.Popen([os.path.join(rel, "stonescriptdb-migrator")], env=env, cwd=self.dir,
                                         stdout=subprocess.PIPE, stderr=log, text=True)
        self.migrator.stdout.readline()
        self.router = subprocess.Popen([os.path.join(rel, "stonescriptdb-router")], env=env, cwd=self.dir,
                                       stdout=subprocess.PIPE, stderr=log, text=True)
        self.router.stdout.readline()
        self.url = f"http://127.0.0.1:{self.port}"

    def post(self, path, body=None, data=None, headers=None, timeout=600):
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def upload(self, path, fields, archive):
        boundary = "sdgbench" + str(time.time_ns())
        parts = []
        for k, v in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="schema"; filename="s.tar.gz"\r\n'
                     f'Content-Type: application/gzip\r\n\r\n'.encode() + archive + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        return self.post(path, data=b"".join(parts), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def cpu_seconds(self, proc=None):
        """CPU time of the router (or of `proc`, e.g. self.migrator) so far."""
        with open(f"/proc/{(proc or self.router).pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self):
        with open(f"/proc/{self.router.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        for p in (self.router, self.migrator):
            p.send_signal(signal.SIGTERM)
        for p in (self.router, self.migrator):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def tar_gz(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for path, content in sorted(files.items()):
            data = content.encode()
            info = tarfile.TarInfo("postgresql/" + path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SCHEMA = {
    "functions/ping.sql": "CREATE OR REPLACE FUNCTION ping() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
    "functions/rows100.sql": """CREATE OR REPLACE FUNCTION rows100() RETURNS TABLE (
        id int, name text, price numeric(10,2), ratio float8, active bool, created timestamptz, tags text[], meta jsonb)
      LANGUAGE sql STABLE AS $$
        SELECT g, 'item ' || g, (g * 1.25)::numeric(10,2), g / 7.0, g % 2 = 0,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour', ARRAY['a', 'b' || g],
               jsonb_build_object('n', g, 'even', g % 2 = 0)
        FROM generate_series(1, 100) g $$;""",
    "functions/add_them.sql": "CREATE OR REPLACE FUNCTION add_them(a int DEFAULT 1, b int DEFAULT 2) RETURNS int "
                              "LANGUAGE sql AS $$ SELECT a + b $$;",
    "functions/six_args.sql": """CREATE OR REPLACE FUNCTION six_args(n int, t text, amount numeric, id uuid, at timestamptz, meta jsonb)
      RETURNS int LANGUAGE sql AS $$ SELECT n + length(t) + amount::int + length(id::text) + extract(day FROM at)::int + jsonb_array_length(meta -> 'k') $$;""",
    "functions/ten_rows.sql": """CREATE OR REPLACE FUNCTION ten_rows(n int) RETURNS TABLE (id int, name text, price numeric(10,2))
      LANGUAGE sql STABLE AS $$ SELECT g, 'item ' || g, (g * 1.25)::numeric(10,2) FROM generate_series(1, n) g $$;""",
    "tables/items.sql": "CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL);",
    "migrations/001_seed.sql": "INSERT INTO items (name) SELECT 'i' || g FROM generate_series(1, 100) g;",
}


def wrk(url, clients, seconds, script):
    lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lua.write(script + """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
""")
    lua.close()
    out = sh(["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{seconds}s", "-s", lua.name, url])
    os.unlink(lua.name)
    n, dur, p50, p99, p999, bad_status, errors = map(int, re.search(r"RESULT (.*)", out).group(1).split())
    return {"requests": n, "rps": n / (dur / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "p999_ms": p999 / 1000, "non_2xx": bad_status, "socket_errors": errors}


def call_script(body):
    return f"""wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{json.dumps(body)}'
"""


class PgBouncer:
    """PgBouncer (Debian's package) in front of the cluster, session pooling
    (prepared statements work), the lightest extra hop there is: the anchor
    the gateway's `/call` is measured against (issue 32)."""

    def __init__(self, pg, db):
        self.dir = tempfile.mkdtemp(prefix="sdg-bench-pgbouncer-")
        if AS_PG:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(f"""[databases]
{db} = host=127.0.0.1 port={pg.port} dbname={db}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
pool_mode = session
max_client_conn = 400
default_pool_size = 100
logfile = {self.dir}/log
pidfile = {self.dir}/pid
""")
        with open(os.path.join(self.dir, "users.txt"), "w") as f:
            f.write('"postgres" ""\n')
        if AS_PG:
            for name in os.listdir(self.dir):
                shutil.chown(os.path.join(self.dir, name), "postgres", "postgres")
        sh(AS_PG + [PGBOUNCER, "-d", ini])
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)

    def stop(self):
        try:
            with open(os.path.join(self.dir, "pid")) as f:
                os.kill(int(f.read().strip()), 15)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbench(pg, db, clients, seconds, sql, extra=()):
    f = tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False)
    f.write(sql + "\n")
    f.close()
    out = sh([f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-n", "-M", "prepared",
              "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds), *extra, "-f", f.name, db])
    os.unlink(f.name)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    return {"tps": tps, "latency_avg_ms": lat}


def pgbench_latencies(pg, db, clients, seconds, sql):
    """pgbench() with a per-transaction log; returns (end time as epoch
    seconds, latency in ms) of every transaction."""
    d = tempfile.mkdtemp(prefix="sdg-bench-pgbench-")
    try:
        pgbench(pg, db, clients, seconds, sql, ["-l", "--log-prefix", os.path.join(d, "log")])
        out = []
        for name in os.listdir(d):
            with open(os.path.join(d, name)) as f:
                for line in f:
                    # client_id transaction_no time_us script_no epoch_s epoch_us
                    p = line.split()
                    out.append((int(p[4]) + int(p[5]) / 1e6, int(p[2]) / 1000))
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * q))] if v else None


def router_call_histogram(gw):
    """Cumulative /call 2xx latency buckets from the router's own /metrics,
    plus "sum" (seconds) under the key None. (Builds before cac3b3e label
    the class `status`, later ones `status_class`.)"""
    with urllib.request.urlopen(gw.url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'stonescriptdb_router_request_duration_seconds_bucket\{route="/call",status(?:_class)?="2xx",le="([^"]+)"\} (\d+)', text):
        out[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = int(m.group(2))
    m = re.search(r'stonescriptdb_router_request_duration_seconds_sum\{route="/call",status(?:_class)?="2xx"\} (\S+)', text)
    out[None] = float(m.group(1)) if m else 0.0
    return out


def histogram_mean_ms(before, after):
    n = after.get(float("inf"), 0) - before.get(float("inf"), 0)
    return (after[None] - before[None]) * 1000 / n if n else None


def histogram_p99_ms(before, after):
    """99th percentile of the requests between two snapshots, interpolated
    linearly inside its bucket (as Prometheus' histogram_quantile does)."""
    delta = {le: after.get(le, 0) - before.get(le, 0) for le in after if le is not None}
    total = delta.get(float("inf"), 0)
    if not total:
        return None
    rank = 0.99 * total
    lower, below = 0.0, 0
    for le in sorted(delta):
        if delta[le] >= rank:
            if le == float("inf"):
                return lower * 1000
            inside = delta[le] - below
            return (lower + (le - lower) * ((rank - below) / inside if inside else 1.0)) * 1000
        lower, below = le, delta[le]
    return None


def machine_cpu_seconds():
    """CPU time the whole machine spent busy (every process: migrator, PostgreSQL, ...)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds():
    """CPU time of every PostgreSQL process so far, with the time of the
    backends that already ended (the postmaster's children's time)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                data = f.read()
        except OSError:
            continue
        if data[data.index("(") + 1:data.rindex(")")] != "postgres":
            continue
        fields = data.rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


# Calls with arguments: (name, /call body, the same call as pgbench's prepared SQL)
ARG_CALLS = [
    ("add_them(1, 2)", {"platform": "bench", "function": "add_them", "params": [1, 2]},
     "SELECT add_them(1, 2);"),
    ("six_args(int, text, numeric, uuid, timestamptz, jsonb)",
     {"platform": "bench", "function": "six_args",
      "params": [42, "hello", 12.50, "3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b", "2024-01-02T03:04:05+02:00", {"k": [1, 2]}]},
     "SELECT six_args(42, 'hello', 12.50, '3f2b8c1e-0d4a-4b7e-9a61-2c5d8e9f0a1b', '2024-01-02T03:04:05+02:00', '{\"k\": [1, 2]}');"),
    ("ten_rows(10)", {"platform": "bench", "function": "ten_rows", "params": [10]},
     "SELECT * FROM ten_rows(10);"),
]


def calls_with_arguments(pg, gw, results):
    """Each ARG_CALLS function at 1 and 8 clients, ROUNDS pgbench / wrk
    pairs back to back (the pair with the median ratio is reported), with
    PostgreSQL's CPU time per call (and per pgbench transaction) and the
    router's."""
    out = []
    for name, body, sql in ARG_CALLS:
        status, answer = gw.post("/call", body)
        assert status == 200, answer
        for c in [c for c in CLIENTS if c in (1, 8)] or [1, 8]:
            pairs = []
            for _ in range(ROUNDS):
                p0 = postgres_cpu_seconds()
                pgb = pgbench(pg, "bench_main", c, SECONDS, sql)
                time.sleep(1)  # pgbench's backends end, and their time reaches the postmaster
                pg_cpu_pgbench = postgres_cpu_seconds() - p0
                p0, r0 = postgres_cpu_seconds(), gw.cpu_seconds()
                w = wrk(gw.url + "/call", c, SECONDS, call_script(body))
                pg_cpu, router_cpu = postgres_cpu_seconds() - p0, gw.cpu_seconds() - r0
                n = max(w["requests"], 1)
                pairs.append({"call": name, "clients": c, "pgbench_tps": pgb["tps"], "gateway_rps": w["rps"],
                              "ratio": w["rps"] / pgb["tps"], "gateway_p50_ms": w["p50_ms"], "gateway_p99_ms": w["p99_ms"],
                              "non_2xx": w["non_2xx"] + w["socket_errors"],
                              "postgres_cpu_us_per_call": pg_cpu * 1e6 / n,
                              "postgres_cpu_us_per_pgbench_transaction": pg_cpu_pgbench * 1e6 / max(pgb["tps"] * SECONDS, 1),
                              "router_cpu_us_per_request": router_cpu * 1e6 / n})
            row = sorted(pairs, key=lambda r: r["ratio"])[len(pairs) // 2]
            row["ratios_of_all_rounds"] = [r["ratio"] for r in pairs]
            out.append(row)
    results["calls_with_arguments"] = out


def anchored_calls(pg, gw, results):
    """ping(), add_them(1, 2) and the six-argument call at each client
    count: pgbench straight to PostgreSQL, the same pgbench through
    PgBouncer, and the gateway's /call, alternating, ROUNDS times (the round
    with the median gateway / PgBouncer ratio is reported). At 1 client also
    the client-side p50 and p99 latency of each, and what PgBouncer and the
    gateway add over direct."""
    bouncer = PgBouncer(pg, "bench_main")
    calls = [("ping()", {"platform": "bench", "function": "ping", "params": []}, "SELECT ping();")] + ARG_CALLS
    out = []
    try:
        for name, body, sql in calls:
            status, answer = gw.post("/call", body)
            assert status == 200, answer
            for c in CLIENTS:
                rounds = []
                for _ in range(ROUNDS):
                    row = {"call": name, "clients": c}
                    if c == 1:
                        for label, target in [("direct", pg), ("pgbouncer", bouncer)]:
                            lat = sorted(l for _, l in pgbench_latencies(target, "bench_main", 1, SECONDS, sql))
                            row[f"{label}_tps"] = len(lat) / SECONDS
                            row[f"{label}_p50_ms"] = percentile(lat, 0.50)
                            row[f"{label}_p99_ms"] = percentile(lat, 0.99)
                    else:
                        row["direct_tps"] = pgbench(pg, "bench_main", c, SECONDS, sql)["tps"]
                        row["pgbouncer_tps"] = pgbench(bouncer, "bench_main", c, SECONDS, sql)["tps"]
                    w = wrk(gw.url + "/call", c, SECONDS, call_script(body))
                    row.update({"gateway_rps": w["rps"], "gateway_p50_ms": w["p50_ms"], "gateway_p99_ms": w["p99_ms"],
                                "non_2xx": w["non_2xx"] + w["socket_errors"]})
                    row["pgbouncer_of_direct"] = row["pgbouncer_tps"] / row["direct_tps"]
                    row["gateway_of_direct"] = w["rps"] / row["direct_tps"]
                    row["gateway_of_pgbouncer"] = w["rps"] / row["pgbouncer_tps"]
                    rounds.append(row)
                # the median round; of an even number, the lower of the two
                # middle ones (never the better of two rounds)
                row = sorted(rounds, key=lambda r: r["gateway_of_pgbouncer"])[(len(rounds) - 1) // 2]
                row["gateway_of_pgbouncer_all_rounds"] = [r["gateway_of_pgbouncer"] for r in rounds]
                out.append(row)
    finally:
        bouncer.stop()
    results["anchored_calls"] = out
    results["router_rss_kib"] = gw.rss_kib()


def report_anchored(results):
    print("call | clients | direct tps | PgBouncer / direct | gateway / direct | gateway / PgBouncer (each round) | "
          "gateway p99 ms | at 1 client, p50 ms direct / PgBouncer / gateway | p99 ms direct / PgBouncer / gateway")
    for r in results["anchored_calls"]:
        lat = " | "
        if r["clients"] == 1:
            lat = (f"{r['direct_p50_ms']:.3f} / {r['pgbouncer_p50_ms']:.3f} / {r['gateway_p50_ms']:.3f} | "
                   f"{r['direct_p99_ms']:.3f} / {r['pgbouncer_p99_ms']:.3f} / {r['gateway_p99_ms']:.3f}")
        rounds = " ".join(f"{x:.2f}" for x in r["gateway_of_pgbouncer_all_rounds"])
        print(f"{r['call']} | {r['clients']} | {r['direct_tps']:.0f} | {r['pgbouncer_of_direct']:.2f} | "
              f"{r['gateway_of_direct']:.2f} | {r['gateway_of_pgbouncer']:.2f} ({rounds}) | "
              f"{r['gateway_p99_ms']:.3f} | {lat}")
    print(f"router RSS after the load: {results['router_rss_kib'] / 1024:.1f} MiB")


def shop_fixture():
    root = os.path.join(ROOT, "tests", "fixtures", "shop", "postgresql")
    files = {}
    for folder in sorted(os.listdir(root)):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            with open(os.path.join(root, folder, name)) as f:
                files[f"{folder}/{name}"] = f.read()
    return files


def deploy_costs(gw, results):
    """One full deployment (the shop fixture into a new database), an
    unchanged schema re-migrated across 200 databases, and a new version with
    two changed functions (a body, a return type) migrated across them,
    ROUNDS times each:
    wall time, the machine's CPU time (migrator and PostgreSQL alike) and the
    migrator's own."""
    shop = tar_gz(shop_fixture())
    full = []
    for i in range(ROUNDS):
        m0, c0, t0 = gw.cpu_seconds(gw.migrator), machine_cpu_seconds(), time.perf_counter()
        status, body = gw.upload("/register", {"platform": "deploybench", "tenant_id": f"full{i}"}, shop)
        assert status == 200, body
        full.append({"seconds": time.perf_counter() - t0, "cpu_seconds": machine_cpu_seconds() - c0,
                     "migrator_cpu_seconds": gw.cpu_seconds(gw.migrator) - m0})
    assert gw.post("/platform/register", {"platform": "fleet"})[0] == 201
    assert gw.upload("/platform/fleet/schema", {"schema_name": "tenant_db"}, tar_gz(SCHEMA))[0] == 201
    for i in range(200):
        status, body = gw.post("/database/create", {"platform": "fleet", "schema_name": "tenant_db", "database_id": f"d{i:03d}"})
        assert status == 201, body
    fleet = []
    for _ in range(ROUNDS):
        m0, c0, t0 = gw.cpu_seconds(gw.migrator), machine_cpu_seconds(), time.perf_counter()
        status, body = gw.post("/v2/migrate", {"platform": "fleet", "schema_name": "tenant_db", "force": True})
        assert status == 200, body
        secs, cpu = time.perf_counter() - t0, machine_cpu_seconds() - c0
        fleet.append({"seconds": secs, "cpu_seconds": cpu, "cpu_ms_per_database": cpu * 1000 / 200,
                      "migrator_cpu_seconds": gw.cpu_seconds(gw.migrator) - m0})
    # a new version in each round: one function's body changed (replaced in
    # place across the 200 databases) and one function's return type changed
    # (dropped and created again: PostgreSQL refuses to replace it)
    changed = []
    for r in range(ROUNDS):
        version = dict(SCHEMA)
        version["functions/ping.sql"] = f"CREATE OR REPLACE FUNCTION ping() RETURNS int LANGUAGE sql AS $$ SELECT {r + 2} $$;"
        returns = "bigint" if r % 2 == 0 else "int"
        version["functions/ten_rows.sql"] = (
            f"CREATE OR REPLACE FUNCTION ten_rows(n int) RETURNS TABLE (id {returns}, name text, price numeric(10,2)) "
            "LANGUAGE sql STABLE AS $$ SELECT g, 'item ' || g, (g * 1.25)::numeric(10,2) FROM generate_series(1, n) g $$;")
        assert gw.upload("/platform/fleet/schema", {"schema_name": "tenant_db"}, tar_gz(version))[0] == 201
        m0, c0, t0 = gw.cpu_seconds(gw.migrator), machine_cpu_seconds(), time.perf_counter()
        status, body = gw.post("/v2/migrate", {"platform": "fleet", "schema_name": "tenant_db"})
        assert status == 200, body
        assert len(body["databases_updated"]) == 200, body
        secs, cpu = time.perf_counter() - t0, machine_cpu_seconds() - c0
        changed.append({"seconds": secs, "cpu_seconds": cpu, "cpu_ms_per_database": cpu * 1000 / 200,
                        "migrator_cpu_seconds": gw.cpu_seconds(gw.migrator) - m0})
    results["full_deployment"] = full
    results["remigrate_unchanged_200_rounds"] = fleet
    results["migrate_changed_functions_200_rounds"] = changed


def catalog_fingerprint(pg, db):
    return pg.psql(db, "SELECT (SELECT sum(xmin::text::bigint) FROM pg_class) || '/' || "
                       "(SELECT sum(xmin::text::bigint) FROM pg_proc) || '/' || "
                       "(SELECT count(*) FROM _stonescriptdb_gateway_changelog)")


def main():
    results = {"machine": {"cpus": os.cpu_count(), "kernel": os.uname().release}, "seconds_per_phase": SECONDS,
               "rounds_per_client_count": ROUNDS}
    try:
        results["git_commit"] = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).strip()
        if BIN_DIR != os.path.join(ROOT, "target", "release"):
            results["git_commit"] += f" (binaries from {BIN_DIR})"
    except Exception:
        results["git_commit"] = "unknown"
    pg = Cluster()
    gw = Gateway(pg)
    try:
        archive = tar_gz(SCHEMA)
        status, body = gw.upload("/register", {"platform": "bench"}, archive)
        assert status == 200, body
        results["postgres"] = pg.psql("postgres", "SHOW server_version").strip()
        if ONLY == "deploy":
            deploy_costs(gw, results)
            return report(results)
        if ONLY == "args":
            calls_with_arguments(pg, gw, results)
            return report(results)
        if ONLY == "anchor":
            anchored_calls(pg, gw, results)
            return report(results)

        # 1. trivial function: pgbench vs /call. This machine's throughput
        # drifts by 10-20% between 10-second runs, so each client count runs
        # ROUNDS pgbench / wrk pairs back to back and reports the pair with
        # the median ratio (all ratios are kept in the JSON).
        rows = []
        for c in CLIENTS:
            pairs = []
            for _ in range(ROUNDS):
                pgb = pgbench(pg, "bench_main", c, SECONDS, "SELECT ping();")
                cpu0 = gw.cpu_seconds()
                w = wrk(gw.url + "/call", c, SECONDS, call_script({"platform": "bench", "function": "ping", "params": []}))
                cpu = gw.cpu_seconds() - cpu0
                pairs.append({"clients": c, "pgbench_tps": pgb["tps"], "pgbench_latency_avg_ms": pgb["latency_avg_ms"],
                              "gateway_rps": w["rps"], "gateway_p50_ms": w["p50_ms"], "gateway_p99_ms": w["p99_ms"],
                              "gateway_p999_ms": w["p999_ms"], "non_2xx": w["non_2xx"] + w["socket_errors"],
                              "ratio": w["rps"] / pgb["tps"], "router_cpu_us_per_request": cpu * 1e6 / max(w["requests"], 1)})
            row = sorted(pairs, key=lambda r: r["ratio"])[len(pairs) // 2]
            row["ratios_of_all_rounds"] = [r["ratio"] for r in pairs]
            rows.append(row)
        results["trivial_call"] = rows
        results["router_rss_kib"] = gw.rss_kib()
        if ONLY_CALL:
            return report(results)

        # 1b. calls with arguments
        calls_with_arguments(pg, gw, results)

        # 2. 100 rows of mixed types
        pgb = pgbench(pg, "bench_main", 8, SECONDS, "SELECT * FROM rows100();")
        w = wrk(gw.url + "/call", 8, SECONDS, call_script({"platform": "bench", "function": "rows100"}))
        results["rows100"] = {"clients": 8, "pgbench_tps": pgb["tps"], "gateway_rps": w["rps"],
                              "gateway_p99_ms": w["p99_ms"], "ratio": w["rps"] / pgb["tps"],
                              "non_2xx": w["non_2xx"]}

        # 3. 50 tenant databases round-robin
        for i in range(50):
            status, body = gw.upload("/register", {"platform": "bench", "tenant_id": f"t{i:02d}"}, archive)
            assert status == 200, body
        rr = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format('{"platform":"bench","tenant_id":"t%02d","function":"ping"}', counter % 50))
end
"""
        w = wrk(gw.url + "/call", 32, SECONDS, rr)
        results["tenants_round_robin"] = {"tenants": 50, "clients": 32, "gateway_rps": w["rps"],
                                          "gateway_p99_ms": w["p99_ms"], "non_2xx": w["non_2xx"]}

        # 4. 200 v2 tenant databases; create time; p99 idle vs during a fleet migration
        assert gw.post("/platform/register", {"platform": "fleet"})[0] == 201
        tenant = dict(SCHEMA)
        assert gw.upload("/platform/fleet/schema", {"schema_name": "tenant_db"}, tar_gz(tenant))[0] == 201
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            status, body = gw.post("/database/create", {"platform": "fleet", "schema_name": "tenant_db", "database_id": f"d{i:03d}"})
            assert status == 201, body
            times.append(time.perf_counter() - t0)
        results["create_tenant_database_ms"] = {"first_with_template_build": times[0] * 1000,
                                                "median": sorted(times[1:])[len(times) // 2] * 1000,
                                                "total_200_s": sum(times)}
        # The router's p99 comes from its own /metrics histogram over exactly
        # the requests served while the migration ran (SPEC: "router p99").
        # wrk's client-side percentiles are kept for reference only: under
        # load they contradict wrk's own throughput (Little's law).
        ping = call_script({"platform": "bench", "function": "ping"})
        steps = iter(range(2, 100))

        def start_migration():
            """A new migration and a changed function for the fleet, migrated
            in the background; returns the thread and what it fills in."""
            step = next(steps)
            tenant[f"migrations/{step:03d}_col.sql"] = f"ALTER TABLE items ADD COLUMN note{step} TEXT;"
            tenant["functions/ping.sql"] = f"CREATE OR REPLACE FUNCTION ping() RETURNS int LANGUAGE sql AS $$ SELECT {step} $$;"
            assert gw.upload("/platform/fleet/schema", {"schema_name": "tenant_db"}, tar_gz(tenant))[0] == 201
            mig = {}

            def migrate():
                mig["start"] = time.time()
                t0 = time.perf_counter()
                mig["status"], mig["body"] = gw.post("/v2/migrate", {"platform": "fleet", "schema_name": "tenant_db"})
                mig["seconds"] = time.perf_counter() - t0
                mig["end"] = time.time()
                mig["histogram"] = router_call_histogram(gw)
            th = threading.Thread(target=migrate)
            th.start()
            return th, mig

        during_migration = []
        for c in (1, 8):
            h0 = router_call_histogram(gw)
            idle = wrk(gw.url + "/call", c, SECONDS, ping)
            h1 = router_call_histogram(gw)
            th, mig = start_migration()
            during = wrk(gw.url + "/call", c, SECONDS, ping)
            h_wrk_end = router_call_histogram(gw)
            th.join()
            assert mig["status"] == 200, mig["body"]
            # the window ends with the migration, or with wrk if it ended first
            h2 = mig["histogram"] if mig["seconds"] < SECONDS else h_wrk_end
            idle_p99, during_p99 = histogram_p99_ms(h0, h1), histogram_p99_ms(h1, h2)
            during_migration.append({
                "clients": c, "router_idle_p99_ms": idle_p99, "router_during_p99_ms": during_p99,
                "router_ratio": during_p99 / idle_p99,
                "router_idle_mean_ms": histogram_mean_ms(h0, h1), "router_during_mean_ms": histogram_mean_ms(h1, h2),
                "requests_during": h2.get(float("inf"), 0) - h1.get(float("inf"), 0),
                "idle_rps": idle["rps"], "during_rps": during["rps"],
                "wrk_idle_p99_ms": idle["p99_ms"], "wrk_during_p99_ms": during["p99_ms"],
                "migrate_200_seconds": mig["seconds"],
                "databases_updated": len(mig["body"]["databases_updated"])})
        results["p99_during_fleet_migration"] = during_migration

        # 4b. control: pgbench's own latencies (no gateway) idle vs during the
        # same kind of migration, over the transactions that ended while it ran
        direct = []
        for c in (1, 8):
            idle = [ms for _, ms in pgbench_latencies(pg, "bench_main", c, SECONDS, "SELECT ping();")]
            th, mig = start_migration()
            lat = pgbench_latencies(pg, "bench_main", c, SECONDS, "SELECT ping();")
            th.join()
            assert mig["status"] == 200, mig["body"]
            during = [ms for end, ms in lat if mig["start"] <= end <= mig["end"]]
            window = min(mig["end"], max(end for end, _ in lat)) - mig["start"]
            direct.append({
                "clients": c, "idle_p99_ms": percentile(idle, 0.99), "during_p99_ms": percentile(during, 0.99),
                "ratio": percentile(during, 0.99) / percentile(idle, 0.99),
                "idle_mean_ms": sum(idle) / len(idle), "during_mean_ms": sum(during) / len(during),
                "idle_tps": len(idle) / SECONDS, "during_tps": len(during) / window,
                "migrate_200_seconds": mig["seconds"]})
        results["pgbench_p99_during_fleet_migration"] = direct

        # 5. re-migrate the unchanged schema across 200 databases (forced, so every database is visited)
        dbs = [f"fleet_tenant_db_d{i:03d}" for i in range(200)]
        before = {d: catalog_fingerprint(pg, d) for d in dbs}
        t0 = time.perf_counter()
        status, body = gw.post("/v2/migrate", {"platform": "fleet", "schema_name": "tenant_db", "force": True})
        secs = time.perf_counter() - t0
        assert status == 200, body
        after = {d: catalog_fingerprint(pg, d) for d in dbs}
        changed = [d for d in dbs if before[d] != after[d]]
        results["remigrate_unchanged_200"] = {"seconds": secs, "databases_with_catalog_changes": len(changed),
                                              "no_ddl_ran": not changed}
    finally:
        gw.stop()
        pg.stop()
    return report(results)


def report_args(results):
    print("\ncalls with arguments | clients | pgbench tps | /call req/s |  ratio | p99 ms | PostgreSQL CPU us/call "
          "(pgbench) | router CPU us/req | errors | ratios of the rounds")
    for r in results["calls_with_arguments"]:
        print(f"{r['call'][:20]:>20} | {r['clients']:>7} | {r['pgbench_tps']:>11.0f} | {r['gateway_rps']:>11.0f} | "
              f"{r['ratio']:>6.1%} | {r['gateway_p99_ms']:>6.2f} | {r['postgres_cpu_us_per_call']:>8.1f} "
              f"({r['postgres_cpu_us_per_pgbench_transaction']:>5.1f}) | {r['router_cpu_us_per_request']:>17.1f} | "
              f"{r['non_2xx']:>6} | " + " ".join(f"{x:.1%}" for x in r["ratios_of_all_rounds"]))


def report(results):
    out_dir = os.path.join(ROOT, "bench-results")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, time.strftime("bench-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    if ONLY == "args":
        print(f"\nStoneScriptDB Gateway calls with arguments (commit {results['git_commit']}, {SECONDS}s per phase, "
              f"{ROUNDS} rounds)")
        report_args(results)
        print(f"\nwritten to {path}")
        return 0
    if ONLY == "anchor":
        print(f"\nStoneScriptDB Gateway /call against pgbench direct and through PgBouncer "
              f"(commit {results['git_commit']}, {SECONDS}s per phase, {ROUNDS} rounds)")
        report_anchored(results)
        print(f"\nwritten to {path}")
        return 0
    if ONLY == "deploy":
        print(f"\nStoneScriptDB Gateway deployment costs (commit {results['git_commit']})")
        for r in results["full_deployment"]:
            print(f"one full deployment (shop fixture, new database): {r['seconds'] * 1000:.0f} ms, "
                  f"machine CPU {r['cpu_seconds'] * 1000:.0f} ms, migrator CPU {r['migrator_cpu_seconds'] * 1000:.0f} ms")
        for name, key in [("re-migrate unchanged x200", "remigrate_unchanged_200_rounds"),
                          ("migrate two changed functions x200", "migrate_changed_functions_200_rounds")]:
            for r in results[key]:
                print(f"{name}: {r['seconds']:.2f} s, machine CPU {r['cpu_seconds']:.2f} s "
                      f"({r['cpu_ms_per_database']:.1f} ms per database), migrator CPU {r['migrator_cpu_seconds']:.2f} s")
        print(f"\nwritten to {path}")
        return 0
    print(f"\nStoneScriptDB Gateway benchmark  (commit {results['git_commit']}, PostgreSQL {results['postgres']}, "
          f"{results['machine']['cpus']} CPUs, {SECONDS}s per phase, {ROUNDS} rounds per client count)\n")
    print(f"clients | pgbench tps | /call req/s |  ratio | p50 ms | p99 ms | p999 ms | router CPU us/req | errors | "
          f"ratios of the {ROUNDS} rounds")
    for r in results["trivial_call"]:
        print(f"{r['clients']:>7} | {r['pgbench_tps']:>11.0f} | {r['gateway_rps']:>11.0f} | {r['ratio']:>6.1%} | "
              f"{r['gateway_p50_ms']:>6.2f} | {r['gateway_p99_ms']:>6.2f} | {r['gateway_p999_ms']:>7.2f} | "
              f"{r['router_cpu_us_per_request']:>17.1f} | {r['non_2xx']:>6} | "
              + " ".join(f"{x:.1%}" for x in r["ratios_of_all_rounds"]))
    if ONLY_CALL:
        print(f"\nrouter RSS after the load: {results['router_rss_kib'] / 1024:.1f} MiB\n\nwritten to {path}")
        return 0
    report_args(results)
    r = results["rows100"]
    print(f"\n100 rows of mixed types (8 clients): pgbench {r['pgbench_tps']:.0f} tps, /call {r['gateway_rps']:.0f} req/s "
          f"({r['ratio']:.1%}), p99 {r['gateway_p99_ms']:.2f} ms")
    r = results["tenants_round_robin"]
    print(f"50 tenant databases round-robin (32 clients): {r['gateway_rps']:.0f} req/s, p99 {r['gateway_p99_ms']:.2f} ms, errors {r['non_2xx']}")
    for r in results["p99_during_fleet_migration"]:
        print(f"router /call p99 at {r['clients']} client(s): idle {r['router_idle_p99_ms']:.3f} ms, while migrating "
              f"200 databases {r['router_during_p99_ms']:.3f} ms (ratio {r['router_ratio']:.2f}); mean "
              f"{r['router_idle_mean_ms']:.3f} -> {r['router_during_mean_ms']:.3f} ms; "
              f"{r['idle_rps']:.0f} -> {r['during_rps']:.0f} req/s; the migration took {r['migrate_200_seconds']:.1f} s")
    for r in results["pgbench_p99_during_fleet_migration"]:
        print(f"  control, pgbench direct at {r['clients']} client(s): p99 {r['idle_p99_ms']:.3f} -> {r['during_p99_ms']:.3f} ms "
              f"(ratio {r['ratio']:.2f}); mean {r['idle_mean_ms']:.3f} -> {r['during_mean_ms']:.3f} ms; "
              f"{r['idle_tps']:.0f} -> {r['during_tps']:.0f} tps; the migration took {r['migrate_200_seconds']:.1f} s")
    r = results["remigrate_unchanged_200"]
    print(f"re-migrate unchanged schema over 200 databases: {r['seconds']:.1f} s, databases with catalog changes: "
          f"{r['databases_with_catalog_changes']}")
    r = results["create_tenant_database_ms"]
    print(f"create one tenant database: {r['median']:.0f} ms (first one, building the template: {r['first_with_template_build']:.0f} ms)")
    print(f"router RSS after the load: {results['router_rss_kib'] / 1024:.1f} MiB\n\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
