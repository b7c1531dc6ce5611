// Helpers shared by the TensorFlow kernels of every op family (CPU and GPU): the seed, shape
// and max_std checks.
#ifndef TFP_MNF_CSRC_COMMON_OP_UTILS_H_
#define TFP_MNF_CSRC_COMMON_OP_UTILS_H_

#include <cmath>
#include <cstdint>

#include "common/local_reparam_math.h"
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

}  // namespace mnf

#endif  // TFP_MNF_CSRC_COMMON_OP_UTILS_H_
