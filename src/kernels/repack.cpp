// Q8_0R, Q4_0R, Q4_KR, Q5_KR and Q6_KR packing (layouts: kernels/repack.h). Plain byte moves: the pass is memory-bound.
#include "kernels/repack.h"

#include <cstring>

#include "core/status.h"
#include "kernels/cpu/qdot.h"
#include "kernels/kquant_layout.h"

namespace herd::kernels {
namespace {

constexpr int64_t kGroupElems = 512, kGroupBytes = 544, kGroupBlocks = 16;
constexpr int64_t kQ4GroupBytes = 288, kQ4BlockBytes = 18;

// Byte offset in a group of block j's (j < 16) code c (c < 32): code vector c / 4, lane j.
inline int64_t CodeOffset(int64_t j, int64_t c) { return 64 * (c / 4) + 4 * j + c % 4; }

// Q4_0R: the byte of block j's code c (c < 32) in a group holds it in its low nibble when (c / 4) is even, else in
// its high nibble: Q8_0R's code vector c / 4 packed into vector c / 8.
inline int64_t NibbleOffset(int64_t j, int64_t c) { return 64 * (c / 8) + 4 * j + c % 4; }
inline int NibbleShift(int64_t c) { return (c / 4) % 2 == 0 ? 0 : 4; }

// Code c of a GGUF Q4_0 block: qs[c] low nibble for c < 16, qs[c - 16] high nibble otherwise.
inline uint8_t Q4Code(const uint8_t* blk, int64_t c) {
  return c < 16 ? blk[2 + c] & 0xF : static_cast<uint8_t>(blk[2 + c - 16] >> 4);
}

// Q4_K / Q5_K super-block bytes (llama4.md 5.4): d, dmin, 12 bytes of 6-bit scales and mins, [Q5_K: qh[32]], qs[128].
constexpr int64_t kQ4KBlockBytes = 144, kQ5KBlockBytes = 176;
constexpr int64_t kQ4KRGroupBytes = 296, kQ5KRGroupBytes = 360;

constexpr int64_t kQ6KBlockBytes = 210, kQ6KRGroupBytes = 420;

}  // namespace

DType RepackedType(DType t, int64_t n_in) {
  if (n_in <= 0 || n_in % kGroupElems != 0) return t;
  for (DType to : {DType::kQ8_0R, DType::kQ4_0R, DType::kQ4_KR, DType::kQ5_KR, DType::kQ6_KR}) {
    if (t == PackedFrom(to) && QuantDotSupports(to)) return to;
  }
  return t;
}

DType PackedFrom(DType t) {
  switch (t) {
    case DType::kQ8_0R:
      return DType::kQ8_0;
    case DType::kQ4_0R:
      return DType::kQ4_0;
    case DType::kQ4_KR:
      return DType::kQ4_K;
    case DType::kQ5_KR:
      return DType::kQ5_K;
    case DType::kQ6_KR:
      return DType::kQ6_K;
    default:
      HERD_CHECK(false && "PackedFrom: not a repacked type");
      return t;
  }
}

int64_t RepackedBytes(const TensorView& w) { return w.Rows() * RowBytes(RepackedType(w.dtype, w.Cols()), w.Cols()); }

void PackRowQ45KR(bool q5, const uint8_t* q45k, int64_t n_in, uint8_t* row) {
  HERD_CHECK(n_in % kGroupElems == 0);
  const DType from = q5 ? DType::kQ5_K : DType::kQ4_K;
  const int64_t block_bytes = q5 ? kQ5KBlockBytes : kQ4KBlockBytes,
                group_bytes = q5 ? kQ5KRGroupBytes : kQ4KRGroupBytes;
  const int64_t meta = q5 ? 320 : 256;  // sc[16], mn[16], d[2], dmin[2]
  int q[256];
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    uint8_t* out = row + g * group_bytes;
    std::memset(out, 0, static_cast<size_t>(group_bytes));
    for (int64_t half = 0; half < 2; ++half) {
      const uint8_t* blk = q45k + (2 * g + half) * block_bytes;
      std::memcpy(out + meta + 32 + 2 * half, blk, 2);      // d
      std::memcpy(out + meta + 36 + 2 * half, blk + 2, 2);  // dmin
      KQuantCodes(from, blk, q);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;  // the block of the group
        int sc, mn;
        UnpackScaleMin(blk + 4, static_cast<int>(sub), &sc, &mn);
        out[meta + j] = static_cast<uint8_t>(sc);
        out[meta + 16 + j] = static_cast<uint8_t>(mn);
        for (int64_t c = 0; c < 32; ++c) {
          const int code = q[32 * sub + c];
          out[NibbleOffset(j, c)] = static_cast<uint8_t>(out[NibbleOffset(j, c)] | ((code & 0xF) << NibbleShift(c)));
          if (code >= 16) {  // Q5_K's fifth bit: bit `byte` of Q8_0R code vector c / 4's mask
            const int64_t byte = CodeOffset(j, c) % 64, vec = CodeOffset(j, c) / 64;
            out[256 + 8 * vec + byte / 8] = static_cast<uint8_t>(out[256 + 8 * vec + byte / 8] | (1 << (byte % 8)));
          }
        }
      }
    }
  }
}

