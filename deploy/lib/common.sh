# ---- shared part: deploy/lib/common.sh (the same in both scripts) ----
# Settings, packing the schema folder, the HTTP call (retries, progress while
# waiting, NDJSON streaming), reading JSON without jq, the report and the hints.

PROG=${0##*/}

die() { echo "$PROG: $*" >&2; exit 2; }

# gw_bool NAME: the variable NAME as true/false (true, false, 1, 0 in any
# case; empty or unset is false). Anything else is a usage error: FORCE=yes
# must not silently mean "no".
gw_bool() {
  local raw
  raw=$(printf '%s' "${!1:-}" | tr '[:upper:]' '[:lower:]')
  case "$raw" in
    true | 1) echo true ;;
    false | 0 | '') echo false ;;
    *) die "$1 must be true or false (or 1 / 0), not '${!1}'" ;;
  esac
}

# gw_name NAME RULE: the variable NAME must match the gateway's naming rule
# (checked here because it goes into a URL path or a JSON body).
gw_name() {
  local value=${!1:-}
  case "$2" in
    platform) [[ "$value" =~ ^[a-z][a-z0-9_]*$ ]] ||
      die "$1='$value' is not a valid name: [a-z][a-z0-9_]* (e.g. $1=myapp)" ;;
    id) [[ "$value" =~ ^[a-z0-9_-]+$ ]] ||
      die "$1='$value' is not a valid id: [a-z0-9_-]+ (e.g. $1=store_001)" ;;
  esac
}

# gw_settings RETRIES_VAR DEFAULT_RETRIES: read and check what both scripts
# share; sets GATEWAY, FORCE, DRY_RUN, RETRIES, RETRY_DELAY, TIMEOUT,
# PROGRESS_EVERY and the work directory (removed at exit).
gw_settings() {
  RETRIES_VAR=$1
  local delay_var=${1%_RETRIES}_RETRY_DELAY
  # seed 001's DB_GATEWAY_URL; GATEWAY_URL (the CLI's name) as an alias.
  GATEWAY=${DB_GATEWAY_URL:-${GATEWAY_URL:-}}
  [ -n "$GATEWAY" ] || die "DB_GATEWAY_URL is not set (e.g. DB_GATEWAY_URL=http://10.0.0.5:9000; GATEWAY_URL is accepted too)"
  GATEWAY=${GATEWAY%/}
  [ -n "${PLATFORM_ID:-}" ] || die "PLATFORM_ID is not set (e.g. PLATFORM_ID=myapp)"
  gw_name PLATFORM_ID platform
  for tool in curl tar awk grep; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
  done
  FORCE=$(gw_bool FORCE)
  DRY_RUN=$(gw_bool DRY_RUN)
  RETRIES=${!RETRIES_VAR:-$2}
  RETRY_DELAY=${!delay_var:-3}
  TIMEOUT=${GATEWAY_TIMEOUT:-300}
  PROGRESS_EVERY=${GATEWAY_PROGRESS_INTERVAL:-5}
  case "$RETRIES" in '' | *[!0-9]* | 0) die "$RETRIES_VAR must be a positive integer" ;; esac
  case "$RETRY_DELAY" in '' | *[!0-9]*) die "$delay_var must be a number of seconds" ;; esac
  case "$TIMEOUT" in '' | *[!0-9]* | 0) die "GATEWAY_TIMEOUT must be a positive number of seconds" ;; esac
  case "$PROGRESS_EVERY" in '' | *[!0-9]* | 0) die "GATEWAY_PROGRESS_INTERVAL must be a positive number of seconds" ;; esac
  work=$(mktemp -d "${TMPDIR:-/tmp}/sdg-${PROG%.sh}.XXXXXX")
  trap 'rm -rf "$work"' EXIT
}

