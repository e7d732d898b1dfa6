#!/usr/bin/env bash
# Packs, on this CPU machine, everything scripts/gpu-check.sh needs on a GPU machine that has no herd dependencies
# and no ../shared (issue 15): the `cuda` preset's binaries stripped into build/gpu-pack/bin, every shared library
# they load (as ldd names them, minus the C runtime, the loader, libgcc_s, libstdc++ and the NVIDIA driver's own)
# in build/gpu-pack/lib, the shared fixtures the golden tests open in build/gpu-pack/shared, and gpu-check.sh.
# The pack must stay under 48 MiB (the device tool carries at most 64 MiB). build/ is git-ignored: the device tool
# carries the pack when asked to (carry: ["build/gpu-pack"]), then `bash scripts/gpu-check.sh` runs there.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARED="${HERD_SHARED:-../shared}"
PACK=build/gpu-pack
LIMIT_MIB=48
BINS=(herd cuda_kernels_test cuda_probe_test herd_cuda_bench llama4_tiny_text_test stories260k_test)
# What the golden tests open (tests/golden/llama4_tiny_text_test.cpp, stories260k_test.cpp): whole folders, so a
# new fixture file needs no change here.
FIXTURES=(fixtures/llama4-tiny-text models/stories260K)

for f in "${FIXTURES[@]}"; do
  if [ ! -d "$SHARED/$f" ]; then
    echo "gpu-pack: FATAL: shared fixture '$SHARED/$f' not found (set HERD_SHARED)" >&2
    exit 1
  fi
done

echo "gpu-pack: configuring and building the cuda preset (${BINS[*]})"
cmake --preset cuda >/dev/null
cmake --build --preset cuda -j "${JOBS:-2}" --target "${BINS[@]}"

rm -rf "$PACK"
mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/shared"
for b in "${BINS[@]}"; do
  cp "build/cuda/$b" "$PACK/bin/$b"
  strip --strip-unneeded "$PACK/bin/$b"
done

# Libraries the GPU machine provides itself (the C runtime and loader, the compiler's runtime, the driver) stay out.
SYSTEM_LIBS='^(linux-vdso|libc|libm|libdl|libpthread|librt|ld-linux[^ ]*|libgcc_s|libstdc\+\+|libcuda|libnvidia[^ ]*)\.so'
missing=0
while read -r name path; do
  if [ "$path" = "not" ] || [ -z "$path" ]; then
    echo "gpu-pack: FATAL: ldd cannot resolve $name" >&2
    missing=1
    continue
  fi
  if [[ "$name" =~ $SYSTEM_LIBS ]]; then continue; fi
  cp -L "$path" "$PACK/lib/$name"
  strip --strip-unneeded "$PACK/lib/$name" 2>/dev/null || true
done < <(for b in "${BINS[@]}"; do ldd "build/cuda/$b"; done | awk '$2 == "=>" { print $1, $3 }' | sort -u)
[ "$missing" = 0 ] || exit 1

for f in "${FIXTURES[@]}"; do
  mkdir -p "$PACK/shared/$(dirname "$f")"
  cp -rL "$SHARED/$f" "$PACK/shared/$f"
done
cp scripts/gpu-check.sh "$PACK/gpu-check.sh"

# The golden tests write scratch files under the build folder compiled into them (tests/test_util.cpp); gpu-check.sh
# creates it on the GPU machine.
{
  echo "build_dir=$(pwd)/build/cuda"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)"
  echo "packed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cuda_architectures=$(sed -n 's/^HERD_CUDA_ARCHITECTURES:STRING=//p' build/cuda/CMakeCache.txt)"
} > "$PACK/MANIFEST"

echo "gpu-pack: bin: $(ls "$PACK/bin" | tr '\n' ' ')"
echo "gpu-pack: lib: $(ls "$PACK/lib" | tr '\n' ' ')"
bytes=$(du -sb "$PACK" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "gpu-pack: $PACK is $mib MiB ($bytes bytes; limit $LIMIT_MIB MiB)"
if [ "$bytes" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu-pack: FATAL: the pack is over $LIMIT_MIB MiB" >&2
  exit 1
fi
echo "gpu-pack: on the GPU machine: bash scripts/gpu-check.sh (with build/gpu-pack carried)"
