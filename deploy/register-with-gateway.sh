#!/usr/bin/env bash
# Register a platform's schema folder with StoneScriptDB Gateway (POST /register).
# Copy this script into your platform (it is self-contained) and run it on
# container start-up or from CI:
#
#   DB_GATEWAY_URL=http://10.0.0.5:9000 PLATFORM_ID=myapp ./scripts/register-with-gateway.sh
#
# Creates {platform}_main (or {platform}_{TENANT_ID}) when missing and deploys
# the whole folder; running it again is harmless (unchanged = nothing deployed).
#
# Environment:
#   DB_GATEWAY_URL   gateway base URL (required), e.g. http://10.0.0.5:9000
#   PLATFORM_ID      platform name, [a-z][a-z0-9_]* (required)
#   TENANT_ID        tenant id (optional): register {platform}_{tenant_id}
#   SCHEMA_DIR       schema folder (default ./src/postgresql, else ./postgresql)
#   FORCE            true to accept edited migrations / changed types
#   GATEWAY_TOKEN    bearer token: the platform's DEPLOY_TOKENS token (or ADMIN_TOKEN), when the gateway sets tokens (optional)
#   REGISTER_RETRIES      attempts while the gateway is unreachable or
#                         answers 503 (default 10)
#   REGISTER_RETRY_DELAY  seconds between attempts (default 3)
#   GATEWAY_TIMEOUT       seconds one request may take (default 300)
#
# Exit status: 0 registered; 1 the gateway refused (HTTP >= 400, its error is
# printed) or could not be reached; 2 bad usage (missing variable, no folder).
# Needs bash, curl and tar; prints a summary with jq when present, else raw JSON.
set -euo pipefail

ENDPOINT=/register
PROG=${0##*/}

die() { echo "$PROG: $*" >&2; exit 2; }

[ -n "${DB_GATEWAY_URL:-}" ] || die "DB_GATEWAY_URL is not set (e.g. DB_GATEWAY_URL=http://10.0.0.5:9000)"
[ -n "${PLATFORM_ID:-}" ] || die "PLATFORM_ID is not set (e.g. PLATFORM_ID=myapp)"
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v tar >/dev/null 2>&1 || die "tar is required"
GATEWAY=${DB_GATEWAY_URL%/}
TENANT_ID=${TENANT_ID:-}
FORCE=${FORCE:-false}
RETRIES=${REGISTER_RETRIES:-10}
RETRY_DELAY=${REGISTER_RETRY_DELAY:-3}
TIMEOUT=${GATEWAY_TIMEOUT:-300}
case "$RETRIES" in '' | *[!0-9]* | 0) die "REGISTER_RETRIES must be a positive integer" ;; esac
case "$RETRY_DELAY" in '' | *[!0-9]*) die "REGISTER_RETRY_DELAY must be a number of seconds" ;; esac

if [ -z "${SCHEMA_DIR:-}" ]; then
  if [ -d ./src/postgresql ]; then SCHEMA_DIR=./src/postgresql
  elif [ -d ./postgresql ]; then SCHEMA_DIR=./postgresql
  else die "no schema folder: neither ./src/postgresql nor ./postgresql exists (set SCHEMA_DIR)"
  fi
fi
[ -d "$SCHEMA_DIR" ] || die "SCHEMA_DIR=$SCHEMA_DIR is not a directory"

