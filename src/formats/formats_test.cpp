// Tests of the file-format readers: GGUF (via the writer and the real stories260K file), safetensors (in-memory
// files, sharded directories), llama2.c checkpoints, HF name mapping and OpenModelFiles. Every malformed input
// must produce an error that names the problem, never a crash (the asan preset runs this too).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/half.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"
#include "formats/hf_names.h"
#include "formats/llama2c.h"
#include "formats/model_files.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace herd::formats {
namespace {

using ::herd::testing::SharedPath;
using ::herd::testing::TempDir;
namespace fs = std::filesystem;

void WriteFile(const std::string& path, const std::string& bytes) { ::herd::testing::WriteBytes(path, bytes); }

GgufValue IntValue(GgufType t, int64_t i) {
  GgufValue v;
  v.type = t;
  v.i = i;
  return v;
}

// A small GGUF with every metadata type and one tensor of each weight dtype.
GgufWriter MakeWriter(std::vector<float>* f32_data) {
  GgufWriter w;
  w.AddString("general.architecture", "llama");
  w.AddUint32("llama.block_count", 3);
  w.AddInt32("some.int32", -7);
  w.AddUint64("some.uint64", 1ull << 40);
  w.AddFloat32("some.float", 0.25f);
  w.AddBool("some.bool", true);
  w.Add("some.u8", IntValue(GgufType::kUint8, 200));
  w.Add("some.i8", IntValue(GgufType::kInt8, -100));
  w.Add("some.u16", IntValue(GgufType::kUint16, 60000));
  w.Add("some.i16", IntValue(GgufType::kInt16, -30000));
  w.Add("some.i64", IntValue(GgufType::kInt64, -(1ll << 50)));
  GgufValue f64;
  f64.type = GgufType::kFloat64;
  f64.f = 1e-300;
  w.Add("some.f64", f64);
  w.AddStringArray("some.strings", {"a", "", "xyz"});
  w.AddFloat32Array("some.floats", {1.5f, -2.0f});
  w.AddInt32Array("some.ints", {1, 2, 3});
  // Nested array: [[1, 2], []]
  GgufValue outer;
  outer.type = GgufType::kArray;
  outer.elem_type = GgufType::kArray;
  GgufValue inner;
  inner.type = GgufType::kArray;
  inner.elem_type = GgufType::kInt16;
  inner.array = {IntValue(GgufType::kInt16, 1), IntValue(GgufType::kInt16, 2)};
  outer.array.push_back(inner);
  inner.array.clear();
  outer.array.push_back(inner);
  w.Add("some.nested", outer);

  f32_data->resize(2 * 64);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (float& x : *f32_data) x = u(rng);
  const float* src = f32_data->data();
  EXPECT_TRUE(w.AddTensor("t.f32", DType::kF32, {2, 64}, [src](uint8_t* dst) {
                 std::memcpy(dst, src, 2 * 64 * 4);
                 return Status::Ok();
               }).ok());
  for (DType t : {DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const int64_t bytes = RowBytes(t, 64) * 3;
    EXPECT_TRUE(w.AddTensor("t." + std::string(DTypeName(t)), t, {3, 64}, [bytes](uint8_t* dst) {
                   for (int64_t k = 0; k < bytes; ++k) dst[k] = static_cast<uint8_t>(k * 7);
                   return Status::Ok();
                 }).ok());
  }
  return w;
}

TEST(Gguf, RoundTripAllValueTypesAndTensors) {
  std::vector<float> data;
  GgufWriter w = MakeWriter(&data);
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto f = GgufFile::Parse(bytes->data(), bytes->size(), "mem.gguf");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.block_count"), 3);
  EXPECT_EQ(*g.GetInt("some.int32"), -7);
  EXPECT_EQ(*g.GetInt("some.uint64"), 1ll << 40);
  EXPECT_EQ(*g.GetFloat("some.float"), 0.25);
  EXPECT_EQ(**g.GetBoolOpt("some.bool"), true);
  EXPECT_EQ(*g.GetInt("some.u8"), 200);
  EXPECT_EQ(*g.GetInt("some.i8"), -100);
  EXPECT_EQ(*g.GetInt("some.u16"), 60000);
  EXPECT_EQ(*g.GetInt("some.i16"), -30000);
  EXPECT_EQ(*g.GetInt("some.i64"), -(1ll << 50));
  EXPECT_EQ(*g.GetFloat("some.f64"), 1e-300);
  EXPECT_EQ(*g.GetStringArray("some.strings"), (std::vector<std::string_view>{"a", "", "xyz"}));
  EXPECT_EQ(*g.GetFloatArray("some.floats"), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(*g.GetIntArray("some.ints"), (std::vector<int64_t>{1, 2, 3}));
  const GgufValue* nested = g.Find("some.nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->array.size(), 2u);
  EXPECT_EQ(nested->array[0].array.size(), 2u);
  EXPECT_EQ(nested->array[0].array[1].i, 2);
  EXPECT_TRUE(nested->array[1].array.empty());
  EXPECT_FALSE(g.GetIntOpt("missing.key")->has_value());
  // Wrong types are errors naming the key.
  auto wrong = g.GetInt("general.architecture");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("general.architecture"), std::string::npos);
  EXPECT_FALSE(g.GetString("missing.key").ok());

  ASSERT_EQ(g.tensor_infos().size(), 5u);
  auto weights = g.Weights();
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();
  const TensorView* t = weights->Find("t.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Rows(), 2);
  EXPECT_EQ(t->Cols(), 64);
  EXPECT_EQ(std::memcmp(t->data, data.data(), data.size() * 4), 0);
  EXPECT_EQ((t->data - bytes->data()) % 32, 0);
  const TensorView* q = weights->Find("t.Q4_0");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, DType::kQ4_0);
  EXPECT_EQ(q->size_bytes, 3 * 18 * 2);
  EXPECT_EQ(q->data[5], static_cast<uint8_t>(35));
}

TEST(Gguf, CustomAlignment) {
  std::vector<float> data;
  GgufWriter w = MakeWriter(&data);
  w.SetAlignment(64);
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  auto f = GgufFile::Parse(bytes->data(), bytes->size(), "mem.gguf");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->alignment(), 64u);
  EXPECT_EQ((*f)->data_offset() % 64, 0u);
}

TEST(Gguf, EveryTruncationIsAnError) {
  std::vector<float> data;
  auto bytes = MakeWriter(&data).Serialize();
  ASSERT_TRUE(bytes.ok());
  // The trailing alignment padding after the last tensor is optional; everything before it is required.
  auto full = GgufFile::Parse(bytes->data(), bytes->size(), "full.gguf");
  ASSERT_TRUE(full.ok());
  const GgufTensorInfo& last = (*full)->tensor_infos().back();
  const size_t required = (*full)->data_offset() + last.offset + last.size_bytes;
  for (size_t n = 0; n < required; ++n) {
    // A copy of exactly n bytes, so ASan catches any read past the end.
    std::vector<uint8_t> prefix(bytes->begin(), bytes->begin() + n);
    auto f = GgufFile::Parse(prefix.data(), prefix.size(), "cut.gguf");
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_NE(f.status().message().find("cut.gguf"), std::string::npos) << f.status().ToString();
  }
}

TEST(Gguf, RandomBitFlipsNeverCrash) {
  std::vector<float> data;
  auto bytes = MakeWriter(&data).Serialize();
  ASSERT_TRUE(bytes.ok());
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<uint8_t> b = *bytes;
    const size_t header = std::min<size_t>(b.size(), 900);
    for (int k = 0; k < 3; ++k) b[rng() % header] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto f = GgufFile::Parse(b.data(), b.size(), "flip.gguf");
    if (f.ok()) {
      auto w = (*f)->Weights();
      (void)w;
    }
  }
}

std::vector<uint8_t> Header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  std::vector<uint8_t> b(24);
  std::memcpy(b.data(), "GGUF", 4);
  std::memcpy(b.data() + 4, &version, 4);
  std::memcpy(b.data() + 8, &n_tensors, 8);
  std::memcpy(b.data() + 16, &n_kv, 8);
  return b;
}

