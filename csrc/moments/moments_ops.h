// Device-independent OpKernels of MnfKernelMoments and its gradient (the maths in
// moments.h): each validates its inputs, allocates its outputs and calls the functor of its
// device, defined for CPUDevice in moments_cpu.cc and for GPUDevice in moments_gpu.cc
// (TensorFlow's custom-op template; Louizos & Welling 2017, eq. 15).
#ifndef TFP_MNF_CSRC_MOMENTS_MOMENTS_OPS_H_
#define TFP_MNF_CSRC_MOMENTS_MOMENTS_OPS_H_

#include <cmath>

#include "common/op_utils.h"
#include "moments/moments.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {

// Per-device computations: Status operator()(OpKernelContext*, const MomentsInputs<T>&, ...)
// with the outputs (forward) or the upstream gradients and the input gradients (gradient).
template <typename Device, typename T>
struct KernelMomentsFunctor;
template <typename Device, typename T>
struct KernelMomentsGradFunctor;

// Reads the attributes (z_axis, min_log_std, max_std) and validates the four inputs
// (kernel_mean, kernel_log_std, mean_weights, variance_weights) starting at input `first`.
template <typename T>
class MomentsOpKernel : public tensorflow::OpKernel {
 public:
  explicit MomentsOpKernel(tensorflow::OpKernelConstruction* ctx) : tensorflow::OpKernel(ctx) {
    int z_axis;
    float min_log_std;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("z_axis", &z_axis));
    OP_REQUIRES(ctx, z_axis == 0 || z_axis == 1,
                tensorflow::errors::InvalidArgument("z_axis must be 0 or 1, got ", z_axis));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("min_log_std", &min_log_std));
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
    OP_REQUIRES(ctx, static_cast<T>(min_log_std) < log_max_,
                tensorflow::errors::InvalidArgument("min_log_std must be < log(max_std), got ",
                                                    min_log_std));
    z_rows_ = z_axis == 0;
    min_log_std_ = static_cast<T>(min_log_std);
  }

 protected:
  tensorflow::Status ReadInputs(tensorflow::OpKernelContext* ctx, int first,
                                MomentsInputs<T>* in) const {
    const tensorflow::Tensor& mean = ctx->input(first);
    TF_RETURN_IF_ERROR(CheckMatrix("kernel_mean", mean, "[rows, cols]"));
    TF_RETURN_IF_ERROR(CheckShape("kernel_log_std", ctx->input(first + 1), mean.shape()));
    in->rows = mean.dim_size(0);
    in->cols = mean.dim_size(1);
    in->z_rows = z_rows_;
    const tensorflow::TensorShape z_shape({in->z_size()});
    TF_RETURN_IF_ERROR(CheckShape("mean_weights", ctx->input(first + 2), z_shape));
    TF_RETURN_IF_ERROR(CheckShape("variance_weights", ctx->input(first + 3), z_shape));
    in->min_log_std = min_log_std_;
    in->log_max = log_max_;
    in->mean = mean.flat<T>().data();
    in->log_std = ctx->input(first + 1).flat<T>().data();
    in->mean_weights = ctx->input(first + 2).flat<T>().data();
    in->variance_weights = ctx->input(first + 3).flat<T>().data();
    return tensorflow::OkStatus();
  }

  // The shapes of the seven outputs of the forward op, in order.
  static tensorflow::TensorShape MomentShape(const MomentsInputs<T>& in, int output) {
    switch (output) {
      case 0:
        return tensorflow::TensorShape({in.rows, in.cols});
      case 1:
        return tensorflow::TensorShape({});
      case 2:
      case 3:
      case 4:
        return tensorflow::TensorShape({in.z_size()});
      default:
        return tensorflow::TensorShape({in.other_size()});
    }
  }

 private:
  bool z_rows_ = true;
  T min_log_std_ = 0;
  T log_max_ = 0;
};

// (kernel_mean, kernel_log_std, mean_weights, variance_weights) -> the seven moments.
template <typename Device, typename T>
class KernelMomentsOp : public MomentsOpKernel<T> {
 public:
  using MomentsOpKernel<T>::MomentsOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    MomentsInputs<T> in;
    OP_REQUIRES_OK(ctx, this->ReadInputs(ctx, 0, &in));
    T* outputs[7];
    for (int k = 0; k < 7; ++k) {
      tensorflow::Tensor* out = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(k, this->MomentShape(in, k), &out));
      outputs[k] = out->flat<T>().data();
    }
    const MomentsTensors<T*> out{outputs[0], outputs[1], outputs[2], outputs[3],
                                 outputs[4], outputs[5], outputs[6]};
    OP_REQUIRES_OK(ctx, KernelMomentsFunctor<Device, T>()(ctx, in, out));
  }
};

// (the seven upstream gradients, then the four forward inputs) -> the four input gradients.
template <typename Device, typename T>
class KernelMomentsGradOp : public MomentsOpKernel<T> {
 public:
  using MomentsOpKernel<T>::MomentsOpKernel;

  void Compute(tensorflow::OpKernelContext* ctx) override {
    MomentsInputs<T> in;
    OP_REQUIRES_OK(ctx, this->ReadInputs(ctx, 7, &in));
    static const char* const kNames[7] = {
        "grad_variance",     "grad_log_std_sum",      "grad_variance_sum",
        "grad_mean_sq_sum",  "grad_mean_sum",         "grad_projected_mean",
        "grad_projected_variance"};
    const T* grads[7];
    for (int k = 0; k < 7; ++k) {
      OP_REQUIRES_OK(ctx, CheckShape(kNames[k], ctx->input(k), this->MomentShape(in, k)));
      grads[k] = ctx->input(k).flat<T>().data();
    }
    const MomentsTensors<const T*> g{grads[0], grads[1], grads[2], grads[3],
                                     grads[4], grads[5], grads[6]};
    tensorflow::Tensor *d_mean, *d_log_std, *d_mean_weights, *d_variance_weights;
    const tensorflow::TensorShape kernel({in.rows, in.cols}), z({in.z_size()});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, kernel, &d_mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel, &d_log_std));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, z, &d_mean_weights));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, z, &d_variance_weights));
    const MomentsInputGrads<T> d{d_mean->flat<T>().data(), d_log_std->flat<T>().data(),
                                 d_mean_weights->flat<T>().data(),
                                 d_variance_weights->flat<T>().data()};
    OP_REQUIRES_OK(ctx, KernelMomentsGradFunctor<Device, T>()(ctx, in, g, d));
  }
};

#define MNF_REGISTER_MOMENTS_KERNELS(REGISTER, T)          \
  REGISTER("MnfKernelMoments", KernelMomentsOp, T)         \
  REGISTER("MnfKernelMomentsGrad", KernelMomentsGradOp, T)

}  // namespace mnf

#endif  // TFP_MNF_CSRC_MOMENTS_MOMENTS_OPS_H_
