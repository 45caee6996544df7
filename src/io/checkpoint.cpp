// weft/src/io/checkpoint.cpp v2 — HDF5 shard files, atomic commit, layout-independent reads; a failed save leaves
// nothing behind and says why.
#include "io/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>
#include <fstream>

#include "io/atomic_file.h"
#include "ops/ops.h"
#include "util/error.h"

namespace weft {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The most specific message on HDF5's error stack, shortened to the system's reason where there is one (a write
// that failed for lack of space says "No space left on device" there). Clears the stack.
std::string h5_reason() {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD,
           [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
             if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
             return 0;
           },
           &reason);
  H5Eclear2(H5E_DEFAULT);
  const std::string marker = "error message = '";
  const size_t at = reason.find(marker);
  if (at != std::string::npos) reason = reason.substr(at + marker.size(), reason.find('\'', at + marker.size()) -
                                                                            at - marker.size());
  return reason.empty() ? "HDF5 gave no reason" : reason;
}

// H5_CHECK(expr, what...): HDF5 calls return negative ids/statuses on failure.
#define H5_CHECK(expr, ...)                                                                     \
  ([&]() {                                                                                      \
    auto h5_result_ = (expr);                                                                   \
    if (h5_result_ < 0) ::weft::fail(::weft::str(__VA_ARGS__, ": ", ::weft::h5_reason())); \
    return h5_result_;                                                                          \
  }())

// An HDF5 id that its close function releases when it goes out of scope, on error paths too: an id left open
// would make the library write (and fail again) at exit.
class H5Id {
 public:
  H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H5Id(H5Id&& o) noexcept : id_(std::exchange(o.id_, -1)), close_(o.close_) {}
  H5Id(const H5Id&) = delete;
  ~H5Id() {
    if (id_ >= 0) close_(id_);
  }
  operator hid_t() const { return id_; }
  // Closes now and returns the status (a file's close is where its last writes happen).
  herr_t close() { return close_(std::exchange(id_, -1)); }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

struct H5Setup {
  H5Setup() {
    // No clean-up at exit: every id is closed by its H5Id, and the library's own pass at exit crashes on a file whose
    // close failed (a full disk), turning one clear error into a segfault.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // errors become weft::Error, not stack dumps
  }
};
const H5Setup h5_setup;
constexpr const char* kIndex = "__index__";

void barrier_or_fail(Comm& world) { world.barrier(); }

H5Id dataspace(const std::vector<hsize_t>& dims) {
  return {H5_CHECK(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), "HDF5 dataspace"), H5Sclose};
}

void write_attr_i64(hid_t obj, const char* name, const std::vector<int64_t>& v, const std::vector<hsize_t>& dims,
                    const std::string& where) {
  const H5Id space = dataspace(dims);
  const H5Id attr(H5_CHECK(H5Acreate2(obj, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT), where, ": ",
                           name), H5Aclose);
  if (!v.empty()) H5_CHECK(H5Awrite(attr, H5T_NATIVE_INT64, v.data()), where, ": ", name);
}

std::vector<int64_t> read_attr_i64(hid_t obj, const char* name, const std::string& where) {
  const H5Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  WEFT_CHECK(attr >= 0, where, ": missing attribute '", name, "'");
  const H5Id space(H5Aget_space(attr), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  std::vector<int64_t> v(static_cast<size_t>(std::max<hssize_t>(n, 0)));
  if (n > 0) H5_CHECK(H5Aread(attr, H5T_NATIVE_INT64, v.data()), where);
  return v;
}

// The list of tensor keys in a shard file, stored as one newline-separated byte dataset.
void write_index(hid_t file, const std::string& keys, const std::string& path) {
  const hsize_t n = keys.size();
  const H5Id space = dataspace({n});
  const H5Id ds(H5_CHECK(H5Dcreate2(file, kIndex, H5T_NATIVE_UINT8, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                         "cannot create the index of ", path), H5Dclose);
  if (n) H5_CHECK(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, keys.data()), "cannot write ", path);
}

std::vector<std::string> read_index(hid_t file, const std::string& path) {
  const H5Id ds(H5Dopen2(file, kIndex, H5P_DEFAULT), H5Dclose);
  WEFT_CHECK(ds >= 0, path, ": no tensor index (not a weft checkpoint shard?)");
  const H5Id space(H5Dget_space(ds), H5Sclose);
  std::string text(static_cast<size_t>(H5Sget_simple_extent_npoints(space)), '\0');
  if (!text.empty()) H5_CHECK(H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()), path);
  std::vector<std::string> keys;
  for (size_t b = 0, e; b < text.size(); b = e + 1) {
    e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    if (e > b) keys.push_back(text.substr(b, e - b));
  }
  return keys;
}

}  // namespace

