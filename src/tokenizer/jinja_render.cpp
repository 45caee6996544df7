// weft/src/tokenizer/jinja_render.cpp v2 — renders a parsed template: scopes (a for body and a macro get their own,
// so `set` inside a loop does not leak out, as in jinja2; namespaces carry values out), expressions with Python's
// operators, loops with jinja2's `loop` object, and the global functions chat templates call.
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "tokenizer/jinja.h"
#include "tokenizer/jinja_syntax.h"
#include "util/error.h"

namespace weft {
namespace jinja {
namespace {

enum class Flow { normal, break_, continue_ };

class Renderer {
 public:
  Renderer(const std::string& name, const Json& context) : name_(name) {
    scopes_.emplace_back();
    for (const auto& [k, v] : context.items()) scopes_.back()[k] = {v, false};
  }

  Flow render(const Body& body, std::string& out) {
    for (const Node& n : body) {
      const Flow f = render(n, out);
      if (f != Flow::normal) return f;
    }
    return Flow::normal;
  }

 private:
  [[noreturn]] void error(int line, const std::string& what) const { template_error(name_, line, what); }

  Value* find(const std::string& n) {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      const auto it = s->find(n);
      if (it != s->end()) return &it->second;
    }
    return nullptr;
  }

  Flow render(const Node& n, std::string& out) {
    if (++steps_ > kMaxSteps) error(n.line, str("the template runs more than ", kMaxSteps, " statements"));
    switch (n.kind) {
      case Node::Kind::text:
        out += n.text;
        check_size(out, name_, n.line);
        return Flow::normal;
      case Node::Kind::output:
        out += to_str(eval(*n.expr));
        check_size(out, name_, n.line);
        return Flow::normal;
      case Node::Kind::generation: return render(n.body, out);
      case Node::Kind::break_: return Flow::break_;
      case Node::Kind::continue_: return Flow::continue_;
      case Node::Kind::if_:
        for (const auto& [cond, body] : n.branches)
          if (!cond || truthy(eval(*cond))) return render(body, out);
        return Flow::normal;
      case Node::Kind::for_: render_for(n, out); return Flow::normal;
      case Node::Kind::set: render_set(n); return Flow::normal;
      case Node::Kind::macro: macros_[n.text] = &n; return Flow::normal;
    }
    return Flow::normal;
  }

  // Binds `n`'s targets (a loop's variables, a set's names) to `v` in `scope`; several targets unpack a list.
  void unpack(const Node& n, const Value& v, std::unordered_map<std::string, Value>& scope, const char* what) {
    if (n.targets.size() == 1) {
      scope[n.targets[0]] = v;
      return;
    }
    if (!v.json.is_array() || v.json.size() != n.targets.size())
      error(n.line, str("cannot unpack ", to_str(v), " into ", n.targets.size(), " ", what));
    for (size_t i = 0; i < n.targets.size(); ++i) scope[n.targets[i]] = {v.json[i], false};
  }

  void render_for(const Node& n, std::string& out) {
    std::vector<Value> items = elements(eval(*n.expr), name_, n.line, "a for loop");
    if (n.cond) {  // the loop's `if` filters before `loop` counts
      std::vector<Value> kept;
      for (const Value& x : items) {
        scopes_.emplace_back();
        unpack(n, x, scopes_.back(), "loop variables");
        if (truthy(eval(*n.cond))) kept.push_back(x);
        scopes_.pop_back();
      }
      items = std::move(kept);
    }
    const int64_t len = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < len; ++i) {
      if (++steps_ > kMaxSteps) error(n.line, str("the template runs more than ", kMaxSteps, " statements"));
      Json loop = {{"index", i + 1}, {"index0", i}, {"first", i == 0}, {"last", i == len - 1}, {"length", len},
                   {"revindex", len - i}, {"revindex0", len - i - 1}};
      if (i > 0) loop["previtem"] = items[static_cast<size_t>(i - 1)].json;
      if (i + 1 < len) loop["nextitem"] = items[static_cast<size_t>(i + 1)].json;
      scopes_.emplace_back();
      scopes_.back()["loop"] = {loop, false};
      unpack(n, items[static_cast<size_t>(i)], scopes_.back(), "loop variables");
      const Flow f = render(n.body, out);
      scopes_.pop_back();
      if (f == Flow::break_) break;
    }
    if (len == 0) render(n.else_body, out);
  }

