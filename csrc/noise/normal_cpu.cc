// CPU kernel of MnfStatelessNormal (float32, float64): the stateless normal stream of
// common/local_reparam_math.h (tf.random.stateless_normal's, element for element) written
// chunk by chunk with the vectorized generator of common/cpu_noise.h; the MNF layers draw
// their z_0 and r(z | W)'s noise with it.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstdint>

#include "common/cpu_noise.h"
#include "common/cpu_utils.h"
#include "common/op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_util.h"

namespace mnf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// (shape, seed) -> eps of that shape.
template <typename T>
class StatelessNormalOp : public OpKernel {
 public:
  using OpKernel::OpKernel;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& shape_t = ctx->input(0);
    OP_REQUIRES(ctx, shape_t.dims() == 1,
                tensorflow::errors::InvalidArgument("shape must be a vector, got ",
                                                    shape_t.shape().DebugString()));
    TensorShape shape;
    OP_REQUIRES_OK(ctx, tensorflow::tensor::MakeShape(shape_t, &shape));
    NormalStream stream;
    OP_REQUIRES_OK(ctx, StreamFromSeedTensor(ctx->input(1), &stream));
    Tensor* out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &out));
    const int64_t size = out->NumElements();
    T* eps = out->flat<T>().data();
    ParallelRange(ctx, (size + kChunk - 1) / kChunk, 10.0 * kChunk,
                  [&](int64_t begin, int64_t end) {
                    for (int64_t chunk = begin; chunk < end; ++chunk) {
                      const int64_t first = chunk * kChunk;
                      FillNormal<T>(stream, first, std::min(kChunk, size - first), eps + first);
                    }
                  });
  }
};

#define REGISTER_NORMAL_CPU(T)                                                             \
  REGISTER_KERNEL_BUILDER(                                                                 \
      Name("MnfStatelessNormal").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("dtype"), \
      StatelessNormalOp<T>);

REGISTER_NORMAL_CPU(float);
REGISTER_NORMAL_CPU(double);

}  // namespace
}  // namespace mnf
