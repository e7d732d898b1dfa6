// Tokenizer tests: llama.cpp's .inp/.out vectors (46 per tokenizer) and the reference_ids.json files of
// ../shared/models (see each PROVENANCE.md), tok512, special ids, invalid UTF-8, decoding and streaming, GGUF
// vocabularies (the real Llama 2 SPM file and gpt2 files built here), and one test per kind of file damage.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>

#include "formats/gguf.h"
#include "test_util.h"
#include "tokenizer/internal.h"

namespace herd::tokenizer {
namespace {

using ::herd::testing::ReadJson;
using ::herd::testing::ReadText;
using ::herd::testing::SharedPath;
using ::herd::testing::TempDir;
using ::herd::testing::WriteBytes;
using Ids = std::vector<int32_t>;

// ---- helpers ----

std::unique_ptr<Tokenizer> MustLoad(Result<std::unique_ptr<Tokenizer>> r) {
  if (!r.ok()) {
    ADD_FAILURE() << r.status().ToString();
    return nullptr;
  }
  return std::move(r).value();
}

// Loaded once per process: the big rank files take a moment.
const Tokenizer& Llama3() {
  static const std::unique_ptr<Tokenizer> t =
      MustLoad(LoadTiktoken(SharedPath("models/llama3-tokenizer/tokenizer.model")));
  HERD_CHECK(t != nullptr);
  return *t;
}
const Tokenizer& Llama4() {
  static const std::unique_ptr<Tokenizer> t =
      MustLoad(LoadTiktoken(SharedPath("models/llama4-tokenizer/tokenizer.model")));
  HERD_CHECK(t != nullptr);
  return *t;
}
const Tokenizer& Llama2c() {
  static const std::unique_ptr<Tokenizer> t =
      MustLoad(LoadLlama2cTokenizer(SharedPath("models/llama2-tokenizer/tokenizer.bin"), 32000));
  HERD_CHECK(t != nullptr);
  return *t;
}
const Tokenizer& Llama2Gguf() {
  static const std::unique_ptr<Tokenizer> t =
      MustLoad(LoadTokenizer(SharedPath("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf")));
  HERD_CHECK(t != nullptr);
  return *t;
}

struct Vector {
  std::string text;
  Ids ids;
};

// llama.cpp's format: .inp holds strings each followed by "\n__ggml_vocab_test__\n"; .out one line of
// space-prefixed ids per string, without BOS.
std::vector<Vector> ReadVectors(const std::string& stem) {
  const std::string inp = ReadText(stem + ".inp");
  const std::string out = ReadText(stem + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> v;
  size_t pos = 0;
  while (pos < inp.size()) {
    const size_t at = inp.find(sep, pos);
    if (at == std::string::npos) break;
    v.push_back({inp.substr(pos, at - pos), {}});
    pos = at + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    if (i >= v.size()) {
      ADD_FAILURE() << stem << ".out has more lines than .inp has strings";
      break;
    }
    std::istringstream nums(line);
    int64_t x;
    while (nums >> x) v[i].ids.push_back(static_cast<int32_t>(x));
    ++i;
  }
  EXPECT_EQ(i, v.size()) << stem;
  return v;
}

std::string Show(const Ids& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

Ids JsonIds(const nlohmann::json& j) { return j.get<Ids>(); }

// Runs every vector; returns the number that matched.
int CheckVectors(const Tokenizer& tok, const std::vector<Vector>& vectors, const std::string& what) {
  int ok = 0;
  for (const Vector& v : vectors) {
    const Ids got = tok.Encode(v.text, /*add_bos=*/false, /*parse_special=*/false);
    EXPECT_EQ(got, v.ids) << what << ": text '" << v.text << "'\n got " << Show(got) << "\nwant " << Show(v.ids);
    ok += got == v.ids;
  }
  return ok;
}

// A minimal GGUF v3 writer (llama4.md section 5.1): metadata only, no tensors.
class GgufBuilder {
 public:
  void Str(const std::string& key, const std::string& v) {
    Key(key, 8);
    PutStr(v);
  }
  void U32(const std::string& key, uint32_t v) {
    Key(key, 4);
    Put(v);
  }
  void I32(const std::string& key, int32_t v) {
    Key(key, 5);
    Put(v);
  }
  void Bool(const std::string& key, bool v) {
    Key(key, 7);
    kv_.push_back(v ? 1 : 0);
  }
  void StrArray(const std::string& key, const std::vector<std::string>& v) {
    Key(key, 9);
    Put(uint32_t{8});
    Put(uint64_t{v.size()});
    for (const auto& s : v) PutStr(s);
  }
  void F32Array(const std::string& key, const std::vector<float>& v) {
    Key(key, 9);
    Put(uint32_t{6});
    Put(uint64_t{v.size()});
    for (float f : v) Put(f);
  }
  void I32Array(const std::string& key, const std::vector<int32_t>& v) {
    Key(key, 9);
    Put(uint32_t{5});
    Put(uint64_t{v.size()});
    for (int32_t x : v) Put(x);
  }
  std::string Finish() const {
    std::string out = "GGUF";
    auto put = [&](auto x) { out.append(reinterpret_cast<const char*>(&x), sizeof(x)); };
    put(uint32_t{3});
    put(uint64_t{0});  // tensors
    put(n_kv_);
    out += kv_;
    while (out.size() % 32 != 0) out.push_back('\0');
    return out;
  }

 private:
  template <typename T>
  void Put(T x) {
    kv_.append(reinterpret_cast<const char*>(&x), sizeof(x));
  }
  void PutStr(const std::string& s) {
    Put(uint64_t{s.size()});
    kv_ += s;
  }
  void Key(const std::string& key, uint32_t type) {
    PutStr(key);
    Put(type);
    ++n_kv_;
  }
  std::string kv_;
  uint64_t n_kv_ = 0;
};

Result<std::unique_ptr<Tokenizer>> FromGgufBytes(const std::string& bytes, const std::string& name) {
  HERD_ASSIGN_OR_RETURN(std::shared_ptr<const formats::GgufFile> g,
                        formats::GgufFile::Parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name));
  return LoadTokenizerFromGguf(*g);
}

bool Contains(const Status& s, const std::string& what) { return s.message().find(what) != std::string::npos; }

// ---- llama.cpp vectors ----

TEST(Vectors, Llama2ViaLlama2cTokenizerBin) {
  const auto v = ReadVectors(SharedPath("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"));
  ASSERT_EQ(v.size(), 46u);
  EXPECT_EQ(CheckVectors(Llama2c(), v, "llama2c"), 46);
}

TEST(Vectors, Llama2ViaSpmGguf) {
  const auto v = ReadVectors(SharedPath("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"));
  ASSERT_EQ(v.size(), 46u);
  EXPECT_EQ(Llama2Gguf().kind(), "spm");
  EXPECT_EQ(CheckVectors(Llama2Gguf(), v, "spm gguf"), 46);
}

TEST(Vectors, Llama3ViaTiktoken) {
  const auto v = ReadVectors(SharedPath("models/llama3-tokenizer/ggml-vocab-llama-bpe.gguf"));
  ASSERT_EQ(v.size(), 46u);
  EXPECT_EQ(CheckVectors(Llama3(), v, "llama3"), 46);
}

TEST(Vectors, Llama4ViaTiktoken) {
  const auto v = ReadVectors(SharedPath("models/llama4-tokenizer/ggml-vocab-llama4.gguf"));
  ASSERT_EQ(v.size(), 46u);
  EXPECT_EQ(CheckVectors(Llama4(), v, "llama4"), 46);
}

// ---- reference_ids.json ----

TEST(ReferenceIds, Llama2) {
  const auto j = ReadJson(SharedPath("models/llama2-tokenizer/reference_ids.json"));
  ASSERT_FALSE(j["cases"].empty());
  for (const Tokenizer* tok : {&Llama2c(), &Llama2Gguf()}) {
    EXPECT_EQ(tok->vocab_size(), j["vocab_size"].get<int32_t>());
    EXPECT_EQ(tok->bos_id(), j["bos_id"].get<int32_t>());
    EXPECT_EQ(tok->eos_id(), j["eos_id"].get<int32_t>());
    for (const auto& c : j["cases"]) {
      const std::string text = c["text"];
      const Ids want = JsonIds(c["ids"]);
      EXPECT_EQ(tok->Encode(text, false, false), want) << tok->kind() << ": " << text;
      Ids with_bos = {1};
      with_bos.insert(with_bos.end(), want.begin(), want.end());
      EXPECT_EQ(tok->Encode(text, true, false), with_bos) << tok->kind() << ": " << text;
      for (size_t i = 0; i < want.size(); ++i) {
        std::string piece = c["pieces"][i];
        if (tok->kind() == "llama2c") {  // tokenizer.bin spells U+2581 as a space
          for (size_t at; (at = piece.find("\xE2\x96\x81")) != std::string::npos;) piece.replace(at, 3, " ");
        }
        EXPECT_EQ(tok->TokenPiece(want[i]), piece) << tok->kind() << " id " << want[i];
      }
      EXPECT_EQ(tok->Decode(with_bos, true), text) << tok->kind();
    }
  }
}

void CheckTiktokenReference(const Tokenizer& tok, const std::string& dir) {
  const auto j = ReadJson(SharedPath("models/" + dir + "/reference_ids.json"));
  EXPECT_EQ(tok.vocab_size(), j["n_words"].get<int32_t>());
  for (const auto& [name, id] : j["special_token_ids"].items()) {
    EXPECT_EQ(tok.TokenId(name), id.get<int32_t>()) << name;
    EXPECT_TRUE(tok.IsSpecial(id.get<int32_t>())) << name;
    EXPECT_EQ(tok.TokenBytes(id.get<int32_t>()), name);
  }
  ASSERT_EQ(j["plain_text_no_specials"].size(), 7u);
  for (const auto& c : j["plain_text_no_specials"]) {
    EXPECT_EQ(tok.Encode(c["text"].get<std::string>(), false, false), JsonIds(c["ids"])) << c["text"];
    EXPECT_EQ(tok.Encode(c["text"].get<std::string>(), false, true), JsonIds(c["ids"])) << c["text"];
  }
  ASSERT_FALSE(j["with_special_tokens_allowed"].empty());
  for (const auto& c : j["with_special_tokens_allowed"]) {
    const Ids want = JsonIds(c["ids"]);
    EXPECT_EQ(tok.Encode(c["text"].get<std::string>(), false, true), want) << c["text"];
    EXPECT_EQ(tok.Decode(want, false), c["text"].get<std::string>());
  }
  ASSERT_FALSE(j["special_text_when_specials_not_allowed"].empty());
  for (const auto& c : j["special_text_when_specials_not_allowed"]) {
    EXPECT_EQ(tok.Encode(c["text"].get<std::string>(), false, false), JsonIds(c["ids"])) << c["text"];
  }
}

TEST(ReferenceIds, Llama3) { CheckTiktokenReference(Llama3(), "llama3-tokenizer"); }
TEST(ReferenceIds, Llama4) { CheckTiktokenReference(Llama4(), "llama4-tokenizer"); }

TEST(ReferenceIds, Llama3MetaUnitTest) {
  // llama-models models/llama3/tests/api/test_tokenizer.py, with BOS and EOS.
  Ids ids = Llama3().Encode("This is a test sentence.", true, false);
  ids.push_back(*Llama3().eos_id());
  EXPECT_EQ(ids, (Ids{128000, 2028, 374, 264, 1296, 11914, 13, 128001}));
}

// ---- tok512 / stories260K ----

TEST(Llama2c, Tok512) {
  auto tok = MustLoad(LoadLlama2cTokenizer(SharedPath("models/stories260K/tok512.bin"), 512));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), "llama2c");
  EXPECT_EQ(tok->vocab_size(), 512);
  EXPECT_EQ(tok->Encode("Once upon a time", true, false), (Ids{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok->Encode("Lily and Ben", true, false), (Ids{1, 317, 269, 368, 302}));
  EXPECT_EQ(tok->Encode("", true, false), (Ids{1}));
  EXPECT_EQ(tok->Encode("", false, false), Ids{});
  EXPECT_EQ(tok->Decode(Ids{1, 403, 407, 261, 378}, true), "Once upon a time");
  // run.c ends a story at EOS or at a new BOS.
  Ids stops = tok->stop_ids();
  std::sort(stops.begin(), stops.end());
  EXPECT_EQ(stops, (Ids{1, 2}));
  // Byte fallback: byte b is id b + 3 (after the dummy-prefix space, which is a piece of its own here).
  ASSERT_TRUE(tok->TokenId(" ").has_value());
  EXPECT_EQ(tok->Encode("\xE6\x9D\xB1", false, false), (Ids{*tok->TokenId(" "), 0xE6 + 3, 0x9D + 3, 0xB1 + 3}));
  EXPECT_EQ(tok->TokenPiece(0xE6 + 3), "<0xE6>");
  EXPECT_EQ(tok->TokenBytes(0xE6 + 3), "\xE6");
}

TEST(Llama2c, Tok512CountsTokensToEndOfFile) {
  auto tok = MustLoad(LoadTokenizer(SharedPath("models/stories260K/tok512.bin")));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), "llama2c");
  EXPECT_EQ(tok->vocab_size(), 512);
}

TEST(Llama2c, Stories260kGgufVocabMatchesTok512) {
  auto bin = MustLoad(LoadLlama2cTokenizer(SharedPath("models/stories260K/tok512.bin"), 512));
  auto gguf = MustLoad(LoadTokenizer(SharedPath("models/stories260K/stories260K.gguf")));
  ASSERT_NE(bin, nullptr);
  ASSERT_NE(gguf, nullptr);
  EXPECT_EQ(gguf->kind(), "spm");
  for (const Vector& v : ReadVectors(SharedPath("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"))) {
    EXPECT_EQ(bin->Encode(v.text, true, false), gguf->Encode(v.text, true, false)) << v.text;
  }
  const auto ref = ReadJson(SharedPath("models/stories260K/greedy_reference.json"));
  for (const auto& c : ref["cases"]) {
    EXPECT_EQ(bin->Encode(c["prompt"].get<std::string>(), true, false), JsonIds(c["prompt_ids_with_bos"]));
    Ids ids = {1};
    for (int32_t id : JsonIds(c["tokens_after_bos"])) ids.push_back(id);
    EXPECT_EQ(bin->Decode(ids, true), c["text"].get<std::string>());
    EXPECT_EQ(gguf->Decode(ids, true), c["text"].get<std::string>());
  }
}

// ---- special tokens ----

TEST(Specials, Llama3) {
  const Tokenizer& t = Llama3();
  EXPECT_EQ(t.kind(), "tiktoken");
  EXPECT_EQ(t.vocab_size(), 128256);
  EXPECT_EQ(t.bos_id(), 128000);
  EXPECT_EQ(t.eos_id(), 128001);
  Ids stops = t.stop_ids();
  std::sort(stops.begin(), stops.end());
  EXPECT_EQ(stops, (Ids{128001, 128008, 128009}));
  EXPECT_EQ(t.TokenId("<|start_header_id|>"), 128006);
  EXPECT_EQ(t.TokenId("<|end_header_id|>"), 128007);
  EXPECT_EQ(t.TokenId("<|eom_id|>"), 128008);
  EXPECT_EQ(t.TokenId("<|eot_id|>"), 128009);
  EXPECT_EQ(t.TokenId("<|python_tag|>"), 128010);
  EXPECT_EQ(t.TokenId("<|reserved_special_token_245|>"), 128255);
  EXPECT_EQ(t.TokenId("<|reserved_special_token_246|>"), std::nullopt);
  EXPECT_FALSE(t.IsSpecial(127999));
  EXPECT_TRUE(t.IsSpecial(128255));
  EXPECT_FALSE(t.IsSpecial(128256));
  EXPECT_EQ(t.TokenId("hello"), 15339);
  EXPECT_EQ(t.TokenPiece(220), "\xC4\xA0");  // " " in the byte-level alphabet: U+0120
  EXPECT_EQ(t.TokenId("\xC4\xA0"), 220);
  EXPECT_EQ(t.TokenBytes(220), " ");
  EXPECT_EQ(t.Encode("hello", true, false), (Ids{128000, 15339}));
}

TEST(Specials, Llama4) {
  const Tokenizer& t = Llama4();
  EXPECT_EQ(t.vocab_size(), 202048);
  EXPECT_EQ(t.bos_id(), 200000);
  EXPECT_EQ(t.eos_id(), 200001);
  Ids stops = t.stop_ids();
  std::sort(stops.begin(), stops.end());
  EXPECT_EQ(stops, (Ids{200001, 200007, 200008}));
  // llama4.md 7.2, including the ends of every reserved range.
  const std::map<std::string, int32_t> want = {
      {"<|header_start|>", 200005},
      {"<|header_end|>", 200006},
      {"<|eom|>", 200007},
      {"<|eot|>", 200008},
      {"<|step|>", 200009},
      {"<|text_post_train_reserved_special_token_0|>", 200010},
      {"<|text_post_train_reserved_special_token_5|>", 200015},
      {"<|python_start|>", 200016},
      {"<|python_end|>", 200017},
      {"<|finetune_right_pad|>", 200018},
      {"<|text_post_train_reserved_special_token_8|>", 200019},
      {"<|text_post_train_reserved_special_token_68|>", 200079},
      {"<|image_start|>", 200080},
      {"<|image_end|>", 200081},
      {"<|vision_reserved_special_token_0|>", 200082},
      {"<|tile_x_separator|>", 200084},
      {"<|tile_y_separator|>", 200085},
      {"<|vision_reserved_special_token_2|>", 200086},
      {"<|vision_reserved_special_token_5|>", 200089},
      {"<|image|>", 200090},
      {"<|vision_reserved_special_token_6|>", 200091},
      {"<|patch|>", 200092},
      {"<|vision_reserved_special_token_7|>", 200093},
      {"<|vision_reserved_special_token_1047|>", 201133},
      {"<|reasoning_reserved_special_token_0|>", 201134},
      {"<|reasoning_reserved_special_token_7|>", 201141},
      {"<|reasoning_thinking_start|>", 201142},
      {"<|reasoning_thinking_end|>", 201143},
      {"<|reserved_special_token_0|>", 201144},
      {"<|reserved_special_token_903|>", 202047},
  };
  for (const auto& [name, id] : want) EXPECT_EQ(t.TokenId(name), id) << name;
  EXPECT_TRUE(t.IsSpecial(200000));
  EXPECT_FALSE(t.IsSpecial(199999));
  // Special text is plain text unless parsing is asked for.
  EXPECT_EQ(t.Encode("<|patch|>", false, true), Ids{200092});
  EXPECT_NE(t.Encode("<|patch|>", false, false), Ids{200092});
}

TEST(Specials, TokenIdOfEveryPieceIsItsId) {
  for (const Tokenizer* t : {&Llama3(), &Llama4(), &Llama2c(), &Llama2Gguf()}) {
    int bad = 0;
    for (int32_t id = 0; id < t->vocab_size(); ++id) {
      if (t->TokenId(t->TokenPiece(id)) != id && ++bad <= 5) ADD_FAILURE() << t->kind() << " id " << id;
    }
    EXPECT_EQ(bad, 0) << t->kind();
  }
}

TEST(Specials, ParsedOnlyWhenAsked) {
  for (const Tokenizer* t : {&Llama3(), &Llama2c(), &Llama2Gguf()}) {
    const std::string eos_text = t->TokenBytes(*t->eos_id());
    const std::string text = "a" + eos_text + "b";
    const Ids parsed = t->Encode(text, false, true);
    EXPECT_EQ(std::count(parsed.begin(), parsed.end(), *t->eos_id()), 1) << t->kind() << " " << Show(parsed);
    const Ids plain = t->Encode(text, false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), *t->eos_id()), 0) << t->kind() << " " << Show(plain);
    EXPECT_EQ(t->Decode(plain, true), text) << t->kind();
  }
  // SentencePiece gives the dummy prefix to the text after a special as well (llama.cpp).
  EXPECT_EQ(Llama2Gguf().Encode("<s>Hello", false, true), (Ids{1, 15043}));
  EXPECT_EQ(Llama2c().Encode("<s>Hello", false, true), (Ids{1, 15043}));
}

