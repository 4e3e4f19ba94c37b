// `wren plot`, drawing: tick placement and the SVG of a run's metrics (cli/plot.h).
#include "cli/plot.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wren/atomic_file.h"

namespace wren {

// --- Axes ---------------------------------------------------------------------------------------

namespace {

constexpr double kLogTolerance = 1e-9;  // absorbs log10(0.01) = -1.9999999999999996

// 10^e, exactly rounded for the exponents that matter (pow may be off by an ulp).
double power_of_ten(int e) {
  double p = 1.0;
  for (int i = 0; i < std::abs(e); ++i) p *= 10.0;
  return e >= 0 ? p : 1.0 / p;
}

// k * m * 10^e with one rounding, so that tick 3 of spacing 0.2 is 0.6, not 0.6000000000000001.
double scaled(double k_times_m, int e) {
  return e >= 0 ? k_times_m * power_of_ten(e) : k_times_m / power_of_ten(-e);
}

int decade_of(double v) { return static_cast<int>(std::floor(std::log10(v) + kLogTolerance)); }

std::string fixed(double value, int decimals) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value,
                                    std::chars_format::fixed, decimals);
  std::string s(buffer, result.ptr);
  // "-0" and "-0.00" are zero.
  if (!s.empty() && s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

std::string strip_zeros(std::string s) {
  if (s.find('.') == std::string::npos) return s;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

std::string format_number(double value, double spacing, bool scientific) {
  if (value == 0.0) return "0";
  if (!std::isfinite(value)) return value != value ? "NaN" : (value > 0 ? "Inf" : "-Inf");
  const int spacing_decade = std::isfinite(spacing) && spacing > 0 ? decade_of(spacing) : 0;
  if (!scientific) return strip_zeros(fixed(value, std::clamp(-spacing_decade, 0, 17)));
  int e = decade_of(std::fabs(value));
  const int digits = std::clamp(e - spacing_decade, 0, 15);
  std::string mantissa = strip_zeros(fixed(value / power_of_ten(e), digits));
  if (mantissa == "10" || mantissa == "-10") {  // 9.99 rounded up
    ++e;
    mantissa = mantissa[0] == '-' ? "-1" : "1";
  }
  return mantissa + "e" + std::to_string(e);
}

bool wants_scientific(double spacing) { return spacing < 1e-4 || spacing >= 1e5; }

AxisTicks fallback_ticks(double lo, double hi) {
  AxisTicks t;
  t.lo = lo;
  t.hi = hi;
  t.values = {lo, hi};
  for (double v : t.values) t.labels.push_back(strip_zeros(fixed(v, 6)));
  return t;
}

}  // namespace

std::string format_tick(double value, double spacing) {
  return format_number(value, spacing, wants_scientific(spacing));
}

AxisTicks nice_linear_ticks(double lo, double hi, int target_count, bool integer) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) {
    lo = 0.0;
    hi = 1.0;
  }
  if (lo > hi) std::swap(lo, hi);
  target_count = std::max(target_count, 1);
  if (hi - lo <= std::max(std::fabs(lo), std::fabs(hi)) * 1e-12) {
    // One point, or all values equal: give the line some room instead of a zero range.
    double pad = lo == 0.0 ? 1.0 : std::fabs(lo) * 0.1;
    if (integer) pad = std::max(pad, 1.0);
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / target_count;
  if (!std::isfinite(raw) || raw < 1e-300) return fallback_ticks(lo, hi);
  int e = decade_of(raw);
  const double residual = raw / power_of_ten(e);
  int m = residual <= 1 + 1e-9 ? 1 : residual <= 2 + 1e-9 ? 2 : residual <= 5 + 1e-9 ? 5 : 10;
  if (m == 10) {
    m = 1;
    ++e;
  }
  if (integer && e < 0) {  // steps are whole numbers
    m = 1;
    e = 0;
  }
  const double spacing = scaled(m, e);
  const double k0 = std::floor(lo / spacing + 1e-9);
  const double k1 = std::ceil(hi / spacing - 1e-9);
  if (!(k1 - k0 >= 1) || k1 - k0 > 1000) return fallback_ticks(lo, hi);
  AxisTicks t;
  const bool scientific = wants_scientific(spacing);
  for (double k = k0; k <= k1; k += 1) {
    const double v = scaled(k * m, e);
    t.values.push_back(v);
    t.labels.push_back(format_number(v, spacing, scientific));
  }
  t.lo = t.values.front();
  t.hi = t.values.back();
  return t;
}

AxisTicks nice_log_ticks(double lo, double hi) {
  if (!(lo > 0) || !std::isfinite(lo)) lo = 1e-3;
  if (!(hi > 0) || !std::isfinite(hi)) hi = 1.0;
  if (lo > hi) std::swap(lo, hi);
  // Beyond ±300 decades 10^e is not a normal double; no metric gets there.
  const int e0 = std::clamp(decade_of(lo), -300, 299);
  int e1 = std::clamp(static_cast<int>(std::ceil(std::log10(hi) - kLogTolerance)), -299, 300);
  if (e1 <= e0) e1 = e0 + 1;
  const int decades = e1 - e0;
  const int stride = decades > 6 ? (decades + 5) / 6 : 1;
  if (stride > 1) e1 = e0 + (decades + stride - 1) / stride * stride;
  AxisTicks t;
  t.log = true;
  const bool scientific = e0 < -4 || e1 >= 5;
  for (int e = e0; e <= e1; e += stride) {
    for (int m : {1, 2, 5}) {
      if (m > 1 && (decades > 2 || e == e1)) continue;
      const double v = scaled(m, e);
      t.values.push_back(v);
      t.labels.push_back(format_number(v, power_of_ten(e), scientific));
    }
  }
  t.lo = t.values.front();
  t.hi = t.values.back();
  return t;
}

// --- The plot -----------------------------------------------------------------------------------

Status check_plot_options(const PlotOptions& options) {
  if (!(options.ema_alpha > 0.0 && options.ema_alpha <= 1.0)) {
    return invalid_argument("plot option ema_alpha must be in (0, 1], got " +
                            strip_zeros(fixed(options.ema_alpha, 6)));
  }
  if (options.columns < 1 || options.columns > 5) {
    return invalid_argument("plot option columns must be 1 to 5, got " +
                            std::to_string(options.columns));
  }
  if (options.plot_width < 100 || options.plot_width > 4000) {
    return invalid_argument("plot option plot_width must be 100 to 4000 pixels, got " +
                            std::to_string(options.plot_width));
  }
  if (options.plot_height < 60 || options.plot_height > 4000) {
    return invalid_argument("plot option plot_height must be 60 to 4000 pixels, got " +
                            std::to_string(options.plot_height));
  }
  return Status::ok_status();
}

namespace {

// Okabe & Ito's colour-blind-safe palette, yellow last because it is faint on white.
constexpr const char* kPalette[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                    "#E69F00", "#56B4E9", "#000000", "#F0E442"};
constexpr size_t kPaletteSize = sizeof kPalette / sizeof kPalette[0];
// After the eighth layer the colours repeat with a different dash pattern.
constexpr const char* kDashes[] = {"", "6 3", "2 2"};
constexpr const char* kStepColour = kPalette[0];
constexpr const char* kTrainColour = kPalette[1];
constexpr const char* kValColour = kPalette[2];
constexpr const char* kTestColour = kPalette[3];

// Panel geometry in pixels, relative to the panel's corner.
constexpr double kLeft = 72;      // y tick labels and the y axis title
constexpr double kTop = 30;       // the panel title
constexpr double kBottom = 46;    // x tick labels and the x axis title
constexpr double kLegendGap = 14;
constexpr double kLegendRow = 16;
constexpr double kCharWidth = 6.3;  // average advance of an 11 px sans-serif glyph
constexpr double kHeader = 58;
constexpr double kNoteRow = 15;

enum class Marker { kNone, kCircle, kSquare, kDiamond, kTriangle };

struct Point {
  double x = 0.0;
  double y = 0.0;
};

struct Series {
  std::string label{};
  std::string colour{};
  std::string dash{};
  double stroke_width = 1.5;
  double opacity = 1.0;
  bool line = true;
  Marker marker = Marker::kNone;
  std::vector<Point> points{};
};

struct Panel {
  std::string id{};
  std::string title{};
  std::string y_title{};
  bool log_y = false;
  std::vector<Series> series{};
};

// What a panel leaves out, by series, for the notes under the figure.
struct Omissions {
  std::map<std::string, int> non_finite{};
  std::map<std::string, int> non_positive{};
};

std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters other than tab and newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

// A coordinate: two decimals, trailing zeros dropped.
std::string num(double v) { return strip_zeros(fixed(v, 2)); }

size_t display_width(std::string_view s) {
  // UTF-8 continuation bytes do not start a glyph.
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string shortest(double v) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string(buffer, result.ptr);
}

std::string compact(double v) {  // 4 significant digits, for the summary line
  char buffer[64];
  const auto result =
      std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::general, 4);
  return std::string(buffer, result.ptr);
}

void add_point(Series& series, const std::string& panel_title, double x,
               const std::optional<double>& value, bool log_y, Omissions& omitted) {
  if (!value) return;
  const std::string key = panel_title + ": " + series.label;
  if (!std::isfinite(*value)) {
    ++omitted.non_finite[key];
  } else if (log_y && *value <= 0.0) {
    ++omitted.non_positive[key];
  } else {
    series.points.push_back(Point{.x = x, .y = *value});
  }
}

// The records in step order, the last record of a step winning: a resumed run logs the steps
// after its checkpoint again.
template <class Record>
std::vector<const Record*> latest_per_step(const std::vector<Record>& records, int& superseded) {
  std::vector<const Record*> sorted;
  for (const Record& r : records) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const Record* a, const Record* b) { return a->step < b->step; });
  std::vector<const Record*> kept;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i + 1 < sorted.size() && sorted[i + 1]->step == sorted[i]->step) {
      ++superseded;
    } else {
      kept.push_back(sorted[i]);
    }
  }
  return kept;
}

