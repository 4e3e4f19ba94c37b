// Learning-rate schedules against their closed forms (docs/SCHEDULES.md), each
// written out here in long double rather than taken from the implementation: at t = 0, a middle
// step, the last step and past T; the boundaries where a schedule changes piece (milestones,
// staircase steps, SGDR restarts, the one-cycle peak, the end of warmup); PyTorch OneCycleLR's
// phase arithmetic written out as PyTorch does it; validation messages; names; epochs.
#include "wren/schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

namespace wren {
namespace {

using LD = long double;
constexpr LD kPi = std::numbers::pi_v<long double>;

// Double arithmetic against a long double reference: a few ulps of relative error.
constexpr double kRtol = 1e-12;

void expect_lr(const Schedule& s, int64_t t, LD expected) {
  const double got = s.lr(t);
  const double want = static_cast<double>(expected);
  EXPECT_NEAR(got, want, kRtol * std::fabs(want))
      << to_string(s.config().kind) << " at t = " << t << ": got " << got << ", expected "
      << want;
}

Schedule make(const ScheduleConfig& config) {
  Expected<Schedule> s = Schedule::create(config);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
  if (!s.ok()) return Schedule::create({}).value();
  return std::move(s).value();
}

// The message of the error create() gives, or "" (and a failure) when it accepts the config.
std::string create_error(const ScheduleConfig& config) {
  Expected<Schedule> s = Schedule::create(config);
  EXPECT_FALSE(s.ok()) << "accepted a config that should have been rejected";
  if (s.ok()) return "";
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument) << s.error().message();
  return s.error().message();
}

// Expects create() to reject `config` with a message containing `expected_part`.
void expect_rejected(const ScheduleConfig& config, const std::string& expected_part) {
  const std::string message = create_error(config);
  EXPECT_NE(message.find(expected_part), std::string::npos)
      << "expected '" << expected_part << "' in: " << message;
}

// Expects to_steps() to reject `epochs` with a message containing `expected_part`.
void expect_epochs_rejected(const EpochSpec& epochs, const std::string& expected_part) {
  Expected<ScheduleConfig> result = to_steps({}, epochs);
  ASSERT_FALSE(result.ok()) << "expected an error with '" << expected_part << "'";
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.error().message().find(expected_part), std::string::npos)
      << "expected '" << expected_part << "' in: " << result.error().message();
}

// ---------------------------------------------------------------------------------------------
// Closed forms, from the reference's table

LD step_ref(LD lr0, LD gamma, int64_t s, int64_t t) {
  return lr0 * std::pow(gamma, static_cast<LD>(t / s));
}
LD linear_ref(LD lr0, LD lr_end, int64_t total, int64_t t) {
  return lr0 + (lr_end - lr0) * static_cast<LD>(std::min(t, total)) / static_cast<LD>(total);
}
LD poly_ref(LD lr0, LD lr_end, LD p, int64_t total, int64_t t) {
  const LD done = static_cast<LD>(std::min(t, total)) / static_cast<LD>(total);
  return (lr0 - lr_end) * std::pow(1 - done, p) + lr_end;
}
LD cosine_ref(LD lr0, LD lr_min, int64_t total, int64_t t) {
  const LD done = static_cast<LD>(std::min(t, total)) / static_cast<LD>(total);
  return lr_min + (lr0 - lr_min) * (1 + std::cos(kPi * done)) / 2;
}
// One cosine cycle, with the cycle's start and length given by the test.
LD sgdr_ref(LD lr0, LD lr_min, int64_t cycle_start, int64_t cycle_length, int64_t t) {
  return cosine_ref(lr0, lr_min, cycle_length, t - cycle_start);
}

