// Engine: loading a model with its tokenizer, and the generation loop (prompt as one batch, then one token
// per step with the KV cache), with stop tokens and stop strings and streamed UTF-8 text.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "formats/model_files.h"
#include "grammar/grammar.h"
#include "model/model.h"
#include "model/vision.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace herd::runtime {

// Whether the weights are copied at load into the kernels' fastest layout in huge-page memory
// (model::Model::RepackWeights: decode and prefill faster, a second copy of the matrices in RAM).
enum class RepackMode {
  kAuto,    // the default: copied when the copy fits in the available memory with a margin (RepackFits), else used in
            // place from the file map, so that models larger than RAM keep working
  kAlways,  // --repack: copied, or ResourceExhausted
  kNever,   // --no-repack: used in place from the file map
};
std::string_view RepackModeName(RepackMode mode);  // "auto" | "on" | "off"

// Whether a copy of `bytes` fits in `available` bytes (MemAvailable) leaving a margin of an eighth of them and at
// least 1 GiB for the KV cache, activations and the rest of the system. False when `available` is unknown.
bool RepackFits(int64_t bytes, std::optional<int64_t> available);

// What `mode` decides for `model` now (its RepackBytes against AvailableMemoryBytes), and why, in words for stderr
// and bench JSON.
struct RepackChoice {
  bool repack = false;
  std::string why;
};
RepackChoice DecideRepack(RepackMode mode, const model::Model& model);

struct LoadOptions {
  std::string model_path;
  // Explicit tokenizer file; otherwise the GGUF vocabulary, the HF directory's tokenizer.model, or for a
  // llama2.c checkpoint a single tokenizer*.bin / tok*.bin beside it.
  std::string tokenizer_path;
  bool require_tokenizer = true;
  bool show_progress = true;
  // Repack weights at load into faster layouts (model::Model::RepackWeights) on `threads` threads (0: all).
  RepackMode repack = RepackMode::kAuto;
  int threads = 0;
  // The vision tower: an mmproj GGUF (--mmproj); without it, an HF directory's own when its config.json has a
  // vision_config.
  std::string mmproj_path;
};

struct LoadedModel {
  formats::ModelFiles files;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null only when !require_tokenizer and none was found
  std::vector<int32_t> stop_ids;                    // tokens that end generation
  double load_ms = 0;                               // everything, repacking included
  model::Model::RepackStats repack;                 // what repacking copied (zero when the map is used)
  double repack_ms = 0;
  RepackChoice repack_choice;                  // whether the weights were repacked, and why
  std::unique_ptr<model::VisionTower> vision;  // null for a text-only model
  Status vision_error;  // why the HF directory's own tower could not be loaded (images then fail with it)

  bool IsStopToken(int32_t id) const { return std::find(stop_ids.begin(), stop_ids.end(), id) != stop_ids.end(); }
};

// Errors: IOError/Corruption/NotSupported from the files, with the path in the message; ResourceExhausted when
// RepackMode::kAlways cannot allocate the repacked copy (kAuto falls back to the map, saying so).
Result<std::unique_ptr<LoadedModel>> LoadModel(const LoadOptions& options);

// FNV-1a 64 (Fowler, Noll, Vo) of `bytes`, continuing from `h` (kFnv1aBasis to start): ModelFingerprint's and
// runtime/images.h ImageHash's hash.
inline constexpr uint64_t kFnv1aBasis = 0xcbf29ce484222325ull;
uint64_t Fnv1a(std::span<const uint8_t> bytes, uint64_t h = kFnv1aBasis);
// The 8 bytes of v, little-endian first, into the hash (a length or a size, so that fields cannot run together).
uint64_t Fnv1aInt(uint64_t v, uint64_t h);

// A fingerprint of the network `m` computes, as 16 hex digits (FNV-1a 64): its config (every field, the layer table)
// and its tensor table (names, dtypes, shapes), not the weight values (that would read the whole model). The same
// files give the same fingerprint; other hyperparameters or other tensors another. Chat saves carry it.
std::string ModelFingerprint(const LoadedModel& m);

// model.RepackWeights, timed into *ms; with show_progress, its bar and "herd: repacked N matrices (X MiB) into
// huge-page memory in Y ms, M of them into the repacked layouts (why)" on stderr.
Result<model::Model::RepackStats> RepackModel(model::Model& model, ThreadPool& pool, bool show_progress, double* ms,
                                              const std::string& why = "");

// DecideRepack, then RepackModel when it says so; with show_progress the choice and its cost on stderr ("herd:
// repacked ..." or "herd: weights used in place from the file map (why)"). kAuto falls back to the map when the
// copy cannot be had after all. Fills *stats, *ms and returns the choice.
Result<RepackChoice> ApplyRepack(RepackMode mode, model::Model& model, ThreadPool& pool, bool show_progress,
                                 model::Model::RepackStats* stats, double* ms);

struct GenerateOptions {
  int64_t n_predict = 256;  // tokens to generate at most
  SamplingParams sampling;
  std::vector<std::string> stop_strings;
  // Rows that replace some of the prompt's embeddings (images: runtime/images.h FuseImages), or null.
  const model::EmbeddingOverride* prompt_embeds = nullptr;
  // Constrains the generated tokens to a grammar (runtime/structured.h), or null. The output then always ends in a
  // complete sentence of the grammar within n_predict tokens (and the context): the last tokens are restricted to
  // those that leave room to finish.
  std::shared_ptr<const grammar::CompiledGrammar> grammar;
};

// Why generation ended.
enum class StopReason {
  kLength,       // n_predict tokens generated
  kEos,          // the model sampled a stop token (EOS, end of turn)
  kStopString,   // the text reached a stop string
  kContextFull,  // the KV cache holds n_ctx positions
  kCancelled,    // on_text asked to stop (a client went away, an output failed)
  kGrammarEnd,   // the grammar's sentence is complete and nothing can follow it
};
// "length", "eos", "stop string", "context full", "cancelled", "grammar complete".
std::string_view StopReasonName(StopReason reason);

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (a stop token is not included)
  std::string text;             // their text, cut before a stop string
  StopReason stop_reason = StopReason::kLength;
  std::optional<int32_t> stop_token;  // the stop token sampled (StopReason::kEos); it is not in the cache
  // Trailing generated tokens not yet in the KV cache (0 or 1: the last sampled token is only forwarded when
  // another one follows). The cache holds the prompt and tokens[0, tokens.size() - n_uncached).
  int64_t n_uncached = 0;
  int64_t n_prompt = 0;
  double prompt_ms = 0;
  double gen_ms = 0;
};

// Receives generated text as it becomes final; returns whether to go on (false cancels the generation).
using TextSink = std::function<bool(std::string_view text)>;

// Processes `prompt` from state.n_past() as one batch and then samples up to n_predict tokens. on_text (may be
// empty) receives the text as complete UTF-8 pieces (stop strings held back until they can no longer match); when
// it returns false, generation ends at once with StopReason::kCancelled and on_text is not called again.
// OutOfRange when the prompt does not fit the context.
Result<GenerateResult> Generate(const LoadedModel& m, model::ModelState& state, ThreadPool& pool,
                                std::span<const int32_t> prompt, const GenerateOptions& options,
                                const TextSink& on_text);

double NowMs();

}  // namespace herd::runtime
