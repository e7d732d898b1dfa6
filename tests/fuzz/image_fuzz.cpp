// libFuzzer target: the whole image path on arbitrary bytes: DecodeImage (signature dispatch, libpng and libjpeg
// behind their error hooks, the pixel limit) and, when that succeeds, Preprocess with the tiny model's tiles (48,
// at most 4). Any crash, leak, hang, sanitizer report or output from the codecs is a bug.
#include <cstddef>
#include <cstdint>

#include "core/status.h"
#include "vision/image.h"
#include "vision/preprocess.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herd::vision;
  // 256 x 256 pixels: every code path is reachable, and each run stays fast.
  auto image = DecodeImage({data, size}, DecodeLimits{.max_pixels = 1 << 16});
  if (!image.ok()) return 0;
  auto p = Preprocess(*image, 48, 4);
  HERD_CHECK(p.ok());  // every decoded image can be preprocessed
  HERD_CHECK(static_cast<int64_t>(p->pixels.size()) == p->n_tiles * 3 * 48 * 48);
  volatile float sink = p->pixels.front() + p->pixels.back();
  (void)sink;
  return 0;
}
