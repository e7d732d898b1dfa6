#include "runtime/tools.h"

#include <cctype>

#include "core/json.h"

namespace herd::runtime {
namespace {

// Meta's zero-shot function-calling system prompt for Llama 4 (models/llama4/prompt_format.md, "Zero shot function
// calling - system message"): the model was trained on this text; the function list goes where the JSON stands.
constexpr std::string_view kLlama4ToolsHead =
    "You are a helpful assistant and an expert in function composition. You can answer general questions using "
    "your internal knowledge OR invoke functions when necessary. Follow these strict guidelines:\n\n"
    "1. FUNCTION CALLS:\n"
    "- ONLY use functions that are EXPLICITLY listed in the function list below\n"
    "- If NO functions are listed (empty function list []), respond ONLY with internal knowledge or \"I don't have "
    "access to [Unavailable service] information\"\n"
    "- If a function is not in the list, respond ONLY with internal knowledge or \"I don't have access to "
    "[Unavailable service] information\"\n"
    "- If ALL required parameters are present AND the query EXACTLY matches a listed function's purpose: output ONLY "
    "the function call(s)\n"
    "- Use exact format: [func_name1(param1=value1, param2=value2), func_name2(...)]\n"
    "Examples:\n"
    "CORRECT: [get_weather(location=\"Vancouver\"), calculate_route(start=\"Boston\", end=\"New York\")] <- Only if "
    "get_weather and calculate_route are in function list\n"
    "INCORRECT: get_weather(location=\"New York\")\n"
    "INCORRECT: Let me check the weather: [get_weather(location=\"New York\")]\n"
    "INCORRECT: [get_events(location=\"Singapore\")] <- If function not in list\n\n"
    "2. RESPONSE RULES:\n"
    "- For pure function requests matching a listed function: ONLY output the function call(s)\n"
    "- For knowledge questions: ONLY output text\n"
    "- For missing parameters: ONLY request the specific missing parameters\n"
    "- For unavailable services (not in function list): output ONLY with internal knowledge or \"I don't have "
    "access to [Unavailable service] information\". Do NOT execute a function call.\n"
    "- If the query asks for information beyond what a listed function provides: output ONLY with internal "
    "knowledge about your limitations\n"
    "- NEVER combine text and function calls in the same response\n"
    "- NEVER suggest alternative functions when the requested service is unavailable\n"
    "- NEVER create or invent new functions not listed below\n\n"
    "3. STRICT BOUNDARIES:\n"
    "- ONLY use functions from the list below - no exceptions\n"
    "- NEVER use a function as an alternative to unavailable information\n"
    "- NEVER call functions not present in the function list\n"
    "- NEVER add explanatory text to function calls\n"
    "- NEVER respond with empty brackets\n"
    "- Use proper Python/JSON syntax for function calls\n"
    "- Check the function list carefully before responding\n\n"
    "4. TOOL RESPONSE HANDLING:\n"
    "- When receiving tool responses: provide concise, natural language responses\n"
    "- Don't repeat tool response verbatim\n"
    "- Don't add supplementary information\n\n\n"
    "Here is a list of functions in JSON format that you can invoke.\n\n";
constexpr std::string_view kLlama4ToolsTail =
    "\n\nYou can answer general questions or invoke tools when necessary.\n"
    "In addition to tool calls, you should also augment your responses by using the tool outputs.";

// The Llama 3.1 JSON tool prompt (Hugging Face's template, tools in the first user message).
constexpr std::string_view kLlama3ToolsHead =
    "Given the following functions, please respond with a JSON for a function call with its proper arguments that "
    "best answers the given prompt.\n\n"
    "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}."
    "Do not use variables.\n\n";

nlohmann::ordered_json FunctionJson(const ToolFunction& f) {
  nlohmann::ordered_json j;
  j["name"] = f.name;
  j["description"] = f.description;
  j["parameters"] = f.parameters;
  return j;
}

// A JSON value written as a Python literal (True/False/None; strings and numbers as in JSON, which Python reads).
void PythonLiteral(const nlohmann::ordered_json& v, std::string* out) {
  if (v.is_boolean()) {
    *out += v.get<bool>() ? "True" : "False";
  } else if (v.is_null()) {
    *out += "None";
  } else if (v.is_array()) {
    *out += "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i > 0) *out += ", ";
      PythonLiteral(v[i], out);
    }
    *out += "]";
  } else if (v.is_object()) {
    *out += "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) *out += ", ";
      first = false;
      *out += nlohmann::ordered_json(it.key()).dump() + ": ";
      PythonLiteral(it.value(), out);
    }
    *out += "}";
  } else {
    *out += v.dump();
  }
}