void UnpackRowQ45KR(bool q5, const uint8_t* row, int64_t n_in, uint8_t* q45k) {
  HERD_CHECK(n_in % kGroupElems == 0);
  const DType to = q5 ? DType::kQ5_K : DType::kQ4_K;
  const int64_t block_bytes = q5 ? kQ5KBlockBytes : kQ4KBlockBytes,
                group_bytes = q5 ? kQ5KRGroupBytes : kQ4KRGroupBytes;
  const int64_t meta = q5 ? 320 : 256;
  int q[256], sc[8], mn[8];
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    const uint8_t* in = row + g * group_bytes;
    for (int64_t half = 0; half < 2; ++half) {
      uint8_t* blk = q45k + (2 * g + half) * block_bytes;
      std::memcpy(blk, in + meta + 32 + 2 * half, 2);
      std::memcpy(blk + 2, in + meta + 36 + 2 * half, 2);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;
        sc[sub] = in[meta + j];
        mn[sub] = in[meta + 16 + j];
        for (int64_t c = 0; c < 32; ++c) {
          int code = (in[NibbleOffset(j, c)] >> NibbleShift(c)) & 0xF;
          if (q5) {
            const int64_t byte = CodeOffset(j, c) % 64, vec = CodeOffset(j, c) / 64;
            code |= ((in[256 + 8 * vec + byte / 8] >> (byte % 8)) & 1) << 4;
          }
          q[32 * sub + c] = code;
        }
      }
      PackScalesMins(sc, mn, blk + 4);
      PutKQuantCodes(to, q, blk);
    }
  }
}

void PackRowQ4_0R(const uint8_t* q4_0, int64_t n_in, uint8_t* row) {
  HERD_CHECK(n_in % kGroupElems == 0);
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    uint8_t* out = row + g * kQ4GroupBytes;
    std::memset(out, 0, 256);
    for (int64_t j = 0; j < kGroupBlocks; ++j) {
      const uint8_t* blk = q4_0 + (kGroupBlocks * g + j) * kQ4BlockBytes;
      std::memcpy(out + 256 + 2 * j, blk, 2);
      for (int64_t c = 0; c < 32; ++c) {
        out[NibbleOffset(j, c)] = static_cast<uint8_t>(out[NibbleOffset(j, c)] | (Q4Code(blk, c) << NibbleShift(c)));
      }
    }
  }
}

void UnpackRowQ4_0R(const uint8_t* row, int64_t n_in, uint8_t* q4_0) {
  HERD_CHECK(n_in % kGroupElems == 0);
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    const uint8_t* in = row + g * kQ4GroupBytes;
    for (int64_t j = 0; j < kGroupBlocks; ++j) {
      uint8_t* blk = q4_0 + (kGroupBlocks * g + j) * kQ4BlockBytes;
      std::memcpy(blk, in + 256 + 2 * j, 2);
      for (int64_t c = 0; c < 16; ++c) {
        const int lo = (in[NibbleOffset(j, c)] >> NibbleShift(c)) & 0xF;
        const int hi = (in[NibbleOffset(j, c + 16)] >> NibbleShift(c + 16)) & 0xF;
        blk[2 + c] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
}

void PackRowQ8_0R(const uint8_t* q8_0, int64_t n_in, uint8_t* row) {
  HERD_CHECK(n_in % kGroupElems == 0);
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    uint8_t* out = row + g * kGroupBytes;
    for (int64_t j = 0; j < kGroupBlocks; ++j) {
      const uint8_t* blk = q8_0 + (kGroupBlocks * g + j) * 34;
      std::memcpy(out + 512 + 2 * j, blk, 2);
      for (int64_t part = 0; part < 8; ++part) {  // 4 contiguous codes at a time, offset by 128 in one xor
        uint32_t v;
        std::memcpy(&v, blk + 2 + 4 * part, 4);
        v ^= 0x80808080u;
        std::memcpy(out + CodeOffset(j, 4 * part), &v, 4);
      }
    }
  }
}

void UnpackRowQ8_0R(const uint8_t* row, int64_t n_in, uint8_t* q8_0) {
  HERD_CHECK(n_in % kGroupElems == 0);
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    const uint8_t* in = row + g * kGroupBytes;
    for (int64_t j = 0; j < kGroupBlocks; ++j) {
      uint8_t* blk = q8_0 + (kGroupBlocks * g + j) * 34;
      std::memcpy(blk, in + 512 + 2 * j, 2);
      for (int64_t part = 0; part < 8; ++part) {
        uint32_t v;
        std::memcpy(&v, in + CodeOffset(j, 4 * part), 4);
        v ^= 0x80808080u;
        std::memcpy(blk + 2 + 4 * part, &v, 4);
      }
    }
  }
}

