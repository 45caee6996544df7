// weft/src/main.cpp v2 — one executable, one subcommand per job: the table of contents of weft.
//
//   weft train DECK          pretrain a Llama-family model from an input deck (cli/train.cpp)
//   weft samples DECK        print the samples training would consume (cli/samples.cpp)
//   weft plan DECK           memory per rank and step time, before a run (cli/plan.cpp)
//   weft preprocess ...      JSONL → Megatron .bin/.idx (cli/preprocess.cpp)
//   weft convert ...         HuggingFace ↔ native checkpoints (cli/convert.cpp)
//   weft forward ...         logits and loss of token ids under a checkpoint (cli/forward.cpp)
//   weft eval ...            validation loss and perplexity, multiple-choice accuracy (cli/eval.cpp)
//   weft generate ...        continue prompts, greedy or sampled (cli/generate.cpp)
//   weft tokenize ...        text ↔ ids with a tokenizer.json (cli/tokenize.cpp)
//   weft plot RUN...         the curves of runs' metrics.jsonl as a PNG (cli/plot.cpp)
//   weft sweep DECK ...      a grid of deck settings, one run each, and their results table (cli/sweep.cpp)
//
// Errors: a bad deck or argument prints one line from rank 0 and exits 2 on every rank; any other failure prints
// one line from the failing rank and aborts the whole MPI job with exit code 1.
#include <cstdio>
#include <map>
#include <string>

#include "cli/cli.h"
#include "dist/mpi_env.h"
#ifdef WEFT_HAVE_CUDA
#include "cuda_ops.h"
#endif

namespace {

const char* kUsage =
    "usage: weft <command> [args]\n"
    "\n"
    "commands:\n"
    "  train DECK [--section.key=value ...]     train a model (mpirun -np N weft train DECK)\n"
    "  samples DECK --num N --output F.jsonl    write the first N samples training would consume\n"
    "  plan DECK [--ranks N]                    the memory each rank will need, and the step time\n"
    "  preprocess --input F.jsonl --tokenizer T --output-prefix P   tokenize JSONL into .bin/.idx (--sft: chats)\n"
    "  tokenize --tokenizer T [--decode]            text ↔ ids, for checking a tokenizer\n"
    "  convert --from DIR --to DIR --format hf|native   convert checkpoints (any tp: mpirun -np N)\n"
    "  forward --model DIR --input ids.npy --output logits.npy   logits and loss of token ids\n"
    "  eval DECK --model DIR | eval --model DIR --task F.jsonl --tokenizer T   loss/perplexity, choice accuracy\n"
    "  generate --model DIR --prompt-ids ids.npy | --prompt TEXT --tokenizer T   continue prompts\n"
    "  plot RUN... [--output F.png]              draw the loss, lr and throughput curves of runs (log dirs)\n"
    "  sweep DECK --out DIR --train.lr=A,B ...   run a grid of settings (here or as a Slurm array), one table\n"
    "\n"
    "weft <command> --help lists a command's options (train: every deck key); weft --version the build.\n";

// `weft sweep` launches MPI jobs of its own, so it does not start MPI itself.
int run_sweep(int argc, char** argv) {
  try {
    return weft::cmd_sweep(weft::Args(argv + 2, argv + argc));
  } catch (const weft::Error& e) {
    std::fprintf(stderr, "weft: error: %s\n", e.what());
    return dynamic_cast<const weft::ConfigError*>(&e) ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft: error: %s\n", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "sweep") return run_sweep(argc, argv);
  weft::MpiEnv mpi(&argc, &argv);
#ifdef WEFT_HAVE_CUDA
  weft::install_cuda_support();
#endif
  const std::map<std::string, int (*)(const weft::Args&, const weft::MpiEnv&)> commands = {
      {"train", weft::cmd_train},     {"samples", weft::cmd_samples}, {"preprocess", weft::cmd_preprocess},
      {"convert", weft::cmd_convert}, {"forward", weft::cmd_forward}, {"tokenize", weft::cmd_tokenize},
      {"plot", weft::cmd_plot},       {"plan", weft::cmd_plan},         {"eval", weft::cmd_eval},
      {"generate", weft::cmd_generate}};
  if (argc >= 2 && std::string(argv[1]) == "--version") {
    if (mpi.rank() == 0) std::printf("%s\n", weft::version_text().c_str());
    return 0;
  }
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    if (mpi.rank() == 0) std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const auto cmd = commands.find(argv[1]);
  if (cmd == commands.end()) {
    if (mpi.rank() == 0) std::fprintf(stderr, "weft: error: unknown command '%s'\n%s", argv[1], kUsage);
    return 2;
  }
  try {
    weft::check_not_a_lone_rank(mpi);
    return cmd->second(weft::Args(argv + 2, argv + argc), mpi);
  } catch (const weft::ConfigError& e) {
    if (*e.what()) std::fprintf(stderr, "weft: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    mpi.abort(e.what(), 1);
  }
}
