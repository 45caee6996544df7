// weft/src/tokenizer/jinja_parse.cpp v1 — Jinja source → the tree of jinja_syntax.h, with the whitespace rules of
// transformers' environment: trim_blocks (a block tag eats the newline after it), lstrip_blocks (a block tag alone
// on its line eats the indentation before it), '-' and '+' at the tags' edges.
#include <cstring>

#include "tokenizer/jinja_syntax.h"
#include "util/error.h"

namespace weft::jinja {

void template_error(const std::string& name, int line, const std::string& what) {
  fail(str(name, " line ", line, ": ", what));
}

namespace {

// One piece of the source: text, or the inside of a {{ }}, {% %} or {# #} tag.
struct Segment {
  enum class Kind { text, variable, block, comment } kind;
  std::string content;
  int line;
  char left = 0, right = 0;  // '-', '+' or 0 at the tag's inner edges
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Splits the source into segments and applies the whitespace rules to the text between tags.
std::vector<Segment> segment(const std::string& src, const std::string& name) {
  std::vector<Segment> out;
  size_t pos = 0;
  int line = 1;
  bool line_starting = true;  // the text that follows starts a line (jinja2's lexer tracks the same)
  auto count_lines = [](const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); };
  while (pos <= src.size()) {
    size_t open = src.find('{', pos);
    while (open != std::string::npos && open + 1 < src.size() && !std::strchr("{%#", src[open + 1]))
      open = src.find('{', open + 1);
    if (open + 1 >= src.size()) open = std::string::npos;
    std::string text = src.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    if (open == std::string::npos) {
      out.push_back({Segment::Kind::text, text, line});
      break;
    }
    const char type = src[open + 1];
    Segment tag{type == '{' ? Segment::Kind::variable : type == '%' ? Segment::Kind::block : Segment::Kind::comment,
                "", line + count_lines(text)};
    size_t inner = open + 2;
    if (inner < src.size() && (src[inner] == '-' || src[inner] == '+')) tag.left = src[inner++];
    // The closing delimiter, skipping quoted strings and bracketed parts of expressions (a dict literal's "}}" does not
    // close a {{ tag, as jinja2's lexer balances brackets too).
    const char* close = type == '{' ? "}}" : type == '%' ? "%}" : "#}";
    size_t end = inner;
    char quote = 0;
    int depth = 0;
    for (; end + 1 < src.size(); ++end) {
      const char c = src[end];
      if (type != '#' && quote) {
        if (c == '\\') ++end;
        else if (c == quote) quote = 0;
      } else if (type != '#' && (c == '\'' || c == '"')) {
        quote = c;
      } else if (depth == 0 && c == close[0] && src[end + 1] == close[1]) {
        break;
      } else if (type != '#' && (c == '(' || c == '[' || c == '{')) {
        ++depth;
      } else if (type != '#' && depth > 0 && (c == ')' || c == ']' || c == '}')) {
        --depth;
      }
    }
    if (end + 1 >= src.size()) template_error(name, tag.line, str("'", src.substr(open, 2), "' is never closed"));
    size_t content_end = end;
    if (content_end > inner && (src[content_end - 1] == '-' || src[content_end - 1] == '+'))
      tag.right = src[--content_end];
    tag.content = src.substr(inner, content_end - inner);
    // Whitespace before the tag: '-' strips all of it; lstrip_blocks strips a block's or comment's indentation.
    if (tag.left == '-') {
      while (!text.empty() && is_space(text.back())) text.pop_back();
    } else if (tag.left != '+' && tag.kind != Segment::Kind::variable) {
      const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
      if ((line_start > 0 || line_starting) &&
          text.find_first_not_of(" \t", line_start) == std::string::npos)
        text.resize(line_start);
    }
    out.push_back({Segment::Kind::text, text, line});
    line = tag.line + count_lines(tag.content);
    out.push_back(tag);
    pos = end + 2;
    // Whitespace after the tag: '-' strips all of it; trim_blocks takes one newline after a block or comment.
    line_starting = false;
    if (tag.right == '-') {
      const size_t before = pos;
      while (pos < src.size() && is_space(src[pos])) ++pos;
      const std::string eaten = src.substr(before, pos - before);
      line += count_lines(eaten);
      line_starting = !eaten.empty() && eaten.back() == '\n';
    } else if (tag.right != '+' && tag.kind != Segment::Kind::variable && pos < src.size() && src[pos] == '\n') {
      ++pos, ++line;
      line_starting = true;
    }
  }
  return out;
}

// Tokens of an expression.
struct Token {
  enum class Kind { name, string, number, op, end } kind;
  std::string text;
  Json number;
};

std::vector<Token> lex_expression(const std::string& s, const std::string& tname, int line) {
  std::vector<Token> out;
  static const char* ops[] = {"**", "//", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ".", ",", ":", "|",
                              "~", "+", "-", "*", "/", "%", "<", ">", "="};
  for (size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (is_space(c)) {
      line += c == '\n';
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Token::Kind::name, s.substr(i, j - i), {}});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      bool is_float = false;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        is_float = true;
        for (++j; j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]));) ++j;
      }
      std::string digits = s.substr(i, j - i);
      std::erase(digits, '_');
      int64_t value = 0;
      for (const char d : digits)
        if (!is_float && (__builtin_mul_overflow(value, 10, &value) || __builtin_add_overflow(value, d - '0', &value)))
          template_error(tname, line, str("the integer ", digits, " does not fit 64 bits"));
      out.push_back({Token::Kind::number, digits, is_float ? Json(std::strtod(digits.c_str(), nullptr)) : Json(value)});
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      for (; j < s.size() && s[j] != c; ++j) {
        if (s[j] != '\\' || j + 1 >= s.size()) {
          v += s[j];
          continue;
        }
        switch (const char e = s[++j]) {
          case 'n': v += '\n'; break;
          case 't': v += '\t'; break;
          case 'r': v += '\r'; break;
          case '\\': case '\'': case '"': v += e; break;
          default: v += '\\', v += e;  // Python keeps unknown escapes as written
        }
      }
      if (j >= s.size()) template_error(tname, line, "a string is never closed");
      out.push_back({Token::Kind::string, v, {}});
      i = j + 1;
    } else {
      const char* op = nullptr;
      for (const char* o : ops)
        if (s.compare(i, std::strlen(o), o) == 0) {
          op = o;
          break;
        }
      if (!op) template_error(tname, line, str("unexpected character '", c, "'"));
      out.push_back({Token::Kind::op, op, {}});
      i += std::strlen(op);
    }
  }
  out.push_back({Token::Kind::end, "", {}});
  return out;
}

