#!/usr/bin/env bash
# Installs the Google client libraries the client-library tests drive:
# Python google-auth in a virtualenv and Node google-auth-library in node_modules,
# both under DIR (default target/clients). Idempotent: does nothing when the
# pinned versions are already installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/../../target/clients}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

stamp() {
  local f
  for f in requirements.txt package.json package-lock.json; do
    if [ -f "$here/$f" ]; then cat "$here/$f"; fi
  done | sha256sum | cut -c1-16
}
want=$(stamp)
if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ] \
   && [ -x "$dir/venv/bin/python" ] && [ -d "$dir/node/node_modules/google-auth-library" ]; then
  exit 0
fi

python3 -m venv "$dir/venv"
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"

mkdir -p "$dir/node"
cp "$here/package.json" "$dir/node/"
if [ -f "$here/package-lock.json" ]; then
  cp "$here/package-lock.json" "$dir/node/"
  (cd "$dir/node" && npm ci --no-audit --no-fund --loglevel=error)
else
  (cd "$dir/node" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "$want" > "$dir/.stamp"
