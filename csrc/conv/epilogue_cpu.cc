// CPU functors of the conv epilogue, MnfConvLocalReparamEpilogue and its gradient (float32,
// float64): out = mu * z[b, c] + sqrt(var) * eps on channels-last [B, ..., C] tensors, one
// threaded pass over the examples with eps generated piece by piece, each piece whole rows of
// channels so that z is a tiled vector and every pass vectorizes (Louizos & Welling 2017,
// Algorithm 1).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>

#include "common/cpu_noise.h"
#include "common/cpu_utils.h"
#include "conv/epilogue_cpu.h"
#include "conv/epilogue_ops.h"

namespace mnf {

using tensorflow::OpKernelContext;
using Index = Eigen::DenseIndex;

// Examples split over the pool; each piece one vectorized pass, eps generated piece by piece.
template <typename T>
struct ConvEpilogueFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvEpilogueInputs& in, T* o) const {
    if (in.mu.NumElements() == 0) return tensorflow::OkStatus();
    const T* mu = in.mu.flat<T>().data();
    const T* var = in.var.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    const int64_t c = in.channels;
    const int64_t per_example = in.per_example;
    ctx->eigen_device<CPUDevice>().parallelFor(
        in.batch, Eigen::TensorOpCost(3 * sizeof(T), sizeof(T), 12.0 * per_example),
        [&](Index begin, Index end) {
          for (Index b = begin; b < end; ++b) {
            const int64_t first = b * per_example;
            SampleExample(in.stream, first, per_example, c, mu + first, var + first, z + b * c,
                          o + first);
          }
        });
    return tensorflow::OkStatus();
  }
};

// One example per task: dz[b, :] = sum over positions of g * mu stays thread-local, summed
// piece by piece into a buffer laid out like the pieces and folded into channels at the end.
template <typename T>
struct ConvEpilogueGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvEpilogueInputs& in, const T* g,
                                T* dmu_p, T* dvar_p, T* dz_p) const {
    const T* mu = in.mu.flat<T>().data();
    const T* var = in.var.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    const int64_t c = in.channels;
    const int64_t per_example = in.per_example;
    ctx->eigen_device<CPUDevice>().parallelFor(
        in.batch, Eigen::TensorOpCost(4 * sizeof(T), 2 * sizeof(T), 16.0 * per_example),
        [&](Index begin, Index end) {
          alignas(64) T eps[kChunk];
          alignas(64) T g_mu[kChunk];
          for (Index b = begin; b < end; ++b) {
            const ZRow<T> z_row(z + b * c, c);
            VectorMap<T> dz_b(dz_p + b * c, c);
            dz_b.setZero();
            // Whole rows of channels, as long as the longest piece (c <= kChunk).
            VectorMap<T> g_mu_sum(g_mu, c > kChunk ? 0 : std::min((kChunk / c) * c, per_example));
            g_mu_sum.setZero();
            ForExamplePieces(per_example, c, [&](int64_t off, int64_t count, int64_t channel) {
              const int64_t first = b * per_example + off;
              FillNormal<T>(in.stream, first, count, eps);
              const ConstVectorMap<T> g_piece(g + first, count);
              VectorMap<T>(dmu_p + first, count) =
                  g_piece * ConstVectorMap<T>(z_row.row + channel, count);
              // d out / d var = g eps / (2 std) (VarGrad on packets).
              VectorMap<T>(dvar_p + first, count) =
                  g_piece * ConstVectorMap<T>(eps, count) *
                  (T(0.5) * ConstVectorMap<T>(var + first, count).rsqrt());
              const auto g_mu_piece = g_piece * ConstVectorMap<T>(mu + first, count);
              if (c > kChunk) {
                dz_b.segment(channel, count) += g_mu_piece;
              } else {
                g_mu_sum.head(count) += g_mu_piece;
              }
            });
            if (c <= kChunk) {
              dz_b += Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic>>(
                          g_mu, c, g_mu_sum.size() / c)
                          .rowwise()
                          .sum();
            }
          }
        });
    return tensorflow::OkStatus();
  }
};

namespace {

MNF_REGISTER_CONV_EPILOGUE_KERNELS(MNF_REGISTER_CPU, float);
MNF_REGISTER_CONV_EPILOGUE_KERNELS(MNF_REGISTER_CPU, double);

}  // namespace
}  // namespace mnf
