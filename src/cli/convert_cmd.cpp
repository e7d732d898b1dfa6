// herd convert: a Hugging Face directory to a GGUF file llama.cpp and herd load (tools/convert.h), with a
// progress bar.
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/common.h"
#include "formats/gguf.h"
#include "formats/vision_files.h"
#include "model/vision.h"
#include "tools/convert.h"

namespace herd::cli {
namespace {

struct ConvertCliOptions {
  std::string input;
  std::string output;
  std::string type;  // empty: keep the source dtype
  std::string name;
  std::string mmproj_out;  // the vision tower's projector GGUF, when the directory has one
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
  if (o.mmproj_out.empty()) return Status::Ok();
  // The vision tower in llama.cpp's separate projector file, its tensors in their stored dtypes (--type applies to
  // the text model), checked by binding it before anything is written.
  HERD_ASSIGN_OR_RETURN(formats::VisionFiles vf, formats::OpenVisionFiles(o.input, !o.quiet));
  HERD_ASSIGN_OR_RETURN(auto tower, model::LoadVisionTower(vf.metadata, vf.weights));
  std::vector<std::string> inputs = vf.sources;
  inputs.push_back(o.output);
  HERD_RETURN_IF_ERROR(
      formats::WriteMmproj(model::MetadataFromVisionConfig(tower->config()), tower->weights(), o.mmproj_out, inputs));
  std::fprintf(stderr, "herd: wrote %s (the vision tower: %zu tensors, %.2f MiB)\n", o.mmproj_out.c_str(),
               tower->weights().size(), static_cast<double>(tower->WeightBytes()) / (1 << 20));
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
  cmd->add_option("--mmproj-out", o->mmproj_out,
                  "also write the vision tower (Llama4ForConditionalGeneration) as llama.cpp's projector GGUF");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress bar");
  return Command{cmd, [o] { return CmdConvert(*o); }};
}

}  // namespace herd::cli
