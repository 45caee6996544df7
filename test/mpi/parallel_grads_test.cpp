// weft/test/mpi/parallel_grads_test.cpp v8 — gradients of model-parallel layouts equal the single-rank model's,
// parameter by parameter (f64, so the bound is near rounding: |Δ| ≤ 1e-9·max|ref|, far inside 1e-5). The layouts
// reduce their gradients the way the trainer does: reported by the backward as it finishes them, in small buckets.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "data/batches.h"
#include "data/mock_dataset.h"
#include "dist/process_grid.h"
#include "model/gpt_model.h"
#include "optim/optimizer.h"
#include "optim/split_master.h"
#include "parallel/shared_gradients.h"
#include "parallel/schedules.h"
#include "parallel/tensor_parallel.h"
#include "../unit/test_util.h"

using namespace weft;
using weft::test::each_rank_alone;

namespace {

int world() {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// A group of every rank (data parallelism).
std::unique_ptr<Comm> all_ranks(const std::string& name) {
  std::vector<int> all(world());
  for (int r = 0; r < world(); ++r) all[r] = r;
  return make_mpi_comm(name, {all});
}

// Every weight of two models equal to 1e-12 (their optimizers stepped on the same mean gradients).
void expect_same_weights(GptModel& a_model, GptModel& b_model, const std::string& what) {
  const auto a = a_model.parameters(), b = b_model.parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    const auto x = a[i]->value.to_doubles(), y = b[i]->value.to_doubles();
    for (size_t j = 0; j < x.size(); ++j) ASSERT_NEAR(x[j], y[j], 1e-12) << a[i]->name << what;
  }
}

ModelSpec spec(bool tied) {
  ModelSpec s;
  s.num_layers = 4;
  s.hidden = 32;
  s.ffn = 48;
  s.heads = 4;
  s.groups = 2;
  s.head_dim = 8;
  s.vocab = 101;
  s.max_positions = 16;
  s.init_std = 0.2;
  s.tie_embeddings = tied;
  s.qkv_bias = true;
  return s;
}

struct Layout {
  int tp = 1, pp = 1, vpp = 1;
  bool sp = false, tied = false;
  int cp = 1;
  Recompute recompute = Recompute::none;
};

// Runs 4 micro-batches through `layout` and through a single-rank model, and compares loss and every gradient.
void compare(const Layout& l) {
  const ModelSpec s = spec(l.tied);
  const ProcessGrid grid(world(), rank(), {l.tp, l.cp, 1, l.pp});
  auto tp = make_mpi_comm("tp", grid.groups("tp"));
  auto cp = make_mpi_comm("cp", grid.groups("cp"));
  auto pp = make_mpi_comm("pp", grid.groups("pp"));
  auto emb = make_mpi_comm("embedding", grid.groups("embedding"));
  auto self = each_rank_alone();

  const MockSamples data(64, 16, s.vocab, 9);
  BatchOptions bo;
  bo.micro_batch_size = 2;
  bo.vocab_size = s.vocab;
  const MicroBatches batches(data, bo);
  auto micro = [&](int64_t m) { return batches.get(0, m); };

  LayerContext ref_ctx{self.get(), false, DType::f64, Device::cpu, 3};
  GptModel ref(s, ref_ctx, StageLayout::whole(s));
  PipelineSchedule ref_schedule{.pp = self.get(), .chunks = {&ref}};
  const double ref_loss = ref_schedule.run(micro, 4, false).loss;

  LayerContext ctx{tp.get(), l.sp, DType::f64, Device::cpu, 3, cp.get(), l.recompute};
  std::vector<std::unique_ptr<GptModel>> chunks;
  // The fused loss in chunks of 5 tokens here (its vocabulary-parallel sums over tp per chunk), whole in the
  // reference.
  PipelineSchedule schedule{.pp = pp.get(), .sequence_parallel = l.sp, .tp_size = l.tp, .cp = cp.get(), .loss_chunk_rows = 5};
  std::vector<Parameter*> params;
  for (int c = 0; c < l.vpp; ++c) {
    chunks.push_back(std::make_unique<GptModel>(s, ctx, StageLayout::of(s, grid.pp_rank(), l.pp, c, l.vpp, 0, 0)));
    schedule.chunks.push_back(chunks.back().get());
    for (Parameter* p : chunks.back()->parameters()) params.push_back(p);
  }
  // Context-parallel ranks hold parts of one gradient, which the optimizer's bucket reductions sum.
  Optimizer optimizer(params, {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .bucket_elements = 1000},
                      *cp);
  ASSERT_GE(optimizer.buckets(), 2);
  schedule.grads_ready = [&](const std::vector<Parameter*>& done) {
    optimizer.grads_ready(reduce_finished_gradients(done, *tp, s.tie_embeddings, l.pp));
  };
  const double loss = schedule.run(micro, 4, false).loss;
  // The backward reported every parameter but a tied embedding split over stages.
  const auto rest = optimizer.unreported();
  EXPECT_EQ(rest.size(), s.tie_embeddings && l.pp > 1 && (grid.pp_rank() == 0 || grid.pp_rank() == l.pp - 1) ? 1u : 0u);
  EXPECT_EQ(optimizer.buckets_started(), optimizer.buckets() - (rest.empty() ? 0 : 1));
  reduce_shared_gradients(rest, *tp, *emb, s.tie_embeddings, l.pp);
  optimizer.reduce_gradients();
  EXPECT_NEAR(loss, ref_loss, 1e-12 * ref_loss);

  std::map<std::string, Parameter*> by_name;
  for (Parameter* p : ref.parameters()) by_name[p->name] = p;
  for (Parameter* p : params) {
    Parameter grad_view = *p;
    grad_view.value = p->grad;  // gather the gradient the way values are gathered
    const std::vector<double> got = gather_global(grad_view, *tp);
    Parameter ref_view = *by_name.at(p->name);
    ref_view.value = ref_view.grad;
    const std::vector<double> want = gather_global(ref_view, *self);
    ASSERT_EQ(got.size(), want.size()) << p->name;
    double scale = 0, diff = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, std::abs(want[i]));
      diff = std::max(diff, std::abs(got[i] - want[i]));
    }
    EXPECT_LE(diff, 1e-9 * scale) << p->name << " (tp " << l.tp << " pp " << l.pp << " vpp " << l.vpp << " sp "
                                  << l.sp << " cp " << l.cp << " recompute " << int(l.recompute) << ")";
  }
}

}  // namespace

