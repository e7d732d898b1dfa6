// The Llama decoder forward pass as batched steps over many sequences (model/model.h Step): the tokens of every
// sequence in a step go through each matrix product together (prompts as matrix-matrix products, decode tokens of
// many sequences as one), attention runs per sequence over its own KV pages (model/kv_cache.h). Activations are
// f32; weights stay in their stored dtype. Every kernel computes a token's row the same way whatever else is in
// the step (kernels/matmul.h, kernels/attention.h), so a sequence's logits do not depend on its batch.
#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <new>

#include "core/profile.h"
#include "core/progress.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/moe.h"
#include "kernels/ops.h"
#include "kernels/quantize.h"
#include "kernels/repack.h"
#include "kernels/rope.h"
#include "model/weights.h"

namespace herd::model {

// Scratch for steps of up to max_tokens tokens from up to max_seqs sequences, sized at creation; nothing is
// allocated per step (the per-thread attention scratch grows once, with the pool).
class DecoderModel::Work final : public Workspace {
 public:
  Work(const ModelConfig& c, int64_t max_tokens, int64_t max_seqs, int64_t max_ffn) : Workspace(max_tokens, max_seqs) {
    const int64_t n = max_tokens, d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim,
                  kv_dim = c.num_key_value_heads * c.head_dim;
    x.resize(n * d);
    xn.resize(n * d);
    q.resize(n * q_dim);
    k.resize(n * kv_dim);
    v.resize(n * kv_dim);
    att.resize(n * q_dim);
    gate.resize(n * max_ffn);
    up.resize(n * max_ffn);
    out.resize(n * d);
    cos.resize(n * c.head_dim / 2);
    sin.resize(n * c.head_dim / 2);
    pos.resize(n);
    seq_of.resize(n);
    items.resize(n);
    logit_rows.resize(std::max(max_seqs, int64_t{1}));
    if (max_seqs > 1) logits.resize(static_cast<size_t>(max_seqs * c.vocab_size));
    if (c.num_local_experts > 0) {
      const int64_t e = c.num_local_experts, k_used = c.num_experts_per_tok;
      router.resize(n * e);
      choice.resize(n * k_used);
      choice_gate.resize(n * k_used);
      expert_count.resize(e);
      expert_offset.resize(e + 1);
      order.resize(n * k_used);
      slot.resize(n * k_used);
      xe.resize(n * k_used * d);
      ge.resize(n * k_used * max_ffn);
      ue.resize(n * k_used * max_ffn);
      ye.resize(n * k_used * d);
    }
  }

