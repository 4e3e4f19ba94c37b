// Evaluation: of an executor on a dataset (wren::evaluate), of a checkpoint (`wren eval`), and
// of a training run at each epoch end (the epoch record in metrics.jsonl and the log line).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "train/trainer.h"

namespace wren {
namespace train_internal {
namespace {

Json eval_json(const std::optional<EvalResult>& r, const char* what) {
  Json j = Json::object();
  if (r) {
    j[std::string(what) + "_loss"] = r->loss;
    j[std::string(what) + "_acc"] = r->accuracy;
  }
  return j;
}

std::vector<int64_t> all_indices(int64_t count) {
  std::vector<int64_t> all(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) all[static_cast<size_t>(i)] = i;
  return all;
}

}  // namespace

Expected<Value> logits_value(const Graph& graph) {
  for (const Node& n : graph.nodes()) {
    if (n.output == graph.loss().id && !n.inputs.empty()) return Value{n.inputs[0]};
  }
  return invalid_argument("the model has no loss op (softmax_ce)");
}

void score_logits(const std::vector<float>& logits, int classes, std::span<const int32_t> labels,
                  int64_t valid, EvalResult& out) {
  for (int64_t i = 0; i < valid; ++i) {
    const float* row = logits.data() + i * classes;
    int best = 0;
    double max = row[0];
    for (int c = 1; c < classes; ++c) {
      if (row[c] > row[best]) best = c;
      max = std::max(max, static_cast<double>(row[c]));
    }
    double sum = 0.0;
    for (int c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(row[c]) - max);
    const int32_t label = labels[static_cast<size_t>(i)];
    out.loss += std::log(sum) + max - row[label];
    out.accuracy += best == label ? 1.0 : 0.0;
    out.confusion[static_cast<size_t>(label * classes + best)] += 1;
  }
}

// The epoch's training loss and accuracy (of its applied steps), the LR of its last step, and
// the validation and test sets evaluated with the weights as they are now.
Expected<TrainEpoch> Trainer::evaluate_epoch(int64_t epoch, const EpochTally& tally) {
  TrainEpoch rec;
  rec.epoch = epoch;
  rec.step = state_.step;
  rec.train_loss =
      tally.seen ? tally.loss_sum / static_cast<double>(tally.seen / config_.batch) : 0.0;
  rec.train_accuracy = tally.seen ? tally.score.accuracy / static_cast<double>(tally.seen) : 0.0;
  rec.lr = schedule_->lr(std::max<int64_t>(state_.step - 1, 0));
  if (!split_.val.empty()) {
    auto v = evaluate(executor(), train_set_, split_.val, norm_);
    if (!v) return v.error();
    rec.val = *v;
  }
  if (test_set_) {
    const std::vector<int64_t> all = all_indices(test_set_->count);
    auto t = evaluate(executor(), *test_set_, all, norm_);
    if (!t) return t.error();
    rec.test = *t;
    result_.final_test = *t;
  }
  return rec;
}

// The epoch record of metrics.jsonl: the epoch's numbers, and per parameter its L2 norm and
// (with L1 on) the fraction of its weights near zero.
Json Trainer::epoch_record(const TrainEpoch& rec) {
  Json j{{"kind", "epoch"},
         {"epoch", rec.epoch},
         {"step", rec.step},
         {"train_loss", rec.train_loss},
         {"train_acc", rec.train_accuracy},
         {"lr", rec.lr},
         {"time_s", rec.seconds}};
  j.update(eval_json(rec.val, "val"));
  j.update(eval_json(rec.test, "test"));
  const std::vector<float> params = executor().download(executor().params());
  Json norms = Json::object(), near_zero = Json::object();
  for (const ParamInfo& p : graph().params()) {
    double sq = 0.0;
    int64_t zeros = 0;
    for (int64_t i = 0; i < p.shape.numel(); ++i) {
      const double w = params[static_cast<size_t>(p.offset + i)];
      sq += w * w;
      zeros += std::fabs(w) < kNearZeroWeight;
    }
    norms[p.name] = std::sqrt(sq);
    near_zero[p.name] = static_cast<double>(zeros) / static_cast<double>(p.shape.numel());
  }
  j["weight_norm"] = norms;
  if (config_.optimizer.l1 > 0) j["near_zero_fraction"] = near_zero;
  return j;
}

// Epoch end: evaluate, write the epoch record and the log line, checkpoint.
Status Trainer::end_epoch(int64_t epoch, const EpochTally& tally) {
  progress_->pause();
  auto rec = evaluate_epoch(epoch, tally);
  if (!rec) return rec.error();
  rec->seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  WREN_RETURN_IF_ERROR(metrics_.write(epoch_record(*rec)));

  std::string line = "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(total_epochs_) +
                     ": train loss " + std::to_string(rec->train_loss) + " acc " +
                     std::to_string(rec->train_accuracy);
  if (rec->val) line += ", val acc " + std::to_string(rec->val->accuracy);
  if (rec->test) line += ", test acc " + std::to_string(rec->test->accuracy);
  std::fprintf(log_, "%s (%.1f s)\n", line.c_str(), rec->seconds);

  WREN_RETURN_IF_ERROR(checkpoint_epoch(epoch, *rec));
  result_.epochs.push_back(*rec);
  progress_->resume();
  return {};
}

}  // namespace train_internal

using train_internal::build_graph;
using train_internal::logits_value;
using train_internal::make_train_backend;
using train_internal::model_input;
using train_internal::ModelSource;
using train_internal::score_logits;

Expected<EvalResult> evaluate(Executor<float>& ex, const Dataset& dataset,
                              std::span<const int64_t> indices,
                              const Normalization& normalization) {
  auto logits = logits_value(ex.graph());
  if (!logits) return logits.error();
  const int batch = ex.batch_size();
  const int classes = dataset.num_classes;
  const int64_t logit_width = ex.graph().value_info(*logits).shape.numel();
  if (logit_width != classes) {
    return invalid_argument("the model has " + std::to_string(logit_width) +
                            " outputs but the dataset has " + std::to_string(classes) +
                            " classes");
  }
  EvalResult r;
  r.classes = classes;
  r.confusion.assign(static_cast<size_t>(classes * classes), 0);
  std::vector<float> images(static_cast<size_t>(batch * dataset.image_size()));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  std::vector<int64_t> chunk(static_cast<size_t>(batch));
  for (size_t begin = 0; begin < indices.size(); begin += static_cast<size_t>(batch)) {
    const size_t valid = std::min(indices.size() - begin, static_cast<size_t>(batch));
    // Pad the last batch by repeating its first sample; padded rows are not scored.
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = indices[begin + (i < valid ? i : 0)];
    make_batch<float>(dataset, chunk, normalization, AugmentConfig{}, false, 0, 0, images.data(),
                      labels.data());
    WREN_RETURN_IF_ERROR(ex.set_input("image", images));
    WREN_RETURN_IF_ERROR(ex.set_labels("label", labels));
    WREN_RETURN_IF_ERROR(ex.forward(Mode::kEval));
    score_logits(ex.download(ex.value(*logits)), classes, labels, static_cast<int64_t>(valid), r);
  }
  r.count = static_cast<int64_t>(indices.size());
  if (r.count > 0) {
    r.loss /= static_cast<double>(r.count);
    r.accuracy /= static_cast<double>(r.count);
  }
  return r;
}

std::string format_confusion(const EvalResult& r) {
  std::ostringstream out;
  const int k = r.classes;
  out << "confusion matrix (rows: true label, columns: predicted)\n      ";
  for (int c = 0; c < k; ++c) out << std::setw(6) << c;
  out << "   accuracy\n";
  for (int t = 0; t < k; ++t) {
    out << std::setw(6) << t;
    int64_t row_total = 0;
    for (int p = 0; p < k; ++p) {
      const int64_t v = r.confusion[static_cast<size_t>(t * k + p)];
      row_total += v;
      out << std::setw(6) << v;
    }
    const double acc = row_total ? static_cast<double>(r.confusion[static_cast<size_t>(t * k + t)]) /
                                       static_cast<double>(row_total)
                                 : 0.0;
    out << "   " << std::fixed << std::setprecision(4) << acc << "\n";
  }
  return out.str();
}

Expected<EvalResult> evaluate_checkpoint(const std::string& path, const std::string& data_dir,
                                         Split split, int batch, DeviceChoice device) {
  auto file = read_checkpoint_file(path);
  if (!file) return file.error();
  auto info = read_checkpoint_info(*file);
  if (!info) return info.error();
  const std::string dir = data_dir.empty() ? info->data_dir : data_dir;
  auto dataset = load_dataset(dir, split);
  if (!dataset) return dataset.error();
  const ModelInput in = model_input(*dataset);
  if (in.channels != info->input.channels || in.height != info->input.height ||
      in.width != info->input.width || in.classes != info->input.classes) {
    return invalid_argument(path + " was trained on " + std::to_string(info->input.channels) +
                            "x" + std::to_string(info->input.height) + "x" +
                            std::to_string(info->input.width) + " images with " +
                            std::to_string(info->input.classes) + " classes; " + dir +
                            " holds " + std::to_string(in.channels) + "x" +
                            std::to_string(in.height) + "x" + std::to_string(in.width) +
                            " with " + std::to_string(in.classes));
  }
  auto graph = build_graph(ModelSource{info->model_name, info->model_text}, in);
  if (!graph) return graph.error();
  // The device notes are for training runs; `wren eval` prints only its result.
  std::FILE* quiet = std::fopen("/dev/null", "w");
  auto backend =
      make_train_backend(device, MathMode::kFp32, LinearImpl::kWren, quiet ? quiet : stderr);
  if (quiet) std::fclose(quiet);
  if (!backend) return backend.error();
  auto created = Executor<float>::create(*graph, std::move(*backend),
                                         ExecutorOptions{.batch_size = batch, .seed = 0});
  if (!created) return created.error();
  WREN_RETURN_IF_ERROR(load_weights(*file, **created, /*require_buffers=*/true));
  const std::vector<int64_t> all = train_internal::all_indices(dataset->count);
  return evaluate(**created, *dataset, all, info->normalization);
}

}  // namespace wren
