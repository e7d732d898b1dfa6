// libFuzzer target: the GGUF reader (header, metadata of every type, tensor table, views), the metadata that
// becomes a model config (every size range-checked before anything is sized from it, model/config.h), and the
// llama2.c checkpoint parser, on arbitrary bytes. Any crash, leak, hang or sanitizer report is a bug, and so is a
// file that parses with two tensors sharing bytes (issue 18: the reader must refuse overlaps).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "formats/gguf.h"
#include "formats/gguf_metadata.h"
#include "formats/llama2c.h"
#include "model/config.h"

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
    // A parsed file never has overlapping tensors.
    const auto& ts = g.tensor_infos();
    for (size_t i = 0; i < ts.size(); ++i) {
      for (size_t j = i + 1; j < ts.size() && j < i + 64; ++j) {
        const uint64_t a0 = ts[i].offset, a1 = a0 + static_cast<uint64_t>(ts[i].size_bytes);
        const uint64_t b0 = ts[j].offset, b1 = b0 + static_cast<uint64_t>(ts[j].size_bytes);
        if (a1 > a0 && b1 > b0 && a0 < b1 && b0 < a1) std::abort();
      }
    }
    auto w = g.Weights();
    if (w.ok()) {
      // Touch the first and last byte of every view: they must lie inside the buffer.
      volatile uint8_t sink = 0;
      for (const auto& [name, view] : w->tensors()) {
        if (view.size_bytes > 0) sink = sink + view.data[0] + view.data[view.size_bytes - 1];
      }
    }
    // Sizes from the file become a config only within their limits: a config that passes is small enough to
    // build its per-layer table, and one that fails must fail without allocating from the sizes.
    auto md = MetadataFromGguf(g);
    if (md.ok()) {
      auto c = herd::model::ConfigFromMetadata(*md);
      if (c.ok() && (c->layers.size() > 512 || c->vocab_size > (int64_t{1} << 24))) std::abort();
    }
  }
  auto l = ParseLlama2c(data, size, "fuzz.bin");
  if (l.ok()) {
    volatile uint8_t sink = 0;
    for (const auto& [name, view] : l->weights.tensors()) {
      if (view.size_bytes > 0) sink = sink + view.data[view.size_bytes - 1];
    }
    auto c = herd::model::ConfigFromMetadata(MetadataFromLlama2c(l->header, "fuzz.bin"));
    if (c.ok() && c->layers.size() > 512) std::abort();
  }
  return 0;
}
