// Helpers shared by the TensorFlow kernels of the MNF local-reparameterization ops.
#ifndef TFP_MNF_CSRC_OP_UTILS_H_
#define TFP_MNF_CSRC_OP_UTILS_H_

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
