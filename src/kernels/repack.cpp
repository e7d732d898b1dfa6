// Q8_0R and Q4_0R packing (layouts: kernels/repack.h). Plain byte moves: the pass is memory-bound.
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

}  // namespace

DType RepackedType(DType t, int64_t n_in) {
  if (n_in <= 0 || n_in % kGroupElems != 0) return t;
  if (t == DType::kQ8_0 && QuantDotSupports(DType::kQ8_0R)) return DType::kQ8_0R;
  if (t == DType::kQ4_0 && QuantDotSupports(DType::kQ4_0R)) return DType::kQ4_0R;
  return t;
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

void UnpackRow(DType t, const uint8_t* row, int64_t n_in, uint8_t* out) {
  HERD_CHECK(IsRepacked(t));
  if (t == DType::kQ8_0R) {
    UnpackRowQ8_0R(row, n_in, out);
  } else {
    UnpackRowQ4_0R(row, n_in, out);
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
  HERD_CHECK(to == DType::kQ8_0R || to == DType::kQ4_0R);
  for (int64_t r = r_begin; r < r_end; ++r) {
    if (to == DType::kQ8_0R) {
      PackRowQ8_0R(w.Row(r), n_in, dst + r * row_bytes);
    } else {
      PackRowQ4_0R(w.Row(r), n_in, dst + r * row_bytes);
    }
  }
}

}  // namespace herd::kernels
