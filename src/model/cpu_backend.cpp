// The CPU backend (model/backend.h): every operation of a step on the kernels of src/kernels, host memory, rows
// split over the step's ThreadPool. Each row's arithmetic is the same however the rows are split (the kernels'
// batch invariance), so a sequence's results do not depend on the other sequences of its step.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/profile.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/quantize.h"
#include "kernels/rope.h"
#include "model/backend.h"

namespace herd::model {
namespace {

// fn(t) for rows t in [0, n), split over the pool from kParallelRows rows (prefill); decode's single row stays on the
// calling thread. Each row's arithmetic is the same either way.
constexpr int64_t kParallelRows = 4;
template <class Fn>
void ParallelRows(ThreadPool& pool, int64_t n, Fn&& fn) {
  if (n < kParallelRows || pool.size() == 1) {
    for (int64_t t = 0; t < n; ++t) fn(t);
    return;
  }
  pool.ParallelFor(n, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) fn(t);
  });
}

void MatMul(const LinearWeight& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  kernels::MatMulScaled(w.w, w.scale_data(), x, n_tokens, y, pool);
}

// Independent products y_j = W_j x_j in one parallel region where the kernels can (kernels::MatMulBatch: same bits
// as one MatMul after another, fewer thread meetings per decoded token); a lone product, and scaled (FP8) weights,
// one by one.
void MatMulMany(std::span<const Product> products, int64_t n_tokens, ThreadPool& pool) {
  constexpr size_t kMaxJobs = 4;
  bool scaled = false;
  for (const Product& p : products) scaled |= p.w.scale_data() != nullptr;
  if (scaled || products.size() == 1 || products.size() > kMaxJobs) {
    for (const Product& p : products) MatMul(p.w, p.x, n_tokens, p.y, pool);
    return;
  }
  kernels::MatMulJob jobs[kMaxJobs];
  int n = 0;
  for (const Product& p : products) jobs[n++] = {&p.w.w, p.x, p.y};
  kernels::MatMulBatch(jobs, n, n_tokens, pool);
}

// gate = SwiGLU(gate, up) for n rows of f.
void RowSwiGLU(float* gate, const float* up, int64_t n, int64_t f, ThreadPool& pool) {
  ParallelRows(pool, n, [&](int64_t t) { kernels::SwiGLU(gate + t * f, up + t * f, gate + t * f, f); });
}

