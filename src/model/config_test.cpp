// ModelConfig from metadata: HF defaults, range checks that name the field before anything is sized from it,
// the Llama 4 layer table, and the round trip through MetadataFromConfig.
#include "model/config.h"

#include <gtest/gtest.h>

namespace herd::model {
namespace {

// A small Llama 4 text config as config.json states it (fields the test does not set take HF's defaults).
ModelMetadata Llama4(int64_t layers = 8) {
  ModelMetadata md("config.json");
  md.Set("model_type", "llama4");
  md.Set("hidden_size", int64_t{64}, "text_config.hidden_size");
  md.Set("num_hidden_layers", layers, "text_config.num_hidden_layers");
  md.Set("num_attention_heads", int64_t{4});
  md.Set("num_key_value_heads", int64_t{2});
  md.Set("intermediate_size", int64_t{32});
  md.Set("intermediate_size_mlp", int64_t{96});
  md.Set("num_local_experts", int64_t{4});
  md.Set("vocab_size", int64_t{300});
  md.Set("max_position_embeddings", int64_t{4096});
  md.Set("rms_norm_eps", 1e-5);
  md.Set("rope_theta", 500000.0);
  return md;
}

TEST(ConfigFromMetadata, Llama4DefaultsAreHfs) {
  auto c = ConfigFromMetadata(Llama4());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->num_experts_per_tok, 1);
  EXPECT_FLOAT_EQ(c->attn_scale, 0.1f);
  EXPECT_FLOAT_EQ(c->floor_scale, 8192.0f);
  ASSERT_EQ(c->layers.size(), 8u);
  for (int64_t l = 0; l < 8; ++l) {
    const LayerConfig& lc = c->layers[l];
    const bool nope = (l + 1) % 4 == 0;  // no_rope_layer_interval 4
    EXPECT_EQ(lc.use_rope, !nope) << l;
    EXPECT_EQ(lc.attention_chunk_size, nope ? 0 : 8192) << l;
    EXPECT_EQ(lc.use_qk_norm, !nope) << l;
    EXPECT_EQ(lc.attn_temperature_tuning, nope) << l;
    EXPECT_TRUE(lc.moe) << l;  // interleave_moe_layer_step 1
    EXPECT_EQ(lc.ffn_size, 32) << l;
  }
}

TEST(ConfigFromMetadata, DenseLlamaDefaults) {
  ModelMetadata md("config.json");
  md.Set("model_type", "llama");
  md.Set("hidden_size", int64_t{64});
  md.Set("num_hidden_layers", int64_t{2});
  md.Set("num_attention_heads", int64_t{8});
  md.Set("intermediate_size", int64_t{172});
  md.Set("vocab_size", int64_t{512});
  md.Set("rms_norm_eps", 1e-5);
  md.Set("rope_layout", "half_split");
  auto c = ConfigFromMetadata(md);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->max_position_embeddings, 2048);  // HF LlamaConfig
  EXPECT_FLOAT_EQ(c->rope_theta, 10000.0f);
  EXPECT_EQ(c->rope_style, kernels::RopeStyle::kHalfSplit);
  ASSERT_EQ(c->layers.size(), 2u);
  EXPECT_EQ(c->layers[1].ffn_size, 172);
}

// issue 18: sizes from a file are checked, with the field's name and origin, before the per-layer table (or
// anything else) is sized from them.
TEST(ConfigFromMetadata, SizesOutOfRangeNameTheFieldBeforeAllocating) {
  ModelMetadata md = Llama4();
  md.Set("num_hidden_layers", int64_t{4294967295}, "llama4.block_count");
  Status s = ConfigFromMetadata(md).status();
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.message(),
            "num_hidden_layers (llama4.block_count in config.json) = 4294967295 is outside the "
            "plausible range [1, 512]");
  for (const char* field : {"hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
                            "max_position_embeddings", "num_local_experts", "intermediate_size_mlp"}) {
    for (int64_t bad : {int64_t{0}, int64_t{-3}, int64_t{1} << 40}) {
      ModelMetadata m = Llama4();
      m.Set(field, bad);
      s = ConfigFromMetadata(m).status();
      EXPECT_EQ(s.code(), StatusCode::kCorruption) << field << " " << bad;
      // No experts is a valid count (an all-dense model) unless the model has MoE layers.
      const std::string want = std::string(field) == "num_local_experts" && bad == 0
                                   ? "num_local_experts in config.json is 0 but the model has mixture-of-experts layers"
                                   : std::string(field) + " in config.json = " + std::to_string(bad);
      EXPECT_NE(s.message().find(want), std::string::npos) << s.message();
    }
  }
}

// Llama Guard 4 as Hugging Face's converter writes it: no experts, interleave_moe_layer_step 0 or moe_layers [].
TEST(ConfigFromMetadata, AllDenseLlama4) {
  for (int variant = 0; variant < 2; ++variant) {
    ModelMetadata md = Llama4();
    md.Set("num_local_experts", int64_t{0});
    if (variant == 0) {
      md.Set("interleave_moe_layer_step", int64_t{0});
    } else {
      md.Set("moe_layers", ModelMetadata::IntList{});
    }
    auto c = ConfigFromMetadata(md);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    for (const auto& l : c->layers) {
      EXPECT_FALSE(l.moe);
      EXPECT_EQ(l.ffn_size, c->intermediate_size_mlp);
    }
  }
  ModelMetadata md = Llama4();
  md.Set("interleave_moe_layer_step", int64_t{-1});
  EXPECT_FALSE(ConfigFromMetadata(md).ok());
}

