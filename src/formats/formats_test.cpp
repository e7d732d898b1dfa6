// Tests of the file-format readers: GGUF (via the writer and the real stories260K file), safetensors (in-memory
// files, sharded directories), llama2.c checkpoints, HF name mapping, OpenModelFiles, and the vision tower's files
// (the fixture's vision_config and tensors, mmproj keys read, written and damaged). Every malformed input
// must produce an error that names the problem, never a crash (the asan preset runs this too).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
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
#include "formats/vision_files.h"
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
  const std::string deep = "{\"__metadata__\": {\"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}}";
  n = deep.size();
  expect_error(std::string(reinterpret_cast<char*>(&n), 8) + deep, "nests deeper than 256 levels");
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

// A config.json field nested a million deep: read as metadata, its text (dump()) recursed once per level and the
// process died of a stack overflow (issue 18). Now the file is refused before it is parsed, naming it.
TEST(ModelFiles, DeeplyNestedConfigIsRefused) {
  const std::string dir = TempDir("mf_deep");
  const std::string deep = std::string(size_t{1} << 20, '[') + std::string(size_t{1} << 20, ']');
  WriteFile(dir + "/config.json", R"({"model_type": "llama4", "vision_config": {"x": )" + deep +
                                      R"(}, "text_config": {"rope_scaling": null, "x": )" + deep + "}}");
  auto text = OpenModelFiles(dir);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), StatusCode::kCorruption);
  EXPECT_NE(text.status().message().find("config.json: nests deeper than 256 levels"), std::string::npos)
      << text.status().ToString();
  auto vision = OpenVisionFiles(dir);
  ASSERT_FALSE(vision.ok());
  EXPECT_EQ(vision.status().code(), StatusCode::kCorruption);
  EXPECT_NE(vision.status().message().find("config.json: nests deeper than 256 levels"), std::string::npos)
      << vision.status().ToString();
}

// ---- the vision tower's files (llama4.md 4.2, 4.5) ----------------------------------------------------------

TEST(HfNames, Llama4Vision) {
  const std::pair<const char*, const char*> names[] = {
      {"vision_model.patch_embedding.linear.weight", "v.patch_embd.weight"},
      {"vision_model.class_embedding", "v.class_embd"},
      {"vision_model.positional_embedding_vlm", "v.position_embd.weight"},
      {"vision_model.layernorm_pre.weight", "v.pre_ln.weight"},
      {"vision_model.layernorm_post.bias", "v.post_ln.bias"},
      {"vision_model.model.layers.0.self_attn.q_proj.weight", "v.blk.0.attn_q.weight"},
      {"vision_model.model.layers.33.self_attn.k_proj.bias", "v.blk.33.attn_k.bias"},
      {"vision_model.model.layers.2.self_attn.v_proj.weight", "v.blk.2.attn_v.weight"},
      {"vision_model.model.layers.2.self_attn.o_proj.bias", "v.blk.2.attn_out.bias"},
      {"vision_model.model.layers.1.input_layernorm.weight", "v.blk.1.ln1.weight"},
      {"vision_model.model.layers.1.post_attention_layernorm.bias", "v.blk.1.ln2.bias"},
      {"vision_model.model.layers.1.mlp.fc1.weight", "v.blk.1.ffn_up.weight"},
      {"vision_model.model.layers.1.mlp.fc2.bias", "v.blk.1.ffn_down.bias"},
      {"vision_model.vision_adapter.mlp.fc1.weight", "mm.model.mlp.1.weight"},
      {"vision_model.vision_adapter.mlp.fc2.weight", "mm.model.mlp.2.weight"},
      {"multi_modal_projector.linear_1.weight", "mm.model.fc.weight"},
      {"model.vision_model.model.layers.4.mlp.fc1.bias", "v.blk.4.ffn_up.bias"},  // transformers >= 4.52
      {"model.multi_modal_projector.linear_1.weight", "mm.model.fc.weight"},
  };
  for (const auto& [hf, canon] : names) {
    auto c = HfLlama4VisionToCanonical(hf);
    ASSERT_TRUE(c.ok()) << hf << ": " << c.status().ToString();
    ASSERT_TRUE(c->has_value()) << hf;
    EXPECT_EQ(**c, canon) << hf;
    EXPECT_FALSE(HfLlama4ToCanonical(hf)->has_value()) << hf << ": a text load skips vision tensors";
  }
  for (const char* text : {"language_model.model.layers.0.self_attn.q_proj.weight", "language_model.lm_head.weight",
                           "model.language_model.embed_tokens.weight"}) {
    auto c = HfLlama4VisionToCanonical(text);
    ASSERT_TRUE(c.ok()) << text;
    EXPECT_FALSE(c->has_value()) << text;
  }
  for (const char* bad : {"vision_model.model.layers.0.mlp.fc3.weight", "vision_model.model.layers.x.mlp.fc1.weight",
                          "vision_model.class_embedding.weight", "multi_modal_projector.linear_1.bias",
                          "vision_model.model.layers.0.self_attn.q_proj.weight_scale"}) {
    auto c = HfLlama4VisionToCanonical(bad);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), StatusCode::kNotSupported);
    EXPECT_NE(c.status().message().find(bad), std::string::npos) << c.status().ToString();
  }
}