// ---- invalid UTF-8 ----

TEST(Utf8, SanitizeReplacesEachMaximalSubpart) {
  using internal::SanitizeUtf8;
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(SanitizeUtf8("abc"), "abc");
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b"),
            "a" + r + "b");
  EXPECT_EQ(SanitizeUtf8("\xC0\x80"), r + r);  // overlong lead, then a lone continuation
  EXPECT_EQ(SanitizeUtf8("\xE4\xB8"), r);      // truncated 3-byte character: one replacement
  EXPECT_EQ(SanitizeUtf8("\xE4\xB8x"), r + "x");
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), r + r + r);          // surrogate: E0..9F only after ED
  EXPECT_EQ(SanitizeUtf8("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\xA6\x99"), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(SanitizeUtf8(std::string("\0", 1)), std::string("\0", 1));
  EXPECT_TRUE(internal::IsValidUtf8("\xE6\x9D\xB1\xE4\xBA\xAC"));
  EXPECT_FALSE(internal::IsValidUtf8("\xE6\x9D"));
}

TEST(Utf8, InvalidInputEncodesAsReplacementCharacter) {
  const std::string bad = "caf\xC3 ok \xFF\xFE end \xE4\xB8";
  const std::string fixed = "caf\xEF\xBF\xBD ok \xEF\xBF\xBD\xEF\xBF\xBD end \xEF\xBF\xBD";
  for (const Tokenizer* t : {&Llama3(), &Llama4(), &Llama2c(), &Llama2Gguf()}) {
    const Ids ids = t->Encode(bad, false, false);
    EXPECT_EQ(ids, t->Encode(fixed, false, false)) << t->kind();
    EXPECT_EQ(t->Decode(ids, true), fixed) << t->kind();
  }
  EXPECT_EQ(Llama3().Decode(Llama3().Encode("\xFF", false, false), true), "\xEF\xBF\xBD");
  // Llama 2 has a U+FFFD piece of its own.
  EXPECT_EQ(Llama2c().TokenId("\xEF\xBF\xBD"), 30140);
  EXPECT_EQ(Llama2c().Encode("\xFF", false, false), (Ids{29871, 30140}));
  EXPECT_EQ(Llama2Gguf().Encode("\xFF", false, false), (Ids{29871, 30140}));
}

