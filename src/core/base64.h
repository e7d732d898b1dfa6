// Base64 (RFC 4648's standard alphabet), as tiktoken rank files and data: URLs carry bytes.
#pragma once

#include <string>
#include <string_view>

namespace herd {

// Decodes `in` into *out: the standard alphabet with '=' padding to a multiple of 4 characters, no whitespace (what
// Python's base64.b64decode accepts with validate=True). Returns false, *out unspecified, for anything else,
// including empty input.
bool DecodeBase64(std::string_view in, std::string* out);

// `in` in the standard alphabet with '=' padding (DecodeBase64's input).
std::string EncodeBase64(std::string_view in);

}  // namespace herd
