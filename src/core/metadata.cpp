// ModelMetadata (core/metadata.h).
#include "core/metadata.h"

#include <cmath>
#include <cstdio>

namespace herd {

void ModelMetadata::Set(std::string key, Value value, std::string origin) {
  Entry& e = entries_[key];
  e.value = std::move(value);
  e.origin = origin.empty() ? std::move(key) : std::move(origin);
}

void ModelMetadata::Erase(std::string_view key) {
  auto it = entries_.find(key);
  if (it != entries_.end()) entries_.erase(it);
}

const ModelMetadata::Entry* ModelMetadata::Find(std::string_view key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

bool ModelMetadata::IsNull(std::string_view key) const {
  const Entry* e = Find(key);
  return e != nullptr && std::holds_alternative<Null>(e->value);
}

std::string ModelMetadata::ToString(const Value& v) {
  struct Visitor {
    std::string operator()(const Null&) const { return "null"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.9g", d);
      return buf;
    }
    std::string operator()(const std::string& s) const { return "\"" + s + "\""; }
    std::string operator()(const IntList& l) const {
      std::string out = "[";
      for (size_t i = 0; i < l.size(); ++i) {
        if (i == 8 && l.size() > 10) {
          out += ", ... (" + std::to_string(l.size()) + " entries)";
          break;
        }
        out += (i > 0 ? ", " : "") + std::to_string(l[i]);
      }
      return out + "]";
    }
    std::string operator()(const Other& o) const { return o.text; }
  };
  return std::visit(Visitor{}, v);
}

std::string ModelMetadata::Where(std::string_view key) const {
  const Entry* e = Find(key);
  std::string s(key);
  if (e == nullptr || e->origin == key) return s + " in " + source_;
  return s + " (" + e->origin + " in " + source_ + ")";
}

Status ModelMetadata::WrongType(std::string_view key, const Entry& e, std::string_view want) const {
  std::string v = ToString(e.value);
  if (v.size() > 80) v = v.substr(0, 77) + "...";
  return Corruption(Where(key) + " must be " + std::string(want) + ", got " + v);
}

Result<std::optional<int64_t>> ModelMetadata::Int(std::string_view key) const {
  const Entry* e = Find(key);
  if (e == nullptr || std::holds_alternative<Null>(e->value)) return std::optional<int64_t>();
  if (const int64_t* i = std::get_if<int64_t>(&e->value)) return std::optional<int64_t>(*i);
  if (const double* d = std::get_if<double>(&e->value)) {
    // 2^63 is the first double outside int64; whole numbers below it convert exactly.
    if (std::isfinite(*d) && *d == std::floor(*d) && std::fabs(*d) < 9.2233720368547758e18) {
      return std::optional<int64_t>(static_cast<int64_t>(*d));
    }
  }
  return WrongType(key, *e, "an integer");
}

Result<std::optional<double>> ModelMetadata::Number(std::string_view key) const {
  const Entry* e = Find(key);
  if (e == nullptr || std::holds_alternative<Null>(e->value)) return std::optional<double>();
  if (const double* d = std::get_if<double>(&e->value)) return std::optional<double>(*d);
  if (const int64_t* i = std::get_if<int64_t>(&e->value)) return std::optional<double>(static_cast<double>(*i));
  return WrongType(key, *e, "a number");
}

Result<std::optional<bool>> ModelMetadata::Bool(std::string_view key) const {
  const Entry* e = Find(key);
  if (e == nullptr || std::holds_alternative<Null>(e->value)) return std::optional<bool>();
  if (const bool* b = std::get_if<bool>(&e->value)) return std::optional<bool>(*b);
  if (const int64_t* i = std::get_if<int64_t>(&e->value)) return std::optional<bool>(*i != 0);
  if (const double* d = std::get_if<double>(&e->value)) return std::optional<bool>(*d != 0);
  return WrongType(key, *e, "a boolean");
}

Result<std::optional<std::string>> ModelMetadata::String(std::string_view key) const {
  const Entry* e = Find(key);
  if (e == nullptr || std::holds_alternative<Null>(e->value)) return std::optional<std::string>();
  if (const std::string* s = std::get_if<std::string>(&e->value)) return std::optional<std::string>(*s);
  return WrongType(key, *e, "a string");
}

Result<std::optional<ModelMetadata::IntList>> ModelMetadata::Ints(std::string_view key) const {
  const Entry* e = Find(key);
  if (e == nullptr || std::holds_alternative<Null>(e->value)) return std::optional<IntList>();
  if (const IntList* l = std::get_if<IntList>(&e->value)) return std::optional<IntList>(*l);
  return WrongType(key, *e, "a list of integers");
}

}  // namespace herd
