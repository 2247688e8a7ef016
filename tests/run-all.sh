#!/usr/bin/env bash
# Run every test of the workspace: unit tests and end-to-end tests against a
# throwaway PostgreSQL cluster the harness starts itself. Installs Debian's
# `postgresql` package first when no server binaries are present.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/postgres-local.sh
# The platform-side scripts and the smoke test need curl and tar; the TLS
# tests make their certificates with openssl.
for tool in curl tar openssl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool not found: installing it..." >&2
    sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >&2
  fi
done
# systemd-analyze checks the service units (verify, security exposure); the
# test says so and checks less where it cannot be installed.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-analyze not found: installing systemd..." >&2
  { sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
      && sdg_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >&2; } \
    || echo "could not install systemd; the unit tests check less" >&2
fi
if [ -z "${DATABASE_URL:-}" ]; then
  PG_BIN_DIR=$(sdg_ensure_pg_bin)
  export PG_BIN_DIR
fi
exec cargo test --workspace "$@"
