// JSON Schema -> GBNF (grammar/json_schema.h), judged by the language of the compiled grammar: every schema below
// is compiled, parsed with ParseGbnf and run through a ByteMatcher over texts that must be accepted and texts
// that must be rejected. Integer and number ranges are checked exhaustively around their bounds, string formats
// against their definitions (dates over the whole calendar) and with random sentences; every refused
// keyword must be named in the error; the corpus in tests/data/json-schemas must compile (and its refused/ part
// must not).
#include "grammar/json_schema.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "test_util.h"

namespace herd::grammar {
namespace {

using nlohmann::json;

const std::string kCorpusDir = std::string(HERD_SOURCE_DIR) + "/tests/data/json-schemas";

// The grammar of `schema_text`, parsed; fails the test (with the GBNF) when either step fails.
std::shared_ptr<const Grammar> CompileSchema(const std::string& schema_text, std::string* gbnf_out = nullptr) {
  Result<std::string> gbnf = JsonSchemaToGbnf(schema_text);
  EXPECT_TRUE(gbnf.ok()) << schema_text << "\n" << gbnf.status().ToString();
  if (!gbnf.ok()) return nullptr;
  if (gbnf_out) *gbnf_out = *gbnf;
  auto g = ParseGbnf(*gbnf);
  EXPECT_TRUE(g.ok()) << schema_text << "\n" << g.status().ToString() << "\n" << *gbnf;
  return g.ok() ? g.value() : nullptr;
}

bool InLanguage(const std::shared_ptr<const Grammar>& g, std::string_view text) {
  ByteMatcher m(g);
  return m.Accept(text) && m.CanEnd();
}

// Every text of `valid` is in the schema's language and none of `invalid` is.
void ExpectLanguage(const std::string& schema, const std::vector<std::string>& valid,
                    const std::vector<std::string>& invalid) {
  std::string gbnf;
  auto g = CompileSchema(schema, &gbnf);
  ASSERT_NE(g, nullptr);
  for (const std::string& text : valid) {
    EXPECT_TRUE(InLanguage(g, text)) << "should accept: " << text << "\nschema: " << schema << "\n" << gbnf;
  }
  for (const std::string& text : invalid) {
    EXPECT_FALSE(InLanguage(g, text)) << "should reject: " << text << "\nschema: " << schema << "\n" << gbnf;
  }
}

// The schema is refused with InvalidArgument and a message containing `needle`.
void ExpectRefused(const std::string& schema, const std::string& needle) {
  Result<std::string> gbnf = JsonSchemaToGbnf(schema);
  ASSERT_FALSE(gbnf.ok()) << "should be refused: " << schema << "\n" << *gbnf;
  EXPECT_EQ(gbnf.status().code(), StatusCode::kInvalidArgument) << gbnf.status().ToString();
  EXPECT_NE(gbnf.status().message().find(needle), std::string::npos)
      << "schema: " << schema << "\nmessage: " << gbnf.status().message() << "\nexpected to contain: " << needle;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared rules and the text conventions

TEST(JsonSchema, AnyValueGrammar) {
  auto g = ParseGbnf(JsonValueGbnf());
  ASSERT_TRUE(g.ok()) << g.status().ToString() << "\n" << JsonValueGbnf();
  for (const char* text : {"0",
                           "-0",
                           "12",
                           "-3.25",
                           "1e5",
                           "1.5E-3",
                           "6.02e+23",
                           "true",
                           "false",
                           "null",
                           "\"\"",
                           "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\"",
                           "\"caf\xC3\xA9 \xF0\x9F\x98\x80\"",
                           "[]",
                           "{}",
                           "[1, [2, {\"a\": null}], \"x\"]",
                           "{\"a\":{\"b\":[true,false]},\"\":0}",
                           "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}",
                           "9999999999999999",
                           "0.1234567890123456"}) {
    EXPECT_TRUE(InLanguage(*g, text)) << text;
  }
  for (const char* text : {" 1",
                           "1 ",
                           "\n{}",
                           "{} ",
                           "01",
                           "+1",
                           "1.",
                           ".5",
                           "1e",
                           "--1",
                           "0x10",
                           "tru",
                           "nul",
                           "\"a",
                           "\"\\x\"",
                           "\"\\u12G4\"",
                           "\"tab\there\"",
                           "[1,]",
                           "[,1]",
                           "{\"a\"}",
                           "{a:1}",
                           "{\"a\":1,}",
                           "[1  ,2]",
                           "10000000000000000",
                           "0.12345678901234567",
                           "1e1234",
                           "NaN",
                           "Infinity",
                           "'a'"}) {
    EXPECT_FALSE(InLanguage(*g, text)) << text;
  }
}

TEST(JsonSchema, AnyObjectGrammar) {
  auto g = ParseGbnf(JsonObjectGbnf());
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  for (const char* text : {"{}", "{ }", "{\"a\": 1}", "{ \"a\" : [1, 2] , \"b\" : {} }", "{\"\\u0041\":\"x\"}"}) {
    EXPECT_TRUE(InLanguage(*g, text)) << text;
  }
  for (const char* text : {"[]", "1", "\"{}\"", "null", " {}", "{} ", "{\"a\":1}}", "{1:2}"}) {
    EXPECT_FALSE(InLanguage(*g, text)) << text;
  }
}

TEST(JsonSchema, WhitespaceConventions) {
  const std::string kWs = R"(ws ::= | " " | "\n" [ \t]{0,20})";
  EXPECT_NE(JsonValueGbnf().find(kWs + "\n"), std::string::npos) << JsonValueGbnf();
  ExpectLanguage(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"array"}},"required":["a"]})",
                 {"{\"a\":1}", "{ \"a\" : 1 }", "{\"a\":1,\"b\":[]}", "{\"a\": 1, \"b\": [ 1 , 2 ]}",
                  "{\n  \"a\": 1,\n  \"b\": []\n}", "{\n\t\t\"a\":1\n}", "{\n" + std::string(20, ' ') + "\"a\":1}"},
                 {" {\"a\":1}", "{\"a\":1} ", "{\"a\":1}\n", "{  \"a\":1}", "{\"a\"\t:1}", "{\"a\":1\n\n}",
                  "{\n" + std::string(21, ' ') + "\"a\":1}", "{\r\n\"a\":1}"});
}

TEST(JsonSchema, TrueAndEmptySchemasAreAnyValue) {
  for (const char* schema : {"true", "{}", R"({"description":"anything","x-note":1})"}) {
    ExpectLanguage(schema, {"1", "\"s\"", "{\"k\":[null]}", "[]", "false"}, {"", " 1", "x"});
  }
}

TEST(JsonSchema, OutputIsDeterministicAndReadable) {
  const std::string schema = R"({"type":"object","properties":{
      "person":{"type":"object","properties":{"address":{"type":"object","properties":{
          "street":{"type":"string","maxLength":80}},"required":["street"]}},"required":["address"]}},
      "required":["person"]})";
  Result<std::string> a = JsonSchemaToGbnf(schema), b = JsonSchemaToGbnf(schema);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->rfind("root ::= ", 0), 0u) << *a;
  EXPECT_NE(a->find("\nperson-address-street ::= \"\\\"\" char{0,80} \"\\\"\"\n"), std::string::npos) << *a;
  // Shared rules appear once.
  for (const char* rule : {"\nws ::= ", "\nchar ::= "}) {
    const size_t first = a->find(rule);
    ASSERT_NE(first, std::string::npos) << rule << "\n" << *a;
    EXPECT_EQ(a->find(rule, first + 1), std::string::npos) << rule << "\n" << *a;
  }
}

