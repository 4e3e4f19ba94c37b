// `wren plot`: reads a run's metrics.jsonl (the schema is docs/PLOTS.md) and draws it as one
// self-contained SVG: loss, accuracy, learning rate, per-layer weight norms and, when the run
// used L1, per-layer fractions of near-zero weights, all against the training step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "wren/error.h"

namespace wren {

// --- The metrics file ---------------------------------------------------------------------------

// One value per parameter tensor ("conv1.weight"), in the order the file lists them.
struct LayerValue {
  std::string name{};
  double value = 0.0;
};

// {"kind":"step",...}: one logged training step. Absent and null fields are std::nullopt;
// non-finite values (written as "NaN", "Infinity", "-Infinity") are kept as NaN/±Inf.
struct StepRecord {
  int64_t step = 0;
  std::optional<int64_t> epoch{};
  std::optional<double> loss{};
  std::optional<double> lr{};
  std::optional<double> images_per_s{};
  std::optional<double> time_s{};
  std::optional<double> grad_norm{};
  int line = 0;  // 1-based line of the file it came from
};

// {"kind":"epoch",...}: the end of an epoch; `step` is the global step at that point.
struct EpochRecord {
  int64_t epoch = 0;
  int64_t step = 0;
  std::optional<double> train_loss{};
  std::optional<double> train_acc{};
  std::optional<double> val_loss{};
  std::optional<double> val_acc{};
  std::optional<double> test_loss{};
  std::optional<double> test_acc{};
  std::optional<double> lr{};
  std::optional<double> time_s{};
  std::vector<LayerValue> weight_norm{};
  std::vector<LayerValue> near_zero_fraction{};  // empty when the run did not use L1
  int line = 0;
};

// {"kind":"skipped_step",...}: a step `wren train --on-nonfinite skip-step` did not apply
// because its loss or a gradient was NaN or infinite. `step` is the step's 0-based index (the
// step record of an applied step at that index would say step + 1).
struct SkippedStepRecord {
  int64_t step = 0;
  std::optional<int64_t> epoch{};
  std::string reason{};  // "non-finite loss" | "non-finite gradient"
  std::string where{};   // the first non-finite layer, e.g. "'conv2' (conv2d)"
  int line = 0;
};

struct RunMetrics {
  std::string path{};      // the metrics file that was read
  std::string run_name{};  // the run directory's name (the file's stem if not metrics.jsonl)
  std::vector<StepRecord> steps{};    // in file order
  std::vector<EpochRecord> epochs{};  // in file order
  std::vector<SkippedStepRecord> skipped_steps{};  // in file order (not plotted)
  // Problems that did not stop the read, e.g. an incomplete last line; each names file:line.
  std::vector<std::string> warnings{};

  bool empty() const { return steps.empty() && epochs.empty(); }
};

// The metrics file of a run: `path` itself, or path/metrics.jsonl when `path` is a directory.
std::string resolve_metrics_path(const std::string& run_dir_or_metrics_path);

// Parses a metrics file (or a run directory's metrics.jsonl). Errors (kDataError) name
// "file:line" for malformed JSON, a line that is not an object, a missing "kind", "step" or
// "epoch", or a field of the wrong type. Blank lines are ignored, and so are unknown keys and
// records of an unknown kind (a warning counts the latter). A last line that has no newline and
// does not parse (a run killed mid-write) is skipped with a warning instead of failing.
Expected<RunMetrics> read_metrics(const std::string& path);

// --- Axes ---------------------------------------------------------------------------------------

struct AxisTicks {
  double lo = 0.0;  // the axis range: the outermost ticks, which enclose the data
  double hi = 1.0;
  bool log = false;
  std::vector<double> values{};
  std::vector<std::string> labels{};  // values[i] formatted for display
};

// About `target_count` intervals of 1, 2 or 5 times a power of ten covering [lo, hi]: [0, 1]
// gives 0, 0.2, ..., 1. A zero-width range is widened (by 10% of |lo|, or 1 around 0); with
// `integer` the spacing is at least 1. Non-finite bounds give [0, 1].
AxisTicks nice_linear_ticks(double lo, double hi, int target_count = 5, bool integer = false);

// Whole decades covering [lo, hi] (lo > 0), with 2 and 5 in between when there are at most two
// decades, and every n-th decade when there are more than six.
AxisTicks nice_log_ticks(double lo, double hi);

// A tick label with as many digits as `spacing` needs, trailing zeros dropped: fixed-point
// ("0.2", "1500"), or scientific when the spacing is below 1e-4 or at least 1e5 ("2e-5",
// "1.5e6"), so that one axis never mixes the two.
std::string format_tick(double value, double spacing);

// --- The plot -----------------------------------------------------------------------------------

struct PlotOptions {
  std::string title{};     // empty: "Wren run: <run_name>"
  bool log_loss = false;   // log-scale loss axis; non-positive losses are skipped and noted
  double ema_alpha = 0.1;  // weight of the newest logged loss in the smoothed line, in (0, 1]
  int columns = 2;         // panels per row, 1 to 5
  int plot_width = 460;    // pixels of each panel's plot area, 100 to 4000
  int plot_height = 220;   // 60 to 4000
};

// kInvalidArgument naming the first option out of range.
Status check_plot_options(const PlotOptions& options);

// The whole figure as an SVG document. Empty metrics give an SVG that says "no data"; records
// that repeat a step (a resumed run) are superseded by the later one; NaN/Inf values are left
// out of their lines and counted in a note under the panels. Options out of range are clamped.
std::string render_svg(const RunMetrics& metrics, const PlotOptions& options);

// Reads the run's metrics, renders them and writes `out_svg` atomically (temporary file in the
// same directory, then rename). Read warnings are appended to `warnings` when it is given.
Status write_plot(const std::string& run_dir_or_metrics_path, const std::string& out_svg,
                  const PlotOptions& options, std::vector<std::string>* warnings = nullptr);

// Converts the SVG file `svg` to the PNG file `png` (written to a temporary name, then renamed)
// with rsvg-convert, found on PATH; returns the converter's path. kUnavailable, naming the
// converter and its package, when it is not on PATH; kIoError with its exit status and output
// when it fails.
Expected<std::string> convert_svg_to_png(const std::string& svg, const std::string& png);

}  // namespace wren