  // An attention work item: tokens [t0, t0 + nt) of input `input`, all in one chunk of the layer.
  struct Item {
    int32_t input;
    int64_t t0, nt;
  };
  std::vector<float> x, xn, q, k, v, att, gate, up, out, cos, sin, logits;
  std::vector<float> router, choice_gate, xe, ge, ue, ye;
  std::vector<int32_t> choice, order, slot, seq_of;
  std::vector<int64_t> pos, expert_count, expert_offset, logit_rows;
  std::vector<Item> items;
  std::vector<float> attn_scratch;  // [threads][kernels::AttentionScratchFloats(head_dim)]
};

void DecoderModel::SetTrace(ModelState& state, ForwardTrace* trace) { state.workspace().trace = trace; }

namespace {

// The routed experts of MoE layer `p` ("blk.N."), in whichever of the three layouts the file has (llama4.md 4.1):
// HF's fused input-major tensors, HF's per-expert linears, or GGUF's stacked [n_experts, out, in] tensors (the
// fallback, so a file with no experts at all is reported as missing ffn_gate_exps.weight). Any of them may carry
// FP8 scales.
Status BindExperts(WeightBinder& b, const WeightMap& weights, const std::string& p, int64_t n_exp, int64_t d, int64_t f,
                   DecoderLayerWeights* lw) {
  if (weights.Contains(p + "ffn_gate_up_exps_im.weight")) {
    const std::vector<DType> types = {DType::kF32, DType::kF16, DType::kBF16, DType::kF8_E4M3};
    lw->experts_input_major = true;
    HERD_ASSIGN_OR_RETURN(lw->gate_up_exps_im,
                          b.ScaledTensor(p + "ffn_gate_up_exps_im.weight", {n_exp, d, 2 * f}, {n_exp, 2 * f}, types));
    HERD_ASSIGN_OR_RETURN(lw->down_exps_im,
                          b.ScaledTensor(p + "ffn_down_exps_im.weight", {n_exp, f, d}, {n_exp, d}, types));
    return Status::Ok();
  }
  if (weights.Contains(p + "ffn_gate_exps.0.weight")) {
    for (int64_t e = 0; e < n_exp; ++e) {
      const std::string i = std::to_string(e);
      HERD_ASSIGN_OR_RETURN(LinearWeight gate, b.Linear(p + "ffn_gate_exps." + i + ".weight", f, d));
      HERD_ASSIGN_OR_RETURN(LinearWeight up, b.Linear(p + "ffn_up_exps." + i + ".weight", f, d));
      HERD_ASSIGN_OR_RETURN(LinearWeight down, b.Linear(p + "ffn_down_exps." + i + ".weight", d, f));
      lw->gate_exps.push_back(std::move(gate));
      lw->up_exps.push_back(std::move(up));
      lw->down_exps.push_back(std::move(down));
    }
    return Status::Ok();
  }
  struct Stacked {
    const char* name;
    int64_t n_out, n_in;
    std::vector<LinearWeight>* out;
  };
  for (const Stacked& st : {Stacked{"ffn_gate_exps", f, d, &lw->gate_exps}, Stacked{"ffn_up_exps", f, d, &lw->up_exps},
                            Stacked{"ffn_down_exps", d, f, &lw->down_exps}}) {
    HERD_ASSIGN_OR_RETURN(LinearWeight all,
                          b.ScaledTensor(p + st.name + ".weight", {n_exp, st.n_out, st.n_in}, {n_exp, st.n_out}));
    for (int64_t e = 0; e < n_exp; ++e) {
      LinearWeight one{all.w.Slice(e), {}};
      if (!all.scale.empty()) {
        one.scale.assign(all.scale.begin() + e * st.n_out, all.scale.begin() + (e + 1) * st.n_out);
      }
      st.out->push_back(std::move(one));
    }
  }
  return Status::Ok();
}

void MatMul(const LinearWeight& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  kernels::MatMulScaled(w.w, w.scale_data(), x, n_tokens, y, pool);
}

// Independent products y_j = W_j x_j in one parallel region where the kernels can (kernels::MatMulBatch: same
// bits as one MatMul after another, fewer thread meetings per decoded token); scaled (FP8) weights one by one.
struct Product {
  const LinearWeight& w;
  const float* x;
  float* y;
};
void MatMulMany(std::initializer_list<Product> products, int64_t n_tokens, ThreadPool& pool) {
  kernels::MatMulJob jobs[4];
  int n = 0;
  bool scaled = false;
  for (const Product& p : products) scaled |= p.w.scale_data() != nullptr;
  if (scaled || products.size() > 4) {
    for (const Product& p : products) MatMul(p.w, p.x, n_tokens, p.y, pool);
    return;
  }
  for (const Product& p : products) jobs[n++] = {&p.w.w, p.x, p.y};
  kernels::MatMulBatch(jobs, n, n_tokens, pool);
}

}  // namespace

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

// y[t] = RmsNorm(x[t]) * weight for n rows of d.
void RowNorms(const float* x, const float* weight, int64_t n, int64_t d, float eps, float* y, ThreadPool& pool) {
  ParallelRows(pool, n, [&](int64_t t) { kernels::RmsNorm(x + t * d, weight, d, eps, y + t * d); });
}

// gate = SwiGLU(gate, up) for n rows of f.
void RowSwiGLU(float* gate, const float* up, int64_t n, int64_t f, ThreadPool& pool) {
  ParallelRows(pool, n, [&](int64_t t) { kernels::SwiGLU(gate + t * f, up + t * f, gate + t * f, f); });
}

Result<std::unique_ptr<Model>> DecoderModel::Create(ModelConfig config, const WeightMap& weights) {
  HERD_RETURN_IF_ERROR(config.Validate());  // sizes below are products of these fields
  std::unique_ptr<DecoderModel> m(new DecoderModel());
  m->weights_ = weights;
  WeightBinder b(m->weights_);
  const int64_t d = config.hidden_size, hd = config.head_dim;
  const int64_t q_dim = config.num_attention_heads * hd, kv_dim = config.num_key_value_heads * hd;
  const int64_t n_exp = config.num_local_experts;

  HERD_ASSIGN_OR_RETURN(m->token_embd_, b.Linear("token_embd.weight", -1, d));
  if (m->token_embd_.w.shape[0] != config.vocab_size) {
    return Corruption("tensor 'token_embd.weight' has " + std::to_string(m->token_embd_.w.shape[0]) +
                      " rows but vocab_size is " + std::to_string(config.vocab_size));
  }
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const LayerConfig& lc = config.layers[l];
    const int64_t f = lc.ffn_size;
    const std::string p = "blk." + std::to_string(l) + ".";
    DecoderLayerWeights lw;
    HERD_ASSIGN_OR_RETURN(lw.attn_norm, b.Vector(p + "attn_norm.weight", d));
    HERD_ASSIGN_OR_RETURN(lw.attn_q, b.Linear(p + "attn_q.weight", q_dim, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_k, b.Linear(p + "attn_k.weight", kv_dim, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_v, b.Linear(p + "attn_v.weight", kv_dim, d));
    HERD_ASSIGN_OR_RETURN(lw.attn_output, b.Linear(p + "attn_output.weight", d, q_dim));
    HERD_ASSIGN_OR_RETURN(lw.ffn_norm, b.Vector(p + "ffn_norm.weight", d));
    if (!lc.moe) {
      HERD_ASSIGN_OR_RETURN(lw.ffn_gate, b.Linear(p + "ffn_gate.weight", f, d));
      HERD_ASSIGN_OR_RETURN(lw.ffn_up, b.Linear(p + "ffn_up.weight", f, d));
      HERD_ASSIGN_OR_RETURN(lw.ffn_down, b.Linear(p + "ffn_down.weight", d, f));
    } else {
      HERD_ASSIGN_OR_RETURN(lw.ffn_gate, b.Linear(p + "ffn_gate_shexp.weight", f, d));
      HERD_ASSIGN_OR_RETURN(lw.ffn_up, b.Linear(p + "ffn_up_shexp.weight", f, d));
      HERD_ASSIGN_OR_RETURN(lw.ffn_down, b.Linear(p + "ffn_down_shexp.weight", d, f));
      HERD_ASSIGN_OR_RETURN(lw.router, b.Linear(p + "ffn_gate_inp.weight", n_exp, d));
      HERD_RETURN_IF_ERROR(BindExperts(b, weights, p, n_exp, d, f, &lw));
    }
    m->max_ffn_ = std::max(m->max_ffn_, f);
    m->layers_.push_back(std::move(lw));
  }
  HERD_ASSIGN_OR_RETURN(m->output_norm_, b.Vector("output_norm.weight", d));
  if (weights.Contains("output.weight")) {
    HERD_ASSIGN_OR_RETURN(m->output_, b.Linear("output.weight", config.vocab_size, d));
  } else {
    m->output_ = m->token_embd_;  // tied (llama.cpp falls back the same way)
    config.tie_word_embeddings = true;
  }
  std::vector<float> divisors;
  if (weights.Contains("rope_freqs.weight")) {
    HERD_ASSIGN_OR_RETURN(divisors, b.Vector("rope_freqs.weight", hd / 2));
    if (config.rope_scaling.factor > 0) {
      return Corruption("both rope_freqs.weight and a rope_scaling config are present; only one may scale RoPE");
    }
  }
  HERD_RETURN_IF_ERROR(b.CheckAllUsed());
  m->inv_freq_ = RopeInvFreq(config, divisors.empty() ? nullptr : divisors.data());
  m->weight_bytes_ = b.bound_bytes();
  m->config_ = std::move(config);
  return std::unique_ptr<Model>(std::move(m));
}

Result<std::unique_ptr<Workspace>> DecoderModel::NewWorkspace(int64_t max_tokens, int64_t max_seqs) const {
  if (max_tokens <= 0 || max_seqs <= 0 || max_seqs > max_tokens) {
    return InvalidArgument("a step needs 1 <= sequences <= tokens, got " + std::to_string(max_seqs) + " and " +
                           std::to_string(max_tokens));
  }
  try {
    return std::unique_ptr<Workspace>(new Work(config_, max_tokens, max_seqs, max_ffn_));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("not enough memory for the scratch of " + std::to_string(max_tokens) + "-token steps");
  }
}

Status DecoderModel::Step(KvCache& cache, std::span<const StepInput> batch, Workspace& base, ThreadPool& pool) const {
  Work& s = static_cast<Work&>(base);
  const ModelConfig& c = config_;
  const int64_t n_inputs = static_cast<int64_t>(batch.size());
  if (n_inputs == 0) return InvalidArgument("a step needs at least one sequence");
  if (n_inputs > s.max_seqs()) {
    return InvalidArgument("a step of " + std::to_string(n_inputs) + " sequences exceeds the workspace's " +
                           std::to_string(s.max_seqs()));
  }
  int64_t n = 0;
  for (int64_t i = 0; i < n_inputs; ++i) {
    const StepInput& in = batch[i];
    const int64_t nt = static_cast<int64_t>(in.tokens.size());
    if (nt == 0) return InvalidArgument("a sequence of the step has no tokens");
    if (in.mode == LogitsMode::kAll && n_inputs > 1) return InvalidArgument("logits of every token need a lone input");
    if (nt > cache.TokensToChunkEnd(in.seq->n_past())) {
      return InvalidArgument("a step's tokens of one sequence cross an attention chunk boundary");
    }
    if (!cache.Holds(*in.seq, in.seq->n_past() + nt)) {
      return Internal("a step's sequence has no KV pages reserved for its tokens");
    }
    HERD_RETURN_IF_ERROR(CheckTokenIds(in.tokens, c.vocab_size));
    HERD_RETURN_IF_ERROR(CheckEmbeddingOverride(in.embed_at, in.embed_rows, in.cache_keys, nt));
    n += nt;
  }
  if (n > s.max_tokens()) {
    return InvalidArgument("a step of " + std::to_string(n) + " tokens exceeds the workspace's " +
                           std::to_string(s.max_tokens()));
  }
  const size_t scratch = static_cast<size_t>(pool.size() * kernels::AttentionScratchFloats(c.head_dim));
  if (s.attn_scratch.size() < scratch) s.attn_scratch.resize(scratch);
  StepTokens(cache, batch, s, n, pool);
  for (const StepInput& in : batch) cache.Commit(*in.seq, in.cache_keys.empty() ? in.tokens : in.cache_keys);
  return Status::Ok();
}

void DecoderModel::StepTokens(KvCache& cache, std::span<const StepInput> batch, Work& s, int64_t n,
                              ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, hd = c.head_dim, half = hd / 2;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  const DType kv_type = cache.type();
  auto trace_hidden = [&](const float* src) {
    if (s.trace != nullptr) s.trace->hidden.emplace_back(src, src + n * d);
  };

  profile::OpSequence op("embed");  // the op timed now (herd bench --profile)
  for (int64_t i = 0, t = 0; i < static_cast<int64_t>(batch.size()); ++i) {
    const StepInput& in = batch[i];
    const int64_t t0 = t;
    for (int64_t j = 0; j < static_cast<int64_t>(in.tokens.size()); ++j, ++t) {
      s.pos[t] = in.seq->n_past() + j;
      s.seq_of[t] = static_cast<int32_t>(i);
      kernels::DequantizeRowScaled(token_embd_.w, token_embd_.scale_data(), in.tokens[j], s.x.data() + t * d);
      kernels::RopeCosSin(inv_freq_.data(), half, s.pos[t], s.cos.data() + t * half, s.sin.data() + t * half);
    }
    for (size_t k = 0; k < in.embed_at.size(); ++k) {  // early fusion: these rows replace the table's
      std::memcpy(s.x.data() + (t0 + in.embed_at[k]) * d, in.embed_rows + static_cast<int64_t>(k) * d,
                  static_cast<size_t>(d) * sizeof(float));
    }
  }
  trace_hidden(s.x.data());

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const DecoderLayerWeights& w = layers_[l];
    const LayerConfig& lc = c.layers[l];
    op.Next("norm");
    RowNorms(s.x.data(), w.attn_norm.data(), n, d, c.rms_norm_eps, s.xn.data(), pool);
    op.Next("attn.qkv");
    MatMulMany(
        {{w.attn_q, s.xn.data(), s.q.data()}, {w.attn_k, s.xn.data(), s.k.data()}, {w.attn_v, s.xn.data(), s.v.data()}},
        n, pool);
    op.Next("attn.rope_kv");
    ParallelRows(pool, n, [&](int64_t t) {
      float* qt = s.q.data() + t * q_dim;
      float* kt = s.k.data() + t * kv_dim;
      if (lc.use_rope) {
        const float* cs = s.cos.data() + t * half;
        const float* sn = s.sin.data() + t * half;
        for (int64_t h = 0; h < c.num_attention_heads; ++h) kernels::Rope(qt + h * hd, hd, cs, sn, c.rope_style);
        for (int64_t h = 0; h < c.num_key_value_heads; ++h) kernels::Rope(kt + h * hd, hd, cs, sn, c.rope_style);
      }
      if (lc.use_qk_norm) {  // weightless RMS over each head, after RoPE (llama4.md 2.4)
        for (int64_t h = 0; h < c.num_attention_heads; ++h) {
          kernels::RmsNorm(qt + h * hd, nullptr, hd, c.rms_norm_eps, qt + h * hd);
        }
        for (int64_t h = 0; h < c.num_key_value_heads; ++h) {
          kernels::RmsNorm(kt + h * hd, nullptr, hd, c.rms_norm_eps, kt + h * hd);
        }
      }
      if (lc.attn_temperature_tuning) {  // llama4.md 2.8, in fp32 like the references
        const float steps = std::floor(static_cast<float>(s.pos[t] + 1) / c.floor_scale);
        const float scale = std::log(steps + 1.0f) * c.attn_scale + 1.0f;
        kernels::Scale(qt, scale, q_dim);
      }
      const KvSequence& seq = *batch[s.seq_of[t]].seq;
      for (int64_t h = 0; h < c.num_key_value_heads; ++h) {
        const float* vh = s.v.data() + t * kv_dim + h * hd;
        uint8_t* kdst = cache.KeyRow(seq, static_cast<int>(l), h, s.pos[t]);
        uint8_t* vdst = cache.ValueRow(seq, static_cast<int>(l), h, s.pos[t]);
        if (kv_type == DType::kF32) {
          std::memcpy(kdst, kt + h * hd, static_cast<size_t>(hd) * sizeof(float));
          std::memcpy(vdst, vh, static_cast<size_t>(hd) * sizeof(float));
        } else {
          kernels::QuantizeRow(kv_type, kt + h * hd, hd, kdst);
          kernels::QuantizeRow(kv_type, vh, hd, vdst);
        }
      }
    });
    op.Next("attn.core");
    Attention(cache, batch, s, l, n, pool);
    op.Next("attn.output");
    MatMul(w.attn_output, s.att.data(), n, s.out.data(), pool);
    op.Next("residual");
    ParallelRows(pool, n,
                 [&](int64_t t) { kernels::Add(s.x.data() + t * d, s.out.data() + t * d, s.x.data() + t * d, d); });

    op.Next("norm");
    RowNorms(s.x.data(), w.ffn_norm.data(), n, d, c.rms_norm_eps, s.xn.data(), pool);
    op.End();  // the FFNs time their own parts
    if (lc.moe) {
      MoeFfn(s, l, n, pool);  // adds the routed experts into s.out after the shared expert
    } else {
      DenseFfn(s, w, n, s.out.data(), pool);
    }
    op.Next("residual");
    ParallelRows(pool, n,
                 [&](int64_t t) { kernels::Add(s.x.data() + t * d, s.out.data() + t * d, s.x.data() + t * d, d); });
    trace_hidden(s.x.data());
  }
  op.Next("output");

  // Final norm of the rows that need logits (every row when tracing), gathered in input order.
  const bool trace = s.trace != nullptr;
  int64_t n_rows = 0;
  for (int64_t i = 0, t0 = 0; i < static_cast<int64_t>(batch.size()); ++i) {
    const StepInput& in = batch[i];
    const int64_t nt = static_cast<int64_t>(in.tokens.size());
    if (in.mode == LogitsMode::kAll || trace) {
      n_rows = -1;  // lone input: all rows, in place
    } else if (in.mode == LogitsMode::kLast && n_rows >= 0) {
      s.logit_rows[n_rows++] = t0 + nt - 1;
    }
    t0 += nt;
  }
  if (n_rows < 0) {  // one input with every row (kAll, or a trace)
    RowNorms(s.x.data(), output_norm_.data(), n, d, c.rms_norm_eps, s.xn.data(), pool);
    trace_hidden(s.xn.data());
    const StepInput& in = batch[0];
    if (in.mode == LogitsMode::kNone) return;
    const int64_t first = in.mode == LogitsMode::kAll ? 0 : n - 1;
    MatMul(output_, s.xn.data() + first * d, n - first, in.logits, pool);
    return;
  }
  if (n_rows == 0) return;
  for (int64_t r = 0; r < n_rows; ++r) {
    kernels::RmsNorm(s.x.data() + s.logit_rows[r] * d, output_norm_.data(), d, c.rms_norm_eps, s.xn.data() + r * d);
  }
  if (batch.size() == 1) {
    MatMul(output_, s.xn.data(), 1, batch[0].logits, pool);
    return;
  }
  // One product over every sequence's row, so the output head is read once per step.
  MatMul(output_, s.xn.data(), n_rows, s.logits.data(), pool);
  for (int64_t i = 0, r = 0; i < static_cast<int64_t>(batch.size()); ++i) {
    if (batch[i].mode != LogitsMode::kLast) continue;
    std::memcpy(batch[i].logits, s.logits.data() + r * c.vocab_size, static_cast<size_t>(c.vocab_size) * sizeof(float));
    ++r;
  }
}

// The matrices RepackWeights copies (every one the kernels multiply; a tied output head stays the embedding's),
// passed to fn as LinearWeight& (const for a const model).
template <class Self, class Fn>
void DecoderModel::ForEachRepackTarget(Self& self, Fn&& fn) {
  const auto consider = [&](auto& lw) {
    // Unbound slots (a dense layer's router, an MoE layer's dense FFN) have no data.
    if (lw.w.data != nullptr && lw.w.Rows() > 0 && kernels::MatMulSupports(lw.w.dtype)) fn(lw);
  };
  for (auto& l : self.layers_) {
    consider(l.attn_q);
    consider(l.attn_k);
    consider(l.attn_v);
    consider(l.attn_output);
    consider(l.ffn_gate);
    consider(l.ffn_up);
    consider(l.ffn_down);
    consider(l.router);
    for (auto* experts : {&l.gate_exps, &l.up_exps, &l.down_exps}) {
      for (auto& e : *experts) consider(e);
    }
  }
  if (self.output_.w.data != self.token_embd_.w.data) consider(self.output_);
}

int64_t DecoderModel::RepackBytes() const {
  if (repacked_ != nullptr) return 0;
  int64_t bytes = 0;
  ForEachRepackTarget(*this, [&](const LinearWeight& lw) { bytes += (kernels::RepackedBytes(lw.w) + 63) / 64 * 64; });
  return bytes;
}

Result<Model::RepackStats> DecoderModel::RepackWeights(ThreadPool& pool, bool show_progress) {
  std::vector<LinearWeight*> todo;
  ForEachRepackTarget(*this, [&](LinearWeight& lw) { todo.push_back(&lw); });
  RepackStats stats;
  if (repacked_ != nullptr || todo.empty()) return stats;
  // One allocation (each matrix 64-byte aligned in it) before any change, so that running out of memory leaves
  // the model as it was.
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const LinearWeight* lw : todo) {
    offsets.push_back(total);
    stats.bytes += kernels::RepackedBytes(lw->w);
    total += (kernels::RepackedBytes(lw->w) + 63) / 64 * 64;
  }
  auto memory = AnonymousMemory::Allocate(static_cast<uint64_t>(total));
  if (!memory.ok()) return memory.status().WithContext("repacking the weights (run without --repack)");
  std::unique_ptr<Progress> progress;
  // A bar only for work that takes a while (a quarter GiB and more): small models would only print noise.
  if (show_progress && stats.bytes >= (int64_t{256} << 20))
    progress = std::make_unique<Progress>("repacking", stats.bytes);
  int64_t done = 0;
  for (size_t i = 0; i < todo.size(); ++i) {
    TensorView& w = todo[i]->w;
    uint8_t* dst = (*memory)->data() + offsets[i];
    pool.ParallelFor(
        w.Rows(), [&](int64_t r0, int64_t r1) { kernels::RepackRows(w, r0, r1, dst); }, 16);
    const DType to = kernels::RepackedType(w.dtype, w.Cols());
    stats.relaid += to != w.dtype;
    w.dtype = to;
    w.data = dst;
    done += w.Rows() * w.RowStride();
    if (progress) progress->Update(done);
  }
  if (progress) progress->Finish();
  repacked_ = std::move(memory).value();
  stats.tensors = static_cast<int64_t>(todo.size());
  return stats;
}

