// For fuzz targets that write their seeds when they start: the first corpus directory on libFuzzer's command line
// (the writable scratch one, as the fuzz tests pass it), given to `write` in LLVMFuzzerInitialize.
#pragma once

#include <filesystem>
#include <string>
#include <system_error>

template <typename Write>
void WriteSeedsToFirstCorpusDir(int argc, char** argv, Write&& write) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (a[0] == '-') continue;
    std::error_code ec;
    if (std::filesystem::is_directory(a, ec)) write(std::string(a));
    return;
  }
}
