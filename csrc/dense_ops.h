// Device-independent OpKernels of the element-wise dense ops around the two tf.matmul of the
// dense MNF layer (MnfDenseScaledInputs, MnfClippedVariance, MnfDenseEpilogue and their
// gradients): each validates its inputs, allocates its outputs and calls the functor of its
// device, defined for CPUDevice in dense_cpu.cc and for GPUDevice in cuda/dense_gpu.cc
// (TensorFlow's custom-op template; Louizos & Welling 2017, Algorithm 1).
#ifndef TFP_MNF_CSRC_DENSE_OPS_H_
#define TFP_MNF_CSRC_DENSE_OPS_H_

#include <cstdint>

#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

// Per-device computations: Status operator()(OpKernelContext*, ...) with the arguments of
// the Compute that calls it.
template <typename Device, typename T>
struct DenseScaledInputsFunctor;
template <typename Device, typename T>
struct DenseScaledInputsGradFunctor;
template <typename Device, typename T>
struct ClippedVarianceFunctor;
template <typename Device, typename T>
struct ClippedVarianceGradFunctor;
template <typename Device, typename T>
struct DenseEpilogueFunctor;
template <typename Device, typename T>
struct DenseEpilogueGradFunctor;

// An OpKernel whose constructor reads the max_std attribute as log(max_std).
template <typename T>
class MaxStdOpKernel : public tensorflow::OpKernel {
 public:
  explicit MaxStdOpKernel(tensorflow::OpKernelConstruction* ctx) : tensorflow::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

 protected:
  T log_max_;
};

// (x, z) -> (x * z, x^2), reading x once.
template <typename Device, typename T>
class DenseScaledInputsOp : public tensorflow::OpKernel {
 public:
  using tensorflow::OpKernel::OpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    ScaledInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    tensorflow::Tensor *xz, *x_sq;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &xz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &x_sq));
    OP_REQUIRES_OK(ctx, DenseScaledInputsFunctor<Device, T>()(
                            ctx, in.x.NumElements(), in.x.flat<T>().data(),
                            in.z.flat<T>().data(), xz->flat<T>().data(),
                            x_sq->flat<T>().data()));
  }
};

// (g_xz, g_xsq, x, z) -> (d x = g_xz z + 2 x g_xsq, d z = g_xz x).
template <typename Device, typename T>
class DenseScaledInputsGradOp : public tensorflow::OpKernel {
 public:
  using tensorflow::OpKernel::OpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    ScaledInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 2));
    OP_REQUIRES_OK(ctx, CheckShape("grad_x_z", ctx->input(0), in.x.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_x_sq", ctx->input(1), in.x.shape()));
    tensorflow::Tensor *dx, *dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &dz));
    OP_REQUIRES_OK(ctx, DenseScaledInputsGradFunctor<Device, T>()(
                            ctx, in.x.NumElements(), ctx->input(0).flat<T>().data(),
                            ctx->input(1).flat<T>().data(), in.x.flat<T>().data(),
                            in.z.flat<T>().data(), dx->flat<T>().data(), dz->flat<T>().data()));
  }
};

// log_std -> sigma^2 = exp(2 min(log_std, log max_std)).
template <typename Device, typename T>
class ClippedVarianceOp : public MaxStdOpKernel<T> {
 public:
  using MaxStdOpKernel<T>::MaxStdOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& log_std = ctx->input(0);
    tensorflow::Tensor* variance = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, log_std.shape(), &variance));
    OP_REQUIRES_OK(ctx, ClippedVarianceFunctor<Device, T>()(
                            ctx, log_std.NumElements(), log_std.flat<T>().data(),
                            this->log_max_, variance->flat<T>().data()));
  }
};

