// herd command-line entry point: parses the command and hands off to src/cli/commands.
#include "cli/commands.h"

int main(int argc, char** argv) { return herd::cli::Main(argc, argv); }
