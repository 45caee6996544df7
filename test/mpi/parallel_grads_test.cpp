// weft/test/mpi/parallel_grads_test.cpp v1 — gradients of model-parallel layouts equal the single-rank model's,
// parameter by parameter (f64, so the bound is near rounding: |Δ| ≤ 1e-9·max|ref|, far inside 1e-5).
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>

#include "data/batches.h"
#include "data/mock_dataset.h"
#include "dist/process_grid.h"
#include "model/gpt_model.h"
#include "parallel/grad_buffer.h"
#include "parallel/schedules.h"
#include "parallel/tensor_parallel.h"

using namespace weft;

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
};

// Runs 4 micro-batches through `layout` and through a single-rank model, and compares loss and every gradient.
void compare(const Layout& l) {
  const ModelSpec s = spec(l.tied);
  const ProcessGrid grid(world(), rank(), {l.tp, 1, 1, l.pp});
  auto tp = make_mpi_comm("tp", grid.groups("tp"));
  auto pp = make_mpi_comm("pp", grid.groups("pp"));
  auto emb = make_mpi_comm("embedding", grid.groups("embedding"));
  GroupList singles;
  for (int r = 0; r < world(); ++r) singles.push_back({r});
  auto self = make_mpi_comm("self", singles);

  const MockSamples data(64, 12, s.vocab, 9);
  BatchOptions bo;
  bo.micro_batch_size = 2;
  bo.vocab_size = s.vocab;
  const MicroBatches batches(data, bo);
  auto micro = [&](int64_t m) { return batches.get(0, m); };

  LayerContext ref_ctx{self.get(), false, DType::f64, Device::cpu, 3};
  GptModel ref(s, ref_ctx, StageLayout::whole(s));
  PipelineSchedule ref_schedule{self.get(), {&ref}, false, 1};
  const double ref_loss = ref_schedule.run(micro, 4, false);

  LayerContext ctx{tp.get(), l.sp, DType::f64, Device::cpu, 3};
  std::vector<std::unique_ptr<GptModel>> chunks;
  PipelineSchedule schedule{pp.get(), {}, l.sp, l.tp};
  std::vector<Parameter*> params;
  for (int c = 0; c < l.vpp; ++c) {
    chunks.push_back(std::make_unique<GptModel>(s, ctx, StageLayout::of(s, grid.pp_rank(), l.pp, c, l.vpp, 0, 0)));
    schedule.chunks.push_back(chunks.back().get());
    for (Parameter* p : chunks.back()->parameters()) params.push_back(p);
  }
  const double loss = schedule.run(micro, 4, false);
  reduce_shared_gradients(params, *tp, *emb, s.tie_embeddings, l.pp);
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
                                  << l.sp << ")";
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

TEST(ParallelGradients, TensorTimesPipeline) {
  if (world() != 4) GTEST_SKIP() << "runs on 4 ranks";
  compare({2, 2, 1, true, true});
  compare({2, 2, 2, false, false});
}