// ---- decoding ----

TEST(Decode, RoundTripsEveryVector) {
  struct Case {
    const Tokenizer* tok;
    const char* stem;
  };
  const Case cases[] = {{&Llama3(), "llama3-tokenizer/ggml-vocab-llama-bpe.gguf"},
                        {&Llama4(), "llama4-tokenizer/ggml-vocab-llama4.gguf"},
                        {&Llama2c(), "llama2-tokenizer/ggml-vocab-llama-spm.gguf"},
                        {&Llama2Gguf(), "llama2-tokenizer/ggml-vocab-llama-spm.gguf"}};
  for (const Case& c : cases) {
    for (const Vector& v : ReadVectors(SharedPath(std::string("models/") + c.stem))) {
      EXPECT_EQ(c.tok->Decode(c.tok->Encode(v.text, false, false), true), v.text) << c.tok->kind();
      EXPECT_EQ(c.tok->Decode(c.tok->Encode(v.text, true, false), true), v.text) << c.tok->kind();
    }
  }
}

TEST(Decode, SkipSpecialAndSpmLeadingSpace) {
  const Tokenizer& t = Llama3();
  const Ids ids = t.Encode("<|begin_of_text|>hi<|eot_id|>", false, true);
  EXPECT_EQ(ids, (Ids{128000, 6151, 128009}));
  EXPECT_EQ(t.Decode(ids, true), "hi");
  EXPECT_EQ(t.Decode(ids, false), "<|begin_of_text|>hi<|eot_id|>");
  // SentencePiece: the dummy-prefix space of the first piece goes, later spaces stay.
  const Tokenizer& s = Llama2Gguf();
  EXPECT_EQ(s.Decode(Ids{1, 15043, 3186}, true), "Hello world");
  EXPECT_EQ(s.Decode(Ids{15043, 3186}, true), "Hello world");
  EXPECT_EQ(s.Decode(Ids{3186}, true), "world");
  EXPECT_EQ(s.TokenBytes(13), "\n");  // <0x0A>
  EXPECT_EQ(s.TokenPiece(13), "<0x0A>");
  EXPECT_EQ(s.TokenBytes(3186), " world");
  EXPECT_EQ(s.TokenPiece(3186), "\xE2\x96\x81world");
  EXPECT_EQ(s.TokenBytes(1), "<s>");
  EXPECT_EQ(s.TokenId("<s>"), 1);
  // Out-of-range ids are ignored, never a crash.
  EXPECT_EQ(t.Decode(Ids{-1, 6151, 1 << 30}, true), "hi");
  EXPECT_EQ(t.TokenBytes(-5), "");
  EXPECT_EQ(t.TokenPiece(1 << 30), "");
}

