#!/usr/bin/env bash
# herd's quantizer against llama.cpp's (issue 16 item 5), each file run by both engines. Two random-weight Llama 4
# models from the peer's make_gguf.py, F32, every row a multiple of 256 (so every matrix takes the K-quants):
#   --model small (default): 4 layers, hidden 256, 8 experts top-1 + shared expert, expert FFN 512, dense FFN 1024,
#     vocab 4096 (68 MB). herd quantize q4_k, q4_k_s, q4_k_m, q5_k, q5_k_s, q5_k_m, q6_k, q6_k_m, q4_0, q8_0;
#     llama.cpp's llama_model_quantize through the peer's peer_quantize q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, q4_0,
#     q8_0. 8 experts is the count for which llama.cpp keeps attn_k/attn_v in Q8_0, and herd's mixes store every
#     tensor in the type llama.cpp's mix of the same name does (herd's q6_k_m is llama.cpp's q6_k): equal sizes.
#   --model d2048: 8 layers, hidden 2048, 16 heads / 4 KV heads, 16 experts top-1 + shared expert FFN 8192, expert
#     FFN 4096, vocab 32000 (14.6 GB of F32, 3.6 G parameters). Only q4_k_s, q5_k_s and q6_k of each quantizer (the
#     files of equal size) and no dequantized copies: it needs about 25 GB of disk.
# Both engines compute every position's logits of the same --chunks N chunks of 128 random token ids (BOS first) for
# the F32 file and each quantized one; per engine, over the second half of each chunk (llama.cpp's perplexity
# convention): mean KLD(P_F32 || P_quant) with its standard error over the chunks, max KLD and the top-1 agreement
# with its own F32 run. Random weights make these KLDs larger than a trained model's; only rankings and ratios mean
# anything, and two quantizers' KLDs differ by noise of about the standard error even at equal weight error (each
# rounding moves the logits its own way), so a difference smaller than two standard errors decides nothing. A second
# table (small model) isolates the quantizers from the type choices: every file dequantized to F32 (`herd quantize
# --type f32`), the relative RMS error against the source over the tensors both quantizers stored in the same type.
#
# For each type both quantizers made, a paired line: per engine, the mean over the chunks of herd's file's KLD minus
# llama.cpp's file's KLD on the same chunk, with the standard error of that difference (the chunks' own spread cancels).
#
# Usage: bench/quant-quality.sh [--model small|d2048] [--chunks N (small: 16, d2048: 8)] [--types T,T (only these of
# the model's types, e.g. q6_k)] [--rms] [--dir DIR (/tmp/herd-quant, /tmp/herd-quant-d2048)] [--herd BIN] [--peer DIR].
# Needs the peer (scripts/install-peer.sh) and /usr/bin/python3 with numpy. Every output is cached in DIR (delete a
# file's outputs after changing what made it). Prints markdown. --rms: also, for each type name both quantizers made
# (herd-T against llama.cpp-T), the relative RMS error of every tensor type both files store, from dequantized F32
# copies (for d2048, two copies of 14.6 GB each per pair).
set -euo pipefail
cd "$(dirname "$0")/.."
model=small
dir=
chunks=
only=
rms=0
herd=build/release/herd
peer=build/peer
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --chunks) chunks=$2; shift 2 ;;
    --types) only=$2; shift 2 ;;
    --rms) rms=1; shift ;;
    --dir) dir=$2; shift 2 ;;
    --herd) herd=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    *) echo "quant-quality: unknown argument $1" >&2; exit 1 ;;
  esac
done
case "$model" in
  small)
    dir=${dir:-/tmp/herd-quant}; chunks=${chunks:-16}; vocab=4096
    shape=(--layers 4 --hidden 256 --heads 4 --kv-heads 2 --ff 1024 --ff-exp 512 --experts 8 --vocab 4096 --seed 11)
    herd_types=(q4_k q4_k_s q4_k_m q5_k q5_k_s q5_k_m q6_k q6_k_m q4_0 q8_0)
    peer_types=(q4_k_s q4_k_m q5_k_s q5_k_m q6_k q4_0 q8_0) ;;
  d2048)
    dir=${dir:-/tmp/herd-quant-d2048}; chunks=${chunks:-8}; vocab=32000
    shape=(--layers 8 --hidden 2048 --heads 16 --kv-heads 4 --ff 8192 --ff-exp 4096 --experts 16 --vocab 32000
           --ctx 8192 --rope-scaling llama3)
    herd_types=(q4_k_s q5_k_s q6_k)
    peer_types=(q4_k_s q5_k_s q6_k) ;;
  *) echo "quant-quality: --model is small or d2048, not $model" >&2; exit 1 ;;