TEST(ParallelGradients, TensorParallelWithAndWithoutSequenceParallel) {
  if (world() != 2) GTEST_SKIP() << "runs on 2 ranks";
  compare({2, 1, 1, false, false});
  compare({2, 1, 1, true, true});
}

TEST(ParallelGradients, PipelineOneFOneBAndInterleaved) {
  if (world() != 2) GTEST_SKIP() << "runs on 2 ranks";
  compare({1, 2, 1, false, false});
  compare({1, 2, 2, false, true});
}

// Rerunning a layer in the backward reissues its collectives (sequence-parallel gathers, the ring) in step.
TEST(ParallelGradients, RecomputationUnderTensorPipelineAndContextParallelism) {
  if (world() != 2) GTEST_SKIP() << "runs on 2 ranks";
  compare({2, 1, 1, true, false, 1, Recompute::full});
  compare({1, 2, 2, false, true, 1, Recompute::selective});
  compare({1, 1, 1, false, false, 2, Recompute::full});
}

TEST(ParallelGradients, TensorTimesPipeline) {
  if (world() != 4) GTEST_SKIP() << "runs on 4 ranks";
  compare({2, 2, 1, true, true});
  compare({2, 2, 2, false, false});
}

// Four stages, one layer each: the middle ranks receive and send in both directions in every unit.
TEST(ParallelGradients, PipelineOfFourStages) {
  if (world() != 4) GTEST_SKIP() << "runs on 4 ranks";
  compare({1, 4, 1, false, false});
  compare({1, 4, 1, false, true});
}

