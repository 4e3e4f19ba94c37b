// `wren plot`, reading: metrics.jsonl records into RunMetrics (cli/plot.h), with errors that
// name the file and line.
#include "cli/plot.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace wren {
namespace fs = std::filesystem;

namespace {

// ordered_json keeps the file's order of the per-layer maps, which is the model's layer order.
using Json = nlohmann::ordered_json;

std::string os_reason(int err) { return std::system_category().message(err); }

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

// --- Reading ------------------------------------------------------------------------------------

Error data_error(const std::string& where, const std::string& what) {
  return Error(ErrorCode::kDataError, where + ": " + what);
}

Expected<std::string> read_text_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIoError;
    return Error(code, path + ": cannot open metrics file: " + os_reason(err));
  }
  std::string text;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      ::close(fd);
      return Error(ErrorCode::kIoError, path + ": cannot read metrics file: " + os_reason(err));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::string run_name_of(const std::string& metrics_path) {
  const fs::path path(metrics_path);
  if (path.filename() != "metrics.jsonl") return path.stem().string();
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(fs::absolute(path, ec).parent_path(), ec);
  if (ec || dir.filename().empty()) return "metrics";
  return dir.filename().string();
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\f\v") == std::string_view::npos;
}

// Python's json module and JavaScript write NaN and ±Infinity as bare tokens, which are not JSON;
// quoting them (outside strings) makes them the string forms the schema defines.
std::string quote_bare_non_finite(std::string_view line) {
  if (line.find_first_of("NI") == std::string_view::npos) return std::string(line);
  std::string out;
  out.reserve(line.size() + 8);
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < line.size()) {
        out += line[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (std::string_view token : {"-Infinity", "Infinity", "NaN"}) {
      if (line.substr(i, token.size()) == token) {
        out += '"';
        out += token;
        out += '"';
        i += token.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

// The type and a short rendering of a value, for messages.
std::string describe(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(value.type_name()) + " " + text;
}

std::optional<double> as_number(const Json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  return std::nullopt;
}

Status read_number(const Json& record, const char* key, const std::string& where,
                   std::optional<double>& out) {
  out.reset();
  const auto it = record.find(key);
  if (it == record.end() || it->is_null()) return Status::ok_status();
  out = as_number(*it);
  if (out) return Status::ok_status();
  return data_error(where, "field " + quoted(key) +
                               " must be a number, \"NaN\", \"Infinity\", \"-Infinity\" or "
                               "null, got " + describe(*it));
}

Status read_count(const Json& record, const char* key, const std::string& where, bool required,
                  std::optional<int64_t>& out) {
  out.reset();
  const auto it = record.find(key);
  if (it == record.end() || it->is_null()) {
    if (required) return data_error(where, "missing required field " + quoted(key));
    return Status::ok_status();
  }
  const Json& value = *it;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      out = static_cast<int64_t>(u);
    }
  } else if (value.is_number_integer()) {
    const int64_t i = value.get<int64_t>();
    if (i >= 0) out = i;
  } else if (value.is_number_float()) {
    // Some writers print every number as a double ("step": 120.0).
    const double d = value.get<double>();
    if (std::isfinite(d) && d >= 0 && d < 9.0e18 && d == std::floor(d)) {
      out = static_cast<int64_t>(d);
    }
  }
  if (out) return Status::ok_status();
  return data_error(where, "field " + quoted(key) + " must be a non-negative integer, got " +
                               describe(value));
}

Status read_layer_values(const Json& record, const char* key, const std::string& where,
                         std::vector<LayerValue>& out) {
  out.clear();
  const auto it = record.find(key);
  if (it == record.end() || it->is_null()) return Status::ok_status();
  if (!it->is_object()) {
    return data_error(where, "field " + quoted(key) +
                                 " must be an object mapping parameter names to numbers, got " +
                                 describe(*it));
  }
  for (const auto& [name, value] : it->items()) {
    if (value.is_null()) continue;  // not measured for this tensor
    const std::optional<double> number = as_number(value);
    if (!number) {
      return data_error(where, "field " + quoted(key) + "." + quoted(name) +
                                   " must be a number, \"NaN\", \"Infinity\", \"-Infinity\" or "
                                   "null, got " + describe(value));
    }
    out.push_back(LayerValue{.name = name, .value = *number});
  }
  return Status::ok_status();
}

Expected<StepRecord> parse_step_record(const Json& record, const std::string& where, int line) {
  StepRecord r;
  r.line = line;
  std::optional<int64_t> step;
  WREN_RETURN_IF_ERROR(read_count(record, "step", where, true, step));
  r.step = *step;
  WREN_RETURN_IF_ERROR(read_count(record, "epoch", where, false, r.epoch));
  WREN_RETURN_IF_ERROR(read_number(record, "loss", where, r.loss));
  WREN_RETURN_IF_ERROR(read_number(record, "lr", where, r.lr));
  WREN_RETURN_IF_ERROR(read_number(record, "images_per_s", where, r.images_per_s));
  WREN_RETURN_IF_ERROR(read_number(record, "time_s", where, r.time_s));
  WREN_RETURN_IF_ERROR(read_number(record, "grad_norm", where, r.grad_norm));
  return r;
}

Expected<EpochRecord> parse_epoch_record(const Json& record, const std::string& where,
                                         int line) {
  EpochRecord r;
  r.line = line;
  std::optional<int64_t> count;
  WREN_RETURN_IF_ERROR(read_count(record, "epoch", where, true, count));
  r.epoch = *count;
  WREN_RETURN_IF_ERROR(read_count(record, "step", where, true, count));
  r.step = *count;
  WREN_RETURN_IF_ERROR(read_number(record, "train_loss", where, r.train_loss));
  WREN_RETURN_IF_ERROR(read_number(record, "train_acc", where, r.train_acc));
  WREN_RETURN_IF_ERROR(read_number(record, "val_loss", where, r.val_loss));
  WREN_RETURN_IF_ERROR(read_number(record, "val_acc", where, r.val_acc));
  WREN_RETURN_IF_ERROR(read_number(record, "test_loss", where, r.test_loss));
  WREN_RETURN_IF_ERROR(read_number(record, "test_acc", where, r.test_acc));
  WREN_RETURN_IF_ERROR(read_number(record, "lr", where, r.lr));
  WREN_RETURN_IF_ERROR(read_number(record, "time_s", where, r.time_s));
  WREN_RETURN_IF_ERROR(read_layer_values(record, "weight_norm", where, r.weight_norm));
  WREN_RETURN_IF_ERROR(
      read_layer_values(record, "near_zero_fraction", where, r.near_zero_fraction));
  return r;
}

Expected<SkippedStepRecord> parse_skipped_step_record(const Json& record, const std::string& where,
                                                      int line) {
  SkippedStepRecord r;
  r.line = line;
  std::optional<int64_t> step;
  WREN_RETURN_IF_ERROR(read_count(record, "step", where, true, step));
  r.step = *step;
  WREN_RETURN_IF_ERROR(read_count(record, "epoch", where, false, r.epoch));
  if (const auto it = record.find("reason"); it != record.end() && it->is_string())
    r.reason = it->get<std::string>();
  if (const auto it = record.find("where"); it != record.end() && it->is_string())
    r.where = it->get<std::string>();
  return r;
}

// nlohmann's messages start with "[json.exception.parse_error.101] parse error at line 1, "; the
// line is always 1 here and ours is already in the prefix.
std::string parse_reason(const std::string& what) {
  const size_t column = what.find("column ");
  if (column != std::string::npos) return what.substr(column);
  const size_t bracket = what.find("] ");
  return bracket == std::string::npos ? what : what.substr(bracket + 2);
}

}  // namespace

std::string resolve_metrics_path(const std::string& run_dir_or_metrics_path) {
  std::error_code ec;
  if (fs::is_directory(run_dir_or_metrics_path, ec)) {
    return (fs::path(run_dir_or_metrics_path) / "metrics.jsonl").string();
  }
  return run_dir_or_metrics_path;
}

Expected<RunMetrics> read_metrics(const std::string& path) {
  if (path.empty()) return invalid_argument("read_metrics: empty path");
  RunMetrics metrics;
  metrics.path = resolve_metrics_path(path);
  metrics.run_name = run_name_of(metrics.path);
  Expected<std::string> text = read_text_file(metrics.path);
  if (!text) return text.error();

  int unknown_kinds = 0;
  std::string first_unknown;
  size_t pos = 0;
  int line_number = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    const bool terminated = end != std::string::npos;
    if (!terminated) end = text->size();
    std::string_view line(text->data() + pos, end - pos);
    pos = terminated ? end + 1 : end;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (is_blank(line)) continue;

    const std::string where = metrics.path + ":" + std::to_string(line_number);
    Json record;
    try {
      record = Json::parse(quote_bare_non_finite(line));
    } catch (const nlohmann::json::exception& e) {
      if (!terminated) {
        metrics.warnings.push_back(where + ": skipped an incomplete last line (" +
                                   std::to_string(line.size()) +
                                   " bytes without a newline, not valid JSON): the run was "
                                   "probably stopped while writing it");
        break;
      }
      return data_error(where, "malformed JSON: " + parse_reason(e.what()));
    }
    if (!record.is_object()) {
      return data_error(where, "expected a JSON object, got " + describe(record));
    }
    const auto kind = record.find("kind");
    if (kind == record.end()) {
      return data_error(where, "missing required field \"kind\" (\"step\" or \"epoch\")");
    }
    if (!kind->is_string()) {
      return data_error(where, "field \"kind\" must be a string, got " + describe(*kind));
    }
    const std::string& kind_name = kind->get_ref<const std::string&>();
    if (kind_name == "step") {
      Expected<StepRecord> step = parse_step_record(record, where, line_number);
      if (!step) return step.error();
      metrics.steps.push_back(std::move(step).value());
    } else if (kind_name == "epoch") {
      Expected<EpochRecord> epoch = parse_epoch_record(record, where, line_number);
      if (!epoch) return epoch.error();
      metrics.epochs.push_back(std::move(epoch).value());
    } else if (kind_name == "skipped_step") {
      Expected<SkippedStepRecord> skipped = parse_skipped_step_record(record, where, line_number);
      if (!skipped) return skipped.error();
      metrics.skipped_steps.push_back(std::move(skipped).value());
    } else if (unknown_kinds++ == 0) {
      first_unknown = where + ": \"" + kind_name + "\"";
    }
  }
  if (unknown_kinds > 0) {
    metrics.warnings.push_back("ignored " + std::to_string(unknown_kinds) +
                               " record(s) of a kind this version does not know (first: " +
                               first_unknown + ")");
  }
  return metrics;
}

}  // namespace wren
