// CPU kernels of MnfConvLocalReparamEpilogue and its gradient (float32, float64):
// out = mu * z[b, c] + sqrt(var) * eps on channels-last [B, ..., C] tensors, one threaded
// pass with eps generated chunk by chunk (Louizos & Welling 2017, Algorithm 1).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>

#include "conv_ops.h"
#include "cpu_noise.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace mnf {

using tensorflow::OpKernelContext;
using CPUDevice = Eigen::ThreadPoolDevice;
using Index = Eigen::DenseIndex;

// One threaded pass over chunks of kChunk elements, eps generated chunk by chunk.
template <typename T>
struct ConvEpilogueFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvInputs& in, T* o) const {
    const int64_t n = in.mu.NumElements();
    if (n == 0) return tensorflow::OkStatus();
    const T* mu = in.mu.flat<T>().data();
    const T* var = in.var.flat<T>().data();
    const T* z = in.z.flat<T>().data();
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
    return tensorflow::OkStatus();
  }
};

// One example per task: dz[b, :] = sum over positions of g * mu stays thread-local.
template <typename T>
struct ConvEpilogueGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvInputs& in, const T* g,
                                T* dmu_p, T* dvar_p, T* dz_p) const {
    const T* mu = in.mu.flat<T>().data();
    const T* var = in.var.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    const int64_t c = in.channels;
    const int64_t per_example = in.per_example;
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
    return tensorflow::OkStatus();
  }
};

namespace {

#define REGISTER_CONV_CPU(T)                                      \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogue")     \
                              .Device(tensorflow::DEVICE_CPU)     \
                              .TypeConstraint<T>("T"),            \
                          ConvEpilogueOp<CPUDevice, T>);          \
  REGISTER_KERNEL_BUILDER(Name("MnfConvLocalReparamEpilogueGrad") \
                              .Device(tensorflow::DEVICE_CPU)     \
                              .TypeConstraint<T>("T"),            \
                          ConvEpilogueGradOp<CPUDevice, T>);

REGISTER_CONV_CPU(float);
REGISTER_CONV_CPU(double);

}  // namespace
}  // namespace mnf
