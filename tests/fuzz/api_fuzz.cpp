// libFuzzer target for the server's request parsing (src/server/api.h): the input is an HTTP request body for
// /v1/chat/completions and /v1/completions, parsed as JSON (with its nesting bound) and validated against the
// Llama 4 tokenizer and chat template, image_url parts included (data: URLs decoded as PNG/JPEG). Properties: no
// crash, leak or UB; every refusal is an ApiError with a message and an HTTP status of 400 or 404; an accepted
// request has a non-empty prompt of in-vocabulary ids that fits the context, with exactly the <|patch|> positions
// its decoded images need.
//
// The tokenizer comes from $HERD_SHARED (default ../shared relative to the working directory).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "runtime/chat.h"
#include "server/api.h"
#include "tokenizer/tokenizer.h"

namespace {

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "api_fuzz: FATAL: %s\n", msg.c_str());
  std::abort();
}

const herd::server::ModelInfo& Model() {
  static const herd::server::ModelInfo* info = [] {
    const char* env = std::getenv("HERD_SHARED");
    const std::string shared = env != nullptr ? env : "../shared";
    auto tok = herd::tokenizer::LoadTokenizer(shared + "/models/llama4-tokenizer/tokenizer.model");
    if (!tok.ok()) Die(tok.status().ToString());
    auto* m = new herd::server::ModelInfo();
    m->id = "herd-fuzz";
    m->vocab_size = (*tok)->vocab_size();
    m->n_ctx = 512;
    m->tokenizer = tok->release();
    auto format = herd::runtime::DetectChatFormat(*m->tokenizer);
    if (format.ok()) {
      m->chat_format = *format;
      m->chat_stop_ids = herd::runtime::ChatStopIds(*m->tokenizer, *format);
    }
    // Image parts are decoded and laid out as for Llama 4 (336-pixel tiles, 144 patches each); small images only,
    // so that the fuzzer spends its time on the parsing.
    herd::server::ImageInput images;
    images.tile_size = 336;
    images.patches_per_tile = 144;
    auto id = [&](const char* t) {
      auto v = m->tokenizer->TokenId(t);
      if (!v) Die(std::string("the tokenizer lacks ") + t);
      return *v;
    };
    images.ids = {id("<|image_start|>"),      id("<|image|>"),    id("<|patch|>"), id("<|tile_x_separator|>"),
                  id("<|tile_y_separator|>"), id("<|image_end|>")};
    images.max_tiles = 4;
    images.limits.max_pixels = 1 << 16;
    m->images = images;
    return m;
  }();
  return *info;
}

void CheckError(const herd::server::ApiError& e) {
  if (e.message.empty()) Die("an error without a message");
  if (e.http_status != 400 && e.http_status != 404) Die("unexpected HTTP status " + std::to_string(e.http_status));
  (void)e.ToJson().dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const herd::server::ModelInfo& model = Model();
  nlohmann::json body;
  if (auto err = herd::server::ParseJsonBody(std::string_view(reinterpret_cast<const char*>(data), size), &body)) {
    CheckError(*err);
    return 0;
  }
  for (auto kind : {herd::server::ApiKind::kChatCompletion, herd::server::ApiKind::kCompletion}) {
    herd::server::ApiRequest req;
    if (auto err = herd::server::ParseGenerateRequest(body, model, kind, &req)) {
      CheckError(*err);
      continue;
    }
    const auto& p = req.serving.prompt;
    if (p.empty()) Die("an accepted request with an empty prompt");
    if (static_cast<int64_t>(p.size()) >= model.n_ctx) Die("an accepted prompt that does not fit the context");
    for (int32_t id : p) {
      if (id < 0 || id >= model.vocab_size) Die("an accepted token id outside the vocabulary");
    }
    const int32_t patch = model.images->ids.patch;
    int64_t patches = 0, want = 0;
    for (int32_t id : p) patches += id == patch;
    for (const auto& image : req.images) {
      if (image.width < 1 || image.height < 1) Die("an accepted image without pixels");
      const auto grid = herd::vision::BestCanvas(image.width, image.height, 336, 4);
      want += (grid.rows * grid.cols + (grid.rows * grid.cols > 1 ? 1 : 0)) * 144;
    }
    if (patches != want) Die("the prompt lacks the <|patch|> positions of its images");
  }
  return 0;
}
