// weft/src/generate/sampling.h v1 — choosing the next token from a sequence's logits, as HF transformers' generate
// does: the repetition penalty, then greedy, or temperature, top-k and top-p and a draw.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace weft {

struct SamplingOptions {
  double temperature = 0;          // 0: greedy (the first of the largest logits)
  int64_t top_k = 0;               // > 0: only the k largest logits (and those tied with the k-th) stay
  double top_p = 1.0;              // < 1: only the most probable tokens whose probabilities reach p stay
  double repetition_penalty = 1.0; // > 1: logits of tokens already in the sequence shrink (CTRL's penalty)
};

// HF's RepetitionPenaltyLogitsProcessor: each token in `seen` has its logit divided by the penalty when positive,
// multiplied when negative.
void apply_repetition_penalty(std::vector<double>& logits, const std::vector<int32_t>& seen, double penalty);
// HF's TopKLogitsWarper: logits below the k-th largest become -inf.
void top_k_filter(std::vector<double>& logits, int64_t k);
// HF's TopPLogitsWarper: in ascending order of probability, the tokens whose cumulative probability stays at or below
// 1 − p become -inf (the most probable token always stays).
void top_p_filter(std::vector<double>& logits, double p);
// The next token: penalty, then greedy or temperature → top-k → top-p → a draw from `gen`.
int32_t next_token(std::vector<double> logits, const std::vector<int32_t>& seen, const SamplingOptions& o,
                   std::mt19937_64& gen);

}  // namespace weft