struct Axis {
  AxisTicks ticks{};
  double pixel_lo = 0.0;  // where ticks.lo lands
  double pixel_hi = 1.0;  // where ticks.hi lands

  double map(double v) const {
    const double t = ticks.log ? (std::log10(v) - std::log10(ticks.lo)) /
                                     (std::log10(ticks.hi) - std::log10(ticks.lo))
                               : (v - ticks.lo) / (ticks.hi - ticks.lo);
    return pixel_lo + t * (pixel_hi - pixel_lo);
  }
};

std::string marker_path(Marker marker, double x, double y) {
  switch (marker) {
    case Marker::kNone: return "";
    case Marker::kCircle: {
      const double r = 3;
      return "M" + num(x - r) + "," + num(y) + "a3,3 0 1 0 6,0a3,3 0 1 0 -6,0Z";
    }
    case Marker::kSquare: return "M" + num(x - 3) + "," + num(y - 3) + "h6v6h-6Z";
    case Marker::kDiamond: return "M" + num(x) + "," + num(y - 4) + "l4,4l-4,4l-4,-4Z";
    case Marker::kTriangle: return "M" + num(x) + "," + num(y - 4) + "l4,7h-8Z";
  }
  return "";
}

std::string stroke_attributes(const Series& s) {
  std::string a = " fill=\"none\" stroke=\"" + s.colour + "\" stroke-width=\"" +
                  num(s.stroke_width) + "\" stroke-linejoin=\"round\"";
  if (s.opacity < 1.0) a += " stroke-opacity=\"" + num(s.opacity) + "\"";
  if (!s.dash.empty()) a += " stroke-dasharray=\"" + s.dash + "\"";
  return a;
}