TEST(Gguf, BadHeadersAreNamed) {
  auto expect_error = [](std::vector<uint8_t> b, const std::string& needle) {
    auto f = GgufFile::Parse(b.data(), b.size(), "bad.gguf");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status().ToString();
  };
  std::vector<uint8_t> magic = Header(3, 0, 0);
  magic[0] = 'X';
  expect_error(magic, "bad magic");
  expect_error(Header(1, 0, 0), "version 1");
  expect_error(Header(3, 0, 1ull << 60), "metadata count");
  expect_error(Header(3, 1ull << 60, 0), "tensor count");
  // An array claiming 2^40 elements in a tiny file.
  std::vector<uint8_t> arr = Header(3, 0, 1);
  auto put = [&](const void* p, size_t n) { arr.insert(arr.end(), (const uint8_t*)p, (const uint8_t*)p + n); };
  uint64_t klen = 1;
  put(&klen, 8);
  put("k", 1);
  uint32_t t = 9, et = 4;
  uint64_t count = 1ull << 40;
  put(&t, 4);
  put(&et, 4);
  put(&count, 8);
  arr.resize(arr.size() + 64, 0);
  expect_error(arr, "cannot fit");
}

TEST(Gguf, TensorOutsideDataIsNamed) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("blk.0.attn_q.weight", DType::kF32, {4, 8}, [](uint8_t* d) {
                 std::memset(d, 0, 128);
                 return Status::Ok();
               }).ok());
  auto bytes = w.Serialize();
  ASSERT_TRUE(bytes.ok());
  bytes->resize(bytes->size() - 64);
  auto f = GgufFile::Parse(bytes->data(), bytes->size(), "short.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("blk.0.attn_q.weight"), std::string::npos) << f.status().ToString();
}

