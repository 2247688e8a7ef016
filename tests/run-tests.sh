#!/usr/bin/env bash
# Smoke tests against a RUNNING StoneScriptDB Gateway (router + migrator):
#
#   ./tests/run-tests.sh
#   GATEWAY_URL=http://10.0.0.5:9000 ./tests/run-tests.sh
#
# Checks /health, registers a tiny generated schema for a new platform
# (smoke_<epoch>_<pid>, or SMOKE_PLATFORM), calls its functions with positional
# and named parameters, expects 404 for an unknown function, migrates a changed
# function and calls it again, then drops the platform's database
# ({platform}_main, DELETE /admin/databases/...) and checks that /call answers
# 404, and offboards the generated platform (DELETE /admin/platforms/...;
# a platform given with SMOKE_PLATFORM is kept, its database dropped).
#
# GATEWAY_TOKEN, when set, is sent as the bearer token of the schema routes
# (ADMIN_TOKEN, or a deploy token of the platform: then offboarding is
# refused 403 and the platform stays registered, which the script reports).
# GATEWAY_CALL_TOKEN, when set, is sent on /call (else GATEWAY_TOKEN is; a
# gateway without CALL_TOKENS ignores it). With CALL_TOKENS on, name a
# platform it lists in SMOKE_PLATFORM and give its token as
# GATEWAY_CALL_TOKEN; /call of an unlisted platform is then 401, not 404.
#
# Prints PASS/FAIL per check and ends with "N passed, M failed"; exits 1 if
# any check failed. Needs bash, curl and tar only.
set -uo pipefail

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:9000}
GATEWAY_URL=${GATEWAY_URL%/}
PLATFORM=${SMOKE_PLATFORM:-smoke_$(date +%s)_$$}
GATEWAY_TOKEN=${GATEWAY_TOKEN:-}
CALL_TOKEN=${GATEWAY_CALL_TOKEN:-$GATEWAY_TOKEN}

for tool in curl tar; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run-tests.sh: $tool is required" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/sdg-smoke.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
status=000
body=""

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() {
  failed=$((failed + 1))
  echo "FAIL $1"
  echo "     HTTP $status: $(printf '%s' "$body" | head -c 600)"
}

# request METHOD PATH [curl args...]: sets $status and $body.
request() {
  local method=$1 path=$2
  shift 2
  local auth=() token
  case "$path" in
    /health*) token="" ;;
    /call) token=$CALL_TOKEN ;;
    *) token=$GATEWAY_TOKEN ;;
  esac
  if [ -n "$token" ]; then auth=(-H "Authorization: Bearer $token"); fi
  status=$(curl -sS --connect-timeout 5 --max-time 120 -o "$work/body" -w '%{http_code}' \
    -X "$method" ${auth[@]+"${auth[@]}"} "$@" "$GATEWAY_URL$path" 2>"$work/curl.err") || status=000
  body=$(cat "$work/body" 2>/dev/null || true)
  if [ "$status" = 000 ]; then body=$(cat "$work/curl.err"); fi
  : >"$work/body"
}

# call FUNCTION PARAMS_JSON: POST /call for $PLATFORM.
call() {
  request POST /call -H 'Content-Type: application/json' \
    --data-binary "{\"platform\": \"$PLATFORM\", \"function\": \"$1\", \"params\": $2}"
}

# has REGEX: the response body matches (extended regex; JSON is compact).
has() { printf '%s' "$body" | grep -Eq -- "$1"; }

# check NAME EXPECTED_STATUS [REGEX...]: one PASS/FAIL line.
check() {
  local name=$1 want=$2 re
  shift 2
  if [ "$status" != "$want" ]; then
    fail "$name (expected HTTP $want)"
    return
  fi
  for re in "$@"; do
    if ! has "$re"; then
      fail "$name (body does not match $re)"
      return
    fi
  done
  pass "$name"
}

