// weft/src/tokenizer/jinja_values.cpp v1 — Python's view of template values: truth, str and repr, ==, indexing,
// iteration, json.dumps, and the bounds on what a template may build.
#include <cmath>
#include <cstdio>

#include "tokenizer/jinja_syntax.h"
#include "util/error.h"

namespace weft::jinja {

namespace {

std::string py_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[40];
  if (d == std::floor(d) && std::fabs(d) < 1e16) {
    std::snprintf(buf, sizeof buf, "%.0f.0", d);
    return buf;
  }
  for (int p = 1; p <= 17; ++p) {  // the shortest text that reads back as d, as Python's repr
    std::snprintf(buf, sizeof buf, "%.*g", p, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  return buf;
}

std::string py_repr_string(const std::string& s) {
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (const char c : s) {
    if (c == q || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  return out + q;
}

std::string py_repr(const Json& j) {
  switch (j.type()) {
    case Json::value_t::string: return py_repr_string(j.get<std::string>());
    case Json::value_t::array: {
      std::string s = "[";
      for (size_t i = 0; i < j.size(); ++i) s += (i ? ", " : "") + py_repr(j[i]);
      return s + "]";
    }
    case Json::value_t::object: {
      std::string s = "{";
      bool first = true;
      for (const auto& [k, v] : j.items()) s += (first ? "" : ", ") + py_repr_string(k) + ": " + py_repr(v), first = false;
      return s + "}";
    }
    default: return to_str({j, false});
  }
}

// Python's json.dumps for one string: ensure_ascii writes every non-ASCII code point as \uXXXX (a surrogate pair
// above U+FFFF).
void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  auto escape = [&](unsigned cp) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "\\u%04x", cp);
    out += buf;
  };
  for (const std::string& cp : code_points(s)) {
    const unsigned char c = static_cast<unsigned char>(cp[0]);
    if (cp.size() > 1) {
      if (!ensure_ascii) {
        out += cp;
        continue;
      }
      unsigned v = c & (cp.size() == 2 ? 0x1f : cp.size() == 3 ? 0x0f : 0x07);
      for (size_t i = 1; i < cp.size(); ++i) v = (v << 6) | (static_cast<unsigned char>(cp[i]) & 0x3f);
      if (v > 0xffff) {
        escape(0xd800 + ((v - 0x10000) >> 10));
        escape(0xdc00 + ((v - 0x10000) & 0x3ff));
      } else {
        escape(v);
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7f)) escape(c);
        else out += static_cast<char>(c);
    }
  }
  out += '"';
}

void json_text(std::string& out, const Json& j, const JsonStyle& style, int depth) {
  const bool pretty = style.indent >= 0;
  auto newline = [&](int d) {
    if (!pretty) return;
    out += '\n';
    out.append(static_cast<size_t>(style.indent * d), ' ');
  };
  switch (j.type()) {
    case Json::value_t::null: out += "null"; break;
    case Json::value_t::boolean: out += j.get<bool>() ? "true" : "false"; break;
    case Json::value_t::string: json_string(out, j.get<std::string>(), style.ensure_ascii); break;
    case Json::value_t::number_float: {
      const double d = j.get<double>();
      out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : py_float(d);
      break;
    }
    case Json::value_t::array:
      if (j.empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t i = 0; i < j.size(); ++i) {
        if (i) out += style.item_separator;
        newline(depth + 1);
        json_text(out, j[i], style, depth + 1);
      }
      newline(depth);
      out += ']';
      break;
    case Json::value_t::object: {
      if (j.empty()) {
        out += "{}";
        break;
      }
      std::vector<std::pair<std::string, const Json*>> items;
      for (const auto& [k, v] : j.items()) items.emplace_back(k, &v);
      if (style.sort_keys) std::stable_sort(items.begin(), items.end(), [](auto& a, auto& b) { return a.first < b.first; });
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += style.item_separator;
        newline(depth + 1);
        json_string(out, items[i].first, style.ensure_ascii);
        out += style.key_separator;
        json_text(out, *items[i].second, style, depth + 1);
      }
      newline(depth);
      out += '}';
      break;
    }
    default: out += j.dump();
  }
}

}  // namespace

