// Launch geometry shared by the TensorFlow-free CUDA kernels of every op family
// (*/*_kernels.cu.cc) and by the CUDA harness: block size, grid size and the grid-stride loop.
#ifndef TFP_MNF_CSRC_COMMON_CUDA_LAUNCH_H_
#define TFP_MNF_CSRC_COMMON_CUDA_LAUNCH_H_

#include <cstdint>

namespace mnf {
namespace cuda {

// Threads per block of every kernel.
constexpr int kThreads = 256;

// Blocks of a grid-stride launch over `work_items`: at least 1, at most 65535.
inline int Blocks(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

}  // namespace cuda
}  // namespace mnf

// for (i = this thread's first item; i < n; i += the grid's thread count).
#define MNF_GRID_STRIDE(i, n)                                               \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{blockDim.x} * gridDim.x)

#endif  // TFP_MNF_CSRC_COMMON_CUDA_LAUNCH_H_
