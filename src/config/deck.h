// weft/src/config/deck.h v1 — reading input decks (INI with includes) and command-line overrides into a Config.
#pragma once
#include <string>
#include <vector>

#include "config/config.h"

namespace weft {

// One `key = value` line of a deck, with where it was written.
struct DeckEntry {
  std::string key, value, file;
  int line = 0;
};

// Reads `path` and the files it includes (`include = FILE`, relative to the including file, then to the
// installed inputs/models/). A deck's own keys override those of the files it includes; a key set twice in one
// file is an error. Throws ConfigError naming file:line.
std::vector<DeckEntry> read_deck(const std::string& path);

// Parses "--section.key=value" / "--section.key value" arguments.
std::vector<DeckEntry> parse_overrides(const std::vector<std::string>& args);

// The whole pipeline: deck, then overrides on top, typed by the schema, required keys checked.
// Does not check cross-key consistency (validate.h does, once the world size is known).
Config load_config(const std::string& deck_path, const std::vector<std::string>& overrides);

}  // namespace weft