ShardedTensor sharded(const std::string& prefix, const Parameter& p, const Tensor& value) {
  return {prefix + "/" + p.name, value, p.global_shape, p.shard_dim, p.blocks};
}

// ---------------------------------------------------------------- writing

CheckpointWriter::CheckpointWriter(const std::string& dir, int64_t iteration, Comm& world, int64_t keep)
    : dir_(dir), world_(world), keep_(keep) {
  char name[32];
  std::snprintf(name, sizeof name, "iter_%07lld", static_cast<long long>(iteration));
  name_ = name;
  tmp_ = (fs::path(dir) / (name_ + ".tmp")).string();
  if (world.rank() == 0) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    // The leftovers of saves that died before their commit, whatever their iteration.
    static const std::regex abandoned(R"(iter_\d+\.tmp)");
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (std::regex_match(entry.path().filename().string(), abandoned)) fs::remove_all(entry.path(), ec);
    fs::create_directories(tmp_, ec);
    WEFT_CHECK(!ec, "checkpoint.save: cannot create '", tmp_, "': ", ec.message());
  }
  barrier_or_fail(world_);
}

namespace {

void write_shard_file(const std::string& path, const std::vector<ShardedTensor>& tensors) {
  H5Id file(H5_CHECK(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "cannot create ", path),
            H5Fclose);
  write_attr_i64(file, "weft_checkpoint_format", {kCheckpointFormatVersion}, {1}, path);
  std::map<std::string, H5Id> groups;
  for (const ShardedTensor& t : tensors) {
    const auto slash = t.key.rfind('/');
    const std::string group_name = t.key.substr(0, slash), dataset = t.key.substr(slash + 1);
    if (!groups.count(group_name)) {
      const H5Id lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
      H5Pset_create_intermediate_group(lcpl, 1);
      groups.emplace(group_name, H5Id(H5_CHECK(H5Gcreate2(file, group_name.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT),
                                               "cannot create group ", group_name, " in ", path), H5Gclose));
    }
    // Stored in float32 (float64 for f64 runs): the fp32 master values, whatever the compute dtype.
    const DType store = t.value.dtype() == DType::f64 ? DType::f64 : DType::f32;
    Tensor host = Tensor::empty(t.value.shape(), store);
    cpu_ops().convert(host, t.value.to(Device::cpu));
    const H5Id space = dataspace(std::vector<hsize_t>(t.value.shape().begin(), t.value.shape().end()));
    const hid_t type = store == DType::f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
    const std::string where = str(path, ": ", t.key);
    const H5Id ds(H5_CHECK(H5Dcreate2(groups.at(group_name), dataset.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT,
                                      H5P_DEFAULT), "cannot create ", where), H5Dclose);
    if (host.numel() > 0)
      H5_CHECK(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, host.data_ptr()), "cannot write ", where);
    write_attr_i64(ds, "global_shape", std::vector<int64_t>(t.global_shape.begin(), t.global_shape.end()),
                   {t.global_shape.size()}, where);
    write_attr_i64(ds, "shard_dim", {t.shard_dim}, {1}, where);
    std::vector<int64_t> blocks;
    for (const ShardBlock& b : t.blocks) blocks.insert(blocks.end(), {b.local_begin, b.global_begin, b.length});
    write_attr_i64(ds, "blocks", blocks, {t.blocks.size(), 3}, where);
  }
  std::string keys;
  for (const ShardedTensor& t : tensors) keys += t.key + "\n";
  write_index(file, keys, path);
  groups.clear();
  H5_CHECK(file.close(), "cannot write ", path);
  fsync_path(path, false);
}

}  // namespace

void CheckpointWriter::write_shard(const std::string& file_name, const std::vector<ShardedTensor>& tensors) {
  const std::string path = (fs::path(tmp_) / file_name).string();
  try {
    int64_t bytes = 0;
    for (const ShardedTensor& t : tensors) bytes += t.value.numel() * (t.value.dtype() == DType::f64 ? 8 : 4);
    check_free_space(tmp_, bytes, str("checkpoint.save: ", file_name));
    write_shard_file(path, tensors);
  } catch (const Error& e) {
    abandon(e);
  }
}

