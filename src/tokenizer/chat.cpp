// weft/src/tokenizer/chat.cpp v2 — the five chat formats, as the families' HF chat templates render them.
#include "tokenizer/chat.h"

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

}  // namespace weft