# gw_pack: the schema folder (SCHEMA_DIR, else ./src/postgresql, else
# ./postgresql) packed as $work/schema.tar.gz holding postgresql/... (the
# documented layout). Symlinks are archived as the files they point to: the
# gateway accepts regular files only.
gw_pack() {
  if [ -z "${SCHEMA_DIR:-}" ]; then
    if [ -d ./src/postgresql ]; then SCHEMA_DIR=./src/postgresql
    elif [ -d ./postgresql ]; then SCHEMA_DIR=./postgresql
    else die "no schema folder: neither ./src/postgresql nor ./postgresql exists (set SCHEMA_DIR)"
    fi
  fi
  [ -d "$SCHEMA_DIR" ] || die "SCHEMA_DIR=$SCHEMA_DIR is not a directory"
  archive=$work/schema.tar.gz
  local abs
  abs=$(cd "$SCHEMA_DIR" && pwd -P)
  if [ "${abs##*/}" = postgresql ]; then
    COPYFILE_DISABLE=1 tar -czhf "$archive" -C "${abs%/*}" postgresql ||
      { echo "$PROG: cannot archive $SCHEMA_DIR" >&2; exit 1; }
  else
    mkdir "$work/postgresql"
    cp -R "$abs/." "$work/postgresql/"
    COPYFILE_DISABLE=1 tar -czhf "$archive" -C "$work" postgresql ||
      { echo "$PROG: cannot archive $SCHEMA_DIR" >&2; exit 1; }
  fi
  archive_size=$(wc -c <"$archive" | tr -d ' ')
}

# gw_json_body KEY=VALUE... KEY:=RAW...: a JSON object; KEY=VALUE is a
# string, KEY:=RAW is written bare (true, false, a number). Values were
# checked against the naming rules first, so none needs escaping.
gw_json_body() {
  local out="" arg
  for arg in "$@"; do
    case "$arg" in
      *:=*) out="$out${out:+, }\"${arg%%:=*}\": ${arg#*:=}" ;;
      *) out="$out${out:+, }\"${arg%%=*}\": \"${arg#*=}\"" ;;
    esac
  done
  printf '{%s}' "$out"
}

# gw_ticker WHAT: in the background, a line on stderr every
# GATEWAY_PROGRESS_INTERVAL seconds saying what we wait for and how long.
gw_ticker() {
  local start=$SECONDS
  while sleep "$PROGRESS_EVERY" >/dev/null 2>&1; do
    echo "... waiting for $1: $((SECONDS - start)) s so far (GATEWAY_TIMEOUT=${TIMEOUT}s)" >&2
  done
}

# gw_stream: read an NDJSON answer on stdin, keep it in $work/body and print
# each database's report as its line arrives.
gw_stream() {
  local line n=0
  : >"$work/body"
  while IFS= read -r line || [ -n "$line" ]; do
    [ -n "$line" ] || continue
    printf '%s\n' "$line" >>"$work/body"
    printf '%s\n' "$line" >"$work/line"
    n=$((n + 1))
    gw_render line "$work/line" "$n"
  done
}

# gw_request WHAT METHOD PATH CURL_ARGS...: call the gateway, retrying while
# it is not there yet (connection refused, no answer, 503) up to RETRIES
# times. Sets status (HTTP code, 000 when none) and rc (curl's exit code);
# the body is in $work/body (its last line when GW_STREAM=true).
gw_request() {
  local what=$1 method=$2 path=$3 attempt=1 retry ticker
  shift 3
  local auth=()
  if [ -n "${GATEWAY_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $GATEWAY_TOKEN"); fi
  while :; do
    rc=0
    gw_ticker "$what" &
    ticker=$!
    if [ "${GW_STREAM:-false}" = true ]; then
      curl -sS -N --connect-timeout 5 --max-time "$TIMEOUT" -D "$work/headers" \
        -H 'Accept: application/x-ndjson' -X "$method" ${auth[@]+"${auth[@]}"} "$@" \
        "$GATEWAY$path" 2>"$work/curl.err" | gw_stream || true
      rc=${PIPESTATUS[0]}
    else
      curl -sS --connect-timeout 5 --max-time "$TIMEOUT" -D "$work/headers" -o "$work/body" \
        -X "$method" ${auth[@]+"${auth[@]}"} "$@" "$GATEWAY$path" 2>"$work/curl.err" || rc=$?
    fi
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    status=000
    if [ "$rc" -eq 0 ]; then
      status=$(awk '/^HTTP\//{c = $2} END {print c}' "$work/headers")
    fi
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
    echo "$PROG: cannot reach the gateway at $GATEWAY$path (curl exit $rc): $(cat "$work/curl.err")" >&2
    case "$rc" in
      28) echo "hint: no answer within GATEWAY_TIMEOUT=${TIMEOUT}s; the deployment may still finish on the gateway: raise GATEWAY_TIMEOUT" >&2 ;;
      *) echo "hint: check DB_GATEWAY_URL=$GATEWAY; $RETRIES_VAR=$RETRIES attempt(s) were made ($RETRIES_VAR raises it)" >&2 ;;
    esac
    exit 1
  fi
  if [ "${GW_STREAM:-false}" = true ] && [ -s "$work/body" ]; then
    tail -n 1 "$work/body" >"$work/summary" && mv "$work/summary" "$work/body"
  fi
}