esac
if [ -n "$only" ]; then
  keep() { local t; for t in "$@"; do [[ ",$only," == *",$t,"* ]] && printf '%s\n' "$t"; done; return 0; }
  mapfile -t herd_types < <(keep "${herd_types[@]}")
  mapfile -t peer_types < <(keep "${peer_types[@]}")
  [ ${#herd_types[@]} -gt 0 ] || [ ${#peer_types[@]} -gt 0 ] || { echo "quant-quality: no type of --types $only for --model $model" >&2; exit 1; }
fi
[[ "$chunks" =~ ^[1-9][0-9]*$ ]] || { echo "quant-quality: --chunks wants a positive count" >&2; exit 1; }
[ -x "$herd" ] || { echo "quant-quality: $herd not found" >&2; exit 1; }
[ -x "$peer/peer_quantize" ] || { echo "quant-quality: no peer_quantize in $peer (run scripts/install-peer.sh)" >&2; exit 1; }
mkdir -p "$dir"
herd=$(realpath "$herd")
src="$dir/f32.gguf"
[ -f "$src" ] || /usr/bin/python3 "$peer/make_gguf.py" --arch llama4 "${shape[@]}" --ftype f32 --out "$src" >&2
files=()
for t in "${herd_types[@]}"; do
  f="$dir/herd-$t.gguf"
  [ -f "$f" ] || "$herd" quantize "$src" "$f" --type "$t" -q
  files+=("$f")
done
for t in "${peer_types[@]}"; do
  f="$dir/llama.cpp-$t.gguf"
  [ -f "$f" ] || "$peer/peer_quantize" "$src" "$f" "$t" 2 >/dev/null 2>&1
  files+=("$f")
done

# The chunks: 128 ids each, BOS (1) first, the rest uniform over the pieces after the specials (the first 4 are the
# same for any count).
/usr/bin/python3 - "$dir" "$chunks" "$vocab" <<'PY'
import json, random, sys
d, n, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(5)
chunks = [[1] + [rng.randrange(3, vocab) for _ in range(127)] for _ in range(n)]
for i, c in enumerate(chunks):
    json.dump(c, open(f"{d}/chunk{i}.json", "w"))
PY

# Every position's logits of every chunk, by each engine (herd: JSON, llama.cpp: float32 [128, vocab]).
logits() {
  local f=$1 name i out
  name=$(basename "$f" .gguf)
  for ((i = 0; i < chunks; ++i)); do
    out="$dir/$name.herd.$i.json"  # written under another name first: an interrupted run leaves no partial output
    [ -f "$out" ] || { "$herd" logits -m "$f" --tokens "$(python3 -c "import json; print(','.join(map(str, json.load(open('$dir/chunk$i.json')))))")" \
      --all --json --no-repack -t 2 >"$out.part" 2>/dev/null && mv "$out.part" "$out"; }
    out="$dir/$name.peer.$i.f32"
    [ -f "$out" ] || { (cd "$peer" && node peer_logits.mjs --model "$f" --tokens-file "$dir/chunk$i.json" \
      --positions all --full-logits "$out.part" --threads 2 >/dev/null 2>&1) && mv "$out.part" "$out"; }
  done
}
logits "$src"
for f in "${files[@]}"; do logits "$f"; done

/usr/bin/python3 - "$dir" "$chunks" "$vocab" "$src" "${files[@]}" <<'PY'
import json, os, sys
import numpy as np
d, n, V, src, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5:]
N = 128

def load(f, engine, i):
    name = os.path.basename(f)[:-5]
    if engine == "herd":
        j = json.load(open(f"{d}/{name}.herd.{i}.json"))
        x = np.array([p["logits"] for p in j["positions"]], dtype=np.float64)
    else:
        x = np.fromfile(f"{d}/{name}.peer.{i}.f32", dtype=np.float32).reshape(-1, V)[:N].astype(np.float64)
    x = x[N // 2:]  # the second half of the chunk
    x -= x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

# Per engine and chunk: the F32 run's log-probabilities are loaded once per chunk.
stats = {f: {e: ([], [], []) for e in ("herd", "peer")} for f in files}
for e in ("herd", "peer"):
    for i in range(n):
        r = load(src, e, i)
        for f in files:
            q = load(f, e, i)
            kl = (np.exp(r) * (r - q)).sum(axis=1)
            mean, mx, top = stats[f][e]
            mean.append(kl.mean())
            mx.append(kl.max())
            top.append((q.argmax(axis=1) == r.argmax(axis=1)).mean())
print(f"{n} chunks of 128 tokens, KLD over the second halves ({n * N // 2} positions); ± is the standard error of the "
      "mean over the chunks")
print()
print("| file (quantizer-type) | MiB | herd: mean KLD | max KLD | top-1 | llama.cpp: mean KLD | max KLD | top-1 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for f in files:
    cells = []
    for e in ("herd", "peer"):
        mean, mx, top = (np.array(v) for v in stats[f][e])
        se = mean.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        cells += [f"{mean.mean():.4f} ± {se:.4f}", f"{mx.max():.3f}", f"{100 * top.mean():.1f}%"]
    print(f"| {os.path.basename(f)[:-5]} | {os.path.getsize(f) / 2**20:.2f} | " + " | ".join(cells) + " |")
names = {os.path.basename(f)[:-5]: f for f in files}
pairs = [(names[h], names["llama.cpp-" + h[5:]]) for h in names if h.startswith("herd-") and "llama.cpp-" + h[5:] in names]
if pairs and n > 1:
    print()
    print("| type | herd: herd's file minus llama.cpp's, mean KLD | llama.cpp: the same |")
    print("|---|---:|---:|")
    for h, l in pairs:
        cells = []
        for e in ("herd", "peer"):
            diff = np.array(stats[h][e][0]) - np.array(stats[l][e][0])
            cells.append(f"{diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(n):.4f}")
        print(f"| {os.path.basename(h)[5:-5]} | " + " | ".join(cells) + " |")
PY

[ "$model" = small ] && [ -z "$only" ] || [ "$rms" = 1 ] || exit 0  # (the small table's pairs need every type)
# Per-tensor error at equal types.
for f in "${files[@]}"; do
  d32="$dir/$(basename "$f" .gguf).deq-f32.gguf"
  [ -f "$d32" ] || "$herd" quantize "$f" "$d32" --type f32 -q >/dev/null 2>&1
done
PYTHONPATH="$peer" /usr/bin/python3 - "$dir" "$src" "$rms" "${herd_types[@]}" -- "${peer_types[@]}" <<'PY'
import mmap, os, sys
import numpy as np
import gguf_io
from gguf_io import GGUFReader


class Mapped:  # the peer's reader reads a whole file into memory; map it instead (d2048: three files of 14.6 GB)
    def __init__(self, path, mode):
        self.f = open(path, mode)

    def read(self):
        return mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)


gguf_io.open = Mapped
d, src, rms = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
ref = GGUFReader(src)
if rms:  # same-name pairs, every ggml type that both files store some tensor in
    cut = sys.argv.index("--")
    peer = set(sys.argv[cut + 1:])
    pairs = []
    for t in (t for t in sys.argv[4:cut] if t in peer):
        hq, lq = GGUFReader(f"{d}/herd-{t}.gguf"), GGUFReader(f"{d}/llama.cpp-{t}.gguf")
        shared = sorted({hq.tinfo[n][1] for n in ref.tinfo if hq.tinfo[n][1] == lq.tinfo[n][1] and hq.tinfo[n][1] != 0})
        pairs += [(t, t, gt) for gt in shared]
else:  # (herd file, llama.cpp file, ggml type): the tensors both files store in that type.
    pairs = [("q4_k", "q4_k_s", 12), ("q5_k", "q5_k_s", 13), ("q6_k", "q6_k", 14), ("q4_0", "q4_0", 2), ("q8_0", "q8_0", 8)]
type_names = {2: "Q4_0", 8: "Q8_0", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 1: "F16"}
print()
print("| type | tensors stored in that type by both | elements | herd: relative RMS error | llama.cpp: relative RMS error |")
print("|---|---:|---:|---:|---:|")
for h, l, gt in pairs:
    hf, lf = f"{d}/herd-{h}.gguf", f"{d}/llama.cpp-{l}.gguf"
    hq, lq = GGUFReader(hf), GGUFReader(lf)
    hd, ld = GGUFReader(hf[:-5] + ".deq-f32.gguf"), GGUFReader(lf[:-5] + ".deq-f32.gguf")
    names = [n for n in ref.tinfo if hq.tinfo[n][1] == gt and lq.tinfo[n][1] == gt]
    err = {"herd": 0.0, "llama.cpp": 0.0}
    norm, elems = 0.0, 0
    for n in names:
        x = ref.tensor(n).astype(np.float64)
        norm += float((x * x).sum())
        elems += x.size
        err["herd"] += float(((hd.tensor(n) - x) ** 2).sum())
        err["llama.cpp"] += float(((ld.tensor(n) - x) ** 2).sum())
    print(f"| {type_names.get(gt, gt)} (herd {h}, llama.cpp {l}) | {len(names)} | {elems} | "
          f"{np.sqrt(err['herd'] / norm):.5f} | {np.sqrt(err['llama.cpp'] / norm):.5f} |")
PY
