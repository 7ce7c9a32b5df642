// Writes the CUDA decode benchmark's random-weight checkpoint (bench::Llama1B)
// into a folder, for scripts/bf16_tolerance_real_shape.py and by-hand runs.
//
//   inference_write_synthetic_model DIR [--layers N]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "bench/inference/synthetic_model.h"

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: %s DIR [--layers N]\n", argv[0]);
    return 2;
  }
  int64_t layers = 16;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--layers") == 0) layers = std::atoll(argv[i + 1]);
  }
  if (layers < 1) {
    std::fprintf(stderr, "--layers must be 1 or more\n");
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  auto params =
      loom::inference::bench::WriteSyntheticModel(argv[1], loom::inference::bench::Llama1B(layers));
  if (!params.ok()) {
    std::fprintf(stderr, "%s\n", params.status().ToString().c_str());
    return 1;
  }
  return 0;
}