void DecoderModel::DenseFfn(Work& s, const DecoderLayerWeights& w, int64_t n, float* out, ThreadPool& pool) const {
  const int64_t f = w.ffn_gate.w.shape[0];
  {
    profile::Scope op("ffn.gate_up");
    MatMulMany({{w.ffn_gate, s.xn.data(), s.gate.data()}, {w.ffn_up, s.xn.data(), s.up.data()}}, n, pool);
  }
  {
    profile::Scope op("swiglu");
    RowSwiGLU(s.gate.data(), s.up.data(), n, f, pool);
  }
  profile::Scope op("ffn.down");
  MatMul(w.ffn_down, s.gate.data(), n, out, pool);
}

// MoE (llama4.md 2.9): router logits -> top-k per token (lowest index on ties) -> gate = sigmoid(logit) scales
// the expert INPUT -> tokens grouped by expert, one matrix-matrix product per active expert over its tokens
// -> outputs scattered back and added to the shared expert's output.
void DecoderModel::MoeFfn(Work& s, int64_t layer, int64_t n, ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const DecoderLayerWeights& w = layers_[layer];
  const int64_t d = c.hidden_size, f = c.layers[layer].ffn_size;
  const int64_t n_exp = c.num_local_experts, k_used = c.num_experts_per_tok;

  DenseFfn(s, w, n, s.out.data(), pool);  // shared expert, unscaled input

  profile::OpSequence op("moe.router");
  MatMul(w.router, s.xn.data(), n, s.router.data(), pool);
  op.Next("moe.route");  // kernels/moe.h; tokens split over the pool as the other per-token loops
  ParallelRows(pool, n, [&](int64_t t) {
    kernels::RouteTopK(s.router.data(), n_exp, k_used, t, t + 1, s.choice.data(), s.choice_gate.data());
  });
  if (s.trace != nullptr) {
    s.trace->router_logits.emplace_back(s.router.begin(), s.router.begin() + n * n_exp);
    s.trace->router_choice.emplace_back(s.choice.begin(), s.choice.begin() + n * k_used);
  }
  kernels::GroupByExpert(s.choice.data(), n * k_used, n_exp, s.expert_offset.data(), s.expert_count.data(),
                         s.order.data(), s.slot.data());
  ParallelRows(pool, n * k_used, [&](int64_t i) {
    kernels::GatherScaled(s.xn.data(), d, s.order.data(), s.choice_gate.data(), k_used, i, i + 1, s.xe.data());
  });
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
      MatMulMany({{w.gate_exps[e], xe, ge}, {w.up_exps[e], xe, ue}}, count, pool);
      op.Next("swiglu");
      RowSwiGLU(ge, ue, count, f, pool);
      op.Next("moe.experts");
      MatMul(w.down_exps[e], ge, count, ye, pool);
    }
  }
  op.Next("moe.scatter");
  ParallelRows(pool, n,
               [&](int64_t t) { kernels::ScatterAdd(s.ye.data(), d, s.slot.data(), k_used, t, t + 1, s.out.data()); });
}

