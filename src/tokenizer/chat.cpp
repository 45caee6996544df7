// weft/src/tokenizer/chat.cpp v3 — the five chat formats, as the families' HF chat templates render them, and models'
// own Jinja templates.
#include "tokenizer/chat.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "util/error.h"

namespace weft {
using nlohmann::json;

namespace {

std::string strip(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

class Builder {
 public:
  Builder(const HfTokenizer& tok) : tok_(tok) {}
  void text(const std::string& s, bool train) {
    for (int32_t id : tok_.encode(s)) push(id, train);
  }
  void token(const std::string& t, bool train) { push(tok_.require_id(t), train); }
  TokenizedChat done() { return std::move(out_); }

 private:
  void push(int32_t id, bool train) {
    out_.ids.push_back(id);
    out_.loss_mask.push_back(train ? 1 : 0);
  }
  const HfTokenizer& tok_;
  TokenizedChat out_;
};

void check_roles(const std::vector<ChatMessage>& m, bool for_generation) {
  WEFT_CHECK(!m.empty(), "chat has no messages");
  bool assistant = false;
  for (const auto& x : m) {
    WEFT_CHECK(x.role == "system" || x.role == "user" || x.role == "assistant", "chat role '", x.role,
               "' is not system, user or assistant");
    assistant |= x.role == "assistant";
  }
  WEFT_CHECK(assistant || for_generation, "chat has no assistant message to learn from");
  WEFT_CHECK(!for_generation || m.back().role == "user", "a chat to continue must end with a user message");
}

}  // namespace

ChatTemplate chat_template_named(const std::string& name) {
  if (name == "llama2") return ChatTemplate::llama2;
  if (name == "llama3") return ChatTemplate::llama3;
  if (name == "mistral") return ChatTemplate::mistral;
  if (name == "qwen" || name == "chatml") return ChatTemplate::qwen;
  if (name == "deepseek") return ChatTemplate::deepseek;
  fail(str("chat template '", name, "' is not known (llama2, llama3, mistral, qwen, deepseek)"));
}

std::vector<ChatMessage> chat_messages(const json& r, bool for_generation) {
  WEFT_CHECK(r.is_object(), "record is not a JSON object");
  std::vector<ChatMessage> m;
  auto text_of = [&](const char* key) -> std::string {
    WEFT_CHECK(r[key].is_string(), "field '", key, "' is not a string");
    return r[key].get<std::string>();
  };
  if (r.contains("system") && !r["system"].is_null()) m.push_back({"system", text_of("system")});
  if (r.contains("messages")) {
    WEFT_CHECK(r["messages"].is_array(), "field 'messages' is not a list");
    for (const auto& x : r["messages"]) {
      WEFT_CHECK(x.is_object() && x.contains("role") && x.contains("content") && x["role"].is_string() &&
                     x["content"].is_string(),
                 "a message lacks a string 'role' or 'content'");
      m.push_back({x["role"].get<std::string>(), x["content"].get<std::string>()});
    }
  } else if (r.contains("instruction") || r.contains("query")) {
    std::string prompt = r.contains("instruction") ? text_of("instruction") : text_of("query");
    if (r.contains("input") && r["input"].is_string() && !r["input"].get<std::string>().empty())
      prompt += "\n" + r["input"].get<std::string>();
    const char* answer = r.contains("output") ? "output" : "response";
    WEFT_CHECK(r.contains(answer) || for_generation, "record has an instruction but no 'output' or 'response'");
    m.push_back({"user", prompt});
    if (!for_generation) m.push_back({"assistant", text_of(answer)});
  } else {
    fail("record has neither 'messages' nor 'instruction'/'query'");
  }
  check_roles(m, for_generation);
  return m;
}

TokenizedChat apply_chat_template(const HfTokenizer& tok, ChatTemplate t, const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) {
  Builder b(tok);
  std::string system;
  size_t first = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  switch (t) {
    case ChatTemplate::llama2:
    case ChatTemplate::mistral:
      // <s>[INST] (<<SYS>>…<</SYS>>) user [/INST] reply </s>   (Mistral: no system block, no spaces around reply)
      for (size_t i = first; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "user") {
          std::string content = m.content;
          if (i == first && !system.empty()) {
            content = t == ChatTemplate::llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.content
                                                : system + "\n\n" + m.content;
          }
          b.token("<s>", false);
          b.text("[INST] " + strip(content) + " [/INST]", false);
        } else if (m.role == "assistant") {
          b.text(t == ChatTemplate::llama2 ? strip(m.content) + " " : m.content, true);
          b.token("</s>", true);
        }
      }
      break;
    case ChatTemplate::llama3:
      // <|begin_of_text|> then per message <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
      b.token("<|begin_of_text|>", false);
      for (const ChatMessage& m : messages) {
        const bool train = m.role == "assistant";
        b.token("<|start_header_id|>", false);
        b.text(m.role, false);
        b.token("<|end_header_id|>", false);
        b.text("\n\n", false);
        b.text(strip(m.content), train);
        b.token("<|eot_id|>", train);
      }
      if (add_generation_prompt) {
        b.token("<|start_header_id|>", false);
        b.text("assistant", false);
        b.token("<|end_header_id|>", false);
        b.text("\n\n", false);
      }
      break;
    case ChatTemplate::qwen:
      // <|im_start|>role\ncontent<|im_end|>\n, with Qwen2's default system prompt when none is given
      if (system.empty() && (messages.empty() || messages[0].role != "system")) system = "You are a helpful assistant.";
      b.token("<|im_start|>", false);
      b.text("system\n" + system, false);
      b.token("<|im_end|>", false);
      b.text("\n", false);
      for (size_t i = first; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        const bool train = m.role == "assistant";
        b.token("<|im_start|>", false);
        b.text(m.role + "\n", false);
        b.text(m.content, train);
        b.token("<|im_end|>", train);
        b.text("\n", false);
      }
      if (add_generation_prompt) {
        b.token("<|im_start|>", false);
        b.text("assistant\n", false);
      }
      break;
    case ChatTemplate::deepseek:
      // <｜begin▁of▁sentence｜>system<｜User｜>user<｜Assistant｜>reply<｜end▁of▁sentence｜>
      b.token("<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", false);
      if (!system.empty()) b.text(system, false);
      for (size_t i = first; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "user") {
          b.token("<\xef\xbd\x9cUser\xef\xbd\x9c>", false);
          b.text(m.content, false);
        } else if (m.role == "assistant") {
          b.token("<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", false);
          b.text(m.content, true);
          b.token("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", true);
        }
      }
      if (add_generation_prompt) b.token("<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", false);
      break;
  }
  return b.done();
}

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// A tokenizer_config.json token entry: a string, or an AddedToken object {"content": ...}; empty when absent.
std::string token_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

}  // namespace