// ---- streaming ----

std::string StreamAll(const Tokenizer& t, const Ids& ids, std::vector<std::string>* pushes = nullptr) {
  StreamDecoder d(t);
  std::string out;
  for (int32_t id : ids) {
    std::string s = d.Push(id);
    EXPECT_TRUE(internal::IsValidUtf8(s)) << t.kind();
    if (pushes) pushes->push_back(s);
    out += s;
  }
  return out + d.Flush();
}

TEST(StreamDecoder, HoldsBackSplitCharacters) {
  // Llama 2 spells the llama emoji as four byte tokens: nothing comes out until the fourth.
  const Tokenizer& s = Llama2Gguf();
  const Ids ids = s.Encode("\xF0\x9F\xA6\x99!", true, false);
  std::vector<std::string> pushes;
  EXPECT_EQ(StreamAll(s, ids, &pushes), "\xF0\x9F\xA6\x99!");
  ASSERT_GE(pushes.size(), 6u);
  EXPECT_EQ(pushes[2], "");
  EXPECT_EQ(pushes[3], "");
  EXPECT_EQ(pushes[4], "");
  EXPECT_EQ(pushes[5], "\xF0\x9F\xA6\x99");
  // An unfinished character at the end becomes U+FFFD.
  StreamDecoder d(s);
  EXPECT_EQ(d.Push(0xF0 + 3), "");
  EXPECT_EQ(d.Push(0x9F + 3), "");
  EXPECT_EQ(d.Flush(), "\xEF\xBF\xBD");
  // ... and an interrupted one too, followed by what interrupted it.
  StreamDecoder d2(s);
  EXPECT_EQ(d2.Push(0xE4 + 3), "");
  EXPECT_EQ(d2.Push(0x41 + 3),
            "\xEF\xBF\xBD"
            "A");
}

