// Crash-safe file replacement: a reader of `path` sees either the old file or the complete new
// one, never a torn mix, even if the process or the machine dies mid-write.
//
// The recipe (POSIX): write the bytes to a temporary file in the destination's directory
// (`path` + ".tmp.<pid>.<n>", same file system, so the rename cannot become a copy), fsync it,
// rename(2) it over `path` (atomic), then fsync the directory so that the rename itself is on
// disk. On any failure before the rename the temporary file is removed and `path` is untouched.
//
// Notes: the new file gets mode 0666 & ~umask, not the old file's mode; a symbolic link at
// `path` is replaced by a regular file, not followed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "wren/error.h"

namespace wren {

// Replaces (or creates) `path` with `bytes`. Errors are kIoError naming the path, the failing
// system call and the operating system's reason. An error from the final directory fsync means
// the new content is already in place but may not survive a power loss.
Status write_file_atomic(const std::string& path, std::span<const uint8_t> bytes);
Status write_file_atomic(const std::string& path, std::string_view text);

// --- Failure injection, for tests of the callers' error paths -----------------------------
// Simulates the operating system refusing one step of write_file_atomic (errno EIO), so that
// tests can check what a failed write leaves behind without needing a full disk or a
// read-only directory (root ignores permissions).
enum class AtomicWriteStep { kNone, kOpen, kWrite, kFsync, kRename, kDirectoryFsync };

struct AtomicWriteFault {
  AtomicWriteStep step = AtomicWriteStep::kNone;
  // For kWrite: how many bytes reach the temporary file before the write fails.
  size_t write_fails_after_bytes = 0;
  // Instead of failing, the process dies there (SIGKILL, no cleanup, no destructors): a crash
  // or power cut at that point, for tests that run the write in a forked child.
  bool kill = false;
};

Status write_file_atomic(const std::string& path, std::span<const uint8_t> bytes,
                         const AtomicWriteFault& fault);

}  // namespace wren
