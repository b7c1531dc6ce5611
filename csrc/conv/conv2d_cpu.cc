// CPU functors (float32, float64) of the fused 2-D conv step MnfConv2DLocalReparam and of the
// gradient ops of its two convolutions, mean = conv(x, M) and variance = conv(x^2, sigma^2)
// (Louizos & Welling 2017, Algorithm 1), NHWC input, HWIO kernels. Each example's patches
// P_b [positions, depth] are gathered once (conv2d_im2col.h) into a packed GEMM operand
// (gemm_cpu.h) and squared in one pass for the x^2 products:
//   forward:      mean_b = P_b M,  variance_b = P_b^2 S;
//   kernel grads: d M = sum_b P_b^T g_mean_b,  d S = sum_b (P_b^2)^T g_variance_b;
//   input grad:   d x_b = col2im(g_mean_b M^T) + 2 x_b col2im(g_variance_b S^T)
//                 (conv2d_col2im.h).
// The forward products and the kernel gradients run transposed (mean_b^T = M^T P_b^T,
// d M^T = sum_b g_mean_b^T P_b), so that the output channels are the GEMM's rows. The
// forward step adds the biases and samples each example's outputs (the epilogue of
// epilogue_cpu.h) right after its two products. The kernel gradients sum the batch in a
// fixed number of chunks, added in order, so the result does not depend on the thread
// pool's scheduling.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <vector>

#include "common/cpu_utils.h"
#include "conv/conv2d_col2im.h"
#include "conv/conv2d_im2col.h"
#include "conv/conv2d_ops.h"
#include "conv/epilogue_cpu.h"
#include "conv/gemm_cpu.h"

namespace mnf {
namespace {

using tensorflow::OpKernelContext;

constexpr int64_t kKernelGradChunks = 16;

// mean = conv(x, M) and variance = conv(x^2, S) of every example, split over the pool; after
// example b's two products, calls after_example(b) (with its outputs still in cache). The
// products run transposed, mean_b^T = M^T P_b^T: the output channels, few and rarely a
// multiple of the micro-kernel's width, are the GEMM's rows, whose tile is narrower.
template <typename T, typename Fn>
void ConvolvePair(OpKernelContext* ctx, const Conv2DGeometry& g, const T* x,
                  const T* kernel_mean, const T* kernel_variance, T* mean, T* variance,
                  double extra_cycles, Fn after_example) {
  const int64_t rows = g.rows(), depth = g.depth(), n = g.out_c;
  const int64_t a_size = gemm::PackedSizeA<T>(n, depth);
  std::vector<T> kernels(2 * a_size);
  gemm::PackA<T>(n, depth, kernel_mean, n, true, kernels.data());
  gemm::PackA<T>(n, depth, kernel_variance, n, true, kernels.data() + a_size);
  const double cycles = g.cycles_per_example() + extra_cycles;
  ParallelRange(ctx, g.batch, cycles, [&](int64_t begin, int64_t end) {
    const int64_t size = gemm::PackedSizeB<T>(depth, rows);
    std::vector<T> patches(2 * size);  // the zero padding of the last panel stays zero
    std::vector<T> product(n * rows);
    for (int64_t b = begin; b < end; ++b) {
      PackPatchPanels<T, gemm::kTileCols<T>>(g, x + b * g.in_size(), patches.data());
      Square(patches.data(), size, patches.data() + size);
      gemm::MultiplyPacked<T>(n, rows, depth, kernels.data(), patches.data(), product.data(),
                              rows, false);
      gemm::Transpose(product.data(), n, rows, mean + b * g.out_size());
      gemm::MultiplyPacked<T>(n, rows, depth, kernels.data() + a_size, patches.data() + size,
                              product.data(), rows, false);
      gemm::Transpose(product.data(), n, rows, variance + b * g.out_size());
      after_example(b);
    }
  });
}

}  // namespace

// Each example's two products, then its biases and its epilogue while they are in cache.
template <typename T>
struct Conv2DLocalReparamFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const Conv2DGeometry& g, const T* x,
                                const T* kernel_mean, const T* kernel_variance,
                                const T* bias_mean, const T* bias_variance, const T* z,
                                const NormalStream& stream, T* out, T* mean,
                                T* variance) const {
    const int64_t per_example = g.out_size(), n = g.out_c;
    if (g.batch * per_example == 0) return tensorflow::OkStatus();
    ConvolvePair(ctx, g, x, kernel_mean, kernel_variance, mean, variance, 16.0 * per_example,
                 [&](int64_t b) {
                   const int64_t first = b * per_example;
                   T* mean_b = mean + first;
                   T* var_b = variance + first;
                   for (int64_t r = 0; r < g.rows(); ++r) {
                     VectorMap<T>(mean_b + r * n, n) += ConstVectorMap<T>(bias_mean, n);
                     VectorMap<T>(var_b + r * n, n) += ConstVectorMap<T>(bias_variance, n);
                   }
                   SampleExample(stream, first, per_example, n, mean_b, var_b, z + b * n,
                                 out + first);
                 });
    return tensorflow::OkStatus();
  }
};