TEST(JsonSchema, RuleNamesNeverLookLikeHelperNames) {
  // GBNF readers name the helper rules of groups and repetitions `parent-N`; a rule of ours named so would be
  // redefined (grammar.h's parser did exactly that to `root-1` in an earlier version of this compiler's output).
  const std::string schema = R"({"type":"object","properties":{
      "1":{"type":"array","prefixItems":[{"type":"string","format":"uuid"},
                                         {"type":"integer","exclusiveMinimum":20.5,"exclusiveMaximum":30}]},
      "value":{"anyOf":[{"type":"integer","minimum":0},{"type":"string","maxLength":2}]},
      "string":{"type":"string","minLength":1},"a b":{"enum":["x"]},"é":{"const":1},"":{"type":"null"},
      "x-y":{"type":["integer","null"],"maximum":3}},"required":["1","value"]})";
  std::string gbnf;
  ExpectLanguage(schema,
                 {R"({"1":["123e4567-e89b-12d3-a456-426614174000",21],"value":0})",
                  R"({"1":["123e4567-e89b-12d3-a456-426614174000",29],"value":"ab","string":"s","a b":"x","é":1,)"
                  R"("":null,"x-y":-4})"},
                 {R"({"1":["123e4567-e89b-12d3-a456-426614174000",20],"value":0})",
                  R"({"1":["123e4567-e89b-12d3-a456-426614174000",30],"value":0})",
                  R"({"1":["123e4567-e89b-12d3-a456-426614174000",21],"value":"abc"})",
                  R"({"1":["123e4567-e89b-12d3-a456-426614174000",21],"value":0,"string":""})",
                  R"({"1":["123e4567-e89b-12d3-a456-426614174000",21],"value":0,"x-y":4})"});
  Result<std::string> text = JsonSchemaToGbnf(schema);
  ASSERT_TRUE(text.ok());
  std::istringstream lines(*text);
  std::string line;
  const std::regex helper_like("^([A-Za-z0-9-]+-)?[0-9]+ ::= .*");
  const std::regex well_formed("^[A-Za-z][A-Za-z0-9-]* ::= .*");
  while (std::getline(lines, line)) {
    EXPECT_TRUE(std::regex_match(line, well_formed)) << line;
    EXPECT_FALSE(std::regex_match(line, helper_like)) << line;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Strings

TEST(JsonSchema, StringLengthsCountCodePointsAndEscapes) {
  ExpectLanguage(R"({"type":"string","minLength":2,"maxLength":4})",
                 {"\"ab\"", "\"abcd\"", "\"\xC3\xA9\xC3\xA9\"",            // two 2-byte characters
                  "\"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\"",  // three 4-byte characters
                  "\"\\n\\t\"", "\"a\\u00e9cd\"", "\"\\\"\\\\\\/x\""},
                 {"\"a\"", "\"abcde\"", "\"\xC3\xA9\"", "\"\\u00e9\"", "\"ab\\n\\t\\r\"",
                  "\"\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80\"", "ab",
                  "\"a\nb\"", "\"ab\\x41\"", "\"ab\\u00g1\"", "\"ab\xC3\""});
  ExpectLanguage(R"({"type":"string","maxLength":0})", {"\"\""}, {"\"a\"", "\"\\n\""});
  // An escaped surrogate pair is one character; a lone surrogate is not produced.
  ExpectLanguage(R"({"type":"string","minLength":2,"maxLength":2})",
                 {"\"\\ud83d\\ude00x\"", "\"\\uD83D\\uDE00\\uDBFF\\uDFFF\"", "\"\\uD7FF\\uE000\""},
                 {"\"\\ud83d\\ude00\"", "\"\\ud83dxx\"", "\"\\ude00x\"", "\"\\ud83d\\u0041\""});
  ExpectLanguage(R"({"type":"string","minLength":3})", {"\"abc\"", "\"" + std::string(500, 'x') + "\""},
                 {"\"ab\"", "\"\""});
  ExpectLanguage(R"({"type":"string"})", {"\"\"", "\"\x7F\""}, {"\"\x1F\"", "\"\x01\"", "1"});
}

// ---------------------------------------------------------------------------------------------------------------
// Formats

// Wraps `s` as a JSON string text (the format examples below need no escapes).
std::string Q(const std::string& s) { return "\"" + s + "\""; }
std::vector<std::string> Quoted(const std::vector<std::string>& v) {
  std::vector<std::string> out;
  for (const std::string& s : v) out.push_back(Q(s));
  return out;
}
std::string FormatSchema(const std::string& format, const std::string& extra = "") {
  return R"({"type":"string","format":")" + format + "\"" + extra + "}";
}
void ExpectFormat(const std::string& format, const std::vector<std::string>& valid,
                  const std::vector<std::string>& invalid) {
  ExpectLanguage(FormatSchema(format), Quoted(valid), Quoted(invalid));
}

// A random sentence of the grammar: at each step it ends (where it can) with probability p_end, or continues with
// one of the allowed bytes chosen at random. Printable ASCII only (the formats below are ASCII).
std::string RandomSentence(const std::shared_ptr<const Grammar>& g, std::mt19937_64& rng, double p_end) {
  ByteMatcher m(g);
  std::string out;
  std::uniform_real_distribution<double> coin(0, 1);
  for (;;) {
    if (m.CanEnd() && (coin(rng) < p_end || out.size() > 600)) return out;
    std::vector<char> allowed;
    for (int b = 0x20; b < 0x7F; ++b) {
      const std::string byte(1, static_cast<char>(b));
      if (m.Allows(byte)) allowed.push_back(byte[0]);
    }
    if (allowed.empty()) {
      EXPECT_TRUE(m.CanEnd()) << out;
      return out;
    }
    out += allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    EXPECT_TRUE(m.Accept(out.substr(out.size() - 1)));
  }
}

bool IsLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
bool IsCalendarDate(int y, int m, int d) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return false;
  return d <= kDays[m - 1] + (m == 2 && IsLeapYear(y) ? 1 : 0);
}
std::string DateText(int y, int m, int d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "\"%04d-%02d-%02d\"", y, m, d);
  return buf;
}

TEST(JsonSchemaFormats, DateIsTheCalendar) {
  ExpectFormat(
      "date",
      {"2024-02-29", "2000-02-29", "1600-02-29", "0004-02-29", "2023-02-28", "1999-12-31", "0001-01-01", "9999-12-31",
       "2024-10-30", "2023-11-30", "2023-04-30", "2023-01-31"},
      {"2023-02-29", "1900-02-29", "2100-02-29",  "0000-02-29", "2024-02-30",           "2023-11-31", "2023-04-31",
       "2023-06-31", "2023-09-31", "2024-01-32",  "0000-01-01", "2024-13-01",           "2024-00-10", "2024-01-00",
       "2024-1-01",  "24-01-01",   "12024-01-01", "2024/01/01", "2024-01-01T00:00:00Z", "2024-01-01 "});
  ExpectLanguage(FormatSchema("date"), {}, {"2024-01-01", "\"2024-01-01"});
  auto g = CompileSchema(FormatSchema("date"));
  ASSERT_NE(g, nullptr);
  // February 29 of every year; every month and day (00-13, 00-32) of the years around the century rules.
  for (int y = 0; y <= 9999; ++y) EXPECT_EQ(InLanguage(g, DateText(y, 2, 29)), IsCalendarDate(y, 2, 29)) << y;
  for (int y : {0, 1, 4, 99, 100, 400, 1600, 1700, 1899, 1900, 1996, 2000, 2023, 2024, 2100, 2400, 9996, 9999}) {
    for (int m = 0; m <= 13; ++m) {
      for (int d = 0; d <= 32; ++d) {
        EXPECT_EQ(InLanguage(g, DateText(y, m, d)), IsCalendarDate(y, m, d)) << DateText(y, m, d);
      }
    }
  }
}

TEST(JsonSchemaFormats, TimeAndDateTime) {
  ExpectFormat(
      "time",
      {"12:30:00Z", "23:59:59.123+02:00", "00:00:00-11:30", "09:05:07.5Z", "23:59:59.123456789-23:59", "00:00:00+00:00",
       "00:00:00-00:00"},
      {"24:00:00Z", "12:60:00Z", "12:30:60Z", "12:30:00", "12:30Z", "1:30:00Z", "12:30:00+2:00", "12:30:00.Z",
       "12:30:00.1234567890Z", "12:30:00+24:00", "12:30:00+12:60", "12:30:00z", "12:30:00 Z", "12:30:00+0200"});
  ExpectFormat("date-time",
               {"2024-05-06T07:08:09Z", "2024-05-06T07:08:09.123456+05:30", "2024-02-29T23:59:59.9-00:00",
                "0001-01-01T00:00:00Z"},
               {"2024-05-06 07:08:09Z", "2024-05-06t07:08:09Z", "2024-05-06", "2024-05-06T07:08:09",
                "2023-02-29T00:00:00Z", "2023-11-31T00:00:00Z", "2024-05-06T24:00:00Z", "0000-01-01T00:00:00Z"});
  // Hours 00-23, minutes and seconds 00-59, exhaustively.
  auto g = CompileSchema(FormatSchema("time"));
  ASSERT_NE(g, nullptr);
  char buf[32];
  for (int v = 0; v < 100; ++v) {
    std::snprintf(buf, sizeof buf, "\"%02d:00:00Z\"", v);
    EXPECT_EQ(InLanguage(g, buf), v < 24) << buf;
    std::snprintf(buf, sizeof buf, "\"00:%02d:00Z\"", v);
    EXPECT_EQ(InLanguage(g, buf), v < 60) << buf;
    std::snprintf(buf, sizeof buf, "\"00:00:%02d+%02d:00\"", v, v);
    EXPECT_EQ(InLanguage(g, buf), v < 24) << buf;
    std::snprintf(buf, sizeof buf, "\"00:00:00-00:%02d\"", v);
    EXPECT_EQ(InLanguage(g, buf), v < 60) << buf;
  }
}