// issue 18: a header that points one tensor into another's bytes is corrupt (it loaded, and a norm pointing into
// token_embd gave "upon upon upon..."); every pair is checked, not only neighbours in file order.
TEST(Gguf, OverlappingTensorsAreNamed) {
  GgufWriter w;
  for (const char* name : {"a.weight", "b.weight", "c.weight"}) {
    ASSERT_TRUE(w.AddTensor(name, DType::kF32, {4, 8}, [](uint8_t* d) {
                   std::memset(d, 0, 128);
                   return Status::Ok();
                 }).ok());
  }
  const std::vector<uint8_t> good = w.Serialize().value();
  ASSERT_TRUE(GgufFile::Parse(good.data(), good.size(), "good.gguf").ok());
  // The offset field follows the name, n_dims, the two dims and the type: set it to `offset`.
  auto with_offset = [&](const std::string& name, uint64_t offset) {
    std::vector<uint8_t> b = good;
    auto it = std::search(b.begin(), b.end(), name.begin(), name.end());
    EXPECT_NE(it, b.end());
    const size_t at = static_cast<size_t>(it - b.begin()) + name.size() + 4 + 2 * 8 + 4;
    std::memcpy(b.data() + at, &offset, 8);
    return b;
  };
  for (const auto& [name, offset] : std::vector<std::pair<std::string, uint64_t>>{
           {"b.weight", 0}, {"c.weight", 64}, {"a.weight", 192}, {"c.weight", 128 + 96}}) {
    const std::vector<uint8_t> b = with_offset(name, offset);
    auto f = GgufFile::Parse(b.data(), b.size(), "overlap.gguf");
    ASSERT_FALSE(f.ok()) << name << " at " << offset;
    EXPECT_EQ(f.status().code(), StatusCode::kCorruption);
    EXPECT_NE(f.status().message().find("overlap"), std::string::npos) << f.status().ToString();
    EXPECT_NE(f.status().message().find(name), std::string::npos) << f.status().ToString();
  }
}