// PyTorch OneCycleLR (anneal_strategy 'cos', three_phase False), get_lr() as written there:
//   phases: end_step = float(pct_start·total_steps) − 1 (initial_lr → max_lr), then
//           end_step = total_steps − 1 (max_lr → min_lr)
//   initial_lr = max_lr / div_factor, min_lr = initial_lr / final_div_factor
//   start_step = 0; for each phase: if step ≤ end_step or it is the last phase:
//       pct = (step − start_step) / (end_step − start_step); lr = anneal(start, end, pct)
//     else start_step = end_step
//   _annealing_cos(start, end, pct) = end + (start − end)/2 · (cos(π·pct) + 1)
// In double, as PyTorch computes it.
double pytorch_one_cycle(double max_lr, int64_t total_steps, double pct_start, double div_factor,
                         double final_div_factor, int64_t step) {
  const double initial_lr = max_lr / div_factor;
  const double min_lr = initial_lr / final_div_factor;
  struct Phase {
    double end_step, start_lr, end_lr;
  };
  const Phase phases[2] = {
      {pct_start * static_cast<double>(total_steps) - 1, initial_lr, max_lr},
      {static_cast<double>(total_steps - 1), max_lr, min_lr},
  };
  double start_step = 0;
  for (int i = 0; i < 2; ++i) {
    const Phase& ph = phases[i];
    if (static_cast<double>(step) <= ph.end_step || i == 1) {
      const double pct = (static_cast<double>(step) - start_step) / (ph.end_step - start_step);
      return ph.end_lr + (ph.start_lr - ph.end_lr) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
    }
    start_step = ph.end_step;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// ---------------------------------------------------------------------------------------------
// Each schedule against its closed form

TEST(ScheduleTest, DefaultConfigIsAValidConstantSchedule) {
  const Schedule s = make({});
  EXPECT_EQ(s.config().kind, ScheduleKind::kConstant);
  EXPECT_EQ(s.lr(0), 0.1);
}

TEST(ScheduleTest, ConstantAtEveryStepAndBeyond) {
  const Schedule s = make({.kind = ScheduleKind::kConstant, .lr = 0.05});
  for (int64_t t : {int64_t{0}, int64_t{1}, int64_t{999}, int64_t{1} << 40}) {
    EXPECT_EQ(s.lr(t), 0.05) << "t = " << t;
  }
}

TEST(ScheduleTest, NegativeStepGivesTheValueAtZero) {
  const Schedule s = make({.kind = ScheduleKind::kLinear, .lr = 0.1, .total_steps = 10});
  EXPECT_EQ(s.lr(-5), s.lr(0));
}

TEST(ScheduleTest, StepDecaysEveryStepSizeSteps) {
  const Schedule s =
      make({.kind = ScheduleKind::kStep, .lr = 0.1, .gamma = 0.5, .step_size = 30});
  for (int64_t t : {0, 1, 29, 30, 31, 59, 60, 95, 1000}) {
    expect_lr(s, t, step_ref(0.1L, 0.5L, 30, t));
  }
  EXPECT_EQ(s.lr(29), 0.1);
  EXPECT_EQ(s.lr(30), 0.05);
}

TEST(ScheduleTest, MultistepAtAndEitherSideOfEachMilestone) {
  const Schedule s = make({.kind = ScheduleKind::kMultiStep,
                           .lr = 0.4,
                           .gamma = 0.1,
                           .milestones = {100, 250, 400}});
  const LD lr0 = 0.4L;
  expect_lr(s, 0, lr0);
  expect_lr(s, 99, lr0);
  expect_lr(s, 100, lr0 * 0.1L);  // a milestone counts from its own step on
  expect_lr(s, 101, lr0 * 0.1L);
  expect_lr(s, 249, lr0 * 0.1L);
  expect_lr(s, 250, lr0 * 0.01L);
  expect_lr(s, 251, lr0 * 0.01L);
  expect_lr(s, 399, lr0 * 0.01L);
  expect_lr(s, 400, lr0 * 0.001L);
  expect_lr(s, 401, lr0 * 0.001L);
  expect_lr(s, 1000000, lr0 * 0.001L);
}

TEST(ScheduleTest, ExponentialSmoothAndStaircase) {
  const ScheduleConfig smooth = {
      .kind = ScheduleKind::kExponential, .lr = 0.1, .gamma = 0.96, .step_size = 100};
  ScheduleConfig stairs = smooth;
  stairs.staircase = true;
  const Schedule s = make(smooth);
  const Schedule st = make(stairs);
  for (int64_t t : {0, 1, 50, 99, 100, 150, 199, 200, 1000, 12345}) {
    expect_lr(s, t, 0.1L * std::pow(0.96L, static_cast<LD>(t) / 100));
    expect_lr(st, t, 0.1L * std::pow(0.96L, static_cast<LD>(t / 100)));
  }
  // They agree at multiples of s and differ in between.
  EXPECT_NEAR(s.lr(200), st.lr(200), kRtol * st.lr(200));
  EXPECT_LT(s.lr(150), st.lr(150));
  EXPECT_EQ(st.lr(199), st.lr(100));
}

TEST(ScheduleTest, ExponentialPerStepByDefault) {
  const Schedule s = make({.kind = ScheduleKind::kExponential, .lr = 1.0, .gamma = 0.99});
  for (int64_t t : {0, 1, 2, 500}) expect_lr(s, t, std::pow(0.99L, static_cast<LD>(t)));
}

TEST(ScheduleTest, LinearFromLr0ToLrEndThenHolds) {
  const Schedule s = make(
      {.kind = ScheduleKind::kLinear, .lr = 0.1, .total_steps = 1000, .lr_end = 0.001});
  for (int64_t t : {0, 1, 333, 500, 999, 1000, 5000}) {
    expect_lr(s, t, linear_ref(0.1L, 0.001L, 1000, t));
  }
  expect_lr(s, 500, 0.0505L);
  expect_lr(s, 1000, 0.001L);
  expect_lr(s, 5000, 0.001L);
}

TEST(ScheduleTest, LinearToZeroReachesExactlyZeroAtT) {
  const Schedule s = make({.kind = ScheduleKind::kLinear, .lr = 0.3, .total_steps = 7});
  expect_lr(s, 3, linear_ref(0.3L, 0, 7, 3));
  EXPECT_EQ(s.lr(7), 0.0);
  EXPECT_EQ(s.lr(8), 0.0);
}

TEST(ScheduleTest, PolynomialForSeveralPowers) {
  for (double p : {0.9, 1.0, 2.0}) {
    const Schedule s = make({.kind = ScheduleKind::kPolynomial,
                             .lr = 0.1,
                             .total_steps = 1000,
                             .lr_end = 1e-4,
                             .power = p});
    for (int64_t t : {0, 300, 500, 999, 1000, 2000}) {
      expect_lr(s, t, poly_ref(0.1L, 1e-4L, p, 1000, t));
    }
  }
  const Schedule square = make({.kind = ScheduleKind::kPolynomial,
                                .lr = 1.0,
                                .total_steps = 100,
                                .power = 2.0});
  expect_lr(square, 50, 0.25L);
}

TEST(ScheduleTest, CosineFromLr0ToLrMinThenHolds) {
  const Schedule s = make(
      {.kind = ScheduleKind::kCosine, .lr = 0.1, .total_steps = 1000, .lr_min = 1e-4});
  for (int64_t t : {0, 1, 250, 500, 999, 1000, 3000}) {
    expect_lr(s, t, cosine_ref(0.1L, 1e-4L, 1000, t));
  }
  expect_lr(s, 0, 0.1L);
  expect_lr(s, 500, (0.1L + 1e-4L) / 2);
  expect_lr(s, 1000, 1e-4L);
  expect_lr(s, 3000, 1e-4L);
}

TEST(ScheduleTest, CosineRestartsWithConstantCycles) {
  const Schedule s = make({.kind = ScheduleKind::kCosineRestarts,
                           .lr = 0.1,
                           .lr_min = 0.001,
                           .restart_period = 10,
                           .restart_mult = 1});
  // Cycles [0, 10), [10, 20), [20, 30), ...
  expect_lr(s, 0, 0.1L);
  expect_lr(s, 5, sgdr_ref(0.1L, 0.001L, 0, 10, 5));
  expect_lr(s, 9, sgdr_ref(0.1L, 0.001L, 0, 10, 9));
  expect_lr(s, 10, 0.1L);  // restart
  expect_lr(s, 11, sgdr_ref(0.1L, 0.001L, 10, 10, 11));
  expect_lr(s, 25, (0.1L + 0.001L) / 2);
  expect_lr(s, 29, sgdr_ref(0.1L, 0.001L, 20, 10, 29));
  expect_lr(s, 30, 0.1L);
  expect_lr(s, 1000003, sgdr_ref(0.1L, 0.001L, 1000000, 10, 1000003));
}

TEST(ScheduleTest, CosineRestartsWithDoublingCycles) {
  const Schedule s = make({.kind = ScheduleKind::kCosineRestarts,
                           .lr = 0.1,
                           .lr_min = 0.0,
                           .restart_period = 10,
                           .restart_mult = 2});
  // Cycles [0, 10), [10, 30), [30, 70), [70, 150), [150, 310).
  struct Cycle {
    int64_t start, length;
  };
  for (const Cycle c :
       {Cycle{0, 10}, Cycle{10, 20}, Cycle{30, 40}, Cycle{70, 80}, Cycle{150, 160}}) {
    expect_lr(s, c.start, 0.1L);
    expect_lr(s, c.start + 1, sgdr_ref(0.1L, 0, c.start, c.length, c.start + 1));
    expect_lr(s, c.start + c.length / 2, 0.05L);
    expect_lr(s, c.start + c.length - 1,
              sgdr_ref(0.1L, 0, c.start, c.length, c.start + c.length - 1));
  }
  // Far out, the cycle index must not overflow: 2^61 is inside some cycle, the value in range.
  const double far = s.lr(int64_t{1} << 61);
  EXPECT_TRUE(std::isfinite(far) && far >= 0.0 && far <= 0.1) << far;
  const double last = s.lr(std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(std::isfinite(last) && last >= 0.0 && last <= 0.1) << last;
}

TEST(ScheduleTest, CosineRestartsWithTripledCyclesMatchesPyTorchClosedForm) {
  // PyTorch CosineAnnealingWarmRestarts.step(epoch) for T_mult > 1:
  //   n = int(log(epoch/T0·(m − 1) + 1, m)); T_cur = epoch − T0·(m^n − 1)/(m − 1);
  //   T_i = T0·m^n
  // in long double, away from boundaries (where that log can round to the wrong cycle).
  const int64_t t0 = 7, m = 3;
  const Schedule s = make({.kind = ScheduleKind::kCosineRestarts,
                           .lr = 0.2,
                           .lr_min = 0.01,
                           .restart_period = t0,
                           .restart_mult = m});
  for (int64_t t : {3, 12, 40, 100, 500, 1000}) {
    const LD n = std::floor(std::log(static_cast<LD>(t) / t0 * (m - 1) + 1) / std::log(LD{3}));
    const LD t_cur = t - t0 * (std::pow(LD{3}, n) - 1) / (m - 1);
    const LD t_i = t0 * std::pow(LD{3}, n);
    expect_lr(s, t, 0.01L + (0.2L - 0.01L) * (1 + std::cos(kPi * t_cur / t_i)) / 2);
  }
}

TEST(ScheduleTest, OneCycleMatchesPyTorchFormulaAtEveryStep) {
  struct Case {
    int64_t total;
    double pct;
  };
  // pct·T − 1 integral (peak on a step) and not (peak between steps).
  for (const Case c : {Case{100, 0.25}, Case{1000, 0.3}, Case{10, 0.35}, Case{37, 0.3}}) {
    const Schedule s = make({.kind = ScheduleKind::kOneCycle,
                             .lr = 0.8,
                             .total_steps = c.total,
                             .pct_start = c.pct,
                             .div_factor = 25,
                             .final_div_factor = 1e4});
    for (int64_t t = 0; t < c.total; ++t) {
      const double want = pytorch_one_cycle(0.8, c.total, c.pct, 25, 1e4, t);
      ASSERT_NEAR(s.lr(t), want, kRtol * want) << "T = " << c.total << ", t = " << t;
    }
  }
}

TEST(ScheduleTest, OneCyclePeaksAtPctTMinusOneAndEndsAtMaxOverDivOverFinalDiv) {
  const double max_lr = 0.8;
  const Schedule s = make({.kind = ScheduleKind::kOneCycle,
                           .lr = max_lr,
                           .total_steps = 100,
                           .pct_start = 0.25,
                           .div_factor = 20,
                           .final_div_factor = 1000});
  expect_lr(s, 0, max_lr / 20.0L);
  expect_lr(s, 24, max_lr);  // pct·T − 1 = 24
  EXPECT_LT(s.lr(23), s.lr(24));
  EXPECT_LT(s.lr(25), s.lr(24));
  // Rising half-way (t = 12 of 24) is the midpoint of initial and max.
  expect_lr(s, 12, (max_lr / 20.0L + max_lr) / 2);
  expect_lr(s, 99, max_lr / 20.0L / 1000.0L);
  // Past T − 1 the final value holds (PyTorch raises beyond T).
  expect_lr(s, 100, max_lr / 20.0L / 1000.0L);
  expect_lr(s, 100000, max_lr / 20.0L / 1000.0L);
}

TEST(ScheduleTest, InverseSqrtFlatUntilWThenDecays) {
  const Schedule s =
      make({.kind = ScheduleKind::kInverseSqrt, .lr = 0.01, .inv_sqrt_warmup = 100});
  for (int64_t t : {0, 50, 100}) expect_lr(s, t, 0.01L);
  expect_lr(s, 400, 0.005L);
  expect_lr(s, 10000, 0.001L);
  expect_lr(s, 150, 0.01L * std::sqrt(100.0L) / std::sqrt(150.0L));
}

TEST(ScheduleTest, InverseTimeKerasForm) {
  const Schedule s = make(
      {.kind = ScheduleKind::kInverseTime, .lr = 0.1, .step_size = 10, .decay = 0.5});
  expect_lr(s, 0, 0.1L);
  expect_lr(s, 10, 0.1L / 1.5L);
  expect_lr(s, 35, 0.1L / (1 + 0.5L * 35 / 10));
  expect_lr(s, 1000000, 0.1L / (1 + 0.5L * 1000000 / 10));
}

TEST(ScheduleTest, InvCaffeForm) {
  const Schedule s =
      make({.kind = ScheduleKind::kInv, .lr = 0.01, .gamma = 1e-4, .power = 0.75});
  for (int64_t t : {0, 1, 5000, 10000, 1000000}) {
    expect_lr(s, t, 0.01L * std::pow(1 + 1e-4L * t, -0.75L));
  }
  expect_lr(s, 10000, 0.01L * std::pow(2.0L, -0.75L));
}

// ---------------------------------------------------------------------------------------------
// Warmup wrapping a schedule

TEST(ScheduleTest, WarmupRampsToLr0ThenRunsTheWrappedScheduleOnTheRest) {
  const ScheduleConfig cfg = {.kind = ScheduleKind::kCosine,
                              .lr = 0.1,
                              .total_steps = 1000,
                              .lr_min = 1e-3,
                              .warmup_steps = 100,
                              .warmup_start_factor = 0.1};
  const Schedule s = make(cfg);
  expect_lr(s, 0, 0.1L * 0.1L);
  expect_lr(s, 50, 0.1L * (0.1L + 0.9L * 50 / 100));
  expect_lr(s, 99, 0.1L * (0.1L + 0.9L * 99 / 100));
  expect_lr(s, 100, 0.1L);
  // After warmup: the cosine over T − W = 900 steps, evaluated at t − W.
  for (int64_t t : {101, 550, 999, 1000, 2000}) {
    expect_lr(s, t, cosine_ref(0.1L, 1e-3L, 900, t - 100));
  }
  expect_lr(s, 550, (0.1L + 1e-3L) / 2);
  expect_lr(s, 1000, 1e-3L);
}

TEST(ScheduleTest, WarmupStartsAtZeroByDefault) {
  const Schedule s = make({.kind = ScheduleKind::kLinear,
                           .lr = 0.2,
                           .total_steps = 50,
                           .lr_end = 0.02,
                           .warmup_steps = 10});
  EXPECT_EQ(s.lr(0), 0.0);
  expect_lr(s, 5, 0.1L);
  expect_lr(s, 10, 0.2L);
  for (int64_t t : {11, 30, 49, 50}) expect_lr(s, t, linear_ref(0.2L, 0.02L, 40, t - 10));
}

TEST(ScheduleTest, WarmupShiftsMilestonesAndRestartsByW) {
  const Schedule multistep = make({.kind = ScheduleKind::kMultiStep,
                                   .lr = 1.0,
                                   .total_steps = 1000,
                                   .gamma = 0.1,
                                   .milestones = {100},
                                   .warmup_steps = 20});
  expect_lr(multistep, 119, 1.0L);
  expect_lr(multistep, 120, 0.1L);
  const Schedule sgdr = make({.kind = ScheduleKind::kCosineRestarts,
                              .lr = 1.0,
                              .total_steps = 1000,
                              .restart_period = 10,
                              .warmup_steps = 5});
  expect_lr(sgdr, 5, 1.0L);
  expect_lr(sgdr, 14, sgdr_ref(1.0L, 0, 0, 10, 9));
  expect_lr(sgdr, 15, 1.0L);
}

TEST(ScheduleTest, WarmupWrapsOneCycleOverTheRemainingSteps) {
  const Schedule s = make({.kind = ScheduleKind::kOneCycle,
                           .lr = 0.5,
                           .total_steps = 120,
                           .pct_start = 0.25,
                           .warmup_steps = 20,
                           .warmup_start_factor = 0.5});
  expect_lr(s, 0, 0.5L / 25 * 0.5L);
  expect_lr(s, 20, 0.5L / 25);
  for (int64_t t = 20; t < 130; ++t) {
    const double want = pytorch_one_cycle(0.5, 100, 0.25, 25, 1e4, std::min<int64_t>(t - 20, 99));
    expect_lr(s, t, want);
  }
  expect_lr(s, 44, 0.5L);  // the peak: step pct·(T − W) − 1 = 24 of the wrapped run
}

TEST(ScheduleTest, WarmupWithoutTotalStepsForKindsThatIgnoreT) {
  const Schedule s = make({.kind = ScheduleKind::kInverseSqrt,
                           .lr = 0.01,
                           .inv_sqrt_warmup = 4,
                           .warmup_steps = 8});
  expect_lr(s, 4, 0.005L);
  expect_lr(s, 8, 0.01L);
  expect_lr(s, 24, 0.005L);  // wrapped step 16: √4/√16
}

// ---------------------------------------------------------------------------------------------
// Validation

TEST(ScheduleTest, WarmupMustBeShorterThanTotal) {
  EXPECT_EQ(create_error({.kind = ScheduleKind::kCosine,
                          .total_steps = 1000,
                          .warmup_steps = 1200}),
            "--warmup-steps (1200) must be smaller than the total steps (1000)");
  EXPECT_EQ(create_error({.kind = ScheduleKind::kConstant,
                          .total_steps = 1000,
                          .warmup_steps = 1000}),
            "--warmup-steps (1000) must be smaller than the total steps (1000)");
  EXPECT_TRUE(Schedule::create({.kind = ScheduleKind::kCosine,
                                .total_steps = 1000,
                                .warmup_steps = 999})
                  .ok());
}

TEST(ScheduleTest, KindsThatNeedTRejectAMissingT) {
  for (ScheduleKind kind : {ScheduleKind::kLinear, ScheduleKind::kPolynomial,
                            ScheduleKind::kCosine, ScheduleKind::kOneCycle}) {
    const std::string message = create_error({.kind = kind});
    EXPECT_NE(message.find("--total-steps"), std::string::npos) << message;
    EXPECT_NE(message.find(std::string(to_string(kind))), std::string::npos) << message;
    EXPECT_TRUE(uses_total_steps(kind));
  }
  EXPECT_FALSE(uses_total_steps(ScheduleKind::kStep));
}

TEST(ScheduleTest, BadValuesAreRejectedNamingTheOption) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  using K = ScheduleKind;
  expect_rejected({.lr = -0.1}, "--lr (-0.1)");
  expect_rejected({.lr = nan}, "--lr (nan)");
  expect_rejected({.total_steps = -1}, "--total-steps (-1)");
  expect_rejected({.warmup_steps = -3}, "--warmup-steps (-3)");
  expect_rejected({.total_steps = 10, .warmup_steps = 2, .warmup_start_factor = 1.5},
                  "--warmup-start-factor (1.5) must be in [0, 1]");
  expect_rejected({.kind = K::kStep, .gamma = 0}, "--gamma (0) must be a positive");
  expect_rejected({.kind = K::kStep, .gamma = nan}, "--gamma (nan)");
  expect_rejected({.kind = K::kStep, .step_size = 0},
                  "--step-size (0) must be at least 1 for the step schedule");
  expect_rejected({.kind = K::kExponential, .gamma = -0.5}, "--gamma (-0.5)");
  expect_rejected({.kind = K::kExponential, .step_size = -2}, "--step-size (-2)");
  expect_rejected({.kind = K::kMultiStep}, "--milestones is empty");
  expect_rejected({.kind = K::kMultiStep, .milestones = {30, 20}},
                  "--milestones must be strictly increasing, got steps 30, 20");
  expect_rejected({.kind = K::kMultiStep, .milestones = {30, 30}},
                  "--milestones must be strictly increasing");
  expect_rejected({.kind = K::kMultiStep, .milestones = {-1, 5}},
                  "--milestones must not be negative");
  expect_rejected({.kind = K::kLinear, .total_steps = 10, .lr_end = -1}, "--lr-end (-1)");
  expect_rejected({.kind = K::kPolynomial, .total_steps = 10, .power = 0}, "--power (0)");
  expect_rejected({.kind = K::kCosine, .total_steps = 10, .lr_min = inf}, "--lr-min (inf)");
  expect_rejected({.kind = K::kCosineRestarts}, "--restart-period (0) must be at least 1");
  expect_rejected({.kind = K::kCosineRestarts, .restart_period = 5, .restart_mult = 0},
                  "--restart-mult (0)");
  expect_rejected({.kind = K::kOneCycle, .total_steps = 100, .pct_start = 0},
                  "--pct-start (0) must be strictly between 0 and 1");
  expect_rejected({.kind = K::kOneCycle, .total_steps = 100, .pct_start = 1},
                  "--pct-start (1) must be strictly between 0 and 1");
  expect_rejected({.kind = K::kOneCycle, .total_steps = 3, .pct_start = 0.3},
                  "--pct-start (0.3) times the 3 steps after warmup must be greater than 1");
  expect_rejected({.kind = K::kOneCycle, .total_steps = 100, .div_factor = 0},
                  "--div-factor (0)");
  expect_rejected({.kind = K::kOneCycle, .total_steps = 100, .final_div_factor = -1},
                  "--final-div-factor (-1)");
  expect_rejected({.kind = K::kInverseSqrt, .inv_sqrt_warmup = 0}, "--inv-sqrt-warmup (0)");
  expect_rejected({.kind = K::kInverseTime}, "--decay (0) must be a positive");
  expect_rejected({.kind = K::kInverseTime, .step_size = 0, .decay = 1}, "--step-size (0)");
  expect_rejected({.kind = K::kInv, .gamma = 0}, "--gamma (0)");
  expect_rejected({.kind = K::kInv, .power = -1}, "--power (-1)");
}

TEST(ScheduleTest, FieldsAKindDoesNotUseAreNotValidated) {
  EXPECT_TRUE(Schedule::create({.kind = ScheduleKind::kConstant, .gamma = -1, .step_size = 0})
                  .ok());
  EXPECT_TRUE(Schedule::create({.kind = ScheduleKind::kCosine,
                                .total_steps = 10,
                                .milestones = {5, 1},
                                .warmup_start_factor = 7})
                  .ok());  // no warmup, so its start factor is unused
}

// ---------------------------------------------------------------------------------------------
// Names

TEST(ScheduleTest, ParsesCanonicalNamesAndAliases) {
  struct Case {
    const char* name;
    ScheduleKind kind;
  };
  for (const Case c : {Case{"constant", ScheduleKind::kConstant},
                       Case{"step", ScheduleKind::kStep},
                       Case{"multistep", ScheduleKind::kMultiStep},
                       Case{"exponential", ScheduleKind::kExponential},
                       Case{"exp", ScheduleKind::kExponential},
                       Case{"linear", ScheduleKind::kLinear},
                       Case{"polynomial", ScheduleKind::kPolynomial},
                       Case{"poly", ScheduleKind::kPolynomial},
                       Case{"cosine", ScheduleKind::kCosine},
                       Case{"cosine-restarts", ScheduleKind::kCosineRestarts},
                       Case{"sgdr", ScheduleKind::kCosineRestarts},
                       Case{"onecycle", ScheduleKind::kOneCycle},
                       Case{"one-cycle", ScheduleKind::kOneCycle},
                       Case{"inverse-sqrt", ScheduleKind::kInverseSqrt},
                       Case{"rsqrt", ScheduleKind::kInverseSqrt},
                       Case{"inverse-time", ScheduleKind::kInverseTime},
                       Case{"keras", ScheduleKind::kInverseTime},
                       Case{"inv", ScheduleKind::kInv},
                       Case{"caffe", ScheduleKind::kInv},
                       Case{"Cosine_Restarts", ScheduleKind::kCosineRestarts},
                       Case{"ONE_CYCLE", ScheduleKind::kOneCycle},
                       Case{"inverse_sqrt", ScheduleKind::kInverseSqrt}}) {
    Expected<ScheduleKind> kind = parse_schedule_kind(c.name);
    ASSERT_TRUE(kind.ok()) << c.name << ": " << kind.error().message();
    EXPECT_EQ(*kind, c.kind) << c.name;
  }
}

TEST(ScheduleTest, UnknownNameListsTheKnownOnes) {
  Expected<ScheduleKind> kind = parse_schedule_kind("cosin");
  ASSERT_FALSE(kind.ok());
  EXPECT_EQ(kind.error().code(), ErrorCode::kNotFound);
  const std::string& message = kind.error().message();
  EXPECT_NE(message.find("'cosin'"), std::string::npos) << message;
  for (std::string_view name : schedule_names()) {
    EXPECT_NE(message.find(std::string(name)), std::string::npos) << name << ": " << message;
  }
  EXPECT_FALSE(parse_schedule_kind("").ok());
}

TEST(ScheduleTest, NamesRoundTripInKindOrder) {
  const std::vector<std::string_view> names = schedule_names();
  ASSERT_EQ(names.size(), 12u);
  for (size_t i = 0; i < names.size(); ++i) {
    const ScheduleKind kind = static_cast<ScheduleKind>(i);
    EXPECT_EQ(to_string(kind), names[i]);
    Expected<ScheduleKind> parsed = parse_schedule_kind(names[i]);
    ASSERT_TRUE(parsed.ok()) << names[i];
    EXPECT_EQ(*parsed, kind) << names[i];
  }
  EXPECT_EQ(to_string(ScheduleKind::kCosineRestarts), "cosine-restarts");
  EXPECT_EQ(to_string(ScheduleKind::kInv), "inv");
}

// ---------------------------------------------------------------------------------------------
// Epochs to steps

TEST(ScheduleTest, EpochsConvertToStepsWithTheBatchesPerEpoch) {
  const ScheduleConfig base = {.kind = ScheduleKind::kMultiStep, .lr = 0.1, .gamma = 0.1};
  Expected<ScheduleConfig> c = to_steps(base, {.steps_per_epoch = 391,
                                               .total = 90,
                                               .warmup = 0.5,
                                               .step_size = 30,
                                               .milestones = {30, 60, 80},
                                               .restart_period = 10,
                                               .inv_sqrt_warmup = 2});
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->total_steps, 35190);
  EXPECT_EQ(c->warmup_steps, 196);  // 195.5 rounds away from zero
  EXPECT_EQ(c->step_size, 11730);
  EXPECT_EQ(c->milestones, (std::vector<int64_t>{11730, 23460, 31280}));
  EXPECT_EQ(c->restart_period, 3910);
  EXPECT_EQ(c->inv_sqrt_warmup, 782);
  EXPECT_EQ(c->lr, 0.1);
  EXPECT_EQ(c->kind, ScheduleKind::kMultiStep);
  ASSERT_TRUE(Schedule::create(*c).ok());
}

TEST(ScheduleTest, UnsetEpochFieldsKeepTheStepValues) {
  const ScheduleConfig base = {.total_steps = 500, .step_size = 7, .warmup_steps = 3};
  Expected<ScheduleConfig> c = to_steps(base, {.steps_per_epoch = 100, .total = 2});
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->total_steps, 200);
  EXPECT_EQ(c->step_size, 7);
  EXPECT_EQ(c->warmup_steps, 3);
  // Nothing in epochs: steps_per_epoch is not needed.
  Expected<ScheduleConfig> same = to_steps(base, {});
  ASSERT_TRUE(same.ok()) << same.error().message();
  EXPECT_EQ(same->total_steps, 500);
}