TEST(ParallelGradients, ContextParallelRingAttention) {
  if (world() == 2) {
    compare({1, 1, 1, false, true, 2});
  } else if (world() == 4) {
    compare({1, 1, 1, false, false, 4});  // every ring pattern: own block, blocks before and after
    compare({2, 1, 1, true, false, 2});   // with tensor and sequence parallelism
    compare({1, 2, 1, false, true, 2});   // with a pipeline
  } else {
    GTEST_SKIP() << "runs on 2 or 4 ranks";
  }
}

// The optimizer tests' set-up: an untied f64 model on each rank alone, its gradients reduced over every rank.
class DistributedOptimizer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world() < 2) GTEST_SKIP() << "needs data-parallel ranks";
  }
  const ModelSpec s = spec(false);
  std::unique_ptr<Comm> dp = all_ranks("dp"), self = each_rank_alone();
  LayerContext ctx{self.get(), false, DType::f64, Device::cpu, 3};
};

// ZeRO-1: each of dp ranks keeps 1/dp of the masters and moments, and a step gives the unsharded step's weights.
TEST_F(DistributedOptimizer, ShardsStateAndMatchesTheUnshardedStep) {
  GptModel sharded_model(s, ctx, StageLayout::whole(s)), plain_model(s, ctx, StageLayout::whole(s));
  // Sharded in buckets of ~3000 elements, each reduced as soon as its parameters are reported; unsharded in one
  // bucket reduced at the end.
  Optimizer sharded(sharded_model.parameters(), {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                    .distributed = true, .data_parallel = world(), .bucket_elements = 3000}, *dp);
  Optimizer plain(plain_model.parameters(), {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                  .data_parallel = world()}, *dp);
  ASSERT_GT(sharded.buckets(), 3);
  // The state held per rank shrinks by the data-parallel size (up to the padding of each bucket).
  EXPECT_NEAR(double(sharded.shard_bytes()), double(plain.shard_bytes()) / world(), 3.0 * 8 * sharded.buckets());
  // Different gradients on every rank: both optimizers must step with their mean.
  for (auto* m : {&sharded_model, &plain_model})
    for (Parameter* p : m->parameters())
      for (int64_t i = 0; i < p->grad.numel(); ++i)
        p->grad.data<double>()[i] = std::sin(0.37 * double(i) + rank() + p->name.size());
  const auto reported = sharded_model.parameters();
  for (size_t i = reported.size(); i-- > reported.size() / 2;) sharded.grads_ready({reported[i]});
  EXPECT_GT(sharded.buckets_started(), 0);
  EXPECT_LT(sharded.buckets_started(), sharded.buckets());
  for (Optimizer* o : {&sharded, &plain}) {
    o->reduce_gradients();
    const double norm = std::sqrt(o->grad_norm_squared(0));
    o->clip(norm, 0.5);
    o->step(1e-2);
  }
  EXPECT_NEAR(std::sqrt(sharded.grad_norm_squared(0)), std::sqrt(plain.grad_norm_squared(0)), 1e-12);
  expect_same_weights(sharded_model, plain_model, "");
  if (HasFatalFailure()) return;
  const auto a = sharded_model.parameters();
  // Gathered state equals the unsharded optimizer's (to rounding: reduce-scatter and all-reduce sum in other orders).
  const auto ms = sharded.gather_state("exp_avg_sq"), mp = plain.gather_state("exp_avg_sq");
  for (size_t i = 0; i < ms.size(); ++i) {
    const auto x = ms[i].to_doubles(), y = mp[i].to_doubles();
    for (size_t j = 0; j < x.size(); ++j) ASSERT_NEAR(x[j], y[j], 1e-12 * std::abs(y[j]) + 1e-300) << a[i]->name;
  }
}

