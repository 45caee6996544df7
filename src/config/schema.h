// weft/src/config/schema.h v1 — every deck key, declared once: type, default, one-line doc.
#pragma once
#include <boost/program_options.hpp>
#include <iosfwd>

#include "config/config.h"

namespace weft {

// The deck keys of `weft train` (and the subcommands that read decks), bound to the fields of `c`.
boost::program_options::options_description deck_schema(Config& c);

// Prints every key of `schema` as "section.key  type (=default)  doc", grouped by section.
void print_schema(std::ostream& os, const boost::program_options::options_description& schema);

}  // namespace weft
