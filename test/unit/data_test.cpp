// weft/test/unit/data_test.cpp v1 — Megatron data compatibility against files written by Megatron-LM itself.
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <nlohmann/json.hpp>

#include "data/batches.h"
#include "data/gpt_dataset.h"
#include "data/numpy_random.h"
#include "test_util.h"

using namespace weft;
using weft::test::fixture;
using weft::test::TempDir;

namespace {

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

std::vector<int32_t> read_sequence(const IndexedDataset& d, int64_t s) {
  std::vector<int32_t> out(static_cast<size_t>(d.sequence_length(s)));
  d.read(s, 0, d.sequence_length(s), out.data());
  return out;
}

}  // namespace

TEST(IndexedDataset, ReadsAllMegatronFixtures) {
  for (const char* name : {"tiny_uint16", "tiny_int32", "sentences_uint16"}) {
    const std::string prefix = fixture(std::string("megatron/") + name);
    const IndexedDataset d(prefix);
    const auto ref = load_json(prefix + ".json");
    EXPECT_EQ(d.dtype(), ref["dtype"] == "uint16" ? TokenDType::u16 : TokenDType::i32) << name;
    ASSERT_EQ(d.num_documents(), static_cast<int64_t>(ref["documents"].size())) << name;
    int64_t seq = 0;
    for (size_t doc = 0; doc < ref["documents"].size(); ++doc) {
      EXPECT_EQ(d.document_index(doc), seq) << name << " document " << doc;
      for (const auto& sequence : ref["documents"][doc]) {
        EXPECT_EQ(read_sequence(d, seq), sequence.get<std::vector<int32_t>>()) << name << " sequence " << seq;
        ++seq;
      }
    }
    EXPECT_EQ(seq, d.num_sequences()) << name;
  }
}

TEST(IndexedDataset, WriterIsByteIdenticalToMegatronsBuilder) {
  TempDir dir;
  for (const char* name : {"tiny_uint16", "tiny_int32", "sentences_uint16"}) {
    const std::string prefix = fixture(std::string("megatron/") + name);
    const auto ref = load_json(prefix + ".json");
    const std::string out = dir.file(name);
    IndexedDatasetWriter w(out, ref["dtype"] == "uint16" ? TokenDType::u16 : TokenDType::i32);
    for (const auto& doc : ref["documents"]) {
      for (const auto& sequence : doc) w.add_sequence(sequence.get<std::vector<int32_t>>());
      w.end_document();
    }
    w.finish();
    for (const char* ext : {".bin", ".idx"}) {
      std::ifstream a(prefix + ext, std::ios::binary), b(out + ext, std::ios::binary);
      const std::string sa((std::istreambuf_iterator<char>(a)), {}), sb((std::istreambuf_iterator<char>(b)), {});
      EXPECT_EQ(sa, sb) << name << ext;
    }
  }
}

TEST(IndexedDataset, RejectsBrokenIndexFiles) {
  TempDir dir;
  std::ifstream src(fixture("megatron/tiny_uint16.idx"), std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(src)), {});
  std::ifstream bsrc(fixture("megatron/tiny_uint16.bin"), std::ios::binary);
  const std::string bin((std::istreambuf_iterator<char>(bsrc)), {});
  auto expect_error = [&](const std::string& name, const std::string& idx, const std::string& bin_bytes,
                          const std::string& needle) {
    std::ofstream(dir.file(name + ".idx"), std::ios::binary) << idx;
    std::ofstream(dir.file(name + ".bin"), std::ios::binary) << bin_bytes;
    try {
      IndexedDataset d(dir.file(name));
      ADD_FAILURE() << name << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(dir.file(name)), std::string::npos) << e.what();
    }
  };
  expect_error("short", good.substr(0, 20), bin, "shorter than");
  std::string magic = good;
  magic[0] = 'X';
  expect_error("magic", magic, bin, "bad magic");
  std::string code = good;
  code[17] = 9;
  expect_error("code", code, bin, "unknown dtype code 9");
  expect_error("truncated", good.substr(0, good.size() - 8), bin, "header claims");
  expect_error("binshort", good, bin.substr(0, bin.size() / 2), "lies outside");
}

