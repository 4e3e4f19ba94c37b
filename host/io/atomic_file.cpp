#include "wren/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

namespace wren {
namespace {

// Distinguishes concurrent writes of the same path from threads of one process; the pid
// distinguishes processes.
std::atomic<uint64_t> g_temp_sequence{0};

// An injected failure reads like a real one (EIO) but says so, so nobody goes hunting for a
// disk fault.
constexpr const char* kInjected = " (injected)";
// Appended to errors after the rename, when the new content is already visible.
constexpr const char* kNotDurable = " after the new file was renamed into place";

std::string os_reason(int err) { return std::system_category().message(err); }

Error io_error(const std::string& path, const std::string& call, int err) {
  return Error(ErrorCode::kIoError, path + ": cannot write atomically: " + call + ": " +
                                        os_reason(err));
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

// A fault injected at `step` with `kill` set ends the process here, like a crash.
void die_if_killed_at(const AtomicWriteFault& fault, AtomicWriteStep step) {
  if (fault.kill && fault.step == step) ::raise(SIGKILL);
}

std::string directory_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Closes the descriptor and removes the temporary file unless it was renamed: every early return
// before the rename leaves no temporary file behind.
class TempFile {
 public:
  TempFile(std::string temp_path, int fd) : temp_path_(std::move(temp_path)), fd_(fd) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(temp_path_.c_str());
  }
  int fd() const { return fd_; }
  int close_fd() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void mark_renamed() { renamed_ = true; }

 private:
  std::string temp_path_;
  int fd_ = -1;
  bool renamed_ = false;
};

}  // namespace

Status write_file_atomic(const std::string& path, std::span<const uint8_t> bytes,
                         const AtomicWriteFault& fault) {
  if (path.empty()) return invalid_argument("write_file_atomic: empty path");
  const std::string temp_path = path + ".tmp." + std::to_string(::getpid()) + "." +
                                std::to_string(g_temp_sequence.fetch_add(1));
  const std::string temp_name = in_quotes(temp_path);

  die_if_killed_at(fault, AtomicWriteStep::kOpen);
  if (fault.step == AtomicWriteStep::kOpen) {
    return io_error(path, "open(" + temp_name + ")" + kInjected, EIO);
  }
  // O_EXCL|O_NOFOLLOW: never write through a link planted at the temporary name. A file
  // already there can only be left over from a crashed process that had our pid.
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(temp_path.c_str(), flags, 0666);
  if (fd < 0 && errno == EEXIST && ::unlink(temp_path.c_str()) == 0) {
    fd = ::open(temp_path.c_str(), flags, 0666);
  }
  if (fd < 0) {
    const int err = errno;
    return io_error(path, "open(" + temp_name + ")", err);
  }
  TempFile temp(temp_path, fd);

  // An injected write failure lets the first `write_fails_after_bytes` bytes through.
  const bool fail_write = fault.step == AtomicWriteStep::kWrite;
  const size_t limit =
      fail_write ? std::min(fault.write_fails_after_bytes, bytes.size()) : bytes.size();
  size_t written = 0;
  while (written < limit) {
    const ssize_t n = ::write(temp.fd(), bytes.data() + written, limit - written);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      return io_error(path, "write(" + temp_name + ")", err);
    }
    written += static_cast<size_t>(n);
  }
  die_if_killed_at(fault, AtomicWriteStep::kWrite);
  if (fail_write) return io_error(path, "write(" + temp_name + ")" + kInjected, EIO);

  die_if_killed_at(fault, AtomicWriteStep::kFsync);
  if (fault.step == AtomicWriteStep::kFsync) {
    return io_error(path, "fsync(" + temp_name + ")" + kInjected, EIO);
  }
  if (::fsync(temp.fd()) != 0) {
    const int err = errno;
    return io_error(path, "fsync(" + temp_name + ")", err);
  }
  // close(2) can report a deferred write error (NFS), so its result counts too.
  if (temp.close_fd() != 0) {
    const int err = errno;
    return io_error(path, "close(" + temp_name + ")", err);
  }

  const std::string rename_call = "rename(" + temp_name + ", " + in_quotes(path) + ")";
  die_if_killed_at(fault, AtomicWriteStep::kRename);
  if (fault.step == AtomicWriteStep::kRename) return io_error(path, rename_call + kInjected, EIO);
  if (::rename(temp_path.c_str(), path.c_str()) != 0) {
    const int err = errno;
    return io_error(path, rename_call, err);
  }
  temp.mark_renamed();

  // Until the directory is synced the rename may exist only in memory: after a power loss the
  // old file could reappear although the caller was told the write succeeded.
  const std::string directory = in_quotes(directory_of(path));
  die_if_killed_at(fault, AtomicWriteStep::kDirectoryFsync);
  if (fault.step == AtomicWriteStep::kDirectoryFsync) {
    return io_error(path, "fsync(" + directory + ")" + kInjected + kNotDurable, EIO);
  }
  const int dir_fd = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    const int err = errno;
    return io_error(path, "open(" + directory + ")" + kNotDurable, err);
  }
  const int dir_rc = ::fsync(dir_fd);
  const int dir_err = errno;
  ::close(dir_fd);
  if (dir_rc != 0) return io_error(path, "fsync(" + directory + ")" + kNotDurable, dir_err);
  return Status::ok_status();
}

Status write_file_atomic(const std::string& path, std::span<const uint8_t> bytes) {
  return write_file_atomic(path, bytes, AtomicWriteFault{});
}

Status write_file_atomic(const std::string& path, std::string_view text) {
  const auto* data = reinterpret_cast<const uint8_t*>(text.data());
  return write_file_atomic(path, std::span<const uint8_t>(data, text.size()));
}

}  // namespace wren
