// The training driver (host/train/): a run on a small synthetic IDX dataset written by the test
// learns; an interrupted and resumed run is bit-identical to an uninterrupted one; checkpoints
// hold what `wren eval` needs; divergence stops the run naming the step and the op; bad flags
// and inputs are errors naming them.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "train/checkpoint.h"
#include "cli/plot.h"
#include "wren/safetensors.h"
#include "wren/device.h"
#include "wren/train.h"

namespace wren {
namespace {

namespace fs = std::filesystem;

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<uint8_t>(v >> shift));
}

// IDX files of `count` 12x12 images: class c is a bright horizontal bar at row c plus noise,
// so a small CNN separates the 10 classes quickly.
void write_idx_pair(const fs::path& dir, const std::string& prefix, int count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(0, 60);
  std::vector<uint8_t> images, labels;
  put_be32(images, 0x803);
  put_be32(images, static_cast<uint32_t>(count));
  put_be32(images, 12);
  put_be32(images, 12);
  put_be32(labels, 0x801);
  put_be32(labels, static_cast<uint32_t>(count));
  for (int i = 0; i < count; ++i) {
    const int label = static_cast<int>(rng() % 10);
    labels.push_back(static_cast<uint8_t>(label));
    for (int y = 0; y < 12; ++y) {
      for (int x = 0; x < 12; ++x) {
        images.push_back(static_cast<uint8_t>(noise(rng) + (y == label + 1 ? 180 : 0)));
      }
    }
  }
  std::ofstream(dir / (prefix + "-images-idx3-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(images.data()),
             static_cast<std::streamsize>(images.size()));
  std::ofstream(dir / (prefix + "-labels-idx1-ubyte"), std::ios::binary)
      .write(reinterpret_cast<const char*>(labels.data()),
             static_cast<std::streamsize>(labels.size()));
}

class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("wren_train_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "data");
    write_idx_pair(root_ / "data", "train", 640, 1);
    write_idx_pair(root_ / "data", "t10k", 160, 2);
  }
  void TearDown() override { fs::remove_all(root_); }

  TrainConfig small_config(const std::string& out) const {
    TrainConfig c;
    c.data_dir = (root_ / "data").string();
    c.out_dir = (root_ / out).string();
    c.batch = 32;
    c.epochs = 2;
    c.val_count = 128;
    c.seed = 7;
    c.progress = false;
    c.log_every = 4;
    c.optimizer = OptimizerConfig{.kind = OptimizerKind::kAdamW, .weight_decay = 5e-4, .l1 = 1e-5};
    c.schedule = ScheduleConfig{.kind = ScheduleKind::kCosine, .lr = 2e-3};
    c.schedule_epochs = EpochSpec{.warmup = 0.5};
    c.default_warmup = false;
    return c;
  }

  std::vector<float> weights(const std::string& checkpoint) {
    auto file = read_safetensors(checkpoint);
    EXPECT_TRUE(file) << file.error().message();
    std::vector<float> all;
    for (const SafeTensor& t : file->tensors()) {
      auto v = file->as_f32(t.name);
      if (v) all.insert(all.end(), v->begin(), v->end());
    }
    return all;
  }

  fs::path root_;
};

// Whole training runs on the emulator under ASan take minutes each; they run in the release
// build, and ASan checks the same kernels through the per-kernel emu suites.
#if defined(WREN_EMU_ASAN)
constexpr bool kEmuUnderAsan = true;
#else
constexpr bool kEmuUnderAsan = false;
#endif
constexpr const char* kAsanSkip =
    "a training run on the emulator under ASan (minutes); runs in the release build";

std::FILE* quiet_log() {
  static std::FILE* f = std::fopen("/dev/null", "w");
  return f;
}

