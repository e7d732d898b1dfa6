// Tool calling in the Llama formats (llama4.md section 8.3; Meta's models/llama4/prompt_format.md): the prompt that
// describes the functions, past calls written back as the model writes them, the parsing of a reply into calls, and
// the schema that constrains a reply to calls when the client requires one.
//
// Llama 4 writes calls as a Python-like list, `[get_weather(city="Paris", days=3), other(x=1)]`, ended by <|eot|>
// (Meta's zero-shot format); it also understands the JSON form `{"name": ..., "parameters": {...}}` that Hugging
// Face's template uses for past calls, and Meta's decoder accepts `<function=NAME>{...}</function>`. Llama 3.x uses
// the JSON form. The parser accepts all three in either format.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/chat.h"

namespace herd::runtime {

struct ToolFunction {
  std::string name;
  std::string description;
  nlohmann::ordered_json parameters = nlohmann::ordered_json::object();  // a JSON Schema of the arguments object
};

struct ToolCall {
  std::string id;  // "call_..." (the server's; empty in parsed calls until it names them)
  std::string name;
  std::string arguments;  // a JSON object, compact
};

// A request's parameters schema as the tools use it: Meta's examples say "type": "dict" where JSON Schema says
// "object".
nlohmann::ordered_json ToolParameters(const nlohmann::json& parameters);

// What the prompt says about the tools. Llama 4: Meta's zero-shot function-calling system prompt with the functions
// as a JSON list (indent 4), to which the request's own system text is appended after a blank line. Llama 3: the JSON
// tool prompt of the Llama 3.1 format, which goes before the first user message's text.
std::string ToolPrompt(ChatFormat format, std::span<const ToolFunction> tools);

// An assistant turn's calls as the model writes them: Llama 4 the pythonic list, Llama 3 one JSON object per call
// (separated by "; " as Llama 3.1's format does for several). InvalidArgument when arguments are not a JSON object.
Result<std::string> RenderToolCalls(ChatFormat format, std::span<const ToolCall> calls);

// A reply read as tool calls: not a call (plain text), calls, or something that starts as a call and cannot be read
// (error says why: a syntax error, an unknown function, arguments that are not an object).
struct ParsedReply {
  bool is_call = false;
  std::vector<ToolCall> calls;
  std::string error;  // set when is_call and the calls could not be read
};
ParsedReply ParseToolCalls(std::string_view text, std::span<const ToolFunction> tools);

// Whether `text` (a reply so far) may still become a call: it is empty or blank, or starts like one ("[", "{",
// "<function="). A streaming server holds such text back until it knows.
bool MayBeToolCall(std::string_view text);

// The JSON Schema of replies that are calls, in the JSON form: one call object {"name": NAME, "parameters": ARGS}
// per function (or only `only`), or with `parallel` a list of one or more of them. Used with a grammar when the
// client requires a call (tool_choice "required" or a named function).
nlohmann::ordered_json ToolCallSchema(std::span<const ToolFunction> tools, const std::optional<std::string>& only,
                                      bool parallel);

}  // namespace herd::runtime