# gw_get PATH: a value of the answer ($work/body), e.g. gw_get .status.
gw_get() { gw_render get "$work/body" "$1"; }

# gw_fail: the gateway refused (HTTP >= 400): its error and the hints, exit 1.
gw_fail() {
  echo "$PROG: the gateway answered HTTP $status for $target" >&2
  gw_render error "$work/body" "" >&2
  exit 1
}

# gw_report all|summary: print the answer's report (summary: a stream's
# last line, whose databases were printed as they came); exit 1 when a database
# was refused or failed (a dry run's blocked database included).
gw_report() {
  gw_render report "$work/body" "$1"
  case "$(gw_render bad "$work/body" "")" in 0) ;; *) exit 1 ;; esac
  case "$(gw_get .status)" in partial | failed) exit 1 ;; esac
}

# gw_render MODE FILE ARG: read the JSON in FILE (no jq: grep splits it into
# tokens, awk parses them into path -> value) and print, by MODE:
#   get     the value at path ARG (.status, .databases[0].database)
#   bad     how many databases were refused or failed
#   report  a deployment answer: per-database reports and the summary
#   line    one NDJSON line of a fleet migration (ARG is its number)
#   error   an error body: the error, the blocking changes, each
#           database's report when there are several, and the hints
gw_render() {
  local re='"([^"\\]|\\.)*"|[][{}:,]|[^][{}:,"[:space:]]+'
  grep -Eo "$re" "$2" | GW_ARG=$3 GW_MODE=$1 GW_STATUS=${status:-} GW_PROG=$PROG \
    GW_FORCE=$FORCE GW_DRY_RUN=$DRY_RUN GW_TOKEN=${GATEWAY_TOKEN:+set} \
    GW_PLATFORM=$PLATFORM_ID GW_SCHEMA=${SCHEMA_NAME:-} GW_RETRIES=$RETRIES_VAR \
    awk "$GW_AWK" || { echo "$PROG: cannot read the gateway's answer" >&2; exit 1; }
}

# The awk half of gw_render (POSIX awk: mawk and busybox awk are enough).
# shellcheck disable=SC2016 # awk code: its $0 is awk's, not the shell's
GW_AWK='
{ tok[++ntok] = $0 }

# value(path): parse the value at tok[p] into v[path] (scalars: strings
# still JSON-escaped) and len[path] (arrays: their length).
function value(path,   t, k, i) {
  t = tok[p++]
  if (t == "{") {
    obj[path] = 1
    if (tok[p] == "}") { p++; return }
    for (;;) {
      k = tok[p++]; k = substr(k, 2, length(k) - 2); p++
      value(path "." k)
      if (tok[p++] != ",") return
    }
  } else if (t == "[") {
    len[path] = 0
    if (tok[p] == "]") { p++; return }
    for (i = 0; ; ) {
      value(path "[" i "]"); len[path] = ++i
      if (tok[p++] != ",") return
    }
  } else if (substr(t, 1, 1) == "\"") v[path] = substr(t, 2, length(t) - 2)
  else v[path] = t
}