TEST_F(TrainTest, LearnsAndWritesTheRunDirectory) {
  const TrainConfig c = small_config("run");
  auto r = train(c, quiet_log());
  ASSERT_TRUE(r) << r.error().message();
  // 512 training images / 32 = 16 steps per epoch, 2 epochs.
  EXPECT_EQ(r->steps, 32);
  ASSERT_EQ(r->epochs.size(), 2u);
  ASSERT_TRUE(r->final_test);
  EXPECT_GT(r->final_test->accuracy, 0.9);  // chance is 0.1
  EXPECT_LT(r->epochs[1].train_loss, r->epochs[0].train_loss);
  for (const char* f : {"config.json", "metrics.jsonl", "last.safetensors", "best.safetensors"}) {
    EXPECT_TRUE(fs::exists(fs::path(c.out_dir) / f)) << f;
  }
  // metrics.jsonl: step records every 4 steps (and step 1), two epoch records with norms and,
  // L1 being on, near-zero fractions.
  std::ifstream in(fs::path(c.out_dir) / "metrics.jsonl");
  int steps = 0, epochs = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"kind\":\"step\"") != std::string::npos) ++steps;
    if (line.find("\"kind\":\"epoch\"") != std::string::npos) {
      ++epochs;
      EXPECT_NE(line.find("\"weight_norm\":{\"conv1.bias\""), std::string::npos) << line;
      EXPECT_NE(line.find("\"near_zero_fraction\""), std::string::npos) << line;
      EXPECT_NE(line.find("\"val_acc\""), std::string::npos) << line;
    }
  }
  EXPECT_EQ(steps, 1 + 32 / 4);
  EXPECT_EQ(epochs, 2);
  // The last checkpoint evaluated from the file alone reproduces the last epoch's test score.
  auto e = evaluate_checkpoint(c.out_dir + "/last.safetensors", "", Split::kTest, 50);
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->count, 160);
  EXPECT_DOUBLE_EQ(e->accuracy, r->final_test->accuracy);
  EXPECT_NEAR(e->loss, r->final_test->loss, 1e-9 * std::fabs(r->final_test->loss));
  int64_t total = 0;
  for (int64_t v : e->confusion) total += v;
  EXPECT_EQ(total, 160);
}

class ResumeTest : public TrainTest {
 protected:
  void check_resume_is_bit_identical(const OptimizerConfig& optimizer, const std::string& tag,
                                     DeviceChoice device = DeviceChoice::kCpu) {
    SCOPED_TRACE(tag + " on " + to_string(device));
    TrainConfig straight = small_config(tag + "_straight");
    straight.optimizer = optimizer;
    straight.device = device;
    ASSERT_TRUE(train(straight, quiet_log()));

    // Stop mid-epoch (step 21 of 32), then resume from last.safetensors.
    TrainConfig first = small_config(tag + "_split");
    first.optimizer = optimizer;
    first.device = device;
    first.stop_after_steps = 21;
    auto a = train(first, quiet_log());
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_TRUE(a->stopped_early);
    EXPECT_EQ(a->steps, 21);

    // A run killed mid-write leaves a partial last line; the resumed run must not extend it.
    std::ofstream(first.out_dir + "/metrics.jsonl", std::ios::app) << "{\"kind\":\"step\",\"st";

    auto file = read_safetensors(first.out_dir + "/last.safetensors");
    ASSERT_TRUE(file);
    auto info = read_checkpoint_info(*file);
    ASSERT_TRUE(info);
    auto resumed_config = config_from_json(info->config_json);
    ASSERT_TRUE(resumed_config) << resumed_config.error().message();
    resumed_config->resume = first.out_dir + "/last.safetensors";
    resumed_config->progress = false;
    auto b = train(*resumed_config, quiet_log());
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_EQ(b->steps, 32);
    EXPECT_FALSE(b->stopped_early);

    const std::vector<float> w1 = weights(straight.out_dir + "/last.safetensors");
    const std::vector<float> w2 = weights(first.out_dir + "/last.safetensors");
    ASSERT_EQ(w1.size(), w2.size());
    ASSERT_FALSE(w1.empty());
    size_t differ = 0;
    for (size_t i = 0; i < w1.size(); ++i) differ += std::memcmp(&w1[i], &w2[i], 4) != 0;
    EXPECT_EQ(differ, 0u) << "weights and optimizer state after resume";

    auto metrics = read_metrics(first.out_dir + "/metrics.jsonl");
    ASSERT_TRUE(metrics) << metrics.error().message();
    EXPECT_TRUE(metrics->warnings.empty());
    ASSERT_EQ(metrics->epochs.size(), 2u);
    EXPECT_EQ(metrics->epochs.back().step, 32);
  }
};