void PackRowQ6KR(const uint8_t* q6k, int64_t n_in, uint8_t* row) {
  HERD_CHECK(n_in % kGroupElems == 0);
  int q[256];
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    uint8_t* out = row + g * kQ6KRGroupBytes;
    std::memset(out, 0, static_cast<size_t>(kQ6KRGroupBytes));
    for (int64_t half = 0; half < 2; ++half) {
      const uint8_t* blk = q6k + (2 * g + half) * kQ6KBlockBytes;
      std::memcpy(out + 416 + 2 * half, blk + 208, 2);
      KQuantCodes(DType::kQ6_K, blk, q);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;  // the block of the group
        out[384 + j] = blk[192 + 2 * sub];
        out[400 + j] = blk[192 + 2 * sub + 1];
        for (int64_t c = 0; c < 32; ++c) {
          const int code = q[32 * sub + c];
          out[NibbleOffset(j, c)] = static_cast<uint8_t>(out[NibbleOffset(j, c)] | ((code & 0xF) << NibbleShift(c)));
          const int64_t vec = c / 4, byte = CodeOffset(j, c) % 64;  // Q8_0R's code vector, and its byte
          uint8_t& h = out[256 + 64 * (vec / 4) + byte];
          h = static_cast<uint8_t>(h | ((code >> 4) << (2 * (vec % 4))));
        }
      }
    }
  }
}

void UnpackRowQ6KR(const uint8_t* row, int64_t n_in, uint8_t* q6k) {
  HERD_CHECK(n_in % kGroupElems == 0);
  int q[256];
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    const uint8_t* in = row + g * kQ6KRGroupBytes;
    for (int64_t half = 0; half < 2; ++half) {
      uint8_t* blk = q6k + (2 * g + half) * kQ6KBlockBytes;
      std::memcpy(blk + 208, in + 416 + 2 * half, 2);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;
        blk[192 + 2 * sub] = in[384 + j];
        blk[192 + 2 * sub + 1] = in[400 + j];
        for (int64_t c = 0; c < 32; ++c) {
          const int64_t vec = c / 4, byte = CodeOffset(j, c) % 64;
          const int low = (in[NibbleOffset(j, c)] >> NibbleShift(c)) & 0xF;
          q[32 * sub + c] = low | (((in[256 + 64 * (vec / 4) + byte] >> (2 * (vec % 4))) & 3) << 4);
        }
      }
      PutKQuantCodes(DType::kQ6_K, q, blk);
    }
  }
}

void PackRow(DType t, const uint8_t* src, int64_t n_in, uint8_t* row) {
  switch (t) {
    case DType::kQ8_0R:
      return PackRowQ8_0R(src, n_in, row);
    case DType::kQ4_0R:
      return PackRowQ4_0R(src, n_in, row);
    case DType::kQ4_KR:
    case DType::kQ5_KR:
      return PackRowQ45KR(t == DType::kQ5_KR, src, n_in, row);
    case DType::kQ6_KR:
      return PackRowQ6KR(src, n_in, row);
    default:
      HERD_CHECK(false && "PackRow: not a repacked type");
  }
}

void UnpackRow(DType t, const uint8_t* row, int64_t n_in, uint8_t* out) {
  switch (t) {
    case DType::kQ8_0R:
      return UnpackRowQ8_0R(row, n_in, out);
    case DType::kQ4_0R:
      return UnpackRowQ4_0R(row, n_in, out);
    case DType::kQ4_KR:
    case DType::kQ5_KR:
      return UnpackRowQ45KR(t == DType::kQ5_KR, row, n_in, out);
    case DType::kQ6_KR:
      return UnpackRowQ6KR(row, n_in, out);
    default:
      HERD_CHECK(false && "UnpackRow: not a repacked type");
  }
}

void RepackRows(const TensorView& w, int64_t r_begin, int64_t r_end, uint8_t* dst) {
  const int64_t n_in = w.Cols();
  const DType to = RepackedType(w.dtype, n_in);
  HERD_CHECK(0 <= r_begin && r_begin <= r_end && r_end <= w.Rows());
  const int64_t row_bytes = RowBytes(to, n_in);
  if (to == w.dtype) {  // the same layout: a copy
    std::memcpy(dst + r_begin * row_bytes, w.Row(r_begin), static_cast<size_t>((r_end - r_begin) * row_bytes));
    return;
  }
  for (int64_t r = r_begin; r < r_end; ++r) PackRow(to, w.Row(r), n_in, dst + r * row_bytes);
}

}  // namespace herd::kernels
