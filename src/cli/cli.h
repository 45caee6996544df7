// weft/src/cli/cli.h v3 — the subcommands; each takes the arguments after its name.
#pragma once
#include <string>
#include <vector>

#include "config/config.h"
#include "dist/mpi_env.h"

namespace weft {

using Args = std::vector<std::string>;

int cmd_train(const Args& args, const MpiEnv& mpi);       // weft train DECK [--section.key=value ...]
int cmd_samples(const Args& args, const MpiEnv& mpi);     // weft samples DECK --num N --output FILE.jsonl
int cmd_preprocess(const Args& args, const MpiEnv& mpi);  // weft preprocess --input F.jsonl ...
int cmd_convert(const Args& args, const MpiEnv& mpi);     // weft convert --from DIR --to DIR --format hf|native
int cmd_forward(const Args& args, const MpiEnv& mpi);     // weft forward --model DIR --input ids.npy ...
int cmd_tokenize(const Args& args, const MpiEnv& mpi);    // weft tokenize --tokenizer PATH [--decode]
int cmd_plan(const Args& args, const MpiEnv& mpi);        // weft plan DECK [--ranks N] [--section.key=value ...]
int cmd_plot(const Args& args, const MpiEnv& mpi);
int cmd_eval(const Args& args, const MpiEnv& mpi);
int cmd_generate(const Args& args, const MpiEnv& mpi);    // weft generate --model DIR --prompt-ids F | --prompt T        // weft eval DECK --model DIR | --model DIR --task F        // weft plot RUN... [--output FILE.png] [--keys K,...]
// weft sweep DECK --out DIR [--section.key=V1,V2 ...]: one plain process (no MPI) that launches each point's job.
int cmd_sweep(const Args& args);

// Loads and validates a deck (and, with check_inputs, that its input files exist) on every rank; if any rank fails,
// the first failing rank's message is raised as a ConfigError there (and an empty one elsewhere), so the job exits
// together with one line.
Config load_config_collectively(const std::string& deck, const Args& overrides, int world_size_for_checks,
                                bool check_inputs = true);

// "weft 0.1.0 (commit …), MPI: …, CUDA …, NCCL …" — what `weft --version` prints.
std::string version_text();

// A process that Slurm started as one task of several (SLURM_STEP_NUM_TASKS > 1) but that MPI started alone
// (srun without a working --mpi plugin) would train on its own into the others' folders: a ConfigError saying so.
void check_not_a_lone_rank(const MpiEnv& mpi);

// `text` as a positive integer; a ConfigError naming `what` ("weft samples: --num") otherwise.
int64_t parse_count(const std::string& what, const std::string& text);

// Splits "DECK --a=b ..." into the deck path and the overrides; handles --help by printing the schema.
// Returns false when help was printed.
bool parse_deck_args(const Args& args, const char* usage, std::string& deck, Args& overrides, const MpiEnv& mpi);

}  // namespace weft
