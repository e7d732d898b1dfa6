// Tests of the K-quant mixes of tools/quantize.h: the --type names, the file types written, and which tensor gets
// which type in a model with routed experts (the 4-layer, 8-expert model of bench/quant-quality.sh, on which every
// mix gives each tensor the type llama.cpp's mix of that name gives it) and in a dense 32-layer one. The end-to-end run
// of a mix is in tests/cli/bench_cli_test.cpp.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "tools/quantize.h"

namespace herd::tools {
namespace {

TEST(QuantizeMixTest, ParsesNames) {
  const std::map<std::string, std::pair<DType, QuantMix>> names = {
      {"q4_k", {DType::kQ4_K, QuantMix::kNone}},     {"q4_k_s", {DType::kQ4_K, QuantMix::kSmall}},
      {"q4_k_m", {DType::kQ4_K, QuantMix::kMedium}}, {"q5_k", {DType::kQ5_K, QuantMix::kNone}},
      {"q5_k_s", {DType::kQ5_K, QuantMix::kSmall}},  {"q5_k_m", {DType::kQ5_K, QuantMix::kMedium}},
      {"q6_k", {DType::kQ6_K, QuantMix::kNone}},     {"q6_k_m", {DType::kQ6_K, QuantMix::kMedium}},
      {"q8_0", {DType::kQ8_0, QuantMix::kNone}},     {"f32", {DType::kF32, QuantMix::kNone}},
  };
  for (const auto& [name, want] : names) {
    const auto t = ParseQuantizeType(name);
    ASSERT_TRUE(t.has_value()) << name;
    EXPECT_EQ(t->type, want.first) << name;
    EXPECT_EQ(t->mix, want.second) << name;
  }
  for (const char* bad : {"q6_k_s", "q8_0_m", "q4_0_s", "q4_k_l", "q3_z", ""})
    EXPECT_FALSE(ParseQuantizeType(bad)) << bad;
}

TEST(QuantizeMixTest, FileTypes) {
  EXPECT_EQ(MixFileType(DType::kQ4_K, QuantMix::kSmall), 14u);
  EXPECT_EQ(MixFileType(DType::kQ4_K, QuantMix::kMedium), 15u);
  EXPECT_EQ(MixFileType(DType::kQ5_K, QuantMix::kSmall), 16u);
  EXPECT_EQ(MixFileType(DType::kQ5_K, QuantMix::kMedium), 17u);
  EXPECT_EQ(MixFileType(DType::kQ6_K, QuantMix::kMedium), 18u);
  EXPECT_EQ(MixFileType(DType::kQ4_K, QuantMix::kNone), 14u);  // every matrix Q4_K: llama.cpp's Q4_K_S number
  EXPECT_EQ(MixFileType(DType::kQ6_K, QuantMix::kNone), 18u);
  EXPECT_EQ(MixFileType(DType::kQ8_0, QuantMix::kNone), 7u);
}

using Want = std::map<std::string, DType>;

void Expect(DType type, QuantMix mix, bool moe, int n_layers, const Want& want) {
  for (const auto& [name, t] : want) {
    EXPECT_EQ(MixTensorType(type, mix, name, moe, n_layers), t)
        << DTypeName(type) << " mix " << static_cast<int>(mix) << " " << name << ": got "
        << DTypeName(MixTensorType(type, mix, name, moe, n_layers)) << ", want " << DTypeName(t);
  }
}

constexpr DType Q4 = DType::kQ4_K, Q5 = DType::kQ5_K, Q6 = DType::kQ6_K, Q8 = DType::kQ8_0;

// 4 layers with routed experts: the more-bits layers are 2 and 3.
TEST(QuantizeMixTest, RoutedExperts) {
  Expect(Q4, QuantMix::kSmall, true, 4,
         {{"output.weight", Q6},
          {"token_embd.weight", Q4},
          {"blk.0.attn_q.weight", Q4},
          {"blk.0.attn_k.weight", Q8},
          {"blk.3.attn_v.weight", Q8},
          {"blk.1.attn_output.weight", Q5},
          {"blk.0.ffn_down_exps.weight", Q4},  // the first eighth of 4 layers is none
          {"blk.2.ffn_down_shexp.weight", Q4},
          {"blk.2.ffn_up_exps.weight", Q4}});
  Expect(Q4, QuantMix::kMedium, true, 4,
         {{"output.weight", Q6},
          {"blk.1.attn_k.weight", Q8},
          {"blk.1.attn_v.weight", Q8},
          {"blk.1.attn_output.weight", Q5},
          {"blk.1.ffn_down_shexp.weight", Q4},
          {"blk.2.ffn_down_shexp.weight", Q6},
          {"blk.3.ffn_down_shexp.weight", Q6},
          {"blk.3.ffn_down_exps.weight", Q6},
          {"blk.1.ffn_down_exps.weight", Q4},
          {"blk.3.ffn_gate_shexp.weight", Q4}});
  Expect(Q5, QuantMix::kSmall, true, 4,
         {{"output.weight", Q6},
          {"blk.0.attn_k.weight", Q8},
          {"blk.0.attn_v.weight", Q8},
          {"blk.0.attn_output.weight", Q5},
          {"blk.3.ffn_down_shexp.weight", Q5}});
  Expect(Q5, QuantMix::kMedium, true, 4,
         {{"blk.0.attn_output.weight", Q5}, {"blk.3.ffn_down_shexp.weight", Q6}, {"blk.3.ffn_down_exps.weight", Q6}});
  Expect(Q6, QuantMix::kMedium, true, 4,
         {{"output.weight", Q6},
          {"blk.0.attn_k.weight", Q8},
          {"blk.0.attn_v.weight", Q8},
          {"blk.0.attn_output.weight", Q6},
          {"blk.3.ffn_down_shexp.weight", Q6},
          {"blk.3.ffn_down_exps.weight", Q6}});
  // No mix: every matrix in the type.
  Expect(Q4, QuantMix::kNone, true, 4,
         {{"output.weight", Q4}, {"blk.0.attn_k.weight", Q4}, {"blk.3.ffn_down_shexp.weight", Q4}});
}

// 32 dense layers: the more-bits layers are 0-3, 6, 9, ..., 27 and 28-31.
TEST(QuantizeMixTest, Dense) {
  Expect(Q4, QuantMix::kSmall, false, 32,
         {{"output.weight", Q6},
          {"blk.0.attn_k.weight", Q4},
          {"blk.3.attn_v.weight", Q5},
          {"blk.4.attn_v.weight", Q4},
          {"blk.0.attn_output.weight", Q4},
          {"blk.3.ffn_down.weight", Q5},
          {"blk.4.ffn_down.weight", Q4},
          {"blk.3.ffn_up.weight", Q4}});
  Expect(Q4, QuantMix::kMedium, false, 32,
         {{"blk.0.attn_v.weight", Q6},
          {"blk.5.attn_v.weight", Q4},
          {"blk.6.attn_v.weight", Q6},
          {"blk.28.attn_v.weight", Q6},
          {"blk.6.ffn_down.weight", Q6},
          {"blk.7.ffn_down.weight", Q4},
          {"blk.6.ffn_gate.weight", Q4},
          {"blk.6.attn_output.weight", Q4},
          {"blk.6.attn_k.weight", Q4}});
  Expect(Q5, QuantMix::kSmall, false, 32,
         {{"output.weight", Q6}, {"blk.0.attn_v.weight", Q5}, {"blk.0.ffn_down.weight", Q5}});
  Expect(Q5, QuantMix::kMedium, false, 32, {{"blk.31.attn_v.weight", Q6}, {"blk.31.ffn_down.weight", Q6}});
  Expect(Q6, QuantMix::kMedium, false, 32, {{"blk.0.attn_k.weight", Q6}, {"blk.0.attn_v.weight", Q6}});
}

}  // namespace
}  // namespace herd::tools
