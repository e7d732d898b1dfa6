// The GGUF keys herd convert and herd bench --save write (tools/gguf_model.h) read back as the same config, files
// that carry only llama.cpp's keys read as llama.cpp reads them, and settings llama.cpp cannot express are noted.
#include "tools/gguf_model.h"

#include <gtest/gtest.h>

#include "formats/gguf.h"
#include "formats/gguf_metadata.h"

namespace herd::tools {
namespace {

ModelMetadata Llama4(int64_t layers, int64_t experts) {
  ModelMetadata md("test");
  md.Set("model_type", "llama4");
  md.Set("name", "tiny");
  md.Set("hidden_size", int64_t{64});
  md.Set("num_hidden_layers", layers);
  md.Set("num_attention_heads", int64_t{4});
  md.Set("num_key_value_heads", int64_t{2});
  md.Set("intermediate_size", int64_t{32});
  md.Set("intermediate_size_mlp", int64_t{96});
  md.Set("num_local_experts", experts);
  md.Set("vocab_size", int64_t{300});
  md.Set("max_position_embeddings", int64_t{4096});
  md.Set("rms_norm_eps", 1e-5);
  md.Set("rope_theta", 500000.0);
  md.Set("use_qk_norm", experts != 128);
  return md;
}

model::ModelConfig Config(const ModelMetadata& md) {
  auto c = model::ConfigFromMetadata(md);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

// Writes `c` as a GGUF (metadata and rope_freqs only) and parses it back.
struct Written {
  std::vector<uint8_t> bytes;
  std::shared_ptr<const formats::GgufFile> file;
  std::vector<std::string> notes;
};
Written Write(const model::ModelConfig& c) {
  Written w;
  formats::GgufWriter writer;
  const Status s = AddModelToGguf(c, DType::kQ8_0, writer, [&](const std::string& n) { w.notes.push_back(n); });
  EXPECT_TRUE(s.ok()) << s.ToString();
  w.bytes = writer.Serialize().value();
  auto f = formats::GgufFile::Parse(w.bytes.data(), w.bytes.size(), "written.gguf");
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  w.file = *f;
  return w;
}

model::ModelConfig ReadBack(const formats::GgufFile& f) {
  auto md = formats::MetadataFromGguf(f);
  EXPECT_TRUE(md.ok()) << md.status().ToString();
  return Config(*md);
}

TEST(GgufModel, EveryTableReadsBackAsTheSameConfig) {
  std::vector<ModelMetadata> cases = {Llama4(8, 16), Llama4(6, 128), Llama4(5, 4)};
  cases[1].Set("interleave_moe_layer_step", int64_t{2});  // Maverick's interleave
  cases[2].Set("attention_chunk_size", ModelMetadata::Null{});
  cases[2].Set("no_rope_layers", ModelMetadata::IntList{1, 0, 0, 1, 1});
  cases[2].Set("moe_layers", ModelMetadata::IntList{0, 3});
  cases[2].Set("attn_temperature_tuning", false);
  cases[2].Set("floor_scale", 100.0);
  cases[2].Set("rope_scaling.rope_type", "llama3");
  cases[2].Set("rope_scaling.factor", 8.0);
  cases[2].Set("rope_scaling.low_freq_factor", 1.0);
  cases[2].Set("rope_scaling.high_freq_factor", 4.0);
  cases[2].Set("rope_scaling.original_max_position_embeddings", 8192.0);
  for (const ModelMetadata& md : cases) {
    const model::ModelConfig c = Config(md);
    const Written w = Write(c);
    const model::ModelConfig back = ReadBack(*w.file);
    model::ModelConfig unscaled = c;  // GGUF states llama3 scaling as rope_freqs.weight, not as keys
    unscaled.rope_scaling = {};
    EXPECT_EQ(back.Describe(), unscaled.Describe());
    EXPECT_EQ(back.name, "tiny");
    // llama3 scaling travels as rope_freqs divisors: the decoder's frequencies are the same bits.
    const bool scaled = c.rope_scaling.factor > 0;
    bool has_freqs = false;
    for (const auto& t : w.file->tensor_infos()) has_freqs |= t.name == "rope_freqs.weight";
    EXPECT_EQ(has_freqs, scaled);
    if (scaled) {
      auto weights = w.file->Weights();
      ASSERT_TRUE(weights.ok());
      const float* div = reinterpret_cast<const float*>(weights->Find("rope_freqs.weight")->data);
      EXPECT_EQ(model::RopeInvFreq(back, div), model::RopeInvFreq(c));
    }
  }
}

TEST(GgufModel, KeysSayWhatLlamaCppReads) {
  model::ModelConfig c = Config(Llama4(8, 16));
  Written w = Write(c);
  EXPECT_EQ(w.file->GetInt("llama4.interleave_moe_layer_step").value(), 1);
  EXPECT_EQ(w.file->GetInt("llama4.feed_forward_length").value(), 96);  // the dense width (pitfall 12)
  EXPECT_EQ(w.file->GetInt("llama4.expert_feed_forward_length").value(), 32);
  EXPECT_EQ(w.file->GetInt("herd.attention_chunk_size").value(), 8192);
  EXPECT_EQ(w.file->Find("llama4.attention.sliding_window"), nullptr);
  EXPECT_EQ(w.file->GetInt("general.file_type").value(), 7);  // Q8_0
  EXPECT_TRUE(w.notes.empty()) << w.notes[0];

  ModelMetadata unchunked = Llama4(8, 16);
  unchunked.Set("attention_chunk_size", ModelMetadata::Null{});
  w = Write(Config(unchunked));
  EXPECT_EQ(w.file->GetInt("llama4.attention.sliding_window").value(), 0);  // llama.cpp: no chunking
  EXPECT_EQ(w.file->GetInt("herd.attention_chunk_size").value(), 0);
}

TEST(GgufModel, NotesWhatLlamaCppCannotExpress) {
  ModelMetadata md = Llama4(8, 16);
  md.Set("attention_chunk_size", int64_t{16});
  md.Set("use_qk_norm", false);
  md.Set("attn_scale", 0.25);
  const Written w = Write(Config(md));
  ASSERT_EQ(w.notes.size(), 1u);
  EXPECT_EQ(w.notes[0],
            "llama.cpp cannot express this model's attention_chunk_size 16, use_qk_norm off, attn_scale "
            "0.25 (it hardcodes the Llama 4 values); herd reads the exact settings from the herd.* keys");
}

// A file with only llama.cpp's keys (as its converter writes them) means what llama.cpp makes of it: chunk 8192,
// NoPE every 4th layer, temperature tuning on, QK-norm unless 128 experts, vocab_size from the token list.
TEST(GgufModel, LlamaCppKeysAloneReadAsLlamaCppReadsThem) {
  for (int64_t experts : {16, 128}) {
    formats::GgufWriter w;
    w.AddString("general.architecture", "llama4");
    const std::string p = "llama4.";
    for (const auto& [key, v] :
         std::vector<std::pair<std::string, uint32_t>>{{"context_length", 4096},
                                                       {"embedding_length", 64},
                                                       {"block_count", 4},
                                                       {"feed_forward_length", 96},
                                                       {"expert_feed_forward_length", 32},
                                                       {"attention.head_count", 4},
                                                       {"attention.head_count_kv", 2},
                                                       {"expert_count", static_cast<uint32_t>(experts)},
                                                       {"expert_used_count", 1},
                                                       {"interleave_moe_layer_step", 2}}) {
      w.AddUint32(p + key, v);
    }
    w.AddFloat32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    w.AddFloat32(p + "rope.freq_base", 500000.0f);
    w.AddStringArray("tokenizer.ggml.tokens", std::vector<std::string>(300, "x"));
    const std::vector<uint8_t> bytes = w.Serialize().value();
    auto f = formats::GgufFile::Parse(bytes.data(), bytes.size(), "llamacpp.gguf");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    auto md = formats::MetadataFromGguf(**f);
    ASSERT_TRUE(md.ok()) << md.status().ToString();
    EXPECT_EQ(md->Where("vocab_size"), "vocab_size (the length of tokenizer.ggml.tokens in llamacpp.gguf)");
    const model::ModelConfig c = Config(*md);
    EXPECT_EQ(c.vocab_size, 300);
    for (int64_t l = 0; l < 4; ++l) {
      const model::LayerConfig& lc = c.layers[l];
      EXPECT_EQ(lc.use_rope, l != 3);
      EXPECT_EQ(lc.attention_chunk_size, l != 3 ? 8192 : 0);
      EXPECT_EQ(lc.use_qk_norm, l != 3 && experts != 128);
      EXPECT_EQ(lc.attn_temperature_tuning, l == 3);
      EXPECT_EQ(lc.moe, l % 2 == 1);
    }
  }
}

TEST(GgufModel, WriterRefusesWhatGgufCannotHold) {
  ModelMetadata md = Llama4(4, 16);
  md.Set("rope_layout", "half_split");
  formats::GgufWriter w;
  EXPECT_EQ(formats::AddModelMetadata(md, w, nullptr).code(), StatusCode::kInvalidArgument);
  md = Llama4(4, 16);
  md.Erase("rope_theta");
  EXPECT_EQ(formats::AddModelMetadata(md, w, nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace herd::tools
