// weft/src/tokenizer/jinja_builtins.cpp v2 — the filters, tests and string/dict methods that chat templates call,
// each as jinja2 and Python define it (Python's view of the values themselves is in jinja_values.cpp).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>

#include "tokenizer/jinja_syntax.h"
#include "util/error.h"

namespace weft::jinja {

namespace {

using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;

bool is_space(const std::string& c) { return c.size() == 1 && std::isspace(static_cast<unsigned char>(c[0])); }

// Python's str.strip family: `chars` null strips whitespace.
std::string strip_chars(const std::string& s, const Value* chars, bool left, bool right) {
  const auto cps = code_points(s);
  const auto set = chars && chars->json.is_string() ? code_points(chars->json.get<std::string>())
                                                     : std::vector<std::string>{};
  auto strip_it = [&](const std::string& c) {
    return chars && chars->json.is_string() ? std::find(set.begin(), set.end(), c) != set.end() : is_space(c);
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cps[i];
  return out;
}

std::string map_ascii(std::string s, int (*f)(int)) {
  for (char& c : s) c = static_cast<char>(f(static_cast<unsigned char>(c)));
  return s;
}

std::string title_case(const std::string& s) {
  std::string out = s;
  bool start = true;
  for (char& c : out) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    c = static_cast<char>(alpha ? (start ? std::toupper(c) : std::tolower(c)) : c);
    start = !alpha;
  }
  return out;
}

std::string capitalize(const std::string& s) {
  std::string out = map_ascii(s, [](int c) { return std::tolower(c); });
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    const size_t at = s.find(from, pos);
    if (at == std::string::npos) break;
    out += s.substr(pos, at - pos) + to;
    pos = at + from.size();
  }
  return out + s.substr(pos);
}

std::vector<std::string> split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->json.is_null()) {  // runs of whitespace, no empty pieces
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (i >= s.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(s.substr(i));
        size_t e = out.back().find_last_not_of(" \t\n\r\f\v");
        out.back().resize(e + 1);
        break;
      }
      size_t j = i;
      while (j < s.size() && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
      out.push_back(s.substr(i, j - i));
      i = j;
    }
    return out;
  }
  const std::string d = sep->json.get<std::string>();
  size_t pos = 0;
  for (;;) {
    const size_t at = maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit ? std::string::npos : s.find(d, pos);
    if (at == std::string::npos) break;
    out.push_back(s.substr(pos, at - pos));
    pos = at + d.size();
  }
  out.push_back(s.substr(pos));
  return out;
}

Json to_list(const std::vector<Value>& xs) {
  Json out = Json::array();
  for (const auto& x : xs) out.push_back(x.json);
  return out;
}

// An attribute path "a.b" of a value, as selectattr/map/sum/join take it.
Value attribute(const Value& v, const std::string& path) {
  Value cur = v;
  size_t pos = 0;
  while (!cur.undefined) {
    const size_t dot = path.find('.', pos);
    const std::string key = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    const bool digits = !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit);
    cur = item(cur, digits && cur.json.is_array() ? Value{parse_digits(key), false} : Value{key, false});
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return cur;
}