// Resume is bit-exact with AdamW (moments, decoupled decay, L1) and with SGD (Nesterov
// momentum, coupled L2): N straight steps equal k steps, save, resume, N - k steps.
TEST_F(ResumeTest, InterruptedAndResumedRunIsBitIdentical) {
  check_resume_is_bit_identical(
      OptimizerConfig{.kind = OptimizerKind::kAdamW, .weight_decay = 5e-4, .l1 = 1e-5}, "adamw");
  check_resume_is_bit_identical(OptimizerConfig{.kind = OptimizerKind::kSgd, .momentum = 0.9,
                                                .nesterov = true, .weight_decay = 5e-4},
                                "sgd");
}

// On the emu device the optimizer state lives in device memory and batches are made there: a
// checkpoint must still capture everything (the device state is copied out before saving and
// back after loading).
TEST_F(ResumeTest, OnTheEmulatorInterruptedAndResumedRunIsBitIdentical) {
  if (kEmuUnderAsan) GTEST_SKIP() << kAsanSkip;
  if (!built_with_emu()) GTEST_SKIP() << "this build has no emulator";
  check_resume_is_bit_identical(
      OptimizerConfig{.kind = OptimizerKind::kAdamW, .weight_decay = 5e-4, .l1 = 1e-5}, "adamw",
      DeviceChoice::kEmu);
}

// The same run on the CPU and in the emulator: the kernels' rounding differs from OpenBLAS's
// only in the last bits, so the losses agree closely and the test predictions are the same.
TEST_F(TrainTest, TheEmulatorTrainsLikeTheCpu) {
  if (kEmuUnderAsan) GTEST_SKIP() << kAsanSkip;
  if (!built_with_emu()) GTEST_SKIP() << "this build has no emulator";
  TrainConfig c = small_config("cpu");
  c.epochs = 1;
  auto cpu = train(c, quiet_log());
  ASSERT_TRUE(cpu) << cpu.error().message();
  c.out_dir = (root_ / "emu").string();
  c.device = DeviceChoice::kEmu;
  auto emu = train(c, quiet_log());
  ASSERT_TRUE(emu) << emu.error().message();
  ASSERT_EQ(cpu->epochs.size(), 1u);
  ASSERT_EQ(emu->epochs.size(), 1u);
  EXPECT_NEAR(emu->epochs[0].train_loss, cpu->epochs[0].train_loss,
              1e-4 * cpu->epochs[0].train_loss);
  EXPECT_DOUBLE_EQ(emu->epochs[0].train_accuracy, cpu->epochs[0].train_accuracy);
  ASSERT_TRUE(cpu->final_test && emu->final_test);
  EXPECT_DOUBLE_EQ(emu->final_test->accuracy, cpu->final_test->accuracy);
}

// --cuda-graph on (the default) replays a recorded step; on emu the recording re-runs the
// enqueue-only path (no label check, no waits, LR from device memory). It must give exactly
// the op-by-op run.
TEST_F(TrainTest, OnTheEmulatorTheRecordedStepEqualsTheOpByOpStep) {
  if (kEmuUnderAsan) GTEST_SKIP() << kAsanSkip;
  if (!built_with_emu()) GTEST_SKIP() << "this build has no emulator";
  TrainConfig c = small_config("recorded");
  c.epochs = 1;
  c.device = DeviceChoice::kEmu;
  c.cuda_graph = true;
  auto recorded = train(c, quiet_log());
  ASSERT_TRUE(recorded) << recorded.error().message();
  c.out_dir = (root_ / "op_by_op").string();
  c.cuda_graph = false;
  auto op_by_op = train(c, quiet_log());
  ASSERT_TRUE(op_by_op) << op_by_op.error().message();
  const std::vector<float> a = weights((root_ / "recorded" / "last.safetensors").string());
  const std::vector<float> b = weights((root_ / "op_by_op" / "last.safetensors").string());
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_EQ(recorded->epochs[0].train_loss, op_by_op->epochs[0].train_loss);
}

TEST_F(TrainTest, SameSeedSameWeights) {
  TrainConfig a = small_config("a"), b = small_config("b");
  a.epochs = b.epochs = 1;
  ASSERT_TRUE(train(a, quiet_log()));
  ASSERT_TRUE(train(b, quiet_log()));
  EXPECT_EQ(weights(a.out_dir + "/last.safetensors"), weights(b.out_dir + "/last.safetensors"));
}