work=$(mktemp -d "${TMPDIR:-/tmp}/sdg-register.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Package the folder as postgresql/... (the gateway also accepts it without the
# wrapper, but this is the documented layout). Symlinks are archived as the
# files they point to: the gateway accepts regular files only.
archive=$work/schema.tar.gz
schema_abs=$(cd "$SCHEMA_DIR" && pwd -P)
if [ "${schema_abs##*/}" = postgresql ]; then
  COPYFILE_DISABLE=1 tar -czhf "$archive" -C "${schema_abs%/*}" postgresql \
    || { echo "$PROG: cannot archive $SCHEMA_DIR" >&2; exit 1; }
else
  mkdir "$work/postgresql"
  cp -R "$schema_abs/." "$work/postgresql/"
  COPYFILE_DISABLE=1 tar -czhf "$archive" -C "$work" postgresql \
    || { echo "$PROG: cannot archive $SCHEMA_DIR" >&2; exit 1; }
fi

target="$PLATFORM_ID${TENANT_ID:+ (tenant $TENANT_ID)}"
echo "Registering $target with $GATEWAY (schema: $SCHEMA_DIR, $(wc -c <"$archive" | tr -d ' ') bytes)"

form=(--form-string "platform=$PLATFORM_ID")
[ -n "$TENANT_ID" ] && form+=(--form-string "tenant_id=$TENANT_ID")
[ "$FORCE" = true ] && form+=(--form-string "force=true")
form+=(-F "schema=@$archive;type=application/gzip;filename=schema.tar.gz")

auth=()
if [ -n "${GATEWAY_TOKEN:-}" ]; then
  auth=(-H "Authorization: Bearer $GATEWAY_TOKEN")
fi
body=$work/response.json
attempt=1
while :; do
  rc=0
  status=$(curl -sS --connect-timeout 5 --max-time "$TIMEOUT" -o "$body" -w '%{http_code}' \
    -X POST "${auth[@]}" "${form[@]}" "$GATEWAY$ENDPOINT" 2>"$work/curl.err") || rc=$?
  # Retry only while the gateway is not there yet: connection refused or
  # timed out, no answer, or 503 (migrator / PostgreSQL still starting).
  retry=""
  case "$rc" in
    0) [ "$status" = 503 ] && retry="HTTP 503" ;;
    6 | 7 | 28 | 52 | 55 | 56) retry="$(tr -d '\n' <"$work/curl.err")" ;;
  esac
  if [ -n "$retry" ] && [ "$attempt" -lt "$RETRIES" ]; then
    echo "gateway not ready ($retry); retrying in ${RETRY_DELAY}s (attempt $attempt/$RETRIES)" >&2
    sleep "$RETRY_DELAY"
    attempt=$((attempt + 1))
    continue
  fi
  break
done

if [ "$rc" -ne 0 ]; then
  echo "$PROG: cannot reach the gateway at $GATEWAY$ENDPOINT (curl exit $rc): $(cat "$work/curl.err")" >&2
  exit 1
fi

# has_jq FILE: jq is installed and FILE holds JSON.
has_jq() { command -v jq >/dev/null 2>&1 && jq -e . "$1" >/dev/null 2>&1; }

# print_summary FILE: status and per-database counts of a deployment report.
print_summary() {
  if has_jq "$1"; then
    jq -r '
      "status: \(.status // "?")  platform: \(.platform // "?")  time: \(.execution_time_ms // "?") ms",
      (.databases // [] | .[] |
        "  \(.database): \(.status // "?")"
        + (if .error then " FAILED: \(.error.message // .error.error // .error)" else
          "  extensions \(.extensions_installed // 0), types \(.types_deployed // 0), tables created \(.tables_created // 0), migrations applied \(.migrations_applied // 0) (skipped \(.migrations_skipped // 0)), functions created \(.functions_created // 0) updated \(.functions_updated // 0) dropped \(.functions_dropped // 0) unchanged \(.functions_unchanged // 0), seeded rows \([.seeders // [] | .[].inserted] | add // 0)"
          + (if (.deferred_statements // []) | length > 0 then ", deferred: \(.deferred_statements | join(" "))" else "" end)
          end))
    ' "$1"
  else
    cat "$1"; echo
  fi
}

# print_error FILE: the gateway's JSON error body, readably.
print_error() {
  if has_jq "$1"; then
    jq -r '
      "error: \(.error // "?"): \(.message // "")",
      (if .database then "database: \(.database)" else empty end),
      (if .file then "file: \(.file) (statement \(.statement // "?"), line \(.line // "?"))" else empty end),
      (if .cause then "cause: \(.cause)" else empty end),
      (if .sqlstate then "sqlstate: \(.sqlstate)" else empty end),
      (if .detail then "detail: \(.detail)" else empty end),
      (if .hint then "hint: \(.hint)" else empty end),
      (if .dataloss_changes or .incompatible_changes
       then "blocking changes: \((.dataloss_changes // []) + (.incompatible_changes // []) | join("; "))"
       else empty end)
    ' "$1"
    if jq -e '.details.databases' "$1" >/dev/null 2>&1; then
      jq '.details' "$1" >"$1.details"
      print_summary "$1.details"
    fi
  else
    cat "$1"; echo
  fi
}

case "$status" in
  2??) ;;
  *)
    echo "$PROG: the gateway answered HTTP $status for $target" >&2
    print_error "$body" >&2
    exit 1
    ;;
esac

echo "Registered $target (HTTP $status)"
print_summary "$body"