// An untied embedding's gradient reduced over the rows some rank touched (Optimizer::set_sparse_rows) steps as the
// whole gradient reduced does, sharded or not, with a bucket of its own among small buckets of dense gradients.
TEST_F(DistributedOptimizer, SparseEmbeddingRowsMatchTheDenseReduction) {
  // Rank r writes vocabulary rows r, r + 7, r + 14, ... (not the padding rows past the vocabulary).
  auto touched = [&](int r, int64_t row) { return row < s.vocab && row % 7 == r; };
  std::vector<int32_t> rows;
  for (int64_t row = 0; row < s.vocab; ++row)
    for (int r = 0; r < world(); ++r)
      if (touched(r, row)) rows.push_back(static_cast<int32_t>(row));
  for (const bool sharded : {false, true}) {
    GptModel sparse_model(s, ctx, StageLayout::whole(s)), dense_model(s, ctx, StageLayout::whole(s));
    Optimizer sparse(sparse_model.parameters(), {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                      .distributed = sharded, .data_parallel = world(), .bucket_elements = 2000}, *dp);
    Optimizer dense(dense_model.parameters(), {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                      .distributed = sharded, .data_parallel = world(), .bucket_elements = 2000}, *dp);
    ASSERT_NE(sparse.row_sparse_param(), nullptr);
    for (auto* m : {&sparse_model, &dense_model})
      for (Parameter* p : m->parameters()) {
        const int64_t cols = p->grad.numel() / p->grad.size(0);
        for (int64_t i = 0; i < p->grad.numel(); ++i)
          p->grad.data<double>()[i] = p->row_sparse_grad && !touched(rank(), i / cols)
                                          ? 0.0
                                          : std::sin(0.37 * double(i) + rank() + p->name.size());
      }
    sparse.set_sparse_rows(rows);
    const auto reported = sparse_model.parameters();
    for (size_t i = reported.size(); i-- > 0;) sparse.grads_ready({reported[i]});
    for (Optimizer* o : {&sparse, &dense}) {
      o->reduce_gradients();
      o->clip(std::sqrt(o->grad_norm_squared(0)), 0.5);
      o->step(1e-2);
    }
    expect_same_weights(sparse_model, dense_model, sharded ? ", sharded" : ", not sharded");
    if (HasFatalFailure()) return;
  }
}

// Split masters sharded over the data-parallel ranks: a checkpoint's fp32 masters scattered into the shards (the
// bf16 values and their low halves) and gathered back come out bit for bit, and every rank's values are the
// masters rounded, whether a bucket's slice ends mid-parameter or not.
TEST_F(DistributedOptimizer, SplitMastersScatterAndGatherBitForBit) {
  std::vector<Parameter> params;
  for (const auto& [name, shape] : std::vector<std::pair<const char*, Shape>>{
           {"a", {37, 5}}, {"b", {11}}, {"c", {16, 9}}, {"d", {3, 3}}})
    params.push_back(make_parameter(name, shape, shape, -1, {}, InitKind::normal, 0.5, DType::bf16, Device::cpu, 4));
  std::vector<Parameter*> ptrs;
  for (Parameter& p : params) ptrs.push_back(&p);
  Optimizer opt(ptrs, {.distributed = true, .bucket_elements = 100, .split_master = true}, *dp);
  std::vector<Tensor> masters;
  for (const Parameter& p : params) {
    Tensor t = Tensor::empty(p.value.shape(), DType::f32);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data<float>()[i] = std::sin(0.91f * float(i) + float(p.name[0])) * 0.3f + 1e-7f * float(i);
    masters.push_back(t);
  }
  opt.scatter_state("master", masters);
  const std::vector<Tensor> back = opt.gather_state("master");
  ASSERT_EQ(back.size(), masters.size());
  for (size_t k = 0; k < masters.size(); ++k) {
    ASSERT_EQ(back[k].dtype(), DType::f32);
    EXPECT_EQ(std::memcmp(back[k].data_ptr(), masters[k].data_ptr(), masters[k].nbytes()), 0) << params[k].name;
    for (int64_t i = 0; i < masters[k].numel(); ++i) {
      bf16 want;
      uint16_t low;
      split_master(masters[k].data<float>()[i], want, low);
      EXPECT_EQ(params[k].value.data<bf16>()[i].bits, want.bits) << params[k].name << " " << i;
    }
  }
}

