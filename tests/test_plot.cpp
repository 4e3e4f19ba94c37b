// `wren plot`: reading metrics.jsonl (values, file:line errors, an incomplete last line), nice
// ticks on known ranges, and the SVG: well-formed XML (a small checker here, and xmllint when
// installed), one element per series with the right number of points, legends, the optional L1
// panel, data-to-pixel mapping checked against a transform computed here, edge cases, atomic
// writing and PNG conversion through rsvg-convert (a fake one on PATH, the real one if present).
#include "cli/plot.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace wren {
namespace {

namespace fs = std::filesystem;

// --- Helpers ------------------------------------------------------------------------------------

class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("wren_" + std::string(info->test_suite_name()) + "_" +
                                        info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
  std::vector<std::string> entries(const fs::path& dir) const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path dir_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string step_line(int step, int epoch, const std::string& loss, const std::string& lr) {
  return R"({"kind":"step","step":)" + std::to_string(step) + R"(,"epoch":)" +
         std::to_string(epoch) + R"(,"loss":)" + loss + R"(,"lr":)" + lr +
         R"(,"images_per_s":3900.5,"time_s":4.2})";
}

// Three logged steps and two epochs; layers deliberately not in sorted order.
std::string sample_run(bool with_l1) {
  const std::string near_zero_0 =
      R"(,"near_zero_fraction":{"conv1.weight":0.01,"conv2.weight":0.02,"fc.weight":0.1,)"
      R"("fc.bias":0.0})";
  const std::string near_zero_1 =
      R"(,"near_zero_fraction":{"conv1.weight":0.05,"conv2.weight":0.08,"fc.weight":0.3,)"
      R"("fc.bias":0.0})";
  return step_line(0, 0, "2.5", "0.001") + "\n" +
         R"({"kind":"step","step":50,"epoch":0,"loss":1.5,"lr":0.002,"images_per_s":3950,)"
         R"("time_s":2.1,"grad_norm":4.5,"future_field":{"x":[1,2]}})" "\n"
         R"({"kind":"epoch","epoch":0,"step":50,"train_loss":1.7,"train_acc":0.61,)"
         R"("val_loss":1.4,"val_acc":0.66,"test_loss":1.45,"test_acc":0.65,"lr":0.002,)"
         R"("time_s":2.2,"weight_norm":{"conv1.weight":3.25,"conv2.weight":7.5,)"
         R"("fc.weight":2.0,"fc.bias":0.25})" + (with_l1 ? near_zero_0 : "") + "}\n" +
         step_line(100, 1, "0.5", "0.0015") + "\n" +
         R"({"kind":"epoch","epoch":1,"step":100,"train_loss":0.9,"train_acc":0.8,)"
         R"("val_loss":0.8,"val_acc":0.82,"test_loss":null,"test_acc":0.81,"lr":0.0015,)"
         R"("time_s":4.3,"weight_norm":{"conv1.weight":3.5,"conv2.weight":8.0,)"
         R"("fc.weight":2.5,"fc.bias":0.5})" + (with_l1 ? near_zero_1 : "") + "}\n";
}

RunMetrics metrics_of(const std::vector<StepRecord>& steps,
                      const std::vector<EpochRecord>& epochs = {}) {
  RunMetrics m;
  m.path = "test/metrics.jsonl";
  m.run_name = "test";
  m.steps = steps;
  m.epochs = epochs;
  return m;
}

// --- A small XML checker ----------------------------------------------------------------------

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attributes;  // values with entities resolved
  std::string text;                               // character data directly inside
  int parent = -1;
};

struct XmlDocument {
  std::string error;  // empty when well-formed
  std::vector<XmlElement> elements;
};

bool resolve_entities(std::string_view raw, std::string& out) {
  static const std::map<std::string, std::string> kEntities = {
      {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}};
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '<') return false;
    if (raw[i] != '&') {
      out += raw[i];
      continue;
    }
    const size_t semicolon = raw.find(';', i);
    if (semicolon == std::string_view::npos) return false;
    const std::string name(raw.substr(i + 1, semicolon - i - 1));
    if (kEntities.count(name)) {
      out += kEntities.at(name);
    } else if (name.size() > 1 && name[0] == '#') {
      out += '?';  // a character reference; the tests do not look inside
    } else {
      return false;
    }
    i = semicolon;
  }
  return true;
}

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':' || c == '-' ||
         c == '.';
}

