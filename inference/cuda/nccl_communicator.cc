#include "inference/cuda/nccl_communicator.h"

#include "inference/cuda/check.h"

namespace loom::inference::cuda {

NcclCommunicator::~NcclCommunicator() {
  if (comm_ != nullptr) ncclCommDestroy(comm_);
}

Status NcclCommunicator::AllReduceSum(float* data, size_t n) {
  LOOM_CUDA_CHECK(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm_, stream_));
  return Status::Ok();
}

Status NcclCommunicator::AllGather(const float* in, size_t n, float* out) {
  LOOM_CUDA_CHECK(ncclAllGather(in, out, n, ncclFloat32, comm_, stream_));
  return Status::Ok();
}

void FinalizeNcclGroup(const std::vector<NcclCommunicator*>& group) {
  if (group.empty()) return;
  ncclGroupStart();
  for (NcclCommunicator* c : group) {
    cudaSetDevice(c->device_);
    ncclCommFinalize(c->comm_);
  }
  ncclGroupEnd();
}

Result<std::vector<std::unique_ptr<NcclCommunicator>>> MakeNcclGroup(
    const std::vector<int>& devices) {
  if (devices.empty()) return Status::InvalidArgument("an NCCL group needs at least one device");
  int count = 0;
  LOOM_CUDA_CHECK(cudaGetDeviceCount(&count));
  for (int d : devices) {
    if (d < 0 || d >= count) {
      return Status::FailedPrecondition("CUDA device " + std::to_string(d) +
                                        " does not exist (this machine has " +
                                        std::to_string(count) + ")");
    }
  }
  const int n = static_cast<int>(devices.size());
  std::vector<ncclComm_t> comms(n, nullptr);
  LOOM_CUDA_CHECK(ncclCommInitAll(comms.data(), n, devices.data()));
  std::vector<std::unique_ptr<NcclCommunicator>> out;
  for (int r = 0; r < n; ++r) {
    out.push_back(std::make_unique<NcclCommunicator>(comms[r], r, n, devices[r]));
  }
  return out;
}

}  // namespace loom::inference::cuda
