// Q8_0R, Q4_0R, Q4_KR, Q5_KR and Q6_KR packing (layouts: kernels/repack.h). Plain byte moves: the pass is memory-bound.
#include "kernels/repack.h"

#include <cstring>

#include "core/status.h"
#include "kernels/cpu/qdot.h"

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

// Sub-block j's (j < 8) scale and min from the 12 packed bytes s, and back.
void GetScaleMin(const uint8_t* s, int j, uint8_t* sc, uint8_t* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
    *mn = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}
// The 96 bits of 8 scales and 8 mins (6 bits each) fill the 12 bytes exactly, so this gives the bytes back.
void PutScalesMins(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

// Byte l (< 32) of a Q4_K/Q5_K super-block's qs for element 32 j + l of sub-block j: qs[32 (j / 2) + l], low
// nibble for even j; the fifth bit (Q5_K) is bit j of qh[l].
inline int64_t QsByte(int64_t j, int64_t l) { return 32 * (j / 2) + l; }
inline int QsShift(int64_t j) { return j % 2 == 0 ? 0 : 4; }

// Q6_K super-block (210 bytes): ql[128], qh[64], int8 scales[16], f16 d. Code e (0 .. 255) of it: half h = e / 128,
// l = e % 32, quarter k = (e % 128) / 32: low 4 bits in ql[64 h + l + 32 (k % 2)] (low nibble for k < 2), high 2
// bits at bit 2 k of qh[32 h + l].
constexpr int64_t kQ6KBlockBytes = 210, kQ6KRGroupBytes = 420;
inline int64_t Q6LowByte(int64_t e) { return 64 * (e / 128) + e % 32 + 32 * ((e % 128) / 32 % 2); }
inline int Q6LowShift(int64_t e) { return (e % 128) / 32 < 2 ? 0 : 4; }
inline int64_t Q6HighByte(int64_t e) { return 128 + 32 * (e / 128) + e % 32; }
inline int Q6HighShift(int64_t e) { return static_cast<int>(2 * ((e % 128) / 32)); }

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
  const int64_t block_bytes = q5 ? kQ5KBlockBytes : kQ4KBlockBytes,
                group_bytes = q5 ? kQ5KRGroupBytes : kQ4KRGroupBytes;
  const int64_t meta = q5 ? 320 : 256;  // sc[16], mn[16], d[2], dmin[2]
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    uint8_t* out = row + g * group_bytes;
    std::memset(out, 0, static_cast<size_t>(group_bytes));
    for (int64_t half = 0; half < 2; ++half) {
      const uint8_t* blk = q45k + (2 * g + half) * block_bytes;
      std::memcpy(out + meta + 32 + 2 * half, blk, 2);      // d
      std::memcpy(out + meta + 36 + 2 * half, blk + 2, 2);  // dmin
      const uint8_t* qh = blk + 16;
      const uint8_t* qs = blk + (q5 ? 48 : 16);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;  // the block of the group
        GetScaleMin(blk + 4, static_cast<int>(sub), out + meta + j, out + meta + 16 + j);
        for (int64_t c = 0; c < 32; ++c) {
          const int code = (qs[QsByte(sub, c)] >> QsShift(sub)) & 0xF;
          out[NibbleOffset(j, c)] = static_cast<uint8_t>(out[NibbleOffset(j, c)] | (code << NibbleShift(c)));
          if (q5 && ((qh[c] >> sub) & 1) != 0) {
            const int64_t byte = CodeOffset(j, c) % 64, vec = CodeOffset(j, c) / 64;  // Q8_0R's code vector, byte
            out[256 + 8 * vec + byte / 8] = static_cast<uint8_t>(out[256 + 8 * vec + byte / 8] | (1 << (byte % 8)));
          }
        }
      }
    }
  }
}

