#include "kernels/kquant_layout.h"

#include <cstring>

#include "core/status.h"

namespace herd::kernels {

void UnpackScaleMin(const uint8_t* s, int j, int* sc, int* mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Bytes 0-3 scales 0-3, 4-7 mins 0-3, 8-11 the low nibbles of scales (low) and mins (high) 4-7; the top two bits of
// bytes 0-7 hold bits 4-5 of scales/mins 4-7.
void PackScalesMins(const int* sc, const int* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

void KQuantCodes(DType t, const uint8_t* blk, int* q) {
  switch (t) {
    case DType::kQ4_K:    // d, dmin, scales[12], qs[128]
    case DType::kQ5_K: {  // d, dmin, scales[12], qh[32], qs[128]
      const bool q5 = t == DType::kQ5_K;
      const uint8_t* qh = blk + 16;
      const uint8_t* qs = blk + (q5 ? 48 : 16);
      for (int c = 0; c < 4; ++c) {  // chunk c: low nibbles are elements 64c + l, high nibbles 64c + 32 + l
        for (int l = 0; l < 32; ++l) {
          q[64 * c + l] = qs[32 * c + l] & 0xF;
          q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
          if (q5) {
            q[64 * c + l] += (qh[l] >> (2 * c)) & 1 ? 16 : 0;
            q[64 * c + 32 + l] += (qh[l] >> (2 * c + 1)) & 1 ? 16 : 0;
          }
        }
      }
      return;
    }
    case DType::kQ6_K:  // ql[128], qh[64], scales[16] (int8), d
      for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = blk + 64 * h;
        const uint8_t* qh = blk + 128 + 32 * h;
        for (int l = 0; l < 32; ++l) {
          q[128 * h + l] = (ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4);
          q[128 * h + l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
          q[128 * h + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
          q[128 * h + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
      }
      return;
    default:
      HERD_CHECK(false && "KQuantCodes: not a K-quant");
  }
}

void PutKQuantCodes(DType t, const int* q, uint8_t* blk) {
  switch (t) {
    case DType::kQ4_K:
    case DType::kQ5_K: {
      const bool q5 = t == DType::kQ5_K;
      uint8_t* qh = blk + 16;
      uint8_t* qs = blk + (q5 ? 48 : 16);
      if (q5) std::memset(qh, 0, 32);
      for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) {
          const int a = q[64 * c + l], b = q[64 * c + 32 + l];
          qs[32 * c + l] = static_cast<uint8_t>((a & 0xF) | ((b & 0xF) << 4));
          if (q5) qh[l] = static_cast<uint8_t>(qh[l] | ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
        }
      }
      return;
    }
    case DType::kQ6_K:
      for (int h = 0; h < 2; ++h) {
        uint8_t* ql = blk + 64 * h;
        uint8_t* qh = blk + 128 + 32 * h;
        for (int l = 0; l < 32; ++l) {
          const int q1 = q[128 * h + l], q2 = q[128 * h + l + 32], q3 = q[128 * h + l + 64], q4 = q[128 * h + l + 96];
          ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
          ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
          qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
        }
      }
      return;
    default:
      HERD_CHECK(false && "PutKQuantCodes: not a K-quant");
  }
}

}  // namespace herd::kernels
