// Device-independent OpKernels of MnfConvLocalReparamEpilogue and its gradient on
// channels-last [B, ..., C] tensors: each validates its inputs, allocates its outputs and
// calls the functor of its device, defined for CPUDevice in conv_cpu.cc and for GPUDevice in
// cuda/conv_epilogue_gpu.cc (TensorFlow's custom-op template; Louizos & Welling 2017,
// Algorithm 1).
#ifndef TFP_MNF_CSRC_CONV_OPS_H_
#define TFP_MNF_CSRC_CONV_OPS_H_

#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

// Per-device computations: Status operator()(OpKernelContext*, const ConvInputs&, ...) with
// the further arguments of the Compute that calls it.
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
    ConvInputs in;
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
    ConvInputs in;
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

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_OPS_H_