// A lone point of a line series gets a marker, or it would not show at all.
Marker effective_marker(const Series& s) {
  if (s.marker == Marker::kNone && s.line && s.points.size() == 1) return Marker::kCircle;
  return s.marker;
}

void draw_series(std::string& svg, const Series& s, const Axis& x_axis, const Axis& y_axis) {
  if (s.points.empty()) return;
  if (s.line) {
    svg += "<polyline data-series=\"" + xml_escape(s.label) + "\"" + stroke_attributes(s) +
           " points=\"";
    for (size_t i = 0; i < s.points.size(); ++i) {
      if (i) svg += ' ';
      svg += num(x_axis.map(s.points[i].x)) + "," + num(y_axis.map(s.points[i].y));
    }
    svg += "\"/>\n";
  }
  const Marker marker = effective_marker(s);
  if (marker == Marker::kNone) return;
  // Marker-only series are named like lines; markers on a line are named apart from it so that
  // each series has exactly one element carrying data-series.
  svg += std::string("<path ") + (s.line ? "data-markers" : "data-series") + "=\"" +
         xml_escape(s.label) + "\" fill=\"" + s.colour +
         "\" stroke=\"white\" stroke-width=\"0.6\" d=\"";
  for (const Point& p : s.points) svg += marker_path(marker, x_axis.map(p.x), y_axis.map(p.y));
  svg += "\"/>\n";
}