TEST(StreamDecoder, MatchesDecodeOnEveryVector) {
  for (const Tokenizer* t : {&Llama3(), &Llama4(), &Llama2c(), &Llama2Gguf()}) {
    const char* stem = t == &Llama3()   ? "llama3-tokenizer/ggml-vocab-llama-bpe.gguf"
                       : t == &Llama4() ? "llama4-tokenizer/ggml-vocab-llama4.gguf"
                                        : "llama2-tokenizer/ggml-vocab-llama-spm.gguf";
    for (const Vector& v : ReadVectors(SharedPath(std::string("models/") + stem))) {
      const Ids ids = t->Encode(v.text, true, false);
      EXPECT_EQ(StreamAll(*t, ids), t->Decode(ids, true)) << t->kind() << ": " << v.text;
    }
  }
  // Tiktoken splits some emoji across tokens (the llama3 reference: 🦙 is [9468, 99, 247]).
  const Ids llama = {9468, 99, 247};
  std::vector<std::string> pushes;
  EXPECT_EQ(StreamAll(Llama3(), llama, &pushes), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(pushes[0], "");
}

TEST(StreamDecoder, SpecialsSkippedOrShown) {
  const Tokenizer& t = Llama4();
  const Ids ids = {200005, 1556, 200006};
  StreamDecoder skip(t);
  std::string a;
  for (int32_t id : ids) a += skip.Push(id);
  EXPECT_EQ(a, "user");
  StreamDecoder show(t, /*skip_special=*/false);
  std::string b;
  for (int32_t id : ids) b += show.Push(id);
  EXPECT_EQ(b, "<|header_start|>user<|header_end|>");
}

// ---- GGUF gpt2 ----

// A Llama 3 GGUF `gpt2` vocabulary built from the tiktoken ranks: tokens in the byte-level alphabet, merges
// derived from the ranks (every split of a token into two tokens, ordered by the rank of the whole, then of the
// left part: llama4.md 7.5), specials as CONTROL.
std::string BuildLlama3Gpt2Gguf(const std::string& pre) {
  const Tokenizer& t = Llama3();
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::unordered_map<std::string, int32_t> rank;
  for (int32_t id = 0; id < 128000; ++id) {
    const std::string bytes = t.TokenBytes(id);
    rank.emplace(bytes, id);
    tokens.push_back(internal::ByteLevelEncode(bytes));
    types.push_back(1);
  }
  std::vector<std::string> merges;
  std::vector<std::pair<int32_t, std::string>> splits;  // (left rank, merge) for one token
  for (int32_t id = 0; id < 128000; ++id) {
    const std::string bytes = t.TokenBytes(id);
    splits.clear();
    for (size_t k = 1; k < bytes.size(); ++k) {
      auto l = rank.find(bytes.substr(0, k));
      auto r = rank.find(bytes.substr(k));
      if (l == rank.end() || r == rank.end()) continue;
      splits.emplace_back(l->second, tokens[l->second] + " " + tokens[r->second]);
    }
    std::sort(splits.begin(), splits.end());
    for (auto& s : splits) merges.push_back(std::move(s.second));
  }
  for (int32_t id = 128000; id < t.vocab_size(); ++id) {
    tokens.push_back(t.TokenPiece(id));
    types.push_back(3);
  }
  GgufBuilder b;
  b.Str("general.architecture", "llama");
  b.Str("tokenizer.ggml.model", "gpt2");
  b.Str("tokenizer.ggml.pre", pre);
  b.StrArray("tokenizer.ggml.tokens", tokens);
  b.I32Array("tokenizer.ggml.token_type", types);
  b.StrArray("tokenizer.ggml.merges", merges);
  b.U32("tokenizer.ggml.bos_token_id", 128000);
  b.U32("tokenizer.ggml.eos_token_id", 128009);
  b.U32("tokenizer.ggml.eot_token_id", 128009);
  return b.Finish();
}

TEST(Gpt2Gguf, Llama3FromTiktokenRanksPassesEveryVector) {
  const std::string bytes = BuildLlama3Gpt2Gguf("llama-bpe");
  auto tok = MustLoad(FromGgufBytes(bytes, "llama3-gpt2.gguf"));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), "gpt2");
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->bos_id(), 128000);
  Ids stops = tok->stop_ids();
  std::sort(stops.begin(), stops.end());
  EXPECT_EQ(stops, (Ids{128001, 128008, 128009}));  // no EOS key: end of text, eom and eot by name
  const auto v = ReadVectors(SharedPath("models/llama3-tokenizer/ggml-vocab-llama-bpe.gguf"));
  EXPECT_EQ(CheckVectors(*tok, v, "gpt2 gguf"), 46);
  const auto j = ReadJson(SharedPath("models/llama3-tokenizer/reference_ids.json"));
  for (const auto& c : j["plain_text_no_specials"]) {
    EXPECT_EQ(tok->Encode(c["text"].get<std::string>(), false, false), JsonIds(c["ids"])) << c["text"];
  }
  for (const auto& c : j["with_special_tokens_allowed"]) {
    EXPECT_EQ(tok->Encode(c["text"].get<std::string>(), false, true), JsonIds(c["ids"])) << c["text"];
  }
  EXPECT_EQ(tok->TokenPiece(220), "\xC4\xA0");
  EXPECT_EQ(tok->TokenId("\xC4\xA0"), 220);
  EXPECT_EQ(tok->TokenId("<|eot_id|>"), 128009);
  for (const Vector& vec : v) EXPECT_EQ(tok->Decode(tok->Encode(vec.text, true, false), true), vec.text);

  // Written to disk, LoadTokenizer finds it by its magic.
  const std::string path = TempDir("tokenizer_gpt2") + "/vocab.gguf";
  WriteBytes(path, bytes);
  auto from_file = MustLoad(LoadTokenizer(path));
  ASSERT_NE(from_file, nullptr);
  EXPECT_EQ(from_file->Encode("Hello world", false, false), (Ids{9906, 1917}));
}