ModelChatTemplate load_model_chat_template(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  const fs::path config = dir / "tokenizer_config.json", jinja_file = dir / "chat_template.jinja";
  ModelChatTemplate t;
  t.special_tokens = nlohmann::ordered_json::object();
  std::string source, origin;
  if (fs::exists(config)) {
    const json c = json::parse(read_text(config), nullptr, false);
    WEFT_CHECK(!c.is_discarded() && c.is_object(), config.string(), ": not a JSON object");
    for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
      if (c.contains(key) && !token_text(c[key]).empty()) t.special_tokens[key] = token_text(c[key]);
    if (c.contains("additional_special_tokens") && c["additional_special_tokens"].is_array()) {
      auto& extra = t.special_tokens["additional_special_tokens"] = nlohmann::ordered_json::array();
      for (const auto& x : c["additional_special_tokens"]) extra.push_back(token_text(x));
    }
    const json& ct = c.contains("chat_template") ? c["chat_template"] : json();
    if (ct.is_string()) {
      source = ct.get<std::string>(), origin = config.string() + "'s chat_template";
    } else if (ct.is_array()) {
      for (const auto& entry : ct)
        if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template"))
          source = entry["template"].get<std::string>(), origin = config.string() + "'s chat_template 'default'";
      WEFT_CHECK(!source.empty(), config.string(), ": chat_template is a list without an entry named 'default'");
    }
  }
  if (source.empty() && fs::exists(jinja_file)) source = read_text(jinja_file), origin = jinja_file.string();
  WEFT_CHECK(!source.empty(), "no chat template beside the tokenizer: neither ", config.string(),
             " has a chat_template nor does ", jinja_file.string(), " exist (name a built-in one instead: llama2, "
             "llama3, mistral, qwen, deepseek)");
  t.jinja = std::make_unique<JinjaTemplate>(source, origin);
  return t;
}

std::string render_chat(const ModelChatTemplate& t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  auto& list = context["messages"] = nlohmann::ordered_json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  context["tools"] = nullptr;
  context["documents"] = nullptr;
  context["add_generation_prompt"] = add_generation_prompt;
  for (const auto& [k, v] : t.special_tokens.items()) context[k] = v;
  return t.jinja->render(context);
}

ChatFormat chat_format(const std::string& name, const std::string& tokenizer_path) {
  ChatFormat f;
  if (name == "model") f.model = std::make_shared<ModelChatTemplate>(load_model_chat_template(tokenizer_path));
  else f.table = chat_template_named(name);
  return f;
}

TokenizedChat apply_chat_template(const HfTokenizer& tok, const ChatFormat& format,
                                  const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  if (!format.model) return apply_chat_template(tok, format.table, messages, add_generation_prompt);
  const ModelChatTemplate& t = *format.model;
  const std::string text = render_chat(t, messages, add_generation_prompt);
  Builder b(tok);
  if (add_generation_prompt) {  // a prompt to continue: one text, as transformers encodes it
    b.text(text, false);
    return b.done();
  }
  // Each reply spans from where the prompt before it ends (rendered with the generation prompt) to where the chat
  // up to and with it ends; both renderings must be prefixes of the whole chat's.
  size_t done = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role != "assistant") continue;
    const std::vector<ChatMessage> before(messages.begin(), messages.begin() + static_cast<ptrdiff_t>(i));
    const std::vector<ChatMessage> with(messages.begin(), messages.begin() + static_cast<ptrdiff_t>(i) + 1);
    const std::string prompt = render_chat(t, before, true), upto = render_chat(t, with, false);
    WEFT_CHECK(upto.compare(0, prompt.size(), prompt) == 0 && text.compare(0, upto.size(), upto) == 0 &&
                   prompt.size() >= done,
               "the model's chat template renders the chat before message ", i + 1, " differently once later messages "
               "follow, so that reply's tokens cannot be told apart; use a built-in template (llama2, llama3, "
               "mistral, qwen, deepseek)");
    b.text(text.substr(done, prompt.size() - done), false);
    b.text(text.substr(prompt.size(), upto.size() - prompt.size()), true);
    done = upto.size();
  }
  b.text(text.substr(done), false);
  return b.done();
}

}  // namespace weft
