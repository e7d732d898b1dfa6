// Structured output end to end: random-weight Llama 4 models (they know nothing, so only the grammar can make their
// output valid) with real vocabularies (Llama 4's 202k BPE, Llama 3's 128k BPE, Llama 2's 32k SentencePiece)
// generate, sampling at temperature 1 with max_tokens 256, for every schema of tests/data/json-schemas and for
// response_format json_object. An independent validator (tests/tools/validate_json.py: Debian's python3-jsonschema,
// formats checked) must accept every output, and every generation must end because the grammar completed, never at
// the length limit.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/thread_pool.h"
#include "grammar/grammar.h"
#include "runtime/engine.h"
#include "runtime/structured.h"
#include "test_util.h"
#include "tools/synthetic.h"

namespace herd {
namespace {

using testing::kSanitized;

struct Output {
  std::string id;
  nlohmann::json schema;  // null: any JSON object
  std::string text;
};

// A tiny random Llama 4 over `vocab` tokens with the tokenizer at `tokenizer` (relative to ../shared).
std::unique_ptr<runtime::LoadedModel> TinyModel(int64_t vocab, const std::string& tokenizer, ThreadPool& pool) {
  tools::SyntheticSpec spec;
  spec.preset = "custom";
  spec.num_hidden_layers = 2;
  spec.hidden_size = 64;
  spec.num_attention_heads = 4;
  spec.num_key_value_heads = 2;
  spec.num_local_experts = 4;
  spec.num_experts_per_tok = 1;
  spec.intermediate_size = 64;
  spec.intermediate_size_mlp = 128;
  spec.vocab_size = vocab;
  spec.max_position_embeddings = 4096;
  spec.seed = 7;
  auto m = std::make_unique<runtime::LoadedModel>();
  auto model = tools::MakeSyntheticModel(spec, pool);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  m->model = std::move(model).value();
  auto tok = tokenizer::LoadTokenizer(testing::SharedPath(tokenizer));
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  m->tokenizer = std::move(tok).value();
  m->stop_ids = m->tokenizer->stop_ids();
  return m;
}

// Generates once per seed for the grammar; every generation must finish by the grammar within 256 tokens.
void Generate(const runtime::LoadedModel& m, ThreadPool& pool, const std::shared_ptr<const grammar::CompiledGrammar>& g,
              const std::string& id, const nlohmann::json& schema, std::initializer_list<uint64_t> seeds,
              std::vector<Output>* out) {
  const std::vector<int32_t> prompt = m.tokenizer->Encode("Answer in JSON:", true, false);
  for (uint64_t seed : seeds) {
    auto state = m.model->NewState(512, 64);
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    runtime::GenerateOptions go;
    go.n_predict = 256;
    go.sampling.temperature = 1.0f;
    go.sampling.top_k = 0;
    go.sampling.top_p = 1.0f;
    go.sampling.min_p = 0.0f;
    go.sampling.seed = seed;
    go.grammar = g;
    auto r = runtime::Generate(m, **state, pool, prompt, go, nullptr);
    ASSERT_TRUE(r.ok()) << id << ": " << r.status().ToString();
    EXPECT_TRUE(r->stop_reason == runtime::StopReason::kGrammarEnd || r->stop_reason == runtime::StopReason::kEos)
        << id << " seed " << seed << " ended: " << runtime::StopReasonName(r->stop_reason) << " after "
        << r->tokens.size() << " tokens: " << r->text;
    EXPECT_LE(r->tokens.size(), 256u);
    out->push_back({id + " seed " + std::to_string(seed), schema, r->text});
  }
}

// Runs the independent validator over `outputs`; every one must be valid.
void ExpectAllValid(const std::vector<Output>& outputs, const std::string& name) {
  const std::string dir = testing::TempDir("structured_output_" + name);
  const std::string lines = dir + "/outputs.jsonl";
  {
    std::ofstream f(lines);
    for (const auto& o : outputs) {
      f << nlohmann::json{{"id", o.id}, {"schema", o.schema}, {"output", o.text}}.dump() << "\n";
    }
  }
  auto r =
      testing::RunCommand({"/usr/bin/python3", std::string(HERD_SOURCE_DIR) + "/tests/tools/validate_json.py", lines});
  ASSERT_EQ(r.exit_code, 0) << "the validator failed (python3-jsonschema: scripts/install-deps.sh): " << r.err;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["checked"].get<size_t>(), outputs.size());
  for (const auto& bad : summary["invalid"]) ADD_FAILURE() << "invalid output: " << bad.dump();
  std::printf("%s: %zu outputs, %zu invalid\n", name.c_str(), outputs.size(), summary["invalid"].size());
}

std::vector<std::filesystem::path> Corpus() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(std::string(HERD_SOURCE_DIR) + "/tests/data/json-schemas")) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(StructuredOutput, EverySchemaOfTheCorpusValidatesOnLlama4Vocabulary) {
  ThreadPool pool(2);
  auto m = TinyModel(202048, "models/llama4-tokenizer/tokenizer.model", pool);
  runtime::GrammarCache cache(*m);
  std::vector<Output> outputs;
  const auto files = Corpus();
  ASSERT_GE(files.size(), 30u);
  for (size_t i = 0; i < files.size(); ++i) {
    if (kSanitized && i % 8 != 0) continue;  // an eighth of them under the sanitizers (time)
    const std::string text = testing::ReadText(files[i].string());
    auto g = cache.Get(runtime::GrammarKind::kJsonSchema, text);
    ASSERT_TRUE(g.ok()) << files[i] << ": " << g.status().ToString();
    Generate(*m, pool, *g, files[i].filename().string(), nlohmann::json::parse(text), {1}, &outputs);
  }
  auto any = cache.Get(runtime::GrammarKind::kJsonObject, "");
  ASSERT_TRUE(any.ok()) << any.status().ToString();
  Generate(*m, pool, *any, "json_object", nullptr, {1, 2}, &outputs);
  ExpectAllValid(outputs, "llama4");
}

