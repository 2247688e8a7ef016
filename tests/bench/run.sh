#!/usr/bin/env bash
# Benchmark runner: builds the gateway (release), starts its own PostgreSQL
# cluster and gateway, and measures /call against pgbench on the same function
# in one run, plus the scenarios of docs/BENCHMARKS.md. Installs what it needs
# (PostgreSQL server, wrk) from Debian's packages. Results: a table on stdout
# and JSON in bench-results/bench-<timestamp>.json.
#
#   tests/bench/run.sh                 # full run (about 7 minutes)
#   BENCH_SECONDS=5 tests/bench/run.sh # shorter load phases
#   BENCH_ROUNDS=1 tests/bench/run.sh  # one pgbench / wrk pair per client count
#   BENCH_CLIENTS=1,8 BENCH_ONLY=call tests/bench/run.sh
#                                      # the trivial /call against pgbench only
#   BENCH_ONLY=args tests/bench/run.sh
#                                      # the calls with arguments against pgbench only
#   BENCH_ONLY=anchor tests/bench/run.sh
#                                      # ping(), add_them(1, 2) and the six-argument call
#                                      # against pgbench direct and through PgBouncer
#   BENCH_ONLY=deploy tests/bench/run.sh
#                                      # deploying only: a full deployment, an unchanged
#                                      # re-migration of 200 databases, and a version with
#                                      # two changed functions over them, BENCH_ROUNDS times
#   BENCH_BIN_DIR=/other/target/release tests/bench/run.sh
#                                      # measure another build's binaries (to compare
#                                      # two commits back to back)
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/postgres-local.sh
PG_BIN_DIR=$(sdg_ensure_pg_bin)
export PG_BIN_DIR
if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found: installing it..." >&2
  sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
fi
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
  echo "pgbouncer not found: installing it..." >&2
  sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
fi
for tool in pgbench psql; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "$PG_BIN_DIR/$tool" ] || { echo "$tool not found" >&2; exit 1; }
done
cargo build --release --bins --quiet
exec python3 tests/bench/bench.py "$@"