void UnpackRowQ45KR(bool q5, const uint8_t* row, int64_t n_in, uint8_t* q45k) {
  HERD_CHECK(n_in % kGroupElems == 0);
  const int64_t block_bytes = q5 ? kQ5KBlockBytes : kQ4KBlockBytes,
                group_bytes = q5 ? kQ5KRGroupBytes : kQ4KRGroupBytes;
  const int64_t meta = q5 ? 320 : 256;
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    const uint8_t* in = row + g * group_bytes;
    for (int64_t half = 0; half < 2; ++half) {
      uint8_t* blk = q45k + (2 * g + half) * block_bytes;
      std::memset(blk, 0, static_cast<size_t>(block_bytes));
      std::memcpy(blk, in + meta + 32 + 2 * half, 2);
      std::memcpy(blk + 2, in + meta + 36 + 2 * half, 2);
      PutScalesMins(in + meta + 8 * half, in + meta + 16 + 8 * half, blk + 4);
      uint8_t* qh = blk + 16;
      uint8_t* qs = blk + (q5 ? 48 : 16);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;
        for (int64_t c = 0; c < 32; ++c) {
          const int code = (in[NibbleOffset(j, c)] >> NibbleShift(c)) & 0xF;
          qs[QsByte(sub, c)] = static_cast<uint8_t>(qs[QsByte(sub, c)] | (code << QsShift(sub)));
          if (q5) {
            const int64_t byte = CodeOffset(j, c) % 64, vec = CodeOffset(j, c) / 64;
            if (((in[256 + 8 * vec + byte / 8] >> (byte % 8)) & 1) != 0) {
              qh[c] = static_cast<uint8_t>(qh[c] | (1 << sub));
            }
          }
        }
      }
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
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    uint8_t* out = row + g * kQ6KRGroupBytes;
    std::memset(out, 0, static_cast<size_t>(kQ6KRGroupBytes));
    for (int64_t half = 0; half < 2; ++half) {
      const uint8_t* blk = q6k + (2 * g + half) * kQ6KBlockBytes;
      std::memcpy(out + 416 + 2 * half, blk + 208, 2);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;  // the block of the group
        out[384 + j] = blk[192 + 2 * sub];
        out[400 + j] = blk[192 + 2 * sub + 1];
        for (int64_t c = 0; c < 32; ++c) {
          const int64_t e = 32 * sub + c;
          const int low = (blk[Q6LowByte(e)] >> Q6LowShift(e)) & 0xF, high = (blk[Q6HighByte(e)] >> Q6HighShift(e)) & 3;
          out[NibbleOffset(j, c)] = static_cast<uint8_t>(out[NibbleOffset(j, c)] | (low << NibbleShift(c)));
          const int64_t vec = c / 4, byte = CodeOffset(j, c) % 64;  // Q8_0R's code vector, and its byte
          uint8_t& h = out[256 + 64 * (vec / 4) + byte];
          h = static_cast<uint8_t>(h | (high << (2 * (vec % 4))));
        }
      }
    }
  }
}

void UnpackRowQ6KR(const uint8_t* row, int64_t n_in, uint8_t* q6k) {
  HERD_CHECK(n_in % kGroupElems == 0);
  for (int64_t g = 0; g < n_in / kGroupElems; ++g) {
    const uint8_t* in = row + g * kQ6KRGroupBytes;
    for (int64_t half = 0; half < 2; ++half) {
      uint8_t* blk = q6k + (2 * g + half) * kQ6KBlockBytes;
      std::memset(blk, 0, static_cast<size_t>(kQ6KBlockBytes));
      std::memcpy(blk + 208, in + 416 + 2 * half, 2);
      for (int64_t sub = 0; sub < 8; ++sub) {
        const int64_t j = 8 * half + sub;
        blk[192 + 2 * sub] = in[384 + j];
        blk[192 + 2 * sub + 1] = in[400 + j];
        for (int64_t c = 0; c < 32; ++c) {
          const int64_t e = 32 * sub + c;
          const int low = (in[NibbleOffset(j, c)] >> NibbleShift(c)) & 0xF;
          const int64_t vec = c / 4, byte = CodeOffset(j, c) % 64;
          const int high = (in[256 + 64 * (vec / 4) + byte] >> (2 * (vec % 4))) & 3;
          blk[Q6LowByte(e)] = static_cast<uint8_t>(blk[Q6LowByte(e)] | (low << Q6LowShift(e)));
          blk[Q6HighByte(e)] = static_cast<uint8_t>(blk[Q6HighByte(e)] | (high << Q6HighShift(e)));
        }
      }
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
