// ModelMetadata: typed reads, null and absence, and messages that name the field with its origin.
#include "core/metadata.h"

#include <gtest/gtest.h>

namespace herd {
namespace {

ModelMetadata Sample() {
  ModelMetadata md("m.gguf");
  md.Set("num_hidden_layers", int64_t{48}, "llama4.block_count");
  md.Set("rms_norm_eps", 1e-5, "llama4.attention.layer_norm_rms_epsilon");
  md.Set("whole_double", 8192.0);
  md.Set("half_double", 0.5);
  md.Set("attn_temperature_tuning", int64_t{4});
  md.Set("use_qk_norm", false);
  md.Set("name", "scout");
  md.Set("no_rope_layers", ModelMetadata::IntList{1, 1, 1, 0});
  md.Set("attention_chunk_size", ModelMetadata::Null{});
  md.Set("rope_scaling.factor", ModelMetadata::Other{"{\"a\": 1}"});
  return md;
}

TEST(ModelMetadata, TypedReads) {
  const ModelMetadata md = Sample();
  EXPECT_EQ(md.Int("num_hidden_layers").value(), 48);
  EXPECT_EQ(md.Int("whole_double").value(), 8192);  // a whole number written as a float
  EXPECT_DOUBLE_EQ(*md.Number("rms_norm_eps").value(), 1e-5);
  EXPECT_DOUBLE_EQ(*md.Number("num_hidden_layers").value(), 48.0);
  EXPECT_TRUE(*md.Bool("attn_temperature_tuning").value());  // Scout's config says 4
  EXPECT_FALSE(*md.Bool("use_qk_norm").value());
  EXPECT_EQ(*md.String("name").value(), "scout");
  EXPECT_EQ(*md.Ints("no_rope_layers").value(), (ModelMetadata::IntList{1, 1, 1, 0}));
}

TEST(ModelMetadata, AbsentAndNullReadAsNothing) {
  const ModelMetadata md = Sample();
  EXPECT_FALSE(md.Int("vocab_size").value().has_value());
  EXPECT_FALSE(md.Contains("vocab_size"));
  EXPECT_FALSE(md.Int("attention_chunk_size").value().has_value());
  EXPECT_TRUE(md.IsNull("attention_chunk_size"));
  EXPECT_FALSE(md.IsNull("vocab_size"));
}

TEST(ModelMetadata, WrongTypesNameTheFieldItsOriginAndTheValue) {
  const ModelMetadata md = Sample();
  const Status s = md.Int("rms_norm_eps").status();
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_EQ(s.message(),
            "rms_norm_eps (llama4.attention.layer_norm_rms_epsilon in m.gguf) must be an integer, got 1e-05");
  EXPECT_FALSE(md.Int("half_double").ok());
  EXPECT_EQ(md.String("num_hidden_layers").status().message(),
            "num_hidden_layers (llama4.block_count in m.gguf) must be a string, got 48");
  EXPECT_EQ(md.Number("rope_scaling.factor").status().message(),
            "rope_scaling.factor in m.gguf must be a number, got {\"a\": 1}");
  EXPECT_FALSE(md.Ints("name").ok());
  EXPECT_FALSE(md.Bool("name").ok());
}

TEST(ModelMetadata, WhereAndToString) {
  ModelMetadata md = Sample();
  EXPECT_EQ(md.Where("num_hidden_layers"), "num_hidden_layers (llama4.block_count in m.gguf)");
  EXPECT_EQ(md.Where("vocab_size"), "vocab_size in m.gguf");
  md.Set("num_hidden_layers", int64_t{2});  // replaced: the origin is its own name again
  EXPECT_EQ(md.Where("num_hidden_layers"), "num_hidden_layers in m.gguf");
  md.Erase("num_hidden_layers");
  EXPECT_FALSE(md.Contains("num_hidden_layers"));
  EXPECT_EQ(ModelMetadata::ToString(ModelMetadata::IntList(20, 1)), "[1, 1, 1, 1, 1, 1, 1, 1, ... (20 entries)]");
  EXPECT_EQ(ModelMetadata::ToString(ModelMetadata::Null{}), "null");
  EXPECT_EQ(ModelMetadata::ToString(true), "true");
}

}  // namespace
}  // namespace herd