TEST(ScheduleTest, BadEpochValuesAreRejectedNamingTheEpochFlag) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_epochs_rejected({.steps_per_epoch = 0, .total = 5},
                         "--steps-per-epoch (0) must be at least 1");
  expect_epochs_rejected({.steps_per_epoch = 10, .total = -1}, "--epochs (-1)");
  expect_epochs_rejected({.steps_per_epoch = 10, .total = 1e300}, "--epochs (1e+300)");
  expect_epochs_rejected({.steps_per_epoch = 10, .warmup = nan}, "--warmup-epochs (nan)");
  expect_epochs_rejected(
      {.steps_per_epoch = 10, .step_size = 0.01},
      "--step-epochs (0.01) is 0 steps at 10 steps per epoch; it must be at least 1 step");
  expect_epochs_rejected({.steps_per_epoch = 10, .restart_period = 0},
                         "--restart-epochs (0) is 0 steps");
  expect_epochs_rejected({.steps_per_epoch = 10, .milestones = {30, 20}},
                         "--milestones must be strictly increasing, got epochs 30, 20");
  expect_epochs_rejected(
      {.steps_per_epoch = 10, .milestones = {1.01, 1.02}},
      "--milestones 1.01 and 1.02 epochs both round to step 10 at 10 steps per epoch");
  expect_epochs_rejected({.steps_per_epoch = 10, .milestones = {-1}}, "--milestones (-1)");
}

}  // namespace
}  // namespace wren
