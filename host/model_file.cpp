// The model-file parser (docs/MODEL_FORMAT.md): lines -> tokens -> one Graph builder call per
// line. The builder does the shape inference and its errors; the parser adds the location.
// Over 700 lines on purpose: one keyword table and its argument parsing per op, which a new op
// family extends in one place (docs/ARCHITECTURE.md, "Adding an op family").
#include "wren/model_file.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

// Assigns an Expected's value to `lhs`, or returns its error from the enclosing function.
#define WREN_ASSIGN(lhs, expr)                    \
  do {                                            \
    auto wren_value_ = (expr);                    \
    if (!wren_value_) return wren_value_.error(); \
    lhs = std::move(*wren_value_);                \
  } while (0)

namespace wren {
namespace {

struct Token {
  std::string_view text;
  int column = 1;  // 1-based, of the token's first character
};

struct Line {
  int number = 0;
  std::vector<Token> tokens;
};

// Splits `text` into lines of whitespace-separated tokens; '#' starts a comment. Lines with no
// tokens are dropped.
std::vector<Line> tokenize(std::string_view text) {
  std::vector<Line> lines;
  int number = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    ++number;
    std::string_view row = text.substr(start, end - start);
    row = row.substr(0, std::min(row.find('#'), row.size()));
    Line line{.number = number, .tokens = {}};
    size_t i = 0;
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f'; };
    while (i < row.size()) {
      while (i < row.size() && is_space(row[i])) ++i;
      const size_t begin = i;
      while (i < row.size() && !is_space(row[i])) ++i;
      if (i > begin)
        line.tokens.push_back(Token{row.substr(begin, i - begin), static_cast<int>(begin) + 1});
    }
    if (!line.tokens.empty()) lines.push_back(std::move(line));
    if (end == text.size()) break;
    start = end + 1;
  }
  return lines;
}

int count_lines(std::string_view text) {
  const auto newlines = std::count(text.begin(), text.end(), '\n');
  const bool last_unterminated = !text.empty() && text.back() != '\n';
  return std::max(1, static_cast<int>(newlines) + (last_unterminated ? 1 : 0));
}

// A name becomes a parameter prefix ("conv1.weight") and a checkpoint key: keep it to
// characters every tool accepts.
bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  const char first = name[0];
  if (!(std::isalpha(static_cast<unsigned char>(first)) || first == '_')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

// Which statement a line's first token starts.
enum class Statement {
  kInput,
  kLabels,
  kParam,
  kConv2d,
  kLinear,
  kBatchNorm2d,
  kRelu,
  kLeakyRelu,
  kGelu,
  kMaxPool2d,
  kAvgPool2d,
  kGlobalAvgPool,
  kFlatten,
  kDropout,
  kAdd,
  kSoftmaxCrossEntropy,
};

enum class NameRule { kRequired, kOptional };

struct StatementSpec {
  std::string_view word;   // the canonical op word: the builder's name for the op kind
  std::string_view alias;  // a short form, or empty
  Statement statement;
  NameRule name_rule;
  std::vector<std::string_view> keys;  // in the order the docs list them
};

const std::vector<StatementSpec>& statement_specs() {
  static const std::vector<StatementSpec> specs = {
      {"input", "", Statement::kInput, NameRule::kRequired, {}},
      {"labels", "", Statement::kLabels, NameRule::kRequired, {}},
      {"param", "", Statement::kParam, NameRule::kRequired, {"group", "lr_mult", "wd_mult"}},
      {"conv2d", "", Statement::kConv2d, NameRule::kRequired,
       {"from", "out", "kernel", "stride", "padding", "dilation", "bias", "in"}},
      {"linear", "", Statement::kLinear, NameRule::kRequired, {"from", "out", "bias", "in"}},
      {"batch_norm2d", "batchnorm", Statement::kBatchNorm2d, NameRule::kRequired,
       {"from", "eps", "momentum", "affine"}},
      {"relu", "", Statement::kRelu, NameRule::kOptional, {"from"}},
      {"leaky_relu", "", Statement::kLeakyRelu, NameRule::kOptional, {"from", "slope"}},
      {"gelu", "", Statement::kGelu, NameRule::kOptional, {"from"}},
      {"max_pool2d", "maxpool", Statement::kMaxPool2d, NameRule::kOptional,
       {"from", "kernel", "stride", "padding"}},
      {"avg_pool2d", "avgpool", Statement::kAvgPool2d, NameRule::kOptional,
       {"from", "kernel", "stride", "padding", "count_include_pad"}},
      {"global_avg_pool", "", Statement::kGlobalAvgPool, NameRule::kOptional, {"from"}},
      {"flatten", "", Statement::kFlatten, NameRule::kOptional, {"from"}},
      {"dropout", "", Statement::kDropout, NameRule::kOptional, {"from", "p"}},
      {"add", "", Statement::kAdd, NameRule::kOptional, {"from"}},
      {"softmax_cross_entropy", "softmax_ce", Statement::kSoftmaxCrossEntropy,
       NameRule::kOptional, {"from", "label_smoothing", "ignore_index", "class_weights"}},
  };
  return specs;
}

const StatementSpec* find_spec(std::string_view word) {
  for (const StatementSpec& spec : statement_specs())
    if (spec.word == word || (!spec.alias.empty() && spec.alias == word)) return &spec;
  return nullptr;
}

std::string join(const std::vector<std::string_view>& words) {
  std::string out;
  for (std::string_view w : words) (out += out.empty() ? "" : ", ") += w;
  return out;
}

struct KeyArg {
  std::string_view key;
  Token value;  // the text after '=', with its own column
};

// A statement's arguments: bare tokens (names, dimensions) and key=value pairs.
struct Args {
  std::vector<Token> positional;
  std::vector<KeyArg> keyed;

  const KeyArg* find(std::string_view key) const {
    for (const KeyArg& k : keyed)
      if (k.key == key) return &k;
    return nullptr;
  }
};

struct Binding {
  Value value;
  int line = 0;
  bool is_labels = false;
};

class Parser {
 public:
  Parser(std::string_view source, const ModelInput& input) : source_(source), input_(input) {}

  Expected<Graph> parse(std::string_view text) {
    for (const Line& line : tokenize(text)) {
      Status status = statement(line);
      if (!status.ok()) return status.error();
    }
    const int last_line = count_lines(text);
    if (first_op_line_ == 0) {
      // No op at all: complete the data values so that the error below is about the loss.
      Status status = add_implicit_data(last_line, 1);
      if (!status.ok()) return status.error();
    }
    if (!graph_.loss().valid())
      return invalid_argument(std::string(source_) + ":" + std::to_string(last_line) +
                              ": the model has no loss: end it with a "
                              "'softmax_cross_entropy' line");
    return std::move(graph_);
  }

 private:
  // --- errors --------------------------------------------------------------------------------
  std::string where(int line, int column) const {
    return std::string(source_) + ":" + std::to_string(line) + ":" + std::to_string(column);
  }
  Error error_at(int line, const Token& token, const std::string& message) const {
    return invalid_argument(where(line, token.column) + ": " + message);
  }
  // A builder error, located at the line's op word.
  Status builder_status(int line, const Token& op) const {
    if (graph_.status().ok()) return {};
    return graph_.status().error().with_context(where(line, op.column));
  }
  // "conv2d 'conv1'" or "relu": how messages refer to the statement being parsed.
  std::string label() const {
    return name_.empty() ? std::string(spec_->word)
                         : std::string(spec_->word) + " '" + name_ + "'";
  }

  // --- values --------------------------------------------------------------------------------
  std::string shape_str(const Shape& shape) const {
    std::string s = shape.with_batch(0).str();
    return s.replace(1, 1, "N");
  }

  Expected<int64_t> parse_int(const Token& token, std::string_view key, bool allow_classes,
                              int64_t lo, int64_t hi) const {
    const std::string_view t = token.text;
    if (allow_classes && t == "classes") return int64_t{input_.classes};
    int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec == std::errc() && ptr == t.data() + t.size() && v >= lo && v <= hi) return v;
    std::string expected = "an integer";
    if (ec == std::errc() && ptr == t.data() + t.size())
      expected = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (allow_classes) expected += " or 'classes'";
    return error_at(line_, token,
                    label() + ": bad value '" + std::string(t) + "' for " + std::string(key) +
                        " (expected " + expected + ")");
  }

  Expected<double> parse_double(const Token& token, std::string_view key) const {
    const std::string_view t = token.text;
    double v = 0;
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec == std::errc() && ptr == t.data() + t.size() && std::isfinite(v)) return v;
    return error_at(line_, token,
                    label() + ": bad value '" + std::string(t) + "' for " + std::string(key) +
                        " (expected a finite number)");
  }