TEST(JsonSchemaFormats, Uuid) {
  ExpectFormat("uuid", {"123e4567-e89b-12d3-a456-426614174000", "ABCDEF01-2345-6789-abcd-ef0123456789"},
               {"123e4567e89b12d3a456426614174000", "123e4567-e89b-12d3-a456-42661417400",
                "123e4567-e89b-12d3-a456-4266141740000", "g23e4567-e89b-12d3-a456-426614174000",
                "{123e4567-e89b-12d3-a456-426614174000}"});
}

TEST(JsonSchemaFormats, Ipv4) {
  ExpectFormat("ipv4", {"0.0.0.0", "255.255.255.255", "192.168.1.10", "10.0.0.1", "1.22.199.250"},
               {"256.1.1.1", "1.1.1.256", "01.2.3.4", "1.2.3.04", "1.2.3.00", "1.2.3", "1.2.3.4.5", "1..2.3",
                "1.2.3.4.", " 1.2.3.4", "-1.2.3.4", "1.2.3.a", "::1"});
  // Every octet of 1-3 digits, first and last: 0-255 without leading zeros.
  auto g = CompileSchema(FormatSchema("ipv4"));
  ASSERT_NE(g, nullptr);
  for (int digits = 1; digits <= 3; ++digits) {
    int limit = 1;
    for (int i = 0; i < digits; ++i) limit *= 10;
    for (int v = 0; v < limit; ++v) {
      std::string octet = std::to_string(v);
      octet.insert(0, digits - octet.size(), '0');
      const bool valid = v <= 255 && (digits == 1 || octet[0] != '0');
      EXPECT_EQ(InLanguage(g, Q(octet + ".1.1.1")), valid) << octet;
      EXPECT_EQ(InLanguage(g, Q("1.1.1." + octet)), valid) << octet;
    }
  }
}

TEST(JsonSchemaFormats, Ipv6) {
  ExpectFormat("ipv6",
               {"::", "::1", "1::", "2001:db8::8a2e:370:7334", "2001:0DB8:0000:0000:0000:ff00:0042:8329",
                "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8", "1:2:3::6:7:8", "fe80::1"},
               {"1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1::2::3", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", "12345::",
                "1:2:3:4::5:6:7:8", "::1:2:3:4:5:6:7:8", ":::", "g::", "::ffff:1.2.3.4", "fe80::1%eth0", "[::1]"});
}

TEST(JsonSchemaFormats, Hostname) {
  const std::string l63 = "a" + std::string(61, 'b') + "c", l64 = l63 + "d", l20 = std::string(20, 'x');
  std::string twelve = l20, thirteen;
  for (int i = 1; i < 12; ++i) twelve += "." + l20;
  thirteen = twelve + ".y";
  ASSERT_EQ(twelve.size(), 251u);
  for (const char* format : {"hostname", "idn-hostname"}) {
    SCOPED_TRACE(format);
    ExpectFormat(format,
                 {"example.com", "a", "localhost", "www.example.co.uk", "a-b.c-d.e", "xn.example", "ab-c--d.org",
                  "EXAMPLE.COM", "1.2.3.4", l63, l63 + "." + l63 + "." + l63, twelve, "a.b.c.d.e.f.g.h.i.j.k.l"},
                 {"", "-a.com", "a-.com", "example.com-", "a..b", ".a", "a.", "a_b.com", "ab--cd.com",
                  "xn--nxasmq6b.com", "a b", "a@b", l64, l64 + ".com", l63 + "." + l63 + "." + l63 + "." + l63,
                  thirteen, "a.b.c.d.e.f.g.h.i.j.k.l.m", "\xC3\xA9xample.com"});
  }
}

TEST(JsonSchemaFormats, Email) {
  const std::string local64 = std::string(64, 'a');
  for (const char* format : {"email", "idn-email"}) {
    SCOPED_TRACE(format);
    ExpectFormat(format,
                 {"a@b", "a@b.c", "first.last@example.com", "o'neil+tag@mail.example.org", "x{|}~^`@h",
                  "a!#$%&'*+-/=?^_`{|}~@example.com", "a.b.c.d@example.com", local64 + "@example.com"},
                 {"not an email", "ab.example.com", "@example.com", "a@", ".a@b.c", "a.@b.c", "a..b@c.d", "a@b@c",
                  "a@-b.c", "a@b..c", "a b@c", "a@b.c.", "a,b@c", "a(b)@c", "a.b.c.d.e@example.com",
                  local64 + "a@example.com", "\\\"a\\\"@b.c", "a\\\\b@c"});
  }
}

TEST(JsonSchemaFormats, Uri) {
  for (const char* format : {"uri", "uri-reference", "iri", "iri-reference"}) {
    SCOPED_TRACE(format);
    ExpectFormat(format,
                 {"https://example.com", "http://example.com:8080/a/b?x=1&y=%20#frag", "ftp://a.b/c;d=e/f@g:h?/?#/?",
                  "urn://x", "git+ssh://host.example/repo.git", "http://h/", "http://h//a", "http://h?", "http://h#",
                  "http://h/~user/(x)*,!$'", "HTTP://EXAMPLE.COM/%7Efoo", "a://b"},
                 {"",
                  "example.com/path",
                  "//example.com",
                  "/a/b",
                  "http:/x",
                  "http:x",
                  "mailto:a@b.c",
                  "http://exa mple.com",
                  "http://a/b c",
                  "http://a/%zz",
                  "http://a/%2",
                  "1http://a",
                  "+a://b",
                  "http://",
                  "http://a:123456",
                  "http://a:x",
                  "http://-a.com",
                  "http://a/b#c#d",
                  "http://a/[b]",
                  "http://a/<b>",
                  "http://a/{b}",
                  "http://a/b|c",
                  "http://a/b^c",
                  "http://a/\\\"",
                  "http://[::1]/"});
  }
}

TEST(JsonSchemaFormats, PointersAndRegexes) {
  ExpectFormat("json-pointer", {"", "/", "/a", "/a~0b/c~1d", "//", "/a/0/b c", "/\xC3\xA9"},
               {"a", "a/b", "/~", "/~2", "/a~", "/\\\"", "/\\\\"});
  ExpectFormat("relative-json-pointer", {"0", "1#", "0/a", "99/a~1b", "10"},
               {"", "#", "/a", "00", "01/a", "100", "-1", "1#/a", "1a"});
  ExpectFormat("regex", {"", "abc", "^a.b*c+d?$", "[abc]+ x|y-z_", "(a|b)*\\\\d", "\\\\s\\\\W", "^", "$", "()?", "|"},
               {"a**", "*a", "^*", "[a-z]", "[]", "((a))", "(a", "a)", "{1}", "\\\\", "\\\\q", "a$b", "a^"});
}

TEST(JsonSchemaFormats, OtherFormatsAreAnnotations) {
  for (const char* format : {"duration", "uri-template", "int32", "color", "made-up"}) {
    ExpectLanguage(FormatSchema(format), {"\"anything\"", "\"\""}, {"1", "null"});
  }
}

