// weft/test/unit/safetensors_test.cpp v1 — broken safetensors files and checkpoints: one clear error each.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/hf_config.h"
#include "io/hf_weights.h"
#include "io/safetensors.h"
#include "model/gpt_model.h"
#include "test_util.h"

using namespace weft;
using weft::test::fixture;
using weft::test::TempDir;

namespace {

// A file with the given JSON header and `data_bytes` bytes of data.
std::string write_file(const TempDir& dir, const std::string& name, const std::string& header, size_t data_bytes,
                       int64_t claimed_length = -1) {
  std::string bytes(8, '\0');
  const uint64_t n = claimed_length >= 0 ? static_cast<uint64_t>(claimed_length) : header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header + std::string(data_bytes, '\x01');
  return dir.write(name, bytes);
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsFile f(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_error(const std::string& msg, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(msg.empty()) << "expected an error";
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' missing from: " << msg;
}

}  // namespace

TEST(SafetensorsErrors, EachBrokenFileNamesFileAndTensor) {
  TempDir dir;
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  EXPECT_EQ(error_of(write_file(dir, "ok.safetensors", ok, 16)), "");
  std::string p = dir.write("tiny.safetensors", "abc");
  expect_error(error_of(p), {p, "too short", "truncated"});
  p = write_file(dir, "len.safetensors", ok, 16, 1 << 20);
  expect_error(error_of(p), {p, "header length 1048576 runs past the end"});
  p = write_file(dir, "json.safetensors", "{not json", 0);
  expect_error(error_of(p), {p, "not valid JSON"});
  p = write_file(dir, "trunc.safetensors", ok, 8);
  expect_error(error_of(p), {p, "tensor 'a'", "outside the data section", "truncated"});
  p = write_file(dir, "dtype.safetensors", R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4);
  expect_error(error_of(p), {p, "tensor 'a'", "dtype 'F8_E4M3' is not supported"});
  p = write_file(dir, "size.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16);
  expect_error(error_of(p), {p, "tensor 'a'", "[3]", "12 bytes", "holds 16"});
  p = write_file(dir, "overlap.safetensors",
                 R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                 24);
  expect_error(error_of(p), {p, "'a'", "'b'", "overlap"});
}

TEST(SafetensorsErrors, MissingAndMisshapenTensorsOfAModel) {
  TempDir dir;
  const ModelSpec spec = read_hf_config(fixture("hf/llama2"));
  // Rewrite the fixture without one tensor, and with one tensor of the wrong shape.
  const SafetensorsDir src(fixture("hf/llama2"));
  auto rewrite = [&](const std::string& out_dir, const std::string& drop, const std::string& reshape) {
    SafetensorsWriter w(dir.file(out_dir), DType::bf16, size_t(1) << 30);
    for (const std::string& name : src.names()) {
      if (name == drop) continue;
      const auto& info = src.file_of(name).info(name);
      std::vector<double> v(static_cast<size_t>(numel_of(info.shape)));
      const int64_t rows = info.shape.size() == 2 ? info.shape[0] : 1;
      src.file_of(name).read_block(name, 0, rows, 0, info.shape.back(), v.data());
      Shape shape = info.shape;
      if (name == reshape) shape = {shape[1], shape[0]};
      w.add(name, shape, v);
    }
    w.finish();
    std::filesystem::copy_file(fixture("hf/llama2/config.json"), dir.file(out_dir + "/config.json"));
  };
  rewrite("missing", "model.layers.1.mlp.up_proj.weight", "");
  rewrite("shape", "", "model.layers.0.mlp.down_proj.weight");
  auto load_error = [&](const std::string& d) -> std::string {
    try {
      const SafetensorsDir hf(dir.file(d));
      const HfNameMap names(spec);
      const std::pair<const char*, Shape> params[] = {{"decoder.layers.1.mlp.linear_fc1.weight", {2 * spec.ffn, spec.hidden}},
                                                       {"decoder.layers.0.mlp.linear_fc2.weight", {spec.hidden, spec.ffn}}};
      for (const auto& [name, shape] : params) {
        Parameter p;
        p.name = name;
        p.shard_dim = -1;
        p.value = Tensor::zeros(shape, DType::f32);
        load_hf_parameter(p, names, hf);
      }
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  expect_error(load_error("missing"), {dir.file("missing"), "no tensor 'model.layers.1.mlp.up_proj.weight'"});
  expect_error(load_error("shape"), {"model.layers.0.mlp.down_proj.weight", "[176, 64]", "config.json implies [64, 176]"});
}

TEST(HfConfig, ReadsBothRopeFormsAndRefusesWhatItCannotCompute) {
  nlohmann::json v4 = {{"model_type", "llama"}, {"num_hidden_layers", 2}, {"hidden_size", 64},
                       {"intermediate_size", 128}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                       {"vocab_size", 512}, {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-5},
                       {"rope_theta", 500000.0},
                       {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}};
  ModelSpec s = parse_hf_config(v4, "v4");
  EXPECT_EQ(s.rope_scaling.type, "llama3");
  EXPECT_EQ(s.rope_theta, 500000.0);
  EXPECT_EQ(s.head_dim, 16);
  const ModelSpec v5 = read_hf_config(fixture("hf/llama31"));
  EXPECT_EQ(v5.rope_scaling.type, "llama3");
  EXPECT_EQ(v5.rope_scaling.original_max_position_embeddings, 16);
  EXPECT_EQ(read_hf_config(fixture("hf/mistral")).sliding_window, 8);
  const ModelSpec qwen = read_hf_config(fixture("hf/qwen2"));
  EXPECT_TRUE(qwen.qkv_bias && qwen.tie_embeddings);
  EXPECT_EQ(qwen.sliding_window, 0);
  for (auto [field, value] : {std::pair<std::string, nlohmann::json>{"hidden_act", "gelu"}, {"mlp_bias", true},
                              {"attention_bias", true}, {"attention_dropout", 0.1}}) {
    nlohmann::json bad = v4;
    bad[field] = value;
    try {
      parse_hf_config(bad, "cfg");
      ADD_FAILURE() << field << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  }
  nlohmann::json yarn = v4;
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_THROW(parse_hf_config(yarn, "cfg"), Error);
  // The export writes a config that reads back to the same model.
  const ModelSpec back = parse_hf_config(hf_config_of(v5), "export");
  EXPECT_EQ(back.rope_scaling.factor, v5.rope_scaling.factor);
  EXPECT_EQ(back.groups, v5.groups);
  EXPECT_EQ(parse_hf_config(hf_config_of(qwen), "export").tie_embeddings, true);
}

// The MoE families' config.json keys: Mixtral's experts in every layer, routed by the top-k renormalised; Qwen-MoE's
// dense layers, shared expert and routing with or without norm_topk_prob; and their tensor names.
TEST(HfConfig, ReadsAndWritesTheMoeFamilies) {
  const nlohmann::json mixtral = {{"model_type", "mixtral"}, {"num_hidden_layers", 2}, {"hidden_size", 64},
                                  {"intermediate_size", 96}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                                  {"vocab_size", 512}, {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-5},
                                  {"num_local_experts", 4}, {"num_experts_per_tok", 2}, {"router_jitter_noise", 0.0},
                                  {"sliding_window", nullptr}};
  const ModelSpec m = parse_hf_config(mixtral, "mixtral");
  EXPECT_EQ(m.family, "mixtral");
  EXPECT_EQ(m.num_experts, 4);
  EXPECT_EQ(m.moe_topk, 2);
  EXPECT_EQ(m.moe_ffn, 96);
  EXPECT_FALSE(m.moe_pre_softmax);
  EXPECT_EQ(m.moe_layers(), 2);
  EXPECT_EQ(parse_hf_config(hf_config_of(m), "export").num_experts, 4);
  nlohmann::json jitter = mixtral;
  jitter["router_jitter_noise"] = 0.01;
  EXPECT_THROW(parse_hf_config(jitter, "cfg"), Error);

  nlohmann::json qwen = {{"model_type", "qwen2_moe"}, {"num_hidden_layers", 4}, {"hidden_size", 64},
                         {"intermediate_size", 128}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                         {"vocab_size", 512}, {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-6},
                         {"num_experts", 8}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 32},
                         {"shared_expert_intermediate_size", 96}, {"decoder_sparse_step", 2},
                         {"mlp_only_layers", {3}}, {"norm_topk_prob", false}};
  const ModelSpec q = parse_hf_config(qwen, "qwen");
  EXPECT_TRUE(q.qkv_bias && q.moe_pre_softmax && q.moe_shared_gate);
  EXPECT_EQ(q.moe_shared_ffn, 96);
  // decoder_sparse_step 2: layers 1 and 3 sparse, but 3 is listed dense.
  EXPECT_EQ(q.mlp_kind(0), MlpKind::dense);
  EXPECT_EQ(q.mlp_kind(1), MlpKind::moe);
  EXPECT_EQ(q.mlp_kind(3), MlpKind::dense);
  const ModelSpec back = parse_hf_config(hf_config_of(q), "export");
  EXPECT_EQ(back.mlp_only_layers, q.mlp_only_layers);
  EXPECT_EQ(back.decoder_sparse_step, 2);
  EXPECT_TRUE(back.moe_pre_softmax);
  qwen["norm_topk_prob"] = true;
  EXPECT_FALSE(parse_hf_config(qwen, "qwen").moe_pre_softmax);
  qwen["shared_expert_intermediate_size"] = 0;
  EXPECT_THROW(parse_hf_config(qwen, "qwen"), Error);

  ModelSpec llama_with_experts = m;
  llama_with_experts.family = "llama";
  EXPECT_THROW(hf_config_of(llama_with_experts), Error);

  const HfNameMap names(q);
  EXPECT_EQ(*names.shape("model.layers.1.mlp.gate.weight"), (Shape{8, 64}));
  EXPECT_EQ(*names.shape("model.layers.1.mlp.experts.7.down_proj.weight"), (Shape{64, 32}));
  EXPECT_EQ(*names.shape("model.layers.1.mlp.shared_expert_gate.weight"), (Shape{1, 64}));
  EXPECT_EQ(*names.shape("model.layers.0.mlp.up_proj.weight"), (Shape{128, 64}));
  EXPECT_EQ(names.shape("model.layers.0.mlp.gate.weight"), nullptr);  // layer 0 is dense
  EXPECT_EQ(names.segments("decoder.layers.1.mlp.experts.local_experts.3.linear_fc1.weight").size(), 2u);
  const HfNameMap mixtral_names(m);
  EXPECT_EQ(*mixtral_names.shape("model.layers.0.block_sparse_moe.experts.3.w3.weight"), (Shape{96, 64}));
  EXPECT_EQ(*mixtral_names.shape("model.layers.1.block_sparse_moe.gate.weight"), (Shape{4, 64}));
}