TEST(VisionFiles, HfFixtureDirectory) {
  const std::string dir = SharedPath("fixtures/llama4-tiny-vision");
  auto f = OpenVisionFiles(dir);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const ModelMetadata& md = f->metadata;
  EXPECT_EQ(*md.String("model_type").value(), "llama4_vision_model");
  EXPECT_EQ(*md.Int("image_size").value(), 48);
  EXPECT_EQ(md.Find("image_size")->origin, "vision_config.image_size");
  EXPECT_EQ(*md.Number("pixel_shuffle_ratio").value(), 0.5);
  EXPECT_EQ(*md.Int("text_hidden_size").value(), 64);
  EXPECT_EQ(md.Find("text_hidden_size")->origin, "text_config.hidden_size");
  // Only the vision tower: 2 layers x 16 tensors + 10 others, none of the text model's.
  EXPECT_EQ(f->weights.size(), 42u);
  EXPECT_TRUE(f->weights.Contains("v.blk.1.ffn_down.bias"));
  EXPECT_TRUE(f->weights.Contains("mm.model.fc.weight"));
  EXPECT_FALSE(f->weights.Contains("token_embd.weight"));
  EXPECT_EQ(f->gguf, nullptr);
  EXPECT_FALSE(f->sources.empty());
}

TEST(VisionFiles, HfConfigsWithoutAVisionTower) {
  auto text_only = VisionMetadataFromHfConfig(nlohmann::json{{"model_type", "llama4_text"}}, "c.json");
  ASSERT_FALSE(text_only.ok());
  EXPECT_EQ(text_only.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(text_only.status().message().find("llama4_text"), std::string::npos);
  auto no_vision = VisionMetadataFromHfConfig(nlohmann::json{{"model_type", "llama4"}, {"text_config", {}}}, "c.json");
  ASSERT_FALSE(no_vision.ok());
  EXPECT_EQ(no_vision.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_vision.status().message().find("no vision encoder"), std::string::npos);
  auto not_object =
      VisionMetadataFromHfConfig(nlohmann::json{{"model_type", "llama4"}, {"vision_config", 3}}, "c.json");
  ASSERT_FALSE(not_object.ok());
  EXPECT_EQ(not_object.status().code(), StatusCode::kCorruption);
  EXPECT_NE(not_object.status().message().find("vision_config"), std::string::npos);
}

GgufValue Str(std::string s) {
  GgufValue v;
  v.type = GgufType::kString;
  v.s = std::move(s);
  return v;
}
GgufValue F32(double f) {
  GgufValue v;
  v.type = GgufType::kFloat32;
  v.f = f;
  return v;
}
GgufValue Bool(bool b) {
  GgufValue v;
  v.type = GgufType::kBool;
  v.b = b;
  return v;
}
GgufValue F32s(std::vector<double> fs) {
  GgufValue v;
  v.type = GgufType::kArray;
  v.elem_type = GgufType::kFloat32;
  for (double f : fs) v.array.push_back(F32(f));
  return v;
}

// An mmproj of the fixture's sizes (llama4.md 4.5 keys; the adapter and projector tensors, zero), with the keys in
// `change` replaced (nullopt: left out) and the tensor `skip` left out.
std::vector<uint8_t> Mmproj(const std::map<std::string, std::optional<GgufValue>>& change,
                            const std::string& skip = "") {
  std::vector<std::pair<std::string, GgufValue>> keys = {
      {"general.architecture", Str("clip")},
      {"clip.projector_type", Str("llama4")},
      {"clip.has_vision_encoder", Bool(true)},
      {"clip.use_gelu", Bool(true)},
      {"clip.vision.image_size", IntValue(GgufType::kUint32, 48)},
      {"clip.vision.patch_size", IntValue(GgufType::kUint32, 8)},
      {"clip.vision.embedding_length", IntValue(GgufType::kUint32, 32)},
      {"clip.vision.feed_forward_length", IntValue(GgufType::kUint32, 128)},
      {"clip.vision.block_count", IntValue(GgufType::kUint32, 2)},
      {"clip.vision.attention.head_count", IntValue(GgufType::kUint32, 2)},
      {"clip.vision.attention.layer_norm_epsilon", F32(1e-5)},
      {"clip.vision.projection_dim", IntValue(GgufType::kUint32, 64)},
      {"clip.vision.projector.scale_factor", IntValue(GgufType::kUint32, 2)},
      {"clip.vision.image_mean", F32s({0.5, 0.5, 0.5})},
      {"clip.vision.image_std", F32s({0.5, 0.5, 0.5})},
  };
  GgufWriter w;
  for (auto& [key, value] : keys) {
    auto it = change.find(key);
    if (it == change.end()) {
      w.Add(key, value);
    } else if (it->second) {
      w.Add(key, *it->second);
    }
  }
  for (const auto& added : change) {  // keys the base list does not have
    const auto same = [&](const auto& k) { return k.first == added.first; };
    if (added.second && std::none_of(keys.begin(), keys.end(), same)) w.Add(added.first, *added.second);
  }
  const std::pair<const char*, std::vector<int64_t>> tensors[] = {
      {"mm.model.mlp.1.weight", {48, 128}}, {"mm.model.mlp.2.weight", {48, 48}}, {"mm.model.fc.weight", {64, 48}}};
  for (const auto& [name, shape] : tensors) {
    if (name == skip) continue;
    const size_t bytes = static_cast<size_t>(shape[0] * shape[1] * 4);
    EXPECT_TRUE(w.AddTensor(name, DType::kF32, shape, [bytes](uint8_t* dst) {
                   std::memset(dst, 0, bytes);
                   return Status::Ok();
                 }).ok());
  }
  auto out = w.Serialize();
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return *out;
}

Result<ModelMetadata> ReadMmproj(const std::vector<uint8_t>& bytes) {
  auto g = GgufFile::Parse(bytes.data(), bytes.size(), "mm.gguf");
  if (!g.ok()) return g.status();
  return VisionMetadataFromGguf(**g);
}

TEST(VisionFiles, MmprojKeys) {
  const std::vector<uint8_t> bytes = Mmproj({});
  auto md = ReadMmproj(bytes);
  ASSERT_TRUE(md.ok()) << md.status().ToString();
  EXPECT_EQ(*md->String("model_type").value(), "llama4_vision_model");
  EXPECT_EQ(*md->Int("hidden_size").value(), 32);
  EXPECT_EQ(md->Find("hidden_size")->origin, "clip.vision.embedding_length");
  EXPECT_EQ(*md->Int("text_hidden_size").value(), 64);
  EXPECT_EQ(*md->Number("pixel_shuffle_ratio").value(), 0.5);
  EXPECT_EQ(*md->Number("norm_eps").value(), static_cast<double>(1e-5f));
  EXPECT_EQ(*md->Number("rope_theta").value(), 10000.0);
  EXPECT_NE(md->Find("rope_theta")->origin.find("llama.cpp"), std::string::npos);
  EXPECT_EQ(*md->Int("projector_input_dim").value(), 48);
  EXPECT_EQ(md->Find("projector_input_dim")->origin, "the rows of mm.model.mlp.1.weight");
  EXPECT_EQ(*md->Int("vision_output_dim").value(), 48);
  EXPECT_EQ(*md->String("hidden_act").value(), "gelu");
  auto herd_theta = ReadMmproj(Mmproj({{"herd.vision.rope_theta", F32(500.0)}}));
  ASSERT_TRUE(herd_theta.ok()) << herd_theta.status().ToString();
  EXPECT_EQ(*herd_theta->Number("rope_theta").value(), 500.0);
}

TEST(VisionFiles, DamagedMmprojKeysAreNamed) {
  struct Damage {
    std::map<std::string, std::optional<GgufValue>> change;
    std::string skip;
    StatusCode code;
    std::string want;
  };
  const Damage cases[] = {
      {{{"general.architecture", Str("llama4")}}, "", StatusCode::kInvalidArgument, "not 'clip'"},
      {{{"clip.has_vision_encoder", Bool(false)}}, "", StatusCode::kInvalidArgument, "clip.has_vision_encoder"},
      {{{"clip.projector_type", Str("mlp")}}, "", StatusCode::kNotSupported, "'mlp'"},
      {{{"clip.projector_type", std::nullopt}}, "", StatusCode::kCorruption, "clip.projector_type"},
      {{{"clip.vision.projector_type", Str("idefics3")}}, "", StatusCode::kNotSupported, "clip.vision.projector_type"},
      {{{"clip.vision.block_count", std::nullopt}}, "", StatusCode::kCorruption, "clip.vision.block_count"},
      {{{"clip.vision.patch_size", Str("8")}}, "", StatusCode::kCorruption, "clip.vision.patch_size"},
      {{{"clip.vision.attention.layer_norm_epsilon", std::nullopt}},
       "",
       StatusCode::kCorruption,
       "clip.vision.attention.layer_norm_epsilon"},
      {{{"clip.vision.projector.scale_factor", IntValue(GgufType::kUint32, 0)}},
       "",
       StatusCode::kCorruption,
       "clip.vision.projector.scale_factor"},
      {{{"clip.use_gelu", Bool(false)}}, "", StatusCode::kNotSupported, "clip.use_gelu"},
      {{{"clip.vision.image_mean", F32s({0.48, 0.46, 0.41})}}, "", StatusCode::kNotSupported, "clip.vision.image_mean"},
      {{{"clip.vision.image_std", F32s({0.5, 0.5})}}, "", StatusCode::kNotSupported, "clip.vision.image_std"},
      {{}, "mm.model.mlp.2.weight", StatusCode::kCorruption, "mm.model.mlp.2.weight"},
  };
  for (const Damage& d : cases) {
    SCOPED_TRACE(d.want);
    auto md = ReadMmproj(Mmproj(d.change, d.skip));
    ASSERT_FALSE(md.ok());
    EXPECT_EQ(md.status().code(), d.code) << md.status().ToString();
    EXPECT_NE(md.status().message().find(d.want), std::string::npos) << md.status().ToString();
  }
}

// The fixture's tower written as an mmproj and read back: the same keys' values, the same tensor bytes.
TEST(VisionFiles, MmprojRoundTrip) {
  auto hf = OpenVisionFiles(SharedPath("fixtures/llama4-tiny-vision"));
  ASSERT_TRUE(hf.ok()) << hf.status().ToString();
  const std::string path = TempDir("mmproj_round_trip") + "/mmproj.gguf";
  const Status written = WriteMmproj(hf->metadata, hf->weights, path, hf->sources);
  ASSERT_TRUE(written.ok()) << written.ToString();
  auto back = OpenVisionFiles(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_NE(back->gguf, nullptr);
  EXPECT_EQ(*back->gguf->GetString("general.architecture"), "clip");
  for (const char* field :
       {"image_size", "patch_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "projector_input_dim", "projector_output_dim", "vision_output_dim", "text_hidden_size"}) {
    EXPECT_EQ(*back->metadata.Int(field).value(), *hf->metadata.Int(field).value()) << field;
  }
  for (const char* field : {"norm_eps", "rope_theta", "pixel_shuffle_ratio"}) {
    EXPECT_EQ(static_cast<float>(*back->metadata.Number(field).value()),
              static_cast<float>(*hf->metadata.Number(field).value()))
        << field;
  }
  EXPECT_EQ(back->metadata.Find("rope_theta")->origin, "herd.vision.rope_theta");
  ASSERT_EQ(back->weights.size(), hf->weights.size());
  for (const auto& [name, view] : hf->weights.tensors()) {
    const TensorView* b = back->weights.Find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(b->dtype, view.dtype) << name;
    EXPECT_EQ(b->Describe(), view.Describe()) << name;
    ASSERT_EQ(b->size_bytes, view.size_bytes) << name;
    EXPECT_EQ(std::memcmp(b->data, view.data, static_cast<size_t>(view.size_bytes)), 0) << name;
  }
  // Refusals: an input as output, a text tensor, metadata of another tower.
  const Status over_input = WriteMmproj(hf->metadata, hf->weights, hf->sources.front(), hf->sources);
  EXPECT_EQ(over_input.code(), StatusCode::kInvalidArgument) << over_input.ToString();
  WeightMap with_text;
  ASSERT_TRUE(with_text.Add("token_embd.weight", hf->weights.tensors().begin()->second).ok());
  const Status text = WriteMmproj(hf->metadata, with_text, path);
  EXPECT_EQ(text.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(text.message().find("token_embd.weight"), std::string::npos) << text.ToString();
  ModelMetadata other = hf->metadata;
  other.Set("model_type", std::string("siglip_vision_model"));
  EXPECT_EQ(WriteMmproj(other, hf->weights, path).code(), StatusCode::kInvalidArgument);
  other = hf->metadata;
  other.Set("pixel_shuffle_ratio", 0.3);
  EXPECT_EQ(WriteMmproj(other, hf->weights, path).code(), StatusCode::kInvalidArgument);
}

TEST(VisionFiles, PathsWithoutAVisionTower) {
  auto text_gguf = OpenVisionFiles(SharedPath("models/stories260K/stories260K.gguf"));
  ASSERT_FALSE(text_gguf.ok());
  EXPECT_EQ(text_gguf.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(text_gguf.status().message().find("mmproj"), std::string::npos) << text_gguf.status().ToString();
  const std::string dir = TempDir("vision_junk");
  WriteFile(dir + "/config.json", R"({"model_type": "llama4_text", "hidden_size": 64})");
  auto text_dir = OpenVisionFiles(dir);
  ASSERT_FALSE(text_dir.ok());
  EXPECT_EQ(text_dir.status().code(), StatusCode::kInvalidArgument) << text_dir.status().ToString();
  EXPECT_NE(text_dir.status().message().find("config.json"), std::string::npos) << text_dir.status().ToString();
  WriteFile(dir + "/junk.bin", "not a model");
  auto junk = OpenVisionFiles(dir + "/junk.bin");
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("junk.bin"), std::string::npos);
  EXPECT_EQ(OpenVisionFiles(dir + "/missing.gguf").status().code(), StatusCode::kIOError);
}

}  // namespace
}  // namespace herd::formats
