#!/usr/bin/env bash
# Write deploy/register-with-gateway.sh and deploy/migrate-schema.sh from
# deploy/lib/<name>.sh.in, replacing its "# @include common.sh" line with
# deploy/lib/common.sh (what the two scripts share). Each generated script
# stays one self-contained file a platform can copy alone into a container.
#
#   deploy/lib/generate.sh            rewrite the scripts in deploy/
#   deploy/lib/generate.sh OUT_DIR    write them into OUT_DIR instead (the
#                                     test compares those with deploy/)
set -euo pipefail

lib=$(cd "$(dirname "$0")" && pwd -P)
out=${1:-$lib/..}
[ -d "$out" ] || { echo "generate.sh: $out is not a directory" >&2; exit 2; }
for template in "$lib"/*.sh.in; do
  name=$(basename "$template" .in)
  grep -qx '# @include common.sh' "$template" ||
    { echo "generate.sh: $template has no '# @include common.sh' line" >&2; exit 1; }
  tmp="$out/.$name.tmp"
  while IFS= read -r line || [ -n "$line" ]; do
    if [ "$line" = '# @include common.sh' ]; then
      cat "$lib/common.sh"
    else
      printf '%s\n' "$line"
    fi
  done <"$template" >"$tmp"
  chmod 755 "$tmp"
  mv "$tmp" "$out/$name"
done