// A reader of Python call lists and literals.
class PyReader {
 public:
  explicit PyReader(std::string_view s) : s_(s) {}
  bool Done() {
    Space();
    return i_ >= s_.size();
  }
  bool Eat(char c) {
    Space();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Ident(std::string* out) {
    Space();
    const size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' ||
                              (i_ > start && (s_[i_] == '.' || s_[i_] == '-')))) {
      ++i_;
    }
    if (i_ == start || std::isdigit(static_cast<unsigned char>(s_[start]))) return false;
    *out = std::string(s_.substr(start, i_ - start));
    return true;
  }
  // One literal: a string, number, True/False/None (or JSON's true/false/null), list, tuple or dict.
  bool Value(nlohmann::ordered_json* out, int depth = 0) {
    if (depth > 64) return false;
    Space();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '"' || c == '\'') return String(out);
    if (c == '[' || c == '(') {
      const char close = c == '[' ? ']' : ')';
      ++i_;
      *out = nlohmann::ordered_json::array();
      if (Eat(close)) return true;
      while (true) {
        nlohmann::ordered_json v;
        if (!Value(&v, depth + 1)) return false;
        out->push_back(std::move(v));
        if (Eat(close)) return true;
        if (!Eat(',')) return false;
        if (Eat(close)) return true;  // a trailing comma
      }
    }
    if (c == '{') {
      ++i_;
      *out = nlohmann::ordered_json::object();
      if (Eat('}')) return true;
      while (true) {
        nlohmann::ordered_json key, v;
        Space();
        if (!String(&key) || !Eat(':') || !Value(&v, depth + 1)) return false;
        (*out)[key.get<std::string>()] = std::move(v);
        if (Eat('}')) return true;
        if (!Eat(',')) return false;
        if (Eat('}')) return true;
      }
    }
    std::string word;
    const size_t start = i_;
    while (i_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == '-' || s_[i_] == '+')) {
      ++i_;
    }
    word = std::string(s_.substr(start, i_ - start));
    if (word == "True" || word == "true") {
      *out = true;
    } else if (word == "False" || word == "false") {
      *out = false;
    } else if (word == "None" || word == "null") {
      *out = nullptr;
    } else {
      auto num = nlohmann::ordered_json::parse(word, nullptr, /*allow_exceptions=*/false);
      if (num.is_discarded() || !num.is_number()) return false;
      *out = std::move(num);
    }
    return true;
  }
  size_t pos() const { return i_; }

 private:
  void Space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool String(nlohmann::ordered_json* out) {
    if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) return false;
    const char q = s_[i_++];
    std::string v;
    while (i_ < s_.size() && s_[i_] != q) {
      char c = s_[i_++];
      if (c == '\\' && i_ < s_.size()) {
        const char e = s_[i_++];
        switch (e) {
          case 'n':
            c = '\n';
            break;
          case 't':
            c = '\t';
            break;
          case 'r':
            c = '\r';
            break;
          case 'b':
            c = '\b';
            break;
          case 'f':
            c = '\f';
            break;
          case 'u': {
            // \uXXXX (JSON's and Python's): decode through a JSON parse of the escape.
            if (i_ + 4 > s_.size()) return false;
            auto ch = nlohmann::ordered_json::parse("\"\\u" + std::string(s_.substr(i_, 4)) + "\"", nullptr, false);
            if (ch.is_discarded()) return false;
            v += ch.get<std::string>();
            i_ += 4;
            continue;
          }
          default:
            c = e;  // \\ \" \' \/
        }
      }
      v.push_back(c);
    }
    if (i_ >= s_.size()) return false;
    ++i_;
    *out = v;
    return true;
  }
  std::string_view s_;
  size_t i_ = 0;
};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool Known(std::span<const ToolFunction> tools, const std::string& name) {
  for (const auto& t : tools) {
    if (t.name == name) return true;
  }
  return false;
}

