# shellcheck shell=bash
# Helpers shared by deploy/run.sh and tests/run-all.sh (source this file).
# Finds PostgreSQL server binaries, installing Debian's `postgresql` package
# when none are present, and runs them as the `postgres` user when we are root
# (initdb and postgres refuse to run as root).

sdg_find_pg_bin() {
  local d
  if [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/initdb" ]; then echo "$PG_BIN_DIR"; return 0; fi
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  return 1
}

sdg_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else
    echo "need root to run: $* (install sudo or run as root)" >&2; return 1; fi
}

# Print the server bin dir, installing the postgresql package if needed.
sdg_ensure_pg_bin() {
  local d
  if d=$(sdg_find_pg_bin); then echo "$d"; return 0; fi
  echo "PostgreSQL server binaries not found: installing Debian's postgresql package..." >&2
  sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  if d=$(sdg_find_pg_bin); then echo "$d"; return 0; fi
  echo "PostgreSQL server binaries still not found after installing postgresql" >&2
  return 1
}

# Run a command as the postgres user when we are root.
sdg_pg_run() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
