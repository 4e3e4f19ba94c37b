// Reading a whole data file, inflating it when it is gzip (detected by the 1f 8b magic, never by
// the name). The compressed file is read into memory and inflated with zlib's inflate() rather
// than gzread(), because gzread() passes a file that is not gzip through unchanged and reports
// some truncations only as a short read; inflate() tells a corrupt stream (Z_DATA_ERROR, with
// the compressed offset) from a truncated one (input exhausted before the end of the stream).
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "wren/data.h"
#include "wren/error.h"

namespace wren {
namespace {

// zlib's counters are 32-bit: feed it at most this much at a time.
constexpr size_t kZlibChunk = size_t{1} << 30;

bool starts_with_gzip_magic(const std::vector<uint8_t>& bytes, size_t at) {
  return bytes.size() - at >= 2 && bytes[at] == 0x1f && bytes[at + 1] == 0x8b;
}

Expected<std::vector<uint8_t>> inflate_gzip(const std::string& path,
                                            std::vector<uint8_t>& compressed) {
  // The gzip trailer's ISIZE (the size mod 2³²) is a good first guess for the output; deflate
  // cannot expand by more than ~1032×, so a larger claim is ignored.
  size_t guess = compressed.size() * 4;
  if (compressed.size() >= 18) {
    const uint8_t* t = compressed.data() + compressed.size() - 4;
    const size_t isize = size_t{t[0]} | size_t{t[1]} << 8 | size_t{t[2]} << 16 | size_t{t[3]} << 24;
    if (isize <= compressed.size() * 1032) guess = isize;
  }
  // +1: with an exact guess the buffer never fills, so it is never doubled at the very end.
  std::vector<uint8_t> out(std::max<size_t>(guess + 1, 4096));

  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {  // 16: gzip wrapper only
    return Error(ErrorCode::kIoError, path + ": cannot initialise zlib");
  }
  size_t in_pos = 0, out_pos = 0;
  std::optional<Error> failure;
  for (;;) {
    if (out_pos == out.size()) out.resize(out.size() * 2);
    const size_t in_chunk = std::min(compressed.size() - in_pos, kZlibChunk);
    const size_t out_chunk = std::min(out.size() - out_pos, kZlibChunk);
    zs.next_in = compressed.data() + in_pos;
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = out.data() + out_pos;
    zs.avail_out = static_cast<uInt>(out_chunk);
    const int ret = inflate(&zs, Z_NO_FLUSH);
    const size_t consumed = in_chunk - zs.avail_in, produced = out_chunk - zs.avail_out;
    in_pos += consumed;
    out_pos += produced;
    if (ret == Z_STREAM_END) {
      if (in_pos == compressed.size()) break;
      if (starts_with_gzip_magic(compressed, in_pos)) {  // another member (gzip -c a b > c)
        inflateReset(&zs);
        continue;
      }
      failure = Error(ErrorCode::kDataError,
                      path + ": corrupt gzip: " + std::to_string(compressed.size() - in_pos) +
                          " bytes after the end of the gzip stream at offset " +
                          std::to_string(in_pos) + " are not another gzip member");
      break;
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR && in_pos == compressed.size()) {
      failure = Error(ErrorCode::kDataError,
                      path + ": truncated gzip: the compressed data ends at offset " +
                          std::to_string(in_pos) + " (" + std::to_string(out_pos) +
                          " bytes decompressed) before the end of the gzip stream");
      break;
    }
    if (ret == Z_BUF_ERROR && (consumed > 0 || produced > 0 || out_pos == out.size())) continue;
    if (ret == Z_MEM_ERROR) {
      failure = Error(ErrorCode::kIoError, path + ": out of memory while decompressing");
    } else {
      failure = Error(ErrorCode::kDataError,
                      path + ": corrupt gzip at compressed offset " + std::to_string(in_pos) +
                          ": " + (zs.msg ? zs.msg : "zlib error " + std::to_string(ret)));
    }
    break;
  }
  inflateEnd(&zs);
  if (failure) return *failure;
  out.resize(out_pos);
  if (out.capacity() - out_pos > out_pos / 16) out.shrink_to_fit();  // after a bad guess
  return out;
}

}  // namespace

namespace {

Expected<FileBytes> read_file_bytes_unguarded(const std::string& path) {
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  if (std::filesystem::is_directory(status)) {
    return Error(ErrorCode::kIoError, path + ": is a directory, not a data file");
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) {
    const int err = errno;
    const ErrorCode code =
        (err == ENOENT || err == ENOTDIR) ? ErrorCode::kNotFound : ErrorCode::kIoError;
    return Error(code, path + ": cannot open: " + std::strerror(err));
  }
  // Read a regular file in one go into a buffer of its size; anything else (a pipe) or
  // anything past that size (a growing file) in chunks.
  size_t expected_size = 0;
  if (std::filesystem::is_regular_file(status)) {
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (!ec) expected_size = static_cast<size_t>(size);
  }
  std::vector<uint8_t> bytes(expected_size);
  bytes.resize(std::fread(bytes.data(), 1, expected_size, file.get()));
  uint8_t chunk[1 << 16];
  for (size_t got; (got = std::fread(chunk, 1, sizeof chunk, file.get())) > 0;) {
    bytes.insert(bytes.end(), chunk, chunk + got);
  }
  if (std::ferror(file.get())) {
    const int err = errno;
    return Error(ErrorCode::kIoError, path + ": read failed after " + std::to_string(bytes.size()) +
                                          " bytes: " + std::strerror(err));
  }
  FileBytes result;
  if (starts_with_gzip_magic(bytes, 0)) {
    Expected<std::vector<uint8_t>> inflated = inflate_gzip(path, bytes);
    if (!inflated) return inflated.error();
    result.bytes = std::move(inflated).value();
    result.gzip = true;
  } else {
    result.bytes = std::move(bytes);
  }
  return result;
}

}  // namespace

Expected<FileBytes> read_file_bytes(const std::string& path) {
  // A file (or a gzip bomb) larger than memory is an error for the caller, not an abort.
  try {
    return read_file_bytes_unguarded(path);
  } catch (const std::bad_alloc&) {
    return Error(ErrorCode::kIoError, path + ": out of memory while reading");
  } catch (const std::length_error&) {
    return Error(ErrorCode::kIoError, path + ": too large to read into memory");
  }
}

}  // namespace wren