// A call object of the JSON form: {"name": ..., "parameters" | "arguments": {...}} (arguments may be a JSON string).
bool JsonCall(const nlohmann::ordered_json& j, ToolCall* call, std::string* error) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    *error = "a call must be an object with a \"name\"";
    return false;
  }
  call->name = j["name"].get<std::string>();
  nlohmann::ordered_json args = nlohmann::ordered_json::object();
  for (const char* key : {"parameters", "arguments"}) {
    if (j.contains(key)) args = j[key];
  }
  if (args.is_string()) args = ParseJsonBounded<nlohmann::ordered_json>(args.get<std::string>());
  if (!args.is_object()) {
    *error = "the arguments of " + call->name + " are not an object";
    return false;
  }
  call->arguments = args.dump();
  return true;
}

ParsedReply Malformed(std::string error) {
  ParsedReply r;
  r.is_call = true;
  r.error = std::move(error);
  return r;
}

}  // namespace

nlohmann::ordered_json ToolParameters(const nlohmann::json& parameters) {
  nlohmann::ordered_json p = nlohmann::ordered_json::parse(parameters.dump());
  if (p.is_object() && p.contains("type") && p["type"] == "dict") p["type"] = "object";
  return p;
}

std::string ToolPrompt(ChatFormat format, std::span<const ToolFunction> tools) {
  if (format == ChatFormat::kLlama4) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& t : tools) list.push_back(FunctionJson(t));
    return std::string(kLlama4ToolsHead) + list.dump(4) + std::string(kLlama4ToolsTail);
  }
  std::string out(kLlama3ToolsHead);
  for (const auto& t : tools) out += FunctionJson(t).dump(4) + "\n\n";
  return out;
}

Result<std::string> RenderToolCalls(ChatFormat format, std::span<const ToolCall> calls) {
  std::string out;
  if (format == ChatFormat::kLlama4) out += "[";
  for (size_t i = 0; i < calls.size(); ++i) {
    bool too_deep = false;
    auto args = ParseJsonBounded<nlohmann::ordered_json>(calls[i].arguments.empty() ? "{}" : calls[i].arguments,
                                                         kMaxJsonNesting, &too_deep);
    if (too_deep) {
      return InvalidArgument("the arguments of tool call '" + calls[i].name + "' nest deeper than " +
                             std::to_string(kMaxJsonNesting) + " levels");
    }
    if (!args.is_object()) {
      return InvalidArgument("the arguments of tool call '" + calls[i].name + "' are not a JSON object");
    }
    if (format == ChatFormat::kLlama4) {
      if (i > 0) out += ", ";
      out += calls[i].name + "(";
      bool first = true;
      for (auto it = args.begin(); it != args.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        out += it.key() + "=";
        PythonLiteral(it.value(), &out);
      }
      out += ")";
    } else {
      if (i > 0) out += "; ";
      nlohmann::ordered_json j;
      j["name"] = calls[i].name;
      j["parameters"] = args;
      out += j.dump();
    }
  }
  if (format == ChatFormat::kLlama4) out += "]";
  return out;
}

bool MayBeToolCall(std::string_view text) {
  const std::string_view t = Trim(text);
  if (t.empty()) return true;
  if (t.front() == '[' || t.front() == '{') return true;
  constexpr std::string_view kFunction = "<function=";
  return kFunction.substr(0, std::min(kFunction.size(), t.size())) == t.substr(0, std::min(kFunction.size(), t.size()));
}

