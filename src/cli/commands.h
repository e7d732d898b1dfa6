// The herd command line: run, logits, tokenize, info, bench. Exit codes: 0 ok, 1 usage error, 2 bad model or
// input file (docs/style.md section 5).
#pragma once

namespace herd::cli {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitBadInput = 2;
constexpr int kExitOutput = 3;
constexpr int kExitResources = 4;

int Main(int argc, char** argv);

}  // namespace herd::cli