// (g, log_std, sigma^2) -> d log_std = 2 sigma^2 g where log_std <= log max_std, else 0.
template <typename Device, typename T>
class ClippedVarianceGradOp : public MaxStdOpKernel<T> {
 public:
  using MaxStdOpKernel<T>::MaxStdOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& log_std = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckShape("grad", ctx->input(0), log_std.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("variance", ctx->input(2), log_std.shape()));
    tensorflow::Tensor* grad_log_std = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->forward_input_or_allocate_output({0}, 0, log_std.shape(), &grad_log_std));
    OP_REQUIRES_OK(ctx, ClippedVarianceGradFunctor<Device, T>()(
                            ctx, log_std.NumElements(), ctx->input(0).flat<T>().data(),
                            log_std.flat<T>().data(), ctx->input(2).flat<T>().data(),
                            this->log_max_, grad_log_std->flat<T>().data()));
  }
};

// (mu, var, b, bias_log_var, seed) -> (mu + b + std eps, std), std = sqrt(var + sigma_b^2),
// sigma_b^2 = exp(min(bias_log_var, 2 log max_std)).
template <typename Device, typename T>
class DenseEpilogueOp : public MaxStdOpKernel<T> {
 public:
  using MaxStdOpKernel<T>::MaxStdOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    DenseEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.ReadForward(ctx));
    const tensorflow::TensorShape& shape = in.first.shape();
    tensorflow::Tensor *out, *stddev;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, shape, &out));
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 1, shape, &stddev));
    OP_REQUIRES_OK(ctx, DenseEpilogueFunctor<Device, T>()(
                            ctx, in.batch, in.out, in.first.flat<T>().data(),
                            in.second.flat<T>().data(), in.bias_mean.flat<T>().data(),
                            in.bias_log_var.flat<T>().data(), T(2) * this->log_max_, in.stream,
                            out->flat<T>().data(), stddev->flat<T>().data()));
  }
};

// (g, std, bias_log_var, seed) -> (d var = g eps / (2 std), d b = sum_rows g,
// d bias_log_var = sum_rows(d var) sigma_b^2, zero above the clip); d mu = g needs no op.
template <typename Device, typename T>
class DenseEpilogueGradOp : public MaxStdOpKernel<T> {
 public:
  using MaxStdOpKernel<T>::MaxStdOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    DenseEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.ReadGrad(ctx));
    tensorflow::Tensor *grad_var, *grad_bias, *grad_blv;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 0, in.first.shape(),
                                                              &grad_var));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, tensorflow::TensorShape({in.out}), &grad_bias));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, tensorflow::TensorShape({in.out}), &grad_blv));
    OP_REQUIRES_OK(ctx, DenseEpilogueGradFunctor<Device, T>()(
                            ctx, in.batch, in.out, in.first.flat<T>().data(),
                            in.second.flat<T>().data(), in.bias_log_var.flat<T>().data(),
                            T(2) * this->log_max_, in.stream, grad_var->flat<T>().data(),
                            grad_bias->flat<T>().data(), grad_blv->flat<T>().data()));
  }
};

// Expands REGISTER(name, Kernel, T) for the kernels without a seed input and
// REGISTER_SEEDED(name, Kernel, T) for those with one, Kernel being the class template.
#define MNF_REGISTER_DENSE_KERNELS(REGISTER, REGISTER_SEEDED, T)    \
  REGISTER("MnfDenseScaledInputs", DenseScaledInputsOp, T)          \
  REGISTER("MnfDenseScaledInputsGrad", DenseScaledInputsGradOp, T)  \
  REGISTER("MnfClippedVariance", ClippedVarianceOp, T)              \
  REGISTER("MnfClippedVarianceGrad", ClippedVarianceGradOp, T)      \
  REGISTER_SEEDED("MnfDenseEpilogue", DenseEpilogueOp, T)           \
  REGISTER_SEEDED("MnfDenseEpilogueGrad", DenseEpilogueGradOp, T)

}  // namespace mnf

#endif  // TFP_MNF_CSRC_DENSE_OPS_H_
