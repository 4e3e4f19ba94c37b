// Errors are values in library code (docs/ARCHITECTURE.md, "Errors"): a function that can fail
// on user input returns Status or Expected<T>; the error carries its context (op, shapes,
// file, offset, flag) in its message. Only the CLI turns an error into text on stderr and an
// exit code. Nothing in the library aborts on user input.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace wren {

enum class ErrorCode {
  kInvalidArgument,  // a bad value from the caller: shape mismatch, batch of 0, bad option
  kNotFound,         // a name that does not exist: parameter, value, file
  kDataError,        // malformed input data: wrong magic, truncated file, label out of range
  kIoError,          // the operating system refused: open, read, write, fsync, rename
  kNumericError,     // NaN/Inf where a finite value is required
  kUnavailable,      // a device or feature this build or machine does not have
  kInternal,         // a broken invariant inside Wren: a bug, please report
};

const char* to_string(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Prefixes context, e.g. error.with_context("loading model.txt") -> "loading model.txt: ...".
  Error with_context(const std::string& context) const {
    return Error(code_, context + ": " + message_);
  }

 private:
  ErrorCode code_;
  std::string message_;
};

// The result of an operation that returns nothing: ok, or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}  // NOLINT: implicit by design
  static Status ok_status() { return Status(); }

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    assert(error_.has_value());
    return *error_;
  }
  // "ok" or the error's message.
  std::string message() const { return ok() ? std::string("ok") : error_->message(); }

 private:
  std::optional<Error> error_;
};

// A value or an Error (std::expected is C++23; this is the small part of it we need).
template <class T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}    // NOLINT: implicit by design
  Expected(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const {
    assert(!ok());
    return std::get<Error>(v_);
  }
  Status status() const { return ok() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> v_;
};

inline Error invalid_argument(std::string message) {
  return Error(ErrorCode::kInvalidArgument, std::move(message));
}
inline Error not_found(std::string message) {
  return Error(ErrorCode::kNotFound, std::move(message));
}
inline Error data_error(std::string message) {
  return Error(ErrorCode::kDataError, std::move(message));
}
inline Error io_error(std::string message) {
  return Error(ErrorCode::kIoError, std::move(message));
}
inline Error unavailable(std::string message) {
  return Error(ErrorCode::kUnavailable, std::move(message));
}
inline Error internal_error(std::string message) {
  return Error(ErrorCode::kInternal, std::move(message));
}

}  // namespace wren

// Returns early from a Status-returning function when `expr` (a Status) is not ok.
#define WREN_RETURN_IF_ERROR(expr)           \
  do {                                       \
    ::wren::Status wren_status_ = (expr);    \
    if (!wren_status_.ok()) return wren_status_.error(); \
  } while (0)