TEST_F(TrainTest, DivergenceStopsWithStepAndOp) {
  TrainConfig c = small_config("nan");
  c.optimizer = OptimizerConfig{.kind = OptimizerKind::kSgd};
  c.schedule = ScheduleConfig{.kind = ScheduleKind::kConstant, .lr = 1e30};
  c.schedule_epochs = EpochSpec{};
  auto r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNumericError);
  const std::string m = r.error().message();
  EXPECT_NE(m.find("at step "), std::string::npos) << m;
  EXPECT_NE(m.find("first non-finite values in the output of '"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(fs::path(c.out_dir) / "last.safetensors"));  // nothing good to keep
}

// --- --on-nonfinite ----------------------------------------------------------------------------
// A NaN is injected through TrainConfig::inject_nonfinite (a test hook: added to one gradient
// element after backward — inside the recorded step on emu — or written into one input pixel).
// Each case runs on the cpu, and on emu and cuda (skipped without a GPU) with the recorded step
// (--cuda-graph on) and op by op.
struct DeviceCase {
  DeviceChoice device;
  bool cuda_graph;
  std::string tag() const {
    const std::string d = to_string(device);
    return d + (device == DeviceChoice::kCpu ? "" : cuda_graph ? "_graph" : "_ops");
  }
};

void PrintTo(const DeviceCase& d, std::ostream* os) {
  *os << d.tag();
}

class NonFiniteTest : public TrainTest, public ::testing::WithParamInterface<DeviceCase> {
 protected:
  // The emulator under ASan (WREN_EMU_ASAN: one worker, instrumented kernels) takes minutes per
  // training run: there the heavy cases run on the cpu and the emulator's recorded step only;
  // every case runs on emu in the release build (CI's first stage).
  bool heavy_under_asan(bool keep_recorded_step) const {
    const DeviceCase& d = GetParam();
    return kEmuUnderAsan && d.device == DeviceChoice::kEmu &&
           !(keep_recorded_step && d.cuda_graph);
  }
  void SetUp() override {
    const DeviceChoice device = GetParam().device;
    if (device == DeviceChoice::kEmu && !built_with_emu())
      GTEST_SKIP() << "this build has no emulator";
    if (device == DeviceChoice::kCuda && (!built_with_cuda() || cuda_device_count() == 0))
      GTEST_SKIP() << "no CUDA backend or no GPU";
    TrainTest::SetUp();
  }
  // 512 training images: batch 64 gives 8 steps per epoch (fewer emulated steps).
  TrainConfig config_for(const DeviceCase& d, const std::string& out) const {
    TrainConfig c = small_config(d.tag() + "_" + out);
    c.device = d.device;
    c.cuda_graph = d.cuda_graph;
    c.batch = 64;
    c.epochs = 2;
    return c;
  }
  static std::string metadata(const std::string& checkpoint, const char* key) {
    auto file = read_safetensors(checkpoint);
    EXPECT_TRUE(file) << file.error().message();
    if (!file) return "";
    auto v = file->metadata_value(key);
    return v ? *v : "";
  }
  static std::vector<std::string> skipped_records(const std::string& out_dir) {
    std::ifstream in(fs::path(out_dir) / "metrics.jsonl");
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);)
      if (line.find("\"kind\":\"skipped_step\"") != std::string::npos) lines.push_back(line);
    return lines;
  }
  static bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return !a.empty() && a.size() == b.size() &&
           std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }
};

// stop (the default): a NaN gradient with a finite loss ends the run at that step, naming the
// step, epoch and batch and the layer; the weights are not updated and last.safetensors stays
// the one of the last epoch end, finite.
TEST_P(NonFiniteTest, StopNamesTheStepAndTheParameterOfANonFiniteGradient) {
  if (heavy_under_asan(/*keep_recorded_step=*/true)) GTEST_SKIP() << kAsanSkip;
  const DeviceCase& d = GetParam();
  TrainConfig c = config_for(d, "stop");
  c.inject_nonfinite = {.step = 10, .param = "fc2.weight"};  // epoch 1, batch 2
  auto r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNumericError);
  const std::string m = r.error().message();
  EXPECT_NE(m.find("the gradients are not finite at step 10 (epoch 1, batch 2)"), std::string::npos)
      << m;
  EXPECT_NE(m.find("'fc2' (linear), the gradient of parameter 'fc2.weight'"), std::string::npos)
      << m;
  EXPECT_NE(m.find("The step was not applied"), std::string::npos) << m;
  const std::string last = c.out_dir + "/last.safetensors";
  ASSERT_TRUE(fs::exists(last));
  EXPECT_EQ(metadata(last, "wren.step"), "8");  // the end of epoch 0, before the bad step
  const std::vector<float> w = weights(last);
  ASSERT_FALSE(w.empty());
  for (float x : w) ASSERT_TRUE(std::isfinite(x));
}

