#!/usr/bin/env bash
# Start StoneScriptDB Gateway from this checkout (release build) in the foreground.
#
# If no database is configured (neither DB_HOST nor DATABASE_URL in the
# environment or in ./.env), it sets up and starts a local PostgreSQL cluster
# under $DATA_DIR/postgres (port $LOCAL_PG_PORT, default 5433; trust auth,
# listening on 127.0.0.1 and a socket in that directory only), installing
# Debian's `postgresql` package when absent, and stops it again on exit.
# LOCAL_PG_PORT is this script's own setting, read from the environment only
# (not from .env; the gateway's binaries do not read it): LOCAL_PG_PORT=5434
# deploy/run.sh. Documented in README ("Configuration") and QUICKSTART.
# Starts stonescriptdb-migrator and stonescriptdb-router; extra arguments go to
# both (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/postgres-local.sh

dotenv_get() { [ -f .env ] && sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" .env | tail -n 1 | tr -d '"'"'" || true; }
DATA_DIR=${DATA_DIR:-$(dotenv_get DATA_DIR)}
DATA_DIR=${DATA_DIR:-./data}
mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
export DATA_DIR

started_pg=""
pg_bin=""
pg_dir="$DATA_DIR/postgres"
cleanup() {
  if [ -n "$started_pg" ]; then
    echo "stopping local PostgreSQL ($pg_dir)" >&2
    sdg_pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

if [ -z "${DB_HOST:-}" ] && [ -z "${DATABASE_URL:-}" ] && [ -z "$(dotenv_get DB_HOST)" ] && [ -z "$(dotenv_get DATABASE_URL)" ]; then
  pg_bin=$(sdg_ensure_pg_bin)
  port=${LOCAL_PG_PORT:-5433}
  mkdir -p "$pg_dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$pg_dir"
    if ! runuser -u postgres -- test -w "$pg_dir"; then
      echo "the postgres user cannot reach $pg_dir (a parent directory is not traversable); set DATA_DIR elsewhere, e.g. DATA_DIR=/var/lib/stonescriptdb-gateway" >&2
      exit 1
    fi
  fi
  if [ ! -f "$pg_dir/data/PG_VERSION" ]; then
    echo "initialising a local PostgreSQL cluster in $pg_dir/data" >&2
    sdg_pg_run "$pg_bin/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$pg_dir/data" >/dev/null
  fi
  if ! sdg_pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" status >/dev/null 2>&1; then
    sdg_pg_run "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
      -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null
    started_pg=1
    echo "local PostgreSQL started on 127.0.0.1:$port (log: $pg_dir/server.log)" >&2
  fi
  export DB_HOST=127.0.0.1 DB_PORT=$port DB_USER=postgres DB_NAME=postgres
fi

# Cargo's own progress (on stderr): a first build compiles every dependency
# and takes minutes on a small machine; later ones take seconds.
echo "building the gateway (release)..." >&2
cargo build --release --bins
# Both processes: the migrator (schema routes, Unix socket) and the router.
# Either can be restarted alone; stopping this script stops both.
migrator_pid=""
router_pid=""
stop_all() {
  for p in $router_pid $migrator_pid; do kill -TERM "$p" 2>/dev/null || true; done
}
trap stop_all TERM INT
target/release/stonescriptdb-migrator "$@" &
migrator_pid=$!
target/release/stonescriptdb-router "$@" &
router_pid=$!
status=0
wait "$router_pid" || status=$?
# a trapped signal interrupts `wait`: wait again for both to drain
stop_all
for p in $router_pid $migrator_pid; do
  while kill -0 "$p" 2>/dev/null; do wait "$p" 2>/dev/null || true; done
done
exit "$status"