const Value* kwarg(const Kwargs& kw, const char* name) {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

// Positional argument i, or the keyword `name`, or null.
const Value* arg(const Args& a, size_t i, const Kwargs& kw, const char* name) {
  if (i < a.size()) return &a[i];
  return kwarg(kw, name);
}

double number(const Value& v, const std::string& tname, int line) {
  if (!v.json.is_number()) template_error(tname, line, str("expected a number, not ", type_name(v)));
  return v.json.get<double>();
}

int compare_values(const Value& a, const Value& b) {
  if (a.json.is_number() && b.json.is_number())
    return a.json.get<double>() < b.json.get<double>() ? -1 : a.json.get<double>() > b.json.get<double>();
  if (a.json.is_string() && b.json.is_string()) return a.json.get<std::string>().compare(b.json.get<std::string>());
  return a.json < b.json ? -1 : b.json < a.json;
}

using Filter = std::function<Value(const Value&, const Args&, const Kwargs&, const std::string&, int)>;

// select/reject and selectattr/rejectattr: keep the items whose (attribute's) test is `keep`.
Value select(const Value& v, const Args& a, const std::string& tname, int line, bool by_attr, bool keep) {
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    if (a.empty() || !a[0].json.is_string()) template_error(tname, line, "selectattr/rejectattr need an attribute name");
    attr = a[0].json.get<std::string>(), next = 1;
  }
  std::string test;
  if (a.size() > next) test = to_str(a[next]);
  const Args test_args(a.begin() + std::min(a.size(), next + 1), a.end());
  if (!test.empty() && !is_test(test)) template_error(tname, line, str("the test '", test, "' is not supported"));
  Json out = Json::array();
  for (const Value& x : elements(v, tname, line, "select")) {
    const Value subject = by_attr ? attribute(x, attr) : x;
    const bool pass = test.empty() ? truthy(subject) : apply_test(test, subject, test_args, tname, line);
    if (pass == keep) out.push_back(x.json);
  }
  return {out, false};
}