TEST(Gguf, DamagedStringNamesTheFileOnce) {
  GgufWriter w;
  w.AddString("general.name", "abc");
  std::vector<uint8_t> b = w.Serialize().value();
  const std::string key = "general.name";
  auto it = std::search(b.begin(), b.end(), key.begin(), key.end());
  ASSERT_NE(it, b.end());
  const uint64_t huge = 1ull << 40;  // the value's length, after the key and its u32 type
  std::memcpy(&*it + key.size() + 4, &huge, 8);
  auto f = GgufFile::Parse(b.data(), b.size(), "damaged.gguf");
  ASSERT_FALSE(f.ok());
  const std::string m = f.status().message();
  EXPECT_EQ(m.find("damaged.gguf"), m.rfind("damaged.gguf")) << m;
  EXPECT_EQ(m.rfind("damaged.gguf", 0), 0u) << m;
}

TEST(GgufWriter, RejectsBadShapes) {
  GgufWriter w;
  EXPECT_FALSE(w.AddTensor("x", DType::kQ8_0, {2, 33}, [](uint8_t*) { return Status::Ok(); }).ok());
  EXPECT_TRUE(w.AddTensor("y", DType::kQ8_0, {2, 32}, [](uint8_t*) { return Status::Ok(); }).ok());
  EXPECT_FALSE(w.AddTensor("y", DType::kQ8_0, {2, 32}, [](uint8_t*) { return Status::Ok(); }).ok());
}

TEST(Gguf, WriteToDiskAndOpen) {
  std::vector<float> data;
  GgufWriter w = MakeWriter(&data);
  const std::string path = TempDir("gguf_write") + "/x.gguf";
  ASSERT_TRUE(w.Write(path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->tensor_infos().size(), 5u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Gguf, Stories260K) {
  auto f = GgufFile::Open(SharedPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.tensor_infos().size(), 48u);
  EXPECT_EQ(g.metadata().size(), 19u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetInt("llama.embedding_length"), 64);
  EXPECT_EQ(g.GetStringArray("tokenizer.ggml.tokens")->size(), 512u);
  auto w = g.Weights();
  ASSERT_TRUE(w.ok());
  const TensorView* e = w->Find("token_embd.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->Rows(), 512);
  EXPECT_EQ(e->Cols(), 64);
}

// ---- safetensors -------------------------------------------------------------------------------------------

std::string Safetensors(const nlohmann::json& header, const std::string& data) {
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h += ' ';
  uint64_t n = h.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + h + data;
}

TEST(Safetensors, ParsesDtypesAndShapes) {
  std::string data(4 * 6 + 2 * 4 + 2 * 4, '\0');
  float f[6] = {1, 2, 3, 4, 5, 6};
  std::memcpy(data.data(), f, sizeof f);
  uint16_t h16[4] = {F32ToF16(1.5f), F32ToF16(-2), 0, 0};
  std::memcpy(data.data() + 24, h16, 8);
  uint16_t b16[4] = {F32ToBf16(3.0f), 0, 0, F32ToBf16(-1)};
  std::memcpy(data.data() + 32, b16, 8);
  nlohmann::json j = {{"__metadata__", {{"format", "pt"}}},
                      {"a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
                      {"b", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {24, 32}}}},
                      {"c", {{"dtype", "BF16"}, {"shape", {2, 2}}, {"data_offsets", {32, 40}}}}};
  std::string file = Safetensors(j, data);
  auto st = SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "m.safetensors");
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  ASSERT_EQ((*st)->tensors().size(), 3u);
  ASSERT_EQ((*st)->metadata().size(), 1u);
  for (const auto& t : (*st)->tensors()) {
    auto v = (*st)->View(t);
    ASSERT_TRUE(v.ok());
    if (t.name == "a") {
      EXPECT_EQ(v->Rows(), 2);
      EXPECT_EQ(reinterpret_cast<const float*>(v->data)[5], 6.0f);
    } else if (t.name == "b") {
      EXPECT_EQ(v->dtype, DType::kF16);
      EXPECT_EQ(F16ToF32(reinterpret_cast<const uint16_t*>(v->data)[1]), -2.0f);
    } else {
      EXPECT_EQ(v->dtype, DType::kBF16);
      EXPECT_EQ(Bf16ToF32(reinterpret_cast<const uint16_t*>(v->data)[3]), -1.0f);
    }
  }
}

TEST(Safetensors, MalformedHeadersAreNamed) {
  auto expect_error = [](const std::string& file, const std::string& needle) {
    auto st = SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "m.safetensors");
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.status().message().find(needle), std::string::npos) << st.status().ToString();
  };
  const std::string data(64, '\0');
  expect_error("abc", "too short");
  std::string huge(8, '\xff');
  expect_error(huge + "{}", "header length");
  uint64_t n = 5;
  expect_error(std::string(reinterpret_cast<char*>(&n), 8) + "{nope", "not valid JSON");
  expect_error(Safetensors({{"w", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 20}}}}}, data),
               "needs 16 bytes");
  expect_error(Safetensors({{"w", {{"dtype", "F32"}, {"shape", {32}}, {"data_offsets", {0, 128}}}}}, data),
               "outside the data buffer");
  expect_error(Safetensors({{"w", {{"dtype", "Q9"}, {"shape", {4}}, {"data_offsets", {0, 16}}}}}, data), "'Q9'");
  expect_error(Safetensors({{"w", {{"dtype", "F32"}, {"shape", {-4}}, {"data_offsets", {0, 16}}}}}, data),
               "non-negative");
  nlohmann::json overlap = {{"w", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
                            {"x", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {8, 24}}}}};
  expect_error(Safetensors(overlap, data), "overlap");
  // An empty tensor sorted between two overlapping ones does not hide the overlap.
  nlohmann::json hidden = {{"w", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
                           {"e", {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {4, 4}}}},
                           {"x", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 16}}}}};
  expect_error(Safetensors(hidden, data), "'w' and 'x' overlap");
  expect_error(Safetensors({{"w", {{"dtype", "F32"}, {"shape", {4}}}}}, data), "data_offsets");
}

