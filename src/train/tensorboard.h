// weft/src/train/tensorboard.h v1 — TensorBoard event files: scalars per step, readable by TensorBoard itself.
//
// An event file is a sequence of TFRecords (u64 length, masked CRC32C of the length, the bytes, masked CRC32C of the
// bytes), each an `Event` protocol buffer: the first holds the file version, then one per step with a `Summary` of
// scalar values. Each run writes its own file; its first event after the version is a SessionLog START at the step
// it begins with, which makes TensorBoard drop the steps a resumed run logs again.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace weft {

// CRC-32C (Castagnoli), as TFRecord frames use it.
uint32_t crc32c(const void* data, size_t bytes);

class EventFileWriter {
 public:
  // Creates DIR/events.out.tfevents.<seconds>.<microseconds>.<host>.<pid> and writes its header events; `first_step` is the first
  // step this run will log. Errors name the file.
  void open(const std::string& dir, int64_t first_step);
  bool is_open() const { return out_.is_open(); }
  // One event at `step` holding each (tag, value) as a scalar; flushed, so a killed run keeps what it logged.
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& event);
  std::ofstream out_;
  std::string path_;
};

}  // namespace weft
