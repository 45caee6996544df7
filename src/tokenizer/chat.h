// weft/src/tokenizer/chat.h v2 — chat templates for SFT: the families' prompt formats as token ids plus a loss mask
// that is 1 exactly on the assistant's replies (and the token that ends each reply).
//
// Each turn is encoded on its own and the ids concatenated (as LLaMA-Factory and Pai-Megatron-Patch do), so a
// reply's tokens never depend on the prompt before it and the mask boundary falls between tokens.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/hf_tokenizer.h"

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

}  // namespace weft