// A non-finite input pixel makes the loss non-finite: named by the first op whose output is.
TEST_P(NonFiniteTest, StopNamesTheFirstOpOfANonFiniteLoss) {
  if (heavy_under_asan(/*keep_recorded_step=*/true)) GTEST_SKIP() << kAsanSkip;
  const DeviceCase& d = GetParam();
  TrainConfig c = config_for(d, "loss");
  c.inject_nonfinite = {.step = 3, .param = "", .value = std::numeric_limits<float>::infinity()};
  auto r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNumericError);
  const std::string m = r.error().message();
  EXPECT_NE(m.find("the loss is NaN at step 3 (epoch 0, batch 3); first non-finite values in "
                   "the output of 'conv1' (conv2d)"),
            std::string::npos)
      << m;
  EXPECT_FALSE(fs::exists(fs::path(c.out_dir) / "last.safetensors"));
}

// skip-step: the parameters, buffers and optimizer state after the skipped step k are bit for bit
// those after step k - 1 (two runs stopped at k and k + 1), the optimizer's step count does not
// advance while the run's step does, one skipped_step record names the step, and the run goes
// on to the end; resumed after the skip it is bit-identical to the uninterrupted run.
TEST_P(NonFiniteTest, SkipStepLeavesWeightsAndStateAsTheStepBefore) {
  if (heavy_under_asan(/*keep_recorded_step=*/false)) GTEST_SKIP() << kAsanSkip;
  struct Poison {
    const char* name;
    const char* model;
    TrainConfig::NonFiniteInjection inject;
    const char* reason;
    const char* where;
  };
  const Poison poisons[] = {
      {"gradient",
       "ref-cnn",
       {.step = 5, .param = "fc2.weight"},
       "non-finite gradient",
       "'fc2' (linear), the gradient of parameter 'fc2.weight'"},
      // With batch norm: the running statistics the bad forward pass touched are put back.
      {"input", "ref-cnn-bn", {.step = 5, .param = ""}, "non-finite loss", "'conv1' (conv2d)"},
  };
  const DeviceCase& d = GetParam();
  for (const Poison& poison : poisons) {
    SCOPED_TRACE(poison.name);
    auto config = [&](const std::string& out) {
      TrainConfig c = config_for(d, std::string(poison.name) + "_" + out);
      c.model = poison.model;
      c.on_nonfinite = NonFinitePolicy::kSkipStep;
      c.inject_nonfinite = poison.inject;
      return c;
    };
    TrainConfig before = config("before");
    before.stop_after_steps = 5;
    ASSERT_TRUE(train(before, quiet_log()));
    TrainConfig after = config("after");
    after.stop_after_steps = 6;
    auto a = train(after, quiet_log());
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_EQ(a->skipped_steps, 1);
    EXPECT_EQ(a->steps, 6);
    const std::string before_file = before.out_dir + "/last.safetensors";
    const std::string after_file = after.out_dir + "/last.safetensors";
    EXPECT_TRUE(same_bits(weights(before_file), weights(after_file)))
        << "parameters, buffers and optimizer state after the skipped step";
    EXPECT_EQ(metadata(before_file, "wren.optimizer_step"), "5");
    EXPECT_EQ(metadata(after_file, "wren.optimizer_step"), "5");
    EXPECT_EQ(metadata(after_file, "wren.step"), "6");
    const std::vector<std::string> records = skipped_records(after.out_dir);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_NE(records[0].find("\"step\":5,"), std::string::npos) << records[0];
    EXPECT_NE(records[0].find("\"epoch\":0"), std::string::npos) << records[0];
    EXPECT_NE(records[0].find(std::string("\"reason\":\"") + poison.reason + "\""),
              std::string::npos)
        << records[0];
    EXPECT_NE(records[0].find(poison.where), std::string::npos) << records[0];

    // The whole run: it finishes, learns, and the skipped step is out of the epoch's loss.
    TrainConfig full = config("full");
    auto f = train(full, quiet_log());
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_EQ(f->steps, 16);
    EXPECT_EQ(f->skipped_steps, 1);
    ASSERT_EQ(f->epochs.size(), 2u);
    EXPECT_TRUE(std::isfinite(f->epochs[0].train_loss));
    ASSERT_TRUE(f->final_test);
    EXPECT_GT(f->final_test->accuracy, 0.5);
    auto metrics = read_metrics(full.out_dir + "/metrics.jsonl");
    ASSERT_TRUE(metrics) << metrics.error().message();
    EXPECT_TRUE(metrics->warnings.empty());
    ASSERT_EQ(metrics->skipped_steps.size(), 1u);
    EXPECT_EQ(metrics->skipped_steps[0].step, 5);
    EXPECT_EQ(metrics->skipped_steps[0].reason, poison.reason);
    EXPECT_EQ(metrics->skipped_steps[0].where, poison.where);
    for (float x : weights(full.out_dir + "/last.safetensors")) ASSERT_TRUE(std::isfinite(x));

    // Stopped after the skip and resumed (with the run's saved config, the hook set again):
    // bit-identical to the uninterrupted run.
    TrainConfig split = config("split");
    split.stop_after_steps = 11;
    ASSERT_TRUE(train(split, quiet_log()));
    auto info = read_checkpoint_info(*read_safetensors(split.out_dir + "/last.safetensors"));
    ASSERT_TRUE(info);
    auto resumed = config_from_json(info->config_json);
    ASSERT_TRUE(resumed) << resumed.error().message();
    EXPECT_EQ(resumed->on_nonfinite, NonFinitePolicy::kSkipStep);
    resumed->resume = split.out_dir + "/last.safetensors";
    resumed->progress = false;
    resumed->inject_nonfinite = poison.inject;
    auto b = train(*resumed, quiet_log());
    ASSERT_TRUE(b) << b.error().message();
    EXPECT_EQ(b->steps, 16);
    EXPECT_EQ(b->skipped_steps, 0);
    EXPECT_TRUE(same_bits(weights(full.out_dir + "/last.safetensors"),
                          weights(split.out_dir + "/last.safetensors")));
  }
}

