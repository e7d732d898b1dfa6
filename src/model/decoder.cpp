// The Llama decoder forward pass as batched steps over many sequences (model/model.h Step): the tokens of every
// sequence in a step go through each matrix product together (prompts as matrix-matrix products, decode tokens of
// many sequences as one), attention runs per sequence over its own KV pages (model/kv_cache.h). Activations are
// f32; weights stay in their stored dtype. This file orders the operations; the model's Backend (model/backend.h)
// runs each one. Every CPU kernel computes a token's row the same way whatever else is in the step
// (kernels/matmul.h, kernels/attention.h), so a sequence's logits do not depend on its batch.
#include "model/decoder.h"

#include <algorithm>
#include <new>

#include "core/profile.h"
#include "core/progress.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "model/weights.h"

namespace herd::model {

// The activations of steps of up to max_tokens tokens from up to max_seqs sequences, in the backend's memory,
// sized at creation (nothing is allocated per step), and the host's description of each step.
class DecoderModel::Work final : public Workspace {
 public:
  Work(int64_t max_tokens, int64_t max_seqs) : Workspace(max_tokens, max_seqs) {}

  // Buffers of floats / int32s in the backend's memory space.
  Buffer x, xn, q, k, v, att, gate, up, out, cos, sin, logits, router, choice_gate, choice;
  float* f(const Buffer& b) const { return b.as<float>(); }
  std::unique_ptr<BackendScratch> scratch;
  // Host: each token's position and input, the rows that need logits.
  std::vector<int64_t> pos, logit_rows;
  std::vector<int32_t> seq_of;
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

}  // namespace

Result<std::unique_ptr<Model>> DecoderModel::Create(ModelConfig config, const WeightMap& weights,
                                                    std::unique_ptr<Backend> backend) {
  HERD_RETURN_IF_ERROR(config.Validate());  // sizes below are products of these fields
  std::unique_ptr<DecoderModel> m(new DecoderModel());
  m->weights_ = weights;
  WeightBinder b(m->weights_);
  const int64_t d = config.hidden_size, hd = config.head_dim;
  const int64_t q_dim = config.num_attention_heads * hd, kv_dim = config.num_key_value_heads * hd;
  const int64_t n_exp = config.num_local_experts;

  HERD_ASSIGN_OR_RETURN(m->w_.token_embd, b.Linear("token_embd.weight", -1, d));
  if (m->w_.token_embd.w.shape[0] != config.vocab_size) {
    return Corruption("tensor 'token_embd.weight' has " + std::to_string(m->w_.token_embd.w.shape[0]) +
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
    m->w_.layers.push_back(std::move(lw));
  }
  HERD_ASSIGN_OR_RETURN(m->w_.output_norm, b.Vector("output_norm.weight", d));
  if (weights.Contains("output.weight")) {
    HERD_ASSIGN_OR_RETURN(m->w_.output, b.Linear("output.weight", config.vocab_size, d));
  } else {
    m->w_.output = m->w_.token_embd;  // tied (llama.cpp falls back the same way)
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
  m->w_.inv_freq = RopeInvFreq(config, divisors.empty() ? nullptr : divisors.data());
  m->weight_bytes_ = b.bound_bytes();
  m->config_ = std::move(config);
  m->backend_ = backend != nullptr ? std::move(backend) : NewCpuBackend();
  HERD_RETURN_IF_ERROR(
      m->backend_->Bind(m->config_, m->w_)
          .WithContext(std::string("the ") + m->backend_->name() + " backend cannot take the weights"));
  return std::unique_ptr<Model>(std::move(m));
}

Result<std::unique_ptr<Workspace>> DecoderModel::NewWorkspace(int64_t max_tokens, int64_t max_seqs) const {
  if (max_tokens <= 0 || max_seqs <= 0 || max_seqs > max_tokens) {
    return InvalidArgument("a step needs 1 <= sequences <= tokens, got " + std::to_string(max_seqs) + " and " +
                           std::to_string(max_tokens));
  }
  const ModelConfig& c = config_;
  const int64_t n = max_tokens, d = c.hidden_size, q_dim = c.num_attention_heads * c.head_dim,
                kv_dim = c.num_key_value_heads * c.head_dim, half = c.head_dim / 2;
  auto s = std::make_unique<Work>(max_tokens, max_seqs);
  struct Size {
    Buffer* buffer;
    int64_t elements;  // of 4 bytes: floats or int32s
  };
  std::vector<Size> sizes = {{&s->x, n * d},           {&s->xn, n * d},        {&s->q, n * q_dim},
                             {&s->k, n * kv_dim},      {&s->v, n * kv_dim},    {&s->att, n * q_dim},
                             {&s->gate, n * max_ffn_}, {&s->up, n * max_ffn_}, {&s->out, n * d},
                             {&s->cos, n * half},      {&s->sin, n * half}};
  // One product over every sequence's last row reads the output head once per step; the rows land here.
  if (max_seqs > 1 || backend_->space() != MemorySpace::kHost) sizes.push_back({&s->logits, max_seqs * c.vocab_size});
  if (c.num_local_experts > 0) {
    const int64_t k_used = c.num_experts_per_tok;
    sizes.push_back({&s->router, n * c.num_local_experts});
    sizes.push_back({&s->choice, n * k_used});
    sizes.push_back({&s->choice_gate, n * k_used});
  }
  for (const Size& z : sizes) {
    auto buffer = backend_->Allocate(z.elements * 4);
    if (!buffer.ok())
      return buffer.status().WithContext("the scratch of " + std::to_string(max_tokens) + "-token steps");
    *z.buffer = std::move(buffer).value();
  }
  HERD_ASSIGN_OR_RETURN(s->scratch, backend_->NewScratch(c, max_tokens, max_ffn_));
  try {
    s->pos.resize(n);
    s->seq_of.resize(n);
    s->logit_rows.resize(max_seqs);
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("not enough memory for the scratch of " + std::to_string(max_tokens) + "-token steps");
  }
  return std::unique_ptr<Workspace>(std::move(s));
}

Status DecoderModel::Step(KvCache& cache, std::span<const StepInput> batch, Workspace& base, ExecContext ctx) const {
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
  for (int64_t i = 0, t = 0; i < n_inputs; ++i) {
    for (int64_t j = 0; j < static_cast<int64_t>(batch[i].tokens.size()); ++j, ++t) {
      s.pos[t] = batch[i].seq->n_past() + j;
      s.seq_of[t] = static_cast<int32_t>(i);
    }
  }
  StepTokens(cache, StepRows{batch, s.pos.data(), s.seq_of.data(), n}, s, ctx);
  for (const StepInput& in : batch) cache.Commit(*in.seq, in.cache_keys.empty() ? in.tokens : in.cache_keys);
  return Status::Ok();
}

void DecoderModel::StepTokens(KvCache& cache, const StepRows& rows, Work& s, ExecContext ctx) const {
  const ModelConfig& c = config_;
  const Backend& be = *backend_;
  const std::span<const StepInput> batch = rows.batch;
  const int64_t n = rows.n, d = c.hidden_size;
  float *x = s.f(s.x), *xn = s.f(s.xn), *q = s.f(s.q), *k = s.f(s.k), *v = s.f(s.v), *att = s.f(s.att),
        *out = s.f(s.out);
  auto trace_hidden = [&](const float* src) {
    if (s.trace == nullptr) return;
    std::vector<float>& h = s.trace->hidden.emplace_back(static_cast<size_t>(n * d));
    be.ToHost(src, n * d * 4, h.data(), ctx);
  };

  profile::OpSequence op("embed");  // the op timed now (herd bench --profile)
  be.Embed(w_.token_embd, rows, d, x, ctx);
  be.PositionTables(w_.inv_freq.data(), c.head_dim / 2, rows, s.f(s.cos), s.f(s.sin), ctx);
  trace_hidden(x);

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const DecoderLayerWeights& w = w_.layers[l];
    op.Next("norm");
    be.Norm(x, nullptr, w.attn_norm, n, d, c.rms_norm_eps, xn, ctx);
    op.Next("attn.qkv");
    const Product qkv[] = {{w.attn_q, xn, q}, {w.attn_k, xn, k}, {w.attn_v, xn, v}};
    be.Linear(qkv, n, ctx);
    op.Next("attn.rope_kv");
    be.PrepareAttention(c, static_cast<int>(l), rows, s.f(s.cos), s.f(s.sin), q, k, v, cache, ctx);
    op.Next("attn.core");
    be.Attention(c, static_cast<int>(l), rows, cache, q, att, *s.scratch, ctx);
    op.Next("attn.output");
    const Product o_proj[] = {{w.attn_output, att, out}};
    be.Linear(o_proj, n, ctx);
    op.Next("residual");
    be.Add(x, out, n, d, ctx);

    op.Next("norm");
    be.Norm(x, nullptr, w.ffn_norm, n, d, c.rms_norm_eps, xn, ctx);
    op.End();  // the FFNs time their own parts
    if (c.layers[l].moe) {
      MoeFfn(s, l, n, ctx);  // adds the routed experts into out after the shared expert
    } else {
      DenseFfn(s, w, n, out, ctx);
    }
    op.Next("residual");
    be.Add(x, out, n, d, ctx);
    trace_hidden(x);
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
  // The output head writes host logits directly when the backend computes in host memory, else into s.logits
  // (room for max_seqs rows) a few rows at a time, and then across.
  const bool host = be.space() == MemorySpace::kHost;
  const auto head = [&](const float* rows_in, int64_t count, float* host_logits) {
    if (host) {
      const Product o[] = {{w_.output, rows_in, host_logits}};
      be.Linear(o, count, ctx);
      return;
    }
    for (int64_t r = 0; r < count; r += s.max_seqs()) {
      const int64_t m = std::min(count - r, s.max_seqs());
      const Product o[] = {{w_.output, rows_in + r * d, s.f(s.logits)}};
      be.Linear(o, m, ctx);
      be.ToHost(s.f(s.logits), m * c.vocab_size * 4, host_logits + r * c.vocab_size, ctx);
    }
  };
  if (n_rows < 0) {  // one input with every row (kAll, or a trace)
    be.Norm(x, nullptr, w_.output_norm, n, d, c.rms_norm_eps, xn, ctx);
    trace_hidden(xn);
    const StepInput& in = batch[0];
    if (in.mode == LogitsMode::kNone) return;
    const int64_t first = in.mode == LogitsMode::kAll ? 0 : n - 1;
    head(xn + first * d, n - first, in.logits);
    return;
  }
  if (n_rows == 0) return;
  be.Norm(x, s.logit_rows.data(), w_.output_norm, n_rows, d, c.rms_norm_eps, xn, ctx);
  if (batch.size() == 1) {
    head(xn, 1, batch[0].logits);
    return;
  }
  // One product over every sequence's row, so the output head is read once per step.
  const Product o[] = {{w_.output, xn, s.f(s.logits)}};
  be.Linear(o, n_rows, ctx);
  for (int64_t i = 0, r = 0; i < static_cast<int64_t>(batch.size()); ++i) {
    if (batch[i].mode != LogitsMode::kLast) continue;
    be.ToHost(s.f(s.logits) + r * c.vocab_size, c.vocab_size * 4, batch[i].logits, ctx);
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
  for (auto& l : self.w_.layers) {
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
  if (self.w_.output.w.data != self.w_.token_embd.w.data) consider(self.w_.output);
}

int64_t DecoderModel::RepackBytes() const {
  if (repacked_ != nullptr || backend_->space() != MemorySpace::kHost) return 0;
  int64_t bytes = 0;
  ForEachRepackTarget(*this, [&](const LinearWeight& lw) { bytes += (kernels::RepackedBytes(lw.w) + 63) / 64 * 64; });
  return bytes;
}

Result<Model::RepackStats> DecoderModel::RepackWeights(ThreadPool& pool, bool show_progress) {
  std::vector<LinearWeight*> todo;
  if (backend_->space() != MemorySpace::kHost) return RepackStats{};  // a device backend has its own copies
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

void DecoderModel::DenseFfn(Work& s, const DecoderLayerWeights& w, int64_t n, float* out, ExecContext ctx) const {
  const Backend& be = *backend_;
  const int64_t f = w.ffn_gate.w.shape[0];
  float *xn = s.f(s.xn), *gate = s.f(s.gate), *up = s.f(s.up);
  {
    profile::Scope op("ffn.gate_up");
    const Product gate_up[] = {{w.ffn_gate, xn, gate}, {w.ffn_up, xn, up}};
    be.Linear(gate_up, n, ctx);
  }
  {
    profile::Scope op("swiglu");
    be.SwiGLU(gate, up, n, f, ctx);
  }
  profile::Scope op("ffn.down");
  const Product down[] = {{w.ffn_down, gate, out}};
  be.Linear(down, n, ctx);
}

// MoE (llama4.md 2.9): router logits -> top-k per token (lowest index on ties) -> gate = sigmoid(logit) scales
// the expert INPUT -> tokens grouped by expert, one matrix-matrix product per active expert over its tokens
// -> outputs scattered back and added to the shared expert's output.
void DecoderModel::MoeFfn(Work& s, int64_t layer, int64_t n, ExecContext ctx) const {
  const ModelConfig& c = config_;
  const Backend& be = *backend_;
  const DecoderLayerWeights& w = w_.layers[layer];
  const int64_t d = c.hidden_size, f = c.layers[layer].ffn_size;
  const int64_t n_exp = c.num_local_experts, k_used = c.num_experts_per_tok;
  float *xn = s.f(s.xn), *router = s.f(s.router), *gate = s.f(s.choice_gate);
  int32_t* choice = s.choice.as<int32_t>();

  DenseFfn(s, w, n, s.f(s.out), ctx);  // shared expert, unscaled input

  profile::OpSequence op("moe.router");
  const Product route[] = {{w.router, xn, router}};
  be.Linear(route, n, ctx);
  op.Next("moe.route");
  be.Route(router, n, n_exp, k_used, choice, gate, ctx);
  if (s.trace != nullptr) {
    std::vector<float>& logits = s.trace->router_logits.emplace_back(static_cast<size_t>(n * n_exp));
    be.ToHost(router, n * n_exp * 4, logits.data(), ctx);
    std::vector<int32_t>& chosen = s.trace->router_choice.emplace_back(static_cast<size_t>(n * k_used));
    be.ToHost(choice, n * k_used * 4, chosen.data(), ctx);
  }
  op.End();  // the experts time their own parts
  be.Experts(w, d, f, n_exp, k_used, xn, choice, gate, n, s.f(s.out), *s.scratch, ctx);
}

}  // namespace herd::model
