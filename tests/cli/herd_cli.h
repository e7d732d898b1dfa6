// How the CLI tests run the herd binary (HERD_BINARY, a compile definition of each tests/cli target).
#pragma once

#include <string>
#include <vector>

#include "test_util.h"

namespace herd::testing {

using Outcome = CommandOutcome;

// `herd args...` with stdin from `stdin_path`, stdout captured (or to `stdout_path`, "-" for closed).
inline Outcome Herd(std::vector<std::string> args, const std::string& stdin_path = "/dev/null",
                    const std::string& stdout_path = "") {
  args.insert(args.begin(), HERD_BINARY);
  return RunCommand(args, stdin_path, stdout_path);
}

// `herd ARGS` with ARGS one shell-quoted string ("run -m 'a b.gguf' -p hi").
inline Outcome HerdShell(const std::string& args, const std::string& stdin_path = "/dev/null") {
  return RunCommand({"/bin/sh", "-c", ShellQuote(HERD_BINARY) + " " + args}, stdin_path);
}

}  // namespace herd::testing