// Without a non-finite value the check changes nothing: the same run with the gradient check
// off (as before --on-nonfinite), with stop and with skip-step ends in the same bits.
TEST_P(NonFiniteTest, CheckingChangesNoResult) {
  if (heavy_under_asan(/*keep_recorded_step=*/false)) GTEST_SKIP() << kAsanSkip;
  const DeviceCase& d = GetParam();
  TrainConfig unchecked = config_for(d, "unchecked");
  unchecked.model = "ref-cnn-bn";
  unchecked.epochs = 1;
  unchecked.check_gradients = false;
  ASSERT_TRUE(train(unchecked, quiet_log()));
  const std::vector<float> expected = weights(unchecked.out_dir + "/last.safetensors");
  for (NonFinitePolicy policy : {NonFinitePolicy::kStop, NonFinitePolicy::kSkipStep}) {
    TrainConfig c = unchecked;
    c.out_dir = (root_ / (d.tag() + "_" + to_string(policy))).string();
    c.check_gradients = true;
    c.on_nonfinite = policy;
    auto r = train(c, quiet_log());
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->skipped_steps, 0);
    EXPECT_TRUE(same_bits(weights(c.out_dir + "/last.safetensors"), expected))
        << to_string(policy);
    EXPECT_TRUE(skipped_records(c.out_dir).empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, NonFiniteTest,
                         ::testing::Values(DeviceCase{DeviceChoice::kCpu, false},
                                           DeviceCase{DeviceChoice::kEmu, true},
                                           DeviceCase{DeviceChoice::kEmu, false},
                                           DeviceCase{DeviceChoice::kCuda, true},
                                           DeviceCase{DeviceChoice::kCuda, false}),
                         [](const ::testing::TestParamInfo<DeviceCase>& p) {
                           return p.param.tag();
                         });

// --on-nonfinite is stop or skip-step: anything else, from the CLI's spelling or a run config,
// is an error naming the flag and the value.
TEST_F(TrainTest, OnNonFiniteMustBeStopOrSkipStep) {
  auto p = parse_nonfinite_policy("ignore");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p.error().message(), "--on-nonfinite ignore: expected stop or skip-step");
  auto c = config_from_json(R"({"on_nonfinite": "ignore"})");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("--on-nonfinite ignore"), std::string::npos)
      << c.error().message();
}

