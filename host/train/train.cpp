// The training loop and its checkpoints (include/wren/train.h; the pieces: host/train/trainer.h).
//
// A step, in order: the batch (made on the device on cuda/emu, on the host on the cpu), the
// test hook's poison, the buffer copy skip-step may put back, the LR of the global step, then
// forward, backward and optimizer (replayed from one recording, or op by op), the loss read,
// and either the non-finite policy or the step's records. Epoch end: evaluation, the epoch
// record, last.safetensors and best.safetensors.
#include "wren/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>

#include "train/trainer.h"

namespace wren {
namespace train_internal {
namespace {

// Set by SIGINT/SIGTERM while train() runs: the loop stops at the next step boundary and saves
// last.safetensors, so an interrupted run loses nothing and resumes bit-identically.
volatile std::sig_atomic_t g_stop_requested = 0;

extern "C" void request_stop(int) { g_stop_requested = 1; }

// Installs the handlers for the lifetime of the loop and restores the previous ones.
class StopSignals {
 public:
  StopSignals() {
    g_stop_requested = 0;
    struct sigaction sa {};
    sa.sa_handler = request_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_{};
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

Expected<TrainResult> Trainer::run() {
  auto backend = make_train_backend(config_.device, config_.math, config_.linear, log_);
  if (!backend) return backend.error();
  if (config_.batch <= 0) return invalid_argument("--batch must be positive");
  WREN_RETURN_IF_ERROR(set_up_data());
  WREN_RETURN_IF_ERROR(set_up_model(std::move(*backend)));
  WREN_RETURN_IF_ERROR(set_up_optimizer());
  WREN_RETURN_IF_ERROR(set_up_start());
  WREN_RETURN_IF_ERROR(set_up_batches());
  WREN_RETURN_IF_ERROR(set_up_step());
  WREN_RETURN_IF_ERROR(set_up_nonfinite());
  WREN_RETURN_IF_ERROR(set_up_run_directory());
  WREN_RETURN_IF_ERROR(run_epochs());
  return std::move(result_);
}

// From the run position (state_) to the end of the run, or to --stop-after-steps or a signal.
Status Trainer::run_epochs() {
  if (!batcher_) {
    images_.resize(static_cast<size_t>(config_.batch * train_set_.image_size()));
    labels_.resize(static_cast<size_t>(config_.batch));
  }
  auto logits = logits_value(graph());
  if (!logits) return logits.error();
  logits_ = *logits;
  start_ = std::chrono::steady_clock::now();
  progress_.emplace(config_.progress, total_steps_, state_.step);
  total_epochs_ = (total_steps_ + steps_per_epoch_ - 1) / steps_per_epoch_;
  stop_at_ = config_.stop_after_steps > 0
                 ? std::min(total_steps_, state_.step + config_.stop_after_steps)
                 : total_steps_;
  StopSignals signals;
  for (int64_t epoch = state_.epoch; epoch < total_epochs_ && state_.step < total_steps_;
       ++epoch) {
    WREN_RETURN_IF_ERROR(run_epoch(epoch));
    if (result_.stopped_early) break;
  }
  progress_->finish();
  result_.steps = state_.step;
  result_.images_per_second = trained_images_ / std::max(train_seconds_, 1e-9);
  result_.device_peak_bytes = executor().backend().peak_allocated_bytes();
  return {};
}

// One epoch in its seeded order, from where a resumed run left off in it.
Status Trainer::run_epoch(int64_t epoch) {
  const std::vector<int64_t> order =
      epoch_order(split_.train, config_.seed, epoch, config_.shuffle);
  EpochTally tally;
  tally.score.confusion.assign(
      static_cast<size_t>(train_set_.num_classes * train_set_.num_classes), 0);
  const int64_t first_batch = epoch == state_.epoch ? state_.epoch_batch : 0;
  for (int64_t b = first_batch; b < steps_per_epoch_ && state_.step < total_steps_; ++b) {
    if (state_.step >= stop_at_ || g_stop_requested) {
      result_.stopped_early = true;
      break;
    }
    const std::span<const int64_t> chunk(order.data() + b * config_.batch,
                                         static_cast<size_t>(config_.batch));
    WREN_RETURN_IF_ERROR(train_step(epoch, b, chunk, tally));
  }
  if (result_.stopped_early) return stop_early(epoch);
  return end_epoch(epoch, tally);
}

// One optimizer step on batch `b` of the epoch (the images `chunk`).
Status Trainer::train_step(int64_t epoch, int64_t b, std::span<const int64_t> chunk,
                           EpochTally& tally) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool inject_now = config_.inject_nonfinite.step == state_.step;
  WREN_RETURN_IF_ERROR(load_batch(chunk, inject_now));
  Executor<float>& ex = executor();
  if (inject_now && poison())
    ex.backend().upload(poison(), &config_.inject_nonfinite.value, sizeof(float));
  if (buffer_backup_) ex.backend().copy(buffer_count_, ex.buffers().data, buffer_backup_->get());
  const double lr = schedule_->lr(state_.step);
  auto outcome = forward_backward_update(lr, inject_now);
  if (!outcome) return outcome.error();
  const Status& applied = outcome->applied;
  const bool numeric = !applied.ok() && applied.error().code() == ErrorCode::kNumericError;
  if (!applied.ok() && !numeric) return applied.error();
  // Without the gradient check (a test hook) only clipping reports a non-finite norm: the
  // error it always was.
  if (numeric && outcome->loss_finite && !config_.check_gradients) return applied.error();
  if (!outcome->loss_finite || numeric) return on_nonfinite(epoch, b, *outcome);
  return record_step(epoch, b, outcome->loss, lr, t0, tally);
}

// The step's batch (augmented with the draws of the global step), in the executor's input.
// The test hook without a parameter writes its value into the first pixel.
Status Trainer::load_batch(std::span<const int64_t> chunk, bool inject_now) {
  const TrainConfig::NonFiniteInjection& inject = config_.inject_nonfinite;
  const bool inject_input = inject_now && inject.step >= 0 && inject.param.empty();
  const auto step = static_cast<uint64_t>(state_.step);
  if (batcher_) {
    WREN_RETURN_IF_ERROR(batcher_->make_batch(chunk, augment_, config_.seed, step,
                                              device_images_, device_labels_));
    if (inject_input) executor().backend().upload(device_images_, &inject.value, sizeof(float));
    return {};
  }
  make_batch<float>(train_set_, chunk, norm_, aug_, augment_, config_.seed, step, images_.data(),
                    labels_.data());
  if (inject_input) images_[0] = inject.value;
  WREN_RETURN_IF_ERROR(executor().set_input("image", images_));
  return executor().set_labels("label", labels_);
}

// Forward, backward and optimizer at `lr`: replayed from the recording made at the first step
// (use_capture_), or op by op. The optimizer computes the global gradient norm and applies
// nothing when it is not finite (a kNumericError in `applied`; on cuda/emu the kernel decided
// on the device and finish_step read its flag). Op by op, a non-finite loss skips backward and
// optimizer altogether.
Expected<StepOutcome> Trainer::forward_backward_update(double lr, bool inject_now) {
  Executor<float>& ex = executor();
  DeviceOptimizer* dev_opt = optimizer_->device();
  float* const poison_ptr = poison();
  if (use_capture_) {
    if (!captured_) {
      WREN_RETURN_IF_ERROR(ex.check_train_shapes());
      WREN_RETURN_IF_ERROR(ex.backend().capture_step(
          [&ex, dev_opt, poison_ptr, target = poison_target_, loss = device_loss_] {
            ex.enqueue_train_step();
            if (poison_ptr) ex.backend().accumulate(1, poison_ptr, target);
            dev_opt->enqueue_step(ex.params().data, ex.grads().data, loss);
          }));
      captured_ = true;
    }
    WREN_RETURN_IF_ERROR(dev_opt->set_lr(lr));
    WREN_RETURN_IF_ERROR(ex.backend().replay_step());
    ex.set_step(ex.step() + 1);
  } else {
    WREN_RETURN_IF_ERROR(ex.forward(Mode::kTrain));
  }
  StepOutcome out;
  out.loss = ex.loss();
  out.loss_finite = std::isfinite(out.loss);
  if (use_capture_) {
    out.applied = dev_opt->finish_step();
  } else if (out.loss_finite) {
    WREN_RETURN_IF_ERROR(ex.backward());
    if (poison_ptr) ex.backend().accumulate(1, poison_ptr, poison_target_);
    out.applied = optimizer_->step(ex, lr);
  }
  if (inject_now && poison_ptr) {
    const float zero = 0.0f;
    ex.backend().upload(poison_ptr, &zero, sizeof zero);
  }
  return out;
}

// An applied step: its training accuracy (from this step's logits, computed before the
// update) and loss into the epoch's tally, the run position, the progress bar, and every
// log_every steps (and the first) a step record.
Status Trainer::record_step(int64_t epoch, int64_t b, float loss, double lr,
                            std::chrono::steady_clock::time_point t0, EpochTally& tally) {
  Executor<float>& ex = executor();
  const int classes = train_set_.num_classes;
  if (batcher_) {
    auto right =
        batcher_->count_correct(config_.batch, classes, ex.value(logits_).data, device_labels_);
    if (!right) return right.error();
    tally.score.accuracy += static_cast<double>(*right);
  } else {
    score_logits(ex.download(ex.value(logits_)), classes, labels_, config_.batch, tally.score);
  }
  tally.loss_sum += loss;
  tally.seen += config_.batch;
  ++state_.step;
  state_.epoch_batch = b + 1;
  const double dt = seconds_since(t0);
  train_seconds_ += dt;
  result_.step_seconds.push_back(dt);
  trained_images_ += config_.batch;
  progress_->update(epoch, total_epochs_, state_.step, loss, config_.batch / dt);
  if (state_.step % config_.log_every == 0 || state_.step == 1) {
    Json rec{{"kind", "step"},
             {"step", state_.step},
             {"epoch", epoch},
             {"loss", loss},
             {"lr", lr},
             {"images_per_s", trained_images_ / std::max(train_seconds_, 1e-9)},
             {"time_s", seconds_since(start_)}};
    if (config_.optimizer.clip_norm > 0) rec["grad_norm"] = optimizer_->last_grad_norm();
    WREN_RETURN_IF_ERROR(metrics_.write(rec));
  }
  return {};
}

// --- Checkpoints --------------------------------------------------------------------------------

Status Trainer::save(const std::string& path) {
  return optimizer_->save(path, executor(), state_, checkpoint_info_);
}

// At an epoch end: `last` every epoch; `best` when validation accuracy improves (or, without a
// validation split, every epoch). The saved position is the next epoch's start, or this
// epoch's when the run ended inside it (total_steps_ not a whole number of epochs).
Status Trainer::checkpoint_epoch(int64_t epoch, const TrainEpoch& rec) {
  if (state_.epoch_batch >= steps_per_epoch_) {
    state_.epoch = epoch + 1;
    state_.epoch_batch = 0;
  } else {
    state_.epoch = epoch;
  }
  const double score = rec.val ? rec.val->accuracy : 0.0;
  const bool best = !rec.val || score > result_.best_val_accuracy;
  if (rec.val) result_.best_val_accuracy = std::max(result_.best_val_accuracy, score);
  state_.best_val_accuracy = result_.best_val_accuracy;
  if (config_.write_checkpoints) {
    WREN_RETURN_IF_ERROR(save(result_.out_dir + "/last.safetensors"));
    if (best) {
      WREN_RETURN_IF_ERROR(save(result_.out_dir + "/best.safetensors"));
    }
  }
  return {};
}

// Mid-epoch stop (--stop-after-steps or a signal): save where the run is, without evaluating
// (the epoch is not over); --resume continues from there bit-identically.
Status Trainer::stop_early(int64_t epoch) {
  progress_->finish();
  state_.epoch = epoch;
  if (config_.write_checkpoints) {
    WREN_RETURN_IF_ERROR(save(result_.out_dir + "/last.safetensors"));
  }
  std::fprintf(log_, "stopped at step %lld of %lld; continue with --resume %s/last.safetensors\n",
               static_cast<long long>(state_.step), static_cast<long long>(total_steps_),
               result_.out_dir.c_str());
  return {};
}

}  // namespace train_internal

Expected<TrainResult> train(const TrainConfig& config, std::FILE* log) {
  train_internal::Trainer trainer(config, log);
  return trainer.run();
}

}  // namespace wren