// Items are (block of query tokens of one sequence, all in one chunk of the layer, KV head) pairs: one kernel call
// reads that head's keys and values once, in tiles, for all the query heads of its group and all tokens of the
// block. Items go to threads round-robin, which mixes cheap early (causal) blocks with expensive late ones on
// every thread. Blocks start at each sequence's first token and at chunk boundaries, never at another sequence's
// tokens, and the kernel's tiles lie on a grid of absolute positions: each row is computed the same way whatever
// else is in the step.
void DecoderModel::Attention(const KvCache& cache, std::span<const StepInput> batch, Work& s, int64_t layer, int64_t n,
                             ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const int64_t hd = c.head_dim, n_kv = c.num_key_value_heads;
  const int64_t group = c.num_attention_heads / n_kv;
  const int64_t q_dim = c.num_attention_heads * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t block = kernels::AttentionTokenBlock(group);
  const int64_t scratch_floats = kernels::AttentionScratchFloats(hd);
  const int l = static_cast<int>(layer);
  int64_t n_items = 0;
  for (int64_t t = 0; t < n;) {
    const int32_t i = s.seq_of[t];
    int64_t nt = 1;
    const int64_t first = cache.FirstKey(l, s.pos[t]);
    while (t + nt < n && nt < block && s.seq_of[t + nt] == i && cache.FirstKey(l, s.pos[t + nt]) == first) ++nt;
    s.items[n_items++] = {i, t, nt};
    t += nt;
  }
  pool.Run([&](int thread_idx) {
    float* scratch = s.attn_scratch.data() + thread_idx * scratch_floats;
    int64_t key_begin[kernels::kAttentionMaxRows], key_end[kernels::kAttentionMaxRows];
    for (int64_t it = thread_idx; it < n_items * n_kv; it += pool.size()) {
      const Work::Item& item = s.items[it / n_kv];
      const int64_t kvh = it % n_kv;
      // Causal; chunked layers see only their own fixed, absolutely aligned block (llama4.md 2.7).
      for (int64_t t = 0; t < item.nt; ++t) {
        const int64_t pos = s.pos[item.t0 + t];
        key_begin[t] = cache.FirstKey(l, pos);
        key_end[t] = pos + 1;
      }
      const kernels::KvView view = cache.View(*batch[item.input].seq, l, kvh);
      kernels::AttentionPaged(s.q.data() + item.t0 * q_dim + kvh * group * hd, q_dim, item.nt, group, hd, view,
                              key_begin, key_end, scale, s.att.data() + item.t0 * q_dim + kvh * group * hd, q_dim,
                              scratch);
    }
  });
}

}  // namespace herd::model