// The fixed-choice settings are enums with the CLI's spellings: each spelling parses back to
// its value, config.json writes them as before (strings), and reads them back.
TEST(TrainConfigChoices, SpellingsRoundTrip) {
  for (DeviceChoice d :
       {DeviceChoice::kAuto, DeviceChoice::kCpu, DeviceChoice::kCuda, DeviceChoice::kEmu}) {
    auto back = parse_device_choice(to_string(d));
    ASSERT_TRUE(back) << to_string(d);
    EXPECT_EQ(*back, d);
  }
  for (MathMode m : {MathMode::kFp32, MathMode::kTf32})
    EXPECT_EQ(*parse_math_mode(to_string(m)), m);
  for (LinearImpl l : {LinearImpl::kWren, LinearImpl::kCublas})
    EXPECT_EQ(*parse_linear_impl(to_string(l)), l);
  for (NonFinitePolicy p : {NonFinitePolicy::kStop, NonFinitePolicy::kSkipStep})
    EXPECT_EQ(*parse_nonfinite_policy(to_string(p)), p);
  EXPECT_FALSE(parse_device_choice("gpu"));
  EXPECT_FALSE(parse_math_mode("fp16"));
  EXPECT_FALSE(parse_linear_impl("mkl"));

  TrainConfig c;
  c.device = DeviceChoice::kEmu;
  c.math = MathMode::kTf32;
  c.linear = LinearImpl::kCublas;
  c.on_nonfinite = NonFinitePolicy::kSkipStep;
  const std::string json = config_to_json(c);
  for (const char* field : {R"("device": "emu")", R"("math": "tf32")", R"("linear": "cublas")",
                            R"("on_nonfinite": "skip-step")"}) {
    EXPECT_NE(json.find(field), std::string::npos) << field << " in " << json;
  }
  auto back = config_from_json(json);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->device, DeviceChoice::kEmu);
  EXPECT_EQ(back->math, MathMode::kTf32);
  EXPECT_EQ(back->linear, LinearImpl::kCublas);
  EXPECT_EQ(back->on_nonfinite, NonFinitePolicy::kSkipStep);
  // Absent keys keep the defaults (configs written before a setting existed).
  auto defaults = config_from_json("{}");
  ASSERT_TRUE(defaults);
  EXPECT_EQ(defaults->device, DeviceChoice::kAuto);
  EXPECT_EQ(defaults->on_nonfinite, NonFinitePolicy::kStop);
}

TEST_F(TrainTest, InitFromLoadsTheWeights) {
  TrainConfig a = small_config("a");
  a.epochs = 1;
  ASSERT_TRUE(train(a, quiet_log()));
  // Zero steps are not allowed, so check the loaded weights through an evaluation: starting
  // from the checkpoint with lr ~0 keeps the accuracy of the source run.
  TrainConfig b = small_config("b");
  b.init_from = a.out_dir + "/last.safetensors";
  b.epochs = 1;
  b.schedule = ScheduleConfig{.kind = ScheduleKind::kConstant, .lr = 1e-30};
  b.optimizer = OptimizerConfig{.kind = OptimizerKind::kSgd};
  b.schedule_epochs = EpochSpec{};
  auto r = train(b, quiet_log());
  ASSERT_TRUE(r) << r.error().message();
  auto e = evaluate_checkpoint(a.out_dir + "/last.safetensors", "", Split::kTest, 32);
  ASSERT_TRUE(e);
  EXPECT_DOUBLE_EQ(r->final_test->accuracy, e->accuracy);
}