namespace {

// A group that passes every call to `inner` and keeps a log of the overlapped collectives' marks and waits. Its
// marks number the collectives started since the last wait_started(), as NCCL's events do.
class RecordingComm : public Comm {
 public:
  explicit RecordingComm(Comm& inner) : inner_(inner) {}
  std::vector<std::string> log;

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  void all_reduce(Tensor& t, ReduceOp op) override { inner_.all_reduce(t, op); }
  void reduce_scatter(Tensor& out, const Tensor& in) override { inner_.reduce_scatter(out, in); }
  void all_gather(Tensor& out, const Tensor& in) override { inner_.all_gather(out, in); }
  void start_all_reduce(Tensor& t, double scale) override { inner_.start_all_reduce(t, scale); }
  void start_reduce_scatter(Tensor& out, const Tensor& in, double scale) override {
    inner_.start_reduce_scatter(out, in, scale);
  }
  void start_all_gather(Tensor& out, const Tensor& in) override { inner_.start_all_gather(out, in); }
  void wait_started() override {
    log.push_back("wait all");
    marks_ = 0;
  }
  int started_mark() override {
    log.push_back(str("mark ", marks_));
    return marks_++;
  }
  void wait_started_until(int mark) override {
    EXPECT_LT(mark, marks_) << "a mark that wait_started() has forgotten";
    log.push_back(str("wait ", mark));
  }
  void broadcast(Tensor& t, int root) override { inner_.broadcast(t, root); }
  void send(const Tensor& t, int peer) override { inner_.send(t, peer); }
  void recv(Tensor& t, int peer) override { inner_.recv(t, peer); }
  void exchange(const std::vector<std::pair<Tensor, int>>& sends,
                const std::vector<std::pair<Tensor, int>>& recvs) override {
    inner_.exchange(sends, recvs);
  }
  void all_to_all_v(Tensor& out, const std::vector<int64_t>& recv_counts, const Tensor& in,
                    const std::vector<int64_t>& send_counts) override {
    inner_.all_to_all_v(out, recv_counts, in, send_counts);
  }
  void barrier() override { inner_.barrier(); }

 private:
  Comm& inner_;
  int marks_ = 0;
};

}  // namespace

// overlap_param_gather: step() marks each bucket's all-gather and returns without waiting; the next forward waits
// for each bucket once, when it reaches the bucket's first parameter, in the model's order; a second forward waits
// for none, and the next reduction forgets the marks. Without it the step waits for all.
TEST_F(DistributedOptimizer, OverlappedParamGatherWaitsForEachBucketWhenTheForwardReachesIt) {
  const MockSamples data(8, 16, s.vocab, 9);
  BatchOptions bo;
  bo.micro_batch_size = 2;
  bo.vocab_size = s.vocab;
  const Batch batch = MicroBatches(data, bo).get(0, 0);
  for (const bool overlap : {true, false}) {
    RecordingComm group(*dp);
    GptModel model(s, ctx, StageLayout::whole(s));
    OptimizerConfig cfg{.distributed = true, .bucket_elements = 3000, .overlap_param_gather = overlap};
    Optimizer opt(model.parameters(), cfg, group);
    const int buckets = opt.buckets();
    ASSERT_GT(buckets, 3);
    model.set_params_needed([&](const std::vector<Parameter*>& needed) { opt.await_values(needed); });
    opt.reduce_gradients();
    group.log.clear();
    opt.step(1e-2);
    std::vector<std::string> want;
    for (int b = 0; b < buckets; ++b) want.push_back(str("mark ", b));
    if (!overlap) want.push_back("wait all");
    EXPECT_EQ(group.log, want) << "step, overlap " << overlap;
    group.log.clear();
    ModelSaved saved;
    for (int pass = 0; pass < 2; ++pass)
      model.loss(model.forward_layers(model.embed(batch), batch, saved), batch, saved);
    want.clear();
    if (overlap)
      for (int b = 0; b < buckets; ++b) want.push_back(str("wait ", b));
    EXPECT_EQ(group.log, want) << "forward, overlap " << overlap;
    group.log.clear();
    opt.reduce_gradients();
    opt.await_all_values();
    EXPECT_EQ(group.log, std::vector<std::string>{"wait all"}) << "next reduction, overlap " << overlap;
  }
}
