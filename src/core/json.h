// JSON text from outside herd (model files, requests, a model's own output) parsed with a bound on its nesting.
// nlohmann's parser is iterative, but dump(), printing a value as a Python literal and any other walk over the
// parsed tree recurse once per level: `[[[[...` a few hundred thousand levels deep overflows the stack of whatever
// walks it. So every such text is scanned first (one pass, no allocation) and refused when it nests deeper than a
// bound that no real file or call comes near.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

namespace herd {

// The bound for files and generated text: config.json nests 3 levels, a safetensors header 3, a tool call's
// arguments as deep as the function's schema. A walk this deep stays within a few hundred KiB of stack.
inline constexpr int kMaxJsonNesting = 256;

// Whether `text` opens more than `limit` arrays and objects at once, counting '[' and '{' outside strings (escapes
// in strings honoured). Exact for valid JSON; for other text it bounds what any parse of it could nest.
bool JsonNestsDeeperThan(std::string_view text, int limit);

// nlohmann's parse of `text` without exceptions: a discarded value for invalid JSON, and for JSON nested deeper than
// `limit` without parsing it (*too_deep, when given, says which).
template <typename Json = nlohmann::json>
Json ParseJsonBounded(std::string_view text, int limit = kMaxJsonNesting, bool* too_deep = nullptr) {
  const bool deep = JsonNestsDeeperThan(text, limit);
  if (too_deep != nullptr) *too_deep = deep;
  if (deep) return Json(Json::value_t::discarded);
  return Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

}  // namespace herd
