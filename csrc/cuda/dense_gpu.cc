// GPU kernels (TensorFlow side) of the element-wise dense ops MnfDenseScaledInputs,
// MnfClippedVariance, MnfDenseEpilogue and their gradients: validate inputs, allocate
// outputs and call the TensorFlow-free CUDA launchers (dense_kernels.cu.cc) on the op's
// stream. The two products between them are tf.matmul (cuBLAS).
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
using tensorflow::TensorShape;

template <typename T>
class DenseScaledInputsGpuOp : public OpKernel {
 public:
  explicit DenseScaledInputsGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ScaledInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    Tensor *xz, *x_sq;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &xz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &x_sq));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchDenseScaledInputs<T>(
                            Stream(ctx), in.x.NumElements(), in.x.flat<T>().data(),
                            in.z.flat<T>().data(), xz->flat<T>().data(),
                            x_sq->flat<T>().data())));
  }
};

template <typename T>
class DenseScaledInputsGradGpuOp : public OpKernel {
 public:
  explicit DenseScaledInputsGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ScaledInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 2));
    OP_REQUIRES_OK(ctx, CheckShape("grad_x_z", ctx->input(0), in.x.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_x_sq", ctx->input(1), in.x.shape()));
    Tensor *dx, *dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &dz));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchDenseScaledInputsGrad<T>(
                            Stream(ctx), in.x.NumElements(), ctx->input(0).flat<T>().data(),
                            ctx->input(1).flat<T>().data(), in.x.flat<T>().data(),
                            in.z.flat<T>().data(), dx->flat<T>().data(), dz->flat<T>().data())));
  }
};

template <typename T>
class ClippedVarianceGpuOp : public OpKernel {
 public:
  explicit ClippedVarianceGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& log_std = ctx->input(0);
    Tensor* variance = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, log_std.shape(), &variance));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchClippedVariance<T>(
                            Stream(ctx), log_std.NumElements(), log_std.flat<T>().data(),
                            log_max_, variance->flat<T>().data())));
  }

 private:
  T log_max_;
};

template <typename T>
class ClippedVarianceGradGpuOp : public OpKernel {
 public:
  explicit ClippedVarianceGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& log_std = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckShape("grad", ctx->input(0), log_std.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("variance", ctx->input(2), log_std.shape()));
    Tensor* grad_log_std = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->forward_input_or_allocate_output({0}, 0, log_std.shape(), &grad_log_std));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchClippedVarianceGrad<T>(
                            Stream(ctx), log_std.NumElements(), ctx->input(0).flat<T>().data(),
                            log_std.flat<T>().data(), ctx->input(2).flat<T>().data(), log_max_,
                            grad_log_std->flat<T>().data())));
  }

 private:
  T log_max_;
};

template <typename T>
class DenseEpilogueGpuOp : public OpKernel {
 public:
  explicit DenseEpilogueGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    DenseEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.ReadForward(ctx));
    const TensorShape& shape = in.first.shape();
    Tensor *out, *stddev;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, shape, &out));
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 1, shape, &stddev));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchDenseEpilogue<T>(
                            Stream(ctx), in.batch, in.out, in.first.flat<T>().data(),
                            in.second.flat<T>().data(), in.bias_mean.flat<T>().data(),
                            in.bias_log_var.flat<T>().data(), T(2) * log_max_, in.stream,
                            out->flat<T>().data(), stddev->flat<T>().data())));
  }

 private:
  T log_max_;
};

template <typename T>
class DenseEpilogueGradGpuOp : public OpKernel {
 public:
  explicit DenseEpilogueGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    DenseEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.ReadGrad(ctx));
    Tensor *grad_var, *grad_bias, *grad_blv;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 0, in.first.shape(),
                                                              &grad_var));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({in.out}), &grad_bias));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({in.out}), &grad_blv));
    OP_REQUIRES_OK(ctx, CudaStatus(cuda::LaunchDenseEpilogueGrad<T>(
                            Stream(ctx), in.batch, in.out, in.first.flat<T>().data(),
                            in.second.flat<T>().data(), in.bias_log_var.flat<T>().data(),
                            T(2) * log_max_, in.stream, grad_var->flat<T>().data(),
                            grad_bias->flat<T>().data(), grad_blv->flat<T>().data())));
  }

 private:
  T log_max_;
};

#define REGISTER_GPU(name, Kernel, T)                                                    \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name(name).Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"), Kernel<T>);
#define REGISTER_GPU_SEEDED(name, Kernel, T)                                             \
  REGISTER_KERNEL_BUILDER(                                                               \
      Name(name).Device(tensorflow::DEVICE_GPU).HostMemory("seed").TypeConstraint<T>("T"), \
      Kernel<T>);

#define REGISTER_DENSE_GPU(T)                                                  \
  REGISTER_GPU("MnfDenseScaledInputs", DenseScaledInputsGpuOp, T)              \
  REGISTER_GPU("MnfDenseScaledInputsGrad", DenseScaledInputsGradGpuOp, T)      \
  REGISTER_GPU("MnfClippedVariance", ClippedVarianceGpuOp, T)                  \
  REGISTER_GPU("MnfClippedVarianceGrad", ClippedVarianceGradGpuOp, T)          \
  REGISTER_GPU_SEEDED("MnfDenseEpilogue", DenseEpilogueGpuOp, T)               \
  REGISTER_GPU_SEEDED("MnfDenseEpilogueGrad", DenseEpilogueGradGpuOp, T)

REGISTER_DENSE_GPU(float);

}  // namespace
}  // namespace mnf