// Well-formedness as far as this SVG needs it: one root element, properly nested and balanced
// tags, quoted and unique attributes separated by spaces, '&' only in entities, no '<' in text
// or attribute values.
XmlDocument parse_xml(const std::string& s) {
  XmlDocument doc;
  std::vector<int> open;
  bool root_seen = false;
  size_t i = 0;
  const auto fail = [&](const std::string& why) {
    doc.error = why + " at offset " + std::to_string(i) + ": " + s.substr(i, 60);
    return doc;
  };
  while (i < s.size()) {
    if (s[i] != '<') {
      const size_t end = std::min(s.find('<', i), s.size());
      std::string text;
      if (!resolve_entities(std::string_view(s).substr(i, end - i), text)) {
        return fail("bad character data");
      }
      if (open.empty()) {
        if (text.find_first_not_of(" \t\r\n") != std::string::npos) {
          return fail("text outside the root element");
        }
      } else {
        doc.elements[static_cast<size_t>(open.back())].text += text;
      }
      i = end;
      continue;
    }
    if (s.compare(i, 5, "<?xml") == 0) {
      if (i != 0) return fail("XML declaration not at the start");
      const size_t end = s.find("?>", i);
      if (end == std::string::npos) return fail("unterminated declaration");
      i = end + 2;
      continue;
    }
    if (s.compare(i, 4, "<!--") == 0) {
      const size_t end = s.find("-->", i);
      if (end == std::string::npos) return fail("unterminated comment");
      i = end + 3;
      continue;
    }
    if (s.compare(i, 2, "</") == 0) {
      const size_t end = s.find('>', i);
      if (end == std::string::npos) return fail("unterminated end tag");
      const std::string name = s.substr(i + 2, end - i - 2);
      if (open.empty() || doc.elements[static_cast<size_t>(open.back())].name != name) {
        return fail("end tag </" + name + "> does not match");
      }
      open.pop_back();
      i = end + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && is_name_char(s[j])) ++j;
    XmlElement element;
    element.name = s.substr(i + 1, j - i - 1);
    if (element.name.empty()) return fail("'<' without a tag name");
    if (open.empty() && root_seen) return fail("a second root element");
    root_seen = true;
    element.parent = open.empty() ? -1 : open.back();
    bool self_closing = false;
    for (;;) {
      const size_t before_space = j;
      while (j < s.size() && std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      if (j >= s.size()) return fail("unterminated start tag");
      if (s[j] == '>') {
        ++j;
        break;
      }
      if (s.compare(j, 2, "/>") == 0) {
        j += 2;
        self_closing = true;
        break;
      }
      if (j == before_space) return fail("attributes not separated by a space");
      const size_t name_start = j;
      while (j < s.size() && is_name_char(s[j])) ++j;
      const std::string attribute = s.substr(name_start, j - name_start);
      if (attribute.empty() || j >= s.size() || s[j] != '=') return fail("bad attribute");
      ++j;
      if (j >= s.size() || (s[j] != '"' && s[j] != '\'')) return fail("unquoted attribute");
      const size_t close = s.find(s[j], j + 1);
      if (close == std::string::npos) return fail("unterminated attribute value");
      std::string value;
      if (!resolve_entities(std::string_view(s).substr(j + 1, close - j - 1), value)) {
        return fail("bad attribute value");
      }
      if (!element.attributes.emplace(attribute, value).second) {
        return fail("duplicate attribute " + attribute);
      }
      j = close + 1;
    }
    doc.elements.push_back(element);
    if (!self_closing) open.push_back(static_cast<int>(doc.elements.size() - 1));
    i = j;
  }
  if (!open.empty()) {
    return fail("unclosed <" + doc.elements[static_cast<size_t>(open.back())].name + ">");
  }
  if (!root_seen) return fail("no root element");
  return doc;
}

std::string attribute(const XmlElement& e, const std::string& key) {
  const auto it = e.attributes.find(key);
  return it == e.attributes.end() ? std::string() : it->second;
}

// The value of `key` on the nearest ancestor (or the element itself) that has it.
std::string inherited(const XmlDocument& doc, int i, const std::string& key) {
  for (; i >= 0; i = doc.elements[static_cast<size_t>(i)].parent) {
    const std::string v = attribute(doc.elements[static_cast<size_t>(i)], key);
    if (!v.empty()) return v;
  }
  return "";
}

bool has_panel(const XmlDocument& doc, const std::string& panel) {
  return std::any_of(doc.elements.begin(), doc.elements.end(), [&](const XmlElement& e) {
    return attribute(e, "data-panel") == panel;
  });
}

// The elements of `panel` whose `key` attribute is `value`.
std::vector<const XmlElement*> find_in_panel(const XmlDocument& doc, const std::string& panel,
                                             const std::string& key, const std::string& value) {
  std::vector<const XmlElement*> found;
  for (size_t i = 0; i < doc.elements.size(); ++i) {
    if (attribute(doc.elements[i], key) == value &&
        inherited(doc, static_cast<int>(i), "data-panel") == panel) {
      found.push_back(&doc.elements[i]);
    }
  }
  return found;
}

std::vector<const XmlElement*> find_named(const XmlDocument& doc, const std::string& panel,
                                          const std::string& element_name) {
  std::vector<const XmlElement*> found;
  for (size_t i = 0; i < doc.elements.size(); ++i) {
    if (doc.elements[i].name == element_name &&
        inherited(doc, static_cast<int>(i), "data-panel") == panel) {
      found.push_back(&doc.elements[i]);
    }
  }
  return found;
}

std::vector<std::string> legend_labels(const XmlDocument& doc, const std::string& panel) {
  std::vector<std::string> labels;
  for (size_t i = 0; i < doc.elements.size(); ++i) {
    const int index = static_cast<int>(i);
    if (doc.elements[i].name == "text" && inherited(doc, index, "class") == "legend" &&
        inherited(doc, index, "data-panel") == panel) {
      labels.push_back(doc.elements[i].text);
    }
  }
  return labels;
}

struct Pt {
  double x = 0;
  double y = 0;
};

std::vector<Pt> polyline_points(const XmlElement& e) {
  std::vector<Pt> points;
  std::istringstream in(attribute(e, "points"));
  std::string pair;
  while (in >> pair) {
    const size_t comma = pair.find(',');
    points.push_back(Pt{std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1))});
  }
  return points;
}

size_t marker_count(const XmlElement& e) {
  const std::string d = attribute(e, "d");
  return static_cast<size_t>(std::count(d.begin(), d.end(), 'M'));
}

// The one polyline of a series in a panel (fails the test if there is not exactly one).
std::vector<Pt> series_points(const XmlDocument& doc, const std::string& panel,
                              const std::string& label) {
  const auto found = find_in_panel(doc, panel, "data-series", label);
  EXPECT_EQ(found.size(), 1u) << panel << " / " << label;
  if (found.size() != 1 || found[0]->name != "polyline") {
    ADD_FAILURE() << panel << " / " << label << " is not one polyline";
    return {};
  }
  return polyline_points(*found[0]);
}

struct Rect {
  double x = 0, y = 0, width = 0, height = 0;
};

Rect plot_area(const XmlDocument& doc, const std::string& panel) {
  const auto found = find_in_panel(doc, panel, "class", "plot-area");
  EXPECT_EQ(found.size(), 1u) << panel;
  if (found.empty()) return {};
  const XmlElement& e = *found[0];
  return Rect{std::stod(attribute(e, "x")), std::stod(attribute(e, "y")),
              std::stod(attribute(e, "width")), std::stod(attribute(e, "height"))};
}

XmlDocument parse_checked(const std::string& svg) {
  XmlDocument doc = parse_xml(svg);
  EXPECT_EQ(doc.error, "") << svg.substr(0, 2000);
  return doc;
}

std::optional<std::string> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return dir + "/" + name;
  }
  return std::nullopt;
}

