// libFuzzer target: the GGUF reader (header, metadata of every type, tensor table, views) and the llama2.c
// checkpoint parser, on arbitrary bytes. Any crash, leak, hang or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>

#include "formats/gguf.h"
#include "formats/llama2c.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd::formats;
  auto f = GgufFile::Parse(data, size, "fuzz.gguf");
  if (f.ok()) {
    const GgufFile& g = **f;
    for (const auto& [key, value] : g.metadata()) {
      (void)GgufValueToString(value);
      (void)g.GetIntOpt(key);
      (void)g.GetFloatOpt(key);
      (void)g.GetStringOpt(key);
      (void)g.GetBoolOpt(key);
      (void)g.GetStringArray(key);
      (void)g.GetFloatArray(key);
      (void)g.GetIntArray(key);
    }
    auto w = g.Weights();
    if (w.ok()) {
      // Touch the first and last byte of every view: they must lie inside the buffer.
      volatile uint8_t sink = 0;
      for (const auto& [name, view] : w->tensors()) {
        if (view.size_bytes > 0) sink = sink + view.data[0] + view.data[view.size_bytes - 1];
      }
    }
  }
  auto l = ParseLlama2c(data, size, "fuzz.bin");
  if (l.ok()) {
    volatile uint8_t sink = 0;
    for (const auto& [name, view] : l->weights.tensors()) {
      if (view.size_bytes > 0) sink = sink + view.data[view.size_bytes - 1];
    }
  }
  return 0;
}
