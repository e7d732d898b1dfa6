// Tests of core: Status/Result, dtype table, half/bf16/fp8 conversions, TensorView, thread pool, base64, JSON nesting.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/base64.h"
#include "core/dtype.h"
#include "core/half.h"
#include "core/json.h"
#include "core/mapped_file.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace herd {
namespace {

Result<int> ParsePositive(int v) {
  if (v <= 0) return InvalidArgument("value must be positive, got " + std::to_string(v));
  return v;
}

Status UseIt(int v, int* out) {
  HERD_ASSIGN_OR_RETURN(*out, ParsePositive(v));
  return Status::Ok();
}

TEST(StatusTest, ResultCarriesValueOrError) {
  int out = 0;
  EXPECT_TRUE(UseIt(3, &out).ok());
  EXPECT_EQ(out, 3);
  Status s = UseIt(-1, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.ToString(), "Invalid argument: value must be positive, got -1");
  EXPECT_EQ(s.WithContext("flag -n").message(), "flag -n: value must be positive, got -1");
}

TEST(DTypeTest, TableMatchesSpec) {
  EXPECT_EQ(RowBytes(DType::kQ8_0, 64), 68);
  EXPECT_EQ(RowBytes(DType::kQ4_0, 32), 18);
  EXPECT_EQ(RowBytes(DType::kQ4_K, 256), 144);
  EXPECT_EQ(RowBytes(DType::kQ6_K, 512), 420);
  EXPECT_EQ(RowBytes(DType::kBF16, 10), 20);
  EXPECT_FALSE(GetDTypeTraits(4).has_value());  // retired ggml id
  EXPECT_EQ(ParseDType("q8_0"), DType::kQ8_0);
  EXPECT_EQ(ParseDType("BF16"), DType::kBF16);
  EXPECT_FALSE(ParseDType("q9_9").has_value());
  EXPECT_FALSE(ParseDType("Q8_0R").has_value());  // an in-memory layout, never a name a user or file gives
  EXPECT_EQ(RowBytes(DType::kQ8_0R, 256), 272);
}

TEST(HalfTest, F16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), h) << "h=" << h;
  }
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);                      // overflow to inf
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
}

TEST(HalfTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(F32ToBf16(1.0f), 0x3f80);
  EXPECT_EQ(Bf16ToF32(0x3f80), 1.0f);
  float f;
  uint32_t bits = 0x3f808000u;  // exactly halfway between 0x3f80 and 0x3f81: ties to even (0x3f80)
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(F32ToBf16(f), 0x3f80);
  bits = 0x3f818000u;
  std::memcpy(&f, &bits, 4);
  EXPECT_EQ(F32ToBf16(f), 0x3f82);
}

TEST(HalfTest, Fp8E4M3) {
  EXPECT_EQ(F8E4M3ToF32(0x7e), 448.0f);
  EXPECT_TRUE(std::isnan(F8E4M3ToF32(0x7f)));
  EXPECT_EQ(F8E4M3ToF32(0x01), std::ldexp(1.0f / 8.0f, -6));
  EXPECT_EQ(F8E4M3ToF32(0x38), 1.0f);
  EXPECT_EQ(F8E4M3ToF32(0xb8), -1.0f);
}

TEST(TensorTest, MakeTensorViewChecksBytes) {
  std::vector<uint8_t> buf(68);
  auto v = MakeTensorView(DType::kQ8_0, {1, 64}, buf.data(), 68, "test");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->Rows(), 1);
  EXPECT_EQ(v->Cols(), 64);
  EXPECT_FALSE(MakeTensorView(DType::kQ8_0, {1, 64}, buf.data(), 67, "test").ok());
  EXPECT_FALSE(MakeTensorView(DType::kQ8_0, {2, 48}, buf.data(), 68, "test").ok());  // not a block multiple
  EXPECT_TRUE(MakeTensorView(DType::kF32, {17}, buf.data(), 68, "test").ok());
  EXPECT_FALSE(MakeTensorView(DType::kF32, {1, 2, 3, 4, 5}, buf.data(), 480, "test").ok());  // > 4 dims
}

TEST(TensorTest, WeightMapRejectsDuplicates) {
  WeightMap m;
  TensorView v;
  EXPECT_TRUE(m.Add("a", v).ok());
  EXPECT_EQ(m.Add("a", v).code(), StatusCode::kCorruption);
  EXPECT_NE(m.Find("a"), nullptr);
  EXPECT_EQ(m.Find("b"), nullptr);
}

TEST(ThreadPoolTest, ParallelForCoversRangeOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
      for (int64_t grain : {1, 4, 32}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        pool.ParallelFor(
            n,
            [&](int64_t b, int64_t e) {
              EXPECT_EQ(b % grain, 0);
              for (int64_t i = b; i < e; ++i) hits[i]++;
            },
            grain);
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      }
    }
  }
}

// AnonymousMemory::Populate: untouched memory is not resident (mincore); after Populate every page is, and still zero.
TEST(AnonymousMemoryTest, PopulateFaultsEveryPageIn) {
  constexpr size_t kBytes = size_t{8} << 20, kPages = kBytes / 4096;
  auto m = AnonymousMemory::Allocate(kBytes);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  std::vector<unsigned char> resident(kPages);
  const auto count_resident = [&] {
    EXPECT_EQ(mincore((*m)->data(), kBytes, resident.data()), 0);
    size_t n = 0;
    for (unsigned char r : resident) n += r & 1;
    return n;
  };
  EXPECT_LT(count_resident(), kPages) << "fresh memory is resident already: the test cannot see Populate work";
  (*m)->Populate();
  EXPECT_EQ(count_resident(), kPages);
  for (size_t i = 0; i < kBytes; i += 4093) ASSERT_EQ((*m)->data()[i], 0);
}