// Sets PATH for one test and puts the old value back.
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& value) {
    const char* old = std::getenv("PATH");
    if (old) old_ = old;
    ::setenv("PATH", value.c_str(), 1);
  }
  ScopedPath(const ScopedPath&) = delete;
  ScopedPath& operator=(const ScopedPath&) = delete;
  ~ScopedPath() {
    if (old_) {
      ::setenv("PATH", old_->c_str(), 1);
    } else {
      ::unsetenv("PATH");
    }
  }

 private:
  std::optional<std::string> old_;
};

// --- read_metrics -------------------------------------------------------------------------------

using MetricsReadTest = TempDirTest;

TEST_F(MetricsReadTest, ReadsKnownValues) {
  const std::string file = write("run-7/metrics.jsonl", sample_run(true));
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->path, file);
  EXPECT_EQ(m->run_name, "run-7");
  EXPECT_TRUE(m->warnings.empty());

  ASSERT_EQ(m->steps.size(), 3u);
  EXPECT_EQ(m->steps[0].step, 0);
  EXPECT_EQ(m->steps[1].step, 50);
  EXPECT_EQ(m->steps[2].step, 100);
  EXPECT_EQ(m->steps[2].epoch, 1);
  EXPECT_EQ(m->steps[0].loss, 2.5);
  EXPECT_EQ(m->steps[1].loss, 1.5);
  EXPECT_EQ(m->steps[2].loss, 0.5);
  EXPECT_EQ(m->steps[2].lr, 0.0015);
  EXPECT_EQ(m->steps[1].images_per_s, 3950.0);
  EXPECT_EQ(m->steps[1].time_s, 2.1);
  EXPECT_EQ(m->steps[1].grad_norm, 4.5);
  EXPECT_FALSE(m->steps[0].grad_norm.has_value());
  EXPECT_EQ(m->steps[2].line, 4);

  ASSERT_EQ(m->epochs.size(), 2u);
  const EpochRecord& e0 = m->epochs[0];
  EXPECT_EQ(e0.epoch, 0);
  EXPECT_EQ(e0.step, 50);
  EXPECT_EQ(e0.line, 3);
  EXPECT_EQ(e0.train_loss, 1.7);
  EXPECT_EQ(e0.train_acc, 0.61);
  EXPECT_EQ(e0.val_loss, 1.4);
  EXPECT_EQ(e0.val_acc, 0.66);
  EXPECT_EQ(e0.test_loss, 1.45);
  EXPECT_EQ(e0.test_acc, 0.65);
  EXPECT_EQ(e0.lr, 0.002);
  EXPECT_EQ(e0.time_s, 2.2);
  // File order, not sorted order.
  const std::vector<std::string> names = {"conv1.weight", "conv2.weight", "fc.weight", "fc.bias"};
  const std::vector<double> norms = {3.25, 7.5, 2.0, 0.25};
  ASSERT_EQ(e0.weight_norm.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(e0.weight_norm[i].name, names[i]);
    EXPECT_EQ(e0.weight_norm[i].value, norms[i]);
  }
  ASSERT_EQ(e0.near_zero_fraction.size(), 4u);
  EXPECT_EQ(e0.near_zero_fraction[2].name, "fc.weight");
  EXPECT_EQ(e0.near_zero_fraction[2].value, 0.1);
  // null is absent.
  EXPECT_FALSE(m->epochs[1].test_loss.has_value());
  EXPECT_EQ(m->epochs[1].test_acc, 0.81);
  EXPECT_EQ(m->epochs[1].weight_norm[1].value, 8.0);
}

TEST_F(MetricsReadTest, RunDirectoryResolvesToItsMetricsFile) {
  write("run-7/metrics.jsonl", sample_run(false));
  Expected<RunMetrics> m = read_metrics(path("run-7"));
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->path, path("run-7/metrics.jsonl"));
  EXPECT_EQ(m->run_name, "run-7");
  EXPECT_EQ(m->steps.size(), 3u);
  EXPECT_TRUE(m->epochs[0].near_zero_fraction.empty());
  EXPECT_EQ(read_metrics(path("other.jsonl")).ok(), false);
}

TEST_F(MetricsReadTest, MalformedLineNamesFileAndLine) {
  const std::string file = write("metrics.jsonl", step_line(0, 0, "2.5", "0.1") + "\n" +
                                                      step_line(1, 0, "2.4", "0.1") + "\n" +
                                                      R"({"kind":"step","step":2,"loss":})" +
                                                      "\n" + step_line(3, 0, "2.2", "0.1") +
                                                      "\n");
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::kDataError);
  EXPECT_EQ(m.error().message().rfind(file + ":3: malformed JSON", 0), 0u) << m.error().message();
}

TEST_F(MetricsReadTest, WrongFieldTypesNameFileLineAndField) {
  const std::string good = step_line(0, 0, "2.5", "0.1") + "\n";
  const struct {
    std::string line;
    std::string field;
  } cases[] = {
      {R"({"kind":"step","step":1,"loss":"low"})", "\"loss\""},
      {R"({"kind":"step","step":-1})", "\"step\""},
      {R"({"kind":"step","step":1.5})", "\"step\""},
      {R"({"kind":"step","loss":1})", "\"step\""},
      {R"({"kind":"epoch","step":10})", "\"epoch\""},
      {R"({"kind":"epoch","epoch":0,"step":10,"val_acc":[0.5]})", "\"val_acc\""},
      {R"({"kind":"epoch","epoch":0,"step":10,"weight_norm":[1,2]})", "\"weight_norm\""},
      {R"({"kind":"epoch","epoch":0,"step":10,"weight_norm":{"conv1.weight":"big"}})",
       "\"conv1.weight\""},
      {R"({"kind":7,"step":1})", "\"kind\""},
      {R"({"step":1,"loss":0.5})", "\"kind\""},
      {R"([1,2,3])", "JSON object"},
  };
  for (const auto& c : cases) {
    const std::string file = write("metrics.jsonl", good + c.line + "\n");
    Expected<RunMetrics> m = read_metrics(file);
    ASSERT_FALSE(m.ok()) << c.line;
    EXPECT_EQ(m.error().code(), ErrorCode::kDataError) << c.line;
    EXPECT_EQ(m.error().message().rfind(file + ":2: ", 0), 0u) << m.error().message();
    EXPECT_TRUE(contains(m.error().message(), c.field)) << m.error().message();
  }
}

