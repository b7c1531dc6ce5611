// Helpers shared by the TensorFlow GPU kernels (*_gpu.cc): the op's CUDA stream and the
// status of a launcher's cudaError_t. Include after defining EIGEN_USE_GPU.
#ifndef TFP_MNF_CSRC_CUDA_GPU_KERNEL_UTILS_H_
#define TFP_MNF_CSRC_CUDA_GPU_KERNEL_UTILS_H_

#include <cuda_runtime.h>

#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

inline tensorflow::Status CudaStatus(cudaError_t err) {
  if (err == cudaSuccess) return tensorflow::OkStatus();
  return tensorflow::errors::Internal("CUDA launch failed: ", cudaGetErrorString(err));
}

inline cudaStream_t Stream(tensorflow::OpKernelContext* ctx) {
  return ctx->eigen_device<Eigen::GpuDevice>().stream();
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CUDA_GPU_KERNEL_UTILS_H_
