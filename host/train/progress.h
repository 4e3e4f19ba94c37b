// The progress bar of `wren train` on stderr: epoch, step, loss, images/s and ETA. On a
// terminal it redraws one line (at most 10 times a second); otherwise (a log file, CI) it
// prints a plain line every 5% of the run.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace wren {

class Progress {
 public:
  Progress(bool enabled, int64_t total_steps, int64_t start_step)
      : enabled_(enabled),
        tty_(isatty(fileno(stderr)) != 0),
        total_(total_steps),
        start_step_(start_step),
        start_(std::chrono::steady_clock::now()) {}

  void update(int64_t epoch, int64_t total_epochs, int64_t step, double loss,
              double images_per_second) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const int64_t done = step - start_step_;
    const double eta = done > 0 ? elapsed / static_cast<double>(done) *
                                      static_cast<double>(total_ - step)
                                : 0.0;
    // Smooth the instantaneous rate so the display does not flicker.
    rate_ = rate_ == 0.0 ? images_per_second : 0.9 * rate_ + 0.1 * images_per_second;
    char line[256];
    std::snprintf(line, sizeof line,
                  "epoch %lld/%lld  step %lld/%lld  %3.0f%%  loss %.4f  %.0f img/s  ETA %s",
                  static_cast<long long>(epoch + 1), static_cast<long long>(total_epochs),
                  static_cast<long long>(step), static_cast<long long>(total_),
                  100.0 * static_cast<double>(step) / static_cast<double>(total_), loss, rate_,
                  format_duration(eta).c_str());
    if (tty_) {
      if (std::chrono::duration<double>(now - last_draw_).count() < 0.1 && step != total_) return;
      last_draw_ = now;
      std::fprintf(stderr, "\r%s\x1b[K", line);
      drawn_ = true;
    } else {
      const int64_t every = total_ >= 20 ? total_ / 20 : 1;
      if (step % every == 0 || step == total_) std::fprintf(stderr, "%s\n", line);
    }
    std::fflush(stderr);
  }

  // Clears the bar so other output starts on a clean line; resume() lets it draw again.
  void pause() {
    if (tty_ && drawn_) std::fprintf(stderr, "\r\x1b[K");
    drawn_ = false;
  }
  void resume() {}
  void finish() { pause(); }

  static std::string format_duration(double seconds) {
    const auto s = static_cast<long long>(seconds + 0.5);
    char buf[32];
    if (s >= 3600) {
      std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
    } else {
      std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
    }
    return buf;
  }

 private:
  bool enabled_;
  bool tty_;
  int64_t total_;
  int64_t start_step_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
  double rate_ = 0.0;
  bool drawn_ = false;
};

}  // namespace wren
