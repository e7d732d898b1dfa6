#!/usr/bin/env bash
# Installs the npm packages of the server's end-to-end tests (tests/server/package.json and its lock file: the
# official `openai` client) into build/server-node, where tests/server/*.mjs find them. Idempotent: skips the
# install when build/server-node holds a finished install of the same package files. Used by `make test` (and so
# CI); `make npm` runs it alone. Needs Node.js >= 20 and npm.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC="tests/server"
DEST="build/server-node"
STAMP="$DEST/.herd-npm-installed"

want=$(cat "$SRC/package.json" "$SRC/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -f "$DEST/node_modules/openai/package.json" ]; then
  echo "install-npm: server test packages already installed in $DEST"
  exit 0
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "install-npm: the server tests need Node.js >= 20 and npm (found: $(node --version 2>/dev/null ||
    echo none)); install them, then run 'make npm'" >&2
  exit 1
fi

echo "install-npm: installing the server test packages into $DEST (npm ci)"
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/"
(cd "$DEST" && npm ci --no-audit --no-fund --ignore-scripts)
echo "$want" >"$STAMP"