TEST(JsonSchemaFormats, LengthKeywords) {
  // Formats whose strings all fit use the shared rule.
  ExpectLanguage(FormatSchema("uuid", R"(,"minLength":36,"maxLength":40)"),
                 {"\"123e4567-e89b-12d3-a456-426614174000\""}, {});
  ExpectLanguage(FormatSchema("ipv4", R"(,"minLength":7,"maxLength":15)"), {"\"1.2.3.4\""}, {});
  // No string can satisfy them; some strings break them (and the format has no shorter variant).
  ExpectRefused(FormatSchema("date", R"(,"maxLength":8)"), "format");
  ExpectRefused(FormatSchema("email", R"(,"maxLength":2)"), "no instance");
  ExpectRefused(FormatSchema("uri", R"(,"maxLength":4)"), "no instance");
  ExpectRefused(FormatSchema("date-time", R"(,"maxLength":25)"), "format");
  ExpectRefused(FormatSchema("ipv6", R"(,"maxLength":20)"), "format");
  ExpectRefused(FormatSchema("json-pointer", R"(,"maxLength":20)"), "format");
  ExpectRefused(FormatSchema("regex", R"(,"minLength":1)"), "minLength 1");
  ExpectRefused(FormatSchema("hostname", R"(,"minLength":2)"), "format");
  // Shorter variants: pydantic's HttpUrl (minLength 1, maxLength 2083), a short host name, an email of 254.
  ExpectLanguage(FormatSchema("uri", R"(,"minLength":1,"maxLength":2083)"),
                 Quoted({"https://example.com/path/to?q=1&r=two#top", "http://localhost:8080/",
                         "https://example.com/" + std::string(500, 'b')}),
                 Quoted({"example.com", "https://example.com/a%20b", "https://a/" + std::string(2100, 'b')}));
  ExpectLanguage(FormatSchema("hostname", R"(,"maxLength":10)"), Quoted({"abc.de", "a.b.c.d.e", "abcdefghij"}),
                 Quoted({"abcdefghijk", "abc.def.ghi", "-a"}));
  ExpectLanguage(FormatSchema("email", R"(,"maxLength":254)"),
                 Quoted({"first.last@example.com", std::string(64, 'a') + "@example.com"}),
                 Quoted({"first.last", std::string(65, 'a') + "@example.com"}));
  // Every variant keeps within its bounds (random sentences), from the shortest maxLength that has an instance.
  std::mt19937_64 rng(7);
  for (const char* format : {"hostname", "email", "uri", "idn-hostname", "iri"}) {
    for (int max_len : {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 25, 32, 50, 64, 100, 200, 254, 255, 320, 2083}) {
      Result<std::string> gbnf = JsonSchemaToGbnf(FormatSchema(format, ",\"maxLength\":" + std::to_string(max_len)));
      if (!gbnf.ok()) {
        EXPECT_NE(gbnf.status().message().find("no instance"), std::string::npos) << gbnf.status().ToString();
        EXPECT_LT(max_len, 5) << format;
        continue;
      }
      auto g = ParseGbnf(*gbnf);
      ASSERT_TRUE(g.ok()) << g.status().ToString();
      for (int i = 0; i < 8; ++i) {
        const std::string text = RandomSentence(*g, rng, i % 2 ? 0.02 : 0.2);
        EXPECT_LE(text.size(), static_cast<size_t>(max_len) + 2) << format << " " << max_len << ": " << text;
      }
    }
  }
}

// Random sentences of each format grammar, checked by the rules of the format (a self-contained version of the
// checks jsonschema and Python's parsers make; the strict checks against them were made outside this test).
TEST(JsonSchemaFormats, RandomSentencesAreWellFormed) {
  std::mt19937_64 rng(11);
  const std::regex label("[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?");
  auto hostname_ok = [&](const std::string& h) {
    if (h.empty() || h.size() > 253) return false;
    std::stringstream parts(h);
    std::string part;
    size_t n = 0;
    while (std::getline(parts, part, '.')) {
      if (!std::regex_match(part, label) || (part.size() >= 4 && part.compare(2, 2, "--") == 0)) return false;
      n += part.size() + 1;
    }
    return n == h.size() + 1;  // no empty label at the end
  };
  const std::regex time_re(
      "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])");
  const std::regex uri_re(
      "[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*"
      "(\\?([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?(#([A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?");
  const std::regex ipv4_re(
      "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])");
  struct Case {
    const char* format;
    std::function<bool(const std::string&)> ok;
  };
  const std::vector<Case> cases = {
      {"date",
       [](const std::string& s) {
         int y, m, d;
         return s.size() == 10 && std::sscanf(s.c_str(), "%4d-%2d-%2d", &y, &m, &d) == 3 && IsCalendarDate(y, m, d);
       }},
      {"time", [&](const std::string& s) { return std::regex_match(s, time_re); }},
      {"date-time",
       [&](const std::string& s) {
         int y, m, d;
         return s.size() > 11 && s[10] == 'T' && std::sscanf(s.c_str(), "%4d-%2d-%2d", &y, &m, &d) == 3 &&
                IsCalendarDate(y, m, d) && std::regex_match(s.substr(11), time_re);
       }},
      {"ipv4", [&](const std::string& s) { return std::regex_match(s, ipv4_re); }},
      {"ipv6",
       [](const std::string& s) {
         size_t gap = s.find("::");
         if (gap != std::string::npos && s.find("::", gap + 1) != std::string::npos) return false;
         size_t groups = 0;
         std::string rest = s;
         if (gap != std::string::npos) rest = s.substr(0, gap) + ":" + s.substr(gap + 2);
         std::stringstream parts(rest);
         std::string part;
         while (std::getline(parts, part, ':')) {
           if (part.empty()) continue;
           if (part.size() > 4 || part.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return false;
           ++groups;
         }
         return gap == std::string::npos ? groups == 8 : groups <= 7;
       }},
      {"hostname", hostname_ok},
      {"email",
       [&](const std::string& s) {
         const size_t at = s.find('@');
         if (at == std::string::npos || at == 0 || at > 64 || !hostname_ok(s.substr(at + 1))) return false;
         const std::string local = s.substr(0, at);
         return local.front() != '.' && local.back() != '.' && local.find("..") == std::string::npos;
       }},
      {"uri",
       [&](const std::string& s) {
         const size_t host = s.find("://") + 3, host_end = s.find_first_of(":/?#", host);
         return std::regex_match(s, uri_re) && hostname_ok(s.substr(host, host_end - host));
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.format);
    auto g = CompileSchema(FormatSchema(c.format));
    ASSERT_NE(g, nullptr);
    for (int i = 0; i < 200; ++i) {
      const std::string text = RandomSentence(g, rng, i % 3 == 0 ? 0.02 : 0.3);
      ASSERT_GE(text.size(), 2u);
      ASSERT_EQ(text.front(), '"');
      ASSERT_EQ(text.back(), '"');
      const std::string s = text.substr(1, text.size() - 2);
      EXPECT_TRUE(c.ok(s)) << s;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Objects

TEST(JsonSchema, RequiredOptionalAndOrder) {
  const std::string schema = R"({"type":"object","properties":{
      "a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"},"d":{"type":"null"}},
      "required":["b","d"]})";
  ExpectLanguage(
      schema,
      {"{\"b\":\"x\",\"d\":null}", "{\"a\":1,\"b\":\"x\",\"d\":null}", "{\"b\":\"x\",\"c\":true,\"d\":null}",
       "{\"a\":1,\"b\":\"x\",\"c\":false,\"d\":null}"},
      {"{}", "{\"b\":\"x\"}", "{\"d\":null}", "{\"d\":null,\"b\":\"x\"}", "{\"b\":\"x\",\"d\":null,\"a\":1}",
       "{\"b\":1,\"d\":null}", "{\"a\":1,\"a\":1,\"b\":\"x\",\"d\":null}", "{\"b\":\"x\",\"d\":null,\"e\":1}",
       "{\"b\":\"x\",,\"d\":null}", "{,\"b\":\"x\",\"d\":null}", "{\"b\":\"x\",\"d\":null,}"});
  // All optional: any ordered subset, including none.
  ExpectLanguage(R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},
                    "c":{"type":"integer"},"d":{"type":"integer"},"e":{"type":"integer"},"f":{"type":"integer"}}})",
                 {"{}", "{ }", "{\"a\":1}", "{\"f\":1}", "{\"b\":1,\"e\":2}", "{\"c\":1,\"d\":2,\"f\":3}",
                  "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6}"},
                 {"{,}", "{\"b\":1,\"a\":2}", "{\"a\":1,}", "{\"g\":1}"});
}

TEST(JsonSchema, PropertyOrderFollowsTheDocument) {
  const std::string text = R"({"type":"object","properties":{"zeta":{"type":"integer"},"alpha":{"type":"integer"}},
                               "required":["zeta","alpha"]})";
  ExpectLanguage(text, {"{\"zeta\":1,\"alpha\":2}"}, {"{\"alpha\":2,\"zeta\":1}"});
  // nlohmann::json keeps keys sorted; ordered_json keeps the document's order.
  Result<std::string> sorted = JsonSchemaToGbnf(json::parse(text));
  ASSERT_TRUE(sorted.ok()) << sorted.status().ToString();
  auto g = ParseGbnf(*sorted);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(InLanguage(*g, "{\"alpha\":2,\"zeta\":1}"));
  Result<std::string> ordered = JsonSchemaToGbnf(nlohmann::ordered_json::parse(text));
  ASSERT_TRUE(ordered.ok());
  EXPECT_EQ(*ordered, *JsonSchemaToGbnf(text));
  // std::string and string_view arguments are the text too.
  EXPECT_EQ(*JsonSchemaToGbnf(std::string(text)), *JsonSchemaToGbnf(std::string_view(text)));
}

