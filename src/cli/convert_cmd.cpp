// herd convert: a Hugging Face directory to a GGUF file llama.cpp and herd load (tools/convert.h), with a
// progress bar.
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/common.h"
#include "formats/gguf.h"
#include "tools/convert.h"

namespace herd::cli {
namespace {

struct ConvertCliOptions {
  std::string input;
  std::string output;
  std::string type;  // empty: keep the source dtype
  std::string name;
  bool quiet = false;
};

Status CmdConvert(const ConvertCliOptions& o) {
  tools::ConvertOptions co;
  co.input = o.input;
  co.output = o.output;
  co.name = o.name;
  co.show_progress = !o.quiet;
  if (!o.type.empty()) {
    HERD_ASSIGN_OR_RETURN(co.type, tools::ParseConvertType(o.type));
  }
  HERD_RETURN_IF_ERROR(tools::ConvertToGguf(co));
  auto g = formats::GgufFile::Open(o.output);
  if (!g.ok()) return Internal(g.status().WithContext("reading back the converted file").message());
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(o.output, ec);
  std::fprintf(stderr, "herd: wrote %s (%s, %zu tensors, %.2f MiB%s)\n", o.output.c_str(),
               std::string(*(*g)->GetString("general.architecture")).c_str(), (*g)->tensor_infos().size(),
               static_cast<double>(bytes) / (1 << 20),
               (*g)->Find("tokenizer.ggml.model") != nullptr ? ", with vocabulary" : ", no vocabulary");
  return Status::Ok();
}

}  // namespace

Command AddConvertCommand(CLI::App& app) {
  auto o = std::make_shared<ConvertCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "convert", "convert a Hugging Face directory (config.json + safetensors [+ tokenizer.model]) to GGUF");
  cmd->add_option("input", o->input, "HF model directory")->required();
  cmd->add_option("-o,--output", o->output, "GGUF file to write")->required();
  cmd->add_option(
      "--type", o->type,
      "type of the weight matrices: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k (default: keep the source dtype; "
      "norms and the router stay f32)");
  cmd->add_option("--name", o->name, "general.name (default: the directory name)");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress bar");
  return Command{cmd, [o] { return CmdConvert(*o); }};
}

}  // namespace herd::cli
