// CPU functors (float32, float64) of the element-wise dense ops around the two tf.matmul of
// the dense MNF layer: MnfDenseScaledInputs, MnfDenseEpilogue and their gradients. Each is one
// pass, split over the thread pool when large; the epilogue generates eps in flat chunks
// across rows and its gradient regenerates it from the seed (Louizos & Welling 2017,
// Algorithm 1). The maths are the functions of common/local_reparam_math.h, written as Eigen
// packet expressions where the scalar form would not vectorize (sqrt).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>

#include "common/cpu_noise.h"
#include "common/cpu_utils.h"
#include "dense/dense_ops.h"

namespace mnf {
namespace {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using Index = Eigen::DenseIndex;

// Calls fn(first, j0, count, eps) for the pieces of rows [row_begin, row_end) of a [B, n]
// tensor: eps is generated in flat chunks of kChunk elements across rows (short rows waste no
// Philox blocks) and each chunk is cut at row ends; a piece covers flat elements
// [first, first + count), columns [j0, j0 + count).
template <typename T, typename Fn>
void ForRowPieces(const NormalStream& stream, int64_t row_begin, int64_t row_end, int64_t n,
                  Fn fn) {
  alignas(64) T eps[kChunk];
  const int64_t end = row_end * n;
  for (int64_t chunk = row_begin * n; chunk < end; chunk += kChunk) {
    const int64_t chunk_end = std::min(chunk + kChunk, end);
    FillNormal<T>(stream, chunk, chunk_end - chunk, eps);
    for (int64_t first = chunk; first < chunk_end;) {
      const int64_t j0 = first % n;
      const int64_t count = std::min(n - j0, chunk_end - first);
      fn(first, j0, count, ConstVectorMap<T>(eps + (first - chunk), count));
      first += count;
    }
  }
}

// sigma_b^2 = exp(min(bias_log_var, 2 log max_std)) for the N outputs.
template <typename T>
Vector<T> BiasVariance(const T* blv, int64_t n, T two_log_max) {
  Vector<T> bv(n);
  for (Index j = 0; j < n; ++j) bv(j) = ClippedBiasVar<T>(blv[j], two_log_max);
  return bv;
}

}  // namespace

template <typename T>
struct DenseScaledInputsFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t n, const T* x, const T* z,
                                T* xz_p, T* x2_p) const {
    ParallelRange(ctx, n, 2, [&](int64_t begin, int64_t end) {
      const ConstVectorMap<T> x_part(x + begin, end - begin);
      VectorMap<T>(xz_p + begin, end - begin) = x_part * ConstVectorMap<T>(z + begin, end - begin);
      VectorMap<T>(x2_p + begin, end - begin) = x_part.square();
    });
    return tensorflow::OkStatus();
  }
};

template <typename T>
struct DenseScaledInputsGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t n, const T* g_xz, const T* g_x2,
                                const T* x, const T* z, T* dx_p, T* dz_p) const {
    ParallelRange(ctx, n, 3, [&](int64_t begin, int64_t end) {
      const int64_t count = end - begin;
      const ConstVectorMap<T> g_xz_part(g_xz + begin, count);
      const ConstVectorMap<T> x_part(x + begin, count);
      VectorMap<T>(dx_p + begin, count) =
          g_xz_part * ConstVectorMap<T>(z + begin, count) +
          T(2) * x_part * ConstVectorMap<T>(g_x2 + begin, count);
      VectorMap<T>(dz_p + begin, count) = g_xz_part * x_part;
    });
    return tensorflow::OkStatus();
  }
};