TEST(NumpyRandom, Mt19937Stream) {
  // The 10000th output of MT19937 seeded 5489 is 4123659995 (C++ standard [rand.predef]); numpy's legacy
  // seeding is the same init_genrand.
  NumpyRandomState d(5489);
  uint32_t x = 0;
  for (int i = 0; i < 10000; ++i) x = d.next_uint32();
  EXPECT_EQ(x, 4123659995u);
}

TEST(GptDataset, ReproducesMegatronSamplesExactly) {
  const auto ref = load_json(fixture("megatron/tiny_uint16_s16_gptdataset.json"));
  ASSERT_EQ(ref["seq_length"], 16);
  const auto data = std::make_shared<const IndexedDataset>(fixture("megatron/tiny_uint16"));
  GptDatasetOptions opt{16, static_cast<uint32_t>(ref["seed"].get<int>()), true};
  const int64_t num = ref["num_samples"];
  const GptDataset ds(data, split_sequences(*data, {1.0, 0.0, 0.0}, 0), num, opt);
  ASSERT_GE(ds.size(), num);
  std::vector<int32_t> window(17);
  for (int64_t i = 0; i < num; ++i) {
    ds.sample(i, window.data());
    const auto& s = ref["samples"][i];
    EXPECT_EQ(std::vector<int32_t>(window.begin(), window.end() - 1), s["tokens"].get<std::vector<int32_t>>())
        << "sample " << i;
    EXPECT_EQ(std::vector<int32_t>(window.begin() + 1, window.end()), s["labels"].get<std::vector<int32_t>>())
        << "sample " << i;
  }
}

TEST(GptDataset, UnshuffledSamplesAreConsecutiveWindows) {
  const auto data = std::make_shared<const IndexedDataset>(fixture("megatron/sentences_uint16"));
  std::vector<int32_t> stream;
  for (int64_t s = 0; s < data->num_sequences(); ++s) {
    const auto seq = read_sequence(*data, s);
    stream.insert(stream.end(), seq.begin(), seq.end());
  }
  const int64_t S = 7;
  // Ask for more than one epoch: epochs repeat the stream in order.
  const int64_t num = static_cast<int64_t>(stream.size()) / S + 5;
  const GptDataset ds(data, split_sequences(*data, {1.0, 0.0, 0.0}, 0), num, {S, 1234, false});
  std::vector<int32_t> window(S + 1);
  for (int64_t k = 0; k < num; ++k) {
    ds.sample(k, window.data());
    for (int64_t j = 0; j <= S; ++j)
      ASSERT_EQ(window[j], stream[(k * S + j) % stream.size()]) << "sample " << k << " token " << j;
  }
}

TEST(GptDataset, SplitsFollowMegatronRounding) {
  const IndexedDataset d(fixture("megatron/tiny_uint16"));  // 60 sequences
  const std::vector<double> f{0.969, 0.030, 0.001};
  const auto train = split_sequences(d, f, 0), valid = split_sequences(d, f, 1), test = split_sequences(d, f, 2);
  // round(0.969·60) = 58, round(0.999·60) = 60: train [0, 58), valid [58, 60), test empty.
  EXPECT_EQ(train.size(), 58u);
  EXPECT_EQ(valid.front(), 58);
  EXPECT_EQ(valid.size(), 2u);
  EXPECT_TRUE(test.empty());
}