TEST(Safetensors, EveryTruncationIsAnError) {
  std::string data(16, '\1');
  std::string file = Safetensors({{"w", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}}}, data);
  for (size_t n = 0; n < file.size(); ++n) {
    std::vector<uint8_t> prefix(file.begin(), file.begin() + n);
    auto st = SafetensorsFile::Parse(prefix.data(), prefix.size(), "cut.safetensors");
    EXPECT_FALSE(st.ok()) << n;
  }
}

TEST(Safetensors, ShardedDirectoryWithIndexAndSkippedShard) {
  const std::string dir = TempDir("st_sharded");
  std::string d1(16, '\0'), d2(8, '\0');
  WriteFile(dir + "/model-00001-of-00003.safetensors",
            Safetensors({{"model.embed_tokens.weight", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}}},
                        d1));
  WriteFile(dir + "/model-00002-of-00003.safetensors",
            Safetensors({{"model.norm.weight", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}}, d2));
  // The third shard is garbage but only holds a tensor the renamer skips: it must never be opened.
  WriteFile(dir + "/model-00003-of-00003.safetensors", "garbage");
  nlohmann::json index = {{"metadata", {{"total_size", 24}}},
                          {"weight_map",
                           {{"model.embed_tokens.weight", "model-00001-of-00003.safetensors"},
                            {"model.norm.weight", "model-00002-of-00003.safetensors"},
                            {"vision.x", "model-00003-of-00003.safetensors"}}}};
  WriteFile(dir + "/model.safetensors.index.json", index.dump());
  TensorRenamer rename = [](std::string_view n) -> Result<std::optional<std::string>> {
    if (n.starts_with("vision.")) return std::optional<std::string>();
    return HfLlamaToCanonical(n);
  };
  auto w = LoadSafetensorsDir(dir, rename, false);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_TRUE(w->Contains("token_embd.weight"));
  EXPECT_TRUE(w->Contains("output_norm.weight"));
  EXPECT_EQ(w->size(), 2u);

  // A tensor listed in the index but absent from its shard is an error naming it.
  index["weight_map"]["model.layers.0.input_layernorm.weight"] = "model-00002-of-00003.safetensors";
  WriteFile(dir + "/model.safetensors.index.json", index.dump());
  auto missing = LoadSafetensorsDir(dir, rename, false);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("model.layers.0.input_layernorm.weight"), std::string::npos);
}

