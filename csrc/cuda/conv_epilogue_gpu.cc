// GPU kernels (TensorFlow side) of MnfConvLocalReparamEpilogue and its gradient: validate
// inputs, allocate outputs and call the TensorFlow-free CUDA launchers on the op's stream.
#define EIGEN_USE_GPU

#include "cuda/gpu_kernel_utils.h"
#include "cuda/local_reparam_kernels.h"
#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;

template <typename T>
class ConvEpilogueGpuOp : public OpKernel {
 public:
  explicit ConvEpilogueGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ConvInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.mu.shape(), &out));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchConvEpilogue<T>(
                            Stream(ctx), in.mu.NumElements(), in.per_example, in.channels,
                            in.mu.flat<T>().data(), in.var.flat<T>().data(),
                            in.z.flat<T>().data(), in.stream, out->flat<T>().data())));
  }
};

template <typename T>
class ConvEpilogueGradGpuOp : public OpKernel {
 public:
  explicit ConvEpilogueGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    ConvInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 1));
    OP_REQUIRES_OK(ctx, CheckShape("grad", grad, in.mu.shape()));
    Tensor *dmu, *dvar, *dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.mu.shape(), &dmu));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.mu.shape(), &dvar));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, in.z.shape(), &dz));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchConvEpilogueGrad<T>(
                            Stream(ctx), in.mu.NumElements(), in.per_example, in.channels,
                            grad.flat<T>().data(), in.mu.flat<T>().data(),
                            in.var.flat<T>().data(), in.z.flat<T>().data(), in.stream,
                            dmu->flat<T>().data(), dvar->flat<T>().data(),
                            dz->flat<T>().data())));
  }
};

#define REGISTER_CONV_GPU(T)                                                                 \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogue")                                \
                              .Device(tensorflow::DEVICE_GPU)                                \
                              .HostMemory("seed")                                            \
                              .TypeConstraint<T>("T"),                                       \
                          ConvEpilogueGpuOp<T>);                                             \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogueGrad")                            \
                              .Device(tensorflow::DEVICE_GPU)                                \
                              .HostMemory("seed")                                            \
                              .TypeConstraint<T>("T"),                                       \
                          ConvEpilogueGradGpuOp<T>);

REGISTER_CONV_GPU(float);

}  // namespace
}  // namespace mnf