TEST(JsonSchema, AdditionalProperties) {
  const std::string props = R"("properties":{"name":{"type":"string"},"nam":{"type":"integer"}},"required":["name"])";
  // Absent or false: no other keys.
  for (const std::string extra : {"", R"(,"additionalProperties":false)"}) {
    ExpectLanguage("{\"type\":\"object\"," + props + extra + "}", {"{\"name\":\"x\"}", "{\"name\":\"x\",\"nam\":1}"},
                   {"{\"name\":\"x\",\"age\":1}", "{\"name\":\"x\",\"name\":\"y\"}", "{\"nam\":1,\"name\":\"x\"}"});
  }
  // true: further pairs after the known ones, whose keys are not known names (prefixes and extensions are fine).
  ExpectLanguage(
      "{\"type\":\"object\"," + props + ",\"additionalProperties\":true}",
      {"{\"name\":\"x\"}", "{\"name\":\"x\",\"age\":1}", "{\"name\":\"x\",\"na\":[1,{}],\"names\":null}",
       "{\"name\":\"x\",\"\":0}", "{\"name\":\"x\",\"n\xC3\xA4me\":0}", "{\"name\":\"x\",\"nam\":1,\"z\":2}"},
      {"{\"name\":\"x\",\"name\":\"y\"}", "{\"name\":\"x\",\"z\":2,\"nam\":1}", "{\"age\":1,\"name\":\"x\"}",
       "{\"name\":\"x\",\"a\\u0062\":1}", "{\"age\":1}"});
  // A schema: the additional values follow it.
  ExpectLanguage("{\"type\":\"object\"," + props + ",\"additionalProperties\":{\"type\":\"integer\"}}",
                 {"{\"name\":\"x\",\"a\":1,\"b\":-2}"},
                 {"{\"name\":\"x\",\"a\":\"1\"}", "{\"name\":\"x\",\"z\":2,\"nam\":1}"});
  // No properties: a map.
  ExpectLanguage(R"({"type":"object","additionalProperties":{"type":"string","maxLength":2}})",
                 {"{}", "{\"a\":\"xy\"}", "{\"a\":\"\",\"b\":\"c\"}"}, {"{\"a\":\"xyz\"}", "{\"a\":1}"});
  ExpectLanguage(R"({"type":"object","additionalProperties":false})", {"{}", "{ }"}, {"{\"a\":1}"});
  ExpectLanguage(R"({"type":"object","properties":{}})", {"{}"}, {"{\"a\":1}"});
  // A required name missing from properties is a required key with the additionalProperties value.
  ExpectLanguage(R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a","b"],
                     "additionalProperties":{"type":"boolean"}})",
                 {"{\"a\":1,\"b\":true}", "{\"a\":1,\"b\":false,\"c\":true}"},
                 {"{\"a\":1}", "{\"a\":1,\"b\":2}", "{\"a\":1,\"b\":true,\"b\":true}"});
  ExpectLanguage(R"({"type":"object","required":["id"]})", {"{\"id\":[1]}", "{\"id\":null}"}, {"{}", "{\"x\":1}"});
  // A property with the schema false must be absent, also as an additional key.
  ExpectLanguage(R"({"type":"object","properties":{"a":false,"b":{"type":"integer"}},"additionalProperties":true})",
                 {"{\"b\":1}", "{\"c\":1}"}, {"{\"a\":1}", "{\"b\":1,\"a\":1}"});
}

TEST(JsonSchema, FreeFormObject) {
  ExpectLanguage(R"({"type":"object"})", {"{}", "{\"a\":{\"b\":[1,\"x\"]}}", "{\"\\n\":1}"}, {"[]", "null", "1"});
}

// ---------------------------------------------------------------------------------------------------------------
// Arrays

TEST(JsonSchema, ArrayItemsAndCounts) {
  ExpectLanguage(R"({"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":4})",
                 {"[1,2]", "[1, 2, 3]", "[ 1 , 2 , 3 , 4 ]", "[\n  1,\n  2\n]"},
                 {"[]", "[1]", "[1,2,3,4,5]", "[1,\"2\"]", "[1,2,]", "[,1,2]", "[1 2]"});
  ExpectLanguage(R"({"type":"array","items":{"type":"string"}})", {"[]", "[\"a\"]", "[\"a\",\"b\",\"c\"]"},
                 {"[1]", "[\"a\",]", "{}"});
  ExpectLanguage(R"({"type":"array","minItems":1})", {"[1]", "[null,{},[]]"}, {"[]"});
  ExpectLanguage(R"({"type":"array","maxItems":1})", {"[]", "[\"x\"]"}, {"[1,2]"});
  ExpectLanguage(R"({"type":"array","maxItems":0})", {"[]", "[ ]"}, {"[1]"});
  ExpectLanguage(R"({"type":"array","items":{"type":"integer"},"minItems":3,"maxItems":3})", {"[1,2,3]"},
                 {"[1,2]", "[1,2,3,4]"});
  ExpectLanguage(R"({"type":"array","items":false})", {"[]"}, {"[1]"});
  ExpectLanguage(R"({"type":"array","items":{"type":"integer"},"uniqueItems":false})", {"[1,1]"}, {});
}

TEST(JsonSchema, PrefixItems) {
  ExpectLanguage(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})",
                 {"[\"a\",1]", "[ \"a\" , 1 ]"}, {"[]", "[\"a\"]", "[\"a\",1,2]", "[1,\"a\"]"});
  ExpectLanguage(R"({"type":"array","prefixItems":[{"type":"string"}],"items":{"type":"integer"},"maxItems":3})",
                 {"[\"a\"]", "[\"a\",1]", "[\"a\",1,2]"}, {"[]", "[\"a\",1,2,3]", "[\"a\",\"b\"]"});
  ExpectLanguage(R"({"type":"array","prefixItems":[{"type":"string"}],"minItems":3})",
                 {"[\"a\",1,null]", "[\"a\",1,null,{}]"}, {"[\"a\"]", "[\"a\",1]", "[1,1,1]"});
  ExpectLanguage(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"string"},{"type":"string"}],
                     "maxItems":2})",
                 {"[\"a\",\"b\"]"}, {"[\"a\",\"b\",\"c\"]"});
}

TEST(JsonSchema, NestedArraysOfObjects) {
  ExpectLanguage(R"({"type":"array","items":{"type":"object","properties":{
                       "rows":{"type":"array","items":{"type":"array","items":{"type":"integer","minimum":0,
                       "maximum":9},"maxItems":3}}},"required":["rows"],"additionalProperties":false}})",
                 {"[]", "[{\"rows\":[]}]", "[{\"rows\":[[1,2,3],[]]},{\"rows\":[[9]]}]"},
                 {"[{\"rows\":[[1,2,3,4]]}]", "[{\"rows\":[[10]]}]", "[{}]", "[{\"rows\":[[1]],\"x\":1}]"});
}

// ---------------------------------------------------------------------------------------------------------------
// enum, const, type arrays, anyOf

TEST(JsonSchema, EnumAndConst) {
  ExpectLanguage(
      R"({"enum":["red","green",1,null,true,{"a":[1,2]},[],"caf\u00e9","q\"uote"]})",
      {"\"red\"", "\"green\"", "1", "null", "true", "{\"a\":[1,2]}", "[]", "\"caf\xC3\xA9\"", "\"q\\\"uote\""},
      {"\"blue\"", "\"Red\"", "2", "false", "{\"a\": [1, 2]}", "\"red\" ", "\"re\"", "1.0"});
  ExpectLanguage(R"({"const":"fixed"})", {"\"fixed\""}, {"\"fixe\"", "\"fixedx\""});
  ExpectLanguage(R"({"type":"string","enum":["a",1,"b"]})", {"\"a\"", "\"b\""}, {"1"});
  ExpectLanguage(R"({"type":"integer","enum":[1,2.0,2.5,"x"]})", {"1", "2.0"}, {"2.5", "\"x\""});
  ExpectLanguage(R"({"enum":["a","b"],"const":"b"})", {"\"b\""}, {"\"a\""});
}

TEST(JsonSchema, TypeArrays) {
  ExpectLanguage(R"({"type":["string","null"],"maxLength":2})", {"\"ab\"", "null"}, {"\"abc\"", "1"});
  ExpectLanguage(R"({"type":["integer","boolean"],"minimum":1,"maximum":3})", {"1", "3", "true"},
                 {"0", "4", "null", "1.5"});
  ExpectLanguage(R"({"type":["number","integer"]})", {"1", "1.5", "-2e3"}, {"\"1\""});
}