void CheckpointWriter::commit(const json& metadata) {
  barrier_or_fail(world_);  // every shard is on disk
  if (world_.rank() == 0) {
    const std::string final_path = (fs::path(dir_) / name_).string();
    try {
      write_text_atomically((fs::path(tmp_) / "metadata.json").string(), metadata.dump(2));
      fsync_path(tmp_, true);
      std::error_code ec;
      fs::remove_all(final_path, ec);  // an older save of the same iteration is replaced
      WEFT_CHECK(std::rename(tmp_.c_str(), final_path.c_str()) == 0, "cannot rename '", tmp_, "' to '", final_path,
                 "': ", std::strerror(errno));
      fsync_path(dir_, true);
    } catch (const Error& e) {
      abandon(e);
    }
    // Complete from here: only `latest` may still name the one before.
    write_text_atomically((fs::path(dir_) / "latest").string(), name_ + "\n");
    if (keep_ > 0) remove_older_checkpoints();
  }
  barrier_or_fail(world_);
}

void CheckpointWriter::abandon(const Error& e) const {
  // Nothing of this save stays behind; other ranks still writing into it fail too and the job stops.
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  std::ifstream in(fs::path(dir_) / "latest");
  std::string latest;
  in >> latest;
  fail(str(e.what(), "; the save of ", name_, " was abandoned and removed, ",
           latest.empty() ? str(dir_, " holds no earlier checkpoint") : str(dir_, "/latest still names ", latest)));
}

void CheckpointWriter::remove_older_checkpoints() const {
  static const std::regex complete(R"(iter_(\d+))");
  std::vector<std::pair<int64_t, fs::path>> others;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (name != name_ && std::regex_match(name, m, complete)) others.emplace_back(std::stoll(m[1]), entry.path());
  }
  std::sort(others.begin(), others.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = static_cast<size_t>(keep_ - 1); i < others.size(); ++i) {
    std::error_code ec;
    fs::remove_all(others[i].second, ec);
    WEFT_CHECK(!ec, "checkpoint.keep: cannot remove '", others[i].second.string(), "': ", ec.message());
  }
}

// ---------------------------------------------------------------- reading