  Expected<bool> parse_bool(const Token& token, std::string_view key) const {
    if (token.text == "true") return true;
    if (token.text == "false") return false;
    return error_at(line_, token,
                    label() + ": bad value '" + std::string(token.text) + "' for " +
                        std::string(key) + " (expected true or false)");
  }

  // "3" -> {3, 3}; "3,5" -> {3, 5} (height, width).
  Expected<std::array<int, 2>> parse_pair(const Token& token, std::string_view key) const {
    const std::vector<Token> items = split_list(token);
    if (items.size() == 1 || items.size() == 2) {
      std::array<int, 2> pair{};
      for (size_t i = 0; i < 2; ++i) {
        Expected<int64_t> v = parse_int(items[std::min(i, items.size() - 1)], key, false,
                                        std::numeric_limits<int>::min(),
                                        std::numeric_limits<int>::max());
        if (!v) return v.error();
        pair[i] = static_cast<int>(*v);
      }
      return pair;
    }
    return error_at(line_, token,
                    label() + ": bad value '" + std::string(token.text) + "' for " +
                        std::string(key) + " (expected N or H,W)");
  }

  // Splits a comma-separated value into items, each with its own column.
  static std::vector<Token> split_list(const Token& token) {
    std::vector<Token> items;
    size_t start = 0;
    while (true) {
      const size_t comma = token.text.find(',', start);
      const size_t end = comma == std::string_view::npos ? token.text.size() : comma;
      items.push_back(Token{token.text.substr(start, end - start),
                            token.column + static_cast<int>(start)});
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    return items;
  }

  // A reference to an earlier value by name: defined, and an activation (not the labels).
  Expected<Value> lookup(const Token& ref) const {
    const auto it = values_.find(std::string(ref.text));
    if (it == values_.end())
      return error_at(line_, ref,
                      label() + ": no value named '" + std::string(ref.text) +
                          "' is defined before this line");
    if (it->second.is_labels)
      return error_at(line_, ref,
                      label() + ": '" + std::string(ref.text) + "' (line " +
                          std::to_string(it->second.line) +
                          ") holds the labels; an op takes activations");
    return it->second.value;
  }

  // The op's single input: `from=NAME`, or the current value.
  Expected<Value> single_input(const Args& args) const {
    const KeyArg* from = args.find("from");
    if (!from) return current_;
    const std::vector<Token> items = split_list(from->value);
    if (items.size() != 1)
      return error_at(line_, from->value,
                      label() + ": from='" + std::string(from->value.text) +
                          "' names " + std::to_string(items.size()) +
                          " values; this op takes one");
    return lookup(items[0]);
  }

  // Checks a name token and that it is not taken.
  Status claim_name(const Token& token) const {
    if (!valid_name(token.text))
      return error_at(line_, token,
                      std::string(spec_->word) + ": bad name '" + std::string(token.text) +
                          "' (a name starts with a letter or '_' and has only letters, "
                          "digits, '_', '.' and '-')");
    const auto it = values_.find(std::string(token.text));
    if (it != values_.end())
      return error_at(line_, token,
                      std::string(spec_->word) + ": the name '" + std::string(token.text) +
                          "' is already used on line " + std::to_string(it->second.line));
    return {};
  }

  void bind(const std::string& name, Value value, bool is_labels = false) {
    values_[name] = Binding{value, line_, is_labels};
  }

  // --- statements ----------------------------------------------------------------------------
  Status statement(const Line& line) {
    line_ = line.number;
    name_.clear();
    const Token& op = line.tokens[0];
    spec_ = find_spec(op.text);
    if (!spec_) {
      std::vector<std::string_view> words;
      for (const StatementSpec& s : statement_specs()) words.push_back(s.word);
      return error_at(line_, op,
                      "unknown op '" + std::string(op.text) + "' (known: " + join(words) + ")");
    }

    // The first bare token is the name (checked below); messages use it from here on.
    for (size_t i = 1; i < line.tokens.size(); ++i) {
      if (line.tokens[i].text.find('=') == std::string_view::npos) {
        name_ = std::string(line.tokens[i].text);
        break;
      }
    }
    Args args;
    for (size_t i = 1; i < line.tokens.size(); ++i) {
      const Token& t = line.tokens[i];
      const size_t eq = t.text.find('=');
      if (eq == std::string_view::npos) {
        args.positional.push_back(t);
        continue;
      }
      const std::string_view key = t.text.substr(0, eq);
      const Token value{t.text.substr(eq + 1), t.column + static_cast<int>(eq) + 1};
      if (key.empty())
        return error_at(line_, t,
                        label() + ": '" + std::string(t.text) +
                            "' has no key (expected KEY=VALUE)");
      if (std::find(spec_->keys.begin(), spec_->keys.end(), key) == spec_->keys.end())
        return error_at(line_, t,
                        label() + ": unknown key '" + std::string(key) + "' (" +
                            std::string(spec_->word) +
                            (spec_->keys.empty() ? " takes no keys)"
                                                 : " takes: " + join(spec_->keys) + ")"));
      if (value.text.empty())
        return error_at(line_, t,
                        label() + ": key '" + std::string(key) + "' has no value");
      if (args.find(key))
        return error_at(line_, t,
                        label() + ": key '" + std::string(key) + "' is given twice");
      args.keyed.push_back(KeyArg{key, value});
    }

    switch (spec_->statement) {
      case Statement::kInput: return input_statement(op, args);
      case Statement::kLabels: return labels_statement(op, args);
      case Statement::kParam: return param_statement(op, args);
      default: break;
    }

    // An op: the name is the first bare token; no other bare tokens are taken.
    if (!args.positional.empty()) {
      WREN_RETURN_IF_ERROR(claim_name(args.positional[0]));
      name_ = std::string(args.positional[0].text);
    } else if (spec_->name_rule == NameRule::kRequired) {
      return error_at(line_, op,
                      std::string(spec_->word) + " needs a name (e.g. '" +
                          std::string(spec_->word) + " " + example_name() +
                          " ...'): it prefixes the parameter names");
    }
    if (args.positional.size() > 1)
      return error_at(line_, args.positional[1],
                      label() + ": unexpected '" + std::string(args.positional[1].text) +
                          "' (options are KEY=VALUE)");
    if (loss_line_ > 0)
      return error_at(line_, op,
                      label() + ": comes after the loss (line " + std::to_string(loss_line_) +
                          "); only 'param' lines may follow it");
    if (first_op_line_ == 0) WREN_RETURN_IF_ERROR(add_implicit_data(line_, op.column));
    return op_statement(op, args);
  }

  std::string example_name() const {
    switch (spec_->statement) {
      case Statement::kConv2d: return "conv1";
      case Statement::kLinear: return "fc1";
      default: return "bn1";
    }
  }

  // `input NAME [C H W | auto]`: one per model, before any op.
  Status input_statement(const Token& op, const Args& args) {
    if (args.positional.empty())
      return error_at(line_, op, "input needs a name (input NAME [C H W | auto])");
    if (input_value_.valid() && !input_implicit_)
      return error_at(line_, op,
                      "input: a model has one input, already defined on line " +
                          std::to_string(input_line_));
    if (first_op_line_ > 0)
      return error_at(line_, op,
                      "input: must come before the first op (line " +
                          std::to_string(first_op_line_) + ")");
    WREN_RETURN_IF_ERROR(claim_name(args.positional[0]));
    name_ = std::string(args.positional[0].text);
    const Shape data{input_.channels, input_.height, input_.width};
    Shape shape = data;
    const size_t dims = args.positional.size() - 1;
    if (dims == 1 && args.positional[1].text == "auto") {
      // shape from the data
    } else if (dims == 3) {
      std::array<int64_t, 3> d{};
      for (size_t i = 0; i < 3; ++i) {
        Expected<int64_t> v = parse_int(args.positional[1 + i], "a dimension", false, 1,
                                        std::numeric_limits<int32_t>::max());
        if (!v) return v.error();
        d[i] = *v;
      }
      shape = Shape{d[0], d[1], d[2]};
      if (shape != data)
        return error_at(line_, args.positional[1],
                        label() + ": the file says " + shape_str(shape) + " but the data is " +
                            shape_str(data) + " (write 'auto' to take the data's shape)");
    } else if (dims != 0) {
      return error_at(line_, args.positional[1],
                      label() + ": expected C H W or 'auto' after the name, got " +
                          std::to_string(dims) + " token" + (dims == 1 ? "" : "s"));
    }
    input_value_ = graph_.input(name_, shape);
    WREN_RETURN_IF_ERROR(builder_status(line_, op));
    input_line_ = line_;
    current_ = input_value_;
    bind(name_, input_value_);
    return {};
  }

  // `labels NAME [H W]`: a class per sample, or per pixel of an H×W map.
  Status labels_statement(const Token& op, const Args& args) {
    if (args.positional.empty())
      return error_at(line_, op, "labels needs a name (labels NAME [H W])");
    if (labels_value_.valid() && !labels_implicit_)
      return error_at(line_, op,
                      "labels: a model has one labels value, already defined on line " +
                          std::to_string(labels_line_));
    if (first_op_line_ > 0)
      return error_at(line_, op,
                      "labels: must come before the first op (line " +
                          std::to_string(first_op_line_) + ")");
    WREN_RETURN_IF_ERROR(claim_name(args.positional[0]));
    name_ = std::string(args.positional[0].text);
    Shape shape;
    if (args.positional.size() == 3) {
      std::array<int64_t, 2> d{};
      for (size_t i = 0; i < 2; ++i) {
        Expected<int64_t> v = parse_int(args.positional[1 + i], "a dimension", false, 1,
                                        std::numeric_limits<int32_t>::max());
        if (!v) return v.error();
        d[i] = *v;
      }
      shape = Shape{d[0], d[1]};
    } else if (args.positional.size() != 1) {
      return error_at(line_, args.positional[1],
                      label() + ": expected nothing (a class per sample) or H W after the name");
    }
    labels_value_ = graph_.labels(name_, shape);
    WREN_RETURN_IF_ERROR(builder_status(line_, op));
    labels_line_ = line_;
    bind(name_, labels_value_, /*is_labels=*/true);
    return {};
  }

  // At the first op: `input image auto` and `labels label` where the file has none.
  Status add_implicit_data(int line, int column) {
    first_op_line_ = line;
    const Token at{"", column};
    if (!input_value_.valid()) {
      if (values_.count("image"))
        return error_at(line, at, "the implicit 'input image' clashes with a value 'image'");
      input_value_ =
          graph_.input("image", Shape{input_.channels, input_.height, input_.width});
      WREN_RETURN_IF_ERROR(builder_status(line, at));
      input_line_ = line;
      input_implicit_ = true;
      current_ = input_value_;
      values_["image"] = Binding{input_value_, line, false};
    }
    if (!labels_value_.valid()) {
      if (values_.count("label"))
        return error_at(line, at, "the implicit 'labels label' clashes with a value 'label'");
      labels_value_ = graph_.labels("label");
      WREN_RETURN_IF_ERROR(builder_status(line, at));
      labels_line_ = line;
      labels_implicit_ = true;
      values_["label"] = Binding{labels_value_, line, true};
    }
    return {};
  }

  // `param NAME [group=decay|no_decay] [lr_mult=F] [wd_mult=F]`: per-parameter options.
  Status param_statement(const Token& op, const Args& args) {
    if (args.positional.size() != 1)
      return error_at(line_, args.positional.empty() ? op : args.positional[1],
                      "param: expected one parameter name, e.g. 'param fc1.bias lr_mult=2'");
    if (args.keyed.empty())
      return error_at(line_, op, "param: nothing to set (keys: " + join(spec_->keys) + ")");
    const Token& param = args.positional[0];
    name_ = std::string(param.text);
    Expected<int> index = graph_.find_param(param.text);
    if (!index) return index.error().with_context(where(line_, param.column));
    if (const KeyArg* group = args.find("group")) {
      ParamGroup g = ParamGroup::kDecay;
      if (group->value.text == "decay") {
        g = ParamGroup::kDecay;
      } else if (group->value.text == "no_decay") {
        g = ParamGroup::kNoDecay;
      } else {
        return error_at(line_, group->value,
                        "param '" + name_ + "': bad value '" + std::string(group->value.text) +
                            "' for group (expected decay or no_decay)");
      }
      WREN_RETURN_IF_ERROR(graph_.set_param_group(param.text, g));
    }
    const KeyArg* lr = args.find("lr_mult");
    const KeyArg* wd = args.find("wd_mult");
    if (lr || wd) {
      const ParamInfo& info = graph_.params()[static_cast<size_t>(*index)];
      double lr_mult = info.lr_mult, wd_mult = info.wd_mult;
      for (auto [arg, dst] : {std::pair{lr, &lr_mult}, std::pair{wd, &wd_mult}}) {
        if (!arg) continue;
        Expected<double> v = parse_double(arg->value, arg->key);
        if (!v) return v.error();
        if (*v < 0)
          return error_at(line_, arg->value,
                          "param '" + name_ + "': " + std::string(arg->key) +
                              " must be >= 0, got " + std::string(arg->value.text));
        *dst = *v;
      }
      Status status = graph_.set_param_multipliers(param.text, static_cast<float>(lr_mult),
                                                   static_cast<float>(wd_mult));
      if (!status.ok()) return status.error().with_context(where(line_, param.column));
    }
    return {};
  }

  // Every op that the Graph builds: conv2d, linear, batch_norm2d, the activations, pools,
  // flatten, dropout, add and the loss.
  Status op_statement(const Token& op, const Args& args) {
    // The keys each op reads; unknown keys were refused above.
    auto int_key = [&](std::string_view key, int fallback, bool allow_classes,
                       int64_t lo) -> Expected<int> {
      const KeyArg* k = args.find(key);
      if (!k) return fallback;
      Expected<int64_t> v =
          parse_int(k->value, key, allow_classes, lo, std::numeric_limits<int>::max());
      if (!v) return v.error();
      return static_cast<int>(*v);
    };
    auto double_key = [&](std::string_view key, double fallback) -> Expected<double> {
      const KeyArg* k = args.find(key);
      return k ? parse_double(k->value, key) : Expected<double>(fallback);
    };
    auto bool_key = [&](std::string_view key, bool fallback) -> Expected<bool> {
      const KeyArg* k = args.find(key);
      return k ? parse_bool(k->value, key) : Expected<bool>(fallback);
    };
    auto pair_key = [&](std::string_view key,
                        std::array<int, 2> fallback) -> Expected<std::array<int, 2>> {
      const KeyArg* k = args.find(key);
      return k ? parse_pair(k->value, key) : Expected<std::array<int, 2>>(fallback);
    };
    Value x;
    if (spec_->statement != Statement::kAdd) WREN_ASSIGN(x, single_input(args));
    Value out;
    switch (spec_->statement) {
      case Statement::kConv2d: {
        Conv2dOptions o;
        if (!args.find("out"))
          return error_at(line_, op, label() + ": needs out=CHANNELS");
        WREN_ASSIGN(o.out_channels, int_key("out", 0, true, std::numeric_limits<int>::min()));
        WREN_ASSIGN(o.kernel, pair_key("kernel", o.kernel));
        WREN_ASSIGN(o.stride, pair_key("stride", o.stride));
        WREN_ASSIGN(o.padding, pair_key("padding", o.padding));
        WREN_ASSIGN(o.dilation, pair_key("dilation", o.dilation));
        WREN_ASSIGN(o.bias, bool_key("bias", o.bias));
        WREN_ASSIGN(o.in_channels, int_key("in", 0, false, 1));
        out = graph_.conv2d(name_, x, o);
        break;
      }
      case Statement::kLinear: {
        LinearOptions o;
        if (!args.find("out"))
          return error_at(line_, op, label() + ": needs out=FEATURES");
        WREN_ASSIGN(o.out_features, int_key("out", 0, true, std::numeric_limits<int>::min()));
        WREN_ASSIGN(o.bias, bool_key("bias", o.bias));
        WREN_ASSIGN(o.in_features, int_key("in", 0, false, 1));
        out = graph_.linear(name_, x, o);
        break;
      }
      case Statement::kBatchNorm2d: {
        BatchNormOptions o;
        WREN_ASSIGN(o.eps, double_key("eps", o.eps));
        WREN_ASSIGN(o.momentum, double_key("momentum", o.momentum));
        WREN_ASSIGN(o.affine, bool_key("affine", o.affine));
        out = graph_.batch_norm2d(name_, x, o);
        break;
      }
      case Statement::kRelu: out = graph_.relu(x, name_); break;
      case Statement::kGelu: out = graph_.gelu(x, name_); break;
      case Statement::kLeakyRelu: {
        double slope = 0;
        WREN_ASSIGN(slope, double_key("slope", 0.01));
        out = graph_.leaky_relu(x, slope, name_);
        break;
      }
      case Statement::kMaxPool2d:
      case Statement::kAvgPool2d: {
        Pool2dOptions o;
        WREN_ASSIGN(o.kernel, pair_key("kernel", o.kernel));
        WREN_ASSIGN(o.stride, pair_key("stride", o.kernel));  // default: the kernel
        WREN_ASSIGN(o.padding, pair_key("padding", o.padding));
        if (spec_->statement == Statement::kMaxPool2d) {
          out = graph_.max_pool2d(x, o, name_);
        } else {
          WREN_ASSIGN(o.count_include_pad, bool_key("count_include_pad", o.count_include_pad));
          out = graph_.avg_pool2d(x, o, name_);
        }
        break;
      }
      case Statement::kGlobalAvgPool: out = graph_.global_avg_pool(x, name_); break;
      case Statement::kFlatten: out = graph_.flatten(x, name_); break;
      case Statement::kDropout: {
        double p = 0;
        WREN_ASSIGN(p, double_key("p", 0.5));
        out = graph_.dropout(x, p, name_);
        break;
      }
      case Statement::kAdd: {
        // from=A,B adds A and B; from=B adds the current value and B.
        const KeyArg* from = args.find("from");
        if (!from)
          return error_at(line_, op,
                          label() + ": needs from=A,B (or from=B: the current value + B)");
        const std::vector<Token> items = split_list(from->value);
        if (items.size() > 2)
          return error_at(line_, from->value,
                          label() + ": from='" + std::string(from->value.text) + "' names " +
                              std::to_string(items.size()) + " values; add takes two");
        Value a = current_, b;
        if (items.size() == 2) WREN_ASSIGN(a, lookup(items[0]));
        WREN_ASSIGN(b, lookup(items.back()));
        out = graph_.add(a, b, name_);
        break;
      }
      case Statement::kSoftmaxCrossEntropy: {
        CrossEntropyOptions o;
        WREN_ASSIGN(o.label_smoothing, double_key("label_smoothing", o.label_smoothing));
        WREN_ASSIGN(o.ignore_index, int_key("ignore_index", o.ignore_index, false,
                                            std::numeric_limits<int32_t>::min()));
        if (const KeyArg* weights = args.find("class_weights")) {
          for (const Token& item : split_list(weights->value)) {
            double w = 0;
            WREN_ASSIGN(w, parse_double(item, "class_weights"));
            o.class_weights.push_back(static_cast<float>(w));
          }
        }
        if (name_.empty()) {
          const Token loss_name{"loss", op.column};
          WREN_RETURN_IF_ERROR(claim_name(loss_name));
          name_ = "loss";
        }
        out = graph_.softmax_cross_entropy(name_, x, labels_value_, o);
        break;
      }
      default:
        return internal_error(where(line_, op.column) + ": unhandled statement " +
                              std::string(spec_->word));
    }
    WREN_RETURN_IF_ERROR(builder_status(line_, op));
    // Unnamed ops get the builder's automatic name ("relu3"); it can be referred to as well.
    bind(graph_.nodes().back().name, out);
    current_ = out;
    if (spec_->statement == Statement::kSoftmaxCrossEntropy) loss_line_ = line_;
    return {};
  }

  std::string_view source_;
  ModelInput input_;
  Graph graph_;
  std::map<std::string, Binding> values_;
  Value current_, input_value_, labels_value_;
  int input_line_ = 0, labels_line_ = 0, first_op_line_ = 0, loss_line_ = 0;
  bool input_implicit_ = false, labels_implicit_ = false;  // added before the first op

  // The statement being parsed.
  int line_ = 0;
  const StatementSpec* spec_ = nullptr;
  std::string name_;
};

}  // namespace

Expected<Graph> parse_model_text(std::string_view text, const ModelInput& input,
                                 std::string_view source_name) {
  return Parser(source_name, input).parse(text);
}

Expected<Graph> parse_model_file(const std::string& path, const ModelInput& input) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) {
    const int err = errno;
    const ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIoError;
    return Error(code, path + ": cannot open model file: " + std::strerror(err));
  }
  std::string text;
  char chunk[4096];
  size_t got = 0;
  while ((got = std::fread(chunk, 1, sizeof chunk, file)) > 0) text.append(chunk, got);
  const int err = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (err != 0)
    return Error(ErrorCode::kIoError, path + ": cannot read model file: " + std::strerror(err));
  return parse_model_text(text, input, path);
}

}  // namespace wren

#undef WREN_ASSIGN