# schema VERSION: a tiny schema folder in $work/v$VERSION/postgresql, packed
# as $work/schema-v$VERSION.tar.gz.
schema() {
  local v=$1 dir=$work/v$1/postgresql
  mkdir -p "$dir/tables" "$dir/functions" "$dir/seeders"
  cat >"$dir/tables/smoke_items.pssql" <<'SQL'
CREATE TABLE smoke_items (
    id serial PRIMARY KEY,
    name text NOT NULL
);
SQL
  cat >"$dir/seeders/smoke_items.pssql" <<'SQL'
INSERT INTO smoke_items (name) VALUES ('alpha'), ('beta');
SQL
  cat >"$dir/functions/smoke_add.pssql" <<'SQL'
CREATE OR REPLACE FUNCTION smoke_add(p_a integer, p_b integer DEFAULT 1)
RETURNS integer
LANGUAGE sql
AS $$ SELECT p_a + p_b $$;
SQL
  cat >"$dir/functions/smoke_items.pssql" <<'SQL'
CREATE OR REPLACE FUNCTION smoke_list_items()
RETURNS TABLE (id integer, name text)
LANGUAGE sql STABLE
AS $$ SELECT id, name FROM smoke_items ORDER BY id $$;
SQL
  cat >"$dir/functions/smoke_version.pssql" <<SQL
CREATE OR REPLACE FUNCTION smoke_version()
RETURNS text
LANGUAGE plpgsql
AS \$\$
BEGIN
    RETURN 'v$v';
END;
\$\$;
SQL
  tar -czf "$work/schema-v$v.tar.gz" -C "$work/v$v" postgresql
}

upload() { # upload PATH VERSION
  request POST "$1" --form-string "platform=$PLATFORM" \
    -F "schema=@$work/schema-v$2.tar.gz;type=application/gzip"
}

echo "Smoke tests against $GATEWAY_URL (platform $PLATFORM)"

request GET /health
check "GET /health is 200 and healthy" 200 '"status": ?"healthy"' '"postgres": ?"connected"'
if [ "$status" = 000 ]; then
  echo "gateway unreachable at $GATEWAY_URL; stopping"
  echo "$passed passed, $failed failed"
  exit 1
fi

if ! { schema 1 && schema 2; }; then
  echo "run-tests.sh: cannot build the test schema in $work" >&2
  exit 2
fi

upload /register 1
check "POST /register creates ${PLATFORM}_main" 200 '"status": ?"ready"' "\"database\": ?\"${PLATFORM}_main\""

upload /register 1
check "POST /register again is idempotent" 200 '"status": ?"unchanged"'

call smoke_add '[2, 3]'
check "POST /call with positional params" 200 '"smoke_add": ?5[,}]' '"row_count": ?1'

call smoke_add '{"p_a": 40, "p_b": 2}'
check "POST /call with named params" 200 '"smoke_add": ?42[,}]'

call smoke_add '{"p_a": 9}'
check "POST /call with a defaulted named param" 200 '"smoke_add": ?10[,}]'

call smoke_list_items '[]'
check "POST /call of a set-returning function sees the seeded rows" 200 \
  '"row_count": ?2' '"name": ?"alpha"' '"name": ?"beta"'

call smoke_version '[]'
check "POST /call returns v1 before the migration" 200 '"smoke_version": ?"v1"'

call smoke_no_such_function '[]'
check "POST /call of an unknown function is 404" 404 '"error": ?"function_not_found"'

request POST /call -H 'Content-Type: application/json' \
  --data-binary '{"platform": "smoke_no_such_platform_x", "function": "smoke_add", "params": [1]}'
if [ -n "${GATEWAY_CALL_TOKEN:-}" ] && [ "$status" = 401 ]; then
  check "POST /call for an unknown platform is 401 (CALL_TOKENS does not list it)" 401 '"error": ?"unauthorized"'
else
  check "POST /call for an unknown platform is 404" 404 '"error": ?"database_not_found"'
fi

request GET "/admin/databases?platform=$PLATFORM"
check "GET /admin/databases lists the platform database" 200 "\"${PLATFORM}_main\""

upload /migrate 2
check "POST /migrate with a changed function" 200 '"status": ?"completed"' '"functions_updated": ?1[,}]'

call smoke_version '[]'
check "POST /call returns v2 after the migration" 200 '"smoke_version": ?"v2"'

call smoke_add '[2, 3]'
check "POST /call of an unchanged function still works" 200 '"smoke_add": ?5[,}]'

request DELETE "/admin/databases/${PLATFORM}_main"
check "DELETE /admin/databases without confirm is refused" 400 '"error": ?"invalid_request"'

request DELETE "/admin/databases/${PLATFORM}_main?confirm=${PLATFORM}_main"
check "DELETE /admin/databases drops ${PLATFORM}_main" 200 '"status": ?"dropped"'

call smoke_add '[2, 3]'
check "POST /call of the dropped database is 404" 404 '"error": ?"database_not_found"'

if [ -z "${SMOKE_PLATFORM:-}" ]; then
  request DELETE "/admin/platforms/$PLATFORM?confirm=$PLATFORM"
  if [ "$status" = 403 ]; then
    echo "NOTE platform $PLATFORM stays registered: offboarding needs the admin token"
  else
    check "DELETE /admin/platforms offboards $PLATFORM" 200 '"status": ?"offboarded"'
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