void draw_legend(std::string& svg, const Panel& panel, double x) {
  svg += "<g class=\"legend\">\n";
  double y = kTop + 10;
  for (const Series& s : panel.series) {
    if (s.points.empty()) continue;
    if (s.line) {
      Series sample = s;
      sample.opacity = std::max(s.opacity, 0.6);
      sample.stroke_width = std::max(s.stroke_width, 1.5);
      svg += "<line x1=\"" + num(x) + "\" y1=\"" + num(y) + "\" x2=\"" + num(x + 22) +
             "\" y2=\"" + num(y) + "\"" + stroke_attributes(sample) + "/>\n";
    }
    if (s.marker != Marker::kNone) {
      svg += "<path fill=\"" + s.colour + "\" d=\"" + marker_path(s.marker, x + 11, y) + "\"/>\n";
    }
    svg += "<text x=\"" + num(x + 28) + "\" y=\"" + num(y + 4) + "\">" + xml_escape(s.label) +
           "</text>\n";
    y += kLegendRow;
  }
  svg += "</g>\n";
}

size_t legend_rows(const Panel& panel) {
  return static_cast<size_t>(std::count_if(panel.series.begin(), panel.series.end(),
                                           [](const Series& s) { return !s.points.empty(); }));
}

double legend_width(const Panel& panel) {
  size_t chars = 0;
  for (const Series& s : panel.series) {
    if (!s.points.empty()) chars = std::max(chars, display_width(s.label));
  }
  return 28 + static_cast<double>(chars) * kCharWidth + 8;
}

void draw_panel(std::string& svg, const Panel& panel, const AxisTicks& x_ticks, double width,
                double height, double left, double top) {
  svg += "<g class=\"panel\" data-panel=\"" + panel.id + "\" transform=\"translate(" +
         num(left) + "," + num(top) + ")\">\n";
  svg += "<text x=\"" + num(kLeft) + "\" y=\"18\" font-size=\"13\" font-weight=\"bold\">" +
         xml_escape(panel.title) + "</text>\n";
  const double right = kLeft + width;
  const double bottom = kTop + height;
  const std::string frame = "<rect class=\"plot-area\" x=\"" + num(kLeft) + "\" y=\"" +
                            num(kTop) + "\" width=\"" + num(width) + "\" height=\"" +
                            num(height) + "\" fill=\"none\" stroke=\"#444\"/>\n";

  double y_lo = std::numeric_limits<double>::infinity();
  double y_hi = -y_lo;
  for (const Series& s : panel.series) {
    for (const Point& p : s.points) {
      y_lo = std::min(y_lo, p.y);
      y_hi = std::max(y_hi, p.y);
    }
  }
  if (y_lo > y_hi) {
    svg += frame;
    svg += "<text class=\"no-data\" x=\"" + num(kLeft + width / 2) + "\" y=\"" +
           num(kTop + height / 2) + "\" text-anchor=\"middle\" fill=\"#666\">no data</text>\n";
    svg += "</g>\n";
    return;
  }
  const Axis x_axis{.ticks = x_ticks, .pixel_lo = kLeft, .pixel_hi = right};
  const Axis y_axis{.ticks = panel.log_y ? nice_log_ticks(y_lo, y_hi)
                                         : nice_linear_ticks(y_lo, y_hi, 5, false),
                    .pixel_lo = bottom,
                    .pixel_hi = kTop};

  svg += "<g class=\"grid\" stroke=\"#e4e4e4\" stroke-width=\"1\">\n";
  for (double v : y_axis.ticks.values) {
    const std::string y = num(y_axis.map(v));
    svg += "<line x1=\"" + num(kLeft) + "\" y1=\"" + y + "\" x2=\"" + num(right) + "\" y2=\"" +
           y + "\"/>\n";
  }
  for (double v : x_axis.ticks.values) {
    const std::string x = num(x_axis.map(v));
    svg += "<line x1=\"" + x + "\" y1=\"" + num(kTop) + "\" x2=\"" + x + "\" y2=\"" +
           num(bottom) + "\"/>\n";
  }
  svg += "</g>\n<g class=\"ticks\" fill=\"#333\">\n";
  for (size_t i = 0; i < y_axis.ticks.values.size(); ++i) {
    svg += "<text x=\"" + num(kLeft - 6) + "\" y=\"" +
           num(y_axis.map(y_axis.ticks.values[i]) + 4) + "\" text-anchor=\"end\">" +
           xml_escape(y_axis.ticks.labels[i]) + "</text>\n";
  }
  for (size_t i = 0; i < x_axis.ticks.values.size(); ++i) {
    svg += "<text x=\"" + num(x_axis.map(x_axis.ticks.values[i])) + "\" y=\"" +
           num(bottom + 16) + "\" text-anchor=\"middle\">" + xml_escape(x_axis.ticks.labels[i]) +
           "</text>\n";
  }
  svg += "</g>\n";
  svg += "<text class=\"axis-title\" x=\"" + num(kLeft + width / 2) + "\" y=\"" +
         num(bottom + 36) + "\" text-anchor=\"middle\">step</text>\n";
  const std::string y_mid = num(kTop + height / 2);
  svg += "<text class=\"axis-title\" x=\"16\" y=\"" + y_mid + "\" text-anchor=\"middle\" " +
         "transform=\"rotate(-90 16 " + y_mid + ")\">" + xml_escape(panel.y_title) + "</text>\n";

  for (const Series& s : panel.series) draw_series(svg, s, x_axis, y_axis);
  svg += frame;
  draw_legend(svg, panel, right + kLegendGap);
  svg += "</g>\n";
}