TEST(JsonSchema, AnyOfAndOneOf) {
  const std::string branches = R"([
      {"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number","minimum":0}},
       "required":["kind","r"],"additionalProperties":false},
      {"type":"object","properties":{"kind":{"const":"square"},"side":{"type":"integer","minimum":1}},
       "required":["kind","side"],"additionalProperties":false}])";
  for (const char* keyword : {"anyOf", "oneOf"}) {
    ExpectLanguage(std::string("{\"") + keyword + "\":" + branches + "}",
                   {"{\"kind\":\"circle\",\"r\":1.5}", "{\"kind\":\"square\",\"side\":2}"},
                   {"{\"kind\":\"circle\",\"side\":2}", "{\"kind\":\"square\",\"side\":0}", "{\"kind\":\"triangle\"}",
                    "{\"kind\":\"circle\",\"r\":-1}"});
  }
  ExpectLanguage(R"({"anyOf":[{"type":"string","maxLength":1},{"type":"integer","maximum":0}],"title":"t"})",
                 {"\"a\"", "0", "-5"}, {"\"ab\"", "1"});
  ExpectLanguage(R"({"allOf":[{"type":"integer","minimum":5}],"description":"one allOf"})", {"5", "6"}, {"4"});
}

// ---------------------------------------------------------------------------------------------------------------
// $ref

TEST(JsonSchema, RecursiveRefs) {
  const std::string tree = R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},
      "kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"],"additionalProperties":false}},
      "$ref":"#/$defs/node"})";
  ExpectLanguage(
      tree,
      {"{\"v\":1}", "{\"v\":1,\"kids\":[]}",
       "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[{\"v\":4,"
       "\"kids\":[{\"v\":5}]}]}]}"},
      {"{\"kids\":[]}", "{\"v\":1,\"kids\":[{}]}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[{\"v\":\"x\"}]}]}"});
  // To the root, through definitions, with pointer and percent escapes.
  ExpectLanguage(R"({"type":"object","properties":{"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},
                     "required":["next"],"additionalProperties":false})",
                 {"{\"next\":null}", "{\"next\":{\"next\":{\"next\":null}}}"}, {"{}", "{\"next\":{}}"});
  ExpectLanguage(R"({"definitions":{"a/b":{"type":"integer"},"m~n":{"type":"string"},"sp ace":{"type":"null"}},
                     "type":"array","prefixItems":[{"$ref":"#/definitions/a~1b"},{"$ref":"#/definitions/m~0n"},
                     {"$ref":"#/definitions/sp%20ace"}],"items":false})",
                 {"[1,\"x\",null]"}, {"[\"x\",1,null]"});
  // A reference into properties, and mutual recursion.
  ExpectLanguage(R"({"type":"object","properties":{"a":{"type":"integer","minimum":0,"maximum":3},
                     "b":{"$ref":"#/properties/a"}},"required":["a","b"],"additionalProperties":false})",
                 {"{\"a\":0,\"b\":3}"}, {"{\"a\":0,\"b\":4}"});
  ExpectLanguage(R"({"$defs":{"even":{"type":"array","items":{"$ref":"#/$defs/odd"},"maxItems":1},
                     "odd":{"type":"array","items":{"$ref":"#/$defs/even"},"minItems":1,"maxItems":1}},
                     "$ref":"#/$defs/even"})",
                 {"[]", "[[[]]]", "[[[[[]]]]]"}, {"[[]]", "[[[[]]]]"});
}

TEST(JsonSchema, PointlessCyclesAreRefused) {
  ExpectRefused(R"({"$ref":"#"})", "$ref cycle");
  ExpectRefused(R"({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})", "$ref cycle");
  ExpectRefused(R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"string"}]}},"$ref":"#/$defs/a"})",
                "$ref cycle");
  ExpectRefused(R"({"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/b"},{"type":"string"}]},
                    "b":{"allOf":[{"$ref":"#/$defs/a"}]}},"type":"array","items":{"$ref":"#/$defs/a"}})",
                "$ref cycle");
  // A cycle reached from inside an array, where an earlier path through the same rules consumed input.
  ExpectRefused(R"({"$defs":{"t":{"anyOf":[{"type":"array","items":{"$ref":"#/$defs/u"}},{"$ref":"#/$defs/u"}]},
                    "u":{"anyOf":[{"$ref":"#/$defs/t"},{"type":"string"}]}},"$ref":"#/$defs/t"})",
                "$ref cycle");
  // Recursion that consumes input but never ends.
  ExpectRefused(R"({"type":"object","properties":{"x":{"$ref":"#"}},"required":["x"]})", "no finite instance");
  ExpectRefused(R"({"$defs":{"l":{"type":"array","items":{"$ref":"#/$defs/l"},"minItems":1}},"$ref":"#/$defs/l"})",
                "no finite instance");
}

// ---------------------------------------------------------------------------------------------------------------
// Integer and number ranges

std::string IntegerSchema(const std::string& bounds) { return "{\"type\":\"integer\"," + bounds + "}"; }

// Checks every integer in [from, to] against lo <= v <= hi.
void CheckIntegerWindow(const std::shared_ptr<const Grammar>& g, int64_t from, int64_t to, int64_t lo, int64_t hi,
                        const std::string& what) {
  for (int64_t v = from; v <= to; ++v) {
    const bool expected = v >= lo && v <= hi;
    ASSERT_EQ(InLanguage(g, std::to_string(v)), expected) << what << ": " << v;
  }
}

TEST(JsonSchema, IntegerRangesExhaustively) {
  struct Case {
    std::string bounds;
    int64_t lo, hi;
  };
  const int64_t kMax = 9999999999999999;
  const std::vector<Case> cases = {
      {R"("minimum":0,"maximum":150)", 0, 150},
      {R"("minimum":-40,"maximum":60)", -40, 60},
      {R"("exclusiveMinimum":0)", 1, kMax},
      {R"("minimum":0)", 0, kMax},
      {R"("maximum":-3)", -kMax, -3},
      {R"("maximum":0)", -kMax, 0},
      {R"("exclusiveMaximum":0)", -kMax, -1},
      {R"("minimum":7,"maximum":7)", 7, 7},
      {R"("minimum":0,"maximum":0)", 0, 0},
      {R"("minimum":-12,"maximum":-12)", -12, -12},
      {R"("minimum":-1,"maximum":1)", -1, 1},
      {R"("exclusiveMinimum":-5,"exclusiveMaximum":5)", -4, 4},
      {R"("minimum":-1000,"maximum":-1)", -1000, -1},
      {R"("minimum":-99,"maximum":1000)", -99, 1000},
      {R"("minimum":-12345,"maximum":678)", -12345, 678},
      {R"("minimum":1900,"maximum":2100)", 1900, 2100},
      {R"("minimum":10,"maximum":99)", 10, 99},
      {R"("minimum":9,"maximum":10)", 9, 10},
      {R"("minimum":100,"maximum":999)", 100, 999},
      {R"("minimum":101,"maximum":998)", 101, 998},
      {R"("minimum":1,"maximum":100000)", 1, 100000},
      {R"("minimum":0.5,"maximum":9.5)", 1, 9},
      {R"("exclusiveMinimum":2.5,"exclusiveMaximum":7.5)", 3, 7},
      {R"("minimum":-7.5,"maximum":-2.5)", -7, -3},
      {R"("minimum":3,"exclusiveMinimum":5,"maximum":20,"exclusiveMaximum":11)", 6, 10},
      {R"("minimum":-5,"maximum":1e20)", -5, kMax},
      {R"("minimum":-1e20,"maximum":5)", -kMax, 5},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bounds);
    std::string gbnf;
    auto g = CompileSchema(IntegerSchema(c.bounds), &gbnf);
    ASSERT_NE(g, nullptr);
    SCOPED_TRACE(gbnf);
    // Every integer within 1000 of each bound.
    for (int64_t bound : {c.lo, c.hi}) {
      if (bound == kMax || bound == -kMax) continue;
      CheckIntegerWindow(g, bound - 1000, bound + 1000, c.lo, c.hi, c.bounds);
    }
    CheckIntegerWindow(g, -1000, 1000, c.lo, c.hi, c.bounds);
    // The 16-digit limit and random samples over the whole range of int64 spellings up to 17 digits.
    for (int64_t v : {kMax, kMax - 1, -kMax, -kMax + 1, kMax + 1, -kMax - 1, int64_t{1000000000000000}}) {
      EXPECT_EQ(InLanguage(g, std::to_string(v)), v >= c.lo && v <= c.hi && v <= kMax && v >= -kMax) << v;
    }
    std::mt19937_64 rng(12345);
    for (int i = 0; i < 2000; ++i) {
      uint64_t modulus = 1;
      for (int digits = 1 + static_cast<int>(rng() % 17); digits > 0; --digits) modulus *= 10;
      int64_t v = static_cast<int64_t>(rng() % modulus);
      if (rng() & 1) v = -v;
      ASSERT_EQ(InLanguage(g, std::to_string(v)), v >= c.lo && v <= c.hi && v <= kMax && v >= -kMax) << v;
    }
    // Non-canonical spellings of in-range values are never produced.
    const int64_t mid = c.lo <= 0 && c.hi >= 0 ? 0 : c.lo;
    for (const std::string& text : {"0" + std::to_string(mid), "+" + std::to_string(mid), std::to_string(mid) + ".0",
                                    std::to_string(mid) + "e0", " " + std::to_string(mid), std::to_string(mid) + " ",
                                    std::string("-0"), std::string("00"), std::string("")}) {
      EXPECT_FALSE(InLanguage(g, text)) << text;
    }
  }
}

