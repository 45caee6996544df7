// weft/src/config/deck.cpp v1 — INI decks → Config through the Boost.Program_options schema.
//
// Boost parses and types each value; this file adds what Boost's INI parser lacks for users: includes, and
// errors that point at the file and line of the offending key.
#include "config/deck.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "config/schema.h"
#include "util/error.h"

#ifndef WEFT_INPUTS_DIR
#define WEFT_INPUTS_DIR "inputs"
#endif

namespace weft {
namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Removes a comment: '#' or ';' at the start of a line, or after whitespace.
std::string strip_comment(const std::string& line) {
  for (size_t i = 0; i < line.size(); ++i)
    if ((line[i] == '#' || line[i] == ';') && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t'))
      return line.substr(0, i);
  return line;
}

fs::path resolve_include(const fs::path& from_file, const std::string& name, const std::string& where) {
  const fs::path rel = from_file.parent_path() / name;
  if (fs::exists(rel)) return rel;
  const fs::path preset = fs::path(WEFT_INPUTS_DIR) / "models" / name;
  if (fs::exists(preset)) return preset;
  throw ConfigError(str(where, ": include '", name, "' not found (looked in ", rel.parent_path().string(), " and ",
                        preset.parent_path().string(), ")"));
}

void read_file(const fs::path& path, std::vector<std::string>& stack, std::map<std::string, DeckEntry>& out) {
  const std::string file = path.string();
  if (std::find(stack.begin(), stack.end(), fs::weakly_canonical(path).string()) != stack.end())
    throw ConfigError(str(file, ": include cycle"));
  std::ifstream in(path);
  if (!in) throw ConfigError(str("cannot open deck '", file, "'"));
  stack.push_back(fs::weakly_canonical(path).string());

  std::map<std::string, DeckEntry> included, own;
  std::string section, raw;
  int lineno = 0;
  while (std::getline(in, raw)) {
    ++lineno;
    const std::string where = str(file, ":", lineno);
    const std::string line = trim(strip_comment(raw));
    if (line.empty()) continue;
    if (line.front() == '[') {
      if (line.back() != ']' || line.size() < 3) throw ConfigError(str(where, ": malformed section header '", line, "'"));
      section = trim(line.substr(1, line.size() - 2));
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) throw ConfigError(str(where, ": expected 'key = value' or '[section]', got '", line, "'"));
    const std::string name = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (name.empty()) throw ConfigError(str(where, ": missing key before '='"));
    if (name == "include" && section.empty()) {
      std::map<std::string, DeckEntry> sub;
      read_file(resolve_include(path, value, where), stack, sub);
      for (auto& [k, e] : sub) included[k] = e;
      continue;
    }
    const std::string key = section.empty() ? name : section + "." + name;
    if (auto it = own.find(key); it != own.end())
      throw ConfigError(str(where, ": key '", key, "' is set twice in this file (first at line ", it->second.line, ")"));
    own[key] = DeckEntry{key, value, file, lineno};
  }
  stack.pop_back();
  for (auto& [k, e] : included) out[k] = e;
  for (auto& [k, e] : own) out[k] = e;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(const std::string& key, const po::options_description& schema) {
  std::string best;
  size_t best_d = 4;
  for (const auto& o : schema.options()) {
    const size_t d = edit_distance(key, o->long_name());
    if (d < best_d) best_d = d, best = o->long_name();
  }
  return best.empty() ? "" : str(" (did you mean '", best, "'?)");
}

// What a value of this schema type should look like, for error messages.
std::string expectation(const po::option_description& o) {
  std::string type = o.semantic()->name();
  type = type.substr(0, type.find(' '));
  if (type == "int") return "an integer";
  if (type == "float") return "a number";
  if (type == "bool") return "true or false";
  return type;
}

std::string where_of(const DeckEntry& e) { return e.file == "command line" ? e.file : str(e.file, ":", e.line); }

}  // namespace

std::vector<DeckEntry> read_deck(const std::string& path) {
  std::vector<std::string> stack;
  std::map<std::string, DeckEntry> entries;
  read_file(path, stack, entries);
  std::vector<DeckEntry> out;
  for (auto& [k, e] : entries) out.push_back(e);
  return out;
}

std::vector<DeckEntry> parse_overrides(const std::vector<std::string>& args) {
  std::vector<DeckEntry> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) throw ConfigError(str("command line: expected --section.key=value, got '", a, "'"));
    const auto eq = a.find('=');
    DeckEntry e{a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2), "", "command line", 0};
    if (eq != std::string::npos) {
      e.value = a.substr(eq + 1);
    } else {
      if (i + 1 >= args.size()) throw ConfigError(str("command line: '", a, "' needs a value"));
      e.value = args[++i];
    }
    out.push_back(e);
  }
  return out;
}

std::string Config::where(const std::string& key) const {
  auto it = origin.find(key);
  return str("key '", key, "' (", it == origin.end() ? "default" : it->second, ")");
}

Config load_config(const std::string& deck_path, const std::vector<std::string>& overrides) {
  Config cfg;
  cfg.deck_path = deck_path;
  const po::options_description schema = deck_schema(cfg);

  std::map<std::string, DeckEntry> merged;
  for (auto& e : read_deck(deck_path)) merged[e.key] = e;
  for (auto& e : parse_overrides(overrides)) merged[e.key] = e;

  po::variables_map vm;
  for (auto& [key, e] : merged) {
    const po::option_description* o = schema.find_nothrow(key, false);
    if (!o) throw ConfigError(str(where_of(e), ": unknown key '", key, "'", suggestion(key, schema)));
    po::parsed_options one(&schema);
    one.options.emplace_back(key, std::vector<std::string>{e.value});
    try {
      po::store(one, vm);
    } catch (const po::error&) {
      throw ConfigError(str(where_of(e), ": key '", key, "' expects ", expectation(*o), ", got '", e.value, "'"));
    }
    cfg.origin[key] = where_of(e);
    cfg.values[key] = e.value;
  }
  for (const auto& o : schema.options())
    if (o->semantic()->is_required() && !vm.count(o->long_name()))
      throw ConfigError(str(deck_path, ": missing required key '", o->long_name(), "' (", expectation(*o), ": ",
                            o->description(), ")"));
  po::notify(vm);
  return cfg;
}

}  // namespace weft