const std::map<std::string, Filter>& filters() {
  static const std::map<std::string, Filter> table = [] {
    std::map<std::string, Filter> f;
    f["trim"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string&, int) {
      return Value{strip_chars(to_str(v), arg(a, 0, kw, "chars"), true, true), false};
    };
    // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False): json.dumps.
    f["tojson"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      if (v.undefined) template_error(t, l, "tojson of an undefined value");
      JsonStyle style;
      const Value* ascii = arg(a, 0, kw, "ensure_ascii");
      const Value* indent = arg(a, 1, kw, "indent");
      const Value* separators = arg(a, 2, kw, "separators");
      const Value* sort = arg(a, 3, kw, "sort_keys");
      style.ensure_ascii = ascii && truthy(*ascii);
      style.sort_keys = sort && truthy(*sort);
      if (indent && !indent->json.is_null())
        style.indent = static_cast<int>(std::clamp<int64_t>(integer(*indent, t, l, "tojson's indent"), 0, 64));
      if (style.indent >= 0) style.item_separator = ",";
      if (separators && !separators->json.is_null()) {
        const Json& sep = separators->json;
        if (!sep.is_array() || sep.size() != 2 || !sep[0].is_string() || !sep[1].is_string())
          template_error(t, l, "tojson's separators must be two strings");
        style.item_separator = sep[0].get<std::string>(), style.key_separator = sep[1].get<std::string>();
      }
      return Value{to_json_text(v.json, style), false};
    };
    f["length"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      if (v.json.is_string()) return Value{static_cast<int64_t>(code_points(v.json.get<std::string>()).size()), false};
      return Value{static_cast<int64_t>(elements(v, t, l, "length").size()), false};
    };
    f["count"] = f["length"];
    f["list"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      return Value{to_list(elements(v, t, l, "list")), false};
    };
    f["string"] = [](const Value& v, const Args&, const Kwargs&, const std::string&, int) {
      return Value{to_str(v), false};
    };
    f["safe"] = [](const Value& v, const Args&, const Kwargs&, const std::string&, int) { return v; };
    f["first"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      const auto xs = elements(v, t, l, "first");
      return xs.empty() ? Value::undef() : xs.front();
    };
    f["last"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      const auto xs = elements(v, t, l, "last");
      return xs.empty() ? Value::undef() : xs.back();
    };
    f["join"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      const Value* sep = arg(a, 0, kw, "d");
      const Value* attr = arg(a, 1, kw, "attribute");
      std::string out;
      bool first = true;
      for (const Value& x : elements(v, t, l, "join")) {
        out += (first ? "" : sep ? to_str(*sep) : "") + to_str(attr ? attribute(x, to_str(*attr)) : x);
        first = false;
        check_size(out, t, l);
      }
      return Value{out, false};
    };
    f["default"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string&, int) {
      const Value* boolean = arg(a, 1, kw, "boolean");
      const bool use_default = v.undefined || (boolean && truthy(*boolean) && !truthy(v));
      if (!use_default) return v;
      const Value* d = arg(a, 0, kw, "default_value");
      return d ? *d : Value{"", false};
    };
    f["d"] = f["default"];
    f["upper"] = [](const Value& v, const Args&, const Kwargs&, const std::string&, int) {
      return Value{map_ascii(to_str(v), [](int c) { return std::toupper(c); }), false};
    };
    f["lower"] = [](const Value& v, const Args&, const Kwargs&, const std::string&, int) {
      return Value{map_ascii(to_str(v), [](int c) { return std::tolower(c); }), false};
    };
    f["capitalize"] = [](const Value& v, const Args&, const Kwargs&, const std::string&, int) {
      return Value{capitalize(to_str(v)), false};
    };
    f["title"] = [](const Value& v, const Args&, const Kwargs&, const std::string&, int) {
      return Value{title_case(to_str(v)), false};
    };
    f["replace"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      if (a.size() < 2) template_error(t, l, "replace needs the old and the new text");
      const Value* count = arg(a, 2, kw, "count");
      Value out{replace_all(to_str(v), to_str(a[0]), to_str(a[1]), count ? integer(*count, t, l, "replace's count") : -1),
                false};
      check_size(out.json.get_ref<const std::string&>(), t, l);
      return out;
    };
    f["reverse"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      auto xs = elements(v, t, l, "reverse");
      std::reverse(xs.begin(), xs.end());
      if (!v.json.is_string()) return Value{to_list(xs), false};
      std::string s;
      for (const auto& x : xs) s += x.json.get<std::string>();
      return Value{s, false};
    };
    f["int"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      if (v.json.is_number_integer()) return v;
      if (v.json.is_number()) {
        const double d = v.json.get<double>();
        if (!(std::fabs(d) < 9.2e18)) template_error(t, l, str("int of ", to_str(v), " is out of range"));
        return Value{static_cast<int64_t>(d), false};
      }
      try {
        return Value{static_cast<int64_t>(std::stoll(to_str(v))), false};
      } catch (const std::exception&) {
        const Value* d = arg(a, 0, kw, "default");
        return d ? *d : Value{0, false};
      }
    };
    f["float"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string&, int) {
      if (v.json.is_number()) return Value{v.json.get<double>(), false};
      try {
        return Value{std::stod(to_str(v)), false};
      } catch (const std::exception&) {
        const Value* d = arg(a, 0, kw, "default");
        return d ? *d : Value{0.0, false};
      }
    };
    f["abs"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      if (!v.json.is_number_integer()) return Value{std::fabs(number(v, t, l)), false};
      const int64_t i = v.json.get<int64_t>();
      if (i == INT64_MIN) template_error(t, l, "abs of the smallest integer is out of range");
      return Value{std::llabs(i), false};
    };
    f["round"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      const Value* p = arg(a, 0, kw, "precision");
      const double scale = std::pow(10.0, p ? number(*p, t, l) : 0.0);
      return Value{std::round(number(v, t, l) * scale) / scale, false};
    };
    f["items"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      Json out = Json::array();
      if (v.undefined) return Value{out, false};
      if (!v.json.is_object()) template_error(t, l, str("items needs a dict, not ", type_name(v)));
      for (const auto& [k, x] : v.json.items()) out.push_back(Json::array({k, x}));
      return Value{out, false};
    };
    f["dictsort"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      Value pairs = filters().at("items")(v, {}, {}, t, l);
      const Value* by = arg(a, 2, kw, "by");
      const size_t k = by && to_str(*by) == "value" ? 1 : 0;
      std::stable_sort(pairs.json.begin(), pairs.json.end(),
                       [&](const Json& x, const Json& y) { return compare_values({x[k], false}, {y[k], false}) < 0; });
      return pairs;
    };
    f["unique"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      Json out = Json::array();
      for (const Value& x : elements(v, t, l, "unique"))
        if (std::find(out.begin(), out.end(), x.json) == out.end()) out.push_back(x.json);
      return Value{out, false};
    };
    f["sum"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      const Value* attr = arg(a, 0, kw, "attribute");
      const Value* start = arg(a, 1, kw, "start");
      Json total = start ? start->json : Json(0);
      for (const Value& x : elements(v, t, l, "sum")) {
        const Value y = attr ? attribute(x, to_str(*attr)) : x;
        int64_t sum = 0;
        if (total.is_number_integer() && y.json.is_number_integer() &&
            !__builtin_add_overflow(total.get<int64_t>(), y.json.get<int64_t>(), &sum))
          total = sum;
        else
          total = number({total, false}, t, l) + number(y, t, l);
      }
      return Value{total, false};
    };
    f["min"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      const auto xs = elements(v, t, l, "min");
      if (xs.empty()) return Value::undef();
      return *std::min_element(xs.begin(), xs.end(), [](const Value& x, const Value& y) { return compare_values(x, y) < 0; });
    };
    f["max"] = [](const Value& v, const Args&, const Kwargs&, const std::string& t, int l) {
      const auto xs = elements(v, t, l, "max");
      if (xs.empty()) return Value::undef();
      return *std::max_element(xs.begin(), xs.end(), [](const Value& x, const Value& y) { return compare_values(x, y) < 0; });
    };
    f["indent"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      const Value* width = arg(a, 0, kw, "width");
      const Value* first = arg(a, 1, kw, "first");
      const Value* blank = arg(a, 2, kw, "blank");
      const int64_t spaces = width && !width->json.is_string() ? integer(*width, t, l, "indent's width") : 4;
      const std::string pad = width && width->json.is_string()
                                  ? width->json.get<std::string>()
                                  : std::string(static_cast<size_t>(std::clamp<int64_t>(spaces, 0, 1024)), ' ');
      std::string out;
      const Value newline{"\n", false};
      const auto lines = split(to_str(v), &newline, -1);
      for (size_t i = 0; i < lines.size(); ++i) {
        const bool pad_it = (i > 0 || (first && truthy(*first))) && (!lines[i].empty() || (blank && truthy(*blank)));
        out += (i ? "\n" : "") + (pad_it ? pad : "") + lines[i];
        check_size(out, t, l);
      }
      return Value{out, false};
    };
    f["select"] = [](const Value& v, const Args& a, const Kwargs&, const std::string& t, int l) {
      return select(v, a, t, l, false, true);
    };
    f["reject"] = [](const Value& v, const Args& a, const Kwargs&, const std::string& t, int l) {
      return select(v, a, t, l, false, false);
    };
    f["selectattr"] = [](const Value& v, const Args& a, const Kwargs&, const std::string& t, int l) {
      return select(v, a, t, l, true, true);
    };
    f["rejectattr"] = [](const Value& v, const Args& a, const Kwargs&, const std::string& t, int l) {
      return select(v, a, t, l, true, false);
    };
    f["map"] = [](const Value& v, const Args& a, const Kwargs& kw, const std::string& t, int l) {
      Json out = Json::array();
      const Value* attr = kwarg(kw, "attribute");
      const Value* dflt = kwarg(kw, "default");
      if (!attr && (a.empty() || !is_filter(to_str(a[0]))))
        template_error(t, l, "map needs attribute=NAME or the name of a supported filter");
      const Args rest(a.begin() + std::min<size_t>(a.size(), 1), a.end());
      for (const Value& x : elements(v, t, l, "map")) {
        Value y = attr ? attribute(x, to_str(*attr)) : apply_filter(to_str(a[0]), x, rest, {}, t, l);
        if (y.undefined && dflt) y = *dflt;
        out.push_back(y.json);
      }
      return Value{out, false};
    };
    return f;
  }();
  return table;
}

