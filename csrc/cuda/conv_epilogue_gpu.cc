// GPU functors of MnfConvLocalReparamEpilogue and its gradient: the OpKernels of conv_ops.h
// (input validation, output allocation) call the TensorFlow-free CUDA launchers
// (local_reparam_kernels.cu.cc) on the op's stream.
#define EIGEN_USE_GPU

#include "conv_ops.h"
#include "cuda/gpu_kernel_utils.h"
#include "cuda/local_reparam_kernels.h"

namespace mnf {

using tensorflow::OpKernelContext;
using GPUDevice = Eigen::GpuDevice;

template <typename T>
struct ConvEpilogueFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvInputs& in, T* out) const {
    return CudaStatus(cuda::LaunchConvEpilogue<T>(
        Stream(ctx), in.mu.NumElements(), in.per_example, in.channels, in.mu.flat<T>().data(),
        in.var.flat<T>().data(), in.z.flat<T>().data(), in.stream, out));
  }
};

template <typename T>
struct ConvEpilogueGradFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvInputs& in, const T* g, T* dmu,
                                T* dvar, T* dz) const {
    return CudaStatus(cuda::LaunchConvEpilogueGrad<T>(
        Stream(ctx), in.mu.NumElements(), in.per_example, in.channels, g,
        in.mu.flat<T>().data(), in.var.flat<T>().data(), in.z.flat<T>().data(), in.stream, dmu,
        dvar, dz));
  }
};

namespace {

#define REGISTER_CONV_GPU(T)                                                                 \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogue")                                \
                              .Device(tensorflow::DEVICE_GPU)                                \
                              .HostMemory("seed")                                            \
                              .TypeConstraint<T>("T"),                                       \
                          ConvEpilogueOp<GPUDevice, T>);                                     \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogueGrad")                            \
                              .Device(tensorflow::DEVICE_GPU)                                \
                              .HostMemory("seed")                                            \
                              .TypeConstraint<T>("T"),                                       \
                          ConvEpilogueGradOp<GPUDevice, T>);

REGISTER_CONV_GPU(float);

}  // namespace
}  // namespace mnf
