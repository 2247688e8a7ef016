#!/usr/bin/env bash
# Install StoneScriptDB Gateway on this machine (run as root from a checkout):
#
#   cargo build --release --bins && sudo deploy/install.sh
#   sudo deploy/install.sh --build          # build first (needs cargo)
#
# Idempotent: run it again after pulling a new version. It
#   * creates the system user and group `stonescriptdb` (no login shell),
#   * creates /var/lib/stonescriptdb-gateway (0750, stonescriptdb:stonescriptdb),
#   * creates /etc/stonescriptdb-gateway/env from deploy/env.example when it
#     does not exist (0640, root:stonescriptdb; an existing file is never
#     touched), in the form systemd's EnvironmentFile= reads,
#   * installs stonescriptdb-router and stonescriptdb-migrator into
#     /usr/local/bin and their units into /etc/systemd/system, and the
#     `stonescriptdb` command line beside them,
#   * when systemd is running: `systemctl daemon-reload` and enables the
#     units (the migrator's socket unit and both services) (it does not start or restart them; the next steps say how).
#
# Options:
#   --build           run `cargo build --release --bins` first
#   --bin-dir DIR     take the binaries from DIR (default target/release)
#   --root DIR        install below DIR instead of / (staging, packaging,
#                     tests); also --prefix DIR, INSTALL_ROOT=DIR or
#                     DESTDIR=DIR (all paths, /etc and /var too). Implies
#                     --no-user and --no-systemd; ownership is set only when
#                     the user exists, so it also works without root.
#   --no-user         do not create the user/group
#   --no-systemd      do not run systemctl
#   -h, --help        this text
#
# Exit status: 0 installed; 1 a step failed; 2 bad usage.
set -euo pipefail
umask 022

PROG=${0##*/}
SRC=$(cd "$(dirname "$0")/.." && pwd)
USER_NAME=stonescriptdb
UNITS=(stonescriptdb-migrator.socket stonescriptdb-migrator.service stonescriptdb-router.service)
BINARIES=(stonescriptdb-migrator stonescriptdb-router stonescriptdb)
STATE_DIR=/var/lib/stonescriptdb-gateway
CONF_DIR=/etc/stonescriptdb-gateway
BIN_DIR=/usr/local/bin
UNIT_DIR=/etc/systemd/system
RUN_DIR=/run/stonescriptdb-gateway

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "$PROG: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "Try '$PROG --help'." >&2; exit 2; }
step() { echo "==> $*"; }

build=""
bin_src=""
root=${INSTALL_ROOT:-${DESTDIR:-}}
make_user=1
use_systemd=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=1 ;;
    --bin-dir) [ $# -ge 2 ] || usage_error "--bin-dir needs a directory"; bin_src=$2; shift ;;
    --bin-dir=*) bin_src=${1#*=} ;;
    --root | --prefix) [ $# -ge 2 ] || usage_error "$1 needs a directory"; root=$2; shift ;;
    --root=* | --prefix=*) root=${1#*=} ;;
    --no-user) make_user="" ;;
    --no-systemd) use_systemd="" ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
  shift
done

root=${root%/}
if [ -n "$root" ]; then
  mkdir -p "$root" || die "cannot create install root $root"
  root=$(cd "$root" && pwd)
  [ "$root" = / ] && root=""
fi
if [ -n "$root" ]; then
  # Staging into a directory: never touch the users or services of this host.
  make_user=""
  use_systemd=""
elif [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0), or stage into a directory with INSTALL_ROOT=DIR / --root DIR"
fi

if [ -n "$build" ]; then
  command -v cargo >/dev/null 2>&1 || die "--build needs cargo in PATH (as root: sudo env PATH=\"\$PATH\" $0 --build)"
  step "building release binaries (cargo build --release --bins)"
  (cd "$SRC" && cargo build --release --bins) || die "cargo build failed"
fi
bin_src=${bin_src:-$SRC/target/release}
for b in "${BINARIES[@]}"; do
  [ -x "$bin_src/$b" ] || die "$bin_src/$b not found: run \`cargo build --release --bins\` first, or pass --build (or --bin-dir DIR)"
done
for u in "${UNITS[@]}"; do
  [ -f "$SRC/systemd/$u" ] || die "$SRC/systemd/$u is missing (run from a complete checkout)"
done
[ -f "$SRC/deploy/env.example" ] || die "$SRC/deploy/env.example is missing"

# --- user and group ---------------------------------------------------------
if [ -n "$make_user" ]; then
  if getent passwd "$USER_NAME" >/dev/null; then
    step "user $USER_NAME exists"
  else
    nologin=/usr/sbin/nologin
    [ -x "$nologin" ] || nologin=/sbin/nologin
    [ -x "$nologin" ] || nologin=/bin/false
    group_opt=(--user-group)
    getent group "$USER_NAME" >/dev/null && group_opt=(--gid "$USER_NAME")
    step "creating system user $USER_NAME"
    useradd --system "${group_opt[@]}" --home-dir "$STATE_DIR" --no-create-home \
      --shell "$nologin" --comment "StoneScriptDB Gateway" "$USER_NAME" \
      || die "useradd $USER_NAME failed"
  fi
else
  if [ -n "$root" ]; then
    step "not creating user $USER_NAME (staging into $root)"
  else
    step "not creating user $USER_NAME (--no-user)"
  fi
fi
# Ownership only when the account exists and we may change it.
own_user=""
if [ "$(id -u)" -eq 0 ] && getent passwd "$USER_NAME" >/dev/null && getent group "$USER_NAME" >/dev/null; then
  own_user=$USER_NAME