TEST(GptDataset, BlendInterleavesByWeight) {
  const std::string a = fixture("megatron/tiny_uint16"), b = fixture("megatron/sentences_uint16");
  const Blend blend = Blend::parse("0.75 " + a + " 0.25 " + b);
  EXPECT_EQ(blend.paths, (std::vector<std::string>{a, b}));
  EXPECT_DOUBLE_EQ(blend.weights[0], 0.75);
  const BlendedSamples s(blend, {1, 0, 0}, 0, 40, {8, 1234, true});
  EXPECT_EQ(s.size(), 40);
  // Sample 0 goes to the dataset furthest behind its weight: a (0.75·1 − 0 > 0.25·1 − 0), its own sample 0 of the
  // ceil(ceil(40·0.75)·1.005) = 31 samples Megatron builds for it.
  std::vector<int32_t> x(9), y(9);
  s.sample(0, x.data());
  const GptDataset alone(std::make_shared<const IndexedDataset>(a), split_sequences(IndexedDataset(a), {1, 0, 0}, 0),
                         static_cast<int64_t>(std::ceil(30 * 1.005)), {8, 1234, true});
  alone.sample(0, y.data());
  EXPECT_EQ(x, y);
  EXPECT_THROW(Blend::parse(a + " " + b), Error);
  EXPECT_THROW(Blend::parse("x " + a + " 1 " + b), Error);
}

TEST(MicroBatches, MegatronSamplerOrderAndEodMask) {
  const auto data = std::make_shared<const IndexedDataset>(fixture("megatron/tiny_uint16"));
  const BlendedSamples src(Blend::parse(fixture("megatron/tiny_uint16")), {1, 0, 0}, 0, 64, {16, 1234, true});
  BatchOptions opt;
  opt.micro_batch_size = 2;
  opt.dp_size = 2;
  opt.dp_rank = 1;
  opt.eod = 31999;
  opt.eod_mask_loss = true;
  opt.vocab_size = 32000;
  const MicroBatches mb(src, opt);
  // Global batch 8 = 2 micro-batches × 2 ranks × 2 rows; rank 1, micro-batch 1 of batch 2 holds samples 22, 23.
  const Batch b = mb.get(16, 1);
  const Batch ref = mb.samples(22, 2);
  for (int64_t i = 0; i < 32; ++i) EXPECT_EQ(b.tokens.data<int32_t>()[i], ref.tokens.data<int32_t>()[i]);
  EXPECT_EQ(b.cu_seqlens.to_doubles(), (std::vector<double>{0, 16, 32}));
  for (int64_t i = 0; i < 32; ++i) {
    EXPECT_EQ(b.loss_mask.data<float>()[i], b.tokens.data<int32_t>()[i] == 31999 ? 0.f : 1.f);
    EXPECT_EQ(b.positions.data<int32_t>()[i], i % 16);
  }
  opt.vocab_size = 1000;  // ids above it must be refused
  EXPECT_THROW(MicroBatches(src, opt).get(0, 0), Error);
}

TEST(NumpyRandom, ShufflesMatchNumpy) {
  // Made by test/reference/make_numpy_fixture.py with numpy's RandomState.
  const auto ref = load_json(fixture("numpy/shuffles.json"));
  for (const auto& c : ref["cases"]) {
    NumpyRandomState rng(c["seed"].get<uint32_t>());
    const int64_t n = c["n"];
    std::vector<int64_t> a(static_cast<size_t>(n));
    std::iota(a.begin(), a.end(), 0);
    rng.shuffle(a);
    std::vector<int64_t> b{0, 1, 2, 3, 4};
    rng.shuffle(b);
    const std::string what = "seed " + std::to_string(c["seed"].get<uint64_t>()) + " n " + std::to_string(n);
    if (c.contains("shuffled")) {
      EXPECT_EQ(a, c["shuffled"].get<std::vector<int64_t>>()) << what;
    } else {
      EXPECT_EQ(std::vector<int64_t>(a.begin(), a.begin() + 16), c["head"].get<std::vector<int64_t>>()) << what;
      unsigned __int128 sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += static_cast<unsigned __int128>(i) * static_cast<uint64_t>(a[i]);
      EXPECT_EQ(static_cast<uint64_t>(sum % ((uint64_t(1) << 61) - 1)), c["checksum"].get<uint64_t>()) << what;
    }
    EXPECT_EQ(b, c["then"].get<std::vector<int64_t>>()) << what;
  }
}
