// Command dispatch (placeholder-free: commands are added as their layers land).
#include "cli/commands.h"

#include <CLI/CLI.hpp>

namespace herd::cli {

int Main(int argc, char** argv) {
  CLI::App app{"herd: inference engine for the Llama 4 herd and dense Llama models"};
  app.require_subcommand(1);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  return kExitOk;
}

}  // namespace herd::cli