fi

# --- directories --------------------------------------------------------------
step "state directory $root$STATE_DIR (0750)"
# Directories of the system (/var/lib, /usr/local/bin, ...) are created when
# missing but their modes are left alone; ours get theirs every run.
mkdir -p "$root$STATE_DIR" "$root$CONF_DIR" "$root$BIN_DIR" "$root$UNIT_DIR"
chmod 0750 "$root$STATE_DIR"
chmod 0755 "$root$CONF_DIR"
if [ -n "$own_user" ]; then chown "$own_user:$own_user" "$root$STATE_DIR"; fi

# --- configuration ------------------------------------------------------------
env_file=$root$CONF_DIR/env
created_env=""
if [ -e "$env_file" ] || [ -L "$env_file" ]; then
  step "keeping existing $env_file"
  case "$(stat -c %a "$env_file" 2>/dev/null || echo 640)" in
    *[1-7]) echo "    warning: $env_file is readable by everyone; it holds DB_PASSWORD (chmod 0640 it)" >&2 ;;
  esac
else
  step "creating $env_file from deploy/env.example (0640)"
  tmp=$(mktemp "$root$CONF_DIR/.env.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  {
    echo "# StoneScriptDB Gateway configuration, read by stonescriptdb-router.service"
    echo "# and stonescriptdb-migrator.service (EnvironmentFile=). Created by"
    echo "# deploy/install.sh from deploy/env.example. systemd syntax: KEY=value, one per"
    echo "# line, comments on their own lines only. After editing:"
    echo "#   systemctl restart stonescriptdb-migrator stonescriptdb-router"
    echo
    # systemd does not strip trailing "# comments" from values (a .env file
    # does): move each onto its own line above the setting. Point DATA_DIR at
    # the state directory and document the socket the units set.
    awk -v state_dir="$STATE_DIR" -v sock="$RUN_DIR/migrator.sock" '
      /^[[:space:]]*DATA_DIR[[:space:]]*=/ { print "DATA_DIR=" state_dir; next }
      /^[[:space:]]*#[[:space:]]*MIGRATOR_SOCKET[[:space:]]*=/ {
        print "# The units set MIGRATOR_SOCKET=" sock " (router and migrator must agree)."
        print "# MIGRATOR_SOCKET=" sock
        next
      }
      /^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*[[:space:]]*=/ && !/["\047]/ && match($0, /[[:space:]]+#/) {
        comment = substr($0, RSTART); sub(/^[[:space:]]+/, "", comment)
        print comment
        print substr($0, 1, RSTART - 1)
        next
      }
      { print }
    ' "$SRC/deploy/env.example" | sed 's/[[:space:]]*$//'
  } >"$tmp"
  chmod 0640 "$tmp"
  if [ -n "$own_user" ]; then chown "root:$own_user" "$tmp"; fi
  mv "$tmp" "$env_file"
  trap - EXIT
  created_env=1
fi

# --- binaries and units -------------------------------------------------------
# Copy to a temporary name, then rename: a running binary is replaced, never
# written into.
for b in "${BINARIES[@]}"; do
  step "installing $root$BIN_DIR/$b"
  install -m 0755 "$bin_src/$b" "$root$BIN_DIR/.$b.new"
  mv -f "$root$BIN_DIR/.$b.new" "$root$BIN_DIR/$b"
done
units_changed=""
for u in "${UNITS[@]}"; do
  if ! cmp -s "$SRC/systemd/$u" "$root$UNIT_DIR/$u"; then
    units_changed=1
    step "installing $root$UNIT_DIR/$u"
  else
    step "$root$UNIT_DIR/$u is up to date"
  fi
  install -m 0644 "$SRC/systemd/$u" "$root$UNIT_DIR/$u"
done

# --- systemd ------------------------------------------------------------------
systemd_live=""
if [ -n "$use_systemd" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemd_live=1
  step "systemctl daemon-reload"
  systemctl daemon-reload || die "systemctl daemon-reload failed"
  step "systemctl enable ${UNITS[*]}"
  systemctl enable "${UNITS[@]}" || die "systemctl enable failed"
elif [ -n "$use_systemd" ]; then
  step "systemd is not running here: units installed but not enabled"
fi

echo
echo "Installed StoneScriptDB Gateway${root:+ into $root}."
echo "Next steps:"
n=1
if [ -n "$created_env" ]; then
  echo "  $n. Set the PostgreSQL connection (DB_HOST, DB_USER, DB_PASSWORD, ...) and"
  echo "     ALLOWED_NETWORKS in $CONF_DIR/env"
  n=$((n + 1))
fi
if [ -n "$systemd_live" ]; then
  if [ -n "$units_changed" ]; then
    echo "  $n. The unit files changed (daemon-reload done). Start, or restart, both services:"
  else
    echo "  $n. Start (or, after an upgrade, restart) both services:"
  fi
  echo "       systemctl start stonescriptdb-migrator.socket"
  echo "       systemctl restart stonescriptdb-migrator stonescriptdb-router"
  echo "     (each restarts alone; /call keeps working while the migrator restarts)"
  n=$((n + 1))
  echo "  $n. Check: curl -s http://127.0.0.1:9000/health   (GATEWAY_HOST/GATEWAY_PORT)"
  echo "     Logs:  journalctl -u stonescriptdb-router -u stonescriptdb-migrator -f"
else
  echo "  $n. On the target machine: systemctl daemon-reload &&"
  echo "       systemctl enable --now stonescriptdb-migrator.socket stonescriptdb-migrator stonescriptdb-router"
fi