  void render_set(const Node& n) {
    Value v;
    if (n.expr) {
      v = eval(*n.expr);
    } else {
      std::string text;
      render(n.body, text);
      v = {text, false};
    }
    if (!n.attr.empty()) {
      Value* target = find(n.targets[0]);
      if (!target || !target->json.is_object())
        error(n.line, str("cannot set '", n.attr, "' on '", n.targets[0], "': not a namespace"));
      target->json[n.attr] = v.json;
      return;
    }
    unpack(n, v, scopes_.back(), "variables");
  }

  // A short text of an expression for errors ("message.content").
  static std::string describe(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::name: return e.text;
      case Expr::Kind::attr: return describe(*e.args[0]) + "." + e.text;
      case Expr::Kind::index: return describe(*e.args[0]) + "[...]";
      case Expr::Kind::call: return describe(*e.args[0]) + "(...)";
      default: return "a value";
    }
  }

  Value subject(const Expr& e) {
    Value v = eval(*e.args[0]);
    if (v.undefined) error(e.line, str("'", describe(*e.args[0]), "' is undefined"));
    return v;
  }

  Value eval(const Expr& e) {
    if (++steps_ > kMaxSteps) error(e.line, str("the template runs more than ", kMaxSteps, " statements"));
    switch (e.kind) {
      case Expr::Kind::literal: return {e.value, false};
      case Expr::Kind::name: {
        const Value* v = find(e.text);
        return v ? *v : Value::undef();
      }
      case Expr::Kind::attr: {
        const Value v = subject(e);
        const bool digits = std::all_of(e.text.begin(), e.text.end(), ::isdigit);
        return item(v, digits ? Value{parse_digits(e.text), false} : Value{e.text, false});
      }
      case Expr::Kind::index: {
        const Value v = subject(e);
        return item(v, eval(*e.args[1]));
      }
      case Expr::Kind::slice: return slice(e);
      case Expr::Kind::call: return call(e);
      case Expr::Kind::filter: {
        std::vector<Value> args;
        std::vector<std::pair<std::string, Value>> kwargs;
        evaluate_arguments(e, args, kwargs);
        return apply_filter(e.text, eval(*e.args[0]), args, kwargs, name_, e.line);
      }
      case Expr::Kind::test: {
        std::vector<Value> args;
        std::vector<std::pair<std::string, Value>> kwargs;
        evaluate_arguments(e, args, kwargs);
        return {apply_test(e.text, eval(*e.args[0]), args, name_, e.line) != e.negate, false};
      }
      case Expr::Kind::unary: {
        const Value v = eval(*e.args[0]);
        if (e.text == "not") return {!truthy(v), false};
        if (!v.json.is_number()) error(e.line, str("unary ", e.text, " needs a number"));
        if (e.text == "+") return v;
        if (v.json.is_number_integer() && v.json.get<int64_t>() != INT64_MIN) return {-v.json.get<int64_t>(), false};
        return {-v.json.get<double>(), false};
      }
      case Expr::Kind::binary: return binary(e);
      case Expr::Kind::ternary:
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        return e.args[2] ? eval(*e.args[2]) : Value::undef();
      case Expr::Kind::list: {
        Json out = Json::array();
        for (const auto& x : e.args) out.push_back(eval(*x).json);
        return {out, false};
      }
      case Expr::Kind::dict: {
        Json out = Json::object();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) out[to_str(eval(*e.args[i]))] = eval(*e.args[i + 1]).json;
        return {out, false};
      }
    }
    return Value::undef();
  }

  void evaluate_arguments(const Expr& e, std::vector<Value>& args, std::vector<std::pair<std::string, Value>>& kwargs) {
    for (size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
    for (const auto& [k, x] : e.kwargs) kwargs.emplace_back(k, eval(*x));
  }

  Value slice(const Expr& e) {
    const Value v = subject(e);
    std::vector<Json> items;
    const bool is_string = v.json.is_string();
    if (is_string)
      for (const auto& c : code_points(v.json.get<std::string>())) items.push_back(c);
    else if (v.json.is_array())
      items.assign(v.json.begin(), v.json.end());
    else
      error(e.line, str("cannot slice ", describe(*e.args[0]), ": not a list or string"));
    const int64_t n = static_cast<int64_t>(items.size());
    auto bound = [&](const ExprPtr& x, int64_t dflt) -> int64_t {
      if (!x) return dflt;
      const Value b = eval(*x);
      if (b.json.is_null()) return dflt;
      if (!b.json.is_number_integer()) error(e.line, "slice bounds must be integers");
      return b.json.get<int64_t>();
    };
    int64_t step = bound(e.args[3], 1);
    if (step == 0) error(e.line, "slice step cannot be zero");
    step = std::clamp<int64_t>(step, -n - 1, n + 1);  // a longer stride takes the same one item
    // Python's clamping of slice bounds.
    auto clamp = [&](int64_t i) {
      if (i < 0) i += n;
      return step > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
    };
    const int64_t start = e.args[1] ? clamp(bound(e.args[1], 0)) : (step > 0 ? 0 : n - 1);
    const int64_t stop = e.args[2] ? clamp(bound(e.args[2], 0)) : (step > 0 ? n : -1);
    Json out = Json::array();
    std::string text;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (is_string) text += items[static_cast<size_t>(i)].get<std::string>();
      else out.push_back(items[static_cast<size_t>(i)]);
    }
    return is_string ? Value{text, false} : Value{out, false};
  }

  Value call(const Expr& e) {
    std::vector<Value> args;
    std::vector<std::pair<std::string, Value>> kwargs;
    evaluate_arguments(e, args, kwargs);
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::attr) {
      const Value self = subject(callee);
      return call_method(self, callee.text, args, name_, e.line);
    }
    if (callee.kind != Expr::Kind::name) error(e.line, "only functions, macros and methods can be called");
    const std::string& f = callee.text;
    if (const auto m = macros_.find(f); m != macros_.end()) return call_macro(*m->second, args, kwargs, e.line);
    if (f == "raise_exception")
      error(e.line, str("the template raised an error: ", args.empty() ? std::string("(no message)") : to_str(args[0])));
    if (f == "namespace" || f == "dict") {
      Json ns = Json::object();
      for (const auto& [k, v] : kwargs) ns[k] = v.json;
      return {ns, false};
    }
    if (f == "range") {
      if (args.empty() || args.size() > 3) error(e.line, "range() takes 1 to 3 integers");
      const int64_t a = args.size() > 1 ? integer(args[0], name_, e.line, "range()'s start") : 0;
      const int64_t b = integer(args[args.size() > 1 ? 1 : 0], name_, e.line, "range()'s stop");
      const int64_t step = args.size() > 2 ? integer(args[2], name_, e.line, "range()'s step") : 1;
      if (step == 0) error(e.line, "range() step cannot be zero");
      Json out = Json::array();
      for (int64_t i = a; step > 0 ? i < b : i > b;) {
        if (static_cast<int64_t>(out.size()) == kMaxListItems)
          error(e.line, str("a list of more than ", kMaxListItems, " items"));
        out.push_back(i);
        if (__builtin_add_overflow(i, step, &i)) break;
      }
      return {out, false};
    }
    if (f == "strftime_now") {
      const std::time_t now = std::time(nullptr);
      char buf[256];
      std::tm tm{};
      localtime_r(&now, &tm);
      const size_t len = std::strftime(buf, sizeof buf, args.empty() ? "" : to_str(args[0]).c_str(), &tm);
      return {std::string(buf, len), false};
    }
    error(e.line, str("the function ", f, "() is not supported (weft's Jinja has raise_exception, namespace, range, "
                                          "dict, strftime_now and the template's macros)"));
  }

  Value call_macro(const Node& m, const std::vector<Value>& args,
                   const std::vector<std::pair<std::string, Value>>& kwargs, int line) {
    if (args.size() > m.params.size()) error(line, str("macro ", m.text, " takes ", m.params.size(), " arguments"));
    std::unordered_map<std::string, Value> scope;
    for (size_t i = 0; i < m.params.size(); ++i) {
      if (i < args.size()) scope[m.params[i]] = args[i];
      else scope[m.params[i]] = m.defaults[i] ? eval(*m.defaults[i]) : Value::undef();
    }
    for (const auto& [k, v] : kwargs) {
      if (std::find(m.params.begin(), m.params.end(), k) == m.params.end())
        error(line, str("macro ", m.text, " has no parameter '", k, "'"));
      scope[k] = v;
    }
    if (++call_depth_ > kMaxCallDepth) error(line, str("macro calls nested deeper than ", kMaxCallDepth));
    scopes_.push_back(std::move(scope));
    std::string out;
    render(m.body, out);
    scopes_.pop_back();
    --call_depth_;
    return {out, false};
  }

  Value binary(const Expr& e) {
    const std::string& op = e.text;
    const Value a = eval(*e.args[0]);
    if (op == "and") return truthy(a) ? eval(*e.args[1]) : a;
    if (op == "or") return truthy(a) ? a : eval(*e.args[1]);
    const Value b = eval(*e.args[1]);
    if (op == "~") {
      Value out{to_str(a) + to_str(b), false};
      check_size(out.json.get_ref<const std::string&>(), name_, e.line);
      return out;
    }
    if (op == "==") return {equal(a, b), false};
    if (op == "!=") return {!equal(a, b), false};
    if (op == "in" || op == "not in") {
      if (b.undefined || !(b.json.is_array() || b.json.is_object() || b.json.is_string()))
        error(e.line, str("'in' needs a list, dict or string on its right, not ", to_str(b)));
      const bool in = apply_test("in", a, {b}, name_, e.line);
      return {op == "in" ? in : !in, false};
    }
    if (a.undefined || b.undefined)
      error(e.line, str("'", describe(*e.args[a.undefined ? 0 : 1]), "' is undefined (in an '", op, "')"));
    const Json& x = a.json;
    const Json& y = b.json;
    if (op == "+") {
      if (x.is_string() && y.is_string()) {
        Value out{x.get<std::string>() + y.get<std::string>(), false};
        check_size(out.json.get_ref<const std::string&>(), name_, e.line);
        return out;
      }
      if (x.is_array() && y.is_array()) {
        Json out = x;
        out.insert(out.end(), y.begin(), y.end());
        check_size(out, name_, e.line);
        return {out, false};
      }
    }
    if (op == "*" && x.is_string() && y.is_number_integer()) {
      const std::string& unit = x.get_ref<const std::string&>();
      const int64_t times = std::max<int64_t>(0, y.get<int64_t>());
      if (!unit.empty() && times > kMaxStringBytes / static_cast<int64_t>(unit.size()))
        error(e.line, str("a string longer than ", kMaxStringBytes, " bytes"));
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += unit;
      return {out, false};
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      if (!((x.is_number() && y.is_number()) || (x.is_string() && y.is_string())))
        error(e.line, str("cannot compare ", to_str(a), " and ", to_str(b)));
      const bool lt = x < y, gt = y < x;
      return {op == "<" ? lt : op == ">" ? gt : op == "<=" ? !gt : !lt, false};
    }
    if (!x.is_number() || !y.is_number())
      error(e.line, str("'", op, "' cannot combine ", to_str(a), " and ", to_str(b)));
    const bool ints = x.is_number_integer() && y.is_number_integer();
    const double p = x.get<double>(), q = y.get<double>();
    if ((op == "/" || op == "//" || op == "%") && q == 0) error(e.line, "division by zero");
    if (op == "/") return {p / q, false};
    if (ints) {  // Python's integers, in 64 bits: an overflow is an error rather than a wrong number
      const int64_t i = x.get<int64_t>(), j = y.get<int64_t>();
      int64_t r = 0;
      auto exact = [&](bool overflow) -> Value {
        if (overflow) error(e.line, str("integer overflow in ", i, " ", op, " ", j));
        return {r, false};
      };
      if (op == "+") return exact(__builtin_add_overflow(i, j, &r));
      if (op == "-") return exact(__builtin_sub_overflow(i, j, &r));
      if (op == "*") return exact(__builtin_mul_overflow(i, j, &r));
      if (op == "//" || op == "%") {
        if (j == -1) return exact(op == "//" ? __builtin_sub_overflow(int64_t{0}, i, &r) : (r = 0, false));
        r = i / j - ((i % j != 0) && ((i < 0) != (j < 0)));  // floor division
        return op == "//" ? Value{r, false} : Value{i - r * j, false};
      }
      if (op == "**" && j >= 0) {
        if (i == 0 || i == 1) return {j == 0 ? int64_t{1} : i, false};
        if (i == -1) return {j % 2 ? int64_t{-1} : int64_t{1}, false};
        r = 1;
        for (int64_t k = 0; k < j; ++k)  // |i| >= 2 overflows within 63 steps
          if (__builtin_mul_overflow(r, i, &r)) return exact(true);
        return {r, false};
      }
    }
    if (op == "+") return {p + q, false};
    if (op == "-") return {p - q, false};
    if (op == "*") return {p * q, false};
    if (op == "//") return {std::floor(p / q), false};
    if (op == "%") return {p - q * std::floor(p / q), false};
    return {std::pow(p, q), false};
  }

  const std::string& name_;
  std::vector<std::unordered_map<std::string, Value>> scopes_;
  std::unordered_map<std::string, const Node*> macros_;
  int call_depth_ = 0;
  int64_t steps_ = 0;
};

}  // namespace
}  // namespace jinja

JinjaTemplate::JinjaTemplate(const std::string& source, std::string name)
    : name_(std::move(name)), body_(std::make_unique<jinja::Body>(jinja::parse_template(source, name_))) {}
JinjaTemplate::~JinjaTemplate() = default;
JinjaTemplate::JinjaTemplate(JinjaTemplate&&) noexcept = default;

std::string JinjaTemplate::render(const nlohmann::ordered_json& context) const {
  std::string out;
  jinja::Renderer(name_, context).render(*body_, out);
  return out;
}

}  // namespace weft