TEST(ConfigFromMetadata, CrossFieldErrorsNameTheFields) {
  ModelMetadata md = Llama4();
  md.Set("num_attention_heads", int64_t{7});
  EXPECT_EQ(ConfigFromMetadata(md).status().message(),
            "hidden_size (text_config.hidden_size in config.json) = 64 is not divisible by num_attention_heads in "
            "config.json = 7, and no head_dim is given");
  md = Llama4();
  md.Set("num_experts_per_tok", int64_t{5});
  EXPECT_NE(ConfigFromMetadata(md).status().message().find("num_experts_per_tok 5 must be at most"), std::string::npos);
  md = Llama4();
  md.Erase("rope_theta");
  EXPECT_EQ(ConfigFromMetadata(md).status().message(), "config.json: missing required field 'rope_theta'");
  md = Llama4();
  md.Set("no_rope_layers", ModelMetadata::IntList{1, 0});
  EXPECT_NE(ConfigFromMetadata(md).status().message().find("no_rope_layers in config.json has 2 entries"),
            std::string::npos);
  md = Llama4();
  md.Set("model_type", "gpt2", "general.architecture");
  Status s = ConfigFromMetadata(md).status();
  EXPECT_EQ(s.code(), StatusCode::kNotSupported);
  EXPECT_EQ(s.message(),
            "unknown architecture 'gpt2' (model_type (general.architecture in config.json)); "
            "supported: llama, llama4");
  md = Llama4();
  md.Set("rms_norm_eps", 1e300);
  EXPECT_NE(ConfigFromMetadata(md).status().message().find("rms_norm_eps in config.json must be a finite number"),
            std::string::npos);
}

TEST(ConfigFromMetadata, ChunkNullAndExplicitLists) {
  ModelMetadata md = Llama4(4);
  md.Set("attention_chunk_size", ModelMetadata::Null{});
  md.Set("no_rope_layers", ModelMetadata::IntList{1, 0, 1, 1});
  md.Set("moe_layers", ModelMetadata::IntList{1, 3});
  md.Set("use_qk_norm", false);
  auto c = ConfigFromMetadata(md);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->layers[0].attention_chunk_size, 0);
  EXPECT_FALSE(c->layers[1].use_rope);
  EXPECT_FALSE(c->layers[0].use_qk_norm);
  EXPECT_FALSE(c->layers[0].moe);
  EXPECT_EQ(c->layers[0].ffn_size, 96);
  EXPECT_TRUE(c->layers[3].moe);
  EXPECT_EQ(c->layers[3].ffn_size, 32);
}

TEST(MetadataFromConfig, RoundTripsEveryTable) {
  std::vector<ModelMetadata> cases = {Llama4(8), Llama4(5)};
  cases[1].Set("attention_chunk_size", ModelMetadata::Null{});
  cases[1].Set("moe_layers", ModelMetadata::IntList{0, 4});
  cases[1].Set("attn_temperature_tuning", false);
  cases[1].Set("rope_scaling.rope_type", "llama3");
  cases[1].Set("rope_scaling.factor", 16.0);
  cases[1].Set("rope_scaling.low_freq_factor", 1.0);
  cases[1].Set("rope_scaling.high_freq_factor", 4.0);
  cases[1].Set("rope_scaling.original_max_position_embeddings", 8192.0);
  cases[1].Set("name", "tiny");
  for (const ModelMetadata& md : cases) {
    auto c = ConfigFromMetadata(md);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    auto back = MetadataFromConfig(*c);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    auto again = ConfigFromMetadata(*back);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_TRUE(*c == *again) << c->Describe() << "\n-- differs from --\n" << again->Describe();
  }
}

TEST(MetadataFromConfig, RefusesTablesMetadataCannotState) {
  auto c = ConfigFromMetadata(Llama4(4));
  ASSERT_TRUE(c.ok());
  ModelConfig odd = *c;
  odd.layers[1].attention_chunk_size = 16;  // layer 0 chunks at 8192
  EXPECT_EQ(MetadataFromConfig(odd).status().code(), StatusCode::kNotSupported);
  odd = *c;
  odd.layers[2].use_qk_norm = false;
  EXPECT_EQ(MetadataFromConfig(odd).status().code(), StatusCode::kNotSupported);
}

TEST(RopeFreqDivisors, ReproduceTheScaledFrequenciesBitForBit) {
  ModelMetadata md = Llama4();
  md.Set("head_dim", int64_t{128});
  md.Set("rope_scaling.rope_type", "llama3");
  md.Set("rope_scaling.factor", 16.0);
  md.Set("rope_scaling.low_freq_factor", 1.0);
  md.Set("rope_scaling.high_freq_factor", 4.0);
  md.Set("rope_scaling.original_max_position_embeddings", 8192.0);
  auto c = ConfigFromMetadata(md);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  int64_t inexact = -1;
  const std::vector<float> div = RopeFreqDivisors(*c, &inexact);
  ASSERT_EQ(div.size(), 64u);
  ModelConfig unscaled = *c;
  unscaled.rope_scaling = {};
  const std::vector<float> want = RopeInvFreq(*c), got = RopeInvFreq(unscaled, div.data());
  int64_t differ = 0;
  for (size_t i = 0; i < want.size(); ++i) differ += want[i] != got[i];
  EXPECT_EQ(differ, inexact);
  EXPECT_LE(inexact, 2);
  EXPECT_TRUE(RopeFreqDivisors(unscaled, &inexact).empty());
  EXPECT_EQ(inexact, 0);
}

}  // namespace
}  // namespace herd::model