// Rows split over the pool, eps generated row by row in chunks.
template <typename T>
struct DenseEpilogueFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t batch, int64_t n, const T* mu,
                                const T* var, const T* bias_mean, const T* bias_log_var,
                                T two_log_max, const NormalStream& stream, T* out_p,
                                T* std_p) const {
    if (batch * n == 0) return tensorflow::OkStatus();
    const Vector<T> bias_var = BiasVariance<T>(bias_log_var, n, two_log_max);
    const ConstVectorMap<T> bias(bias_mean, n);
    ParallelRange(ctx, batch, 8.0 * n, [&](int64_t begin, int64_t end) {
      ForRowPieces<T>(stream, begin, end, n, [&](int64_t first, int64_t j0, int64_t count,
                                                 const ConstVectorMap<T>& eps) {
        VectorMap<T> std_row(std_p + first, count);
        std_row = (ConstVectorMap<T>(var + first, count) + bias_var.segment(j0, count)).sqrt();
        // out = mu + sqrt(var) eps (Sample on packets; Algorithm 1, local reparameterization).
        VectorMap<T>(out_p + first, count) =
            ConstVectorMap<T>(mu + first, count) + bias.segment(j0, count) + std_row * eps;
      });
    });
    return tensorflow::OkStatus();
  }
};

// Row shards, each summing its rows' g and d var into its own [2, N] slice of a temporary.
template <typename T>
struct DenseEpilogueGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t batch, int64_t n, const T* g,
                                const T* std_p, const T* blv, T two_log_max,
                                const NormalStream& stream, T* gv, T* grad_bias,
                                T* grad_blv) const {
    VectorMap<T> d_bias(grad_bias, n);
    VectorMap<T> d_blv(grad_blv, n);
    d_bias.setZero();
    d_blv.setZero();
    if (batch == 0 || n == 0) return tensorflow::OkStatus();
    const int64_t threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
    const int64_t shards = std::min<int64_t>(batch, 4 * threads);
    const int64_t rows_per_shard = (batch + shards - 1) / shards;
    Tensor partial;
    TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                          TensorShape({shards, 2, n}), &partial));
    T* partial_p = partial.flat<T>().data();
    ParallelRange(ctx, shards, 9.0 * rows_per_shard * n, [&](int64_t begin, int64_t end) {
      for (int64_t shard = begin; shard < end; ++shard) {
        VectorMap<T> sum_g(partial_p + shard * 2 * n, n);
        VectorMap<T> sum_gv(partial_p + (shard * 2 + 1) * n, n);
        sum_g.setZero();
        sum_gv.setZero();
        const int64_t row_begin = std::min(batch, shard * rows_per_shard);
        const int64_t row_end = std::min(batch, (shard + 1) * rows_per_shard);
        ForRowPieces<T>(stream, row_begin, row_end, n, [&](int64_t first, int64_t j0,
                                                           int64_t count,
                                                           const ConstVectorMap<T>& eps) {
          const ConstVectorMap<T> g_row(g + first, count);
          VectorMap<T> gv_row(gv + first, count);
          // d out / d var = g eps / (2 std) (VarGrad on packets).
          gv_row = g_row * eps / (T(2) * ConstVectorMap<T>(std_p + first, count));
          sum_g.segment(j0, count) += g_row;
          sum_gv.segment(j0, count) += gv_row;
        });
      }
    });
    for (int64_t shard = 0; shard < shards; ++shard) {
      d_bias += ConstVectorMap<T>(partial_p + shard * 2 * n, n);
      d_blv += ConstVectorMap<T>(partial_p + (shard * 2 + 1) * n, n);
    }
    // d bias_log_var = d sigma_b^2 * sigma_b^2 where bias_log_var <= 2 log max_std.
    for (int64_t j = 0; j < n; ++j) {
      d_blv(j) *= ClippedBiasVar<T>(blv[j], two_log_max) * ClipMask<T>(blv[j], two_log_max);
    }
    return tensorflow::OkStatus();
  }
};

namespace {

MNF_REGISTER_DENSE_KERNELS(MNF_REGISTER_CPU, MNF_REGISTER_CPU, float);
MNF_REGISTER_DENSE_KERNELS(MNF_REGISTER_CPU, MNF_REGISTER_CPU, double);

}  // namespace
}  // namespace mnf