TEST(StructuredOutput, SentencePieceAndLlama3VocabulariesToo) {
  ThreadPool pool(2);
  std::vector<Output> outputs;
  const auto files = Corpus();
  const std::pair<int64_t, const char*> vocabularies[] = {{32000, "models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"},
                                                          {128256, "models/llama3-tokenizer/tokenizer.model"}};
  for (auto [size, path] : vocabularies) {
    auto m = TinyModel(size, path, pool);
    runtime::GrammarCache cache(*m);
    for (size_t i = 0; i < files.size(); i += kSanitized ? 8 : 3) {
      const std::string text = testing::ReadText(files[i].string());
      auto g = cache.Get(runtime::GrammarKind::kJsonSchema, text);
      ASSERT_TRUE(g.ok()) << files[i] << ": " << g.status().ToString();
      Generate(*m, pool, *g, std::string(path) + " " + files[i].filename().string(), nlohmann::json::parse(text), {3},
               &outputs);
    }
  }
  ExpectAllValid(outputs, "spm_and_llama3");
}

// A GBNF grammar (llama.cpp's syntax) constrains generation too, and a model of the wrong size is refused.
TEST(StructuredOutput, GbnfGrammarsAndTheirErrors) {
  ThreadPool pool(2);
  auto m = TinyModel(202048, "models/llama4-tokenizer/tokenizer.model", pool);
  runtime::GrammarCache cache(*m);
  const char* gbnf = R"(root ::= item ("," ws item){2,4}
item ::= "[" [a-z]{1,8} "=" ("-"? [0-9]{1,3}) "]"
ws ::= " "?
)";
  auto g = cache.Get(runtime::GrammarKind::kGbnf, gbnf);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  std::vector<Output> outputs;
  Generate(*m, pool, *g, "gbnf", nullptr, {1, 2, 3}, &outputs);
  auto parsed = grammar::ParseGbnf(gbnf);
  ASSERT_TRUE(parsed.ok());
  for (const auto& o : outputs) {
    grammar::ByteMatcher bm(*parsed);
    EXPECT_TRUE(bm.Accept(o.text) && bm.CanEnd()) << o.text;
  }
  auto bad = cache.Get(runtime::GrammarKind::kJsonSchema, R"({"type": "integer", "multipleOf": 3})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("multipleOf"), std::string::npos) << bad.status().message();
  auto bad_gbnf = cache.Get(runtime::GrammarKind::kGbnf, "root ::= value\n");
  ASSERT_FALSE(bad_gbnf.ok());
  EXPECT_NE(bad_gbnf.status().message().find("undefined rule 'value'"), std::string::npos);
  // A budget below the grammar's shortest output is refused up front.
  auto state = m->model->NewState(512, 64);
  ASSERT_TRUE(state.ok());
  runtime::GenerateOptions go;
  go.n_predict = 3;
  go.grammar = *g;
  auto r = runtime::Generate(*m, **state, pool, m->tokenizer->Encode("x", true, false), go, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("shortest output"), std::string::npos) << r.status().message();
  // A grammar too complex to follow (nested repetitions matching the same text in very many ways) is an error
  // naming that, whether found at the start or at some token.
  std::string nest = "\"a\"";
  for (int i = 0; i < 8; ++i) nest = "(" + nest + "? \"b\"?){0,6}";
  for (const std::string& text : {"root ::= " + nest + "\n", "root ::= \"x\" " + nest + "\n"}) {
    auto complex = cache.Get(runtime::GrammarKind::kGbnf, text);
    ASSERT_TRUE(complex.ok()) << complex.status().ToString();
    go.n_predict = 64;
    go.grammar = *complex;
    r = runtime::Generate(*m, **state, pool, m->tokenizer->Encode("x", true, false), go, nullptr);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("too complex"), std::string::npos) << r.status().message();
  }
}

// llama.cpp's own .gbnf files (from the llama.cpp peer's sources, build/peer: `make peer`, which `make test` runs)
// parse unchanged, and constrain generation to sentences of each.
TEST(StructuredOutput, LlamaCppGrammarFilesParseUnchangedAndConstrain) {
  const std::string dir = std::string(HERD_SOURCE_DIR) + "/build/peer/llama-src/grammars";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " is missing: run `make peer` (scripts/install-peer.sh)";
  ThreadPool pool(2);
  auto m = TinyModel(202048, "models/llama4-tokenizer/tokenizer.model", pool);
  runtime::GrammarCache cache(*m, 16);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".gbnf") continue;
    ++files;
    const std::string text = testing::ReadText(e.path().string());
    auto parsed = grammar::ParseGbnf(text);
    ASSERT_TRUE(parsed.ok()) << e.path() << ": " << parsed.status().ToString();
    if (kSanitized && files > 3) continue;  // generation with three of them under the sanitizers (time)
    auto g = cache.Get(runtime::GrammarKind::kGbnf, text);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    std::vector<Output> outputs;
    Generate(*m, pool, *g, e.path().filename().string(), nullptr, {1}, &outputs);
    for (const auto& o : outputs) {
      grammar::ByteMatcher bm(*parsed);
      EXPECT_TRUE(bm.Accept(o.text) && bm.CanEnd()) << o.id << ": " << o.text;
    }
  }
  EXPECT_GE(files, 8);  // arithmetic, c, chess, english, japanese, json, json_arr, list
}

}  // namespace
}  // namespace herd