// A hand-made vocabulary where merge order, not token ids, decides (GPT-2 semantics, no whole-piece rule).
std::string SmallGpt2(const std::vector<std::string>& merges, const std::string& pre = "gpt2") {
  // ids: a b c ab bc abc Ġ Ġa <x> <x>y
  std::vector<std::string> tokens = {"a",
                                     "b",
                                     "c",
                                     "ab",
                                     "bc",
                                     "abc",
                                     "\xC4\xA0",
                                     "\xC4\xA0"
                                     "a",
                                     "<x>",
                                     "<x>y"};
  std::vector<int32_t> types = {1, 1, 1, 1, 1, 1, 1, 1, 3, 3};
  GgufBuilder b;
  b.Str("tokenizer.ggml.model", "gpt2");
  b.Str("tokenizer.ggml.pre", pre);
  b.StrArray("tokenizer.ggml.tokens", tokens);
  b.I32Array("tokenizer.ggml.token_type", types);
  b.StrArray("tokenizer.ggml.merges", merges);
  b.I32("tokenizer.ggml.bos_token_id", -1);
  b.U32("tokenizer.ggml.eos_token_id", 8);
  return b.Finish();
}

TEST(Gpt2Gguf, MergeOrderDecides) {
  auto bc_first = MustLoad(FromGgufBytes(SmallGpt2({"b c", "a b", "a bc", "\xC4\xA0 a"}), "small"));
  auto ab_first = MustLoad(FromGgufBytes(SmallGpt2({"a b", "b c", "ab c", "\xC4\xA0 a"}), "small"));
  auto no_abc = MustLoad(FromGgufBytes(SmallGpt2({"a b", "b c", "\xC4\xA0 a"}), "small"));
  ASSERT_NE(bc_first, nullptr);
  ASSERT_NE(ab_first, nullptr);
  ASSERT_NE(no_abc, nullptr);
  EXPECT_EQ(bc_first->Encode("abc", false, false), Ids{5});
  EXPECT_EQ(ab_first->Encode("abc", false, false), Ids{5});
  // Without a merge to "abc", the whole word is NOT emitted directly under the gpt2 pre-tokenizer.
  EXPECT_EQ(no_abc->Encode("abc", false, false), (Ids{3, 2}));
  EXPECT_EQ(no_abc->Encode("abc a", false, false), (Ids{3, 2, 7}));
  // A byte without a token is dropped, as llama.cpp does.
  EXPECT_EQ(no_abc->Encode("az", false, false), Ids{0});
  EXPECT_EQ(no_abc->bos_id(), std::nullopt);
  // Longest special wins; without parse_special they are text (here: untokenizable bytes, dropped).
  EXPECT_EQ(no_abc->Encode("<x>ya", false, true), (Ids{9, 0}));
  EXPECT_EQ(no_abc->Encode("<x>a", false, true), (Ids{8, 0}));
  EXPECT_EQ(no_abc->Encode("<x>a", false, false), Ids{0});
  EXPECT_EQ(no_abc->stop_ids(), Ids{8});
  // With the Llama 3 pre-tokenizer (ignore_merges), a word that is a token is emitted whole.
  auto whole = MustLoad(FromGgufBytes(SmallGpt2({"a b", "b c", "\xC4\xA0 a"}, "llama-bpe"), "small"));
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(whole->Encode("abc", false, false), Ids{5});
}

TEST(Gpt2Gguf, BadVocabulariesAreErrors) {
  auto expect_error = [](const std::string& bytes, StatusCode code, const std::string& what) {
    auto r = FromGgufBytes(bytes, "bad.gguf");
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), code) << what << ": " << r.status().ToString();
    EXPECT_TRUE(Contains(r.status(), "bad.gguf")) << r.status().ToString();
  };
  expect_error(SmallGpt2({"a"}), StatusCode::kCorruption, "merge without separator");
  expect_error(SmallGpt2({"a q"}), StatusCode::kCorruption, "merge of a non-token");
  expect_error(SmallGpt2({"c a"}), StatusCode::kCorruption, "merge result not a token");
  expect_error(SmallGpt2({}, "klingon"), StatusCode::kNotSupported, "unknown pre-tokenizer");
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "bert");
    b.StrArray("tokenizer.ggml.tokens", {"a"});
    expect_error(b.Finish(), StatusCode::kNotSupported, "unknown model");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "llama");
    expect_error(b.Finish(), StatusCode::kCorruption, "no tokens");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "llama");
    b.StrArray("tokenizer.ggml.tokens", {"a", "b"});
    b.F32Array("tokenizer.ggml.scores", {0.0f});
    expect_error(b.Finish(), StatusCode::kCorruption, "scores count");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "llama");
    b.StrArray("tokenizer.ggml.tokens", {"a", "b"});
    b.F32Array("tokenizer.ggml.scores", {0.0f, std::numeric_limits<float>::quiet_NaN()});
    expect_error(b.Finish(), StatusCode::kCorruption, "NaN score");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "llama");
    b.StrArray("tokenizer.ggml.tokens", {"a", "b"});
    b.I32Array("tokenizer.ggml.token_type", {1, 9});
    expect_error(b.Finish(), StatusCode::kCorruption, "token type");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "llama");
    b.StrArray("tokenizer.ggml.tokens", {"a", "b"});
    b.U32("tokenizer.ggml.bos_token_id", 2);
    expect_error(b.Finish(), StatusCode::kCorruption, "bos out of range");
  }
  {
    GgufBuilder b;
    b.Str("tokenizer.ggml.model", "gpt2");
    b.StrArray("tokenizer.ggml.tokens", {"a", "a"});
    b.StrArray("tokenizer.ggml.merges", {});
    expect_error(b.Finish(), StatusCode::kCorruption, "duplicate token");
  }
}