// The value of a decimal text times 100 when it has at most 2 fraction digits.
int64_t Hundredths(const std::string& text) {
  const bool negative = text[0] == '-';
  const std::string body = negative ? text.substr(1) : text;
  const size_t dot = body.find('.');
  int64_t v = std::stoll(body.substr(0, dot)) * 100;
  if (dot != std::string::npos) {
    std::string frac = body.substr(dot + 1);
    frac.resize(2, '0');
    v += std::stoll(frac);
  }
  return negative ? -v : v;
}

TEST(JsonSchema, NumberRangesWithIntegerBounds) {
  struct Case {
    std::string bounds;
    std::optional<int64_t> lo, hi;  // in units
    bool lo_exclusive = false, hi_exclusive = false;
  };
  const std::vector<Case> cases = {
      {R"("minimum":0,"maximum":100)", 0, 100},
      {R"("minimum":0,"maximum":1)", 0, 1},
      {R"("exclusiveMinimum":0)", 0, std::nullopt, true},
      {R"("exclusiveMinimum":0,"exclusiveMaximum":1)", 0, 1, true, true},
      {R"("minimum":-5,"exclusiveMaximum":3)", -5, 3, false, true},
      {R"("minimum":-40,"maximum":-2)", -40, -2},
      {R"("exclusiveMinimum":-3,"exclusiveMaximum":-1)", -3, -1, true, true},
      {R"("maximum":0)", std::nullopt, 0},
      {R"("exclusiveMaximum":0)", std::nullopt, 0, false, true},
      {R"("minimum":7,"maximum":7)", 7, 7},
      {R"("minimum":-10,"maximum":10)", -10, 10},
      {R"("minimum":2.0,"maximum":12)", 2, 12},
  };
  // Texts: every -150.xx .. 150.xx with 0, 1 or 2 fraction digits (steps of 0.25 and a few odd ones).
  std::vector<std::string> texts;
  for (int i = 0; i <= 150; ++i) {
    for (const char* sign : {"", "-"}) {
      for (const char* frac : {"", ".0", ".00", ".25", ".5", ".75", ".01", ".99", ".10"}) {
        texts.push_back(sign + std::to_string(i) + frac);
      }
    }
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bounds);
    std::string gbnf;
    auto g = CompileSchema("{\"type\":\"number\"," + c.bounds + "}", &gbnf);
    ASSERT_NE(g, nullptr);
    SCOPED_TRACE(gbnf);
    for (const std::string& text : texts) {
      const int64_t v = Hundredths(text);
      bool expected = true;
      if (c.lo) expected &= c.lo_exclusive ? v > *c.lo * 100 : v >= *c.lo * 100;
      if (c.hi) expected &= c.hi_exclusive ? v < *c.hi * 100 : v <= *c.hi * 100;
      if (text[0] == '-' && v == 0) expected = false;  // "-0", "-0.0": never produced
      ASSERT_EQ(InLanguage(g, text), expected) << text;
    }
    // Bounded numbers have no exponent and no non-canonical forms.
    for (const char* text : {"1e1", "1E0", "01", "00.5", ".5", "5.", "+5", "-0", "-0.0", " 5"}) {
      EXPECT_FALSE(InLanguage(g, text)) << text;
    }
  }
  ExpectLanguage(R"({"type":"number","minimum":0,"maximum":1})",
                 {"0.9999999999999999", "1.0000000000000000", "0.0000000000000001"},
                 {"1.0000000000000001", "1.00000000000000000"});
  ExpectLanguage(R"({"type":"number","exclusiveMinimum":0})", {"0.0000000000000001", "9999999999999999.5"},
                 {"0.0000000000000000", "10000000000000000"});
  ExpectLanguage(R"({"type":"number"})", {"1e5", "-1.5E-300", "0.5"}, {"1e1234", "1.", "-"});
  ExpectLanguage(R"({"type":"integer"})", {"0", "-1", "42", "9999999999999999", "-9999999999999999"},
                 {"-0", "01", "1.0", "1e2", "10000000000000000", "-", ""});
}

// ---------------------------------------------------------------------------------------------------------------
// Refusals