using Test = std::function<bool(const Value&, const Args&)>;

const std::map<std::string, Test>& tests() {
  static const std::map<std::string, Test> table = [] {
    std::map<std::string, Test> t;
    auto a0 = [](const Args& a) { return a.empty() ? Value::undef() : a[0]; };
    t["defined"] = [](const Value& v, const Args&) { return !v.undefined; };
    t["undefined"] = [](const Value& v, const Args&) { return v.undefined; };
    t["none"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_null(); };
    t["string"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_string(); };
    t["number"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_number(); };
    t["integer"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_number_integer(); };
    t["float"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_number_float(); };
    t["boolean"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_boolean(); };
    t["true"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_boolean() && v.json.get<bool>(); };
    t["false"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_boolean() && !v.json.get<bool>(); };
    t["mapping"] = [](const Value& v, const Args&) { return !v.undefined && v.json.is_object(); };
    t["sequence"] = [](const Value& v, const Args&) {
      return !v.undefined && (v.json.is_array() || v.json.is_string() || v.json.is_object());
    };
    t["iterable"] = t["sequence"];
    t["equalto"] = [a0](const Value& v, const Args& a) { return equal(v, a0(a)); };
    t["eq"] = t["=="] = t["sameas"] = t["equalto"];
    t["ne"] = [a0](const Value& v, const Args& a) { return !equal(v, a0(a)); };
    t["lt"] = [a0](const Value& v, const Args& a) { return compare_values(v, a0(a)) < 0; };
    t["le"] = [a0](const Value& v, const Args& a) { return compare_values(v, a0(a)) <= 0; };
    t["gt"] = [a0](const Value& v, const Args& a) { return compare_values(v, a0(a)) > 0; };
    t["ge"] = [a0](const Value& v, const Args& a) { return compare_values(v, a0(a)) >= 0; };
    t["in"] = [a0](const Value& v, const Args& a) {
      const Value c = a0(a);
      if (c.json.is_string() && v.json.is_string())
        return c.json.get<std::string>().find(v.json.get<std::string>()) != std::string::npos;
      if (c.json.is_object()) return v.json.is_string() && c.json.contains(v.json.get<std::string>());
      return c.json.is_array() && std::find(c.json.begin(), c.json.end(), v.json) != c.json.end();
    };
    t["odd"] = [](const Value& v, const Args&) { return v.json.is_number_integer() && v.json.get<int64_t>() % 2 != 0; };
    t["even"] = [](const Value& v, const Args&) { return v.json.is_number_integer() && v.json.get<int64_t>() % 2 == 0; };
    t["divisibleby"] = [a0](const Value& v, const Args& a) {
      const Value d = a0(a);
      return v.json.is_number_integer() && d.json.is_number_integer() && d.json.get<int64_t>() != 0 &&
             v.json.get<int64_t>() % d.json.get<int64_t>() == 0;
    };
    t["lower"] = [](const Value& v, const Args&) {
      return v.json.is_string() && v.json.get<std::string>() == map_ascii(v.json.get<std::string>(), [](int c) { return std::tolower(c); });
    };
    t["upper"] = [](const Value& v, const Args&) {
      return v.json.is_string() && v.json.get<std::string>() == map_ascii(v.json.get<std::string>(), [](int c) { return std::toupper(c); });
    };
    return t;
  }();
  return table;
}

}  // namespace

