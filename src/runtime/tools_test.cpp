#include "runtime/tools.h"

#include <gtest/gtest.h>

#include "grammar/grammar.h"
#include "grammar/json_schema.h"

namespace herd::runtime {
namespace {

std::vector<ToolFunction> Tools() {
  ToolFunction weather{"get_weather", "Get weather info for places", {}};
  weather.parameters = nlohmann::ordered_json::parse(
      R"({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1,
          "maximum": 7}, "metric": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]})");
  ToolFunction time{"get_time", "The time in a zone", {}};
  time.parameters = nlohmann::ordered_json::parse(R"({"type": "object", "properties": {"zone": {"type": "string"}}})");
  return {weather, time};
}

TEST(Tools, Llama4PromptIsMetasWithTheFunctionList) {
  const std::string p = ToolPrompt(ChatFormat::kLlama4, Tools());
  EXPECT_EQ(p.rfind("You are a helpful assistant and an expert in function composition.", 0), 0u);
  EXPECT_NE(p.find("- Use exact format: [func_name1(param1=value1, param2=value2), func_name2(...)]\n"),
            std::string::npos);
  EXPECT_NE(p.find("Here is a list of functions in JSON format that you can invoke.\n\n[\n    {\n        \"name\": "
                   "\"get_weather\",\n        \"description\": \"Get weather info for places\",\n"),
            std::string::npos);
  EXPECT_TRUE(
      p.ends_with("]\n\nYou can answer general questions or invoke tools when necessary.\nIn addition to tool "
                  "calls, you should also augment your responses by using the tool outputs."));
  const std::string p3 = ToolPrompt(ChatFormat::kLlama3, Tools());
  EXPECT_EQ(p3.rfind("Given the following functions, please respond with a JSON for a function call", 0), 0u);
  EXPECT_NE(p3.find("{\n    \"name\": \"get_time\""), std::string::npos);
}

TEST(Tools, PastCallsAreWrittenAsTheModelWritesThem) {
  const std::vector<ToolCall> calls = {{"", "get_weather", R"({"city": "San Francisco", "days": 2, "x": true,
                                        "y": null, "z": [1, "a", false]})"},
                                       {"", "get_time", "{}"}};
  auto l4 = RenderToolCalls(ChatFormat::kLlama4, calls);
  ASSERT_TRUE(l4.ok());
  EXPECT_EQ(*l4, R"([get_weather(city="San Francisco", days=2, x=True, y=None, z=[1, "a", False]), get_time()])");
  auto l3 = RenderToolCalls(ChatFormat::kLlama3, calls);
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(*l3, R"({"name":"get_weather","parameters":{"city":"San Francisco","days":2,"x":true,"y":null,)"
                 R"("z":[1,"a",false]}}; {"name":"get_time","parameters":{}})");
  EXPECT_FALSE(RenderToolCalls(ChatFormat::kLlama4, std::vector<ToolCall>{{"", "f", "[1]"}}).ok());
  // What is written reads back.
  for (const auto& text : {*l4, *l3}) {
    auto parsed = ParseToolCalls(text, Tools());
    ASSERT_TRUE(parsed.is_call && parsed.error.empty()) << text << ": " << parsed.error;
    ASSERT_EQ(parsed.calls.size(), 2u);
    EXPECT_EQ(parsed.calls[0].name, "get_weather");
    EXPECT_EQ(nlohmann::json::parse(parsed.calls[0].arguments),
              nlohmann::json::parse(R"({"city": "San Francisco", "days": 2, "x": true, "y": null,
                                        "z": [1, "a", false]})"));
    EXPECT_EQ(parsed.calls[1].arguments, "{}");
  }
}

