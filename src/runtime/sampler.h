// Token sampling: repetition penalty, then top-k, top-p, min-p on the temperature-1 distribution, then
// temperature and a seeded draw (the order llama.cpp's default chain uses). temperature <= 0 is greedy
// argmax (lowest id on ties). Deterministic for a given seed on every platform (own uniform from mt19937_64).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "grammar/grammar.h"

namespace herd::runtime {

struct SamplingParams {
  float temperature = 0.8f;
  int32_t top_k = 40;           // 0: all tokens
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;

  // InvalidArgument naming the parameter when a value is out of its range.
  Status Validate() const;
  static SamplingParams Greedy();
};

class Sampler {
 public:
  // Buffers are sized for `vocab_size` once, here; Sample() does not allocate.
  Sampler(const SamplingParams& params, int64_t vocab_size);
  // Picks the next token from logits[vocab_size]; `history` holds the previous tokens (for the penalty). With
  // `allowed` (a grammar's mask), only its tokens are candidates: the penalty, top-k, top-p, min-p and the
  // temperature apply to them alone; -1 when it allows none.
  int32_t Sample(const float* logits, std::span<const int32_t> history, const grammar::TokenMask* allowed = nullptr);
  const SamplingParams& params() const { return params_; }

 private:
  double Uniform();  // [0, 1)
  SamplingParams params_;
  int64_t vocab_size_;
  std::mt19937_64 rng_;
  std::vector<float> logits_;
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  std::vector<Candidate> candidates_;
  std::vector<uint8_t> penalized_;
};

}  // namespace herd::runtime