TEST(Gpt2Gguf, TruncatedAtEveryByteIsAnError) {
  const std::string bytes = SmallGpt2({"a b", "b c", "\xC4\xA0 a"});
  for (size_t n = 0; n + 1 < bytes.size(); ++n) {
    const std::string cut = bytes.substr(0, n);
    auto r = FromGgufBytes(cut, "cut.gguf");
    // Cutting only the final alignment padding leaves a complete file.
    if (r.ok()) {
      EXPECT_GE(n, bytes.size() - 32) << n;
    }
  }
}

// ---- damaged tiktoken files ----

std::string SmallTiktoken(int n_lines) {
  std::string s;
  for (int i = 0; i < n_lines; ++i) s += "QQ== " + std::to_string(i) + "\n";
  return s;
}

TEST(TiktokenDamage, EachKindIsAnErrorNamingTheFile) {
  auto parse = [](const std::string& data) { return internal::ParseTiktoken(data, "ranks.tiktoken"); };
  struct Case {
    std::string data;
    StatusCode code;
    std::string needle;
  };
  const Case cases[] = {
      {"", StatusCode::kNotSupported, "0 ranks"},
      {SmallTiktoken(5), StatusCode::kNotSupported, "5 ranks"},
      {"QQ==\n", StatusCode::kCorruption, "no space"},
      {"Q!== 0\n", StatusCode::kCorruption, "bad base64"},
      {"QQ= 0\n", StatusCode::kCorruption, "bad base64"},
      {"QQ== -1\n", StatusCode::kCorruption, "bad rank"},
      {"QQ== 99999999999\n", StatusCode::kCorruption, "bad rank"},
      {"QQ== 0\n\nQg== 1\n", StatusCode::kCorruption, "line 2 is empty"},
  };
  for (const Case& c : cases) {
    auto r = parse(c.data);
    ASSERT_FALSE(r.ok()) << c.needle;
    EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status(), c.needle)) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status(), "ranks.tiktoken")) << r.status().ToString();
  }
}

TEST(TiktokenDamage, RankProblemsInAFullSizeFile) {
  std::string data = ReadText(SharedPath("models/llama3-tokenizer/tokenizer.model"));
  // Truncation anywhere loses ranks.
  for (size_t cut : {size_t{0}, size_t{1}, data.size() / 2, data.size() - 5}) {
    auto r = internal::ParseTiktoken(std::string_view(data).substr(0, cut), "cut");
    EXPECT_FALSE(r.ok()) << cut;
  }
  // Duplicate rank: make line 2 say rank 0.
  std::string dup = data;
  const size_t l2 = dup.find('\n') + 1;
  const size_t sp = dup.find(' ', l2);
  const size_t eol = dup.find('\n', l2);
  dup.replace(sp + 1, eol - sp - 1, "0");
  auto r = internal::ParseTiktoken(dup, "dup");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "rank 0 appears on lines 1 and 2")) << r.status().ToString();
  // Rank out of range.
  std::string big = data;
  big.replace(sp + 1, eol - sp - 1, "128000");
  r = internal::ParseTiktoken(big, "big");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "not below")) << r.status().ToString();
  // Duplicate bytes: line 2 spells the same token as line 1.
  std::string same = data;
  same.replace(l2, sp - l2, data.substr(0, data.find(' ')));
  r = internal::ParseTiktoken(same, "same");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status(), "same bytes")) << r.status().ToString();
}

// ---- damaged llama2.c tokenizers ----

std::string Llama2cBytes(int32_t max_len, const std::vector<std::pair<float, std::string>>& toks) {
  std::string s;
  auto put = [&](auto x) { s.append(reinterpret_cast<const char*>(&x), sizeof(x)); };
  put(max_len);
  for (const auto& [score, text] : toks) {
    put(score);
    put(static_cast<int32_t>(text.size()));
    s += text;
  }
  return s;
}

std::vector<std::pair<float, std::string>> TinyPieces() {
  return {{0, "<unk>"}, {0, "\n<s>\n"}, {0, "\n</s>\n"}, {0, " "}, {0, "a"}, {0, "b"}, {-1, " a"}, {-2, " ab"}};
}

TEST(Llama2cDamage, TinyFileWorks) {
  auto tok = MustLoad(internal::ParseLlama2cTokenizer(Llama2cBytes(6, TinyPieces()), 8, "tiny.bin"));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("ab", true, false), (Ids{1, 7}));
  EXPECT_EQ(tok->Encode("ab a", true, false), (Ids{1, 7, 6}));
  // No byte tokens and no piece for 'z': <unk>.
  EXPECT_EQ(tok->Encode("z", false, false), (Ids{3, 0}));
}

TEST(Llama2cDamage, TruncatedAtEveryByte) {
  const std::string full = Llama2cBytes(6, TinyPieces());
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = internal::ParseLlama2cTokenizer(std::string_view(full).substr(0, n), 8, "tiny.bin");
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << r.status().ToString();
    // Counting to the end instead: only cuts on a record boundary with >= 3 records can parse.
    auto counted = internal::ParseLlama2cTokenizer(std::string_view(full).substr(0, n), std::nullopt, "tiny.bin");
    if (counted.ok()) {
      EXPECT_GE((*counted)->vocab_size(), 3);
    }
  }
}