TEST(Tools, RepliesAreReadInEveryForm) {
  struct Case {
    const char* text;
    bool is_call;
    const char* error;  // part of it, "" when the calls read
    size_t calls;
  };
  const Case cases[] = {
      {"The weather is fine.", false, "", 0},
      {"  [get_weather(city='Paris', metric=\"celsius\")]  ", true, "", 1},
      {"[get_weather(city=\"Paris\"), get_time(zone=\"UTC\")]", true, "", 2},
      {"[get_time()]", true, "", 1},
      {"{\"name\": \"get_time\", \"parameters\": {\"zone\": \"CET\"}}", true, "", 1},
      {"{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": \\\"CET\\\"}\"}", true, "", 1},
      {"[{\"name\": \"get_time\", \"parameters\": {}}, {\"name\": \"get_weather\", \"parameters\": {\"city\": \"x\"}}]",
       true, "", 2},
      {"<function=get_time>{\"zone\": \"UTC\"}</function>", true, "", 1},
      {"{\"answer\": 42}", false, "", 0},  // JSON, not a call
      {"[1, 2, 3]", false, "", 0},         // a list, not calls
      {"[get_weather(city=\"Paris\"", true, "expected", 0},
      {"[get_weather(\"Paris\")]", true, "name=value", 0},
      {"[send_mail(to=\"x\")]", true, "not one of the request's tools", 0},
      {"[get_time()] and some text", true, "text after", 0},
      {"<function=get_time>{\"zone\": }</function>", true, "not a JSON object", 0},
      {"[]", false, "", 0},
  };
  for (const auto& c : cases) {
    auto p = ParseToolCalls(c.text, Tools());
    EXPECT_EQ(p.is_call, c.is_call) << c.text;
    if (std::string(c.error).empty()) {
      EXPECT_TRUE(p.error.empty()) << c.text << ": " << p.error;
      EXPECT_EQ(p.calls.size(), c.calls) << c.text;
    } else {
      EXPECT_NE(p.error.find(c.error), std::string::npos) << c.text << ": " << p.error;
    }
  }
  EXPECT_TRUE(MayBeToolCall(""));
  EXPECT_TRUE(MayBeToolCall(" ["));
  EXPECT_TRUE(MayBeToolCall("<func"));
  EXPECT_FALSE(MayBeToolCall("The"));
}

// Arguments nested deeper than any real call (a client's past call, or a model's reply) are refused with a message:
// parsed, their dump() or Python rendering would recurse once per level and overflow the stack (issue 18: one such
// request took a server down).
TEST(Tools, DeeplyNestedArgumentsAreRefusedNotWalked) {
  const size_t levels = size_t{1} << 20;
  const std::string deep = std::string(levels, '[') + std::string(levels, ']');
  for (ChatFormat format : {ChatFormat::kLlama4, ChatFormat::kLlama3}) {
    auto r = RenderToolCalls(format, std::vector<ToolCall>{{"", "get_time", "{\"zone\": " + deep + "}"}});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("nest deeper than 256 levels"), std::string::npos) << r.status().ToString();
  }
  const std::string replies[] = {
      "{\"name\": \"get_time\", \"parameters\": {\"zone\": " + deep + "}}",
      "[{\"name\": \"get_time\", \"parameters\": {\"zone\": " + deep + "}}]",
      "{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": " + deep + "}\"}",
      "<function=get_time>{\"zone\": " + deep + "}</function>",
  };
  for (const std::string& text : replies) {
    const ParsedReply p = ParseToolCalls(text, Tools());
    EXPECT_TRUE(p.is_call) << text.substr(0, 40);
    EXPECT_FALSE(p.error.empty()) << text.substr(0, 40);
    EXPECT_TRUE(p.calls.empty()) << text.substr(0, 40);
  }
  // Within the bound, nesting reads and renders as before.
  const std::string fine = std::string(200, '[') + std::string(200, ']');
  EXPECT_TRUE(
      RenderToolCalls(ChatFormat::kLlama4, std::vector<ToolCall>{{"", "get_time", "{\"zone\": " + fine + "}"}}).ok());
  const ParsedReply ok = ParseToolCalls("{\"name\": \"get_time\", \"parameters\": {\"zone\": " + fine + "}}", Tools());
  EXPECT_TRUE(ok.is_call && ok.error.empty()) << ok.error;
}

// The schema of required calls compiles, and its sentences read back as calls of the named functions only.
TEST(Tools, RequiredCallsSchemaCompilesAndReadsBack) {
  for (bool parallel : {false, true}) {
    for (std::optional<std::string> only : {std::optional<std::string>(), std::optional<std::string>("get_time")}) {
      const auto schema = ToolCallSchema(Tools(), only, parallel);
      auto gbnf = grammar::JsonSchemaToGbnf(schema.dump());
      ASSERT_TRUE(gbnf.ok()) << gbnf.status().ToString();
      auto g = grammar::ParseGbnf(*gbnf);
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      const std::string one = R"({"name": "get_time", "parameters": {"zone": "UTC"}})";
      const std::string text = parallel ? "[" + one + "]" : one;
      grammar::ByteMatcher m(*g);
      EXPECT_TRUE(m.Accept(text) && m.CanEnd()) << text << "\n" << *gbnf;
      auto p = ParseToolCalls(text, Tools());
      EXPECT_TRUE(p.is_call && p.error.empty() && p.calls.size() == 1);
      grammar::ByteMatcher w(*g);
      const bool weather = w.Accept(R"({"name": "get_weather", "parameters": {"city": "x"}})") && w.CanEnd();
      EXPECT_EQ(weather, !parallel && !only.has_value());
    }
  }
}

}  // namespace
}  // namespace herd::runtime
