// weft/src/io/atomic_file.cpp v1 — temporary-and-rename writes, fsync, free-space checks.
#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace weft {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  WEFT_CHECK(fd_ >= 0, "cannot create '", tmp_, "': ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  WEFT_ASSERT(fd_ >= 0);
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd_, p, bytes);
    if (w < 0 && errno == EINTR) continue;
    WEFT_CHECK(w >= 0, "cannot write '", tmp_, "': ", std::strerror(errno));
    p += w;
    bytes -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  WEFT_ASSERT(fd_ >= 0);
  // Network filesystems report a full disk as late as fsync or close: both are checked.
  WEFT_CHECK(::fsync(fd_) == 0, "cannot flush '", tmp_, "': ", std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    fail(str("cannot close '", tmp_, "': ", std::strerror(err)));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    fail(str("cannot rename '", tmp_, "' to '", path_, "': ", std::strerror(err)));
  }
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, true);
}

void write_text_atomically(const std::string& path, const std::string& text) {
  AtomicFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  WEFT_CHECK(fd >= 0, "cannot open '", path, "' to flush it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  WEFT_CHECK(rc == 0, "cannot flush '", path, "': ", std::strerror(err));
}

int64_t free_bytes(const std::string& dir) {
  struct statvfs s {};
  WEFT_CHECK(::statvfs(dir.c_str(), &s) == 0, "cannot query the free space of '", dir, "': ", std::strerror(errno));
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

void check_free_space(const std::string& dir, int64_t bytes, const std::string& what) {
  const int64_t free = free_bytes(dir);
  WEFT_CHECK(bytes <= free, what, ": '", dir, "' has ", bytes_text(free), " free, it needs ", bytes_text(bytes), " (",
             std::strerror(ENOSPC), ")");
}

std::string bytes_text(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace weft
