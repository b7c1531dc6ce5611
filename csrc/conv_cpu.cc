// CPU kernels of MnfConvLocalReparamEpilogue and its gradient (float32, float64):
// out = mu * z[b, c] + sqrt(var) * eps on channels-last [B, ..., C] tensors, one threaded
// pass with eps generated chunk by chunk (Louizos & Welling 2017, Algorithm 1).
#define EIGEN_USE_THREADS

#include <cmath>

#include "cpu_noise.h"
#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace mnf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using CPUDevice = Eigen::ThreadPoolDevice;
using Index = Eigen::DenseIndex;

template <typename T>
class ConvEpilogueOp : public OpKernel {
 public:
  explicit ConvEpilogueOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ConvInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.mu.shape(), &out));
    const int64_t n = in.mu.NumElements();
    if (n == 0) return;
    const T* mu = in.mu.flat<T>().data();
    const T* var = in.var.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    T* o = out->flat<T>().data();
    const int64_t c = in.channels;
    const int64_t per_example = in.per_example;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    ctx->eigen_device<CPUDevice>().parallelFor(
        chunks, Eigen::TensorOpCost(3 * sizeof(T), sizeof(T), 60.0 * kChunk),
        [&](Index begin, Index end) {
          alignas(64) T eps[kChunk];
          for (Index chunk = begin; chunk < end; ++chunk) {
            const int64_t first = chunk * kChunk;
            const int64_t count = std::min<int64_t>(kChunk, n - first);
            FillNormal<T>(in.stream, first, count, eps);
            int64_t b = first / per_example;
            int64_t pos = first % per_example;
            int64_t ch = first % c;
            for (int64_t k = 0; k < count; ++k) {
              const int64_t i = first + k;
              o[i] = Sample<T>(mu[i] * z[b * c + ch], std::sqrt(var[i]), eps[k]);
              if (++ch == c) ch = 0;
              if (++pos == per_example) {
                pos = 0;
                ++b;
              }
            }
          }
        });
  }
};

template <typename T>
class ConvEpilogueGradOp : public OpKernel {
 public:
  explicit ConvEpilogueGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    ConvInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 1));
    OP_REQUIRES_OK(ctx, CheckShape("grad", grad, in.mu.shape()));
    Tensor *dmu, *dvar, *dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.mu.shape(), &dmu));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.mu.shape(), &dvar));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, in.z.shape(), &dz));
    const T* g = grad.flat<T>().data();
    const T* mu = in.mu.flat<T>().data();
    const T* var = in.var.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    T* dmu_p = dmu->flat<T>().data();
    T* dvar_p = dvar->flat<T>().data();
    T* dz_p = dz->flat<T>().data();
    const int64_t c = in.channels;
    const int64_t per_example = in.per_example;
    // One example per task: dz[b, :] = sum over positions of g * mu stays thread-local.
    ctx->eigen_device<CPUDevice>().parallelFor(
        in.batch, Eigen::TensorOpCost(4 * sizeof(T), 2 * sizeof(T), 70.0 * per_example),
        [&](Index begin, Index end) {
          alignas(64) T eps[kChunk];
          for (Index b = begin; b < end; ++b) {
            T* dzb = dz_p + b * c;
            const T* zb = z + b * c;
            std::fill(dzb, dzb + c, T(0));
            for (int64_t off = 0; off < per_example; off += kChunk) {
              const int64_t first = b * per_example + off;
              const int64_t count = std::min<int64_t>(kChunk, per_example - off);
              FillNormal<T>(in.stream, first, count, eps);
              int64_t ch = off % c;
              for (int64_t k = 0; k < count; ++k, ++ch) {
                if (ch == c) ch = 0;
                const int64_t i = first + k;
                dmu_p[i] = g[i] * zb[ch];
                dvar_p[i] = VarGrad<T>(g[i], std::sqrt(var[i]), eps[k]);
                dzb[ch] += g[i] * mu[i];
              }
            }
          }
        });
  }
};

#define REGISTER_CONV_CPU(T)                                                               \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogue")                              \
                              .Device(tensorflow::DEVICE_CPU)                              \
                              .TypeConstraint<T>("T"),                                     \
                          ConvEpilogueOp<T>);                                              \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogueGrad")                          \
                              .Device(tensorflow::DEVICE_CPU)                              \
                              .TypeConstraint<T>("T"),                                     \
                          ConvEpilogueGradOp<T>);

REGISTER_CONV_CPU(float);
REGISTER_CONV_CPU(double);

}  // namespace
}  // namespace mnf
