#!/usr/bin/env bash
# Run every test of the workspace: unit tests and end-to-end tests against a
# throwaway PostgreSQL cluster the harness starts itself. Installs Debian's
# `postgresql` package first when no server binaries are present.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/postgres-local.sh
if [ -z "${DATABASE_URL:-}" ]; then
  PG_BIN_DIR=$(sdg_ensure_pg_bin)
  export PG_BIN_DIR
fi
exec cargo test --workspace "$@"
