#!/usr/bin/env bash
# herd's quantizer against llama.cpp's (issue 16 item 5), each file run by both engines: one F32 random-weight Llama 4
# (the peer's make_gguf.py: 4 layers, hidden 256, 8 experts top-1 + shared expert, expert FFN 512, dense FFN 1024,
# vocab 4096; every row a multiple of 256, so every matrix takes the K-quants) is quantized by `herd quantize` (q4_k,
# q5_k, q6_k, q4_0, q8_0) and by llama.cpp's llama_model_quantize through the peer's peer_quantize (q4_k_s, q4_k_m,
# q5_k_s, q5_k_m, q6_k, q4_0, q8_0: its mixes keep some tensors in a larger type, so the file sizes are listed for
# comparisons at equal size). Both engines compute every position's logits of the same 4 chunks of 128 random token
# ids (BOS first) for the F32 file and each quantized one; per engine, over the second half of each chunk (llama.cpp's
# perplexity convention): mean and max KL(P_F32 || P_quant) and the top-1 agreement with its own F32 run.
# Random weights make these KLDs larger than a trained model's; only rankings and ratios mean anything. A second
# table isolates the quantizers from llama.cpp's type choices: every file dequantized to F32 (`herd quantize --type
# f32`), the relative RMS error against the source over the tensors both quantizers stored in the same type.
#
# Usage: bench/quant-quality.sh [--dir /tmp/herd-quant] [--herd BIN] [--peer DIR]. Needs the peer (scripts/install-peer.sh)
# and /usr/bin/python3 with numpy. Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=/tmp/herd-quant
herd=build/release/herd
peer=build/peer
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --herd) herd=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    *) echo "quant-quality: unknown argument $1" >&2; exit 1 ;;
  esac
done
[ -x "$herd" ] || { echo "quant-quality: $herd not found" >&2; exit 1; }
[ -x "$peer/peer_quantize" ] || { echo "quant-quality: no peer_quantize in $peer (run scripts/install-peer.sh)" >&2; exit 1; }
mkdir -p "$dir"
herd=$(realpath "$herd")
src="$dir/f32.gguf"
[ -f "$src" ] || /usr/bin/python3 "$peer/make_gguf.py" --arch llama4 --layers 4 --hidden 256 --heads 4 --kv-heads 2 \
  --ff 1024 --ff-exp 512 --experts 8 --vocab 4096 --ftype f32 --seed 11 --out "$src" >&2
files=()
for t in q4_k q4_k_m q5_k q5_k_m q6_k q4_0 q8_0; do
  f="$dir/herd-$t.gguf"
  [ -f "$f" ] || "$herd" quantize "$src" "$f" --type "$t" -q
  files+=("$f")
done
for t in q4_k_s q4_k_m q5_k_s q5_k_m q6_k q4_0 q8_0; do
  f="$dir/llama.cpp-$t.gguf"
  [ -f "$f" ] || "$peer/peer_quantize" "$src" "$f" "$t" 2 >/dev/null 2>&1
  files+=("$f")
done

# The chunks: 4 x 128 ids, BOS (1) first, the rest uniform over the pieces after the specials.
/usr/bin/python3 - "$dir" <<'PY'
import json, random, sys
rng = random.Random(5)
chunks = [[1] + [rng.randrange(3, 4096) for _ in range(127)] for _ in range(4)]
json.dump(chunks, open(f"{sys.argv[1]}/chunks.json", "w"))
for i, c in enumerate(chunks):
    json.dump(c, open(f"{sys.argv[1]}/chunk{i}.json", "w"))
PY

# Every position's logits of every chunk, by each engine, as float32 [4 * 128, vocab] files.
logits() {
  local f=$1 name
  name=$(basename "$f" .gguf)
  for i in 0 1 2 3; do
    [ -f "$dir/$name.herd.$i.json" ] || "$herd" logits -m "$f" --tokens "$(python3 -c "import json; print(','.join(map(str, json.load(open('$dir/chunk$i.json')))))")" \
      --all --json --no-repack -t 2 >"$dir/$name.herd.$i.json" 2>/dev/null
    [ -f "$dir/$name.peer.$i.f32" ] || (cd "$peer" && node peer_logits.mjs --model "$f" --tokens-file "$dir/chunk$i.json" \
      --positions all --full-logits "$dir/$name.peer.$i.f32" --threads 2 >/dev/null 2>&1)
  done
}
logits "$src"
for f in "${files[@]}"; do logits "$f"; done

