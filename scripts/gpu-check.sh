#!/usr/bin/env bash
# The one script a GPU machine runs (issue 15), from the repository root with build/gpu-pack carried there (made by
# scripts/gpu-pack.sh on the CPU machine): nvidia-smi, every GPU test, the golden fixture tests, and the CUDA
# benchmark, each under `timeout`, all within 5 minutes. Writes $OUT/gpu-check.log and $OUT/gpu-check.json (per
# step: name, rc, seconds, tests passed/failed/skipped; the benchmark's JSON lines) and exits non-zero if anything
# failed. A GPU test that skips counts as a failure here: this check exists to run them.
#   OUT      where the log and summary go (default ./gpu-check-out)
#   PACK     the pack (default: the folder holding this script when it is a pack, else build/gpu-pack)
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
if [ -z "${PACK:-}" ]; then
  if [ -d "$here/bin" ]; then PACK="$here"; else PACK="$(cd "$here/.." && pwd)/build/gpu-pack"; fi
fi
OUT="${OUT:-./gpu-check-out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu-check.log"
JSON="$OUT/gpu-check.json"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1

TOTAL_S=290  # the whole check, with margin under 5 minutes
T0=$(date +%s)
STEPS=()   # JSON objects, one per step
FAILED=0

json_str() {  # a JSON string literal of $1
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\r'/ }
  s=${s//$'\n'/ }
  printf '"%s"' "$s"
}

# run_step NAME LIMIT_S KIND CMD...: KIND gpu (a skip is a failure), gtest (skips allowed) or plain.
run_step() {
  local name=$1 limit=$2 kind=$3
  shift 3
  local left=$((TOTAL_S - ($(date +%s) - T0)))
  if [ "$left" -lt 5 ]; then
    echo "=== $name: NOT RUN (the 5-minute budget is spent)"
    STEPS+=("{\"name\":$(json_str "$name"),\"rc\":null,\"seconds\":0,\"ok\":false,\"note\":\"not run: time budget spent\"}")
    FAILED=1
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (timeout ${limit}s): $*"
  local out="$OUT/$name.out" s0 s1 rc
  s0=$(date +%s.%N)
  timeout --kill-after=5 "$limit" "$@" > "$out" 2>&1
  rc=$?
  s1=$(date +%s.%N)
  cat "$out"
  local secs passed=null failed=null skipped=null ok=true note=""
  secs=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.1f", b - a }')
  if [ "$kind" != plain ]; then
    passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    failed=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
    passed=${passed:-0} failed=${failed:-0} skipped=${skipped:-0}
  fi
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    ok=false note="timed out after ${limit}s"
  elif [ "$rc" != 0 ]; then
    ok=false note="exit code $rc"
  fi
  if [ "$kind" = gpu ] && [ "$skipped" != 0 ]; then
    ok=false
    note="${note:+$note; }$skipped GPU tests SKIPPED, counted as failures: $(grep -m1 -o 'no CUDA device: .*' "$out")"
  fi
  if [ "$kind" != plain ] && [ "$rc" = 0 ] && [ "$passed" = 0 ] && [ "$skipped" = 0 ]; then
    ok=false note="${note:+$note; }no test ran"
  fi
  [ "$ok" = true ] || FAILED=1
  echo "=== $name: $([ "$ok" = true ] && echo ok || echo FAILED) rc=$rc ${secs}s passed=$passed failed=$failed skipped=$skipped${note:+ ($note)}"
  STEPS+=("{\"name\":$(json_str "$name"),\"rc\":$rc,\"seconds\":$secs,\"passed\":$passed,\"failed\":$failed,\"skipped\":$skipped,\"ok\":$ok,\"note\":$(json_str "$note")}")
}

echo "gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), pack $PACK, output $OUT"
if [ ! -x "$PACK/bin/cuda_kernels_test" ]; then
  echo "gpu-check: FATAL: no pack at $PACK: run scripts/gpu-pack.sh on the CPU machine and carry build/gpu-pack"
  printf '{"ok":false,"error":%s,"steps":[],"bench":[]}\n' "$(json_str "no pack at $PACK")" > "$JSON"
  exit 1
fi
cat "$PACK/MANIFEST" 2>/dev/null
export LD_LIBRARY_PATH="$PACK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HERD_SHARED="$PACK/shared"
# The golden tests write scratch files under the build folder compiled into them.
build_dir=$(sed -n 's/^build_dir=//p' "$PACK/MANIFEST" 2>/dev/null)
if [ -n "$build_dir" ] && ! mkdir -p "$build_dir" 2>/dev/null; then
  echo "gpu-check: warning: cannot create $build_dir, where the golden tests write scratch files"
fi

run_step nvidia-smi 20 plain nvidia-smi
run_step cuda_probe_test 30 gtest "$PACK/bin/cuda_probe_test"
run_step cuda_kernels_test 120 gpu "$PACK/bin/cuda_kernels_test"
# The golden tests run the CPU kernels for now (the CUDA backend of the decoder is not wired yet).
run_step stories260k_test 60 gtest "$PACK/bin/stories260k_test"
run_step llama4_tiny_text_test 120 gtest "$PACK/bin/llama4_tiny_text_test"
run_step herd_cuda_bench 100 plain "$PACK/bin/herd_cuda_bench"

device=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
bench=$(grep '^{' "$OUT/herd_cuda_bench.out" 2>/dev/null | paste -sd, -)
{
  printf '{"ok":%s,"seconds":%s,"device":%s,"pack":%s,' "$([ "$FAILED" = 0 ] && echo true || echo false)" \
    "$(($(date +%s) - T0))" "$(json_str "${device:-none}")" "$(json_str "$(tr '\n' ' ' < "$PACK/MANIFEST" 2>/dev/null)")"
  printf '"steps":[%s],' "$(IFS=,; echo "${STEPS[*]}")"
  printf '"bench":[%s]}\n' "$bench"
} > "$JSON"
echo "gpu-check: summary in $JSON"
if [ "$FAILED" = 0 ]; then
  echo "gpu-check: PASSED"
else
  echo "gpu-check: FAILED (see the steps above)"
fi
exit "$FAILED"
