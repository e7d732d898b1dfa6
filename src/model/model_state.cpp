// ModelState and the single-sequence Forward, on top of Model::Step (model/model.h).
#include <algorithm>
#include <cstring>
#include <new>

#include "model/model.h"

namespace herd::model {

ModelState::ModelState(std::unique_ptr<KvCache> cache, std::unique_ptr<Workspace> workspace, int64_t n_ctx)
    : cache_(std::move(cache)), workspace_(std::move(workspace)), n_ctx_(n_ctx) {}

ModelState::~ModelState() { cache_->Release(seq_); }

void ModelState::Reset() { cache_->Release(seq_); }

Status ModelState::Rewind(int64_t n) { return cache_->Truncate(seq_, n); }

int64_t ModelState::KvBytes() const { return cache_->total_bytes(); }

namespace {

constexpr char kMagic[] = "HERDKV02";

// The positions layer l holds at length n_past: [FirstKey(l, n_past), n_past) (a chunked layer only its chunk).
int64_t HeldFrom(const KvCache& c, int layer, int64_t n_past) { return c.FirstKey(layer, n_past); }

}  // namespace

// Blob: "HERDKV02", then int64 n_layers, n_kv_heads, head_dim, kv dtype, n_past; then per layer, per KV head, the
// K rows and then the V rows of the positions the layer holds, in the cache's row type.
Status ModelState::SaveTo(std::string* blob) const {
  blob->assign(kMagic, 8);
  auto put = [&](int64_t val) { blob->append(reinterpret_cast<const char*>(&val), sizeof val); };
  KvCache& c = *cache_;
  const int64_t layers = c.n_layers(), n_past = seq_.n_past();
  put(layers);
  put(c.n_kv_heads());
  put(c.head_dim());
  put(static_cast<int64_t>(cache_->type()));
  put(n_past);
  for (int l = 0; l < layers; ++l) {
    for (int64_t h = 0; h < c.n_kv_heads(); ++h) {
      for (int kv = 0; kv < 2; ++kv) {
        for (int64_t pos = HeldFrom(c, l, n_past); pos < n_past; ++pos) {
          const uint8_t* row = kv == 0 ? c.KeyRow(seq_, l, h, pos) : c.ValueRow(seq_, l, h, pos);
          blob->append(reinterpret_cast<const char*>(row), static_cast<size_t>(c.row_bytes()));
        }
      }
    }
  }
  return Status::Ok();
}

Status ModelState::LoadFrom(std::string_view blob) {
  size_t at = 0;
  auto get = [&](int64_t* val) {
    if (blob.size() - at < sizeof *val) return false;
    std::memcpy(val, blob.data() + at, sizeof *val);
    at += sizeof *val;
    return true;
  };
  if (blob.size() < 8 || blob.substr(0, 8) != std::string_view(kMagic, 8)) {
    if (blob.substr(0, 6) == "HERDKV") {
      return Corruption("KV cache blob of another version ('" + std::string(blob.substr(0, 8)) +
                        "'; this herd reads HERDKV02)");
    }
    return Corruption("not a herd KV cache blob");
  }
  at = 8;
  int64_t layers = 0, kv_heads = 0, hd = 0, type = 0, n_past = 0;
  if (!get(&layers) || !get(&kv_heads) || !get(&hd) || !get(&type) || !get(&n_past)) {
    return Corruption("KV cache blob: truncated header");
  }
  KvCache& c = *cache_;
  if (layers != c.n_layers() || kv_heads != c.n_kv_heads() || hd != c.head_dim()) {
    return Corruption("KV cache blob is for another model (" + std::to_string(layers) + " layers, " +
                      std::to_string(kv_heads) + " KV heads of " + std::to_string(hd) + ")");
  }
  if (type != static_cast<int64_t>(cache_->type())) {
    return Corruption("KV cache blob holds rows of another KV type than this session's " +
                      std::string(DTypeName(cache_->type())));
  }
  if (n_past < 0 || n_past > n_ctx_) {
    return OutOfRange("KV cache blob holds " + std::to_string(n_past) + " positions, more than the context of " +
                      std::to_string(n_ctx_));
  }
  size_t need = 0;
  for (int l = 0; l < layers; ++l) {
    need += static_cast<size_t>(2 * kv_heads * (n_past - HeldFrom(c, l, n_past)) * c.row_bytes());
  }
  if (blob.size() - at != need) return Corruption("KV cache blob: wrong size (truncated or damaged)");
  KvSequence loaded;
  HERD_RETURN_IF_ERROR(c.Restore(loaded, n_past));
  for (int l = 0; l < layers; ++l) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      for (int kv = 0; kv < 2; ++kv) {
        for (int64_t pos = HeldFrom(c, l, n_past); pos < n_past; ++pos) {
          uint8_t* row = kv == 0 ? c.KeyRow(loaded, l, h, pos) : c.ValueRow(loaded, l, h, pos);
          std::memcpy(row, blob.data() + at, static_cast<size_t>(c.row_bytes()));
          at += static_cast<size_t>(c.row_bytes());
        }
      }
    }
  }
  c.Release(seq_);
  seq_ = std::move(loaded);
  return Status::Ok();
}