/usr/bin/python3 - "$dir" "$src" "${files[@]}" <<'PY'
import json, os, sys
import numpy as np
d, src, files = sys.argv[1], sys.argv[2], sys.argv[3:]
V, N = 4096, 128

def load(f, engine):
    name = os.path.basename(f)[:-5]
    rows = []
    for i in range(4):
        if engine == "herd":
            j = json.load(open(f"{d}/{name}.herd.{i}.json"))
            rows.append(np.array([p["logits"] for p in j["positions"]], dtype=np.float64))
        else:
            rows.append(np.fromfile(f"{d}/{name}.peer.{i}.f32", dtype=np.float32).reshape(-1, V)[:N].astype(np.float64))
    x = np.stack(rows)[:, N // 2:, :].reshape(-1, V)  # the second half of each chunk
    x -= x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

ref = {e: load(src, e) for e in ("herd", "peer")}
params = None
print("| file (quantizer-type) | MiB | herd: mean KLD | max KLD | top-1 | llama.cpp: mean KLD | max KLD | top-1 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for f in files:
    cells = []
    for e in ("herd", "peer"):
        q, r = load(f, e), ref[e]
        kl = (np.exp(r) * (r - q)).sum(axis=1)
        top = (q.argmax(axis=1) == r.argmax(axis=1)).mean()
        cells += [f"{kl.mean():.5f}", f"{kl.max():.4f}", f"{100 * top:.1f}%"]
    print(f"| {os.path.basename(f)[:-5]} | {os.path.getsize(f) / 2**20:.2f} | " + " | ".join(cells) + " |")
PY

# Per-tensor error at equal types.
for f in "${files[@]}"; do
  d32="$dir/$(basename "$f" .gguf).deq-f32.gguf"
  [ -f "$d32" ] || "$herd" quantize "$f" "$d32" --type f32 -q >/dev/null 2>&1
done
PYTHONPATH="$peer" /usr/bin/python3 - "$dir" "$src" <<'PY'
import os, sys
import numpy as np
from gguf_io import GGUFReader
d, src = sys.argv[1], sys.argv[2]
ref = GGUFReader(src)
pairs = [("q4_k", "q4_k_s"), ("q5_k", "q5_k_s"), ("q6_k", "q6_k"), ("q4_0", "q4_0"), ("q8_0", "q8_0")]
print()
print("| type | tensors stored in that type by both | elements | herd: relative RMS error | llama.cpp: relative RMS error |")
print("|---|---:|---:|---:|---:|")
for h, l in pairs:
    hf, lf = f"{d}/herd-{h}.gguf", f"{d}/llama.cpp-{l}.gguf"
    hq, lq = GGUFReader(hf), GGUFReader(lf)
    hd, ld = GGUFReader(hf[:-5] + ".deq-f32.gguf"), GGUFReader(lf[:-5] + ".deq-f32.gguf")
    names = [n for n in ref.tinfo if hq.tinfo[n][1] == lq.tinfo[n][1] and ref.tinfo[n][1] != hq.tinfo[n][1]]
    err = {"herd": 0.0, "llama.cpp": 0.0}
    norm, elems = 0.0, 0
    for n in names:
        x = ref.tensor(n).astype(np.float64)
        norm += float((x * x).sum())
        elems += x.size
        err["herd"] += float(((hd.tensor(n) - x) ** 2).sum())
        err["llama.cpp"] += float(((ld.tensor(n) - x) ** 2).sum())
    print(f"| {h.upper()} (llama.cpp {l}) | {len(names)} | {elems} | {np.sqrt(err['herd'] / norm):.5f} | "
          f"{np.sqrt(err['llama.cpp'] / norm):.5f} |")
PY
