// Helpers shared by the TensorFlow kernels of the MNF local-reparameterization ops.
#ifndef TFP_MNF_CSRC_OP_UTILS_H_
#define TFP_MNF_CSRC_OP_UTILS_H_

#include <cstdint>
#include <functional>

#include "local_reparam_math.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"

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

}  // namespace mnf

#endif  // TFP_MNF_CSRC_OP_UTILS_H_
