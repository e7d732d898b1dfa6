#!/usr/bin/env bash
# herd against llama.cpp on the same GGUF files, side by side (issue 16): prompt processing of 64, 512 and 2048
# tokens and decoding (64 tokens after a 64-token prompt), for Q8_0, Q4_0 and Q4_K, with 2 threads and, for Q8_0, 1
# thread. The model is the peer's d2048 Llama 4 reference (shared/peer/README.md "Performance anchor": 8 MoE layers
# x 16 experts top-1 + shared expert, 3.64 G parameters, 0.55 G active); the Q8_0 file comes from the peer's
# make_gguf.py, the Q4_0 and Q4_K files from `herd quantize` of it, and both engines read the very same files.
# Each cell is the best of --reps repetitions; herd and llama.cpp alternate row by row (which goes first alternates
# too), so that both see the same moments of a noisy host. herd runs as a user would (no flags: it repacks when the
# copy fits) and reports, from the same process, the fraction of the measured int8 peak its prefill reaches
# (prefill_fraction) and the fraction of the bandwidth bound its decode reaches in each repetition's own memory state.
#
# Usage: bench/compare-llamacpp.sh [--types q8_0,q4_0,q4_k] [--reps 2] [--dir /tmp/herd-compare] [--herd BIN]
#                                  [--peer DIR] [--quick]
#   --quick: 64 and 512 tokens only, no single-thread rows.
# Needs the peer (scripts/install-peer.sh puts it in build/peer) and /usr/bin/python3 with numpy (the peer's setup
# installs it). Prints a markdown table; every raw JSON result is appended to $OUT (default bench/compare-llamacpp.jsonl),
# each record with the run's start time ("run", UTC), so that earlier runs stay in the file.
set -euo pipefail
cd "$(dirname "$0")/.."

types=q8_0,q4_0,q4_k
reps=2
dir=/tmp/herd-compare
herd=build/release/herd
peer=build/peer
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --types) types=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --herd) herd=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "compare-llamacpp: unknown argument $1" >&2; exit 1 ;;
  esac
done
out=${OUT:-bench/compare-llamacpp.jsonl}
[ -x "$herd" ] || { echo "compare-llamacpp: $herd not found (build it: make run, or cmake --build --preset release)" >&2; exit 1; }
[ -f "$peer/peer_logits.mjs" ] || { echo "compare-llamacpp: no peer in $peer (run scripts/install-peer.sh)" >&2; exit 1; }
mkdir -p "$dir"
run_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

q8="$dir/bench-llama4-d2048-q8_0.gguf"
if [ ! -f "$q8" ]; then
  echo "compare-llamacpp: writing $q8 (about 2 min)" >&2
  /usr/bin/python3 "$peer/make_gguf.py" --arch llama4 --layers 8 --hidden 2048 --heads 16 --kv-heads 4 --ff 8192 \
    --ff-exp 4096 --experts 16 --vocab 32000 --ctx 8192 --rope-scaling llama3 --ftype q8_0 --out "$q8" >&2
fi
file_of() {  # the file of a type
  if [ "$1" = q8_0 ]; then echo "$q8"; else echo "$dir/bench-llama4-d2048-$1.gguf"; fi
}
for t in ${types//,/ }; do
  f=$(file_of "$t")
  if [ ! -f "$f" ]; then
    echo "compare-llamacpp: herd quantize $q8 -> $f" >&2
    "$herd" quantize "$q8" "$f" --type "$t" -q
  fi
done

row=0
# One measurement of each engine for a file, threads, prompt tokens and generated tokens; prints the table row.
measure() {
  local label=$1 file=$2 threads=$3 np=$4 ng=$5 what=$6
  local hj pj
  run_herd() { hj=$("$herd" bench -m "$file" -t "$threads" -p "$np" -n "$ng" -r "$reps" --json 2>/dev/null); }
  run_peer() {
    pj=$(cd "$peer" && node peer_logits.mjs --model "$file" --random-prompt "$np" --gen $((ng + 1)) --bench \
      --warmup 16 --repeat "$reps" --threads "$threads" --ctx $((np + ng + 64)) 2>/dev/null)
  }
  if [ $((row % 2)) -eq 0 ]; then run_herd; run_peer; else run_peer; run_herd; fi
  row=$((row + 1))
  printf '{"run": "%s", "label": "%s", "threads": %s, "n_prompt": %s, "n_gen": %s, "herd": %s, "llama_cpp": %s}\n' \
    "$run_at" "$label" "$threads" "$np" "$ng" "$hj" "$(echo "$pj" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin).get("timings", {})))')" >>"$out"
  python3 - "$label" "$threads" "$np" "$ng" "$what" "$hj" "$pj" <<'PY'
import json, sys
label, threads, np_, ng, what, hj, pj = sys.argv[1:8]
h, p = json.loads(hj), json.loads(pj)["timings"]
if what == "prefill":
    hv, pv = h["prompt_tok_s"], p["prefill_tok_s"]
    extra = f"{100 * h['prefill_fraction']:.0f}% of {h['compute_gops']:.0f} G {h['compute_peak_kind']} ops/s"
    name = f"prefill {np_}"
else:
    hv, pv = h["gen_tok_s"], p["decode_tok_s"]
    bw = h.get("bandwidth_gbs_reps", [])
    per_token = h["active_bytes_per_token"] + h["kv_bytes_per_token"]
    fr = [f"{100 * g * per_token / (b * 1e9):.0f}%" for g, b in zip(h["gen_tok_s_reps"], bw)]
    extra = f"{', '.join(fr)} of the bound ({', '.join(f'{b:.0f}' for b in bw)} GB/s)"
    name = f"decode {ng}"
print(f"| {label} | {threads} | {name} | {hv:.1f} | {pv:.1f} | {hv / pv:.2f}x | {extra} |")
PY
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| file | threads | tokens/s of | herd | llama.cpp | herd / llama.cpp | herd: fraction of the ceiling |"
echo "|---|---|---|---:|---:|---:|---|"
prompts="64 512 2048"
[ "$quick" = 1 ] && prompts="64 512"
for t in ${types//,/ }; do
  f=$(file_of "$t")
  for np in $prompts; do measure "${t^^}" "$f" 2 "$np" 0 prefill; done
  measure "${t^^}" "$f" 2 64 64 decode
done
if [ "$quick" = 0 ] && [[ ",$types," == *,q8_0,* ]]; then
  measure "Q8_0" "$q8" 1 512 0 prefill
  measure "Q8_0" "$q8" 1 64 64 decode
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