function s(k,   x) {
  if (!(k in v) || v[k] == "null") return ""
  x = v[k]
  gsub(/\\\\/, "\001", x); gsub(/\\"/, "\"", x); gsub(/\\\//, "/", x)
  gsub(/\\n/, "\n", x); gsub(/\\t/, "\t", x); gsub(/\\r/, "", x); gsub(/\001/, "\\", x)
  # The gateway speaks of its form field force=true; these scripts read FORCE=true.
  gsub(/force=true/, "FORCE=true", x)
  return x
}

function n(k) { return (k in len) ? len[k] : 0 }

function isobj(k) { return k in obj }

# counts(r): the counters of one database report, those it has.
function counts(r,   out, i, c, rows, k, m) {
  split("extensions_installed:extensions installed,types_deployed:types deployed,tables_created:tables created,tables_altered:tables altered,migrations_applied:migrations applied,migrations_skipped:migrations skipped,functions_created:functions created,functions_updated:functions updated,functions_dropped:functions dropped,functions_unchanged:functions unchanged,functions_deployed:functions deployed", c, ",")
  out = ""
  for (i = 1; (i in c); i++) {
    k = substr(c[i], 1, index(c[i], ":") - 1)
    if (((r "." k) in v) && (v[r "." k] != 0 || k == "tables_altered"))
      out = out (out == "" ? "" : ", ") v[r "." k] " " substr(c[i], index(c[i], ":") + 1)
  }
  if ((r ".seeders") in len) {
    rows = 0
    for (m = 0; m < n(r ".seeders"); m++) rows += v[r ".seeders[" m "].inserted"]
    if (rows) out = out (out == "" ? "" : ", ") rows " seeded rows inserted"
  }
  return out
}

# out(x): print, unless quiet (the summary of a stream whose databases
# were printed already: they are only counted).
function out(x) { if (!quiet) print x }

# changes(sv, ind): the lists of a schema_validation object.
function changes(sv, ind,   i) {
  if (!isobj(sv)) return
  out(ind "schema_validation: " n(sv ".safe_changes") " safe, " n(sv ".dataloss_changes") " data-losing, " n(sv ".incompatible_changes") " incompatible")
  if (dry == "true")
    for (i = 0; i < n(sv ".safe_changes"); i++) out(ind "  safe change: " s(sv ".safe_changes[" i "]"))
  for (i = 0; i < n(sv ".dataloss_changes"); i++) { out(ind "  data-losing change: " s(sv ".dataloss_changes[" i "]")) }
  for (i = 0; i < n(sv ".incompatible_changes"); i++) { out(ind "  incompatible change: " s(sv ".incompatible_changes[" i "]")) }
}

# db(r, head): one database report at path r.
function db(r, head,   c, i, e, st, ms, name) {
  name = s(r ".database"); if (name == "") name = s(r ".database_name")
  st = s(r ".status"); ms = s(r ".execution_time_ms")
  out(head name ": " st (ms != "" ? " (" ms " ms)" : ""))
  if (st == "blocked" || st == "failed") bad++
  c = counts(r); if (c != "") out("    " c)
  if ((r ".version") in v) out("    version " s(r ".version") (s(r ".pinned") == "true" ? " (pinned)" : "") (s(r ".full_deployment") == "true" ? ", full deployment" : ""))
  changes(r ".schema_validation", "    ")
  for (i = 0; i < n(r ".deferred_statements"); i++) out("    deferred: " s(r ".deferred_statements[" i "]"))
  for (i = 0; i < n(r ".notes"); i++) out("    note: " s(r ".notes[" i "]"))
  e = r ".error"
  if (isobj(e)) {
    out("    error: " s(e ".error") ": " s(e ".message"))
    if (s(e ".error") == "schema_validation_failed") needs_force++
    if (!isobj(r ".schema_validation")) changes(e ".schema_validation", "    ")
  } else if ((e in v) && s(e) != "") out("    error: " s(e))
  if (st == "blocked") needs_force++
  if (dry == "true" && n(r ".plan") > 0) {
    out("    plan:")
    for (i = 0; i < n(r ".plan"); i++)
      out("      " s(r ".plan[" i "].phase") (s(r ".plan[" i "].class") != "" ? " [" s(r ".plan[" i "].class") "]" : "") " " s(r ".plan[" i "].object") ": " s(r ".plan[" i "].reason"))
  }
}

# dbs(r): every database report of an answer at r; 0 if it has none.
function dbs(r,   list, i) {
  list = ((r ".databases") in len) ? r ".databases" : ((r ".results") in len) ? r ".results" : ""
  if (list == "") return 0
  for (i = 0; i < n(list); i++) db(list "[" i "]", "  ")
  return 1
}

function hints() {
  if (needs_force)
    print "hint: these changes lose data or change types incompatibly; nothing was applied. Preview with DRY_RUN=true, apply them with FORCE=true"
  if (status == 401)
    print (ENVIRON["GW_TOKEN"] == "set" ? "hint: the gateway refused GATEWAY_TOKEN: check it (the platform'"'"'s DEPLOY_TOKENS token or the admin token)" : "hint: the gateway requires a token: set GATEWAY_TOKEN to the platform'"'"'s deploy token (DEPLOY_TOKENS) or the admin token (ADMIN_TOKEN)")
  if (status == 403)
    print "hint: GATEWAY_TOKEN may not do this: a deploy token acts for its own platform only (PLATFORM_ID=" ENVIRON["GW_PLATFORM"] "); operator routes need the admin token"
  if (code == "platform_not_found" && ENVIRON["GW_SCHEMA"] == "")
    print "hint: PLATFORM_ID=" ENVIRON["GW_PLATFORM"] " has no database yet: register it first (register-with-gateway.sh)"
  if ((code == "schema_not_found" || code == "platform_not_found") && ENVIRON["GW_SCHEMA"] != "")
    print "hint: upload the schema first: SCHEMA_NAME=" ENVIRON["GW_SCHEMA"] " register-with-gateway.sh (it registers the platform too), or check SCHEMA_NAME / VERSION"
  if (status == 503)
    print "hint: the gateway is starting or its migrator is down; " ENVIRON["GW_RETRIES"] " sets how many attempts are made"
}

