// A per-process scratch directory for the targets whose readers take paths (idx, cifar): on
// tmpfs (/dev/shm) when there is one, so writing the files each iteration costs no disk I/O;
// removed at exit.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace wren::fuzz {

inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    const std::filesystem::path base = std::filesystem::is_directory("/dev/shm", ec)
                                           ? std::filesystem::path("/dev/shm")
                                           : std::filesystem::temp_directory_path();
    const std::filesystem::path d = base / ("wren-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d, ec);
    if (ec) {
      std::fprintf(stderr, "fuzz harness: cannot create %s: %s\n", d.c_str(),
                   ec.message().c_str());
      std::abort();
    }
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(scratch_dir(), ignored);
    });
    return d;
  }();
  return dir;
}

}  // namespace wren::fuzz
