// Reads a Hugging Face config.json (+ generation_config.json) into ModelConfig.
//
// Two generations of the format are accepted: transformers <= 4 writes
// `rope_theta` and `rope_scaling` at the top level (Qwen2.5, Llama 3.x as
// published); transformers 5 nests both in `rope_parameters`. Every error names
// the file and the key, since the user's fix is to edit that file.
#include "inference/model/model_config.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <numbers>
#include <optional>
#include <sstream>

#include "common/json.h"

namespace loom::inference {
namespace {

Status KeyError(const std::string& path, const std::string& key, const std::string& what) {
  return Status::InvalidArgument(path + ": key \"" + key + "\" " + what);
}

// Reads an integer key; `required` keys must be present (and non-null).
Result<int64_t> GetInt(const Json& j, const std::string& path, const std::string& key,
                       std::optional<int64_t> fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return KeyError(path, key, "is missing (an integer is required)");
  }
  if (!it->is_number_integer()) return KeyError(path, key, "must be an integer");
  return it->get<int64_t>();
}

Result<double> GetNumber(const Json& j, const std::string& path, const std::string& key,
                         double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) return KeyError(path, key, "must be a number");
  return it->get<double>();
}

Result<bool> GetBool(const Json& j, const std::string& path, const std::string& key,
                     bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return KeyError(path, key, "must be true or false");
  return it->get<bool>();
}

// `eos_token_id` is an int, a list of ints, or null.
Status AppendEosIds(const Json& j, const std::string& path, std::vector<int32_t>* ids) {
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return Status::Ok();
  auto add = [&](const Json& v) -> Status {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      return KeyError(path, "eos_token_id", "must be a non-negative integer or a list of them");
    }
    auto id = static_cast<int32_t>(v.get<int64_t>());
    for (int32_t e : *ids) {
      if (e == id) return Status::Ok();
    }
    ids->push_back(id);
    return Status::Ok();
  };
  if (it->is_array()) {
    for (const Json& v : *it) LOOM_RETURN_IF_ERROR(add(v));
    return Status::Ok();
  }
  return add(*it);
}

// Parses a rope scaling object (`rope_scaling`, or `rope_parameters` in transformers 5)
// whose key in the file is `key`.
Status ParseRopeScaling(const Json& r, const std::string& path, const std::string& key,
                        RopeScaling* out) {
  if (!r.is_object()) return KeyError(path, key, "must be an object");
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    auto it = r.find(k);
    if (it != r.end() && !it->is_null()) {
      if (!it->is_string()) return KeyError(path, key + "." + k, "must be a string");
      type = it->get<std::string>();
      break;
    }
  }
  if (type.empty() || type == "default") {
    out->type = RopeScaling::Type::kNone;
    return Status::Ok();
  }
  if (type != "llama3") {
    return Status::Unimplemented(path + ": key \"" + key + ".rope_type\" is \"" + type +
                                 "\"; only \"default\" and \"llama3\" RoPE are supported");
  }
  out->type = RopeScaling::Type::kLlama3;
  LOOM_ASSIGN_OR_RETURN(out->factor, GetNumber(r, path, "factor", 8.0));
  LOOM_ASSIGN_OR_RETURN(out->low_freq_factor, GetNumber(r, path, "low_freq_factor", 1.0));
  LOOM_ASSIGN_OR_RETURN(out->high_freq_factor, GetNumber(r, path, "high_freq_factor", 4.0));
  LOOM_ASSIGN_OR_RETURN(out->original_max_position_embeddings,
                        GetInt(r, path, "original_max_position_embeddings", int64_t{8192}));
  if (out->factor <= 0 || out->low_freq_factor <= 0 ||
      out->high_freq_factor <= out->low_freq_factor || out->original_max_position_embeddings <= 0) {
    return KeyError(
        path, key,
        "has invalid llama3 parameters (need factor > 0, "
        "high_freq_factor > low_freq_factor > 0, original_max_position_embeddings > 0)");
  }
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::FromErrno(errno, "cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::IoError("cannot read " + path);
  return ss.str();
}

}  // namespace

