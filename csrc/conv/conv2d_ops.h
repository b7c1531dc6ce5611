// Device-independent OpKernels of the fused 2-D conv step, MnfConv2DLocalReparam, and of the
// gradient ops of its two convolutions, MnfConv2DLocalReparamKernelGrad and
// MnfConv2DLocalReparamInputGrad (NHWC input, HWIO kernels): each reads the Conv2D
// attributes, validates its inputs, allocates its outputs and calls the functor of its
// device, defined for CPUDevice in conv2d_cpu.cc (TensorFlow's custom-op template; Louizos &
// Welling 2017, Algorithm 1).
#ifndef TFP_MNF_CSRC_CONV_CONV2D_OPS_H_
#define TFP_MNF_CSRC_CONV_CONV2D_OPS_H_

#include <cstdint>
#include <vector>

#include "common/op_utils.h"
#include "conv/conv2d_attrs.h"
#include "conv/conv2d_geometry.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

// Per-device computations: Status operator()(OpKernelContext*, const Conv2DGeometry&, ...)
// with the inputs and outputs of the Compute that calls it; each also handles empty tensors.
template <typename Device, typename T>
struct Conv2DLocalReparamFunctor;
template <typename Device, typename T>
struct Conv2DKernelGradFunctor;
template <typename Device, typename T>
struct Conv2DInputGradFunctor;

// An OpKernel whose constructor reads the strides, padding and dilations.
class Conv2DOpKernel : public tensorflow::OpKernel {
 public:
  explicit Conv2DOpKernel(tensorflow::OpKernelConstruction* ctx) : tensorflow::OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Read(ctx));
  }

 protected:
  // Validates (x, kernel_mean, kernel_variance), inputs 0 to 2, and sets the geometry `g`.
  tensorflow::Status ReadConvolvePair(tensorflow::OpKernelContext* ctx,
                                      Conv2DGeometry* g) const {
    TF_RETURN_IF_ERROR(g->InitFromKernel(attrs_, ctx->input(0), ctx->input(1)));
    return CheckShape("kernel_variance", ctx->input(2), ctx->input(1).shape());
  }

  Conv2DAttrs attrs_;
};

// (x, kernel_mean, kernel_variance, bias_mean, bias_variance, z, seed) ->
// (output = mean * z[b, c] + sqrt(variance) * eps, mean = conv(x, M) + bias_mean,
//  variance = conv(x^2, S) + bias_variance): the whole sampling step of a conv layer; eps is
// the stream of MnfConvLocalReparamEpilogue, whose gradient op takes (mean, variance) from
// here.
template <typename Device, typename T>
class Conv2DLocalReparamOp : public Conv2DOpKernel {
 public:
  using Conv2DOpKernel::Conv2DOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, ReadConvolvePair(ctx, &g));
    const tensorflow::TensorShape channels({g.out_c});
    OP_REQUIRES_OK(ctx, CheckShape("bias_mean", ctx->input(3), channels));
    OP_REQUIRES_OK(ctx, CheckShape("bias_variance", ctx->input(4), channels));
    OP_REQUIRES_OK(ctx,
                   CheckShape("z", ctx->input(5), tensorflow::TensorShape({g.batch, g.out_c})));
    NormalStream stream;
    OP_REQUIRES_OK(ctx, StreamFromSeedTensor(ctx->input(6), &stream));
    tensorflow::Tensor *out, *mean, *variance;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, g.out_shape(), &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, g.out_shape(), &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, g.out_shape(), &variance));
    OP_REQUIRES_OK(ctx, Conv2DLocalReparamFunctor<Device, T>()(
                            ctx, g, ctx->input(0).flat<T>().data(),
                            ctx->input(1).flat<T>().data(), ctx->input(2).flat<T>().data(),
                            ctx->input(3).flat<T>().data(), ctx->input(4).flat<T>().data(),
                            ctx->input(5).flat<T>().data(), stream, out->flat<T>().data(),
                            mean->flat<T>().data(), variance->flat<T>().data()));
  }
};

// (x, grad_mean, grad_variance) -> (d kernel_mean, d kernel_variance) of the two
// convolutions, for the kernel size of the kernel_size attribute.
template <typename Device, typename T>
class Conv2DKernelGradOp : public Conv2DOpKernel {
 public:
  explicit Conv2DKernelGradOp(tensorflow::OpKernelConstruction* ctx) : Conv2DOpKernel(ctx) {
    std::vector<int32_t> size;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &size));
    OP_REQUIRES(ctx, size.size() == 2 && size[0] >= 1 && size[1] >= 1,
                tensorflow::errors::InvalidArgument(
                    "kernel_size must be [height, width] with positive entries"));
    k_h_ = size[0];
    k_w_ = size[1];
  }

  void Compute(tensorflow::OpKernelContext* ctx) override {
    const tensorflow::Tensor& grad_mean = ctx->input(1);
    const tensorflow::Tensor& grad_variance = ctx->input(2);
    OP_REQUIRES(ctx, grad_mean.dims() == 4,
                tensorflow::errors::InvalidArgument(
                    "grad_mean must be rank 4 [batch, out_height, out_width, out_channels], got ",
                    grad_mean.shape().DebugString()));
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, g.Init(attrs_, ctx->input(0), k_h_, k_w_, grad_mean.dim_size(3)));
    OP_REQUIRES_OK(ctx, CheckShape("grad_mean", grad_mean, g.out_shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_variance", grad_variance, g.out_shape()));
    const tensorflow::TensorShape kernel_shape({k_h_, k_w_, g.in_c, g.out_c});
    tensorflow::Tensor *d_mean, *d_variance;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, kernel_shape, &d_mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel_shape, &d_variance));
    OP_REQUIRES_OK(ctx, Conv2DKernelGradFunctor<Device, T>()(
                            ctx, g, ctx->input(0).flat<T>().data(), grad_mean.flat<T>().data(),
                            grad_variance.flat<T>().data(), d_mean->flat<T>().data(),
                            d_variance->flat<T>().data()));
  }

 private:
  int64_t k_h_ = 1, k_w_ = 1;
};

// (x, kernel_mean, kernel_variance, grad_mean, grad_variance) -> d x of the two convolutions.
template <typename Device, typename T>
class Conv2DInputGradOp : public Conv2DOpKernel {
 public:
  using Conv2DOpKernel::Conv2DOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, ReadConvolvePair(ctx, &g));
    OP_REQUIRES_OK(ctx, CheckShape("grad_mean", ctx->input(3), g.out_shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_variance", ctx->input(4), g.out_shape()));
    tensorflow::Tensor* dx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &dx));
    OP_REQUIRES_OK(ctx, Conv2DInputGradFunctor<Device, T>()(
                            ctx, g, ctx->input(0).flat<T>().data(),
                            ctx->input(1).flat<T>().data(), ctx->input(2).flat<T>().data(),
                            ctx->input(3).flat<T>().data(), ctx->input(4).flat<T>().data(),
                            dx->flat<T>().data()));
  }
};

#define MNF_REGISTER_CONV2D_KERNELS(REGISTER, T)                     \
  REGISTER("MnfConv2DLocalReparam", Conv2DLocalReparamOp, T)         \
  REGISTER("MnfConv2DLocalReparamKernelGrad", Conv2DKernelGradOp, T) \
  REGISTER("MnfConv2DLocalReparamInputGrad", Conv2DInputGradOp, T)

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_CONV2D_OPS_H_
