// The Llama decoder forward pass. Prompts run as batches (matrix-matrix products); decode is the same code
// with n_tokens = 1. Activations are f32; weights stay in their stored dtype. Batches are split so that
// none crosses a chunk boundary of chunked attention, which lets chunked layers keep a ring of one chunk.
#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <new>

#include "core/progress.h"
#include "kernels/attention.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/repack.h"
#include "kernels/rope.h"
#include "model/weights.h"

namespace herd::model {

// Invariants:
//  - layer l's cache holds cap[l] slots per KV head in layout [kv_head][slot][head_dim] at layer_offset[l];
//    global layers have cap = n_ctx (slot = pos); chunked layers have cap = min(chunk, n_ctx) (slot = pos % cap),
//    so only the current chunk is kept and a long context costs only the global layers' growth;
//  - a batch never crosses a chunk boundary, so writing a batch's K/V before its attention never overwrites
//    a key a query of the same batch still needs;
//  - scratch is sized for n_batch tokens at creation; nothing is allocated per token (the per-thread attention
//    scratch grows once, with the pool).
class DecoderModel::State final : public ModelState {
 public:
  State(const ModelConfig& c, int64_t n_ctx, int64_t n_batch, int64_t max_ffn) : ModelState(n_ctx, n_batch) {
    const int64_t d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim,
                  kv_dim = c.num_key_value_heads * c.head_dim;
    int64_t total = 0;
    for (const LayerConfig& lc : c.layers) {
      const int64_t cap = lc.attention_chunk_size > 0 ? std::min(lc.attention_chunk_size, n_ctx) : n_ctx;
      cap_.push_back(cap);
      layer_offset_.push_back(total);
      total += c.num_key_value_heads * cap * c.head_dim;
    }
    n_kv_heads_ = c.num_key_value_heads;
    head_dim_ = c.head_dim;
    k_cache.assign(static_cast<size_t>(total), 0.0f);
    v_cache.assign(static_cast<size_t>(total), 0.0f);
    x.resize(n_batch * d);
    xn.resize(n_batch * d);
    q.resize(n_batch * q_dim);
    k.resize(n_batch * kv_dim);
    v.resize(n_batch * kv_dim);
    att.resize(n_batch * q_dim);
    gate.resize(n_batch * max_ffn);
    up.resize(n_batch * max_ffn);
    out.resize(n_batch * d);
    cos.resize(n_batch * c.head_dim / 2);
    sin.resize(n_batch * c.head_dim / 2);
    if (c.num_local_experts > 0) {
      const int64_t e = c.num_local_experts, k_used = c.num_experts_per_tok;
      router.resize(n_batch * e);
      choice.resize(n_batch * k_used);
      choice_gate.resize(n_batch * k_used);
      expert_count.resize(e);
      expert_offset.resize(e + 1);
      order.resize(n_batch * k_used);
      xe.resize(n_batch * k_used * d);
      ge.resize(n_batch * k_used * max_ffn);
      ue.resize(n_batch * k_used * max_ffn);
      ye.resize(n_batch * k_used * d);
    }
  }
  int64_t KvBytes() const override { return static_cast<int64_t>((k_cache.size() + v_cache.size()) * sizeof(float)); }

  Status Rewind(int64_t n) override {
    if (n < 0 || n > n_past_) {
      return OutOfRange("cannot rewind to position " + std::to_string(n) + " of " + std::to_string(n_past_));
    }
    // A ring of cap slots holds positions [n_past - cap, n_past) at most (rounded to its chunk start); positions
    // [chunk_start(n), n) must still be there for attention after the rewind.
    for (size_t l = 0; l < cap_.size(); ++l) {
      if (cap_[l] >= n_ctx_ || n == 0) continue;
      const int64_t chunk_start = n / cap_[l] * cap_[l];
      if (n_past_ > chunk_start + cap_[l]) {
        return OutOfRange("cannot rewind to position " + std::to_string(n) + ": layer " + std::to_string(l) +
                          " keeps only its current attention chunk of " + std::to_string(cap_[l]) + " positions");
      }
    }
    n_past_ = n;
    return Status::Ok();
  }

