// The backend seam (model/backend.h, issue 15) on the Llama 4 fixtures (chunked and global attention, MoE, QK-norm,
// temperature tuning) and stories260K (dense):
//  - a step runs every layer-level operation through the model's Backend, and the CPU backend gives the logits the
//    default model gives, bit for bit;
//  - a backend whose memory is "device" memory (buffers at addresses host code cannot dereference: any access
//    outside the backend's operations faults) gives the same logits: the decoder moves data only through the
//    backend, reads logits and traces back with ToHost, and never repacks such a model's weights.
#include "model/backend.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include "core/thread_pool.h"
#include "model/decoder.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace herd {
namespace {

using model::Backend;
using model::BackendScratch;
using model::Buffer;
using model::DecoderLayerWeights;
using model::ExecContext;
using model::KvCache;
using model::LinearWeight;
using model::MemorySpace;
using model::ModelConfig;
using model::Product;
using model::StepRows;
using testing::SharedPath;

// Forwards every operation to the CPU backend and counts the calls. With `device`, it claims device memory and
// hands out buffer addresses with bit 62 set: non-canonical on x86-64 (and beyond any user address elsewhere), so
// a host access to them faults. Each operation clears the bit before the CPU backend sees the pointers.
class ProxyBackend final : public Backend {
 public:
  explicit ProxyBackend(bool device) : device_(device), cpu_(model::NewCpuBackend()) {}
  std::map<std::string, int64_t>& calls() const { return calls_; }

  const char* name() const override { return device_ ? "proxy-device" : "proxy"; }
  MemorySpace space() const override { return device_ ? MemorySpace::kDevice : MemorySpace::kHost; }
  Status Bind(const ModelConfig& c, const model::DecoderWeights& w) override {
    ++calls_["Bind"];
    return cpu_->Bind(c, w);
  }
  Result<Buffer> Allocate(int64_t bytes) const override {
    // Real host memory, owned by a Buffer kept here; the caller gets the tagged address.
    HERD_ASSIGN_OR_RETURN(Buffer host, cpu_->Allocate(bytes));
    void* tagged = Tag(host.as<void>());
    owned_[tagged] = std::move(host);
    return Buffer(space(), tagged, bytes, [](void*) {});
  }
  Result<std::unique_ptr<BackendScratch>> NewScratch(const ModelConfig& c, int64_t max_tokens,
                                                     int64_t max_ffn) const override {
    return cpu_->NewScratch(c, max_tokens, max_ffn);
  }
  void Embed(const LinearWeight& table, const StepRows& rows, int64_t d, float* x, ExecContext ctx) const override {
    ++calls_["Embed"];
    cpu_->Embed(table, rows, d, U(x), ctx);
  }
  void PositionTables(const float* inv_freq, int64_t half, const StepRows& rows, float* cos, float* sin,
                      ExecContext ctx) const override {
    ++calls_["PositionTables"];
    cpu_->PositionTables(inv_freq, half, rows, U(cos), U(sin), ctx);
  }
  void Norm(const float* x, const int64_t* at, const std::vector<float>& weight, int64_t n, int64_t d, float eps,
            float* y, ExecContext ctx) const override {
    ++calls_["Norm"];
    cpu_->Norm(U(x), at, weight, n, d, eps, U(y), ctx);
  }
  void Linear(std::span<const Product> products, int64_t n_tokens, ExecContext ctx) const override {
    ++calls_["Linear"];
    std::vector<Product> host;
    for (const Product& p : products) host.push_back({p.w, U(p.x), U(p.y)});
    cpu_->Linear(host, n_tokens, ctx);
  }
  void PrepareAttention(const ModelConfig& c, int layer, const StepRows& rows, const float* cos, const float* sin,
                        float* q, float* k, const float* v, KvCache& cache, ExecContext ctx) const override {
    ++calls_["PrepareAttention"];
    cpu_->PrepareAttention(c, layer, rows, U(cos), U(sin), U(q), U(k), U(v), cache, ctx);
  }
  void Attention(const ModelConfig& c, int layer, const StepRows& rows, const KvCache& cache, const float* q,
                 float* att, BackendScratch& scratch, ExecContext ctx) const override {
    ++calls_["Attention"];
    cpu_->Attention(c, layer, rows, cache, U(q), U(att), scratch, ctx);
  }
  void Add(float* x, const float* y, int64_t n, int64_t d, ExecContext ctx) const override {
    ++calls_["Add"];
    cpu_->Add(U(x), U(y), n, d, ctx);
  }
  void SwiGLU(float* gate, const float* up, int64_t n, int64_t f, ExecContext ctx) const override {
    ++calls_["SwiGLU"];
    cpu_->SwiGLU(U(gate), U(up), n, f, ctx);
  }
  void Route(const float* logits, int64_t n, int64_t n_experts, int64_t k, int32_t* choice, float* gate,
             ExecContext ctx) const override {
    ++calls_["Route"];
    cpu_->Route(U(logits), n, n_experts, k, U(choice), U(gate), ctx);
  }
  void Experts(const DecoderLayerWeights& w, int64_t d, int64_t f, int64_t n_experts, int64_t k, const float* xn,
               const int32_t* choice, const float* gate, int64_t n, float* out, BackendScratch& scratch,
               ExecContext ctx) const override {
    ++calls_["Experts"];
    cpu_->Experts(w, d, f, n_experts, k, U(xn), U(choice), U(gate), n, U(out), scratch, ctx);
  }
  void ToHost(const void* src, int64_t bytes, void* dst, ExecContext ctx) const override {
    ++calls_["ToHost"];
    cpu_->ToHost(U(src), bytes, dst, ctx);
  }