bool is_filter(const std::string& name) { return filters().count(name) > 0; }
bool is_test(const std::string& name) { return tests().count(name) > 0; }

Value apply_filter(const std::string& name, const Value& v, const std::vector<Value>& args,
                   const std::vector<std::pair<std::string, Value>>& kwargs, const std::string& tname, int line) {
  return filters().at(name)(v, args, kwargs, tname, line);
}

bool apply_test(const std::string& name, const Value& v, const std::vector<Value>& args, const std::string&, int) {
  return tests().at(name)(v, args);
}

Value call_method(const Value& v, const std::string& name, const std::vector<Value>& a, const std::string& tname,
                  int line) {
  auto need = [&](size_t n) {
    if (a.size() < n) template_error(tname, line, str(name, "() needs ", n, " argument", n > 1 ? "s" : ""));
  };
  if (v.json.is_string() && !v.undefined) {
    const std::string s = v.json.get<std::string>();
    const Value* a0 = a.empty() ? nullptr : &a[0];
    if (name == "strip") return {strip_chars(s, a0, true, true), false};
    if (name == "lstrip") return {strip_chars(s, a0, true, false), false};
    if (name == "rstrip") return {strip_chars(s, a0, false, true), false};
    if (name == "upper") return {map_ascii(s, [](int c) { return std::toupper(c); }), false};
    if (name == "lower") return {map_ascii(s, [](int c) { return std::tolower(c); }), false};
    if (name == "title") return {title_case(s), false};
    if (name == "capitalize") return {capitalize(s), false};
    if (name == "startswith" || name == "endswith") {
      need(1);
      const Json prefixes = a[0].json.is_array() ? a[0].json : Json::array({a[0].json});
      for (const auto& p : prefixes) {
        if (!p.is_string()) template_error(tname, line, str(name, "() needs strings"));
        const std::string x = p.get<std::string>();
        if (x.size() <= s.size() && (name == "startswith" ? s.compare(0, x.size(), x) == 0
                                                          : s.compare(s.size() - x.size(), x.size(), x) == 0))
          return {true, false};
      }
      return {false, false};
    }
    if (name == "split") {
      if (a0 && !a0->json.is_string() && !a0->json.is_null()) template_error(tname, line, "split() needs a string");
      if (a0 && a0->json.is_string() && a0->json.get_ref<const std::string&>().empty())
        template_error(tname, line, "split() with an empty separator");
      const Value* maxsplit = a.size() > 1 ? &a[1] : nullptr;
      Json out = Json::array();
      for (auto& p : split(s, a0, maxsplit ? integer(*maxsplit, tname, line, "split's maxsplit") : -1)) out.push_back(p);
      return {out, false};
    }
    if (name == "splitlines") {
      Json out = Json::array();
      const Value nl{"\n", false};
      auto parts = split(s, &nl, -1);
      if (!parts.empty() && parts.back().empty()) parts.pop_back();
      for (auto& p : parts) out.push_back(p);
      return {out, false};
    }
    if (name == "replace") {
      need(2);
      Value out{replace_all(s, to_str(a[0]), to_str(a[1]), a.size() > 2 ? integer(a[2], tname, line, "replace's count") : -1),
                false};
      check_size(out.json.get_ref<const std::string&>(), tname, line);
      return out;
    }
    if (name == "find" || name == "count") {
      need(1);
      const std::string x = to_str(a[0]);
      if (name == "find") {
        const size_t at = s.find(x);
        return {at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(code_points(s.substr(0, at)).size()), false};
      }
      int64_t n = 0;
      for (size_t at = s.find(x); !x.empty() && at != std::string::npos; at = s.find(x, at + x.size())) ++n;
      return {n, false};
    }
    if (name == "join") {
      need(1);
      std::string out;
      bool first = true;
      for (const auto& x : a[0].json) {
        out += (first ? "" : s) + to_str({x, false}), first = false;
        check_size(out, tname, line);
      }
      return {out, false};
    }
    if (name == "isdigit" || name == "isalpha" || name == "isspace") {
      int (*f)(int) = name == "isdigit" ? ::isdigit : name == "isalpha" ? ::isalpha : ::isspace;
      return {!s.empty() && std::all_of(s.begin(), s.end(), [&](char c) { return f(static_cast<unsigned char>(c)); }),
              false};
    }
  }
  if (v.json.is_object() && !v.undefined) {
    if (name == "items") return filters().at("items")(v, {}, {}, tname, line);
    if (name == "keys" || name == "values") {
      Json out = Json::array();
      for (const auto& [k, x] : v.json.items()) out.push_back(name == "keys" ? Json(k) : x);
      return {out, false};
    }
    if (name == "get") {
      need(1);
      const Value x = item(v, a[0]);
      return x.undefined ? (a.size() > 1 ? a[1] : Value{nullptr, false}) : x;
    }
  }
  template_error(tname, line, str("the method ", name, "() of a ", type_name(v), " is not supported"));
}

}  // namespace weft::jinja