  // Blob: "HERDKV01", then int64 n_layers, n_kv_heads, head_dim, n_past, per layer its cap, then for each layer
  // and KV head the slots in use (min(n_past, cap)) of K, then of V, as f32.
  Status SaveTo(std::string* blob) const override {
    blob->assign("HERDKV01");
    auto put = [&](int64_t val) { blob->append(reinterpret_cast<const char*>(&val), sizeof val); };
    put(static_cast<int64_t>(cap_.size()));
    put(n_kv_heads_);
    put(head_dim_);
    put(n_past_);
    for (int64_t cap : cap_) put(cap);
    for (const std::vector<float>* cache : {&k_cache, &v_cache}) {
      for (size_t l = 0; l < cap_.size(); ++l) {
        const int64_t used = std::min(n_past_, cap_[l]);
        for (int64_t h = 0; h < n_kv_heads_; ++h) {
          const float* p = cache->data() + layer_offset_[l] + h * cap_[l] * head_dim_;
          blob->append(reinterpret_cast<const char*>(p), static_cast<size_t>(used * head_dim_) * sizeof(float));
        }
      }
    }
    return Status::Ok();
  }

  Status LoadFrom(std::string_view blob) override {
    size_t at = 8;
    if (blob.size() < 8 || blob.substr(0, 8) != "HERDKV01") return Corruption("KV cache blob: bad magic");
    auto get = [&](int64_t* val) {
      if (blob.size() - at < sizeof *val) return false;
      std::memcpy(val, blob.data() + at, sizeof *val);
      at += sizeof *val;
      return true;
    };
    int64_t n_layers = 0, kv_heads = 0, head_dim = 0, n_past = 0;
    if (!get(&n_layers) || !get(&kv_heads) || !get(&head_dim) || !get(&n_past)) {
      return Corruption("KV cache blob: truncated header");
    }
    if (n_layers != static_cast<int64_t>(cap_.size()) || kv_heads != n_kv_heads_ || head_dim != head_dim_) {
      return Corruption("KV cache blob is for another model (" + std::to_string(n_layers) + " layers, " +
                        std::to_string(kv_heads) + " KV heads of " + std::to_string(head_dim) + ")");
    }
    if (n_past < 0 || n_past > n_ctx_) {
      return OutOfRange("KV cache blob holds " + std::to_string(n_past) + " positions, more than the context of " +
                        std::to_string(n_ctx_));
    }
    std::vector<int64_t> caps(cap_.size());
    for (int64_t& c : caps) {
      if (!get(&c)) return Corruption("KV cache blob: truncated header");
    }
    for (size_t l = 0; l < cap_.size(); ++l) {
      // Slots are pos % cap: the saved and the new ring must agree wherever a slot is in use.
      const bool same = caps[l] == cap_[l] || (caps[l] >= n_past && cap_[l] >= n_past);
      if (!same) {
        return Corruption("KV cache blob: layer " + std::to_string(l) + " ring of " + std::to_string(caps[l]) +
                          " slots does not fit this context (" + std::to_string(cap_[l]) + ")");
      }
    }
    size_t need = 0;
    for (size_t l = 0; l < cap_.size(); ++l) {
      need += 2 * static_cast<size_t>(std::min(n_past, caps[l]) * n_kv_heads_ * head_dim_) * sizeof(float);
    }
    if (blob.size() - at != need) return Corruption("KV cache blob: wrong size (truncated or damaged)");
    for (std::vector<float>* cache : {&k_cache, &v_cache}) {
      for (size_t l = 0; l < cap_.size(); ++l) {
        const int64_t used = std::min(n_past, caps[l]);
        for (int64_t h = 0; h < n_kv_heads_; ++h) {
          float* p = cache->data() + layer_offset_[l] + h * cap_[l] * head_dim_;
          const size_t bytes = static_cast<size_t>(used * head_dim_) * sizeof(float);
          std::memcpy(p, blob.data() + at, bytes);
          at += bytes;
        }
      }
    }
    n_past_ = n_past;
    return Status::Ok();
  }

