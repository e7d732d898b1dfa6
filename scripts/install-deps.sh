#!/usr/bin/env bash
# Installs every Debian package herd needs to build and test. Idempotent: installs only what is missing.
# Used by `make run`, `make test` and CI (.ci/run).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang-14 libclang-rt-14-dev      # asan preset and libFuzzer targets
  libhwy-dev                       # Highway: SIMD with runtime dispatch
  libpcre2-dev                     # tokenizer pre-tokenizer regexes (Unicode classes)
  nlohmann-json3-dev               # config.json, safetensors headers, test fixtures
  libcli11-dev                     # command line
  libedit-dev                      # line editing in herd chat (BSD licensed)
  libcpp-httplib-dev               # herd serve's HTTP server and bench-serve's client (MIT)
  libpng-dev libjpeg-dev           # image input for Llama 4 vision (src/vision): PNG and JPEG decoders
  python3-pil                      # Pillow 9.4, the vision fixture's version: test oracle only (src/vision tests)
  python3-jsonschema python3-rfc3987 python3-idna  # independent JSON Schema validator of structured output tests
  libgtest-dev libgmock-dev        # unit and golden tests
  libbenchmark-dev                 # bench/
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
