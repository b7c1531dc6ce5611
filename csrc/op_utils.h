// Helpers shared by the TensorFlow kernels of the MNF local-reparameterization ops.
#ifndef TFP_MNF_CSRC_OP_UTILS_H_
#define TFP_MNF_CSRC_OP_UTILS_H_

#include <cmath>
#include <cstdint>
#include <functional>

#include "local_reparam_math.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"

namespace mnf {

// Reads a [2] int32/int64 seed tensor (host memory) into the Philox stream it selects.
inline tensorflow::Status StreamFromSeedTensor(const tensorflow::Tensor& seed,
                                               NormalStream* stream) {
  if (seed.dims() != 1 || seed.dim_size(0) != 2) {
    return tensorflow::errors::InvalidArgument("seed must have shape [2], got ",
                                               seed.shape().DebugString());
  }
  if (seed.dtype() == tensorflow::DT_INT32) {
    const auto s = seed.flat<int32_t>();
    *stream = StreamFromSeed(s(0), s(1));
  } else {
    const auto s = seed.flat<int64_t>();
    *stream = StreamFromSeed(s(0), s(1));
  }
  return tensorflow::OkStatus();
}

// Requires `t` to have exactly `shape`, naming the argument in the error.
inline tensorflow::Status CheckShape(const char* name, const tensorflow::Tensor& t,
                                     const tensorflow::TensorShape& shape) {
  if (t.shape() != shape) {
    return tensorflow::errors::InvalidArgument(name, " must have shape ", shape.DebugString(),
                                               ", got ", t.shape().DebugString());
  }
  return tensorflow::OkStatus();
}

// Reads the op's max_std attribute (> 0) as log(max_std).
template <typename T>
tensorflow::Status LogMaxStd(tensorflow::OpKernelConstruction* ctx, T* log_max) {
  float max_std;
  TF_RETURN_IF_ERROR(ctx->GetAttr("max_std", &max_std));
  if (!(max_std > 0)) {
    return tensorflow::errors::InvalidArgument("max_std must be > 0, got ", max_std);
  }
  *log_max = static_cast<T>(std::log(static_cast<double>(max_std)));
  return tensorflow::OkStatus();
}

// Requires `t` to be a matrix, naming the argument and its expected dimensions.
inline tensorflow::Status CheckMatrix(const char* name, const tensorflow::Tensor& t,
                                      const char* dims) {
  if (t.dims() != 2) {
    return tensorflow::errors::InvalidArgument(name, " must be rank 2 ", dims, ", got ",
                                               t.shape().DebugString());
  }
  return tensorflow::OkStatus();
}

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

// The validated (mu, var, z, seed) inputs starting at input `first`.
struct ConvInputs {
  tensorflow::Tensor mu, var, z;
  NormalStream stream;
  int64_t batch = 0, channels = 0, per_example = 0;

  tensorflow::Status Read(tensorflow::OpKernelContext* ctx, int first) {
    mu = ctx->input(first);
    var = ctx->input(first + 1);
    z = ctx->input(first + 2);
    if (mu.dims() < 2) {
      return tensorflow::errors::InvalidArgument("mu must be rank >= 2 [batch, ..., channels], got ",
                                                 mu.shape().DebugString());
    }
    batch = mu.dim_size(0);
    channels = mu.dim_size(mu.dims() - 1);
    per_example = batch == 0 ? 0 : mu.NumElements() / batch;
    TF_RETURN_IF_ERROR(CheckShape("var", var, mu.shape()));
    TF_RETURN_IF_ERROR(CheckShape("z", z, tensorflow::TensorShape({batch, channels})));
    return StreamFromSeedTensor(ctx->input(first + 3), &stream);
  }
};

}  // namespace mnf

#endif  // TFP_MNF_CSRC_OP_UTILS_H_
