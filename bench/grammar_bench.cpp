// Cost of grammar-constrained decoding per token: for every schema of the corpus (tests/data/json-schemas), random
// walks through the grammar over a real vocabulary (a token drawn uniformly from the mask at each step, as a model
// that knows nothing would; budget 256 tokens), timing the mask (TokenMatcher::FillMask) and the token's
// acceptance. Prints the compile time per schema and the mean, p50, p99 and max per token, and writes JSON with
// --json FILE.
//
//   grammar_bench [--tokenizer FILE] [--schemas DIR] [--walks N] [--budget N] [--json FILE]
#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/file.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace {

double Ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  const char* shared_env = std::getenv("HERD_SHARED");
  std::string shared = shared_env ? shared_env : std::string(HERD_SOURCE_DIR_FOR_BENCH) + "/../shared";
  std::string tok_path = shared + "/models/llama4-tokenizer/tokenizer.model";
  std::string schemas = std::string(HERD_SOURCE_DIR_FOR_BENCH) + "/tests/data/json-schemas";
  std::string json_out;
  int walks = 5;
  int64_t budget = 256;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokenizer")
      tok_path = argv[i + 1];
    else if (a == "--schemas")
      schemas = argv[i + 1];
    else if (a == "--walks")
      walks = std::atoi(argv[i + 1]);
    else if (a == "--budget")
      budget = std::atoll(argv[i + 1]);
    else if (a == "--json")
      json_out = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 1;
    }
  }
  auto tok = herd::tokenizer::LoadTokenizer(tok_path);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  const auto& t = **tok;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> bytes(static_cast<size_t>(t.vocab_size()));
  for (int32_t id = 0; id < t.vocab_size(); ++id) {
    if (!t.IsSpecial(id)) bytes[id] = t.TokenBytes(id);
  }
  auto vocab = herd::grammar::TokenVocab::Build(bytes, t.stop_ids());
  auto t1 = std::chrono::steady_clock::now();
  std::printf("vocabulary: %s, %d tokens, %zu trie nodes, built in %.1f ms\n", tok_path.c_str(), vocab->size(),
              vocab->nodes().size(), Ms(t0, t1));

  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(schemas)) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  nlohmann::json report = {{"tokenizer", tok_path}, {"vocab", vocab->size()}, {"walks", walks}, {"budget", budget}};
  std::vector<double> all_mask, all_accept;
  std::mt19937_64 rng(42);
  std::printf("%-40s %9s %7s %9s %9s %9s %9s\n", "schema", "compile", "tokens", "mean ms", "p50 ms", "p99 ms",
              "max ms");
  for (const auto& f : files) {
    auto text = herd::ReadFileToString(f.string());
    if (!text.ok()) return 1;
    auto c0 = std::chrono::steady_clock::now();
    auto gbnf = herd::grammar::JsonSchemaToGbnf(*text);
    if (!gbnf.ok()) {
      std::printf("%-40s refused: %s\n", f.filename().c_str(), gbnf.status().message().c_str());
      continue;
    }
    auto g = herd::grammar::ParseGbnf(*gbnf);
    if (!g.ok()) {
      std::printf("%-40s grammar error: %s\n", f.filename().c_str(), g.status().message().c_str());
      return 1;
    }
    auto compiled = std::make_shared<herd::grammar::CompiledGrammar>(*g, vocab);
    auto c1 = std::chrono::steady_clock::now();
    std::vector<double> mask_ms;
    herd::grammar::TokenMask mask;
    std::vector<int32_t> allowed;
    for (int w = 0; w < walks; ++w) {
      herd::grammar::TokenMatcher m(compiled);
      for (int64_t step = 0; step < budget && !m.IsComplete(); ++step) {
        auto a = std::chrono::steady_clock::now();
        m.FillMask(budget - step, &mask);
        auto b = std::chrono::steady_clock::now();
        allowed.clear();
        for (size_t i = 0; i < mask.bits.size(); ++i) {
          for (uint64_t word = mask.bits[i]; word; word &= word - 1) {
            allowed.push_back(static_cast<int32_t>(i * 64 + std::countr_zero(word)));
          }
        }
        if (allowed.empty()) {
          std::printf("%s: no token allowed at step %lld\n", f.filename().c_str(), static_cast<long long>(step));
          return 1;
        }
        const int32_t pick = allowed[rng() % allowed.size()];
        auto c = std::chrono::steady_clock::now();
        if (!m.Accept(pick)) return 1;
        auto d = std::chrono::steady_clock::now();
        mask_ms.push_back(Ms(a, b) + Ms(c, d));
        if (std::getenv("SLOW") && Ms(a, b) > 5)
          std::fprintf(stderr, "slow %s walk %d step %lld: %.1f ms, %lld allowed\n", f.filename().c_str(), w,
                       (long long)step, Ms(a, b), (long long)allowed.size());
      }
      if (!m.IsComplete() && !m.CanEnd()) {
        std::printf("%s: walk %d did not finish within %lld tokens\n", f.filename().c_str(), w,
                    static_cast<long long>(budget));
        return 1;
      }
    }
    double sum = 0;
    for (double v : mask_ms) sum += v;
    const double mean = mask_ms.empty() ? 0 : sum / static_cast<double>(mask_ms.size());
    std::printf("%-40s %7.1fms %7zu %9.3f %9.3f %9.3f %9.3f\n", f.filename().c_str(), Ms(c0, c1), mask_ms.size(), mean,
                Percentile(mask_ms, 0.5), Percentile(mask_ms, 0.99),
                mask_ms.empty() ? 0 : *std::max_element(mask_ms.begin(), mask_ms.end()));
    report["schemas"].push_back({{"schema", f.filename().string()},
                                 {"compile_ms", Ms(c0, c1)},
                                 {"tokens", mask_ms.size()},
                                 {"mean_ms", mean},
                                 {"p99_ms", Percentile(mask_ms, 0.99)}});
    all_mask.insert(all_mask.end(), mask_ms.begin(), mask_ms.end());
  }
  double sum = 0;
  for (double v : all_mask) sum += v;
  const double mean = all_mask.empty() ? 0 : sum / static_cast<double>(all_mask.size());
  std::printf("all: %zu tokens, mask + accept per token: mean %.3f ms, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
              all_mask.size(), mean, Percentile(all_mask, 0.5), Percentile(all_mask, 0.99),
              all_mask.empty() ? 0 : *std::max_element(all_mask.begin(), all_mask.end()));
  report["tokens"] = all_mask.size();
  report["mean_ms"] = mean;
  report["p50_ms"] = Percentile(all_mask, 0.5);
  report["p99_ms"] = Percentile(all_mask, 0.99);
  if (!json_out.empty()) std::ofstream(json_out) << report.dump(2) << "\n";
  return 0;
}