// A recursive-descent parser of one tag's expression, with jinja2's precedences.
class ExprParser {
 public:
  ExprParser(const std::string& s, const std::string& tname, int line)
      : toks_(lex_expression(s, tname, line)), tname_(tname), line_(line) {}

  bool at_end() const { return toks_[pos_].kind == Token::Kind::end; }
  bool peek_name(const char* n) const { return toks_[pos_].kind == Token::Kind::name && toks_[pos_].text == n; }
  bool peek_op(const char* o) const { return toks_[pos_].kind == Token::Kind::op && toks_[pos_].text == o; }
  bool take_name(const char* n) { return peek_name(n) ? (++pos_, true) : false; }
  bool take_op(const char* o) { return peek_op(o) ? (++pos_, true) : false; }
  void expect_op(const char* o) {
    if (!take_op(o)) error(str("expected '", o, "' but found ", describe()));
  }
  void expect_end() {
    if (!at_end()) error(str("unexpected ", describe()));
  }
  std::string name() {
    if (toks_[pos_].kind != Token::Kind::name) error(str("expected a name but found ", describe()));
    return toks_[pos_++].text;
  }
  [[noreturn]] void error(const std::string& what) const { template_error(tname_, line_, what); }

  // expr: or_expr [if or_expr [else expr]]
  ExprPtr expression(bool allow_ternary = true) {
    Nesting guard(depth_, *this);
    ExprPtr e = or_expr();
    if (allow_ternary && take_name("if")) {
      ExprPtr cond = or_expr();
      ExprPtr other = take_name("else") ? expression() : nullptr;
      e = make(Expr::Kind::ternary, "", std::move(e), std::move(cond), std::move(other));
    }
    return e;
  }
  // A comma-separated expression list; a bare tuple when there is a comma.
  ExprPtr tuple_or_expression() {
    ExprPtr e = expression();
    if (!peek_op(",")) return e;
    auto t = make(Expr::Kind::list, "", std::move(e));
    while (take_op(",") && !at_end()) t->args.push_back(expression());
    return t;
  }