  void set_n_past(int64_t n) { n_past_ = n; }
  float* KeySlot(int64_t layer, int64_t kv_head, int64_t pos, int64_t head_dim) {
    return k_cache.data() + layer_offset_[layer] + (kv_head * cap_[layer] + pos % cap_[layer]) * head_dim;
  }
  float* ValueSlot(int64_t layer, int64_t kv_head, int64_t pos, int64_t head_dim) {
    return v_cache.data() + layer_offset_[layer] + (kv_head * cap_[layer] + pos % cap_[layer]) * head_dim;
  }

  std::vector<int64_t> cap_, layer_offset_;
  int64_t n_kv_heads_ = 0, head_dim_ = 0;
  std::vector<float> k_cache, v_cache;
  std::vector<float> x, xn, q, k, v, att, gate, up, out, cos, sin;
  std::vector<float> router, choice_gate, xe, ge, ue, ye;
  std::vector<int32_t> choice, order;
  std::vector<int64_t> expert_count, expert_offset;
  std::vector<float> attn_scratch;  // [threads][kernels::AttentionScratchFloats(head_dim)]
  ForwardTrace* trace = nullptr;
};

void DecoderModel::SetTrace(ModelState& state, ForwardTrace* trace) { static_cast<State&>(state).trace = trace; }

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
    if (lc.attention_chunk_size > 0) {
      m->min_chunk_ = m->min_chunk_ == 0 ? lc.attention_chunk_size : std::min(m->min_chunk_, lc.attention_chunk_size);
    }
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

Result<std::unique_ptr<ModelState>> DecoderModel::NewState(int64_t n_ctx, int64_t n_batch) const {
  if (n_ctx <= 0) return InvalidArgument("context size must be positive, got " + std::to_string(n_ctx));
  if (n_ctx > config_.max_position_embeddings) {
    return OutOfRange("context size " + std::to_string(n_ctx) + " exceeds the model's maximum of " +
                      std::to_string(config_.max_position_embeddings) + " positions");
  }
  if (n_batch <= 0) return InvalidArgument("batch size must be positive, got " + std::to_string(n_batch));
  n_batch = std::min(n_batch, n_ctx);
  try {
    return std::unique_ptr<ModelState>(new State(config_, n_ctx, n_batch, max_ffn_));
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("not enough memory for a KV cache of " + std::to_string(n_ctx) + " positions");
  }
}

Status DecoderModel::Forward(ModelState& base, std::span<const int32_t> tokens, LogitsMode mode, float* logits,
                             ThreadPool& pool) const {
  State& s = static_cast<State&>(base);
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return InvalidArgument("no tokens to process");
  if (s.n_past() + n > s.n_ctx()) {
    return OutOfRange("context full: " + std::to_string(s.n_past()) + " positions used + " + std::to_string(n) +
                      " new tokens > context size " + std::to_string(s.n_ctx()));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return InvalidArgument("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
    }
  }
  const size_t scratch = static_cast<size_t>(pool.size() * kernels::AttentionScratchFloats(config_.head_dim));
  if (s.attn_scratch.size() < scratch) s.attn_scratch.resize(scratch);
  for (int64_t b = 0; b < n;) {
    int64_t nb = std::min(s.n_batch(), n - b);
    if (min_chunk_ > 0) {  // never cross a chunk boundary (see State invariants)
      const int64_t pos = s.n_past();
      nb = std::min(nb, min_chunk_ - pos % min_chunk_);
    }
    const bool last_batch = b + nb == n;
    LogitsMode m = mode == LogitsMode::kAll ? LogitsMode::kAll : (last_batch ? mode : LogitsMode::kNone);
    float* out = mode == LogitsMode::kAll ? logits + b * config_.vocab_size : logits;
    ForwardBatch(s, tokens.data() + b, nb, m, out, pool);
    b += nb;
  }
  return Status::Ok();
}

void DecoderModel::ForwardBatch(State& s, const int32_t* tokens, int64_t n, LogitsMode mode, float* logits,
                                ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, hd = c.head_dim, half = hd / 2;
  const int64_t q_dim = c.num_attention_heads * hd, kv_dim = c.num_key_value_heads * hd;
  const int64_t pos0 = s.n_past();
  auto trace_hidden = [&](const float* src) {
    if (s.trace != nullptr) s.trace->hidden.emplace_back(src, src + n * d);
  };

  for (int64_t t = 0; t < n; ++t) {
    kernels::DequantizeRowScaled(token_embd_.w, token_embd_.scale_data(), tokens[t], s.x.data() + t * d);
  }
  trace_hidden(s.x.data());
  for (int64_t t = 0; t < n; ++t) {
    kernels::RopeCosSin(inv_freq_.data(), half, pos0 + t, s.cos.data() + t * half, s.sin.data() + t * half);
  }

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const DecoderLayerWeights& w = layers_[l];
    const LayerConfig& lc = c.layers[l];
    for (int64_t t = 0; t < n; ++t) {
      kernels::RmsNorm(s.x.data() + t * d, w.attn_norm.data(), d, c.rms_norm_eps, s.xn.data() + t * d);
    }
    MatMulMany({{w.attn_q, s.xn.data(), s.q.data()},
                {w.attn_k, s.xn.data(), s.k.data()},
                {w.attn_v, s.xn.data(), s.v.data()}},
               n, pool);
    for (int64_t t = 0; t < n; ++t) {
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
        const float steps = std::floor(static_cast<float>(pos0 + t + 1) / c.floor_scale);
        const float scale = std::log(steps + 1.0f) * c.attn_scale + 1.0f;
        kernels::Scale(qt, scale, q_dim);
      }
      for (int64_t h = 0; h < c.num_key_value_heads; ++h) {
        const float* kh = kt + h * hd;
        const float* vh = s.v.data() + t * kv_dim + h * hd;
        std::copy(kh, kh + hd, s.KeySlot(l, h, pos0 + t, hd));
        std::copy(vh, vh + hd, s.ValueSlot(l, h, pos0 + t, hd));
      }
    }
    Attention(s, l, n, pool);
    MatMul(w.attn_output, s.att.data(), n, s.out.data(), pool);
    kernels::Add(s.x.data(), s.out.data(), s.x.data(), n * d);

