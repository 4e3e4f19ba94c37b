// `wren`: train, evaluate, sweep and plot from the command line (docs/CLI.md).
//
//   wren train [flags]            train (no flags: ref-cnn on Fashion-MNIST, AdamW, cosine)
//   wren eval CHECKPOINT          accuracy, loss and confusion matrix on the test set
//   wren sweep --wd 0,1e-4,5e-4   grid over --wd / --lr / --l1 on the validation split
//   wren plot RUN_DIR             loss, accuracy, LR and weight norms as SVG (and PNG)
//   wren check --device emu       one training step on a kernel device vs the CPU reference
//
// Library errors are values (docs/ARCHITECTURE.md, design decision 7: errors are values until the CLI); here they become a
// message on stderr ("wren train: ...") and exit status 1. Usage errors exit with CLI11's code.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "wren/atomic_file.h"
#include "wren/check.h"
#include "wren/device.h"
#include "wren/data.h"
#include "wren/models.h"
#include "cli/plot.h"
#include "wren/safetensors.h"
#include "wren/schedule.h"
#include "wren/train.h"

namespace {

using wren::TrainConfig;

int fail(const char* command, const std::string& message) {
  std::fprintf(stderr, "wren %s: %s\n", command, message.c_str());
  return 1;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Flags shared by `train` and `sweep`, bound to a TrainConfig plus the values that need
// resolving after parsing. The fixed-choice flags are read as their spellings (CLI11 checks
// them against the list) and parsed into the config's enums by resolve().
struct TrainFlags {
  TrainConfig config;
  std::string opt = "adamw", sched = "cosine", wd_mode, l1_mode = "coupled", pad = "zero";
  std::string device, math, linear, on_nonfinite;  // add_train_flags: the config's defaults
  bool no_shuffle = false, no_aug = false, no_test = false, no_progress = false;
  bool flip = false;
  int crop = -1, cutout = 0;
  double warmup_epochs = 1.0, step_epochs = 0, restart_epochs = 0;
  std::vector<double> milestones;
  CLI::Option* sched_option = nullptr;
  CLI::Option* warmup_option = nullptr;
  CLI::Option* warmup_steps_option = nullptr;
  CLI::Option* step_epochs_option = nullptr;
  CLI::Option* restart_epochs_option = nullptr;
  CLI::Option* aug_option = nullptr;
  CLI::Option* device_option = nullptr;
};

void add_train_flags(CLI::App* app, TrainFlags& f, bool sweep) {
  TrainConfig& c = f.config;
  f.device = wren::to_string(c.device);
  f.math = wren::to_string(c.math);
  f.linear = wren::to_string(c.linear);
  f.on_nonfinite = wren::to_string(c.on_nonfinite);
  const std::string zoo = join(wren::model_names());
  app->add_option("--model", c.model, "built-in model (" + zoo + ") or a model file")
      ->capture_default_str();
  app->add_option("--data-dir", c.data_dir,
                  "dataset directory: MNIST-format IDX files (raw or .gz) or CIFAR-10/100 "
                  "binary batches")
      ->capture_default_str();
  f.device_option = app->add_option("--device", f.device,
                  "auto (the GPU when there is one, else the CPU) | cpu | cuda | emu (the CUDA "
                  "kernels in the SIMT emulator on the CPU: slow, for checking)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "emu"}))
      ->capture_default_str();
  app->add_option("--math", f.math,
                  "cuda/emu matrix products: fp32 (exact fp32 arithmetic) | tf32 (tensor cores, "
                  "10-bit mantissa inputs)")
      ->check(CLI::IsMember({"fp32", "tf32"}))
      ->capture_default_str();
  app->add_option("--linear", f.linear,
                  "cuda: the linear layers' GEMM: wren (our kernel) | cublas")
      ->check(CLI::IsMember({"wren", "cublas"}))
      ->capture_default_str();
  app->add_option_function<std::string>(
         "--cuda-graph", [&c](const std::string& v) { c.cuda_graph = v == "on"; },
         "cuda/emu: replay forward, backward and optimizer from one recorded CUDA graph per "
         "step (on, the default; models with dropout always run op by op) | off")
      ->check(CLI::IsMember({"on", "off"}));
  app->add_option("--epochs", c.epochs, "training epochs (fractions allowed)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--steps", c.steps, "total optimizer steps; overrides --epochs")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--batch", c.batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
  app->add_option("--seed", c.seed, "seed of the weights, split, shuffle, augmentation, dropout")
      ->capture_default_str();
  app->add_flag("--no-shuffle", f.no_shuffle, "keep the training set in file order");
  app->add_flag("--no-aug", f.no_aug, "no augmentation");
  f.aug_option = app->add_flag("--flip", f.flip, "augment: random horizontal flip");
  app->add_option("--crop", f.crop, "augment: random crop after padding by N pixels")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--pad-mode", f.pad, "padding of --crop: zero | reflect")
      ->check(CLI::IsMember({"zero", "reflect"}))
      ->capture_default_str();
  app->add_option("--cutout", f.cutout, "augment: zero a random NxN square")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--val", c.val_count,
                  "validation images carved from the training set (-1: 1/12 of it, 0: none)")
      ->capture_default_str();
  app->add_flag("--no-test", f.no_test, "skip the test-set evaluation after each epoch");

  // Optimizer.
  app->add_option("--opt", f.opt, "optimizer: sgd | adam | adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  if (!sweep) {
    app->add_option("--lr", c.schedule.lr, "base learning rate (one-cycle: the peak)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app->add_option("--wd", c.optimizer.weight_decay,
                    "weight decay (decoupled for adamw, coupled L2 for sgd/adam; see --wd-mode)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app->add_option("--l1", c.optimizer.l1, "L1 coefficient")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
  }
  app->add_option("--wd-mode", f.wd_mode, "coupled (L2 in the gradient) | decoupled (AdamW/SGDW)")
      ->check(CLI::IsMember({"coupled", "decoupled"}));
  app->add_option("--l1-mode", f.l1_mode, "coupled | decoupled")
      ->check(CLI::IsMember({"coupled", "decoupled"}))
      ->capture_default_str();
  app->add_option("--momentum", c.optimizer.momentum, "SGD momentum")->capture_default_str();
  app->add_option("--dampening", c.optimizer.dampening, "SGD dampening")->capture_default_str();
  app->add_flag("--nesterov", c.optimizer.nesterov, "SGD Nesterov momentum");
  app->add_option("--beta1", c.optimizer.beta1, "Adam β1")->capture_default_str();
  app->add_option("--beta2", c.optimizer.beta2, "Adam β2")->capture_default_str();
  app->add_option("--eps", c.optimizer.eps, "Adam ε")->capture_default_str();
  app->add_option("--clip-norm", c.optimizer.clip_norm,
                  "clip the global gradient norm to this (0: off)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("--on-nonfinite", f.on_nonfinite,
                  "a NaN/Inf loss or gradient (checked every step, before any weight changes): "
                  "stop (end the run naming the step and the first non-finite layer) | "
                  "skip-step (leave weights and optimizer state as they were, log a "
                  "skipped_step record and go on; the LR schedule still advances)")
      ->check(CLI::IsMember({"stop", "skip-step"}))
      ->capture_default_str();

  // Schedule.
  std::string names;
  for (auto n : wren::schedule_names()) names += (names.empty() ? "" : " | ") + std::string(n);
  f.sched_option = app->add_option("--sched", f.sched, "LR schedule: " + names)
                       ->capture_default_str();
  f.warmup_option = app->add_option("--warmup-epochs", f.warmup_epochs,
                                    "linear warmup (default 1 with the default schedule, else 0)");
  f.warmup_steps_option =
      app->add_option("--warmup-steps", c.schedule.warmup_steps, "linear warmup in steps");
  app->add_option("--warmup-start-factor", c.schedule.warmup_start_factor,
                  "warmup starts at this fraction of the LR")
      ->capture_default_str();
  app->add_option("--lr-min", c.schedule.lr_min, "cosine / restarts floor")->capture_default_str();
  app->add_option("--lr-end", c.schedule.lr_end, "linear / polynomial final LR")
      ->capture_default_str();
  app->add_option("--gamma", c.schedule.gamma, "step / multistep / exponential factor")
      ->capture_default_str();
  f.step_epochs_option =
      app->add_option("--step-epochs", f.step_epochs, "step / exponential / inverse-time period");
  app->add_option("--milestones", f.milestones, "multistep milestones in epochs (comma-separated)")
      ->delimiter(',');
  app->add_flag("--staircase", c.schedule.staircase, "exponential: decay in steps");
  app->add_option("--power", c.schedule.power, "polynomial / inv power")->capture_default_str();
  f.restart_epochs_option =
      app->add_option("--restart-epochs", f.restart_epochs, "cosine-restarts first period");
  app->add_option("--restart-mult", c.schedule.restart_mult, "cosine-restarts period growth")
      ->capture_default_str();
  app->add_option("--pct-start", c.schedule.pct_start, "one-cycle rising fraction")
      ->capture_default_str();
  app->add_option("--div-factor", c.schedule.div_factor, "one-cycle initial LR = lr / this")
      ->capture_default_str();
  app->add_option("--final-div-factor", c.schedule.final_div_factor,
                  "one-cycle final LR = initial / this")
      ->capture_default_str();
  app->add_option("--decay", c.schedule.decay, "inverse-time (Keras) decay")
      ->capture_default_str();

  app->add_option("--log-every", c.log_every, "steps between metrics records")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_flag("--no-progress", f.no_progress, "no progress bar");
  app->add_option("--init-from", c.init_from,
                  "start from these weights (safetensors, e.g. exported from PyTorch)");
}

// Resolves the string flags into the config; an error names the flag.
wren::Status resolve(TrainFlags& f) {
  TrainConfig& c = f.config;
  auto device = wren::parse_device_choice(f.device);
  if (!device) return device.error();
  c.device = *device;
  auto math = wren::parse_math_mode(f.math);
  if (!math) return math.error();
  c.math = *math;
  auto linear = wren::parse_linear_impl(f.linear);
  if (!linear) return linear.error();
  c.linear = *linear;
  auto on_nonfinite = wren::parse_nonfinite_policy(f.on_nonfinite);
  if (!on_nonfinite) return on_nonfinite.error();
  c.on_nonfinite = *on_nonfinite;
  c.optimizer.kind = f.opt == "sgd"    ? wren::OptimizerKind::kSgd
                     : f.opt == "adam" ? wren::OptimizerKind::kAdam
                                       : wren::OptimizerKind::kAdamW;
  if (!f.wd_mode.empty()) {
    c.optimizer.wd_mode =
        f.wd_mode == "decoupled" ? wren::DecayMode::kDecoupled : wren::DecayMode::kCoupled;
  }
  c.optimizer.l1_mode =
      f.l1_mode == "decoupled" ? wren::DecayMode::kDecoupled : wren::DecayMode::kCoupled;
  auto kind = wren::parse_schedule_kind(f.sched);
  if (!kind) return wren::invalid_argument("--sched: " + kind.error().message());
  c.schedule.kind = *kind;
  // The default recipe warms up for one epoch; a schedule chosen by the user does not unless
  // asked to.
  c.schedule_epochs = wren::EpochSpec{};
  c.default_warmup = false;
  if (f.warmup_option->count() > 0) {
    c.schedule_epochs.warmup = f.warmup_epochs;
  } else if (f.sched_option->count() == 0 && f.warmup_steps_option->count() == 0) {
    c.schedule_epochs.warmup = 1.0;
    c.default_warmup = true;
  }
  if (f.step_epochs_option->count() > 0) c.schedule_epochs.step_size = f.step_epochs;
  if (f.restart_epochs_option->count() > 0) c.schedule_epochs.restart_period = f.restart_epochs;
  c.schedule_epochs.milestones = f.milestones;
  c.shuffle = !f.no_shuffle;
  c.evaluate_test = !f.no_test;
  c.progress = !f.no_progress;
  const bool explicit_aug = f.flip || f.crop >= 0 || f.cutout > 0;
  if (f.no_aug && explicit_aug) {
    return wren::invalid_argument("--no-aug contradicts --flip/--crop/--cutout");
  }
  if (f.no_aug || explicit_aug) {
    c.augment_auto = false;
    c.augment = explicit_aug;
    c.augment_config = wren::AugmentConfig{
        .crop_padding = std::max(f.crop, 0),
        .pad_mode = f.pad == "reflect" ? wren::PadMode::kReflect : wren::PadMode::kZero,
        .horizontal_flip = f.flip,
        .cutout = f.cutout};
  }
  return c.optimizer.validate();
}

void print_summary(const wren::TrainResult& r) {
  std::printf("trained %lld steps at %.0f img/s", static_cast<long long>(r.steps),
              r.images_per_second);
  if (r.skipped_steps > 0)
    std::printf(" (%lld skipped: non-finite loss or gradient)",
                static_cast<long long>(r.skipped_steps));
  if (r.best_val_accuracy >= 0) std::printf(", best val acc %.4f", r.best_val_accuracy);
  if (r.final_test) std::printf(", test acc %.4f", r.final_test->accuracy);
  if (r.device_peak_bytes > 0)
    std::printf(", device memory peak %.1f MiB", static_cast<double>(r.device_peak_bytes) / 1048576.0);
  std::printf("\nrun directory: %s\n", r.out_dir.c_str());
}

int run_train(TrainFlags& f, const std::string& resume) {
  if (!resume.empty()) {
    // Continue with the run's own config (flags other than --epochs/--steps do not apply).
    auto file = wren::read_checkpoint_file(resume);
    if (!file) return fail("train", file.error().message());
    auto info = wren::read_checkpoint_info(*file);
    if (!info) return fail("train", info.error().message());
    auto config = wren::config_from_json(info->config_json);
    if (!config) return fail("train", resume + ": " + config.error().message());
    config->resume = resume;
    config->progress = f.config.progress;
    config->stop_after_steps = f.config.stop_after_steps;
    // Moving a run to another machine: --device may change on resume (the continuation is then
    // exact to rounding, not bit-identical: devices round differently).
    if (f.device_option && f.device_option->count() > 0) {
      auto device = wren::parse_device_choice(f.device);
      if (!device) return fail("train", device.error().message());
      config->device = *device;
    }
    config->init_from.clear();
    if (f.config.steps > 0) config->steps = f.config.steps;
    std::fprintf(stderr, "resuming %s (run directory %s)\n", resume.c_str(),
                 config->out_dir.c_str());
    auto result = wren::train(*config, stderr);
    if (!result) return fail("train", result.error().message());
    print_summary(*result);
    return 0;
  }
  if (auto s = resolve(f); !s.ok()) return fail("train", s.message());
  auto result = wren::train(f.config, stderr);
  if (!result) return fail("train", result.error().message());
  print_summary(*result);
  return 0;
}

struct SweepFlags {
  std::vector<double> lr{1e-3}, wd{0.0, 1e-4, 5e-4, 1e-3}, l1{0.0};
  std::string out;
};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

int run_sweep(TrainFlags& f, const SweepFlags& s) {
  if (auto st = resolve(f); !st.ok()) return fail("sweep", st.message());
  if (f.config.val_count == 0) return fail("sweep", "--val 0 leaves nothing to choose by");
  const std::string out = s.out.empty() ? "runs/sweep" : s.out;
  struct Row {
    double lr, wd, l1, val_acc, val_loss;
  };
  std::vector<Row> rows;
  const size_t total = s.lr.size() * s.wd.size() * s.l1.size();
  size_t index = 0;
  for (double lr : s.lr) {
    for (double wd : s.wd) {
      for (double l1 : s.l1) {
        TrainConfig c = f.config;
        c.schedule.lr = lr;
        c.optimizer.weight_decay = wd;
        c.optimizer.l1 = l1;
        c.evaluate_test = false;  // the choice is made on validation data only
        c.write_checkpoints = false;
        c.out_dir = out + "/lr" + fmt(lr) + "_wd" + fmt(wd) + "_l1" + fmt(l1);
        std::fprintf(stderr, "[%zu/%zu] lr %g, wd %g, l1 %g\n", ++index, total, lr, wd, l1);
        auto r = wren::train(c, stderr);
        if (!r) return fail("sweep", c.out_dir + ": " + r.error().message());
        const wren::TrainEpoch& last = r->epochs.back();
        rows.push_back({lr, wd, l1, last.val ? last.val->accuracy : 0.0,
                        last.val ? last.val->loss : 0.0});
      }
    }
  }
  const auto best = std::max_element(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.val_acc < b.val_acc || (a.val_acc == b.val_acc && a.val_loss > b.val_loss);
  });
  std::string table = "| lr | wd | l1 | val acc | val loss |\n| --- | --- | --- | --- | --- |\n";
  nlohmann::json json = nlohmann::json::array();
  for (const Row& r : rows) {
    char line[160];
    std::snprintf(line, sizeof line, "| %g | %g | %g | %.4f | %.4f |%s\n", r.lr, r.wd, r.l1,
                  r.val_acc, r.val_loss, &r == &*best ? " best" : "");
    table += line;
    json.push_back({{"lr", r.lr}, {"wd", r.wd}, {"l1", r.l1}, {"val_acc", r.val_acc},
                    {"val_loss", r.val_loss}});
  }
  std::printf("%s", table.c_str());
  std::printf("best: --lr %g --wd %g --l1 %g (val acc %.4f)\n", best->lr, best->wd, best->l1,
              best->val_acc);
  if (auto st = wren::write_file_atomic(out + "/sweep.md", table); !st.ok()) {
    return fail("sweep", st.message());
  }
  if (auto st = wren::write_file_atomic(out + "/sweep.json", json.dump(2)); !st.ok()) {
    return fail("sweep", st.message());
  }
  return 0;
}

struct CheckFlags {
  wren::CheckOptions options;
  std::string device = "auto", math = "fp32", input = "1x28x28";
};

int run_check(const CheckFlags& f) {
  wren::CheckOptions o = f.options;
  if (f.device == "auto") {
    o.device = wren::make_backend(wren::BackendOptions{.device = wren::Device::kCuda}).ok()
                   ? wren::Device::kCuda
                   : wren::Device::kEmu;
    std::fprintf(stderr, "wren check: device %s\n", wren::to_string(o.device));
  } else {
    o.device = f.device == "cuda" ? wren::Device::kCuda : wren::Device::kEmu;
  }
  o.math = f.math == "tf32" ? wren::MathMode::kTf32 : wren::MathMode::kFp32;
  int c = 0, h = 0, w = 0;
  char tail = 0;
  if (std::sscanf(f.input.c_str(), "%dx%dx%d%c", &c, &h, &w, &tail) != 3 || c <= 0 || h <= 0 ||
      w <= 0)
    return fail("check", "--input " + f.input + ": expected CxHxW, e.g. 3x32x32");
  o.input.channels = c;
  o.input.height = h;
  o.input.width = w;
  auto report = wren::run_check(o);
  if (!report) return fail("check", report.error().message());
  std::printf("%s", wren::format_check(*report).c_str());
  return report->pass() ? 0 : 1;
}

int run(int argc, char** argv) {
  CLI::App app{"wren: train convolutional networks on the GPU (cuda), the CPU reference (cpu) or "
               "the kernels in the SIMT emulator (emu)"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", "wren 0.1.0");

  TrainFlags train_flags;
  std::string resume;
  CLI::App* train = app.add_subcommand(
      "train", "train a model (no flags: ref-cnn on Fashion-MNIST, AdamW lr 1e-3 wd 5e-4, 1 "
               "warmup epoch then cosine, 5 epochs, batch 128)");
  add_train_flags(train, train_flags, /*sweep=*/false);
  train->add_option("--out", train_flags.config.out_dir, "run directory (default runs/<time>)");
  train->add_option("--resume", resume, "continue the run of this last.safetensors");
  train->add_option("--stop-after-steps", train_flags.config.stop_after_steps,
                    "stop after N steps of this invocation, saving last.safetensors (Ctrl-C "
                    "does the same)")
      ->check(CLI::NonNegativeNumber);

  std::string checkpoint, eval_data, split = "test";
  int eval_batch = 256;
  CLI::App* eval = app.add_subcommand("eval", "accuracy, loss and confusion matrix of a checkpoint");
  eval->add_option("checkpoint", checkpoint, "a .safetensors written by wren train")->required();
  eval->add_option("--data-dir", eval_data, "dataset directory (default: the run's)");
  eval->add_option("--split", split, "test | train")
      ->check(CLI::IsMember({"test", "train"}))
      ->capture_default_str();
  eval->add_option("--batch", eval_batch, "batch size")->check(CLI::PositiveNumber);
  std::string eval_device = "auto";
  eval->add_option("--device", eval_device, "auto | cpu | cuda | emu")
      ->check(CLI::IsMember({"auto", "cpu", "cuda", "emu"}))
      ->capture_default_str();

  TrainFlags sweep_flags;
  SweepFlags sweep_values;
  CLI::App* sweep = app.add_subcommand(
      "sweep", "grid over --lr/--wd/--l1 on the validation split; prints a table and the best");
  add_train_flags(sweep, sweep_flags, /*sweep=*/true);
  sweep->add_option("--lr", sweep_values.lr, "learning rates (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  sweep->add_option("--wd", sweep_values.wd, "weight decays (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  sweep->add_option("--l1", sweep_values.l1, "L1 coefficients (comma-separated)")
      ->delimiter(',')
      ->capture_default_str();
  sweep->add_option("--out", sweep_values.out, "sweep directory (default runs/sweep)");

  std::string plot_run, plot_out;
  bool png = false;
  wren::PlotOptions plot_options;
  CLI::App* plot = app.add_subcommand("plot", "plot a run's metrics as SVG (and PNG)");
  plot->add_option("run", plot_run, "run directory or metrics.jsonl")->required();
  plot->add_option("--out", plot_out, "SVG file (default <run>/metrics.svg)");
  plot->add_flag("--png", png, "also write a PNG (needs rsvg-convert, package librsvg2-bin)");
  plot->add_flag("--log-loss", plot_options.log_loss, "log-scale loss axis");

  CheckFlags check_flags;
  CLI::App* check = app.add_subcommand(
      "check", "one forward, backward and optimizer step of a model on cuda or emu and on the "
               "CPU reference, from the same weights and batch: a table of errors per tensor; "
               "exit status 1 if any tensor is outside its tolerance");
  check->add_option("--model", check_flags.options.model, "built-in model or a model file")
      ->capture_default_str();
  check->add_option("--device", check_flags.device,
                    "auto (cuda when a GPU is visible, else emu) | cuda | emu")
      ->check(CLI::IsMember({"auto", "cuda", "emu"}))
      ->capture_default_str();
  check->add_option("--math", check_flags.math, "fp32 | tf32")
      ->check(CLI::IsMember({"fp32", "tf32"}))
      ->capture_default_str();
  check->add_option("--input", check_flags.input, "per-sample input shape CxHxW")
      ->capture_default_str();
  check->add_option("--classes", check_flags.options.input.classes, "number of classes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  check->add_option("--batch", check_flags.options.batch, "batch size")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  check->add_option("--seed", check_flags.options.seed, "seed of the weights and the batch")
      ->capture_default_str();
  check->add_option("--rtol", check_flags.options.rtol,
                    "relative tolerance (default: 1e-4 for fp32, 1e-2 for tf32, whose CPU reference "
                    "rounds the matrix operands to TF32 too)");
  check->add_option("--atol-scale", check_flags.options.atol_scale,
                    "absolute tolerance as a fraction of the tensor's max |value| (default: "
                    "1e-5 for fp32, 1e-3 for tf32)");

  CLI11_PARSE(app, argc, argv);

  if (*check) return run_check(check_flags);

  if (*eval) {
    auto device = wren::parse_device_choice(eval_device);
    if (!device) return fail("eval", device.error().message());
    auto r = wren::evaluate_checkpoint(checkpoint, eval_data,
                                       split == "train" ? wren::Split::kTrain : wren::Split::kTest,
                                       eval_batch, *device);
    if (!r) return fail("eval", r.error().message());
    std::printf("%s: %lld images, accuracy %.4f, loss %.4f\n", checkpoint.c_str(),
                static_cast<long long>(r->count), r->accuracy, r->loss);
    std::printf("%s", wren::format_confusion(*r).c_str());
    return 0;
  }
  if (*sweep) return run_sweep(sweep_flags, sweep_values);
  if (*plot) {
    std::error_code ec;
    const bool is_dir = std::filesystem::is_directory(plot_run, ec);
    const std::string out =
        !plot_out.empty() ? plot_out
                          : (is_dir ? plot_run + "/metrics.svg"
                                    : std::filesystem::path(plot_run).replace_extension(".svg")
                                          .string());
    std::vector<std::string> warnings;
    if (auto s = wren::write_plot(plot_run, out, plot_options, &warnings); !s.ok()) {
      return fail("plot", s.message());
    }
    for (const std::string& w : warnings) std::fprintf(stderr, "wren plot: note: %s\n", w.c_str());
    std::printf("wrote %s\n", out.c_str());
    if (png) {
      const std::string png_path = std::filesystem::path(out).replace_extension(".png").string();
      auto p = wren::convert_svg_to_png(out, png_path);
      if (!p) return fail("plot", p.error().message());
      std::printf("wrote %s\n", png_path.c_str());
    }
    return 0;
  }
  // `wren` alone and `wren train` both train.
  return run_train(train_flags, resume);
}

}  // namespace

// Errors are values in the library; an exception reaching here is a bug or a device fault (a
// kernel launcher refusing its arguments): it still gets a one-line message, not an abort.
int main(int argc, char** argv) {
  // Past the file-size limit (ulimit -f) write(2) raises SIGXFSZ, whose default action kills
  // the process mid-save; ignored, the write fails with EFBIG and the save reports it like a
  // full disk (the previous checkpoint stays, the exit status is 1).
  std::signal(SIGXFSZ, SIG_IGN);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wren: internal error: %s\n", e.what());
    return 2;
  }
}
