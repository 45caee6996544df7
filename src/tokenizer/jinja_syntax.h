// weft/src/tokenizer/jinja_syntax.h v2 — the parsed form of a Jinja template and the values it computes with, shared
// by the parser (jinja_parse.cpp), the renderer (jinja_render.cpp), Python's view of values (jinja_values.cpp) and
// the built-in filters (jinja_builtins.cpp).
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace weft::jinja {

using Json = nlohmann::ordered_json;  // dicts keep their keys' order, as Python's do (tojson prints them so)

// A value: JSON data, or Jinja's `undefined` (a missing variable, key or attribute).
struct Value {
  Json json;
  bool undefined = false;
  static Value undef() { return {Json(), true}; }
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal,  // value
    name,     // text
    attr,     // args[0].text
    index,    // args[0][args[1]]
    slice,    // args[0][args[1]:args[2]:args[3]], absent bounds null
    call,     // args[0](args[1:], kwargs)
    filter,   // args[0] | text(args[1:], kwargs)
    test,     // args[0] is [not: negate] text(args[1:])
    unary,    // text ("not", "-", "+") args[0]
    binary,   // args[0] text args[1]
    ternary,  // args[0] if args[1] else args[2] (absent else: null)
    list,     // [args...] (tuples too)
    dict,     // {args[0]: args[1], ...}
  };
  Kind kind;
  int line = 0;
  std::string text;
  Json value;
  bool negate = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  enum class Kind {
    text,        // text
    output,      // {{ expr }}
    if_,         // branches: (condition, body)...; a null condition is the else
    for_,        // for targets in expr [if cond]: body [else else_body]
    set,         // set targets = expr, or set targets[0].attr = expr (attr non-empty), or a block set (body)
    macro,       // macro text(params = defaults): body
    break_,
    continue_,
    generation,  // transformers' {% generation %} block: rendered as its body
  };
  Kind kind;
  int line = 0;
  std::string text, attr;
  ExprPtr expr, cond;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // per param, null where it has none
};

// An error in template `name` at `line`, as "NAME line L: WHAT".
[[noreturn]] void template_error(const std::string& name, int line, const std::string& what);

// Parses Jinja source with transformers' environment settings (trim_blocks, lstrip_blocks); unsupported tags,
// filters and tests are errors naming the line.
Body parse_template(const std::string& source, const std::string& name);

// Python's truth of a value.
bool truthy(const Value& v);
// Python's str() of a value (None, True, 1.5, ['a', 1], {'k': 'v'}; undefined prints as nothing).
std::string to_str(const Value& v);
// Python's == on values.
bool equal(const Value& a, const Value& b);
// "none", "bool", "string", "list", "dict", "int", "float" or "undefined", for errors.
const char* type_name(const Value& v);
// The items a loop or filter iterates: a list's elements, a dict's keys, a string's code points; undefined gives
// none; anything else is an error naming `what`.
std::vector<Value> elements(const Value& v, const std::string& tname, int line, const char* what);

// json.dumps's options, as transformers' tojson filter passes them.
struct JsonStyle {
  int indent = -1;  // < 0: one line
  bool ensure_ascii = false, sort_keys = false;
  std::string item_separator = ", ", key_separator = ": ";
};
// Python's json.dumps(v) with those options.
std::string to_json_text(const Json& v, const JsonStyle& style);
// Whether `name` is a filter / test the renderer knows.
bool is_filter(const std::string& name);
bool is_test(const std::string& name);
// A filter applied to `v`; errors as template_error(tname, line, ...).
Value apply_filter(const std::string& name, const Value& v, const std::vector<Value>& args,
                   const std::vector<std::pair<std::string, Value>>& kwargs, const std::string& tname, int line);
// A test applied to `v`.
bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, const std::string& tname,
                int line);
// A string's, dict's or list's method: `v.name(args)`.
Value call_method(const Value& v, const std::string& name, const std::vector<Value>& args, const std::string& tname,
                  int line);
// `v[key]` / `v.key`: a dict's key, a list's or string's index (negative from the end); undefined where absent.
Value item(const Value& v, const Value& key);
// The code points of UTF-8 `s`, each as its own UTF-8 string (Python indexes and measures strings so).
std::vector<std::string> code_points(const std::string& s);
// An integer argument: `what` names it in the error when `v` is not an integer.
int64_t integer(const Value& v, const std::string& tname, int line, const char* what);
// Decimal digits as an int64, saturating (an index that large is past any list anyway).
int64_t parse_digits(const std::string& digits);

// Bounds that keep a hostile template from exhausting memory, time or the stack: items a list may hold, bytes a
// string (the output too) may hold, statements and expressions one rendering may run, nesting of blocks and
// expressions, depth of macro calls.
constexpr int64_t kMaxListItems = int64_t{1} << 20;
constexpr int64_t kMaxStringBytes = int64_t{1} << 22;
constexpr int64_t kMaxSteps = int64_t{1} << 20;
constexpr int kMaxNesting = 200;
constexpr int kMaxCallDepth = 64;
// Errors when a string or list built by the template passes the bounds above.
void check_size(const std::string& s, const std::string& tname, int line);
void check_size(const Json& list, const std::string& tname, int line);

}  // namespace weft::jinja