    for (int64_t t = 0; t < n; ++t) {
      kernels::RmsNorm(s.x.data() + t * d, w.ffn_norm.data(), d, c.rms_norm_eps, s.xn.data() + t * d);
    }
    if (lc.moe) {
      MoeFfn(s, l, n, pool);  // adds the routed experts into s.out after the shared expert
    } else {
      DenseFfn(s, w, n, s.out.data(), pool);
    }
    kernels::Add(s.x.data(), s.out.data(), s.x.data(), n * d);
    trace_hidden(s.x.data());
  }
  s.set_n_past(pos0 + n);

  const bool trace = s.trace != nullptr;
  if (mode == LogitsMode::kNone && !trace) return;
  const int64_t first = (mode == LogitsMode::kAll || trace) ? 0 : n - 1;
  for (int64_t t = first; t < n; ++t) {
    kernels::RmsNorm(s.x.data() + t * d, output_norm_.data(), d, c.rms_norm_eps, s.xn.data() + t * d);
  }
  trace_hidden(s.xn.data());
  if (mode == LogitsMode::kNone) return;
  const int64_t first_logit = mode == LogitsMode::kAll ? 0 : n - 1;
  MatMul(output_, s.xn.data() + first_logit * d, n - first_logit, logits, pool);
}

Result<Model::RepackStats> DecoderModel::RepackWeights(ThreadPool& pool, bool show_progress) {
  std::vector<LinearWeight*> todo;
  const auto consider = [&](LinearWeight& lw) {
    if (lw.w.Rows() > 0 && kernels::MatMulSupports(lw.w.dtype)) todo.push_back(&lw);
  };
  for (DecoderLayerWeights& l : layers_) {
    for (LinearWeight* lw : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate, &l.ffn_up, &l.ffn_down,
                             &l.router}) {
      consider(*lw);
    }
    for (auto* experts : {&l.gate_exps, &l.up_exps, &l.down_exps}) {
      for (LinearWeight& e : *experts) consider(e);
    }
  }
  if (output_.w.data != token_embd_.w.data) consider(output_);
  RepackStats stats;
  if (repacked_ != nullptr || todo.empty()) return stats;
  // One allocation (each matrix 64-byte aligned in it) before any change, so that running out of memory leaves
  // the model as it was.
  std::vector<int64_t> offsets;
  int64_t total = 0;
  for (const LinearWeight* lw : todo) {
    offsets.push_back(total);
    stats.bytes += lw->w.Rows() * lw->w.RowStride();
    total += (lw->w.Rows() * lw->w.RowStride() + 63) / 64 * 64;
  }
  auto memory = AnonymousMemory::Allocate(static_cast<uint64_t>(total));
  if (!memory.ok()) return memory.status().WithContext("repacking the weights (run without --repack)");
  std::unique_ptr<Progress> progress;
  if (show_progress) progress = std::make_unique<Progress>("repacking", stats.bytes);
  int64_t done = 0;
  for (size_t i = 0; i < todo.size(); ++i) {
    TensorView& w = todo[i]->w;
    uint8_t* dst = (*memory)->data() + offsets[i];
    pool.ParallelFor(w.Rows(), [&](int64_t r0, int64_t r1) { kernels::RepackRows(w, r0, r1, dst); }, 16);
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

void DecoderModel::DenseFfn(State& s, const DecoderLayerWeights& w, int64_t n, float* out, ThreadPool& pool) const {
  const int64_t f = w.ffn_gate.w.shape[0];
  MatMulMany({{w.ffn_gate, s.xn.data(), s.gate.data()}, {w.ffn_up, s.xn.data(), s.up.data()}}, n, pool);
  kernels::SwiGLU(s.gate.data(), s.up.data(), s.gate.data(), n * f);
  MatMul(w.ffn_down, s.gate.data(), n, out, pool);
}

// MoE (llama4.md 2.9): router logits -> top-k per token (lowest index on ties) -> gate = sigmoid(logit) scales
// the expert INPUT -> tokens grouped by expert, one matrix-matrix product per active expert over its tokens
// -> outputs scattered back and added to the shared expert's output.
void DecoderModel::MoeFfn(State& s, int64_t layer, int64_t n, ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const DecoderLayerWeights& w = layers_[layer];
  const int64_t d = c.hidden_size, f = c.layers[layer].ffn_size;
  const int64_t n_exp = c.num_local_experts, k_used = c.num_experts_per_tok;

  DenseFfn(s, w, n, s.out.data(), pool);  // shared expert, unscaled input

  MatMul(w.router, s.xn.data(), n, s.router.data(), pool);
  std::fill(s.expert_count.begin(), s.expert_count.end(), 0);
  for (int64_t t = 0; t < n; ++t) {
    const float* r = s.router.data() + t * n_exp;
    for (int64_t j = 0; j < k_used; ++j) {
      int32_t best = -1;
      for (int64_t e = 0; e < n_exp; ++e) {
        bool taken = false;
        for (int64_t i = 0; i < j; ++i) taken |= s.choice[t * k_used + i] == e;
        if (!taken && (best < 0 || r[e] > r[best])) best = static_cast<int32_t>(e);
      }
      s.choice[t * k_used + j] = best;
      s.choice_gate[t * k_used + j] = 1.0f / (1.0f + std::exp(-r[best]));
      s.expert_count[best]++;
    }
  }
  if (s.trace != nullptr) {
    s.trace->router_logits.emplace_back(s.router.begin(), s.router.begin() + n * n_exp);
    s.trace->router_choice.emplace_back(s.choice.begin(), s.choice.begin() + n * k_used);
  }
  // Counting sort of the (token, slot) assignments by expert.
  s.expert_offset[0] = 0;
  for (int64_t e = 0; e < n_exp; ++e) s.expert_offset[e + 1] = s.expert_offset[e] + s.expert_count[e];
  std::fill(s.expert_count.begin(), s.expert_count.end(), 0);
  for (int64_t a = 0; a < n * k_used; ++a) {
    const int32_t e = s.choice[a];
    s.order[s.expert_offset[e] + s.expert_count[e]++] = static_cast<int32_t>(a);
  }
  for (int64_t i = 0; i < n * k_used; ++i) {
    const int32_t a = s.order[i];
    const float g = s.choice_gate[a];
    const float* src = s.xn.data() + (a / k_used) * d;
    float* dst = s.xe.data() + i * d;
    for (int64_t j = 0; j < d; ++j) dst[j] = g * src[j];
  }
  for (int64_t e = 0; e < n_exp; ++e) {
    const int64_t begin = s.expert_offset[e], count = s.expert_offset[e + 1] - begin;
    if (count == 0) continue;  // decode reads only the selected experts' weights
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
      kernels::SwiGLU(ge, ue, ge, count * f);
      kernels::MatMulInputMajorScaled(w.down_exps_im.w.Slice(e), down_scale, 0, d, ge, count, ye, pool);
    } else {
      MatMulMany({{w.gate_exps[e], xe, ge}, {w.up_exps[e], xe, ue}}, count, pool);
      kernels::SwiGLU(ge, ue, ge, count * f);
      MatMul(w.down_exps[e], ge, count, ye, pool);
    }
  }
  for (int64_t i = 0; i < n * k_used; ++i) {
    const int64_t t = s.order[i] / k_used;
    kernels::Add(s.out.data() + t * d, s.ye.data() + i * d, s.out.data() + t * d, d);
  }
}