 private:
  std::string describe() const {
    return at_end() ? std::string("the end of the tag") : str("'", toks_[pos_].text, "'");
  }
  ExprPtr make(Expr::Kind k, std::string text, ExprPtr a = nullptr, ExprPtr b = nullptr, ExprPtr c = nullptr) {
    auto e = std::make_unique<Expr>();
    e->kind = k, e->line = line_, e->text = std::move(text);
    for (ExprPtr* x : {&a, &b, &c})
      if (*x || k == Expr::Kind::ternary) e->args.push_back(std::move(*x));
    if (k == Expr::Kind::ternary) e->args.resize(3);
    return e;
  }
  ExprPtr binary(const char* op, ExprPtr a, ExprPtr b) { return make(Expr::Kind::binary, op, std::move(a), std::move(b)); }
  ExprPtr or_expr() {
    ExprPtr e = and_expr();
    while (take_name("or")) e = binary("or", std::move(e), and_expr());
    return e;
  }
  ExprPtr and_expr() {
    ExprPtr e = not_expr();
    while (take_name("and")) e = binary("and", std::move(e), not_expr());
    return e;
  }
  ExprPtr not_expr() {
    Nesting guard(depth_, *this);
    if (take_name("not")) return make(Expr::Kind::unary, "not", not_expr());
    return compare();
  }
  ExprPtr compare() {
    ExprPtr e = math1();
    for (;;) {
      const char* op = nullptr;
      for (const char* o : {"==", "!=", "<=", ">=", "<", ">"})
        if (take_op(o)) op = o;
      if (!op && take_name("in")) op = "in";
      if (!op && peek_name("not") && toks_[pos_ + 1].kind == Token::Kind::name && toks_[pos_ + 1].text == "in") {
        pos_ += 2;
        op = "not in";
      }
      if (!op) return e;
      e = binary(op, std::move(e), math1());
    }
  }
  ExprPtr math1() {
    ExprPtr e = concat();
    for (;;) {
      if (take_op("+")) e = binary("+", std::move(e), concat());
      else if (take_op("-")) e = binary("-", std::move(e), concat());
      else return e;
    }
  }
  ExprPtr concat() {
    ExprPtr e = math2();
    while (take_op("~")) e = binary("~", std::move(e), math2());
    return e;
  }
  ExprPtr math2() {
    ExprPtr e = power();
    for (;;) {
      const char* op = take_op("*") ? "*" : take_op("//") ? "//" : take_op("/") ? "/" : take_op("%") ? "%" : nullptr;
      if (!op) return e;
      e = binary(op, std::move(e), power());
    }
  }
  ExprPtr power() {
    ExprPtr e = unary();
    while (take_op("**")) e = binary("**", std::move(e), unary());
    return e;
  }
  // A sign applies before the filters that follow: -3 | abs is abs(-3), as in jinja2.
  ExprPtr unary(bool with_filters = true) {
    Nesting guard(depth_, *this);
    ExprPtr e;
    if (take_op("-")) e = make(Expr::Kind::unary, "-", unary(false));
    else if (take_op("+")) e = make(Expr::Kind::unary, "+", unary(false));
    else e = postfix(primary());
    return with_filters ? filters(std::move(e)) : std::move(e);
  }
  // Arguments of a call or filter after its '(' up to ')': positional then name=value.
  void arguments(Expr& e) {
    while (!take_op(")")) {
      if (toks_[pos_].kind == Token::Kind::name && toks_[pos_ + 1].kind == Token::Kind::op &&
          toks_[pos_ + 1].text == "=") {
        std::string key = name();
        ++pos_;
        e.kwargs.emplace_back(key, expression());
      } else {
        e.args.push_back(expression());
      }
      if (!peek_op(")")) expect_op(",");
    }
  }
  // postfix: .name, [index], [a:b:c], (args)
  ExprPtr postfix(ExprPtr e) {
    for (;;) {
      if (take_op(".")) {
        auto a = make(Expr::Kind::attr, "", std::move(e));
        if (toks_[pos_].kind == Token::Kind::number) a->text = toks_[pos_++].text;
        else a->text = name();
        e = std::move(a);
      } else if (take_op("[")) {
        ExprPtr bounds[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!peek_op(":") && !peek_op("]")) bounds[k] = expression();
          if (k < 2 && take_op(":")) slice = true;
          else break;
        }
        expect_op("]");
        if (!slice) {
          if (!bounds[0]) error("an empty subscript []");
          e = make(Expr::Kind::index, "", std::move(e), std::move(bounds[0]));
        } else {
          auto s = make(Expr::Kind::slice, "", std::move(e));
          for (auto& b : bounds) s->args.push_back(std::move(b));
          e = std::move(s);
        }
      } else if (take_op("(")) {
        auto c = make(Expr::Kind::call, "", std::move(e));
        arguments(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
  // filters and tests: e | name(args) ..., e is [not] name [arg]
  ExprPtr filters(ExprPtr e) {
    for (;;) {
      if (take_op("|")) {
        std::string n = name();
        if (!is_filter(n)) error(str("the filter '", n, "' is not supported"));
        auto f = make(Expr::Kind::filter, n, std::move(e));
        if (take_op("(")) arguments(*f);
        e = std::move(f);
      } else if (take_name("is")) {
        const bool negate = take_name("not");
        std::string n = name();
        if (!is_test(n)) error(str("the test '", n, "' is not supported"));
        auto t = make(Expr::Kind::test, n, std::move(e));
        t->negate = negate;
        if (take_op("(")) arguments(*t);
        else if (toks_[pos_].kind == Token::Kind::string || toks_[pos_].kind == Token::Kind::number ||
                 (toks_[pos_].kind == Token::Kind::name && !peek_name("and") && !peek_name("or") &&
                  !peek_name("else") && !peek_name("if") && !peek_name("in") && !peek_name("not")))
          t->args.push_back(postfix(primary()));
        e = std::move(t);
      } else {
        return e;
      }
    }
  }
  ExprPtr primary() {
    const Token& t = toks_[pos_];
    if (t.kind == Token::Kind::string) {
      // Adjacent strings concatenate, as in Python.
      std::string s;
      while (toks_[pos_].kind == Token::Kind::string) s += toks_[pos_++].text;
      auto e = make(Expr::Kind::literal, "");
      e->value = s;
      return e;
    }
    if (t.kind == Token::Kind::number) {
      auto e = make(Expr::Kind::literal, "");
      e->value = toks_[pos_++].number;
      return e;
    }
    if (t.kind == Token::Kind::name) {
      ++pos_;
      auto e = make(Expr::Kind::literal, "");
      if (t.text == "true" || t.text == "True") e->value = true;
      else if (t.text == "false" || t.text == "False") e->value = false;
      else if (t.text == "none" || t.text == "None") e->value = nullptr;
      else e->kind = Expr::Kind::name, e->text = t.text;
      return e;
    }
    if (take_op("(")) {
      if (take_op(")")) return make(Expr::Kind::list, "");
      ExprPtr e = tuple_or_expression();
      expect_op(")");
      return e;
    }
    if (take_op("[")) {
      auto e = make(Expr::Kind::list, "");
      while (!take_op("]")) {
        e->args.push_back(expression());
        if (!peek_op("]")) expect_op(",");
      }
      return e;
    }
    if (take_op("{")) {
      auto e = make(Expr::Kind::dict, "");
      while (!take_op("}")) {
        e->args.push_back(expression());
        expect_op(":");
        e->args.push_back(expression());
        if (!peek_op("}")) expect_op(",");
      }
      return e;
    }
    error(str("expected a value but found ", describe()));
  }

  // Counts recursion into nested expressions; too deep is an error, not a stack overflow.
  struct Nesting {
    Nesting(int& depth, const ExprParser& p) : depth_(depth) {
      if (++depth_ > kMaxNesting) p.error(str("expressions nested deeper than ", kMaxNesting));
    }
    ~Nesting() { --depth_; }
    int& depth_;
  };

  std::vector<Token> toks_;
  size_t pos_ = 0;
  const std::string& tname_;
  int line_;
  int depth_ = 0;
};

// Builds the statement tree from the segments.
class Parser {
 public:
  Parser(std::vector<Segment> segs, const std::string& name) : segs_(std::move(segs)), name_(name) {}

  Body parse() {
    std::string stop;
    Body b = body({}, stop);
    return b;
  }

 private:
  // The keyword a block tag starts with.
  static std::string keyword(const std::string& content) {
    size_t b = 0;
    while (b < content.size() && is_space(content[b])) ++b;
    size_t e = b;
    while (e < content.size() && (std::isalnum(static_cast<unsigned char>(content[e])) || content[e] == '_')) ++e;
    return content.substr(b, e - b);
  }
  static std::string after_keyword(const std::string& content, const std::string& kw) {
    return content.substr(content.find(kw) + kw.size());
  }

  // Nodes up to one of the tags in `stops` (returned in `stop`); the whole template when `stops` is empty.
  Body body(const std::vector<std::string>& stops, std::string& stop) {
    if (++depth_ > kMaxNesting)
      template_error(name_, pos_ ? segs_[pos_ - 1].line : 1, str("blocks nested deeper than ", kMaxNesting));
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth_};
    Body out;
    while (pos_ < segs_.size()) {
      const Segment& s = segs_[pos_++];
      switch (s.kind) {
        case Segment::Kind::text:
          if (!s.content.empty()) out.push_back(node(Node::Kind::text, s.line)), out.back().text = s.content;
          break;
        case Segment::Kind::comment:
          break;
        case Segment::Kind::variable: {
          ExprParser p(s.content, name_, s.line);
          Node n = node(Node::Kind::output, s.line);
          n.expr = p.expression();
          p.expect_end();
          out.push_back(std::move(n));
          break;
        }
        case Segment::Kind::block: {
          const std::string kw = keyword(s.content);
          if (std::find(stops.begin(), stops.end(), kw) != stops.end()) {
            stop = kw;
            return out;
          }
          out.push_back(statement(kw, s));
          break;
        }
      }
    }
    if (!stops.empty())
      template_error(name_, segs_.empty() ? 1 : segs_.back().line, str("the template ends inside a block: expected {% ",
                                                                      stops.back(), " %}"));
    return out;
  }
  Node node(Node::Kind k, int line) {
    Node n;
    n.kind = k, n.line = line;
    return n;
  }
  const Segment& last() const { return segs_[pos_ - 1]; }

  Node statement(const std::string& kw, const Segment& s) {
    const std::string rest = after_keyword(s.content, kw);
    ExprParser p(rest, name_, s.line);
    std::string stop;
    if (kw == "if") {
      Node n = node(Node::Kind::if_, s.line);
      ExprPtr cond = p.expression();
      p.expect_end();
      for (;;) {
        Body b = body({"elif", "else", "endif"}, stop);
        n.branches.emplace_back(std::move(cond), std::move(b));
        if (stop == "endif") break;
        ExprParser q(after_keyword(last().content, stop), name_, last().line);
        if (stop == "elif") {
          cond = q.expression();
          q.expect_end();
        } else {
          q.expect_end();
          n.branches.emplace_back(nullptr, body({"endif"}, stop));
          break;
        }
      }
      return n;
    }
    if (kw == "for") {
      Node n = node(Node::Kind::for_, s.line);
      do n.targets.push_back(p.name());
      while (p.take_op(","));
      if (!p.take_name("in")) p.error("expected 'in' after the loop variables");
      n.expr = p.expression(false);
      if (p.take_name("if")) n.cond = p.expression(false);
      if (p.peek_name("recursive")) p.error("recursive loops are not supported");
      p.expect_end();
      n.body = body({"else", "endfor"}, stop);
      if (stop == "else") n.else_body = body({"endfor"}, stop);
      return n;
    }
    if (kw == "set") {
      Node n = node(Node::Kind::set, s.line);
      do n.targets.push_back(p.name());
      while (p.take_op(","));
      if (n.targets.size() == 1 && p.take_op(".")) n.attr = p.name();
      if (p.take_op("=")) {
        n.expr = p.tuple_or_expression();
        p.expect_end();
      } else {
        p.expect_end();
        if (n.targets.size() != 1 || !n.attr.empty()) p.error("a block set takes one plain variable");
        n.body = body({"endset"}, stop);
      }
      return n;
    }
    if (kw == "macro") {
      Node n = node(Node::Kind::macro, s.line);
      n.text = p.name();
      p.expect_op("(");
      while (!p.take_op(")")) {
        n.params.push_back(p.name());
        n.defaults.push_back(p.take_op("=") ? p.expression() : nullptr);
        if (!p.peek_op(")")) p.expect_op(",");
      }
      p.expect_end();
      n.body = body({"endmacro"}, stop);
      return n;
    }
    if (kw == "break" || kw == "continue") {
      p.expect_end();
      return node(kw == "break" ? Node::Kind::break_ : Node::Kind::continue_, s.line);
    }
    if (kw == "generation") {
      p.expect_end();
      Node n = node(Node::Kind::generation, s.line);
      n.body = body({"endgeneration"}, stop);
      return n;
    }
    if (kw.empty()) template_error(name_, s.line, "an empty {% %} tag");
    template_error(name_, s.line, str("the tag {% ", kw, " %} is not supported (weft's Jinja knows if/elif/else, "
                                      "for/else, set, macro, break, continue, generation)"));
  }

  std::vector<Segment> segs_;
  size_t pos_ = 0;
  const std::string& name_;
  int depth_ = 0;
};

}  // namespace

Body parse_template(const std::string& source, const std::string& name) {
  // jinja2 drops one newline at the very end of a template (keep_trailing_newline is off in transformers).
  std::string src = source;
  if (src.ends_with("\r\n")) src.resize(src.size() - 2);
  else if (src.ends_with('\n')) src.pop_back();
  return Parser(segment(src, name), name).parse();
}

}  // namespace weft::jinja
