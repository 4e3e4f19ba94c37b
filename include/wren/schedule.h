// Learning-rate schedules: pure functions of the optimizer step t (counted from 0) over
// T = total_steps, as specified in docs/SCHEDULES.md and tabulated, formula by
// formula, in docs/SCHEDULES.md. The value lr(t) is the one the optimizer uses for step t and
// the one logged for step t.
//
//   auto schedule = Schedule::create({.kind = ScheduleKind::kCosine, .lr = 0.1,
//                                     .total_steps = 1000, .warmup_steps = 50});
//   if (!schedule) ... schedule.error().message() names the offending option
//   double lr = schedule->lr(step);
//
// Epoch-valued options (--epochs, --warmup-epochs, --milestones, ...) become steps through
// to_steps() before create(). Error messages name options by their CLI flags (listed in
// docs/SCHEDULES.md) so that the CLI can print them as they are.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "wren/error.h"

namespace wren {

enum class ScheduleKind {
  kConstant,
  kStep,
  kMultiStep,
  kExponential,
  kLinear,
  kPolynomial,
  kCosine,
  kCosineRestarts,
  kOneCycle,
  kInverseSqrt,
  kInverseTime,
  kInv,
};

// Every field has a default so that designated initialisers can name only what they set.
// Fields the chosen kind does not use are ignored (and not validated). Step-valued fields are
// in optimizer steps; see EpochSpec for epochs.
struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::kConstant;
  double lr = 0.1;             // --lr: lr0, the base rate; one-cycle's maximum rate
  int64_t total_steps = 0;     // --total-steps: T; 0 = unknown (only for kinds that ignore T)
  double lr_end = 0.0;         // --lr-end: linear and polynomial value at T
  double lr_min = 0.0;         // --lr-min: cosine and cosine-restarts floor
  double gamma = 0.1;          // --gamma: step/multistep/exponential factor; Caffe inv's γ
  int64_t step_size = 1;       // --step-size: s of step, exponential and inverse-time
  std::vector<int64_t> milestones = {};  // --milestones: multistep, strictly increasing
  bool staircase = false;      // --staircase: exponential floors t/s
  double power = 1.0;          // --power: polynomial p; Caffe inv p
  int64_t restart_period = 0;  // --restart-period: SGDR's first cycle T0 (required there)
  int64_t restart_mult = 1;    // --restart-mult: SGDR's cycle growth m (integer, as PyTorch)
  double pct_start = 0.3;      // --pct-start: one-cycle's rising fraction
  double div_factor = 25.0;    // --div-factor: one-cycle starts at lr / div_factor
  double final_div_factor = 1e4;  // --final-div-factor: ends at lr / div / final_div
  int64_t inv_sqrt_warmup = 1;    // --inv-sqrt-warmup: w, inverse-sqrt is flat for t < w
  double decay = 0.0;          // --decay: Keras inverse-time d (required there, > 0)
  int64_t warmup_steps = 0;    // --warmup-steps: W, linear warmup wrapping any kind; 0 = none
  double warmup_start_factor = 0.0;  // --warmup-start-factor: f, warmup starts at f·lr(0)
};

// True for the kinds whose formula needs T (linear, polynomial, cosine, one-cycle).
bool uses_total_steps(ScheduleKind kind);

class Schedule {
 public:
  // Validates `config`; an error names the option, its value and the bound it breaks.
  static Expected<Schedule> create(const ScheduleConfig& config);

  // The learning rate for step t. Steps before 0 get lr(0); steps past T follow the formula,
  // which for the T-based kinds holds the value reached at the end (docs/SCHEDULES.md).
  double lr(int64_t t) const;

  const ScheduleConfig& config() const { return config_; }

 private:
  explicit Schedule(ScheduleConfig config) : config_(std::move(config)) {}
  // The wrapped schedule at step u of its own run, which spans T − W steps.
  double wrapped_lr(int64_t u) const;

  ScheduleConfig config_;
};

// Epoch-valued options, converted to steps with the number of batches per epoch. A field left
// unset (nullopt, or an empty milestone list) keeps the config's step value. Fractional epochs
// are allowed and round to the nearest step (halves away from zero).
struct EpochSpec {
  int64_t steps_per_epoch = 0;                          // --steps-per-epoch (batches per epoch)
  std::optional<double> total = std::nullopt;            // --epochs -> total_steps
  std::optional<double> warmup = std::nullopt;           // --warmup-epochs -> warmup_steps
  std::optional<double> step_size = std::nullopt;        // --step-epochs -> step_size
  std::vector<double> milestones = {};                   // --milestones -> milestones
  std::optional<double> restart_period = std::nullopt;   // --restart-epochs -> restart_period
  std::optional<double> inv_sqrt_warmup = std::nullopt;  // --inv-sqrt-warmup-epochs
};

// `config` with the epoch-valued fields of `epochs` converted to steps. Errors name the epoch
// flag: a negative or non-finite value, a length that rounds to 0 steps where at least one is
// needed, milestones that are not increasing or that round onto the same step.
Expected<ScheduleConfig> to_steps(ScheduleConfig config, const EpochSpec& epochs);

// Parses a schedule name, case-insensitively and with '_' read as '-': the names of
// schedule_names() and the aliases exp, poly, sgdr, one-cycle, rsqrt, keras, caffe.
// An unknown name is a kNotFound error listing the known ones.
Expected<ScheduleKind> parse_schedule_kind(std::string_view name);

// The canonical name, as parse_schedule_kind accepts it.
std::string_view to_string(ScheduleKind kind);

// Every canonical name, in ScheduleKind order (for --help).
std::vector<std::string_view> schedule_names();

}  // namespace wren
