// libFuzzer target: the safetensors reader (length prefix, JSON header, dtype/shape/offset checks, views) on
// arbitrary bytes. Any crash, leak, hang or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>

#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd::formats;
  auto f = SafetensorsFile::Parse(data, size, "fuzz.safetensors");
  if (!f.ok()) return 0;
  volatile uint8_t sink = 0;
  for (const SafetensorsTensor& t : (*f)->tensors()) {
    auto v = (*f)->View(t);
    if (v.ok() && v->size_bytes > 0) sink = sink + v->data[0] + v->data[v->size_bytes - 1];
  }
  return 0;
}