Result<std::unique_ptr<ModelState>> Model::NewState(int64_t n_ctx, int64_t n_batch, DType kv_type) const {
  const ModelConfig& c = config();
  if (n_ctx <= 0) return InvalidArgument("context size must be positive, got " + std::to_string(n_ctx));
  if (n_ctx > c.max_position_embeddings) {
    return OutOfRange("context size " + std::to_string(n_ctx) + " exceeds the model's maximum of " +
                      std::to_string(c.max_position_embeddings) + " positions");
  }
  if (n_batch <= 0) return InvalidArgument("batch size must be positive, got " + std::to_string(n_batch));
  n_batch = std::min(n_batch, n_ctx);
  KvCache::Options o;
  o.type = kv_type;
  o.prefix_cache = false;
  HERD_ASSIGN_OR_RETURN(std::vector<KvCache::Group> groups, KvCache::Layout(c, o));
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<KvCache> cache, KvCache::Create(c, o, KvCache::PagesFor(groups, n_ctx, 1)));
  HERD_ASSIGN_OR_RETURN(std::unique_ptr<Workspace> ws, NewWorkspace(n_batch, 1));
  return std::make_unique<ModelState>(std::move(cache), std::move(ws), n_ctx);
}

Status CheckTokenIds(std::span<const int32_t> tokens, int64_t vocab) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return InvalidArgument("token id " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                             " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
  return Status::Ok();
}

Status CheckEmbeddingOverride(std::span<const int32_t> at, const float* rows, std::span<const int32_t> cache_keys,
                              int64_t n_tokens) {
  if (!at.empty() && rows == nullptr) return InvalidArgument("embedding rows are missing for the positions given");
  for (size_t k = 0; k < at.size(); ++k) {
    if (at[k] < 0 || at[k] >= n_tokens || (k > 0 && at[k] <= at[k - 1])) {
      return InvalidArgument("embedding position " + std::to_string(at[k]) + " (entry " + std::to_string(k) +
                             ") is outside the " + std::to_string(n_tokens) + " tokens or out of order");
    }
  }
  if (!cache_keys.empty() && static_cast<int64_t>(cache_keys.size()) != n_tokens) {
    return InvalidArgument("there are " + std::to_string(cache_keys.size()) + " cache keys for " +
                           std::to_string(n_tokens) + " tokens");
  }
  return Status::Ok();
}

void SetOverrideChunk(const EmbeddingOverride& embeds, int64_t hidden_size, int64_t from, int64_t n,
                      std::vector<int32_t>* local, StepInput* in) {
  const auto lo = std::lower_bound(embeds.at.begin(), embeds.at.end(), from);
  const auto hi = std::lower_bound(lo, embeds.at.end(), from + n);
  local->clear();
  for (auto it = lo; it != hi; ++it) local->push_back(static_cast<int32_t>(*it - from));
  in->embed_at = *local;
  in->embed_rows = embeds.rows + (lo - embeds.at.begin()) * hidden_size;
  if (!embeds.cache_keys.empty()) {
    in->cache_keys = embeds.cache_keys.subspan(static_cast<size_t>(from), static_cast<size_t>(n));
  }
}

Status Model::Forward(ModelState& state, std::span<const int32_t> tokens, LogitsMode mode, float* logits,
                      ExecContext ctx, const EmbeddingOverride* embeds) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return InvalidArgument("no tokens to process");
  if (state.n_past() + n > state.n_ctx()) {
    return OutOfRange("context full: " + std::to_string(state.n_past()) + " positions used + " + std::to_string(n) +
                      " new tokens > context size " + std::to_string(state.n_ctx()));
  }
  const int64_t vocab = config().vocab_size;
  HERD_RETURN_IF_ERROR(CheckTokenIds(tokens, vocab));
  if (embeds != nullptr) HERD_RETURN_IF_ERROR(CheckEmbeddingOverride(embeds->at, embeds->rows, embeds->cache_keys, n));
  std::vector<int32_t> local_at;  // this batch's override positions, relative to the batch
  KvCache& cache = state.cache();
  KvSequence& seq = state.seq();
  for (int64_t b = 0; b < n;) {
    const int64_t nb = std::min({state.n_batch(), n - b, cache.TokensToChunkEnd(seq.n_past())});
    const bool last_batch = b + nb == n;
    StepInput in;
    in.seq = &seq;
    in.tokens = tokens.subspan(static_cast<size_t>(b), static_cast<size_t>(nb));
    in.mode = mode == LogitsMode::kAll ? LogitsMode::kAll : (last_batch ? mode : LogitsMode::kNone);
    in.logits = mode == LogitsMode::kAll ? logits + b * vocab : logits;
    if (embeds != nullptr) SetOverrideChunk(*embeds, config().hidden_size, b, nb, &local_at, &in);
    HERD_RETURN_IF_ERROR(cache.Reserve(seq, seq.n_past() + nb));
    HERD_RETURN_IF_ERROR(Step(cache, std::span<const StepInput>(&in, 1), state.workspace(), ctx));
    b += nb;
  }
  return Status::Ok();
}

}  // namespace herd::model