CheckpointReader::CheckpointReader(const std::string& dir) {
  fs::path p(dir);
  if (!fs::exists(p / "metadata.json")) {
    const fs::path latest = p / "latest";
    WEFT_CHECK(fs::exists(latest), dir, ": no checkpoint here (no 'latest' marker and no metadata.json)");
    std::ifstream in(latest);
    std::string name;
    in >> name;
    WEFT_CHECK(!name.empty() && fs::exists(p / name / "metadata.json"), latest.string(), " names '", name,
               "', which is not a complete checkpoint");
    p /= name;
  }
  path_ = p.string();
  try {
    std::ifstream in(p / "metadata.json");
    metadata_ = json::parse(in);
  } catch (const json::exception& e) {
    fail(str(path_, "/metadata.json: not valid JSON: ", e.what()));
  }
  WEFT_CHECK(metadata_.value("format", "") == "weft-checkpoint", path_, ": metadata.json is not a weft checkpoint");
  WEFT_CHECK(metadata_.value("version", 0) == kCheckpointFormatVersion, path_, ": checkpoint format version ",
             metadata_.value("version", 0), ", this weft reads version ", kCheckpointFormatVersion);
  for (const auto& entry : fs::directory_iterator(p)) {
    if (entry.path().extension() != ".h5") continue;
    const std::string f = entry.path().string();
    const hid_t file = H5Fopen(f.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    WEFT_CHECK(file >= 0, f, ": not a readable HDF5 file (truncated?)");
    files_.push_back(file);
    file_names_.push_back(f);
    WEFT_CHECK(read_attr_i64(file, "weft_checkpoint_format", f)[0] == kCheckpointFormatVersion, f,
               ": unexpected shard format version");
    for (const std::string& key : read_index(file, f)) {
      const std::string where = str(f, ": ", key);
      const hid_t ds = H5Dopen2(file, key.c_str(), H5P_DEFAULT);
      WEFT_CHECK(ds >= 0, where, ": listed in the index but missing (truncated file?)");
      Piece piece;
      piece.file = static_cast<int64_t>(files_.size() - 1);
      const hid_t space = H5Dget_space(ds);
      const int nd = H5Sget_simple_extent_ndims(space);
      std::vector<hsize_t> dims(static_cast<size_t>(std::max(nd, 0)));
      H5Sget_simple_extent_dims(space, dims.data(), nullptr);
      H5Sclose(space);
      piece.local_shape.assign(dims.begin(), dims.end());
      const auto gs = read_attr_i64(ds, "global_shape", where);
      piece.global_shape.assign(gs.begin(), gs.end());
      piece.shard_dim = static_cast<int>(read_attr_i64(ds, "shard_dim", where)[0]);
      const auto b = read_attr_i64(ds, "blocks", where);
      for (size_t i = 0; i + 2 < b.size(); i += 3) piece.blocks.push_back({b[i], b[i + 1], b[i + 2]});
      H5Dclose(ds);
      index_[key].push_back(piece);
    }
  }
  WEFT_CHECK(!files_.empty(), path_, ": no shard files (*.h5)");
}

CheckpointReader::~CheckpointReader() {
  for (int64_t f : files_) H5Fclose(f);
}

void CheckpointReader::read(const std::string& key, Tensor& dst, const Shape& global_shape, int shard_dim,
                            const std::vector<ShardBlock>& blocks) const {
  auto it = index_.find(key);
  WEFT_CHECK(it != index_.end(), path_, ": the checkpoint has no tensor '", key, "'");
  const Shape& ls = dst.shape();
  // Work in [outer, dim, inner] coordinates around the shard dimension (dim 0 when replicated).
  const int d = shard_dim < 0 ? 0 : shard_dim;
  int64_t inner = 1;
  for (size_t i = d + 1; i < ls.size(); ++i) inner *= ls[i];
  const std::vector<ShardBlock> want =
      shard_dim < 0 ? std::vector<ShardBlock>{{0, 0, ls.empty() ? 1 : ls[0]}} : blocks;
  std::vector<double> local(static_cast<size_t>(dst.numel()), 0.0);
  std::vector<bool> filled_blocks(want.size(), false);
  int64_t filled = 0, needed = 0;
  for (const ShardBlock& w : want) needed += w.length;
  for (const Piece& piece : it->second) {
    const std::string where = str(file_names_[piece.file], ": ", key);
    WEFT_CHECK(piece.global_shape == global_shape, where, " has global shape ", shape_str(piece.global_shape),
               ", the model expects ", shape_str(global_shape), " (config/checkpoint mismatch)");
    WEFT_CHECK(piece.shard_dim == shard_dim, where, " is split along dimension ", piece.shard_dim, ", expected ",
               shard_dim);
    const std::vector<ShardBlock> have =
        piece.shard_dim < 0 ? std::vector<ShardBlock>{{0, 0, piece.local_shape.empty() ? 1 : piece.local_shape[0]}}
                            : piece.blocks;
    const hid_t ds = H5_CHECK(H5Dopen2(files_[piece.file], key.c_str(), H5P_DEFAULT), "open ", where);
    const hid_t fspace = H5Dget_space(ds);
    for (size_t wi = 0; wi < want.size(); ++wi) {
      const ShardBlock& w = want[wi];
      if (shard_dim < 0 && filled_blocks[wi]) continue;  // a replicated tensor: any one copy will do
      for (const ShardBlock& h : have) {
        const int64_t lo = std::max(w.global_begin, h.global_begin);
        const int64_t hi = std::min(w.global_begin + w.length, h.global_begin + h.length);
        if (lo >= hi) continue;
        // Select the saved slab [h.local_begin + lo - h.global_begin, +hi-lo) along d, everything else whole.
        std::vector<hsize_t> start(piece.local_shape.size(), 0), count(piece.local_shape.begin(), piece.local_shape.end());
        if (!piece.local_shape.empty()) {
          start[d] = static_cast<hsize_t>(h.local_begin + lo - h.global_begin);
          count[d] = static_cast<hsize_t>(hi - lo);
        }
        std::vector<double> slab(static_cast<size_t>(numel_of(Shape(count.begin(), count.end()))));
        if (!slab.empty()) {
          H5_CHECK(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), where);
          const hid_t mspace = H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr);
          H5_CHECK(H5Dread(ds, H5T_NATIVE_DOUBLE, mspace, fspace, H5P_DEFAULT, slab.data()), "read ", where);
          H5Sclose(mspace);
        }
        // Scatter the slab into the local tensor.
        int64_t outer = 1;
        for (int i = 0; i < d; ++i) outer *= ls[i];
        const int64_t ldim = ls.empty() ? 1 : ls[d], n = hi - lo;
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t j = 0; j < n; ++j)
            std::copy_n(slab.begin() + (o * n + j) * inner, inner,
                        local.begin() + (o * ldim + w.local_begin + (lo - w.global_begin) + j) * inner);
        filled += hi - lo;
        if (shard_dim < 0) filled_blocks[wi] = true;
      }
    }
    H5Sclose(fspace);
    H5Dclose(ds);
  }
  WEFT_CHECK(filled >= needed, path_, ": the saved pieces of '", key, "' do not cover this rank's shard");
  write_into(dst, Tensor::from_vector(local, ls));
}

}  // namespace weft
