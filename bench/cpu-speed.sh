#!/usr/bin/env bash
# The CPU-speed table of bench/RESULTS.md: `herd bench --json` (prompt 512 (stories260K: 384), generate 128, best of 3, with the
# memory-bandwidth probe of the same process) on stories260K (F32 and herd-quantized Q8_0 / Q4_0) and on the
# synthetic Llama-4-shaped reference model (small-moe: hidden 2048, 8 MoE layers x 16 experts top-1 + shared
# expert, 3.64 G params) at Q8_0, Q4_0 and Q4_K, as stored and with --repack, with 1 and 2 threads. Prints one markdown row per run; the raw
# JSON goes to $OUT (default bench/cpu-speed.jsonl).
# Usage: bench/cpu-speed.sh [HERD_BINARY] [SHARED_DIR]
set -euo pipefail
herd=${1:-build/release/herd}
shared=${2:-${HERD_SHARED:-../shared}}
out=${OUT:-bench/cpu-speed.jsonl}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$out"
stories=$shared/models/stories260K/stories260K.gguf
for t in q8_0 q4_0; do "$herd" quantize "$stories" "$tmp/stories-$t.gguf" --type "$t" -q; done

row() {  # label, prompt tokens, then herd bench arguments (128 tokens generated)
  local label=$1 np=$2
  shift 2
  local j
  j=$("$herd" bench "$@" -p "$np" -n 128 --json 2>/dev/null)
  echo "$j" >>"$out"
  python3 - "$label" "$j" <<'PY'
import json, sys
label, j = sys.argv[1], json.loads(sys.argv[2])
print(f"| {label} | {j['threads']} | {j['prompt_tok_s']:.1f} ({j['n_prompt']}) | {j['gen_tok_s']:.2f} | "
      f"{(j['active_bytes_per_token'] + j['kv_bytes_per_token']) / 1e6:.1f} | {j['bandwidth_gbs']:.1f} | "
      f"{j['bound_tok_s']:.1f} | {100 * j['bound_fraction']:.0f}% | {100 * j['bound_fraction_triad']:.0f}% |")
PY
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| model | threads | prompt tok/s (tokens) | gen tok/s (128) | MB read per token | read GB/s (probe) | bound tok/s | fraction of bound | vs triad |"
echo "|---|---|---|---|---|---|---|---|---|"
for threads in 1 2; do
  # stories260K's context is 512 tokens: prompt 384 + 128 generated.
  row "stories260K F32" 384 -m "$stories" -t "$threads"
  for t in q8_0 q4_0; do row "stories260K ${t^^}" 384 -m "$tmp/stories-$t.gguf" -t "$threads"; done
  for t in q8_0 q4_0 q4_k; do
    row "small-moe ${t^^}" 512 --synthetic small-moe --type "$t" -t "$threads"
    # --repack: the matrices copied into huge-page memory at load, Q8_0 regrouped as Q8_0R (model/model.h).
    row "small-moe ${t^^} --repack" 512 --synthetic small-moe --type "$t" -t "$threads" --repack
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