Result<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& path) {
  Result<Json> parsed = ParseJson(json_text);
  if (!parsed.ok()) return parsed.status().WithContext(path);
  const Json& j = *parsed;
  if (!j.is_object()) return Status::InvalidArgument(path + ": must be a JSON object");

  ModelConfig c;
  auto mt = j.find("model_type");
  if (mt == j.end() || !mt->is_string()) {
    return KeyError(path, "model_type", "is missing (a string: \"llama\" or \"qwen2\")");
  }
  c.model_type = mt->get<std::string>();
  if (c.model_type != "llama" && c.model_type != "qwen2") {
    return Status::Unimplemented(path + ": key \"model_type\" is \"" + c.model_type +
                                 "\"; supported families are \"llama\" and \"qwen2\"");
  }
  auto act = j.find("hidden_act");
  if (act != j.end() && !(act->is_string() && act->get<std::string>() == "silu")) {
    return Status::Unimplemented(path + ": key \"hidden_act\" must be \"silu\"");
  }
  LOOM_ASSIGN_OR_RETURN(bool sliding, GetBool(j, path, "use_sliding_window", false));
  if (sliding) {
    return Status::Unimplemented(path +
                                 ": key \"use_sliding_window\" true is not supported (full "
                                 "attention only)");
  }
  LOOM_ASSIGN_OR_RETURN(bool mlp_bias, GetBool(j, path, "mlp_bias", false));
  if (mlp_bias) return Status::Unimplemented(path + ": key \"mlp_bias\" true is not supported");

  LOOM_ASSIGN_OR_RETURN(c.vocab_size, GetInt(j, path, "vocab_size", std::nullopt));
  LOOM_ASSIGN_OR_RETURN(c.hidden_size, GetInt(j, path, "hidden_size", std::nullopt));
  LOOM_ASSIGN_OR_RETURN(c.intermediate_size, GetInt(j, path, "intermediate_size", std::nullopt));
  LOOM_ASSIGN_OR_RETURN(c.num_layers, GetInt(j, path, "num_hidden_layers", std::nullopt));
  LOOM_ASSIGN_OR_RETURN(c.num_heads, GetInt(j, path, "num_attention_heads", std::nullopt));
  LOOM_ASSIGN_OR_RETURN(c.num_kv_heads, GetInt(j, path, "num_key_value_heads", c.num_heads));
  LOOM_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        GetInt(j, path, "max_position_embeddings", int64_t{2048}));
  LOOM_ASSIGN_OR_RETURN(c.rms_norm_eps, GetNumber(j, path, "rms_norm_eps", 1e-6));

  struct Positive {
    const char* key;
    int64_t value;
  };
  for (Positive p : {Positive{"vocab_size", c.vocab_size},
                     {"hidden_size", c.hidden_size},
                     {"intermediate_size", c.intermediate_size},
                     {"num_hidden_layers", c.num_layers},
                     {"num_attention_heads", c.num_heads},
                     {"num_key_value_heads", c.num_kv_heads},
                     {"max_position_embeddings", c.max_position_embeddings}}) {
    if (p.value <= 0) return KeyError(path, p.key, "must be positive");
  }
  if (c.vocab_size > INT32_MAX) return KeyError(path, "vocab_size", "is too large");
  if (c.num_heads % c.num_kv_heads != 0) {
    return KeyError(
        path, "num_attention_heads",
        "must be a multiple of num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")");
  }
  if (c.rms_norm_eps <= 0) return KeyError(path, "rms_norm_eps", "must be positive");

  auto hd = j.find("head_dim");
  if (hd == j.end() || hd->is_null()) {
    if (c.hidden_size % c.num_heads != 0) {
      return KeyError(path, "hidden_size",
                      "must be a multiple of num_attention_heads when head_dim is absent");
    }
    c.head_dim = c.hidden_size / c.num_heads;
  } else {
    LOOM_ASSIGN_OR_RETURN(c.head_dim, GetInt(j, path, "head_dim", std::nullopt));
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    return KeyError(path, "head_dim", "must be positive and even (RoPE rotates pairs)");
  }

  // RoPE: top level (transformers <= 4) or rope_parameters (transformers 5).
  c.rope_theta = 10000.0;
  auto rp = j.find("rope_parameters");
  bool has_rp = rp != j.end() && !rp->is_null();
  if (has_rp) {
    if (!rp->is_object()) return KeyError(path, "rope_parameters", "must be an object");
    auto t = rp->find("rope_theta");
    if (t != rp->end() && !t->is_null()) {
      if (!t->is_number()) return KeyError(path, "rope_parameters.rope_theta", "must be a number");
      c.rope_theta = t->get<double>();
    }
    LOOM_RETURN_IF_ERROR(ParseRopeScaling(*rp, path, "rope_parameters", &c.rope_scaling));
  }
  if (j.contains("rope_theta") && !j["rope_theta"].is_null()) {
    LOOM_ASSIGN_OR_RETURN(c.rope_theta, GetNumber(j, path, "rope_theta", c.rope_theta));
  }
  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) {
    LOOM_RETURN_IF_ERROR(ParseRopeScaling(*rs, path, "rope_scaling", &c.rope_scaling));
  }
  if (c.rope_theta <= 0) return KeyError(path, "rope_theta", "must be positive");

  if (c.model_type == "qwen2") {
    c.attention_bias = true;
  } else {
    LOOM_ASSIGN_OR_RETURN(c.attention_bias, GetBool(j, path, "attention_bias", false));
  }
  LOOM_ASSIGN_OR_RETURN(c.tie_word_embeddings, GetBool(j, path, "tie_word_embeddings", false));
  LOOM_RETURN_IF_ERROR(AppendEosIds(j, path, &c.eos_token_ids));
  for (int32_t id : c.eos_token_ids) {
    if (id >= c.vocab_size) return KeyError(path, "eos_token_id", "is not below vocab_size");
  }
  return c;
}