TEST(HfNames, LlamaAndLlama4) {
  EXPECT_EQ(**HfLlamaToCanonical("model.layers.3.self_attn.q_proj.weight"), "blk.3.attn_q.weight");
  EXPECT_EQ(**HfLlamaToCanonical("model.layers.10.mlp.down_proj.weight"), "blk.10.ffn_down.weight");
  EXPECT_EQ(**HfLlamaToCanonical("lm_head.weight"), "output.weight");
  EXPECT_FALSE(HfLlamaToCanonical("model.layers.1.self_attn.rotary_emb.inv_freq")->has_value());
  EXPECT_FALSE(HfLlamaToCanonical("model.layers.x.mlp.down_proj.weight").ok());
  EXPECT_FALSE(HfLlamaToCanonical("foo").ok());
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.gate_up_proj"),
            "blk.1.ffn_gate_up_exps_im.weight");
  EXPECT_EQ(**HfLlama4ToCanonical("model.language_model.layers.1.feed_forward.router.weight"),
            "blk.1.ffn_gate_inp.weight");
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.2.feed_forward.shared_expert.up_proj.weight"),
            "blk.2.ffn_up_shexp.weight");
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.lm_head.weight"), "output.weight");
  EXPECT_FALSE(HfLlama4ToCanonical("vision_model.model.layers.0.mlp.fc1.weight")->has_value());
  EXPECT_FALSE(HfLlama4ToCanonical("multi_modal_projector.linear_1.weight")->has_value());
  // Per-expert layout (llama4.md 4.1) and FP8 scales (6.3).
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.0.gate_proj.weight"),
            "blk.1.ffn_gate_exps.0.weight");
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.3.feed_forward.experts.127.down_proj.weight_scale"),
            "blk.3.ffn_down_exps.127.scale");
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.gate_up_proj_scale"),
            "blk.1.ffn_gate_up_exps_im.scale");
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.down_proj_scale"),
            "blk.1.ffn_down_exps_im.scale");
  EXPECT_EQ(**HfLlama4ToCanonical("language_model.model.layers.0.self_attn.q_proj.weight_scale"), "blk.0.attn_q.scale");
  EXPECT_EQ(**HfLlamaToCanonical("model.layers.2.mlp.up_proj.weight_scale"), "blk.2.ffn_up.scale");
  EXPECT_FALSE(HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.x.gate_proj.weight").ok());
  EXPECT_FALSE(HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.0.gate.weight").ok());
  EXPECT_FALSE(HfLlama4ToCanonical("language_model.model.layers.1.input_layernorm.bias_scale").ok());
  EXPECT_FALSE(HfLlama4ToCanonical("language_model.model.layers.1.feed_forward.experts.0.gate_proj.input_scale").ok());
}

// ---- llama2.c and OpenModelFiles -------------------------------------------------------------------------

TEST(Llama2c, Stories260KHeaderAndWeightsMatchGguf) {
  auto m = OpenModelFiles(SharedPath("models/stories260K/stories260K.bin"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->format, ModelFormat::kLlama2c);
  const ModelMetadata& md = m->metadata;
  auto int_of = [&](const char* field) { return md.Int(field).value().value_or(-1); };
  EXPECT_EQ(int_of("hidden_size"), 64);
  EXPECT_EQ(int_of("intermediate_size"), 172);
  EXPECT_EQ(int_of("num_hidden_layers"), 5);
  EXPECT_EQ(int_of("num_attention_heads"), 8);
  EXPECT_EQ(int_of("num_key_value_heads"), 4);
  EXPECT_EQ(int_of("vocab_size"), 512);
  EXPECT_EQ(int_of("max_position_embeddings"), 512);
  EXPECT_TRUE(md.Bool("tie_word_embeddings").value().value_or(false));
  EXPECT_EQ(md.Where("num_hidden_layers"), "num_hidden_layers (llama2.c header n_layers in " +
                                               SharedPath("models/stories260K/stories260K.bin") + ")");
  auto g = OpenModelFiles(SharedPath("models/stories260K/stories260K.gguf"));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  // The provenance says the GGUF tensors are bit-identical to the .bin weights: so must our canonical views be.
  int compared = 0;
  for (const auto& [name, view] : m->weights.tensors()) {
    const TensorView* other = g->weights.Find(name);
    ASSERT_NE(other, nullptr) << name;
    ASSERT_EQ(view.NumElements(), other->NumElements()) << name;
    ASSERT_EQ(view.Cols(), other->Cols()) << name;
    EXPECT_EQ(std::memcmp(view.data, other->data, view.size_bytes), 0) << name;
    ++compared;
  }
  EXPECT_EQ(compared, 2 + 9 * 5);
}

TEST(Llama2c, TruncatedAndBadHeaders) {
  std::ifstream in(SharedPath("models/stories260K/stories260K.bin"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (size_t n : {size_t{0}, size_t{10}, size_t{28}, bytes.size() / 2, bytes.size() - 1}) {
    std::vector<uint8_t> b(bytes.begin(), bytes.begin() + n);
    auto m = ParseLlama2c(b.data(), b.size(), "cut.bin");
    ASSERT_FALSE(m.ok()) << n;
    EXPECT_NE(m.status().message().find("cut.bin"), std::string::npos);
  }
  std::vector<uint8_t> b(bytes.begin(), bytes.end());
  int32_t huge = 1 << 30;
  std::memcpy(b.data() + 8, &huge, 4);  // n_layers
  EXPECT_FALSE(ParseLlama2c(b.data(), b.size(), "bad.bin").ok());
  int32_t zero = 0;
  std::memcpy(b.data() + 12, &zero, 4);  // n_heads
  EXPECT_FALSE(ParseLlama2c(b.data(), b.size(), "bad.bin").ok());
}

TEST(ModelFiles, HfFixtureDirectory) {
  auto m = OpenModelFiles(SharedPath("fixtures/llama4-tiny-text/interleaved"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format, ModelFormat::kSafetensorsDir);
  EXPECT_EQ(m->metadata.String("model_type").value(), "llama4");
  EXPECT_EQ(m->metadata.Find("num_hidden_layers")->origin, "text_config.num_hidden_layers");
  EXPECT_TRUE(m->weights.Contains("blk.1.ffn_gate_up_exps_im.weight"));
  EXPECT_TRUE(m->weights.Contains("output.weight"));
}

TEST(ModelFiles, ErrorsNameThePath) {
  auto missing = OpenModelFiles("/nonexistent/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/model.gguf"), std::string::npos);
  const std::string dir = TempDir("mf_errors");
  WriteFile(dir + "/junk.bin", "this is not a model");
  auto junk = OpenModelFiles(dir + "/junk.bin");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("junk.bin"), std::string::npos);
  auto nocfg = OpenModelFiles(dir);
  ASSERT_FALSE(nocfg.ok());
  EXPECT_NE(nocfg.status().message().find("config.json"), std::string::npos);
  WriteFile(dir + "/config.json", R"({"model_type": "gpt_neox"})");
  auto unknown = OpenModelFiles(dir);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("gpt_neox"), std::string::npos);
}

}  // namespace
}  // namespace herd::formats
