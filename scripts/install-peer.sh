#!/usr/bin/env bash
# Installs llama.cpp as an independent peer for the tests that compare herd with it (tests/cli/quality_cli_test.cpp):
# runs shared/peer/setup.sh (node-llama-cpp's prebuilt CPU llama.cpp from the npm registry, python3-numpy from apt;
# see shared/peer/README.md) into build/peer. Idempotent: skips the install when build/peer holds a finished
# install of the same shared/peer files. Used by `make test` (and so CI); `make peer` runs it alone.
# Needs Node.js >= 20 and npm (node-llama-cpp 3.22's minimum), as this project's machines have.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="${HERD_SHARED:-../shared}"
SRC="$SHARED/peer"
DEST="build/peer"
STAMP="$DEST/.herd-peer-installed"

if [ ! -f "$SRC/setup.sh" ]; then
  echo "install-peer: $SRC/setup.sh not found (shared test data is expected at ../shared or \$HERD_SHARED)" >&2
  exit 1
fi
# The install is current when it was made from the same shared/peer files.
want=$(cd "$SRC" && cat package.json package-lock.json peer_logits.mjs setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -d "$DEST/node_modules/node-llama-cpp" ]; then
  echo "install-peer: llama.cpp peer already installed in $DEST"
  exit 0
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "install-peer: the llama.cpp peer needs Node.js >= 20 and npm (found: $(node --version 2>/dev/null ||
    echo none)); install them, then run 'make peer'" >&2
  exit 1
fi

echo "install-peer: installing the llama.cpp peer into $DEST (npm install, about a minute)"
rm -rf "$DEST"
bash "$SRC/setup.sh" "$DEST"
echo "$want" >"$STAMP"