const char* type_name(const Value& v) {
  if (v.undefined) return "undefined";
  switch (v.json.type()) {
    case Json::value_t::null: return "none";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "dict";
    case Json::value_t::number_float: return "float";
    default: return "int";
  }
}

std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

void check_size(const std::string& s, const std::string& tname, int line) {
  if (static_cast<int64_t>(s.size()) > kMaxStringBytes)
    template_error(tname, line, str("a string longer than ", kMaxStringBytes, " bytes"));
}

void check_size(const Json& list, const std::string& tname, int line) {
  if (static_cast<int64_t>(list.size()) > kMaxListItems)
    template_error(tname, line, str("a list of more than ", kMaxListItems, " items"));
}

int64_t integer(const Value& v, const std::string& tname, int line, const char* what) {
  if (v.undefined || !v.json.is_number_integer())
    template_error(tname, line, str(what, " must be an integer, not ", to_str(v)));
  return v.json.get<int64_t>();
}

int64_t parse_digits(const std::string& digits) {
  int64_t v = 0;
  for (const char c : digits)
    if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, c - '0', &v)) return INT64_MAX;
  return v;
}

bool truthy(const Value& v) {
  if (v.undefined) return false;
  switch (v.json.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return v.json.get<bool>();
    case Json::value_t::string: return !v.json.get<std::string>().empty();
    case Json::value_t::array:
    case Json::value_t::object: return !v.json.empty();
    case Json::value_t::number_float: return v.json.get<double>() != 0;
    default: return v.json.get<int64_t>() != 0;
  }
}

std::string to_str(const Value& v) {
  if (v.undefined) return "";
  switch (v.json.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return v.json.get<bool>() ? "True" : "False";
    case Json::value_t::string: return v.json.get<std::string>();
    case Json::value_t::number_float: return py_float(v.json.get<double>());
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return v.json.dump();
    default: return py_repr(v.json);
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.undefined || b.undefined) return a.undefined && b.undefined;
  return a.json == b.json;
}

Value item(const Value& v, const Value& key) {
  if (v.undefined) return Value::undef();
  if (v.json.is_object() && key.json.is_string()) {
    const auto it = v.json.find(key.json.get<std::string>());
    return it == v.json.end() ? Value::undef() : Value{*it, false};
  }
  if ((v.json.is_array() || v.json.is_string()) && key.json.is_number_integer()) {
    const auto cps = v.json.is_string() ? code_points(v.json.get<std::string>()) : std::vector<std::string>{};
    const int64_t n = v.json.is_array() ? static_cast<int64_t>(v.json.size()) : static_cast<int64_t>(cps.size());
    int64_t i = key.json.get<int64_t>();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undef();
    return v.json.is_array() ? Value{v.json[static_cast<size_t>(i)], false} : Value{cps[static_cast<size_t>(i)], false};
  }
  return Value::undef();
}

std::vector<Value> elements(const Value& v, const std::string& tname, int line, const char* what) {
  std::vector<Value> out;
  if (v.undefined) return out;
  if (v.json.is_array())
    for (const auto& x : v.json) out.push_back({x, false});
  else if (v.json.is_object())
    for (const auto& [k, x] : v.json.items()) out.push_back({k, false});
  else if (v.json.is_string())
    for (const auto& c : code_points(v.json.get<std::string>())) out.push_back({c, false});
  else
    template_error(tname, line, str(what, " needs a list, dict or string, not ", type_name(v)));
  return out;
}

std::string to_json_text(const Json& v, const JsonStyle& style) {
  std::string out;
  json_text(out, v, style, 0);
  return out;
}

}  // namespace weft::jinja
