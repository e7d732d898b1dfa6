// Status and Result<T>: the error type of every operation that can fail because of the outside world
// (files, metadata, tokenizer input, requests). Modelled on LevelDB's status.h; docs/style.md section 5.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace herd {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // user input: flags, prompt, request
  kCorruption,         // malformed file
  kNotSupported,       // valid but unsupported: architecture, dtype, rope type
  kOutOfRange,         // prompt or context too long
  kResourceExhausted,  // KV cache full, out of memory
  kIOError,
  kUnavailable,
  kCancelled,
  kInternal,  // a failed internal check
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "Corruption: <message>"
  std::string ToString() const;
  // Returns a copy with "context: " prepended to the message (same code).
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
inline Status NotSupported(std::string m) { return {StatusCode::kNotSupported, std::move(m)}; }
inline Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result constructed from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace herd

#define HERD_CONCAT_INNER_(a, b) a##b
#define HERD_CONCAT_(a, b) HERD_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define HERD_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::herd::Status herd_status_ = (expr);        \
    if (!herd_status_.ok()) return herd_status_; \
  } while (0)

#define HERD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

// `HERD_ASSIGN_OR_RETURN(auto x, MakeX());`
#define HERD_ASSIGN_OR_RETURN(lhs, expr) HERD_ASSIGN_OR_RETURN_IMPL_(HERD_CONCAT_(herd_result_, __LINE__), lhs, expr)

// Invariants only a bug can break (never values from files or requests).
#define HERD_CHECK(cond)                                                                             \
  do {                                                                                               \
    if (!(cond)) {                                                                                   \
      std::fprintf(stderr, "herd: internal check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                                  \
    }                                                                                                \
  } while (0)

#ifndef NDEBUG
#define HERD_DCHECK(cond) HERD_CHECK(cond)
#else
#define HERD_DCHECK(cond) \
  do {                    \
  } while (0)
#endif
