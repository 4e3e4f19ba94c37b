// `wren plot --png`: the SVG converted by an external rasterizer found on PATH (cli/plot.h).
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "cli/plot.h"
#include "wren/atomic_file.h"

extern char** environ;

namespace wren {
namespace {

std::string os_reason(int err) { return std::system_category().message(err); }

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

// --- PNG ----------------------------------------------------------------------------------------

namespace {

// The first executable regular file named `program` in a PATH directory. Empty entries (the
// current directory, by POSIX) are skipped: a plot command should not run whatever binary
// happens to sit in the directory it was started from.
std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return std::nullopt;
  std::string_view rest(path);
  while (true) {
    const size_t colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    if (!dir.empty()) {
      const std::string candidate = std::string(dir) + "/" + program;
      struct stat info {};
      if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode) &&
          ::access(candidate.c_str(), X_OK) == 0) {
        return candidate;
      }
    }
    if (colon == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(colon + 1);
  }
}

// A relative name starting with '-' would be read as an option.
std::string as_operand(const std::string& path) {
  return !path.empty() && path[0] == '-' ? "./" + path : path;
}

// Runs argv[0] (a full path) and collects its stdout and stderr, up to a few KiB.
Expected<int> run_program(std::vector<std::string> argv, std::string& output) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    const int err = errno;
    return Error(ErrorCode::kIoError, "pipe: " + os_reason(err));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  const int spawn_rc =
      ::posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (spawn_rc != 0) {
    ::close(pipe_fds[0]);
    return Error(ErrorCode::kIoError, "cannot start " + argv[0] + ": " + os_reason(spawn_rc));
  }
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    // Keep reading past the cap: a child blocked on a full pipe would never exit.
    if (output.size() < 4096) output.append(buffer, static_cast<size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      const int err = errno;
      return Error(ErrorCode::kIoError, "waitpid(" + argv[0] + "): " + os_reason(err));
    }
  }
  return status;
}

}  // namespace

Expected<std::string> convert_svg_to_png(const std::string& svg, const std::string& png) {
  if (svg.empty() || png.empty()) return invalid_argument("convert_svg_to_png: empty path");
  const std::optional<std::string> converter = find_on_path("rsvg-convert");
  if (!converter) {
    return Error(ErrorCode::kUnavailable,
                 "cannot convert " + svg + " to PNG: rsvg-convert is not on PATH (it comes with "
                 "the Debian package librsvg2-bin); the SVG itself opens in any web browser");
  }
  if (::access(svg.c_str(), R_OK) != 0) {
    const int err = errno;
    const ErrorCode code = err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIoError;
    return Error(code, svg + ": cannot read SVG: " + os_reason(err));
  }
  // Written beside the destination and renamed, like the SVG, so a reader never sees half a PNG.
  const std::string temp = png + ".tmp." + std::to_string(::getpid()) + ".png";
  std::string output;
  const Expected<int> status = run_program(
      {*converter, "--format=png", "--output", as_operand(temp), as_operand(svg)}, output);
  const auto fail = [&](const std::string& why) -> Error {
    ::unlink(temp.c_str());
    while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
    return Error(ErrorCode::kIoError, "converting " + svg + " to " + png + " with " +
                                          *converter + ": " + why +
                                          (output.empty() ? "" : ": " + output));
  };
  if (!status) return fail(status.error().message());
  if (WIFSIGNALED(*status)) return fail("killed by signal " + std::to_string(WTERMSIG(*status)));
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return fail("exited with status " + std::to_string(WEXITSTATUS(*status)));
  }
  struct stat info {};
  if (::stat(temp.c_str(), &info) != 0 || info.st_size == 0) {
    return fail("it reported success but wrote no output");
  }
  if (::rename(temp.c_str(), png.c_str()) != 0) {
    const int err = errno;
    return fail("rename(" + quoted(temp) + ", " + quoted(png) + "): " + os_reason(err));
  }
  return *converter;
}

}  // namespace wren