// AnonymousMemory: zeroed and 2 MiB-aligned; a size beyond the available memory is ResourceExhausted at once
// (not an out-of-memory kill when the pages are touched).
TEST(AnonymousMemoryTest, AlignedZeroedAndRefusesTooMuch) {
  auto m = AnonymousMemory::Allocate(3 << 20);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*m)->data()) % (2 << 20), 0u);
  EXPECT_EQ((*m)->size(), uint64_t{3} << 20);
  EXPECT_EQ((*m)->data()[0], 0);
  EXPECT_EQ((*m)->data()[(3 << 20) - 1], 0);
  auto huge = AnonymousMemory::Allocate(uint64_t{1} << 50);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(huge.status().message().find("MiB"), std::string::npos) << huge.status().ToString();
}

TEST(ThreadPoolTest, ManySmallJobs) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 2000; ++rep) pool.Run([&](int idx) { sum += idx; });
  EXPECT_EQ(sum.load(), 2000 * (0 + 1 + 2 + 3));
}

TEST(Base64Test, DecodesPaddedStandardAlphabetOnly) {
  std::string out;
  ASSERT_TRUE(DecodeBase64("aGVyZA==", &out));
  EXPECT_EQ(out, "herd");
  ASSERT_TRUE(DecodeBase64("aGVyZHM=", &out));
  EXPECT_EQ(out, "herds");
  ASSERT_TRUE(DecodeBase64("+/+/", &out));
  EXPECT_EQ(out, std::string("\xfb\xff\xbf"));
  for (const char* bad : {"", "aGVyZA", "aGVy ZA==", "aGVy\nZA==", "aG=yZA==", "a===", "aGVyZA-_", "=AAA"}) {
    EXPECT_FALSE(DecodeBase64(bad, &out)) << bad;
  }
  EXPECT_EQ(EncodeBase64("herd"), "aGVyZA==");
  EXPECT_EQ(EncodeBase64("herds"), "aGVyZHM=");
  EXPECT_EQ(EncodeBase64(""), "");
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(static_cast<char>((i * 7919) & 0xFF));
  for (size_t n : {1u, 2u, 3u, 4u, 999u, 1000u}) {
    ASSERT_TRUE(DecodeBase64(EncodeBase64(bytes.substr(0, n)), &out));
    EXPECT_EQ(out, bytes.substr(0, n));
  }
}

std::string Nested(int levels, const std::string& inner = "1") {
  return std::string(static_cast<size_t>(levels), '[') + inner + std::string(static_cast<size_t>(levels), ']');
}

TEST(JsonTest, NestingIsCountedOutsideStrings) {
  EXPECT_FALSE(JsonNestsDeeperThan("", 0));
  EXPECT_FALSE(JsonNestsDeeperThan("1", 0));
  EXPECT_TRUE(JsonNestsDeeperThan("[]", 0));
  EXPECT_FALSE(JsonNestsDeeperThan(Nested(5), 5));
  EXPECT_TRUE(JsonNestsDeeperThan(Nested(6), 5));
  EXPECT_FALSE(JsonNestsDeeperThan(R"({"a": [1, {"b": [2]}], "c": {}})", 4));
  EXPECT_TRUE(JsonNestsDeeperThan(R"({"a": [1, {"b": [2]}], "c": {}})", 3));
  // Siblings do not add up; brackets inside strings, escaped quotes included, do not count.
  EXPECT_FALSE(JsonNestsDeeperThan("[[1],[2],[3],[4]]", 2));
  EXPECT_FALSE(JsonNestsDeeperThan(R"(["[[[[", "\"[[[[", {"k\"{{": "]]]]"}])", 2));
  EXPECT_TRUE(JsonNestsDeeperThan(R"(["\\", [[["x"]]]])", 3));  // the escaped backslash ends the string
  // Closing brackets first cannot buy room for deeper nesting later.
  EXPECT_TRUE(JsonNestsDeeperThan("]]]]]" + Nested(3), 2));
}

TEST(JsonTest, ParseJsonBoundedRefusesDeepTextBeforeParsing) {
  bool too_deep = true;
  const nlohmann::json ok = ParseJsonBounded(Nested(kMaxJsonNesting), kMaxJsonNesting, &too_deep);
  EXPECT_FALSE(too_deep);
  ASSERT_FALSE(ok.is_discarded());
  EXPECT_EQ(ok.dump().size(), 2 * static_cast<size_t>(kMaxJsonNesting) + 1);
  // Deep enough to overflow a thread's stack in dump() were it parsed (issue 18: a server died on such a request).
  const nlohmann::ordered_json deep =
      ParseJsonBounded<nlohmann::ordered_json>(Nested(1 << 20), kMaxJsonNesting, &too_deep);
  EXPECT_TRUE(too_deep);
  EXPECT_TRUE(deep.is_discarded());
  const nlohmann::json bad = ParseJsonBounded("[1, 2", kMaxJsonNesting, &too_deep);
  EXPECT_FALSE(too_deep);
  EXPECT_TRUE(bad.is_discarded());
  EXPECT_TRUE(ParseJsonBounded("{\"a\": [[1]]}", 1).is_discarded());
  EXPECT_EQ(ParseJsonBounded("{\"a\": [[1]]}", 3)["a"][0][0], 1);
}

}  // namespace
}  // namespace herd