TEST(JsonSchema, RefusedKeywordsAreNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type":"object","properties":{"age":{"type":"integer","multipleOf":2}}})",
       "#/properties/age/multipleOf: multipleOf is not supported"},
      {R"({"type":"string","pattern":"^a"})", "pattern is not supported"},
      {R"({"not":{"type":"string"}})", "#/not: not is not supported"},
      {R"({"if":{"type":"string"},"then":{"minLength":1}})", "#/if: if"},
      {R"({"type":"string","then":{"minLength":1}})", "#/then: then"},
      {R"({"type":"string","else":{"minLength":1}})", "#/else: else"},
      {R"({"type":"object","patternProperties":{"^a":{}}})", "patternProperties"},
      {R"({"type":"object","dependentRequired":{"a":["b"]}})", "dependentRequired"},
      {R"({"type":"object","dependentSchemas":{"a":{}}})", "dependentSchemas"},
      {R"({"type":"object","propertyNames":{"maxLength":3}})", "propertyNames"},
      {R"({"type":"object","unevaluatedProperties":false})", "unevaluatedProperties"},
      {R"({"type":"array","unevaluatedItems":false})", "unevaluatedItems"},
      {R"({"type":"array","contains":{"type":"integer"}})", "#/contains: contains"},
      {R"({"type":"array","minContains":1})", "minContains"},
      {R"({"type":"array","maxContains":1})", "maxContains"},
      {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
      {R"({"type":"object","minProperties":1})", "minProperties"},
      {R"({"type":"object","maxProperties":1})", "maxProperties"},
      {R"({"allOf":[{"type":"string"},{"maxLength":3}]})", "allOf"},
      {R"({"$ref":"https://example.com/a.json"})", "remote $ref"},
      {R"({"$ref":"other.json#/x"})", "$ref"},
      {R"({"$ref":"#/$defs/missing"})", "does not resolve"},
      {R"({"$ref":"#anchor"})", "anchor"},
      {R"({"$defs":{"a":{"type":"string"}},"$ref":"#/$defs/a","maxLength":3})", "$ref combined with 'maxLength'"},
      {R"({"anyOf":[{"type":"string"}],"type":"string"})", "anyOf combined with 'type'"},
      {R"({"enum":["a"],"maxLength":3})", "maxLength"},
      {R"({"type":"string","nullable":true})", "unknown keyword 'nullable'"},
      {R"({"type":"object","properties":{"a":{"type":"strin"}}})", "#/properties/a/type: unknown type"},
      {R"(false)", "schema false"},
      {R"({"type":"object","properties":{"a":false},"required":["a"]})", "required"},
      {R"({"type":"number","minimum":0.5})", "#/minimum: a non-integer minimum"},
      {R"({"type":"number","maximum":1.25})", "maximum"},
      {R"({"type":"integer","exclusiveMinimum":true})", "exclusiveMinimum must be a number"},
      {R"({"type":"object","properties":{"a":{"type":"string"}},"required":["b"],"additionalProperties":false})",
       "required property 'b' is not in properties"},
      {R"({"type":"array","items":[{"type":"string"}]})", "items must be a schema"},
      {R"({"type":"array","minItems":-1})", "minItems must be a non-negative integer"},
      {R"({"type":"string","maxLength":2.5})", "maxLength"},
      {R"({"enum":[]})", "enum is empty"},
      {R"({"type":"string","enum":[1,2]})", "no value of type"},
      {R"({"enum":["a"],"const":"b"})", "const"},
      {R"({"type":[]})", "type"},
      {R"({"anyOf":[]})", "anyOf must be a non-empty array"},
      {R"({"type":"object","required":"a"})", "required must be an array"},
      {R"({"type":"object","required":["a","a"]})", "twice"},
      {R"(42)", "a schema must be an object or a boolean"},
  };
  for (const auto& [schema, needle] : cases) ExpectRefused(schema, needle);
  // Extension keys are ignored; annotations too.
  ExpectLanguage(R"({"type":"string","x-order":1,"x-anything":{"not":1},"title":"t","description":"d","default":"a",
                     "examples":["a"],"deprecated":false,"readOnly":true,"writeOnly":false,"$comment":"c",
                     "$id":"https://example.com/s","$schema":"https://json-schema.org/draft/2020-12/schema"})",
                 {"\"a\""}, {"1"});
}

TEST(JsonSchema, ContradictionsAreRefused) {
  ExpectRefused(R"({"type":"array","minItems":3,"maxItems":2})", "minItems 3 is greater than maxItems 2");
  ExpectRefused(R"({"type":"integer","minimum":10,"maximum":5})", "minimum 10 and maximum 5");
  ExpectRefused(R"({"type":"integer","exclusiveMinimum":4,"exclusiveMaximum":5})", "exclusiveMinimum");
  ExpectRefused(R"({"type":"integer","minimum":1.5,"maximum":1.7})", "minimum");
  ExpectRefused(R"({"type":"number","minimum":5,"exclusiveMaximum":5})", "minimum 5 and exclusiveMaximum 5");
  ExpectRefused(R"({"type":"number","minimum":6,"maximum":5})", "leave no number");
  ExpectRefused(R"({"type":"string","minLength":5,"maxLength":4})", "minLength 5 is greater than maxLength 4");
  ExpectRefused(R"({"type":"array","prefixItems":[{}],"items":false,"minItems":2})", "minItems");
  ExpectRefused(R"({"type":"integer","minimum":1e17})", "16 digits");
  ExpectRefused(R"({"type":"number","maximum":-1e17})", "16 digits");
}

TEST(JsonSchema, SizeLimits) {
  ExpectRefused(R"({"type":"string","maxLength":10001})", "maxLength 10001 is above the limit of 10000");
  ExpectRefused(R"({"type":"string","minLength":20000})", "minLength");
  ExpectRefused(R"({"type":"array","minItems":1000000})", "minItems");
  ExpectRefused(R"({"type":"array","maxItems":1e300})", "maxItems");
  ExpectLanguage(R"({"type":"string","maxLength":10000})", {"\"" + std::string(10000, 'a') + "\""},
                 {"\"" + std::string(10001, 'a') + "\""});
  // Too many rules: 12,000 properties.
  std::string many = R"({"type":"object","properties":{)";
  for (int i = 0; i < 12000; ++i) many += (i ? "," : "") + ("\"p" + std::to_string(i) + "\":{\"type\":\"integer\"}");
  many += "}}";
  ExpectRefused(many, "limit");
  // Too much text: an enum of 2,000 strings of 1,000 bytes.
  std::string big = R"({"enum":[)";
  for (int i = 0; i < 2000; ++i) big += (i ? ",\"" : "\"") + std::to_string(i) + std::string(1000, 'x') + "\"";
  big += "]}";
  ExpectRefused(big, "limit");
  // Deep nesting: subschemas, and the document itself.
  std::string deep, deep_end;
  for (int i = 0; i < 150; ++i) deep += R"({"type":"array","items":)", deep_end += "}";
  ExpectRefused(deep + "true" + deep_end, "deeper");
  ExpectRefused(std::string(100000, '[') + std::string(100000, ']'), "deeper");
  // A large but reasonable object is fine (the member lists share their tails).
  std::string wide = R"({"type":"object","properties":{)";
  for (int i = 0; i < 300; ++i) wide += (i ? "," : "") + ("\"p" + std::to_string(i) + "\":{\"type\":\"integer\"}");
  wide += R"(},"required":["p299"]})";
  ExpectLanguage(wide, {"{\"p299\":1}", "{\"p0\":1,\"p150\":2,\"p299\":3}"},
                 {"{}", "{\"p150\":2,\"p0\":1,\"p299\":3}"});
}

TEST(JsonSchema, MalformedText) {
  Result<std::string> r = JsonSchemaToGbnf(std::string_view("{\"type\": \"object\",}"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("byte 19"), std::string::npos) << r.status().message();
  EXPECT_FALSE(JsonSchemaToGbnf("").ok());
  // A string that is not UTF-8, built in memory (no parser saw it).
  json bad = {{"enum", {std::string("\xFF\xFE")}}};
  Result<std::string> r2 = JsonSchemaToGbnf(bad);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.status().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------------------------
// The corpus

std::vector<std::string> CorpusFiles(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(JsonSchemaCorpus, EveryFileCompilesAndParses) {
  const std::vector<std::string> files = CorpusFiles(kCorpusDir);
  ASSERT_GE(files.size(), 30u) << kCorpusDir;
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    Result<std::string> gbnf = JsonSchemaToGbnf(herd::testing::ReadText(file));
    ASSERT_TRUE(gbnf.ok()) << gbnf.status().ToString();
    auto g = ParseGbnf(*gbnf);
    ASSERT_TRUE(g.ok()) << g.status().ToString() << "\n" << *gbnf;
  }
}

TEST(JsonSchemaCorpus, RefusedFilesNameTheKeyword) {
  std::ifstream expect(kCorpusDir + "/refused/EXPECT");
  ASSERT_TRUE(expect.good()) << kCorpusDir << "/refused/EXPECT";
  std::vector<std::string> listed;
  std::string line;
  while (std::getline(expect, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    ASSERT_NE(space, std::string::npos) << line;
    const std::string file = kCorpusDir + "/refused/" + line.substr(0, space);
    SCOPED_TRACE(file);
    listed.push_back(file);
    ExpectRefused(herd::testing::ReadText(file), line.substr(space + 1));
  }
  // Every file there is listed.
  std::vector<std::string> files = CorpusFiles(kCorpusDir + "/refused");
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(files, listed);
}

// Instances of a few corpus schemas, as a model would write them.
TEST(JsonSchemaCorpus, InstancesOfCorpusSchemas) {
  auto load = [](const char* name) { return herd::testing::ReadText(kCorpusDir + "/" + name); };
  ExpectLanguage(load("01-person-address.json"),
                 {R"({"name":"Ada Lovelace","age":36,"email":"ada@example.com","address":{"street":"12 St James's Sq",
"city":"London","postal_code":"SW1Y","country":"GB"}})",
                  R"({"name": "Bo", "age": 0, "address": {"street": "x", "city": "y", "country": "JP"}})"},
                 {R"({"name":"","age":36,"address":{"street":"x","city":"y","country":"GB"}})",
                  R"({"name":"A","age":151,"address":{"street":"x","city":"y","country":"GB"}})",
                  R"({"name":"A","age":-1,"address":{"street":"x","city":"y","country":"GB"}})",
                  R"({"name":"A","age":3,"address":{"street":"x","city":"y","country":"XX"}})",
                  R"({"name":"A","age":3,"address":{"street":"x","country":"GB"}})"});
  ExpectLanguage(load("04-recursive-tree.json"),
                 {R"({"name":"root","children":[{"name":"a","children":[{"name":"a1"}]},{"name":"b"}]})"},
                 {R"({"name":"root","children":[{"children":[]}]})"});
  ExpectLanguage(load("05-tagged-union.json"),
                 {R"({"shape":{"kind":"circle","radius":2.5}})", R"({"shape":{"kind":"point"}})",
                  R"({"shape":{"kind":"rectangle","width":0,"height":3}})"},
                 {R"({"shape":{"kind":"circle","radius":0}})", R"({"shape":{"kind":"point","radius":1}})"});
  ExpectLanguage(load("30-expression-tree.json"),
                 {R"({"op":"+","left":{"op":"lit","value":1},"right":{"op":"neg","arg":{"op":"lit","value":2.5}}})"},
                 {R"({"op":"+","left":{"op":"lit","value":1}})"});
  ExpectLanguage(load("31-recursive-root.json"),
                 {R"({"comment":"hi","author":"a","replies":[{"comment":"yo","author":"b","replies":[]}]})"},
                 {R"({"comment":"hi","author":"a"})"});
}

}  // namespace
}  // namespace herd::grammar

namespace herd::grammar {
namespace {

// Found by tests/fuzz/grammar_fuzz.cpp: a number too large for a double made the JSON parser throw out_of_range.
TEST(JsonSchemaText, NumbersTooLargeAreRefusedNotThrown) {
  auto r = JsonSchemaToGbnf(std::string_view("633966E633966"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(JsonSchemaToGbnf(std::string_view(R"({"type": "integer", "maximum": 1e999})")).ok());
}

}  // namespace
}  // namespace herd::grammar
