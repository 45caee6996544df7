// weft/src/train/tensorboard.cpp v1 — TFRecord framing and the few protocol-buffer fields an event file needs.
#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "util/error.h"

namespace weft {
namespace {

// Field numbers of TensorBoard's event.proto and summary.proto.
enum EventField { kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5, kSessionLog = 7 };
enum ValueField { kTag = 1, kSimpleValue = 2 };
constexpr int kSummaryValue = 1, kSessionStatus = 1, kSessionStart = 1;
// Protocol-buffer wire types.
enum WireType { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, int field, WireType type) { put_varint(out, (uint64_t(field) << 3) | type); }

template <typename T>
void put_fixed(std::string& out, int field, T v) {
  put_key(out, field, sizeof(T) == 8 ? kFixed64 : kFixed32);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little endian, as the wire format is
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, int field, const std::string& bytes) {
  put_key(out, field, kBytes);
  put_varint(out, bytes.size());
  out += bytes;
}

std::string event_header(int64_t step) {
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::string e;
  put_fixed(e, kWallTime, now);
  put_key(e, kStep, kVarint);
  put_varint(e, static_cast<uint64_t>(step));
  return e;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

const std::array<uint32_t, 256>& crc32c_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // the reflected Castagnoli polynomial
      t[i] = c;
    }
    return t;
  }();
  return table;
}

}  // namespace

uint32_t crc32c(const void* data, size_t bytes) {
  const auto& table = crc32c_table();
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < bytes; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

void EventFileWriter::open(const std::string& dir, int64_t first_step) {
  char host[256] = "host";
  ::gethostname(host, sizeof host - 1);
  // TensorBoard reads a directory's event files in the order of their names: the start time, to the microsecond,
  // keeps a resumed run's file after the one it resumes.
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%lld.%06lld", static_cast<long long>(us / 1000000),
                static_cast<long long>(us % 1000000));
  path_ = (std::filesystem::path(dir) / str("events.out.tfevents.", stamp, ".", host, ".", ::getpid())).string();
  out_.open(path_, std::ios::binary | std::ios::trunc);
  WEFT_CHECK(out_.good(), "log.tensorboard: cannot create '", path_, "'");
  std::string version = event_header(0);
  put_bytes(version, kFileVersion, "brain.Event:2");
  write_record(version);
  std::string session;
  put_key(session, kSessionStatus, kVarint);
  put_varint(session, kSessionStart);
  std::string start = event_header(first_step);
  put_bytes(start, kSessionLog, session);
  write_record(start);
}

void EventFileWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  if (!is_open()) return;
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, kTag, tag);
    put_fixed(value, kSimpleValue, static_cast<float>(v));
    put_bytes(summary, kSummaryValue, value);
  }
  std::string event = event_header(step);
  put_bytes(event, kSummary, summary);
  write_record(event);
}

void EventFileWriter::write_record(const std::string& event) {
  const uint64_t length = event.size();
  const uint32_t length_crc = masked(crc32c(&length, 8)), data_crc = masked(crc32c(event.data(), event.size()));
  out_.write(reinterpret_cast<const char*>(&length), 8);
  out_.write(reinterpret_cast<const char*>(&length_crc), 4);
  out_.write(event.data(), static_cast<std::streamsize>(event.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
  out_.flush();
  WEFT_CHECK(out_.good(), "log.tensorboard: cannot write '", path_, "'");
}

}  // namespace weft