// Items are (block of query tokens, KV head) pairs: one kernel call reads that head's keys and values once, in
// tiles, for all the query heads of its group and all tokens of the block. Items go to threads round-robin, which
// mixes cheap early (causal) blocks with expensive late ones on every thread.
void DecoderModel::Attention(State& s, int64_t layer, int64_t n, ThreadPool& pool) const {
  const ModelConfig& c = config_;
  const LayerConfig& lc = c.layers[layer];
  const int64_t hd = c.head_dim, n_kv = c.num_key_value_heads;
  const int64_t group = c.num_attention_heads / n_kv;
  const int64_t q_dim = c.num_attention_heads * hd;
  const int64_t pos0 = s.n_past();
  const int64_t chunk = lc.attention_chunk_size;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t block = kernels::AttentionTokenBlock(group);
  const int64_t n_blocks = (n + block - 1) / block;
  const int64_t scratch_floats = kernels::AttentionScratchFloats(hd);
  pool.Run([&](int thread_idx) {
    float* scratch = s.attn_scratch.data() + thread_idx * scratch_floats;
    int64_t key_begin[kernels::kAttentionMaxRows], key_end[kernels::kAttentionMaxRows];
    for (int64_t it = thread_idx; it < n_blocks * n_kv; it += pool.size()) {
      const int64_t t0 = it / n_kv * block, kvh = it % n_kv, nt = std::min(block, n - t0);
      // Causal; chunked layers see only their own fixed, absolutely aligned block (llama4.md 2.7). A batch never
      // crosses a chunk boundary, so the block's keys first..pos occupy consecutive slots (see State invariants).
      const int64_t first = chunk > 0 ? (pos0 + t0) / chunk * chunk : 0;
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t pos = pos0 + t0 + t;
        HERD_DCHECK(chunk == 0 || pos / chunk * chunk == first);
        key_begin[t] = 0;
        key_end[t] = pos - first + 1;
      }
      kernels::Attention(s.q.data() + t0 * q_dim + kvh * group * hd, q_dim, nt, group, hd,
                         s.KeySlot(layer, kvh, first, hd), s.ValueSlot(layer, kvh, first, hd), hd, key_begin,
                         key_end, scale, s.att.data() + t0 * q_dim + kvh * group * hd, q_dim, scratch);
    }
  });
}

}  // namespace herd::model