TEST(Llama2cDamage, EachKindIsAnError) {
  auto expect = [](const std::string& data, std::optional<int32_t> vocab, StatusCode code, const std::string& needle) {
    auto r = internal::ParseLlama2cTokenizer(data, vocab, "bad.bin");
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status(), needle)) << r.status().ToString();
    EXPECT_TRUE(Contains(r.status(), "bad.bin")) << r.status().ToString();
  };
  auto pieces = TinyPieces();
  expect(Llama2cBytes(0, pieces), 8, StatusCode::kCorruption, "max_token_length 0");
  expect(Llama2cBytes(-7, pieces), 8, StatusCode::kCorruption, "max_token_length -7");
  expect(Llama2cBytes(1 << 20, pieces), 8, StatusCode::kCorruption, "not a llama2.c tokenizer.bin");
  expect(Llama2cBytes(5, pieces), 8, StatusCode::kCorruption, "length 6 outside [0, max_token_length 5]");
  expect(Llama2cBytes(6, pieces), 7, StatusCode::kCorruption, "bytes left after");
  expect(Llama2cBytes(6, pieces), 9, StatusCode::kCorruption, "truncated");
  expect(Llama2cBytes(6, pieces), 0, StatusCode::kInvalidArgument, "must be positive");
  expect(Llama2cBytes(6, {{0, "a"}, {0, "b"}}), std::nullopt, StatusCode::kCorruption, "at least");
  auto nan = pieces;
  nan[4].first = std::numeric_limits<float>::quiet_NaN();
  expect(Llama2cBytes(6, nan), 8, StatusCode::kCorruption, "not a finite number");
  // A negative length.
  std::string neg = Llama2cBytes(6, pieces);
  const int32_t minus = -5;
  std::memcpy(&neg[4 + 4], &minus, 4);
  expect(neg, 8, StatusCode::kCorruption, "length -5");
  // A huge count never turns into a huge allocation.
  expect(Llama2cBytes(6, pieces), 2000000000, StatusCode::kCorruption, "truncated");
}

// ---- detection ----

TEST(LoadTokenizer, DetectsEachKind) {
  auto dir = MustLoad(LoadTokenizer(SharedPath("models/llama3-tokenizer")));
  ASSERT_NE(dir, nullptr);
  EXPECT_EQ(dir->kind(), "tiktoken");
  EXPECT_EQ(dir->vocab_size(), 128256);
  auto l2c = MustLoad(LoadTokenizer(SharedPath("models/llama2-tokenizer/tokenizer.bin"), 32000));
  ASSERT_NE(l2c, nullptr);
  EXPECT_EQ(l2c->kind(), "llama2c");
  auto counted = MustLoad(LoadTokenizer(SharedPath("models/llama2-tokenizer/tokenizer.bin")));
  ASSERT_NE(counted, nullptr);
  EXPECT_EQ(counted->vocab_size(), 32000);

  auto spm_proto = LoadTokenizer(SharedPath("models/llama2-tokenizer"));
  ASSERT_FALSE(spm_proto.ok());
  EXPECT_EQ(spm_proto.status().code(), StatusCode::kNotSupported) << spm_proto.status().ToString();
  EXPECT_TRUE(Contains(spm_proto.status(), "SentencePiece")) << spm_proto.status().ToString();

  // The Hugging Face layout: original/tokenizer.model.
  const std::string hf = TempDir("tokenizer_hf_layout");
  std::filesystem::create_directories(hf + "/original");
  std::filesystem::create_symlink(SharedPath("models/llama4-tokenizer/tokenizer.model"),
                                  hf + "/original/tokenizer.model");
  auto from_hf = MustLoad(LoadTokenizer(hf));
  ASSERT_NE(from_hf, nullptr);
  EXPECT_EQ(from_hf->vocab_size(), 202048);

  auto missing = LoadTokenizer(SharedPath("models/no-such-file"));
  ASSERT_FALSE(missing.ok());
  auto empty_dir = LoadTokenizer(TempDir("tokenizer_empty"));
  ASSERT_FALSE(empty_dir.ok());
  EXPECT_TRUE(Contains(empty_dir.status(), "tokenizer.model")) << empty_dir.status().ToString();

  // A llama2.c checkpoint is not a tokenizer.
  auto model = LoadTokenizer(SharedPath("models/stories260K/stories260K.bin"));
  EXPECT_FALSE(model.ok());
  // The vocabulary size of the model must agree with the file.
  auto wrong = LoadLlama2cTokenizer(SharedPath("models/stories260K/tok512.bin"), 500);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(Contains(wrong.status(), "tok512.bin")) << wrong.status().ToString();
}

TEST(LoadTokenizer, GgufObjectAndPathAgree) {
  auto g = formats::GgufFile::Open(SharedPath("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf"));
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto tok = MustLoad(LoadTokenizerFromGguf(**g));
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 32000);
  Ids stops = tok->stop_ids();
  EXPECT_EQ(stops, Ids{2});
  EXPECT_EQ(tok->Encode("Hello world", true, false), Llama2Gguf().Encode("Hello world", true, false));
}

// Runs longer than PCRE2's default match limit (10 million backtracking steps) split as shorter ones do: the
// white-space alternatives scan a whole run and give it back, so with the default a run of more than 10 million
// characters failed every match and was cut into one-character words, at a full limit's cost each (hours).
TEST(PreTokenizerTest, RunsBeyondTheDefaultMatchLimitSplitAsShortOnesDo) {
  for (auto kind :
       {internal::PreTokenizerKind::kO200k, internal::PreTokenizerKind::kCl100k, internal::PreTokenizerKind::kGpt2}) {
    const internal::PreTokenizer& p = internal::GetPreTokenizer(kind);
    const size_t n = 10'500'000;
    const std::string spaces(n, ' ');
    std::vector<std::string_view> words;
    p.Split(spaces, &words);
    ASSERT_EQ(words.size(), 1u);  // trailing white space is one word
    EXPECT_EQ(words[0].size(), n);
    words.clear();
    const std::string then_word = spaces + "x";
    p.Split(then_word, &words);  // the last space goes with the word after it
    ASSERT_EQ(words.size(), 2u);
    EXPECT_EQ(words[0].size(), n - 1);
    EXPECT_EQ(words[1], " x");
    words.clear();
    const std::string newlines = spaces + "\n" + spaces;
    p.Split(newlines, &words);
    if (kind == internal::PreTokenizerKind::kGpt2) {
      ASSERT_EQ(words.size(), 1u);  // GPT-2's pattern has no newline rule
    } else {
      ASSERT_EQ(words.size(), 2u);  // up to the last newline, then the rest
      EXPECT_EQ(words[0].size(), n + 1);
      EXPECT_EQ(words[1].size(), n);
    }
  }
}

}  // namespace
}  // namespace herd::tokenizer
