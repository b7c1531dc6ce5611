// Device-independent OpKernels of the element-wise dense ops around the two tf.matmul of the
// dense MNF layer (MnfDenseScaledInputs, MnfDenseEpilogue and their gradients): each validates
// its inputs, allocates its outputs and calls the functor of its device, defined for CPUDevice
// in dense_cpu.cc and for GPUDevice in dense_gpu.cc (TensorFlow's custom-op template; Louizos &
// Welling 2017, Algorithm 1).
#ifndef TFP_MNF_CSRC_DENSE_DENSE_OPS_H_
#define TFP_MNF_CSRC_DENSE_DENSE_OPS_H_

#include <cstdint>

#include "common/op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

// Per-device computations: Status operator()(OpKernelContext*, ...) with the arguments of
// the Compute that calls it.
template <typename Device, typename T>
struct DenseScaledInputsFunctor;
template <typename Device, typename T>
struct DenseScaledInputsGradFunctor;
template <typename Device, typename T>
struct DenseEpilogueFunctor;
template <typename Device, typename T>
struct DenseEpilogueGradFunctor;

// The validated (x, z) inputs of MnfDenseScaledInputs(Grad) starting at input `first`.
struct ScaledInputs {
  tensorflow::Tensor x, z;

  tensorflow::Status Read(tensorflow::OpKernelContext* ctx, int first) {
    x = ctx->input(first);
    z = ctx->input(first + 1);
    TF_RETURN_IF_ERROR(CheckMatrix("x", x, "[batch, in_features]"));
    return CheckShape("z", z, x.shape());
  }
};

// The validated inputs of MnfDenseEpilogue (mu, var, bias_mean, bias_log_var, seed) or of its
// gradient (grad, stddev, bias_log_var, seed): two [B, N] tensors (mu and var, or grad and
// stddev) and the [N] bias terms (bias_mean: forward only).
struct DenseEpilogueInputs {
  tensorflow::Tensor first, second, bias_mean, bias_log_var;
  NormalStream stream;
  int64_t batch = 0, out = 0;

  tensorflow::Status ReadForward(tensorflow::OpKernelContext* ctx) {
    bias_mean = ctx->input(2);
    TF_RETURN_IF_ERROR(ReadRows(ctx, "mu", "var"));
    TF_RETURN_IF_ERROR(CheckShape("bias_mean", bias_mean, tensorflow::TensorShape({out})));
    return ReadBias(ctx, 3);
  }

  tensorflow::Status ReadGrad(tensorflow::OpKernelContext* ctx) {
    TF_RETURN_IF_ERROR(ReadRows(ctx, "grad", "stddev"));
    return ReadBias(ctx, 2);
  }

 private:
  tensorflow::Status ReadRows(tensorflow::OpKernelContext* ctx, const char* name,
                              const char* name2) {
    first = ctx->input(0);
    second = ctx->input(1);
    TF_RETURN_IF_ERROR(CheckMatrix(name, first, "[batch, out_features]"));
    batch = first.dim_size(0);
    out = first.dim_size(1);
    return CheckShape(name2, second, first.shape());
  }

  tensorflow::Status ReadBias(tensorflow::OpKernelContext* ctx, int index) {
    bias_log_var = ctx->input(index);
    TF_RETURN_IF_ERROR(CheckShape("bias_log_var", bias_log_var, tensorflow::TensorShape({out})));
    return StreamFromSeedTensor(ctx->input(index + 1), &stream);
  }
};

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
#define MNF_REGISTER_DENSE_KERNELS(REGISTER, REGISTER_SEEDED, T)   \
  REGISTER("MnfDenseScaledInputs", DenseScaledInputsOp, T)         \
  REGISTER("MnfDenseScaledInputsGrad", DenseScaledInputsGradOp, T) \
  REGISTER_SEEDED("MnfDenseEpilogue", DenseEpilogueOp, T)          \
  REGISTER_SEEDED("MnfDenseEpilogueGrad", DenseEpilogueGradOp, T)

}  // namespace mnf

#endif  // TFP_MNF_CSRC_DENSE_DENSE_OPS_H_
