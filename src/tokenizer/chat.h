// weft/src/tokenizer/chat.h v3 — chat templates for SFT and generation: a chat as token ids plus a loss mask that is 1
// exactly on the assistant's replies (and what the template puts after each reply, its end token among it).
//
// Two kinds of format: five built-in tables (the families' formats, written out in C++), and a model's own Jinja
// template ("model": tokenizer_config.json's chat_template or chat_template.jinja), rendered as transformers'
// apply_chat_template does. For training, each turn is encoded on its own and the ids concatenated (as
// LLaMA-Factory and Pai-Megatron-Patch do), so a reply's tokens never depend on the prompt before it and the mask
// boundary falls between tokens; a prompt for generation is encoded as one text, as transformers does.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/jinja.h"

namespace weft {

enum class ChatTemplate { llama2, llama3, mistral, qwen, deepseek };

// "llama2", "llama3", "mistral", "qwen" (ChatML), "deepseek"; errors list the choices.
ChatTemplate chat_template_named(const std::string& name);

struct ChatMessage {
  std::string role, content;  // role: system, user, assistant
};

struct TokenizedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // per id: 1 where the id is part of an assistant reply
};

// The messages of one SFT record: {"messages": [{"role", "content"}, ...]}, or {"instruction", "input", "output"}
// (also {"query", "response"}), with an optional "system". Throws weft::Error saying what is missing (an assistant
// message too, unless `for_generation`, where the chat is a prompt).
std::vector<ChatMessage> chat_messages(const nlohmann::json& record, bool for_generation = false);

// The chat's ids and loss mask; with add_generation_prompt the ids end with what opens the assistant's reply (Llama
// 3's assistant header, ChatML's "<|im_start|>assistant\n", DeepSeek's <｜Assistant｜>; Llama 2 and Mistral prompts
// already end with [/INST]).
TokenizedChat apply_chat_template(const HfTokenizer& tok, ChatTemplate t, const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt = false);

// A model's own chat template and the special tokens it may print (bos_token, eos_token, ...).
struct ModelChatTemplate {
  std::unique_ptr<JinjaTemplate> jinja;
  nlohmann::ordered_json special_tokens;
};

// The template beside a tokenizer (`path`: tokenizer.json or its directory): tokenizer_config.json's chat_template
// (a string, or the entry named "default" of a list), else chat_template.jinja. Errors name the files looked at.
ModelChatTemplate load_model_chat_template(const std::string& path);

// The text transformers' apply_chat_template renders (messages, add_generation_prompt, tools = documents = None,
// the special tokens).
std::string render_chat(const ModelChatTemplate& t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

// A chat format chosen by name: a built-in table, or "model" for the tokenizer's own template.
struct ChatFormat {
  ChatTemplate table = ChatTemplate::qwen;
  std::shared_ptr<const ModelChatTemplate> model;  // set for "model"
};

// The format `name` ("model" or a table's name) for the tokenizer at `tokenizer_path`.
ChatFormat chat_format(const std::string& name, const std::string& tokenizer_path);

// The chat's ids and loss mask in `format`. A model template's reply spans are found by rendering the chat up to
// each reply with and without it; a template that renders earlier turns differently once later ones follow (Qwen3
// drops earlier reasoning) cannot be masked so, and is refused naming the message.
TokenizedChat apply_chat_template(const HfTokenizer& tok, const ChatFormat& format,
                                  const std::vector<ChatMessage>& messages, bool add_generation_prompt = false);

}  // namespace weft
