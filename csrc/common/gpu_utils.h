// Helpers shared by the TensorFlow GPU kernels (*/*_gpu.cc): the op's CUDA stream, the status
// of a launcher's cudaError_t and the kernel registration. Include after defining
// EIGEN_USE_GPU.
#ifndef TFP_MNF_CSRC_COMMON_GPU_UTILS_H_
#define TFP_MNF_CSRC_COMMON_GPU_UTILS_H_

#include <cuda_runtime.h>

#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

using GPUDevice = Eigen::GpuDevice;

inline tensorflow::Status CudaStatus(cudaError_t err) {
  if (err == cudaSuccess) return tensorflow::OkStatus();
  return tensorflow::errors::Internal("CUDA launch failed: ", cudaGetErrorString(err));
}

inline cudaStream_t Stream(tensorflow::OpKernelContext* ctx) {
  return ctx->eigen_device<GPUDevice>().stream();
}

}  // namespace mnf

// Register Kernel<GPUDevice, T> as op `name`'s GPU kernel for the type attribute T, with the
// seed input in host memory for the _SEEDED one; the families' MNF_REGISTER_*_KERNELS macros
// expand them.
#define MNF_REGISTER_GPU(name, Kernel, T)                                                      \
  REGISTER_KERNEL_BUILDER(                                                                     \
      Name(name).Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"), Kernel<GPUDevice, T>);
#define MNF_REGISTER_GPU_SEEDED(name, Kernel, T)                                           \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name(name).Device(tensorflow::DEVICE_GPU).HostMemory("seed").TypeConstraint<T>("T"), \
      Kernel<GPUDevice, T>);

#endif  // TFP_MNF_CSRC_COMMON_GPU_UTILS_H_