ParsedReply ParseToolCalls(std::string_view text, std::span<const ToolFunction> tools) {
  const std::string_view t = Trim(text);
  ParsedReply out;
  if (t.empty()) return out;
  std::string error;
  if (t.starts_with("<function=")) {
    // Meta's custom format: <function=NAME>{json}</function>, one or more.
    std::string_view rest = t;
    while (!rest.empty()) {
      if (!rest.starts_with("<function="))
        return Malformed("expected <function=NAME> at '" + std::string(rest.substr(0, 20)) + "'");
      const size_t gt = rest.find('>');
      const size_t end = rest.find("</function>");
      if (gt == std::string_view::npos || end == std::string_view::npos || end < gt) {
        return Malformed("a <function=...> call is not closed with </function>");
      }
      ToolCall call;
      call.name = std::string(rest.substr(10, gt - 10));
      auto args = ParseJsonBounded<nlohmann::ordered_json>(rest.substr(gt + 1, end - gt - 1));
      if (!args.is_object()) return Malformed("the arguments of " + call.name + " are not a JSON object");
      call.arguments = args.dump();
      out.calls.push_back(std::move(call));
      rest = Trim(rest.substr(end + 11));
    }
  } else if (t.front() == '{' || (t.front() == '[' && Trim(t.substr(1)).starts_with("{"))) {
    // The JSON form: one call object, a list of them, or several separated by ';'.
    auto j = ParseJsonBounded<nlohmann::ordered_json>(t);
    std::vector<nlohmann::ordered_json> items;
    if (j.is_discarded()) {
      size_t start = 0;
      while (start < t.size()) {
        size_t semi = t.find(';', start);
        if (semi == std::string_view::npos) semi = t.size();
        auto part = ParseJsonBounded<nlohmann::ordered_json>(Trim(t.substr(start, semi - start)));
        if (part.is_discarded()) {
          if (t.front() == '{' && t.find("\"name\"") == std::string_view::npos) return out;  // plain JSON text
          return Malformed("the call is not valid JSON");
        }
        items.push_back(std::move(part));
        start = semi + 1;
      }
    } else if (j.is_array()) {
      items.assign(j.begin(), j.end());
    } else {
      items.push_back(std::move(j));
    }
    for (const auto& item : items) {
      if (t.front() == '{' && !(item.is_object() && item.contains("name"))) return out;  // JSON, but not a call
      ToolCall call;
      if (!JsonCall(item, &call, &error)) return Malformed(error);
      out.calls.push_back(std::move(call));
    }
  } else if (t.front() == '[') {
    // The pythonic list: [f(a=1, b="x"), g()].
    PyReader r(t);
    r.Eat('[');
    std::string first;
    {
      PyReader probe(t.substr(1));
      std::string name;
      if (!probe.Ident(&name) || !probe.Eat('(')) return out;  // a list, not calls
    }
    while (true) {
      ToolCall call;
      if (!r.Ident(&call.name) || !r.Eat('('))
        return Malformed("expected a function call at byte " + std::to_string(r.pos()));
      nlohmann::ordered_json args = nlohmann::ordered_json::object();
      if (!r.Eat(')')) {
        while (true) {
          std::string key;
          nlohmann::ordered_json v;
          if (!r.Ident(&key) || !r.Eat('=') || !r.Value(&v)) {
            return Malformed("expected name=value arguments in the call of " + call.name + " at byte " +
                             std::to_string(r.pos()));
          }
          args[key] = std::move(v);
          if (r.Eat(')')) break;
          if (!r.Eat(',')) return Malformed("expected ',' or ')' in the call of " + call.name);
        }
      }
      call.arguments = args.dump();
      out.calls.push_back(std::move(call));
      if (r.Eat(']')) break;
      if (!r.Eat(',')) return Malformed("expected ',' or ']' after the call of " + out.calls.back().name);
    }
    if (!r.Done()) return Malformed("text after the call list");
  } else {
    return out;
  }
  out.is_call = true;
  if (out.calls.empty()) return Malformed("an empty call list");
  for (const auto& c : out.calls) {
    if (!Known(tools, c.name)) return Malformed("'" + c.name + "' is not one of the request's tools");
  }
  return out;
}

nlohmann::ordered_json ToolCallSchema(std::span<const ToolFunction> tools, const std::optional<std::string>& only,
                                      bool parallel) {
  nlohmann::ordered_json calls = nlohmann::ordered_json::array();
  for (const auto& t : tools) {
    if (only && t.name != *only) continue;
    nlohmann::ordered_json call;
    call["type"] = "object";
    call["properties"]["name"] = {{"const", t.name}};
    call["properties"]["parameters"] = t.parameters.empty() ? nlohmann::ordered_json::object() : t.parameters;
    call["required"] = {"name", "parameters"};
    call["additionalProperties"] = false;
    calls.push_back(std::move(call));
  }
  nlohmann::ordered_json one = calls.size() == 1 ? calls[0] : nlohmann::ordered_json{{"anyOf", calls}};
  if (!parallel) return one;
  return {{"type", "array"}, {"items", one}, {"minItems", 1}};
}

}  // namespace herd::runtime