std::string svg_open(double width, double height, const std::string& title) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(width) + "\" height=\"" +
         num(height) + "\" viewBox=\"0 0 " + num(width) + " " + num(height) +
         "\" font-family=\"sans-serif\" font-size=\"11\">\n<title>" + xml_escape(title) +
         "</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
         "<text class=\"title\" x=\"16\" y=\"26\" font-size=\"16\" font-weight=\"bold\">" +
         xml_escape(title) + "</text>\n";
}

void draw_notes(std::string& svg, const std::vector<std::string>& notes, double top) {
  if (notes.empty()) return;
  svg += "<g class=\"notes\" fill=\"#7a2a00\">\n";
  for (size_t i = 0; i < notes.size(); ++i) {
    svg += "<text class=\"note\" x=\"16\" y=\"" + num(top + kNoteRow * (i + 1)) +
           "\">note: " + xml_escape(notes[i]) + "</text>\n";
  }
  svg += "</g>\n";
}

std::string summary_line(const std::vector<const StepRecord*>& steps,
                         const std::vector<const EpochRecord*>& epochs) {
  std::string s;
  if (!steps.empty()) {
    s += std::to_string(steps.size()) + " logged steps (last: step " +
         std::to_string(steps.back()->step) + ")";
  }
  if (!epochs.empty()) {
    if (!s.empty()) s += ", ";
    s += std::to_string(epochs.size()) + (epochs.size() == 1 ? " epoch" : " epochs");
    const EpochRecord& last = *epochs.back();
    const std::pair<const char*, const std::optional<double>*> finals[] = {
        {"train loss", &last.train_loss}, {"val acc", &last.val_acc},
        {"test acc", &last.test_acc}};
    for (const auto& [name, value] : finals) {
      if (*value && std::isfinite(**value)) s += std::string(", final ") + name + " " +
                                                 compact(**value);
    }
  }
  return s;
}

}  // namespace