TEST_F(MetricsReadTest, TruncatedLastLineIsAWarning) {
  const std::string complete = sample_run(false);
  const std::string file =
      write("metrics.jsonl", complete + R"({"kind":"step","step":150,"epoch":1,"lo)");
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->steps.size(), 3u);
  EXPECT_EQ(m->epochs.size(), 2u);
  ASSERT_EQ(m->warnings.size(), 1u);
  EXPECT_TRUE(contains(m->warnings[0], file + ":6:")) << m->warnings[0];
  EXPECT_TRUE(contains(m->warnings[0], "incomplete")) << m->warnings[0];
}

TEST_F(MetricsReadTest, MalformedLastLineWithNewlineIsAnError) {
  const std::string file =
      write("metrics.jsonl", sample_run(false) + R"({"kind":"step","step":150,"lo)" + "\n");
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(contains(m.error().message(), file + ":6:")) << m.error().message();
}

TEST_F(MetricsReadTest, CompleteLastLineWithoutNewlineIsRead) {
  const std::string file = write("metrics.jsonl", step_line(0, 0, "2.5", "0.1") + "\n" +
                                                      step_line(5, 0, "2.0", "0.1"));
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_EQ(m->steps.size(), 2u);
  EXPECT_TRUE(m->warnings.empty());
}

TEST_F(MetricsReadTest, BlankLinesCrlfAndUnknownKinds) {
  const std::string file =
      write("metrics.jsonl", "\n  \r\n" + step_line(0, 0, "2.5", "0.1") + "\r\n\n" +
                                 R"({"kind":"checkpoint","step":0,"path":"a.safetensors"})" +
                                 "\n" + step_line(7, 0, "2.0", "0.1") + "\n\n");
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  ASSERT_EQ(m->steps.size(), 2u);
  EXPECT_EQ(m->steps[0].line, 3);
  EXPECT_EQ(m->steps[1].line, 6);
  ASSERT_EQ(m->warnings.size(), 1u);
  EXPECT_TRUE(contains(m->warnings[0], "\"checkpoint\"")) << m->warnings[0];
  EXPECT_TRUE(contains(m->warnings[0], file + ":5")) << m->warnings[0];
}

// wren train --on-nonfinite skip-step writes skipped_step records: read, not warned about.
TEST_F(MetricsReadTest, SkippedStepRecordsAreRead) {
  const std::string file =
      write("metrics.jsonl",
            step_line(1, 0, "2.5", "0.1") + "\n" +
                R"j({"kind":"skipped_step","step":1,"epoch":0,"reason":"non-finite gradient",)j"
                R"j("where":"'fc2' (linear)"})j" +
                "\n" + step_line(3, 0, "2.0", "0.1") + "\n");
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  EXPECT_TRUE(m->warnings.empty());
  ASSERT_EQ(m->steps.size(), 2u);
  ASSERT_EQ(m->skipped_steps.size(), 1u);
  EXPECT_EQ(m->skipped_steps[0].step, 1);
  EXPECT_EQ(m->skipped_steps[0].epoch, 0);
  EXPECT_EQ(m->skipped_steps[0].reason, "non-finite gradient");
  EXPECT_EQ(m->skipped_steps[0].where, "'fc2' (linear)");
  EXPECT_EQ(m->skipped_steps[0].line, 2);
  // Like every record, it needs a step.
  const std::string bad = write("bad.jsonl", R"({"kind":"skipped_step","epoch":0})"
                                             "\n");
  EXPECT_FALSE(read_metrics(bad).ok());
}

TEST_F(MetricsReadTest, NonFiniteValuesAsStringsOrBareTokens) {
  const std::string file = write(
      "metrics.jsonl",
      R"({"kind":"step","step":0,"loss":"NaN","lr":"Infinity","note":"NaN Infinity"})" "\n"
      R"({"kind":"step","step":1,"loss":NaN,"lr":-Infinity})" "\n"
      R"({"kind":"step","step":2,"loss":Infinity,"lr":"-Infinity"})" "\n");
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  ASSERT_EQ(m->steps.size(), 3u);
  EXPECT_TRUE(std::isnan(*m->steps[0].loss));
  EXPECT_EQ(*m->steps[0].lr, INFINITY);
  EXPECT_TRUE(std::isnan(*m->steps[1].loss));
  EXPECT_EQ(*m->steps[1].lr, -INFINITY);
  EXPECT_EQ(*m->steps[2].loss, INFINITY);
  EXPECT_EQ(*m->steps[2].lr, -INFINITY);
}

TEST_F(MetricsReadTest, MissingFileIsNotFound) {
  Expected<RunMetrics> m = read_metrics(path("nope/metrics.jsonl"));
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(contains(m.error().message(), path("nope/metrics.jsonl")));
}

// --- Ticks --------------------------------------------------------------------------------------

