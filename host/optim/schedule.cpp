// Learning-rate schedules (include/wren/schedule.h). Every formula is the one in
// docs/SCHEDULES.md, written the same way so that the table can be checked against the code.
#include "wren/schedule.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <numbers>
#include <sstream>
#include <string>
#include <type_traits>

namespace wren {
namespace {

// %g-style, so that messages show 0.1 and 1e-05 rather than 0.100000 and 0.000010.
std::string num(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

std::string list_str(const auto& values) {
  std::string text;
  for (const auto& v : values) {
    if (!text.empty()) text += ", ";
    using Element = std::decay_t<decltype(v)>;
    if constexpr (std::is_floating_point_v<Element>) {
      text += num(v);
    } else if constexpr (std::is_integral_v<Element>) {
      text += std::to_string(v);
    } else {
      text += std::string(v);
    }
  }
  return text;
}

std::string for_kind(ScheduleKind kind) {
  return " for the " + std::string(to_string(kind)) + " schedule";
}

// Comparisons written so that NaN fails them.
Status require_positive(double value, const char* flag, ScheduleKind kind) {
  if (std::isfinite(value) && value > 0) return Status::ok_status();
  return invalid_argument(std::string(flag) + " (" + num(value) +
                          ") must be a positive finite number" + for_kind(kind));
}

Status require_non_negative(double value, const char* flag, ScheduleKind kind) {
  if (std::isfinite(value) && value >= 0) return Status::ok_status();
  return invalid_argument(std::string(flag) + " (" + num(value) +
                          ") must be a non-negative finite number" + for_kind(kind));
}

Status require_at_least_one(int64_t steps, const char* flag, ScheduleKind kind) {
  if (steps >= 1) return Status::ok_status();
  return invalid_argument(std::string(flag) + " (" + std::to_string(steps) +
                          ") must be at least 1" + for_kind(kind));
}

Status validate_milestones(const std::vector<int64_t>& milestones) {
  const ScheduleKind kind = ScheduleKind::kMultiStep;
  if (milestones.empty()) return invalid_argument("--milestones is empty" + for_kind(kind));
  if (milestones.front() < 0) {
    return invalid_argument("--milestones must not be negative, got steps " +
                            list_str(milestones));
  }
  if (std::adjacent_find(milestones.begin(), milestones.end(), std::greater_equal<>()) !=
      milestones.end()) {
    return invalid_argument("--milestones must be strictly increasing, got steps " +
                            list_str(milestones));
  }
  return Status::ok_status();
}

Status validate_kind_fields(const ScheduleConfig& c) {
  const ScheduleKind kind = c.kind;
  switch (kind) {
    case ScheduleKind::kConstant:
      return Status::ok_status();
    case ScheduleKind::kStep:
      WREN_RETURN_IF_ERROR(require_positive(c.gamma, "--gamma", kind));
      return require_at_least_one(c.step_size, "--step-size", kind);
    case ScheduleKind::kMultiStep:
      WREN_RETURN_IF_ERROR(require_positive(c.gamma, "--gamma", kind));
      return validate_milestones(c.milestones);
    case ScheduleKind::kExponential:
      WREN_RETURN_IF_ERROR(require_positive(c.gamma, "--gamma", kind));
      return require_at_least_one(c.step_size, "--step-size", kind);
    case ScheduleKind::kLinear:
      return require_non_negative(c.lr_end, "--lr-end", kind);
    case ScheduleKind::kPolynomial:
      WREN_RETURN_IF_ERROR(require_non_negative(c.lr_end, "--lr-end", kind));
      return require_positive(c.power, "--power", kind);
    case ScheduleKind::kCosine:
      return require_non_negative(c.lr_min, "--lr-min", kind);
    case ScheduleKind::kCosineRestarts:
      WREN_RETURN_IF_ERROR(require_non_negative(c.lr_min, "--lr-min", kind));
      WREN_RETURN_IF_ERROR(require_at_least_one(c.restart_period, "--restart-period", kind));
      return require_at_least_one(c.restart_mult, "--restart-mult", kind);
    case ScheduleKind::kOneCycle: {
      WREN_RETURN_IF_ERROR(require_positive(c.div_factor, "--div-factor", kind));
      WREN_RETURN_IF_ERROR(require_positive(c.final_div_factor, "--final-div-factor", kind));
      if (!(c.pct_start > 0 && c.pct_start < 1)) {
        return invalid_argument("--pct-start (" + num(c.pct_start) +
                                ") must be strictly between 0 and 1" + for_kind(kind));
      }
      // PyTorch's rising phase ends at step pct·T − 1; at or below 0 it has no length and
      // PyTorch divides by zero (or skips the phase), so both phases must be non-empty.
      const int64_t span = c.total_steps - c.warmup_steps;
      if (!(c.pct_start * static_cast<double>(span) > 1)) {
        return invalid_argument("--pct-start (" + num(c.pct_start) + ") times the " +
                                std::to_string(span) +
                                " steps after warmup must be greater than 1, so that the "
                                "rising phase lasts more than one step" + for_kind(kind));
      }
      return Status::ok_status();
    }
    case ScheduleKind::kInverseSqrt:
      return require_at_least_one(c.inv_sqrt_warmup, "--inv-sqrt-warmup", kind);
    case ScheduleKind::kInverseTime:
      WREN_RETURN_IF_ERROR(require_positive(c.decay, "--decay", kind));
      return require_at_least_one(c.step_size, "--step-size", kind);
    case ScheduleKind::kInv:
      WREN_RETURN_IF_ERROR(require_positive(c.gamma, "--gamma", kind));
      return require_positive(c.power, "--power", kind);
  }
  return internal_error("schedule: unhandled kind " +
                        std::to_string(static_cast<int>(kind)));
}

Status validate(const ScheduleConfig& c) {
  if (!(std::isfinite(c.lr) && c.lr >= 0)) {
    return invalid_argument("--lr (" + num(c.lr) + ") must be a non-negative finite number");
  }
  if (c.total_steps < 0) {
    return invalid_argument("--total-steps (" + std::to_string(c.total_steps) +
                            ") must not be negative");
  }
  if (uses_total_steps(c.kind) && c.total_steps == 0) {
    return invalid_argument("the " + std::string(to_string(c.kind)) +
                            " schedule needs the total steps (--total-steps or --epochs)");
  }
  if (c.warmup_steps < 0) {
    return invalid_argument("--warmup-steps (" + std::to_string(c.warmup_steps) +
                            ") must not be negative");
  }
  if (c.warmup_steps > 0) {
    // T = 0 (unknown) is accepted only by kinds that ignore T, checked above.
    if (c.total_steps > 0 && c.warmup_steps >= c.total_steps) {
      return invalid_argument("--warmup-steps (" + std::to_string(c.warmup_steps) +
                              ") must be smaller than the total steps (" +
                              std::to_string(c.total_steps) + ")");
    }
    const double f = c.warmup_start_factor;
    if (!(f >= 0 && f <= 1)) {
      return invalid_argument("--warmup-start-factor (" + num(f) + ") must be in [0, 1]");
    }
  }
  return validate_kind_fields(c);
}

// SGDR: the position inside the current cycle and that cycle's length. Cycles are T0, T0·m,
// T0·m², ... long; walking them in integers keeps the boundaries exact (a log-based cycle
// index can land one cycle off at a boundary).
struct CyclePosition {
  int64_t step_in_cycle;
  int64_t cycle_length;
};

CyclePosition cycle_position(int64_t u, int64_t first_length, int64_t mult) {
  if (mult == 1) return {u % first_length, first_length};
  int64_t remaining = u;
  int64_t length = first_length;
  while (remaining >= length) {
    remaining -= length;
    // A next cycle longer than anything representable certainly contains `remaining`.
    if (length > std::numeric_limits<int64_t>::max() / mult) {
      return {remaining, std::numeric_limits<int64_t>::max()};
    }
    length *= mult;
  }
  return {remaining, length};
}

// PyTorch OneCycleLR's _annealing_cos: from `start` (pct 0) to `end` (pct 1).
double anneal_cos(double start, double end, double pct) {
  return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
}

}  // namespace

bool uses_total_steps(ScheduleKind kind) {
  return kind == ScheduleKind::kLinear || kind == ScheduleKind::kPolynomial ||
         kind == ScheduleKind::kCosine || kind == ScheduleKind::kOneCycle;
}

Expected<Schedule> Schedule::create(const ScheduleConfig& config) {
  WREN_RETURN_IF_ERROR(validate(config));
  return Schedule(config);
}

double Schedule::lr(int64_t t) const {
  const ScheduleConfig& c = config_;
  t = std::max<int64_t>(t, 0);
  if (t < c.warmup_steps) {
    const double f = c.warmup_start_factor;
    const double progress = static_cast<double>(t) / static_cast<double>(c.warmup_steps);
    return wrapped_lr(0) * (f + (1 - f) * progress);
  }
  return wrapped_lr(t - c.warmup_steps);
}

double Schedule::wrapped_lr(int64_t u) const {
  const ScheduleConfig& c = config_;
  const double lr0 = c.lr;
  const double ud = static_cast<double>(u);
  // T of the wrapped schedule; only the kinds that validated T > W read it.
  const int64_t span = c.total_steps - c.warmup_steps;
  auto fraction_done = [&] {  // min(t, T) / T
    return static_cast<double>(std::min(u, span)) / static_cast<double>(span);
  };
  switch (c.kind) {
    case ScheduleKind::kConstant:
      return lr0;
    case ScheduleKind::kStep:
      return lr0 * std::pow(c.gamma, static_cast<double>(u / c.step_size));
    case ScheduleKind::kMultiStep: {
      const auto passed = std::upper_bound(c.milestones.begin(), c.milestones.end(), u) -
                          c.milestones.begin();  // milestones ≤ u
      return lr0 * std::pow(c.gamma, static_cast<double>(passed));
    }
    case ScheduleKind::kExponential: {
      const double exponent = c.staircase ? static_cast<double>(u / c.step_size)
                                          : ud / static_cast<double>(c.step_size);
      return lr0 * std::pow(c.gamma, exponent);
    }
    case ScheduleKind::kLinear:
      return lr0 + (c.lr_end - lr0) * fraction_done();
    case ScheduleKind::kPolynomial:
      return (lr0 - c.lr_end) * std::pow(1 - fraction_done(), c.power) + c.lr_end;
    case ScheduleKind::kCosine:
      return c.lr_min +
             0.5 * (lr0 - c.lr_min) * (1 + std::cos(std::numbers::pi * fraction_done()));
    case ScheduleKind::kCosineRestarts: {
      const CyclePosition p = cycle_position(u, c.restart_period, c.restart_mult);
      const double in_cycle =
          static_cast<double>(p.step_in_cycle) / static_cast<double>(p.cycle_length);
      return c.lr_min + 0.5 * (lr0 - c.lr_min) * (1 + std::cos(std::numbers::pi * in_cycle));
    }
    case ScheduleKind::kOneCycle: {
      // PyTorch's two phases: [0, pct·T − 1] rising, [pct·T − 1, T − 1] falling, with phase
      // ends as real numbers. Past T − 1 (where PyTorch raises or overshoots) the final value
      // holds.
      const double initial = lr0 / c.div_factor;
      const double final_lr = initial / c.final_div_factor;
      const double rise_end = c.pct_start * static_cast<double>(span) - 1;
      const double fall_end = static_cast<double>(span - 1);
      const double step = static_cast<double>(std::min(u, span - 1));
      if (step <= rise_end) return anneal_cos(initial, lr0, step / rise_end);
      return anneal_cos(lr0, final_lr, (step - rise_end) / (fall_end - rise_end));
    }
    case ScheduleKind::kInverseSqrt: {
      const int64_t w = c.inv_sqrt_warmup;
      return lr0 * std::sqrt(static_cast<double>(w)) /
             std::sqrt(static_cast<double>(std::max(u, w)));
    }
    case ScheduleKind::kInverseTime:
      return lr0 / (1 + c.decay * ud / static_cast<double>(c.step_size));
    case ScheduleKind::kInv:
      return lr0 * std::pow(1 + c.gamma * ud, -c.power);
  }
  return lr0;  // unreachable: create() rejects unknown kinds
}

Expected<ScheduleConfig> to_steps(ScheduleConfig config, const EpochSpec& epochs) {
  const int64_t per_epoch = epochs.steps_per_epoch;
  const bool any_epoch_value = epochs.total || epochs.warmup || epochs.step_size ||
                               !epochs.milestones.empty() || epochs.restart_period ||
                               epochs.inv_sqrt_warmup;
  if (!any_epoch_value) return config;
  if (per_epoch < 1) {
    return invalid_argument("--steps-per-epoch (" + std::to_string(per_epoch) +
                            ") must be at least 1 to convert epochs to steps");
  }
  // Beyond 2^62 steps the product stops being an exact integer in double anyway.
  const double max_steps = 0x1p62;
  auto convert = [&](double value, const char* flag) -> Expected<int64_t> {
    const double steps = value * static_cast<double>(per_epoch);
    if (!(std::isfinite(value) && value >= 0 && steps < max_steps)) {
      return invalid_argument(std::string(flag) + " (" + num(value) +
                              ") must be a non-negative finite number of epochs");
    }
    return static_cast<int64_t>(std::llround(steps));
  };
  auto convert_length = [&](std::optional<double> value, const char* flag,
                            int64_t& field) -> Status {
    if (!value) return Status::ok_status();
    Expected<int64_t> steps = convert(*value, flag);
    if (!steps) return steps.error();
    if (*steps < 1) {
      return invalid_argument(std::string(flag) + " (" + num(*value) + ") is " +
                              std::to_string(*steps) + " steps at " + std::to_string(per_epoch) +
                              " steps per epoch; it must be at least 1 step");
    }
    field = *steps;
    return Status::ok_status();
  };

  WREN_RETURN_IF_ERROR(convert_length(epochs.total, "--epochs", config.total_steps));
  WREN_RETURN_IF_ERROR(convert_length(epochs.step_size, "--step-epochs", config.step_size));
  WREN_RETURN_IF_ERROR(
      convert_length(epochs.restart_period, "--restart-epochs", config.restart_period));
  WREN_RETURN_IF_ERROR(convert_length(epochs.inv_sqrt_warmup, "--inv-sqrt-warmup-epochs",
                                      config.inv_sqrt_warmup));
  if (epochs.warmup) {
    // 0 warmup epochs is a valid request for no warmup.
    Expected<int64_t> steps = convert(*epochs.warmup, "--warmup-epochs");
    if (!steps) return steps.error();
    config.warmup_steps = *steps;
  }
  if (!epochs.milestones.empty()) {
    std::vector<int64_t> steps;
    for (double m : epochs.milestones) {
      Expected<int64_t> s = convert(m, "--milestones");
      if (!s) return s.error();
      steps.push_back(*s);
    }
    for (size_t i = 1; i < steps.size(); ++i) {
      if (!(epochs.milestones[i - 1] < epochs.milestones[i])) {
        return invalid_argument("--milestones must be strictly increasing, got epochs " +
                                list_str(epochs.milestones));
      }
      if (steps[i - 1] == steps[i]) {
        return invalid_argument("--milestones " + num(epochs.milestones[i - 1]) + " and " +
                                num(epochs.milestones[i]) + " epochs both round to step " +
                                std::to_string(steps[i]) + " at " + std::to_string(per_epoch) +
                                " steps per epoch");
      }
    }
    config.milestones = std::move(steps);
  }
  return config;
}

namespace {

struct NamedKind {
  std::string_view name;
  ScheduleKind kind;
};

// Canonical names first, in ScheduleKind order (schedule_names() and to_string read them).
constexpr std::array<NamedKind, 12> kCanonicalNames = {{
    {"constant", ScheduleKind::kConstant},
    {"step", ScheduleKind::kStep},
    {"multistep", ScheduleKind::kMultiStep},
    {"exponential", ScheduleKind::kExponential},
    {"linear", ScheduleKind::kLinear},
    {"polynomial", ScheduleKind::kPolynomial},
    {"cosine", ScheduleKind::kCosine},
    {"cosine-restarts", ScheduleKind::kCosineRestarts},
    {"onecycle", ScheduleKind::kOneCycle},
    {"inverse-sqrt", ScheduleKind::kInverseSqrt},
    {"inverse-time", ScheduleKind::kInverseTime},
    {"inv", ScheduleKind::kInv},
}};

constexpr std::array<NamedKind, 7> kAliases = {{
    {"exp", ScheduleKind::kExponential},
    {"poly", ScheduleKind::kPolynomial},
    {"sgdr", ScheduleKind::kCosineRestarts},
    {"one-cycle", ScheduleKind::kOneCycle},
    {"rsqrt", ScheduleKind::kInverseSqrt},
    {"keras", ScheduleKind::kInverseTime},
    {"caffe", ScheduleKind::kInv},
}};

}  // namespace

Expected<ScheduleKind> parse_schedule_kind(std::string_view name) {
  std::string normalized;
  for (char ch : name) {
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    normalized += lower == '_' ? '-' : lower;
  }
  for (const NamedKind& n : kCanonicalNames) {
    if (n.name == normalized) return n.kind;
  }
  for (const NamedKind& n : kAliases) {
    if (n.name == normalized) return n.kind;
  }
  std::vector<std::string_view> aliases;
  for (const NamedKind& n : kAliases) aliases.push_back(n.name);
  return not_found("unknown learning-rate schedule '" + std::string(name) + "' (known: " +
                   list_str(schedule_names()) + "; aliases: " + list_str(aliases) + ")");
}

std::string_view to_string(ScheduleKind kind) {
  for (const NamedKind& n : kCanonicalNames) {
    if (n.kind == kind) return n.name;
  }
  return "unknown";
}

std::vector<std::string_view> schedule_names() {
  std::vector<std::string_view> names;
  for (const NamedKind& n : kCanonicalNames) names.push_back(n.name);
  return names;
}

}  // namespace wren
