// weft/src/tokenizer/jinja.h v1 — the Jinja subset that models' chat templates are written in, rendered as
// transformers' apply_chat_template renders them (jinja2 with trim_blocks and lstrip_blocks, Python's semantics).
//
// Supported: {{ }}, {# #}, if/elif/else, for (tuple targets, `if` filter, else, loop.index/index0/first/last/length/
// revindex/revindex0/previtem/nextitem), set (also ns.attr and block set), macro, break/continue, generation; literals,
// lists, dicts, slices, Python's operators, `x if c else y`; the filters and tests chat templates use (trim, tojson,
// length, selectattr, rejectattr, map, join, default, items, ...); string/dict methods (strip, split, startswith,
// items, get, ...); raise_exception, namespace, range, strftime_now. Anything else is an error naming the line.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace weft {

namespace jinja {
struct Node;
}

class JinjaTemplate {
 public:
  // Parses `source`; `name` (e.g. "tokenizer_config.json's chat_template") prefixes every error.
  JinjaTemplate(const std::string& source, std::string name);
  ~JinjaTemplate();
  JinjaTemplate(JinjaTemplate&&) noexcept;
  // The text for the variables of `context` (a JSON object); raise_exception and runtime errors throw weft::Error.
  std::string render(const nlohmann::ordered_json& context) const;

 private:
  std::string name_;
  std::unique_ptr<std::vector<jinja::Node>> body_;
};

}  // namespace weft