// Attention work items and per-thread scratch; the MoE's routed rows grouped by expert.
class CpuScratch final : public BackendScratch {
 public:
  // An attention work item: tokens [t0, t0 + nt) of input `input`, all in one chunk of the layer.
  struct Item {
    int32_t input;
    int64_t t0, nt;
  };
  std::vector<Item> items;
  std::vector<float> attn;  // [threads][kernels::AttentionScratchFloats(head_dim)], grown with the pool once
  std::vector<int64_t> expert_count, expert_offset;
  std::vector<int32_t> order, slot;
  std::vector<float> xe, ge, ue, ye;
};

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  MemorySpace space() const override { return MemorySpace::kHost; }
  Status Bind(const ModelConfig&, const DecoderWeights&) override { return Status::Ok(); }  // used in place

  Result<Buffer> Allocate(int64_t bytes) const override {
    // 64-byte aligned (a cache line, an AVX-512 vector), zeroed like the std::vector scratch it replaces.
    const size_t size = static_cast<size_t>((std::max<int64_t>(bytes, 1) + 63) / 64 * 64);
    void* p = std::aligned_alloc(64, size);
    if (p == nullptr) return ResourceExhausted("cannot allocate " + std::to_string(bytes) + " bytes of step scratch");
    std::memset(p, 0, size);
    return Buffer(MemorySpace::kHost, p, bytes, [](void* q) { std::free(q); });
  }

  Result<std::unique_ptr<BackendScratch>> NewScratch(const ModelConfig& c, int64_t max_tokens,
                                                     int64_t max_ffn) const override {
    try {
      auto s = std::make_unique<CpuScratch>();
      const int64_t n = max_tokens;
      s->items.resize(n);
      if (c.num_local_experts > 0) {
        const int64_t e = c.num_local_experts, k = c.num_experts_per_tok, d = c.hidden_size;
        s->expert_count.resize(e);
        s->expert_offset.resize(e + 1);
        s->order.resize(n * k);
        s->slot.resize(n * k);
        s->xe.resize(n * k * d);
        s->ge.resize(n * k * max_ffn);
        s->ue.resize(n * k * max_ffn);
        s->ye.resize(n * k * d);
      }
      return std::unique_ptr<BackendScratch>(std::move(s));
    } catch (const std::bad_alloc&) {
      return ResourceExhausted("not enough memory for the scratch of " + std::to_string(max_tokens) + "-token steps");
    }
  }

  void Embed(const LinearWeight& table, const StepRows& rows, int64_t d, float* x, ExecContext) const override {
    for (int64_t i = 0, t = 0; i < static_cast<int64_t>(rows.batch.size()); ++i) {
      const StepInput& in = rows.batch[i];
      const int64_t t0 = t;
      for (int32_t token : in.tokens) kernels::DequantizeRowScaled(table.w, table.scale_data(), token, x + t++ * d);
      for (size_t k = 0; k < in.embed_at.size(); ++k) {  // early fusion: these rows replace the table's
        std::memcpy(x + (t0 + in.embed_at[k]) * d, in.embed_rows + static_cast<int64_t>(k) * d,
                    static_cast<size_t>(d) * sizeof(float));
      }
    }
  }

  void PositionTables(const float* inv_freq, int64_t half, const StepRows& rows, float* cos, float* sin,
                      ExecContext) const override {
    for (int64_t t = 0; t < rows.n; ++t)
      kernels::RopeCosSin(inv_freq, half, rows.pos[t], cos + t * half, sin + t * half);
  }

  void Norm(const float* x, const int64_t* at, const std::vector<float>& weight, int64_t n, int64_t d, float eps,
            float* y, ExecContext ctx) const override {
    if (at != nullptr) {  // the few rows that need logits: on this thread
      for (int64_t r = 0; r < n; ++r) kernels::RmsNorm(x + at[r] * d, weight.data(), d, eps, y + r * d);
      return;
    }
    ParallelRows(*ctx.pool, n, [&](int64_t t) { kernels::RmsNorm(x + t * d, weight.data(), d, eps, y + t * d); });
  }

  void Linear(std::span<const Product> products, int64_t n_tokens, ExecContext ctx) const override {
    MatMulMany(products, n_tokens, *ctx.pool);
  }

  void PrepareAttention(const ModelConfig& c, int layer, const StepRows& rows, const float* cos, const float* sin,
                        float* q, float* k, const float* v, KvCache& cache, ExecContext ctx) const override {
    const LayerConfig& lc = c.layers[layer];
    const int64_t hd = c.head_dim, half = hd / 2;
    const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
    const kernels::QueryKeyPrep prep{c.num_attention_heads, c.num_key_value_heads, hd, c.rope_style, lc.use_rope,
                                     lc.use_qk_norm,        c.rms_norm_eps};
    const DType kv_type = cache.type();
    ParallelRows(*ctx.pool, rows.n, [&](int64_t t) {
      float* qt = q + t * q_dim;
      float* kt = k + t * kv_dim;
      // llama4.md 2.8, in fp32 like the references
      const float temperature =
          lc.attn_temperature_tuning ? kernels::AttentionTemperature(rows.pos[t], c.floor_scale, c.attn_scale) : 1.0f;
      kernels::PrepareQueryKey(prep, cos + t * half, sin + t * half, lc.attn_temperature_tuning, temperature, qt, kt);
      const KvSequence& seq = *rows.batch[rows.seq_of[t]].seq;
      for (int64_t h = 0; h < c.num_key_value_heads; ++h) {
        const float* vh = v + t * kv_dim + h * hd;
        uint8_t* kdst = cache.KeyRow(seq, layer, h, rows.pos[t]);
        uint8_t* vdst = cache.ValueRow(seq, layer, h, rows.pos[t]);
        if (kv_type == DType::kF32) {
          std::memcpy(kdst, kt + h * hd, static_cast<size_t>(hd) * sizeof(float));
          std::memcpy(vdst, vh, static_cast<size_t>(hd) * sizeof(float));
        } else {
          kernels::QuantizeRow(kv_type, kt + h * hd, hd, kdst);
          kernels::QuantizeRow(kv_type, vh, hd, vdst);
        }
      }
    });
  }

  // Items are (block of query tokens of one sequence, all in one chunk of the layer, KV head) pairs: one kernel call
  // reads that head's keys and values once, in tiles, for all the query heads of its group and all tokens of the
  // block. Items go to threads round-robin, which mixes cheap early (causal) blocks with expensive late ones on
  // every thread. Blocks start at each sequence's first token and at chunk boundaries, never at another sequence's
  // tokens, and the kernel's tiles lie on a grid of absolute positions: each row is computed the same way whatever
  // else is in the step.
  void Attention(const ModelConfig& c, int l, const StepRows& rows, const KvCache& cache, const float* q, float* att,
                 BackendScratch& scratch, ExecContext ctx) const override {
    CpuScratch& s = static_cast<CpuScratch&>(scratch);
    ThreadPool& pool = *ctx.pool;
    const int64_t hd = c.head_dim, n_kv = c.num_key_value_heads;
    const int64_t group = c.num_attention_heads / n_kv;
    const int64_t q_dim = c.num_attention_heads * hd;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const int64_t block = kernels::AttentionTokenBlock(group);
    const int64_t scratch_floats = kernels::AttentionScratchFloats(hd);
    const size_t want = static_cast<size_t>(pool.size() * scratch_floats);
    if (s.attn.size() < want) s.attn.resize(want);  // once per pool size, not per step
    int64_t n_items = 0;
    for (int64_t t = 0; t < rows.n;) {
      const int32_t i = rows.seq_of[t];
      int64_t nt = 1;
      const int64_t first = cache.FirstKey(l, rows.pos[t]);
      while (t + nt < rows.n && nt < block && rows.seq_of[t + nt] == i &&
             cache.FirstKey(l, rows.pos[t + nt]) == first) {
        ++nt;
      }
      s.items[n_items++] = {i, t, nt};
      t += nt;
    }
    pool.Run([&](int thread_idx) {
      float* thread_scratch = s.attn.data() + thread_idx * scratch_floats;
      int64_t key_begin[kernels::kAttentionMaxRows], key_end[kernels::kAttentionMaxRows];
      for (int64_t it = thread_idx; it < n_items * n_kv; it += pool.size()) {
        const CpuScratch::Item& item = s.items[it / n_kv];
        const int64_t kvh = it % n_kv;
        // Causal; chunked layers see only their own fixed, absolutely aligned block (llama4.md 2.7).
        for (int64_t t = 0; t < item.nt; ++t) {
          const int64_t pos = rows.pos[item.t0 + t];
          key_begin[t] = cache.FirstKey(l, pos);
          key_end[t] = pos + 1;
        }
        const kernels::KvView view = cache.View(*rows.batch[item.input].seq, l, kvh);
        kernels::AttentionPaged(q + item.t0 * q_dim + kvh * group * hd, q_dim, item.nt, group, hd, view, key_begin,
                                key_end, scale, att + item.t0 * q_dim + kvh * group * hd, q_dim, thread_scratch);
      }
    });
  }

  void Add(float* x, const float* y, int64_t n, int64_t d, ExecContext ctx) const override {
    ParallelRows(*ctx.pool, n, [&](int64_t t) { kernels::Add(x + t * d, y + t * d, x + t * d, d); });
  }

  void SwiGLU(float* gate, const float* up, int64_t n, int64_t f, ExecContext ctx) const override {
    RowSwiGLU(gate, up, n, f, *ctx.pool);
  }

  void Route(const float* logits, int64_t n, int64_t n_experts, int64_t k, int32_t* choice, float* gate,
             ExecContext ctx) const override {
    ParallelRows(*ctx.pool, n, [&](int64_t t) { kernels::RouteTopK(logits, n_experts, k, t, t + 1, choice, gate); });
  }

  // Tokens grouped by expert, one matrix-matrix product per active expert over its tokens, outputs scattered back
  // (llama4.md 2.9). Decode reads only the selected experts' weights.
  void Experts(const DecoderLayerWeights& w, int64_t d, int64_t f, int64_t n_exp, int64_t k, const float* xn,
               const int32_t* choice, const float* gate, int64_t n, float* out, BackendScratch& scratch,
               ExecContext ctx) const override {
    CpuScratch& s = static_cast<CpuScratch&>(scratch);
    ThreadPool& pool = *ctx.pool;
    profile::OpSequence op("moe.route");
    kernels::GroupByExpert(choice, n * k, n_exp, s.expert_offset.data(), s.expert_count.data(), s.order.data(),
                           s.slot.data());
    ParallelRows(pool, n * k,
                 [&](int64_t i) { kernels::GatherScaled(xn, d, s.order.data(), gate, k, i, i + 1, s.xe.data()); });
    for (int64_t e = 0; e < n_exp; ++e) {
      const int64_t begin = s.expert_offset[e], count = s.expert_offset[e + 1] - begin;
      if (count == 0) continue;  // decode reads only the selected experts' weights
      op.Next("moe.experts");
      const float* xe = s.xe.data() + begin * d;
      float* ge = s.ge.data() + begin * f;
      float* ue = s.ue.data() + begin * f;
      float* ye = s.ye.data() + begin * d;
      if (w.experts_input_major) {
        const TensorView gu = w.gate_up_exps_im.w.Slice(e);  // [d, 2f]
        const float* gu_scale = w.gate_up_exps_im.scale.empty() ? nullptr : w.gate_up_exps_im.scale.data() + e * 2 * f;
        const float* down_scale = w.down_exps_im.scale.empty() ? nullptr : w.down_exps_im.scale.data() + e * d;
        kernels::MatMulInputMajorScaled(gu, gu_scale, 0, f, xe, count, ge, pool);
        kernels::MatMulInputMajorScaled(gu, gu_scale, f, 2 * f, xe, count, ue, pool);
        op.Next("swiglu");
        RowSwiGLU(ge, ue, count, f, pool);
        op.Next("moe.experts");
        kernels::MatMulInputMajorScaled(w.down_exps_im.w.Slice(e), down_scale, 0, d, ge, count, ye, pool);
      } else {
        const Product gate_up[] = {{w.gate_exps[e], xe, ge}, {w.up_exps[e], xe, ue}};
        MatMulMany(gate_up, count, pool);
        op.Next("swiglu");
        RowSwiGLU(ge, ue, count, f, pool);
        op.Next("moe.experts");
        MatMul(w.down_exps[e], ge, count, ye, pool);
      }
    }
    op.Next("moe.scatter");
    ParallelRows(pool, n, [&](int64_t t) { kernels::ScatterAdd(s.ye.data(), d, s.slot.data(), k, t, t + 1, out); });
  }

  void ToHost(const void* src, int64_t bytes, void* dst, ExecContext) const override {
    if (bytes > 0 && src != dst) std::memcpy(dst, src, static_cast<size_t>(bytes));
  }
};

}  // namespace

const char* MemorySpaceName(MemorySpace space) { return space == MemorySpace::kHost ? "host" : "device"; }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    Reset();
    space_ = o.space_;
    data_ = o.data_;
    bytes_ = o.bytes_;
    release_ = o.release_;
    o.data_ = nullptr;
    o.bytes_ = 0;
    o.release_ = nullptr;
  }
  return *this;
}

void Buffer::Reset() {
  if (data_ != nullptr && release_ != nullptr) release_(data_);
  data_ = nullptr;
  bytes_ = 0;
}

std::unique_ptr<Backend> NewCpuBackend() { return std::make_unique<CpuBackend>(); }

}  // namespace herd::model
