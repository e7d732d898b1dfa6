// Scaled dot-product attention of one grouped-query (GQA) group: the query heads that share one KV head
// (llama4.md 2.6/2.7), for a block of query tokens, over a run of cached keys and values. Tiled with an online
// (running-max) softmax, flash-attention style: keys and values are read one tile of kAttentionKeyTile keys at a
// time, each tile once for every query row of the block (tokens x heads), and no score row longer than one tile
// ever exists. SIMD (Highway, best target chosen at run time); the scalar twin kernels/ref/attention.h computes the
// full softmax in double and is the oracle of attention_test.cpp.
//
// Masking is expressed by key ranges only: query token t attends to keys [key_begin[t], key_end[t]). The caller
// maps its mask (causal, chunked local attention, ...) onto those ranges; the kernel knows nothing of positions.
// The kernel runs on the calling thread; callers split (token block, KV head) items over their threads.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace herd::kernels {

// Keys per tile: a K tile and a V tile of head_dim <= 128 stay in L1/L2 while every query row of the block uses
// them. Query rows (tokens x heads) processed together per tile; their running state is kept in the scratch.
inline constexpr int64_t kAttentionKeyTile = 64;
inline constexpr int64_t kAttentionMaxRows = 32;

// Query tokens per call that fill kAttentionMaxRows rows for `n_heads` heads per group (at least 1). Callers that
// split work over threads by token blocks use this block size; any n_tokens is accepted by Attention.
inline int64_t AttentionTokenBlock(int64_t n_heads) {
  return n_heads >= kAttentionMaxRows ? 1 : kAttentionMaxRows / n_heads;
}

// f32 elements of the scratch one concurrent Attention call needs (independent of the key count): the running
// state of kAttentionMaxRows rows, plus one K and one V tile decoded to f32 for KV types other than F32.
inline int64_t AttentionScratchFloats(int64_t head_dim) {
  return kAttentionMaxRows * (head_dim + kAttentionKeyTile + 2) + 2 * kAttentionKeyTile * head_dim;
}

// Keys and values of one KV head in a paged cache (model/kv_cache.h): key j lives in page pages[j >> page_shift],
// row j & (2^page_shift - 1), at k_base + pages[...] * page_bytes + row * row_bytes (values likewise from v_base).
// Rows are head_dim elements of `type`: F32, F16, BF16 or Q8_0 (head_dim a multiple of 32); other types are
// decoded exactly to f32 a tile at a time, so the result equals the F32 kernel on the decoded rows, bit for bit.
// A dense cache is one page: pages = {0}, page_shift large (DenseKv).
struct KvView {
  const uint8_t* k_base = nullptr;
  const uint8_t* v_base = nullptr;
  const int32_t* pages = nullptr;
  int page_shift = 62;
  int64_t page_bytes = 0;
  int64_t row_bytes = 0;
  DType type = DType::kF32;

  const uint8_t* KeyRow(int64_t j) const {
    return k_base + pages[j >> page_shift] * page_bytes + (j & ((int64_t{1} << page_shift) - 1)) * row_bytes;
  }
  const uint8_t* ValueRow(int64_t j) const {
    return v_base + pages[j >> page_shift] * page_bytes + (j & ((int64_t{1} << page_shift) - 1)) * row_bytes;
  }
};

// For every query token t < n_tokens and head g < n_heads, with q_tg = q + t * q_stride + g * head_dim:
//   out[t * out_stride + g * head_dim + i] = sum_j softmax_j(scale * dot(q_tg, k_j)) * v_j[i],  i < head_dim,
// over the keys j in [key_begin[t], key_end[t]), where k_j = k + j * kv_stride and v_j = v + j * kv_stride.
//   q:     f32 query rows; q_stride (floats) between tokens, heads of a token contiguous (head_dim apart).
//   k, v:  f32 keys / values, kv_stride floats apart (>= head_dim); only the ranges named are read.
//   key_begin, key_end: int64 [n_tokens], 0 <= key_begin[t] < key_end[t] (at least one key per token).
//   out:   f32, out_stride floats between tokens; must not overlap q, k, v or the scratch.
//   scratch: f32 [AttentionScratchFloats(head_dim)], any contents; one per concurrent call.
// head_dim > 0, any alignment, n_tokens or n_heads may be 0. Thread-safe for distinct out and scratch; allocates
// nothing. Deterministic; when all tokens of a call share key_begin (causal and chunked masks), each output is
// bit-identical however the caller splits its tokens and heads into calls.
// Accuracy: scores are f32 dot products, the running max makes every exp argument <= 0 (no overflow for any
// finite score), probabilities and sums are f32. For |scale * dot| of order 10 or less each output is within about
// 1e-5 * sum_j p_j |v_j[i]| of the exact value, over thousands of keys.
void Attention(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const float* k,
               const float* v, int64_t kv_stride, const int64_t* key_begin, const int64_t* key_end, float scale,
               float* out, int64_t out_stride, float* scratch);

// The same over a paged (and possibly f16/bf16/q8_0) cache: keys and values come from `kv` (see KvView). Tiles lie
// on the same grid of key indices as above, so for F32 rows the output is bit-identical to Attention on the same
// keys stored densely, whatever the page size.
void AttentionPaged(const float* q, int64_t q_stride, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                    const KvView& kv, const int64_t* key_begin, const int64_t* key_end, float scale, float* out,
                    int64_t out_stride, float* scratch);

}  // namespace herd::kernels