TEST(PlotTicksTest, ZeroToOne) {
  const AxisTicks t = nice_linear_ticks(0.0, 1.0);
  EXPECT_EQ(t.values, (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  EXPECT_EQ(t.labels, (std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8", "1"}));
  EXPECT_EQ(t.lo, 0.0);
  EXPECT_EQ(t.hi, 1.0);
  EXPECT_FALSE(t.log);
}

TEST(PlotTicksTest, UnevenRangeGetsEnclosingNiceTicks) {
  const AxisTicks t = nice_linear_ticks(0.013, 0.87);
  EXPECT_EQ(t.labels, (std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8", "1"}));
  EXPECT_LE(t.lo, 0.013);
  EXPECT_GE(t.hi, 0.87);
}

TEST(PlotTicksTest, KnownRanges) {
  EXPECT_EQ(nice_linear_ticks(0, 1500).labels,
            (std::vector<std::string>{"0", "500", "1000", "1500"}));
  EXPECT_EQ(nice_linear_ticks(0, 7, 6, true).labels,
            (std::vector<std::string>{"0", "2", "4", "6", "8"}));
  EXPECT_EQ(nice_linear_ticks(0, 3, 6, true).labels,
            (std::vector<std::string>{"0", "1", "2", "3"}));  // never 0.5 steps
  EXPECT_EQ(nice_linear_ticks(-1.2, 0.3).labels,
            (std::vector<std::string>{"-1.5", "-1", "-0.5", "0", "0.5"}));
  EXPECT_EQ(nice_linear_ticks(0.0, 1e-4).labels,
            (std::vector<std::string>{"0", "2e-5", "4e-5", "6e-5", "8e-5", "1e-4"}));
  EXPECT_EQ(nice_linear_ticks(0.0, 2.5e6).labels,
            (std::vector<std::string>{"0", "5e5", "1e6", "1.5e6", "2e6", "2.5e6"}));
  EXPECT_EQ(nice_linear_ticks(0.9, 0.935).labels,
            (std::vector<std::string>{"0.9", "0.91", "0.92", "0.93", "0.94"}));
}

TEST(PlotTicksTest, ZeroWidthRangesAreWidened) {
  const AxisTicks around_zero = nice_linear_ticks(0.0, 0.0);
  EXPECT_EQ(around_zero.lo, -1.0);
  EXPECT_EQ(around_zero.hi, 1.0);
  const AxisTicks constant = nice_linear_ticks(0.8, 0.8);
  EXPECT_LT(constant.lo, 0.8);
  EXPECT_GT(constant.hi, 0.8);
  EXPECT_GE(constant.values.size(), 3u);
  const AxisTicks one_step = nice_linear_ticks(100, 100, 6, true);
  EXPECT_LT(one_step.lo, 100);
  EXPECT_GT(one_step.hi, 100);
  const AxisTicks garbage = nice_linear_ticks(NAN, INFINITY);
  EXPECT_EQ(garbage.lo, 0.0);
  EXPECT_EQ(garbage.hi, 1.0);
}

TEST(PlotTicksTest, LogTicks) {
  const AxisTicks two_decades = nice_log_ticks(0.01, 1.0);
  EXPECT_TRUE(two_decades.log);
  EXPECT_EQ(two_decades.labels,
            (std::vector<std::string>{"0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1"}));
  EXPECT_EQ(two_decades.lo, 0.01);
  EXPECT_EQ(two_decades.hi, 1.0);
  EXPECT_EQ(nice_log_ticks(1e-3, 1e5).labels,
            (std::vector<std::string>{"1e-3", "1e-1", "1e1", "1e3", "1e5"}));
  const AxisTicks constant = nice_log_ticks(0.5, 0.5);
  EXPECT_EQ(constant.lo, 0.1);
  EXPECT_EQ(constant.hi, 1.0);
}

TEST(PlotTicksTest, FormatTick) {
  EXPECT_EQ(format_tick(0.6000000000000001, 0.2), "0.6");
  EXPECT_EQ(format_tick(-0.0, 0.1), "0");
  EXPECT_EQ(format_tick(1500, 500), "1500");
  EXPECT_EQ(format_tick(0.0005, 0.0005), "0.0005");
  EXPECT_EQ(format_tick(1.2e6, 2e5), "1.2e6");
  EXPECT_EQ(format_tick(-3e-5, 1e-5), "-3e-5");
}

// --- The SVG ------------------------------------------------------------------------------------

using PlotSvgTest = TempDirTest;

TEST_F(PlotSvgTest, OneElementPerSeriesWithTheRightNumberOfPoints) {
  const std::string file = write("run-7/metrics.jsonl", sample_run(true));
  Expected<RunMetrics> m = read_metrics(file);
  ASSERT_TRUE(m.ok()) << m.error().message();
  const std::string svg = render_svg(*m, PlotOptions{});
  const XmlDocument doc = parse_checked(svg);
  ASSERT_EQ(doc.error, "");
  EXPECT_EQ(doc.elements[0].name, "svg");
  EXPECT_TRUE(contains(svg, "Wren run: run-7"));
  // Self-contained: nothing loaded from elsewhere.
  EXPECT_FALSE(contains(svg, "<script"));
  EXPECT_FALSE(contains(svg, "href"));
  EXPECT_FALSE(contains(svg, "@import"));

  EXPECT_EQ(series_points(doc, "loss", "loss per step").size(), 3u);
  EXPECT_EQ(series_points(doc, "loss", "smoothed (EMA, α=0.1)").size(), 3u);
  for (const char* label : {"train (epoch)", "val (epoch)"}) {
    const auto markers = find_in_panel(doc, "loss", "data-series", label);
    ASSERT_EQ(markers.size(), 1u) << label;
    EXPECT_EQ(marker_count(*markers[0]), 2u) << label;
  }
  // The second epoch has test_loss null: one marker.
  const auto test_markers = find_in_panel(doc, "loss", "data-series", "test (epoch)");
  ASSERT_EQ(test_markers.size(), 1u);
  EXPECT_EQ(marker_count(*test_markers[0]), 1u);

  for (const char* label : {"train", "val", "test"}) {
    EXPECT_EQ(series_points(doc, "accuracy", label).size(), 2u) << label;
  }
  EXPECT_EQ(series_points(doc, "lr", "lr per step").size(), 3u);

  const std::vector<std::string> layers = {"conv1.weight", "conv2.weight", "fc.weight",
                                           "fc.bias"};
  for (const char* panel : {"weight-norm", "near-zero"}) {
    EXPECT_EQ(find_named(doc, panel, "polyline").size(), layers.size()) << panel;
    for (const std::string& layer : layers) {
      EXPECT_EQ(series_points(doc, panel, layer).size(), 2u) << panel << " " << layer;
    }
    EXPECT_EQ(legend_labels(doc, panel), layers) << panel;
  }
  EXPECT_EQ(legend_labels(doc, "loss"),
            (std::vector<std::string>{"loss per step", "smoothed (EMA, α=0.1)", "train (epoch)",
                                      "val (epoch)", "test (epoch)"}));
}

TEST_F(PlotSvgTest, NearZeroPanelOnlyWhenTheRunHasIt) {
  Expected<RunMetrics> without = read_metrics(write("a/metrics.jsonl", sample_run(false)));
  Expected<RunMetrics> with = read_metrics(write("b/metrics.jsonl", sample_run(true)));
  ASSERT_TRUE(without.ok() && with.ok());
  const XmlDocument doc_without = parse_checked(render_svg(*without, PlotOptions{}));
  const XmlDocument doc_with = parse_checked(render_svg(*with, PlotOptions{}));
  for (const char* panel : {"loss", "accuracy", "lr", "weight-norm"}) {
    EXPECT_TRUE(has_panel(doc_without, panel)) << panel;
    EXPECT_TRUE(has_panel(doc_with, panel)) << panel;
  }
  EXPECT_FALSE(has_panel(doc_without, "near-zero"));
  EXPECT_TRUE(has_panel(doc_with, "near-zero"));
}

// Steps 0..100 and losses 0.5..2.5 are nice numbers, so the axes end exactly at the data: the
// smallest loss sits on the bottom edge, the largest on the top edge, and everything in between
// is linear.
TEST_F(PlotSvgTest, CoordinatesMapLinearly) {
  const std::vector<std::pair<int, double>> data = {
      {0, 2.5}, {25, 2.0}, {50, 1.0}, {75, 0.5}, {100, 1.5}};
  std::vector<StepRecord> steps;
  for (const auto& [step, loss] : data) steps.push_back(StepRecord{.step = step, .loss = loss});
  PlotOptions options;
  options.ema_alpha = 0.5;
  const XmlDocument doc = parse_checked(render_svg(metrics_of(steps), options));
  const Rect area = plot_area(doc, "loss");
  ASSERT_GT(area.width, 0);
  ASSERT_GT(area.height, 0);
  const auto expected_x = [&](double step) { return area.x + step / 100.0 * area.width; };
  const auto expected_y = [&](double loss) {
    return area.y + (2.5 - loss) / (2.5 - 0.5) * area.height;
  };
  const std::vector<Pt> raw = series_points(doc, "loss", "loss per step");
  ASSERT_EQ(raw.size(), data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    EXPECT_NEAR(raw[i].x, expected_x(data[i].first), 0.006) << i;
    EXPECT_NEAR(raw[i].y, expected_y(data[i].second), 0.006) << i;
  }
  EXPECT_NEAR(raw[3].y, area.y + area.height, 0.006);  // the minimum: bottom
  EXPECT_NEAR(raw[0].y, area.y, 0.006);                // the maximum: top
  EXPECT_NEAR(raw[0].x, area.x, 0.006);
  EXPECT_NEAR(raw[4].x, area.x + area.width, 0.006);

  // EMA with α = 0.5, s0 = x0: 2.5, 2.25, 1.625, 1.0625, 1.28125.
  const std::vector<double> ema = {2.5, 2.25, 1.625, 1.0625, 1.28125};
  const std::vector<Pt> smooth = series_points(doc, "loss", "smoothed (EMA, α=0.5)");
  ASSERT_EQ(smooth.size(), ema.size());
  for (size_t i = 0; i < ema.size(); ++i) EXPECT_NEAR(smooth[i].y, expected_y(ema[i]), 0.006);
}

TEST_F(PlotSvgTest, LogScaleLoss) {
  std::vector<StepRecord> steps = {StepRecord{.step = 0, .loss = 1.0},
                                   StepRecord{.step = 50, .loss = 0.1},
                                   StepRecord{.step = 75, .loss = 0.0},
                                   StepRecord{.step = 100, .loss = 0.01}};
  PlotOptions options;
  options.log_loss = true;
  const std::string svg = render_svg(metrics_of(steps), options);
  const XmlDocument doc = parse_checked(svg);
  const Rect area = plot_area(doc, "loss");
  const std::vector<Pt> raw = series_points(doc, "loss", "loss per step");
  ASSERT_EQ(raw.size(), 3u);  // the zero cannot be shown
  EXPECT_NEAR(raw[0].y, area.y, 0.006);
  EXPECT_NEAR(raw[1].y, area.y + area.height / 2, 0.006);
  EXPECT_NEAR(raw[2].y, area.y + area.height, 0.006);
  EXPECT_TRUE(contains(svg, "left out 1 value(s) of 0 or less")) << "the left-out zero is noted";
  EXPECT_TRUE(contains(svg, "loss (log)"));
}

TEST_F(PlotSvgTest, NonFiniteValuesAreLeftOutAndNoted) {
  std::vector<StepRecord> steps;
  for (int i = 0; i < 5; ++i) {
    steps.push_back(StepRecord{.step = 10 * i, .loss = 1.0 / (i + 1), .lr = 0.1});
  }
  steps[2].loss = NAN;
  steps[3].lr = INFINITY;
  const std::string svg = render_svg(metrics_of(steps), PlotOptions{});
  const XmlDocument doc = parse_checked(svg);
  EXPECT_EQ(series_points(doc, "loss", "loss per step").size(), 4u);
  EXPECT_EQ(series_points(doc, "lr", "lr per step").size(), 4u);
  EXPECT_TRUE(contains(svg, "Loss: loss per step: left out 1 NaN/Inf value(s)")) << svg;
  EXPECT_TRUE(contains(svg, "Learning rate: lr per step: left out 1 NaN/Inf value(s)"));
  for (const XmlElement& e : doc.elements) {
    for (const auto& [key, value] : e.attributes) {
      if (key == "points" || key == "d" || key == "x" || key == "y") {
        EXPECT_EQ(value.find_first_of("nN"), std::string::npos) << key << "=" << value;
      }
    }
  }
}

TEST_F(PlotSvgTest, EmptyMetricsSayNoData) {
  RunMetrics empty = metrics_of({});
  empty.warnings.push_back("test/metrics.jsonl:1: skipped an incomplete last line");
  const std::string svg = render_svg(empty, PlotOptions{});
  const XmlDocument doc = parse_checked(svg);
  EXPECT_TRUE(contains(svg, "no data"));
  EXPECT_TRUE(contains(svg, "incomplete last line"));
  EXPECT_FALSE(contains(svg, "<polyline"));
}

TEST_F(PlotSvgTest, OnePointAndConstantValues) {
  EpochRecord epoch{.epoch = 0, .step = 0, .train_acc = 0.5,
                    .weight_norm = {LayerValue{.name = "w", .value = 2.0}}};
  const std::string one = render_svg(metrics_of({StepRecord{.step = 0, .loss = 1.0, .lr = 0.1}},
                                                {epoch}),
                                     PlotOptions{});
  const XmlDocument one_doc = parse_checked(one);
  const Rect area = plot_area(one_doc, "loss");
  const std::vector<Pt> point = series_points(one_doc, "loss", "loss per step");
  ASSERT_EQ(point.size(), 1u);
  // Visible: a marker goes with the lone point, and it is inside the plot area.
  EXPECT_EQ(find_in_panel(one_doc, "loss", "data-markers", "loss per step").size(), 1u);
  EXPECT_GT(point[0].x, area.x);
  EXPECT_LT(point[0].x, area.x + area.width);
  EXPECT_GT(point[0].y, area.y);
  EXPECT_LT(point[0].y, area.y + area.height);
  EXPECT_EQ(series_points(one_doc, "weight-norm", "w").size(), 1u);

  std::vector<StepRecord> flat;
  for (int i = 0; i < 4; ++i) flat.push_back(StepRecord{.step = i, .loss = 0.7, .lr = 0.0});
  const XmlDocument flat_doc = parse_checked(render_svg(metrics_of(flat), PlotOptions{}));
  const Rect flat_area = plot_area(flat_doc, "loss");
  const std::vector<Pt> line = series_points(flat_doc, "loss", "loss per step");
  ASSERT_EQ(line.size(), 4u);
  for (const Pt& p : line) {
    EXPECT_EQ(p.y, line[0].y);
    EXPECT_GT(p.y, flat_area.y);
    EXPECT_LT(p.y, flat_area.y + flat_area.height);
  }
  EXPECT_EQ(series_points(flat_doc, "lr", "lr per step").size(), 4u);  // all zero
  // Panels without data say so instead of drawing empty axes.
  EXPECT_EQ(find_in_panel(flat_doc, "accuracy", "class", "no-data").size(), 1u);
}

TEST_F(PlotSvgTest, NamesAreEscaped) {
  const std::string name = "a<b>&\"c'";
  EpochRecord epoch{.epoch = 0, .step = 10, .weight_norm = {LayerValue{.name = name, .value = 1}}};
  PlotOptions options;
  options.title = "run <1> & co";
  const std::string svg = render_svg(metrics_of({}, {epoch}), options);
  const XmlDocument doc = parse_checked(svg);
  EXPECT_EQ(legend_labels(doc, "weight-norm"), (std::vector<std::string>{name}));
  EXPECT_EQ(series_points(doc, "weight-norm", name).size(), 1u);
}

TEST_F(PlotSvgTest, ResumedRunPlotsTheLaterRecordOfARepeatedStep) {
  const std::vector<StepRecord> steps = {
      StepRecord{.step = 0, .loss = 2.0},  StepRecord{.step = 50, .loss = 1.0},
      StepRecord{.step = 100, .loss = 9.0}, StepRecord{.step = 100, .loss = 0.5},
      StepRecord{.step = 150, .loss = 0.25}};
  const std::string svg = render_svg(metrics_of(steps), PlotOptions{});
  const XmlDocument doc = parse_checked(svg);
  const std::vector<Pt> raw = series_points(doc, "loss", "loss per step");
  ASSERT_EQ(raw.size(), 4u);
  EXPECT_TRUE(contains(svg, "1 record(s) repeat the step"));
  // 9.0 was superseded, so the axis tops out at 2: the first point is on the top edge.
  EXPECT_NEAR(raw[0].y, plot_area(doc, "loss").y, 0.006);
}

TEST_F(PlotSvgTest, ManyLayersGetDistinctStyles) {
  EpochRecord epoch{.epoch = 0, .step = 10};
  for (int i = 0; i < 20; ++i) {
    epoch.weight_norm.push_back(LayerValue{.name = "layer" + std::to_string(i), .value = 1.0 * i});
  }
  const XmlDocument doc = parse_checked(render_svg(metrics_of({}, {epoch}), PlotOptions{}));
  std::map<std::string, int> styles;
  for (const XmlElement* e : find_named(doc, "weight-norm", "polyline")) {
    ++styles[attribute(*e, "stroke") + "/" + attribute(*e, "stroke-dasharray")];
  }
  EXPECT_EQ(styles.size(), 20u);
  EXPECT_EQ(legend_labels(doc, "weight-norm").size(), 20u);
}

TEST_F(PlotSvgTest, XmllintAcceptsTheSvg) {
  const std::optional<std::string> xmllint = find_program("xmllint");
  if (!xmllint) GTEST_SKIP() << "xmllint is not on PATH";
  Expected<RunMetrics> m = read_metrics(write("run/metrics.jsonl", sample_run(true)));
  ASSERT_TRUE(m.ok());
  for (bool log_loss : {false, true}) {
    PlotOptions options;
    options.log_loss = log_loss;
    const std::string svg = write("plot.svg", render_svg(*m, options));
    const std::string command = *xmllint + " --noout '" + svg + "'";
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
  }
  const std::string empty = write("empty.svg", render_svg(metrics_of({}), PlotOptions{}));
  EXPECT_EQ(std::system((*xmllint + " --noout '" + empty + "'").c_str()), 0);
}

// The checker itself must reject what it is there to catch.
TEST(PlotXmlCheckerTest, RejectsMalformedXml) {
  EXPECT_EQ(parse_xml("<svg><g></g></svg>").error, "");
  EXPECT_NE(parse_xml("<svg><g></svg>").error, "");
  EXPECT_NE(parse_xml("<svg><g></g>").error, "");
  EXPECT_NE(parse_xml("<svg a=\"1\" a=\"2\"/>").error, "");
  EXPECT_NE(parse_xml("<svg a=1/>").error, "");
  EXPECT_NE(parse_xml("<svg>a & b</svg>").error, "");
  EXPECT_NE(parse_xml("<svg/><svg/>").error, "");
  EXPECT_NE(parse_xml("<svg a=\"<\"/>").error, "");
}

// --- write_plot and PNG -------------------------------------------------------------------------

using PlotWriteTest = TempDirTest;

TEST_F(PlotWriteTest, WritesTheSvgFromARunDirectory) {
  const std::string file = write("run/metrics.jsonl", sample_run(true) + R"({"kind":"st)");
  std::vector<std::string> warnings;
  const Status s = write_plot(path("run"), path("run/plot.svg"), PlotOptions{}, &warnings);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(entries(dir_ / "run"), (std::vector<std::string>{"metrics.jsonl", "plot.svg"}));
  const std::string svg = read_file(path("run/plot.svg"));
  EXPECT_EQ(parse_xml(svg).error, "");
  EXPECT_TRUE(contains(svg, "incomplete last line"));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_TRUE(contains(warnings[0], file + ":6:"));
}

TEST_F(PlotWriteTest, ErrorsLeaveNoFile) {
  PlotOptions bad;
  bad.ema_alpha = 0.0;
  write("run/metrics.jsonl", sample_run(false));
  Status s = write_plot(path("run"), path("out.svg"), bad);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(contains(s.message(), "ema_alpha"));

  s = write_plot(path("missing"), path("out.svg"), PlotOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);

  write("broken/metrics.jsonl", "{\n" + sample_run(false));
  s = write_plot(path("broken"), path("out.svg"), PlotOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(contains(s.message(), path("broken/metrics.jsonl") + ":1:")) << s.message();

  s = write_plot(path("run"), path("no/such/dir/out.svg"), PlotOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kIoError);
  EXPECT_FALSE(fs::exists(path("out.svg")));
}

TEST(PlotOptionsTest, RangesAreChecked) {
  EXPECT_TRUE(check_plot_options(PlotOptions{}).ok());
  PlotOptions o;
  o.columns = 0;
  EXPECT_FALSE(check_plot_options(o).ok());
  o = PlotOptions{};
  o.plot_width = 10;
  EXPECT_FALSE(check_plot_options(o).ok());
  o = PlotOptions{};
  o.ema_alpha = NAN;
  EXPECT_FALSE(check_plot_options(o).ok());
  o.ema_alpha = 1.0;
  EXPECT_TRUE(check_plot_options(o).ok());
}

using PlotPngTest = TempDirTest;

TEST_F(PlotPngTest, MissingConverterIsUnavailable) {
  fs::create_directories(dir_ / "empty-bin");
  const std::string svg = write("plot.svg", render_svg(metrics_of({}), PlotOptions{}));
  ScopedPath scoped((dir_ / "empty-bin").string());
  Expected<std::string> r = convert_svg_to_png(svg, path("plot.png"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(contains(r.error().message(), "rsvg-convert"));
  EXPECT_TRUE(contains(r.error().message(), "librsvg2-bin"));
  EXPECT_FALSE(fs::exists(path("plot.png")));
}

std::string install_script(const fs::path& dir, const std::string& body) {
  fs::create_directories(dir);
  const fs::path script = dir / "rsvg-convert";
  std::ofstream(script) << "#!/bin/sh\n" << body;
  fs::permissions(script, fs::perms::owner_all);
  return script.string();
}

// File names reach the converter as separate arguments, untouched by any shell.
TEST_F(PlotPngTest, FakeConverterGetsTheFileNamesVerbatim) {
  const std::string args_file = path("args.txt");
  const std::string script =
      install_script(dir_ / "bin", "printf '%s\\n' \"$@\" > '" + args_file + "'\n"
                                   "while [ $# -gt 0 ]; do\n"
                                   "  if [ \"$1\" = --output ]; then out=\"$2\"; fi\n"
                                   "  shift\n"
                                   "done\n"
                                   "printf 'PNG' > \"$out\"\n");
  const std::string odd = "a b;$(touch pwned)'\"";
  const std::string svg = write(odd + "/plot.svg", render_svg(metrics_of({}), PlotOptions{}));
  const std::string png = path(odd + "/plot.png");
  ScopedPath scoped("/nonexistent::" + (dir_ / "bin").string() + ":/usr/bin:/bin");
  Expected<std::string> r = convert_svg_to_png(svg, png);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(*r, script);
  EXPECT_EQ(read_file(png), "PNG");
  const std::string args = read_file(args_file);
  EXPECT_EQ(args.rfind("--format=png\n--output\n" + png + ".tmp.", 0), 0u) << args;
  EXPECT_TRUE(contains(args, "\n" + svg + "\n")) << args;
  EXPECT_EQ(entries(dir_ / odd), (std::vector<std::string>{"plot.png", "plot.svg"}));
  EXPECT_FALSE(fs::exists("pwned"));
  EXPECT_FALSE(fs::exists(dir_ / odd / "pwned"));
}

TEST_F(PlotPngTest, FailingConverterReportsStatusAndOutput) {
  install_script(dir_ / "bin", "echo 'boom: bad svg' >&2\nexit 3\n");
  const std::string svg = write("plot.svg", render_svg(metrics_of({}), PlotOptions{}));
  ScopedPath scoped((dir_ / "bin").string());
  Expected<std::string> r = convert_svg_to_png(svg, path("plot.png"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kIoError);
  EXPECT_TRUE(contains(r.error().message(), "status 3")) << r.error().message();
  EXPECT_TRUE(contains(r.error().message(), "boom: bad svg")) << r.error().message();
  EXPECT_EQ(entries(dir_), (std::vector<std::string>{"bin", "plot.svg"}));
}

TEST_F(PlotPngTest, RealConverterWritesAPng) {
  if (!find_program("rsvg-convert")) GTEST_SKIP() << "rsvg-convert (librsvg2-bin) not on PATH";
  Expected<RunMetrics> m = read_metrics(write("run/metrics.jsonl", sample_run(true)));
  ASSERT_TRUE(m.ok());
  const std::string svg = write("plot.svg", render_svg(*m, PlotOptions{}));
  Expected<std::string> r = convert_svg_to_png(svg, path("plot.png"));
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(read_file(path("plot.png")).substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
}

}  // namespace
}  // namespace wren