// The batch in kKernelGradChunks chunks split over the pool, each summing its examples'
// products into its own partial sums, transposed: d M^T = sum_b g_mean_b^T P_b (the output
// channels are the GEMM's rows, as in the forward pass).
template <typename T>
struct Conv2DKernelGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const Conv2DGeometry& g, const T* x,
                                const T* grad_mean, const T* grad_variance, T* d_mean,
                                T* d_variance) const {
    const int64_t rows = g.rows(), depth = g.depth(), n = g.out_c, size = depth * n;
    if (size == 0 || g.batch * rows == 0) {
      std::fill(d_mean, d_mean + size, T(0));
      std::fill(d_variance, d_variance + size, T(0));
      return tensorflow::OkStatus();
    }
    const int64_t chunks = std::min(g.batch, kKernelGradChunks);
    std::vector<T> partial(static_cast<size_t>(chunks * 2 * size));
    const double cycles = g.cycles_per_example() * g.batch / chunks;
    std::vector<int64_t> depth_offsets(depth);
    for (int64_t d = 0; d < depth; ++d) depth_offsets[d] = gemm::OffsetB<T>(0, d, rows);
    ParallelRange(ctx, chunks, cycles, [&](int64_t begin, int64_t end) {
      const int64_t a_size = gemm::PackedSizeA<T>(n, rows);
      const int64_t b_size = gemm::PackedSizeB<T>(rows, depth);
      std::vector<T> grads(a_size), patches(2 * b_size);  // padding entries stay zero
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        T* pm = partial.data() + chunk * 2 * size;
        T* ps = pm + size;
        const int64_t first = chunk * g.batch / chunks, last = (chunk + 1) * g.batch / chunks;
        for (int64_t b = first; b < last; ++b) {
          PackPatchColumns(g, x + b * g.in_size(), gemm::kTileCols<T>, depth_offsets.data(),
                           patches.data());
          Square(patches.data(), b_size, patches.data() + b_size);
          gemm::PackA<T>(n, rows, grad_mean + b * g.out_size(), n, true, grads.data());
          gemm::MultiplyPacked<T>(n, depth, rows, grads.data(), patches.data(), pm, depth,
                                  b > first);
          gemm::PackA<T>(n, rows, grad_variance + b * g.out_size(), n, true, grads.data());
          gemm::MultiplyPacked<T>(n, depth, rows, grads.data(), patches.data() + b_size, ps,
                                  depth, b > first);
        }
      }
    });
    std::vector<T> totals(2 * size, T(0));
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const T* pm = partial.data() + chunk * 2 * size;
      for (int64_t i = 0; i < 2 * size; ++i) totals[i] += pm[i];
    }
    gemm::Transpose(totals.data(), n, depth, d_mean);
    gemm::Transpose(totals.data() + size, n, depth, d_variance);
    return tensorflow::OkStatus();
  }
};

// Examples split over the pool: each example's patch gradients g_mean_b M^T and
// g_variance_b S^T, scattered onto its pixels.
template <typename T>
struct Conv2DInputGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const Conv2DGeometry& g, const T* x,
                                const T* kernel_mean, const T* kernel_variance,
                                const T* grad_mean, const T* grad_variance, T* dx) const {
    const int64_t rows = g.rows(), depth = g.depth(), n = g.out_c, in_size = g.in_size();
    std::fill(dx, dx + g.batch * in_size, T(0));
    if (g.batch * in_size == 0 || rows * n == 0) return tensorflow::OkStatus();
    // B = M^T [n, depth]: the [depth, n] kernels read transposed.
    const int64_t b_size = gemm::PackedSizeB<T>(n, depth);
    std::vector<T> kernels(2 * b_size);
    gemm::PackB<T>(n, depth, kernel_mean, n, true, kernels.data());
    gemm::PackB<T>(n, depth, kernel_variance, n, true, kernels.data() + b_size);
    ParallelRange(ctx, g.batch, g.cycles_per_example(), [&](int64_t begin, int64_t end) {
      std::vector<T> grads(gemm::PackedSizeA<T>(rows, n)), mean_patches(rows * depth),
          var_patches(rows * depth);
      for (int64_t b = begin; b < end; ++b) {
        gemm::PackA<T>(rows, n, grad_mean + b * g.out_size(), n, false, grads.data());
        gemm::MultiplyPacked<T>(rows, depth, n, grads.data(), kernels.data(),
                                mean_patches.data(), depth, false);
        gemm::PackA<T>(rows, n, grad_variance + b * g.out_size(), n, false, grads.data());
        gemm::MultiplyPacked<T>(rows, depth, n, grads.data(), kernels.data() + b_size,
                                var_patches.data(), depth, false);
        ScatterPatchPair(g, mean_patches.data(), var_patches.data(), x + b * in_size,
                         dx + b * in_size);
      }
    });
    return tensorflow::OkStatus();
  }
};

namespace {

MNF_REGISTER_CONV2D_KERNELS(MNF_REGISTER_CPU, float);
MNF_REGISTER_CONV2D_KERNELS(MNF_REGISTER_CPU, double);

}  // namespace
}  // namespace mnf
