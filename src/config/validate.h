// weft/src/config/validate.h v1 — cross-key checks of a loaded Config against the job it runs in.
#pragma once
#include <vector>

#include "config/config.h"

namespace weft {

// Throws ConfigError naming the key, where it was set and what was expected, for the first inconsistency:
// shapes that do not divide, a layout that does not match the world size, batch sizes that do not tile, ...
void validate_config(const Config& c, int world_size);

// Checks that the files the deck names exist (data.prefix's .bin/.idx), naming the key when one does not.
void validate_inputs(const Config& c);

// Megatron's split string ("969,30,1") normalised to three fractions; throws ConfigError on bad input.
std::vector<double> parse_split(const Config& c);

}  // namespace weft
