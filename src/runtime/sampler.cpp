// Sampler implementation.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace herd::runtime {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0) {
    return InvalidArgument("temperature must be >= 0, got " + std::to_string(temperature));
  }
  if (!std::isfinite(top_p) || top_p <= 0 || top_p > 1) {
    return InvalidArgument("top-p must be in (0, 1], got " + std::to_string(top_p));
  }
  if (!std::isfinite(min_p) || min_p < 0 || min_p > 1) {
    return InvalidArgument("min-p must be in [0, 1], got " + std::to_string(min_p));
  }
  if (!std::isfinite(repeat_penalty) || repeat_penalty <= 0) {
    return InvalidArgument("repeat penalty must be > 0, got " + std::to_string(repeat_penalty));
  }
  if (repeat_last_n < 0) return InvalidArgument("repeat-last-n must be >= 0, got " + std::to_string(repeat_last_n));
  if (top_k < 0) return InvalidArgument("top-k must be >= 0 (0: off), got " + std::to_string(top_k));
  return Status::Ok();
}

SamplingParams SamplingParams::Greedy() {
  SamplingParams p;
  p.temperature = 0;
  p.top_k = 0;
  p.top_p = 1;
  p.min_p = 0;
  return p;
}

Sampler::Sampler(const SamplingParams& params, int64_t vocab_size)
    : params_(params), vocab_size_(vocab_size), rng_(params.seed) {
  logits_.resize(vocab_size);
  candidates_.resize(vocab_size);
  penalized_.resize(vocab_size);
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int32_t Sampler::Sample(const float* logits, std::span<const int32_t> history, const grammar::TokenMask* allowed) {
  auto ok = [&](int64_t i) { return allowed == nullptr || allowed->Test(static_cast<int32_t>(i)); };
  std::copy(logits, logits + vocab_size_, logits_.begin());
  if (params_.repeat_penalty != 1.0f && params_.repeat_last_n > 0) {
    const size_t n = std::min(history.size(), static_cast<size_t>(params_.repeat_last_n));
    for (size_t i = history.size() - n; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || id >= vocab_size_ || penalized_[id]) continue;
      penalized_[id] = 1;
      logits_[id] = logits_[id] > 0 ? logits_[id] / params_.repeat_penalty : logits_[id] * params_.repeat_penalty;
    }
    for (size_t i = history.size() - n; i < history.size(); ++i) {
      if (history[i] >= 0 && history[i] < vocab_size_) penalized_[history[i]] = 0;
    }
  }
  if (params_.temperature <= 0) {
    int32_t best = -1;
    for (int64_t i = 0; i < vocab_size_; ++i) {
      if (ok(i) && (best < 0 || logits_[i] > logits_[best])) best = static_cast<int32_t>(i);
    }
    return best;
  }
  size_t n = 0;
  for (int64_t i = 0; i < vocab_size_; ++i) {
    if (ok(i)) candidates_[n++] = {static_cast<int32_t>(i), logits_[i], 0.0f};
  }
  if (n == 0) return -1;
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if ((params_.top_k <= 0 || static_cast<size_t>(params_.top_k) >= n) && params_.top_p >= 1.0f && params_.min_p <= 0) {
    // No truncation (OpenAI's defaults): the temperature softmax over every token, then the same walk in
    // descending order as below, sorting only as far as the draw needs (a 202k vocabulary costs a full sort per
    // token otherwise). The normalizer is summed in index order.
    float mx = -HUGE_VALF;
    for (size_t i = 0; i < n; ++i) mx = std::max(mx, candidates_[i].logit);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      candidates_[i].p = std::exp((candidates_[i].logit - mx) / params_.temperature);
      sum += candidates_[i].p;
    }
    for (size_t i = 0; i < n; ++i) candidates_[i].p = static_cast<float>(candidates_[i].p / sum);
    const double r = Uniform();
    // The token where the cumulative mass crosses r, without sorting more than needed: halve the range holding
    // it with nth_element (the upper half's mass decides which half), then walk the last few in order. A flat
    // distribution (a random-weight model) would otherwise sort the whole vocabulary.
    double cum = 0;
    size_t lo = 0, hi = n;
    while (hi - lo > 256) {
      const size_t mid = lo + (hi - lo) / 2;
      std::nth_element(candidates_.begin() + lo, candidates_.begin() + mid, candidates_.begin() + hi, by_logit);
      double upper = 0;
      for (size_t i = lo; i < mid; ++i) upper += candidates_[i].p;
      if (r < cum + upper) {
        hi = mid;
      } else {
        cum += upper;
        lo = mid;
      }
    }
    std::sort(candidates_.begin() + lo, candidates_.begin() + hi, by_logit);
    for (size_t i = lo; i < hi; ++i) {
      cum += candidates_[i].p;
      if (r < cum) return candidates_[i].id;
    }
    return candidates_[hi - 1].id;
  }
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.begin() + n, by_logit);
    n = static_cast<size_t>(params_.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.begin() + n, by_logit);
  }
  // Probabilities at temperature 1 for the top-p / min-p cut.
  auto softmax = [&](float temp) {
    const float mx = candidates_[0].logit;
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      candidates_[i].p = std::exp((candidates_[i].logit - mx) / temp);
      sum += candidates_[i].p;
    }
    for (size_t i = 0; i < n; ++i) candidates_[i].p = static_cast<float>(candidates_[i].p / sum);
  };
  softmax(1.0f);
  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = n;
    for (size_t i = 0; i < n; ++i) {
      cum += candidates_[i].p;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    n = keep;
  }
  if (params_.min_p > 0) {
    const float threshold = params_.min_p * candidates_[0].p;
    size_t keep = 1;
    while (keep < n && candidates_[keep].p >= threshold) ++keep;
    n = keep;
  }
  softmax(params_.temperature);
  const double r = Uniform();
  double cum = 0;
  for (size_t i = 0; i < n; ++i) {
    cum += candidates_[i].p;
    if (r < cum) return candidates_[i].id;
  }
  return candidates_[n - 1].id;
}

}  // namespace herd::runtime