std::string render_svg(const RunMetrics& metrics, const PlotOptions& requested) {
  PlotOptions options = requested;
  if (!(options.ema_alpha > 0.0 && options.ema_alpha <= 1.0)) options.ema_alpha = 0.1;
  options.columns = std::clamp(options.columns, 1, 5);
  options.plot_width = std::clamp(options.plot_width, 100, 4000);
  options.plot_height = std::clamp(options.plot_height, 60, 4000);
  const std::string title =
      options.title.empty() ? "Wren run: " + metrics.run_name : options.title;

  std::vector<std::string> notes = metrics.warnings;
  if (metrics.empty()) {
    const std::string message = "no data: " + (metrics.path.empty() ? std::string("the metrics")
                                                                    : metrics.path) +
                                " has no step or epoch records";
    const double width = std::max(640.0, 32 + display_width(message) * kCharWidth);
    std::string svg = svg_open(width, kHeader + 40 + kNoteRow * notes.size() + 16, title);
    svg += "<text class=\"no-data\" x=\"16\" y=\"" + num(kHeader + 10) + "\">" +
           xml_escape(message) + "</text>\n";
    draw_notes(svg, notes, kHeader + 20);
    return svg + "</svg>\n";
  }

  int superseded = 0;
  const std::vector<const StepRecord*> steps = latest_per_step(metrics.steps, superseded);
  const std::vector<const EpochRecord*> epochs = latest_per_step(metrics.epochs, superseded);
  if (superseded > 0) {
    notes.push_back(std::to_string(superseded) +
                    " record(s) repeat the step of an earlier one (a resumed run?); the later "
                    "record is plotted");
  }
  Omissions omitted;
  std::vector<Panel> panels;

  // (1) Loss.
  {
    Panel p{.id = "loss", .title = "Loss", .y_title = options.log_loss ? "loss (log)" : "loss",
            .log_y = options.log_loss};
    Series raw{.label = "loss per step", .colour = kStepColour, .stroke_width = 0.8,
               .opacity = 0.35};
    for (const StepRecord* r : steps) add_point(raw, p.title, r->step, r->loss, p.log_y, omitted);
    Series smooth{.label = "smoothed (EMA, α=" + shortest(options.ema_alpha) + ")",
                  .colour = kStepColour, .stroke_width = 2.0};
    double ema = 0.0;
    for (size_t i = 0; i < raw.points.size(); ++i) {
      ema = i == 0 ? raw.points[i].y
                   : options.ema_alpha * raw.points[i].y + (1 - options.ema_alpha) * ema;
      smooth.points.push_back(Point{.x = raw.points[i].x, .y = ema});
    }
    Series train{.label = "train (epoch)", .colour = kTrainColour, .line = false,
                 .marker = Marker::kCircle};
    Series val{.label = "val (epoch)", .colour = kValColour, .line = false,
               .marker = Marker::kSquare};
    Series test{.label = "test (epoch)", .colour = kTestColour, .line = false,
                .marker = Marker::kDiamond};
    for (const EpochRecord* r : epochs) {
      const auto x = static_cast<double>(r->step);
      add_point(train, p.title, x, r->train_loss, p.log_y, omitted);
      add_point(val, p.title, x, r->val_loss, p.log_y, omitted);
      add_point(test, p.title, x, r->test_loss, p.log_y, omitted);
    }
    p.series = {std::move(raw), std::move(smooth), std::move(train), std::move(val),
                std::move(test)};
    panels.push_back(std::move(p));
  }
  // (2) Accuracy.
  {
    Panel p{.id = "accuracy", .title = "Accuracy", .y_title = "accuracy"};
    Series train{.label = "train", .colour = kTrainColour, .marker = Marker::kCircle};
    Series val{.label = "val", .colour = kValColour, .marker = Marker::kSquare};
    Series test{.label = "test", .colour = kTestColour, .marker = Marker::kDiamond};
    for (const EpochRecord* r : epochs) {
      const auto x = static_cast<double>(r->step);
      add_point(train, p.title, x, r->train_acc, false, omitted);
      add_point(val, p.title, x, r->val_acc, false, omitted);
      add_point(test, p.title, x, r->test_acc, false, omitted);
    }
    p.series = {std::move(train), std::move(val), std::move(test)};
    panels.push_back(std::move(p));
  }
  // (3) Learning rate: per step, or per epoch for a run that logs no steps.
  {
    Panel p{.id = "lr", .title = "Learning rate", .y_title = "learning rate"};
    Series lr{.label = "lr per step", .colour = kStepColour};
    for (const StepRecord* r : steps) add_point(lr, p.title, r->step, r->lr, false, omitted);
    if (lr.points.empty()) {
      lr = Series{.label = "lr (epoch)", .colour = kStepColour, .marker = Marker::kCircle};
      for (const EpochRecord* r : epochs) add_point(lr, p.title, r->step, r->lr, false, omitted);
    }
    p.series.push_back(std::move(lr));
    panels.push_back(std::move(p));
  }
  // (4) and (5): one line per parameter tensor, in order of first appearance.
  const auto per_layer_panel = [&](const char* id, const char* panel_title, const char* y_title,
                                   std::vector<LayerValue> EpochRecord::*field) {
    Panel p{.id = id, .title = panel_title, .y_title = y_title};
    std::map<std::string, size_t> index_of;
    for (const EpochRecord* r : epochs) {
      for (const LayerValue& layer : r->*field) {
        auto [it, added] = index_of.emplace(layer.name, p.series.size());
        if (added) {
          const size_t i = p.series.size();
          p.series.push_back(Series{.label = layer.name,
                                    .colour = kPalette[i % kPaletteSize],
                                    .dash = kDashes[(i / kPaletteSize) % 3],
                                    .marker = Marker::kCircle});
        }
        add_point(p.series[it->second], p.title, static_cast<double>(r->step), layer.value,
                  false, omitted);
      }
    }
    return p;
  };
  panels.push_back(per_layer_panel("weight-norm", "Weight norm per tensor", "L2 norm",
                                   &EpochRecord::weight_norm));
  const bool has_l1 = std::any_of(epochs.begin(), epochs.end(), [](const EpochRecord* r) {
    return !r->near_zero_fraction.empty();
  });
  if (has_l1) {
    panels.push_back(per_layer_panel("near-zero", "Near-zero weights per tensor (L1)",
                                     "fraction near zero", &EpochRecord::near_zero_fraction));
  }

  for (const auto& [key, count] : omitted.non_finite) {
    notes.push_back(key + ": left out " + std::to_string(count) + " NaN/Inf value(s)");
  }
  for (const auto& [key, count] : omitted.non_positive) {
    notes.push_back(key + ": left out " + std::to_string(count) +
                    " value(s) of 0 or less, which a log scale cannot show");
  }

  // The same step axis for every panel, so that panels line up.
  double x_lo = std::numeric_limits<double>::infinity();
  double x_hi = -x_lo;
  for (const StepRecord* r : steps) {
    x_lo = std::min(x_lo, static_cast<double>(r->step));
    x_hi = std::max(x_hi, static_cast<double>(r->step));
  }
  for (const EpochRecord* r : epochs) {
    x_lo = std::min(x_lo, static_cast<double>(r->step));
    x_hi = std::max(x_hi, static_cast<double>(r->step));
  }
  const AxisTicks x_ticks = nice_linear_ticks(x_lo, x_hi, 6, true);

  const double plot_width = options.plot_width;
  const double plot_height = options.plot_height;
  double legend = 90;
  size_t rows_needed = 0;
  for (const Panel& p : panels) {
    legend = std::max(legend, legend_width(p));
    rows_needed = std::max(rows_needed, legend_rows(p));
  }
  const double panel_width = kLeft + plot_width + kLegendGap + legend + 10;
  const double panel_height = std::max(kTop + plot_height + kBottom,
                                       kTop + 10 + kLegendRow * rows_needed + 10);
  const size_t columns = std::min(panels.size(), static_cast<size_t>(options.columns));
  const size_t rows = (panels.size() + columns - 1) / columns;
  const double notes_top = kHeader + panel_height * rows;
  double width = panel_width * columns;
  for (const std::string& note : notes) {
    width = std::max(width, 40 + (display_width(note) + 6) * kCharWidth);
  }
  const double height = notes_top + kNoteRow * notes.size() + (notes.empty() ? 4 : 12);

  std::string svg = svg_open(width, height, title);
  svg += "<text class=\"summary\" x=\"16\" y=\"44\" fill=\"#555\">" +
         xml_escape(summary_line(steps, epochs)) + "</text>\n";
  for (size_t i = 0; i < panels.size(); ++i) {
    draw_panel(svg, panels[i], x_ticks, plot_width, plot_height,
               panel_width * static_cast<double>(i % columns),
               kHeader + panel_height * static_cast<double>(i / columns));
  }
  draw_notes(svg, notes, notes_top);
  return svg + "</svg>\n";
}

Status write_plot(const std::string& run_dir_or_metrics_path, const std::string& out_svg,
                  const PlotOptions& options, std::vector<std::string>* warnings) {
  WREN_RETURN_IF_ERROR(check_plot_options(options));
  if (out_svg.empty()) return invalid_argument("write_plot: empty output path");
  Expected<RunMetrics> metrics = read_metrics(run_dir_or_metrics_path);
  if (!metrics) return metrics.error();
  if (warnings) warnings->insert(warnings->end(), metrics->warnings.begin(),
                                 metrics->warnings.end());
  return write_file_atomic(out_svg, std::string_view(render_svg(*metrics, options)));
}

}  // namespace wren