 private:
  static constexpr uintptr_t kTag = uintptr_t{1} << 62;
  void* Tag(void* p) const { return device_ ? reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | kTag) : p; }
  template <class T>
  T* U(T* p) const {
    return reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(p) & ~kTag);
  }

  bool device_;
  std::unique_ptr<Backend> cpu_;
  mutable std::map<void*, Buffer> owned_;
  mutable std::map<std::string, int64_t> calls_;
};

class BackendSeam : public ::testing::TestWithParam<std::string> {};

// Logits of every position of a prompt longer than the fixture's attention chunk, in batches of 7 (prefill steps
// and, after them, one-token steps), then a traced step; against the default model on the same files.
TEST_P(BackendSeam, EveryOperationGoesThroughTheBackendAndTheLogitsAreTheSame) {
  runtime::LoadOptions o;
  o.model_path = SharedPath(GetParam());
  o.require_tokenizer = false;
  o.show_progress = false;
  o.repack = runtime::RepackMode::kNever;
  auto lm = runtime::LoadModel(o);
  ASSERT_TRUE(lm.ok()) << lm.status().ToString();
  const model::Model& base = *(*lm)->model;
  EXPECT_STREQ(base.BackendName(), "cpu");
  const ModelConfig& c = base.config();
  auto pool = ThreadPool::Create(2);
  ASSERT_TRUE(pool.ok());

  std::mt19937_64 rng(20261207);
  std::vector<int32_t> prompt(40);
  for (int32_t& t : prompt) t = static_cast<int32_t>(std::uniform_int_distribution<int64_t>(0, c.vocab_size - 1)(rng));
  const auto run = [&](const model::Model& m) {
    auto st = m.NewState(64, 7);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    std::vector<float> logits(prompt.size() * static_cast<size_t>(c.vocab_size));
    // 28 prompt tokens in steps of up to 7, then one token per step.
    EXPECT_TRUE(m.Forward(**st, std::span(prompt).first(28), model::LogitsMode::kAll, logits.data(), **pool).ok());
    for (size_t i = 28; i < prompt.size(); ++i) {
      EXPECT_TRUE(m.Forward(**st, std::span(prompt).subspan(i, 1), model::LogitsMode::kLast,
                            logits.data() + i * c.vocab_size, **pool)
                      .ok());
    }
    return logits;
  };
  const auto trace = [&](const model::Model& m) {
    auto st = m.NewState(64, 8);
    EXPECT_TRUE(st.ok());
    model::ForwardTrace tr;
    model::DecoderModel::SetTrace(**st, &tr);
    std::vector<float> last(static_cast<size_t>(c.vocab_size));
    EXPECT_TRUE(m.Forward(**st, std::span(prompt).first(5), model::LogitsMode::kLast, last.data(), **pool).ok());
    return tr;
  };
  const std::vector<float> want = run(base);
  const model::ForwardTrace want_trace = trace(base);

  for (bool device : {false, true}) {
    SCOPED_TRACE(device ? "device memory" : "host memory");
    auto proxy = std::make_unique<ProxyBackend>(device);
    ProxyBackend* seen = proxy.get();
    auto m = model::CreateModel(c, (*lm)->files.weights, std::move(proxy));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_STREQ((*m)->BackendName(), device ? "proxy-device" : "proxy");
    if (device) {  // a device backend keeps its own copies: nothing to repack on the host
      EXPECT_EQ((*m)->RepackBytes(), 0);
      auto stats = (*m)->RepackWeights(**pool, false);
      ASSERT_TRUE(stats.ok());
      EXPECT_EQ(stats->tensors, 0);
    }
    EXPECT_EQ(run(**m), want);  // bit for bit
    const model::ForwardTrace got_trace = trace(**m);
    EXPECT_EQ(got_trace.hidden, want_trace.hidden);
    EXPECT_EQ(got_trace.router_logits, want_trace.router_logits);
    EXPECT_EQ(got_trace.router_choice, want_trace.router_choice);

    std::vector<std::string> ops = {"Bind",      "Embed", "PositionTables", "Norm", "Linear", "PrepareAttention",
                                    "Attention", "Add",   "SwiGLU"};
    if (c.num_local_experts > 0) {
      ops.push_back("Route");
      ops.push_back("Experts");
    }
    if (device) ops.push_back("ToHost");  // logits and traces come back through it
    for (const std::string& op : ops) EXPECT_GT(seen->calls()[op], 0) << op << " never reached the backend";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, BackendSeam,
                         ::testing::Values("fixtures/llama4-tiny-text/interleaved", "fixtures/llama4-tiny-text/allmoe",
                                           "models/stories260K/stories260K.bin"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return testing::ModelParamName(p.param);
                         });

}  // namespace
}  // namespace herd