END {
  p = 1; mode = ENVIRON["GW_MODE"]; arg = ENVIRON["GW_ARG"]; dry = ENVIRON["GW_DRY_RUN"]
  status = ENVIRON["GW_STATUS"] + 0
  if (tok[1] != "{") {
    if (mode == "get") exit 0
    if (mode == "bad") { print 1; exit 0 }
    if (mode == "bad") {
    quiet = 1
    if (!dbs("") && s(".status") != "") db("", "")
    print bad + 0; exit 0
  }
  if (mode == "line") { print "  (not JSON) " tok[1]; exit 0 }
    printf "the answer is not JSON:"; for (i = 1; i <= ntok && i <= 60; i++) printf " %s", tok[i]; print ""
    hints(); exit 0
  }
  value("")
  if (mode == "get") { if (arg in len) print len[arg]; else print s(arg); exit 0 }
  if (mode == "bad") {
    quiet = 1
    if (!dbs("") && s(".status") != "") db("", "")
    print bad + 0; exit 0
  }
  if (mode == "line") {
    if (s(".status") != "" && !(".message" in v) && !((".results") in len)) db("", "[" arg "] ")
    exit 0
  }
  if (mode == "report") {
    quiet = (arg == "summary")
    if (!dbs("") && (s(".database") != "" || s(".database_name") != "")) db("", "  ")
    quiet = 0
    if (arg == "summary") {
      if ((".databases_updated") in len) print "  databases updated: " n(".databases_updated") ", migrations applied: " s(".migrations_applied") ", functions updated: " s(".functions_updated")
      changes(".schema_validation", "  ")
      if (isobj(".verification")) print "  verification passed: " s(".verification.passed")
    }
    print "status: " s(".status") "  platform: " s(".platform") ((".version" in v) && !(".database_name" in v) ? "  version: " s(".version") : "") ((".execution_time_ms") in v ? "  time: " s(".execution_time_ms") " ms" : "")
    if (bad) print "hint: " bad " database(s) " (dry == "true" ? "would be refused" : "were not migrated") " (see above)"
    hints()
    exit 0
  }
  # error
  code = s(".error")
  print "error: " code ": " s(".message")
  if (s(".database") != "") print "database: " s(".database")
  if (s(".file") != "") print "file: " s(".file") " (statement " s(".statement") ", line " s(".line") ")"
  if (s(".cause") != "") print "cause: " s(".cause")
  if (s(".sqlstate") != "") print "sqlstate: " s(".sqlstate")
  if (s(".detail") != "") print "detail: " s(".detail")
  if (s(".hint") != "") print "gateway hint: " s(".hint")
  if (code == "schema_validation_failed") { needs_force++; changes(".schema_validation", "") }
  dbs(".details")
  hints()
}
'
# ---- end of the shared part ----
