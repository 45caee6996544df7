// weft/src/cli/common.cpp v1 — deck arguments and collective config loading shared by the subcommands.
#include <climits>
#include <cstdio>
#include <iostream>

#include "cli/cli.h"
#include "config/deck.h"
#include "config/schema.h"
#include "config/validate.h"
#include "train/setup.h"

namespace weft {

bool parse_deck_args(const Args& args, const char* usage, std::string& deck, Args& overrides, const MpiEnv& mpi) {
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      if (mpi.rank() == 0) {
        Config c;
        std::cout << "usage: " << usage << "\n\nEvery key can be set in the deck's [section] or on the command line "
                  << "as --section.key=value (which wins).\n";
        print_schema(std::cout, deck_schema(c));
      }
      return false;
    }
  if (args.empty() || args[0].rfind("--", 0) == 0) throw ConfigError(str("usage: ", usage));
  deck = args[0];
  overrides.assign(args.begin() + 1, args.end());
  return true;
}

Config load_config_collectively(const std::string& deck, const Args& overrides, int world_size_for_checks) {
  Config cfg;
  std::string error;
  try {
    cfg = load_config(deck, overrides);
    resolve_model(cfg);
    validate_config(cfg, world_size_for_checks);
    validate_inputs(cfg);
  } catch (const ConfigError& e) {
    error = e.what();
  }
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  int mine = error.empty() ? INT_MAX : rank, first = INT_MAX;
  MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (first != INT_MAX) throw ConfigError(rank == first ? error : "");
  return cfg;
}

int64_t parse_count(const std::string& what, const std::string& text) {
  size_t used = 0;
  int64_t n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || n <= 0)
    throw ConfigError(str(what, " expects a positive integer, got '", text, "'"));
  return n;
}

}  // namespace weft
