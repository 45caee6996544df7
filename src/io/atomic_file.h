// weft/src/io/atomic_file.h v1 — files that appear whole or not at all, and disk-space checks.
//
// Everything weft writes for later runs to read (checkpoints' metadata, HF exports, datasets) goes through a
// temporary beside its final name and a rename, so a crash or a full disk never leaves a half-written file under
// the real name, and an abandoned temporary is removed. Errors name the file and the system's reason ("No space
// left on device").
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace weft {

// Writes PATH.tmp; commit() flushes it to disk and renames it onto PATH. Destroyed uncommitted, it removes PATH.tmp.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t bytes);  // appends; throws naming PATH.tmp and errno's reason
  void commit();                               // fsync, close, rename onto PATH, fsync the directory

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// Writes TEXT to PATH through an AtomicFile.
void write_text_atomically(const std::string& path, const std::string& text);
// Flushes a file or a directory (the entries of a rename) to disk.
void fsync_path(const std::string& path, bool directory);
// Bytes an unprivileged writer may still use on the filesystem that holds DIR.
int64_t free_bytes(const std::string& dir);
// Throws "WHAT: DIR has X free, it needs Y (No space left on device)" when BYTES would not fit in DIR.
void check_free_space(const std::string& dir, int64_t bytes, const std::string& what);
// "12.3 MiB": a byte count for messages.
std::string bytes_text(int64_t bytes);

}  // namespace weft
