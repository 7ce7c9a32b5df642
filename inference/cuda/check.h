// Turning CUDA, cuBLAS and NCCL error codes into Status, with the call and
// where it was made: "cudaMalloc(&p, n) at cuda_backend.cc:120: out of memory".
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "common/status.h"

namespace loom::inference::cuda {

inline Status CallStatus(const char* what, const char* file, int line, const char* message) {
  std::string where = std::string(file);
  where = where.substr(where.find_last_of('/') + 1);
  return Status::Internal(std::string(what) + " at " + where + ":" + std::to_string(line) + ": " +
                          message);
}

inline const char* ErrorText(cudaError_t e) { return cudaGetErrorString(e); }
inline const char* ErrorText(ncclResult_t e) { return ncclGetErrorString(e); }
inline const char* ErrorText(cublasStatus_t e) { return cublasGetStatusString(e); }
inline bool Failed(cudaError_t e) { return e != cudaSuccess; }
inline bool Failed(ncclResult_t e) { return e != ncclSuccess; }
inline bool Failed(cublasStatus_t e) { return e != CUBLAS_STATUS_SUCCESS; }

}  // namespace loom::inference::cuda

// Returns an Internal Status from the enclosing function when `call` fails.
#define LOOM_CUDA_CHECK(call)                                                                \
  do {                                                                                       \
    auto loom_cuda_result_ = (call);                                                         \
    if (::loom::inference::cuda::Failed(loom_cuda_result_)) {                                \
      return ::loom::inference::cuda::CallStatus(                                            \
          #call, __FILE__, __LINE__, ::loom::inference::cuda::ErrorText(loom_cuda_result_)); \
    }                                                                                        \
  } while (0)
