// `herd run --json-schema / --grammar / --json` end to end on stories260K (a real model with a 512-token
// SentencePiece vocabulary and byte fallback): the continuation is a complete sentence of the grammar, and bad
// schema or grammar files are refused with exit code 2, naming the file and the problem.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "grammar/grammar.h"
#include "herd_cli.h"
#include "test_util.h"

namespace herd {
namespace {

using testing::Herd;
using testing::SharedPath;

std::string Stories(const std::string& f) { return SharedPath("models/stories260K/" + f); }

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = testing::TempDir("structured-cli") + "/" + name;
  testing::WriteBytes(path, text);
  return path;
}

TEST(StructuredCli, JsonSchemaOutputParsesAndHasTheShape) {
  const std::string schema = WriteFile("s.json", R"({"type": "object",
    "properties": {"hero": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 1,
    "maximum": 9}, "happy": {"type": "boolean"}}, "required": ["hero", "age", "happy"],
    "additionalProperties": false})");
  for (const char* seed : {"1", "2", "3"}) {
    auto o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--json-schema", schema, "-n", "100",
                   "--seed", seed, "--temp", "1", "-t", "1"});
    ASSERT_EQ(o.exit_code, 0) << o.err;
    EXPECT_NE(o.err.find("stop: grammar complete"), std::string::npos) << o.err;
    ASSERT_EQ(o.out.rfind("Once", 0), 0u) << o.out;  // the prompt is echoed first
    std::string text = o.out.substr(4);
    ASSERT_FALSE(text.empty());
    text.pop_back();  // the final newline
    const auto v = nlohmann::json::parse(text);
    ASSERT_TRUE(v.is_object()) << text;
    EXPECT_EQ(v.size(), 3u) << text;
    EXPECT_TRUE(v["hero"].is_string() && v["hero"].get<std::string>().size() <= 12 * 4) << text;
    EXPECT_TRUE(v["age"].is_number_integer() && v["age"] >= 1 && v["age"] <= 9) << text;
    EXPECT_TRUE(v["happy"].is_boolean()) << text;
  }
}

TEST(StructuredCli, GrammarAndJsonFlags) {
  const char* gbnf = "root ::= \"The \" animal \" is \" (\"big\" | \"small\") \".\"\nanimal ::= \"cat\" | \"dog\"\n";
  const std::string g = WriteFile("g.gbnf", gbnf);
  auto o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--grammar", g, "-n", "30", "--seed", "4",
                 "--temp", "1", "-t", "1"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_TRUE(std::regex_match(o.out, std::regex("Once(The )(cat|dog) is (big|small)\\.\n"))) << o.out;
  o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--json", "-n", "60", "--seed", "5", "-t", "1"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const std::string text = o.out.substr(4, o.out.size() - 5);
  EXPECT_TRUE(nlohmann::json::parse(text).is_object()) << text;
}

TEST(StructuredCli, BadSchemasAndGrammarsAreRefused) {
  const std::string bad_schema = WriteFile("bad.json", R"({"type": "integer", "multipleOf": 7})");
  auto o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--json-schema", bad_schema});
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_NE(o.err.find(bad_schema), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("multipleOf"), std::string::npos) << o.err;

  const std::string not_json = WriteFile("notjson.json", "{\"type\": ");
  o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--json-schema", not_json});
  EXPECT_EQ(o.exit_code, 2) << o.err;

  const std::string bad_gbnf = WriteFile("bad.gbnf", "root ::= \"a\" (\"b\"\n");
  o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--grammar", bad_gbnf});
  EXPECT_EQ(o.exit_code, 2) << o.err;
  EXPECT_NE(o.err.find("expected ')'"), std::string::npos) << o.err;

  o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--grammar", bad_gbnf, "--json"});
  EXPECT_EQ(o.exit_code, 1) << o.err;  // the flags exclude each other
  o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--json-schema", "/nonexistent.json"});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("/nonexistent.json"), std::string::npos) << o.err;
  // max_tokens below the shortest output.
  const std::string long_literal = WriteFile("long.gbnf", "root ::= \"" + std::string(50, 'x') + "\"\n");
  o = Herd({"run", "-m", Stories("stories260K.bin"), "-p", "Once", "--grammar", long_literal, "-n", "2"});
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("shortest output"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace herd