// A checkpoint that does not fit the model, or is damaged, is refused naming the tensor or the
// file; --resume and --init-from go through these loaders.
TEST_F(TrainTest, BadCheckpointsAreRefusedNamingTheTensor) {
  TrainConfig a = small_config("a");
  a.epochs = 1;
  ASSERT_TRUE(train(a, quiet_log()));
  const std::string good = a.out_dir + "/last.safetensors";
  auto file = read_safetensors(good);
  ASSERT_TRUE(file);

  // conv1.weight with another shape (2x the output channels).
  std::vector<SafeTensor> tensors = file->tensors();
  for (SafeTensor& t : tensors) {
    if (t.name == "conv1.weight") {
      t.shape[0] *= 2;
      t.bytes.resize(t.bytes.size() * 2);
    }
  }
  const std::string reshaped = (root_ / "reshaped.safetensors").string();
  // Checksums recomputed: a well-formed file with the wrong content (another tool's export).
  ASSERT_TRUE(write_safetensors(reshaped, tensors, with_checksums(tensors, file->metadata())).ok());
  TrainConfig b = small_config("b");
  b.init_from = reshaped;
  auto r = train(b, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("conv1.weight"), std::string::npos) << r.error().message();

  // A missing tensor.
  tensors = file->tensors();
  std::erase_if(tensors, [](const SafeTensor& t) { return t.name == "fc2.bias"; });
  const std::string missing = (root_ / "missing.safetensors").string();
  ASSERT_TRUE(write_safetensors(missing, tensors, with_checksums(tensors, file->metadata())).ok());
  b = small_config("c");
  b.init_from = missing;
  r = train(b, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("fc2.bias"), std::string::npos) << r.error().message();

  // Truncated: the last 100 bytes cut off.
  const std::string truncated = (root_ / "truncated.safetensors").string();
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, fs::file_size(truncated) - 100);
  auto e = evaluate_checkpoint(truncated, "", Split::kTest, 32);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), ErrorCode::kDataError);
  EXPECT_NE(e.error().message().find("truncated.safetensors"), std::string::npos)
      << e.error().message();
}

// A flipped bit in a checkpoint's data is refused by every reader, naming the tensor; the
// untouched checkpoint verifies.
TEST_F(TrainTest, DamagedCheckpointsAreRefusedByTheirChecksums) {
  TrainConfig a = small_config("a");
  a.epochs = 1;
  auto trained = train(a, quiet_log());
  ASSERT_TRUE(trained) << trained.error().message();
  const std::string good = a.out_dir + "/last.safetensors";
  auto file = read_checkpoint_file(good);
  ASSERT_TRUE(file) << file.error().message();
  EXPECT_EQ(file->metadata_value("wren.format_version").value(), kCheckpointFormatVersion);
  ASSERT_TRUE(file->metadata_value("wren.crc32"));

  // The byte in the middle of conv2.weight's data: 8-byte size + header + the tensor's offset.
  std::vector<uint8_t> bytes(fs::file_size(good));
  std::ifstream(good, std::ios::binary).read(reinterpret_cast<char*>(bytes.data()),
                                             static_cast<std::streamsize>(bytes.size()));
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  size_t offset = 8 + header;
  for (const SafeTensor& t : file->tensors()) {
    if (t.name == "conv2.weight") {
      offset += t.bytes.size() / 2;
      break;
    }
    offset += t.bytes.size();
  }
  bytes[offset] ^= 0x10;
  const std::string damaged = (root_ / "damaged.safetensors").string();
  std::ofstream(damaged, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(read_safetensors(damaged)) << "the file still parses: only the checksum sees it";

  auto expect_refused = [&](const Error& e, const char* who) {
    EXPECT_EQ(e.code(), ErrorCode::kDataError) << who;
    EXPECT_NE(e.message().find("damaged.safetensors"), std::string::npos) << who << e.message();
    EXPECT_NE(e.message().find("'conv2.weight' fails its CRC-32 check"), std::string::npos)
        << who << ": " << e.message();
  };
  auto e = evaluate_checkpoint(damaged, "", Split::kTest, 32);
  ASSERT_FALSE(e);
  expect_refused(e.error(), "eval");
  TrainConfig r = small_config("r");
  r.resume = damaged;
  auto resumed = train(r, quiet_log());
  ASSERT_FALSE(resumed);
  expect_refused(resumed.error(), "resume");
  TrainConfig i = small_config("i");
  i.init_from = damaged;
  auto init = train(i, quiet_log());
  ASSERT_FALSE(init);
  expect_refused(init.error(), "init-from");
}

TEST_F(TrainTest, ErrorsNameTheirSource) {
  TrainConfig c = small_config("err");
  c.model = "no-such-model";
  auto r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("--model 'no-such-model'"), std::string::npos);

  c = small_config("err2");
  c.data_dir = (root_ / "missing").string();
  r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("missing"), std::string::npos) << r.error().message();

  c = small_config("err3");
  c.batch = 4096;
  r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("--batch 4096"), std::string::npos);

  // A second run into the same directory is refused (it would mix two runs' metrics).
  c = small_config("twice");
  c.epochs = 1;
  ASSERT_TRUE(train(c, quiet_log()));
  r = train(c, quiet_log());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("already holds a run"), std::string::npos);
}

}  // namespace
}  // namespace wren
