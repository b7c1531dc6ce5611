// Device-independent OpKernels of the conv epilogue, MnfConvLocalReparamEpilogue and its
// gradient, on channels-last [B, ..., C] tensors: each validates its inputs, allocates its
// outputs and calls the functor of its device, defined for CPUDevice in epilogue_cpu.cc and
// for GPUDevice in epilogue_gpu.cc (TensorFlow's custom-op template; Louizos & Welling 2017,
// Algorithm 1).
#ifndef TFP_MNF_CSRC_CONV_EPILOGUE_OPS_H_
#define TFP_MNF_CSRC_CONV_EPILOGUE_OPS_H_

#include "common/op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

// The validated (mu, var, z, seed) inputs of the epilogue or its gradient, starting at input
// `first`.
struct ConvEpilogueInputs {
  tensorflow::Tensor mu, var, z;
  NormalStream stream;
  int64_t batch = 0, channels = 0, per_example = 0;

  tensorflow::Status Read(tensorflow::OpKernelContext* ctx, int first) {
    mu = ctx->input(first);
    var = ctx->input(first + 1);
    z = ctx->input(first + 2);
    if (mu.dims() < 2) {
      return tensorflow::errors::InvalidArgument(
          "mu must be rank >= 2 [batch, ..., channels], got ", mu.shape().DebugString());
    }
    batch = mu.dim_size(0);
    channels = mu.dim_size(mu.dims() - 1);
    per_example = batch == 0 ? 0 : mu.NumElements() / batch;
    TF_RETURN_IF_ERROR(CheckShape("var", var, mu.shape()));
    TF_RETURN_IF_ERROR(CheckShape("z", z, tensorflow::TensorShape({batch, channels})));
    return StreamFromSeedTensor(ctx->input(first + 3), &stream);
  }
};

// Per-device computations: Status operator()(OpKernelContext*, const ConvEpilogueInputs&,
// ...) with the further arguments of the Compute that calls it.
template <typename Device, typename T>
struct ConvEpilogueFunctor;
template <typename Device, typename T>
struct ConvEpilogueGradFunctor;

// (mu, var, z, seed) -> out = mu * z[b, c] + sqrt(var) * eps.
template <typename Device, typename T>
class ConvEpilogueOp : public tensorflow::OpKernel {
 public:
  using tensorflow::OpKernel::OpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    ConvEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    tensorflow::Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.mu.shape(), &out));
    OP_REQUIRES_OK(ctx, ConvEpilogueFunctor<Device, T>()(ctx, in, out->flat<T>().data()));
  }
};

// (g, mu, var, z, seed) -> (d mu = g z, d var = g eps / (2 sqrt(var)),
// d z[b, c] = sum over positions of g mu).
template <typename Device, typename T>
class ConvEpilogueGradOp : public tensorflow::OpKernel {
 public:
  using tensorflow::OpKernel::OpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& grad = ctx->input(0);
    ConvEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 1));
    OP_REQUIRES_OK(ctx, CheckShape("grad", grad, in.mu.shape()));
    tensorflow::Tensor *dmu, *dvar, *dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.mu.shape(), &dmu));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.mu.shape(), &dvar));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, in.z.shape(), &dz));
    OP_REQUIRES_OK(ctx, ConvEpilogueGradFunctor<Device, T>()(
                            ctx, in, grad.flat<T>().data(), dmu->flat<T>().data(),
                            dvar->flat<T>().data(), dz->flat<T>().data()));
  }
};

// Expands REGISTER_SEEDED(name, Kernel, T) for both kernels (each has a seed input), Kernel
// being the class template.
#define MNF_REGISTER_CONV_EPILOGUE_KERNELS(REGISTER_SEEDED, T)              \
  REGISTER_SEEDED("MnfConvLocalReparamEpilogue", ConvEpilogueOp, T)         \
  REGISTER_SEEDED("MnfConvLocalReparamEpilogueGrad", ConvEpilogueGradOp, T)

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_EPILOGUE_OPS_H_