Result<ModelConfig> LoadModelConfig(const std::string& dir) {
  std::string path = dir + "/config.json";
  LOOM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  LOOM_ASSIGN_OR_RETURN(ModelConfig c, ParseModelConfig(text, path));

  std::string gen_path = dir + "/generation_config.json";
  std::ifstream probe(gen_path);
  if (!probe) return c;  // optional file
  probe.close();
  LOOM_ASSIGN_OR_RETURN(std::string gen_text, ReadFile(gen_path));
  Result<Json> gen = ParseJson(gen_text);
  if (!gen.ok()) return gen.status().WithContext(gen_path);
  if (!gen->is_object()) return Status::InvalidArgument(gen_path + ": must be a JSON object");
  LOOM_RETURN_IF_ERROR(AppendEosIds(*gen, gen_path, &c.eos_token_ids));
  for (int32_t id : c.eos_token_ids) {
    if (id >= c.vocab_size) return KeyError(gen_path, "eos_token_id", "is not below vocab_size");
  }
  return c;
}

std::vector<float> RopeInverseFrequencies(const ModelConfig& config) {
  const int64_t half = config.head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  // HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32.
  for (int64_t i = 0; i < half; ++i) {
    float e = static_cast<float>(2 * i) / static_cast<float>(config.head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(config.rope_theta), e);
  }
  const RopeScaling& s = config.rope_scaling;
  if (s.type != RopeScaling::Type::kLlama3) return inv;
  // HF _compute_llama3_parameters: long wavelengths are divided by `factor`, short
  // ones kept, the band between interpolated smoothly.
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_ctx / s.low_freq_factor;
  const double high_freq_wavelen = old_ctx / s.high_freq_factor;
  for (int64_t i = 0; i < half; ++i) {
    double f = inv[i];
    double wavelen = 2 * std::numbers::pi / f;
    double adjusted = wavelen > low_freq_wavelen ? f / s.factor : f;
    bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    if (medium) {
      double smooth =
          (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      adjusted = (1 - smooth) * adjusted / s.factor + smooth * adjusted;
    }
    inv[i] = static_cast<float>(adjusted);
  }
  return inv;
}

}  // namespace loom::inference
