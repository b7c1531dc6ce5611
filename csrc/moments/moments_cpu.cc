// CPU functors (float32, float64) of MnfKernelMoments and its gradient (moments.h):
// one pass over the [rows, cols] kernel each, rows split into shards over the thread pool.
// Sums along a row are computed row by row; sums down the columns go to per-shard partial
// vectors that are added up at the end (the log-sigma sum in double). The element-wise maths
// are the functions of common/local_reparam_math.h, written as Eigen packet expressions.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <vector>

#include "common/cpu_utils.h"
#include "moments/moments_ops.h"

namespace mnf {
namespace {

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

// Rows per shard and the number of shards of a [rows, cols] pass: about 4 per thread, one
// when the kernel is small.
struct Shards {
  int64_t count = 1, rows_per_shard = 0;

  Shards(OpKernelContext* ctx, int64_t rows, int64_t cols) {
    const int64_t threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
    if (static_cast<double>(rows) * cols * 8.0 >= kMinParallelCycles) {
      count = std::max<int64_t>(1, std::min(rows, 4 * threads));
    }
    rows_per_shard = (rows + count - 1) / count;
  }
};

// `num` zeroed [cols] partial sums per shard, in one temporary.
template <typename T>
tensorflow::Status PartialSums(OpKernelContext* ctx, const Shards& shards, int num, int64_t cols,
                               Tensor* partial) {
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                        TensorShape({shards.count, num, cols}), partial));
  partial->flat<T>().setZero();
  return tensorflow::OkStatus();
}

// sum over shards of partial[shard, k, :] into out (k-th of the per-shard vectors).
template <typename T>
void AddPartials(const Tensor& partial, int k, int64_t cols, T* out) {
  const int64_t shards = partial.dim_size(0), num = partial.dim_size(1);
  const T* p = partial.flat<T>().data();
  VectorMap<T> total(out, cols);
  total.setZero();
  for (int64_t s = 0; s < shards; ++s) total += ConstVectorMap<T>(p + (s * num + k) * cols, cols);
}

}  // namespace

template <typename T>
struct KernelMomentsFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const MomentsInputs<T>& in,
                                const MomentsTensors<T*>& out) const {
    const int64_t rows = in.rows, cols = in.cols;
    const Shards shards(ctx, rows, cols);
    // Down the columns: the projections (z along rows) or the three per-z sums (z columns).
    const int num_partials = in.z_rows ? 2 : 3;
    Tensor partial;
    TF_RETURN_IF_ERROR(PartialSums<T>(ctx, shards, num_partials, cols, &partial));
    std::vector<double> log_std_sums(shards.count, 0.0);
    T* partial_p = partial.flat<T>().data();
    const ConstVectorMap<T> u_cols(in.mean_weights, in.z_rows ? 0 : cols);
    const ConstVectorMap<T> v_cols(in.variance_weights, in.z_rows ? 0 : cols);
    ParallelRange(ctx, shards.count, 8.0 * shards.rows_per_shard * cols, [&](int64_t b, int64_t e) {
      Vector<T> clipped(cols);
      for (int64_t s = b; s < e; ++s) {
        T* sums = partial_p + s * num_partials * cols;
        const int64_t row_end = std::min(rows, (s + 1) * shards.rows_per_shard);
        for (int64_t r = s * shards.rows_per_shard; r < row_end; ++r) {
          const ConstVectorMap<T> mean(in.mean + r * cols, cols);
          VectorMap<T> variance(out.variance + r * cols, cols);
          // ClipLogStd and sigma^2 = exp(2 log sigma) on packets.
          clipped = ConstVectorMap<T>(in.log_std + r * cols, cols).max(in.min_log_std).min(
              in.log_max);
          variance = (T(2) * clipped).exp();
          log_std_sums[s] += static_cast<double>(clipped.sum());
          if (in.z_rows) {
            out.variance_sum[r] = variance.sum();
            out.mean_sq_sum[r] = mean.square().sum();
            out.mean_sum[r] = mean.sum();
            VectorMap<T>(sums, cols) += in.mean_weights[r] * mean;
            VectorMap<T>(sums + cols, cols) += in.variance_weights[r] * variance;
          } else {
            out.projected_mean[r] = (mean * u_cols).sum();
            out.projected_variance[r] = (variance * v_cols).sum();
            VectorMap<T>(sums, cols) += variance;
            VectorMap<T>(sums + cols, cols) += mean.square();
            VectorMap<T>(sums + 2 * cols, cols) += mean;
          }
        }
      }
    });
    if (in.z_rows) {
      AddPartials<T>(partial, 0, cols, out.projected_mean);
      AddPartials<T>(partial, 1, cols, out.projected_variance);
    } else {
      AddPartials<T>(partial, 0, cols, out.variance_sum);
      AddPartials<T>(partial, 1, cols, out.mean_sq_sum);
      AddPartials<T>(partial, 2, cols, out.mean_sum);
    }
    double log_std_sum = 0.0;
    for (const double part : log_std_sums) log_std_sum += part;
    *out.log_std_sum = static_cast<T>(log_std_sum);
    return tensorflow::OkStatus();
  }
};

template <typename T>
struct KernelMomentsGradFunctor<CPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const MomentsInputs<T>& in,
                                const MomentsTensors<const T*>& g,
                                const MomentsInputGrads<T>& d) const {
    const int64_t rows = in.rows, cols = in.cols;
    const Shards shards(ctx, rows, cols);
    // Down the columns (z columns only): d u and d v.
    Tensor partial;
    TF_RETURN_IF_ERROR(PartialSums<T>(ctx, shards, in.z_rows ? 0 : 2, cols, &partial));
    T* partial_p = partial.flat<T>().data();
    const T g_log_std_sum = *g.log_std_sum;
    const int64_t z_cols = in.z_rows ? 0 : cols;  // size of the per-column z vectors
    const ConstVectorMap<T> u_cols(in.mean_weights, z_cols), v_cols(in.variance_weights, z_cols);
    const ConstVectorMap<T> g_var_sum(g.variance_sum, z_cols), g_sq_sum(g.mean_sq_sum, z_cols),
        g_sum(g.mean_sum, z_cols);
    const int64_t other_cols = in.z_rows ? cols : 0;  // size of the per-column other vectors
    const ConstVectorMap<T> g_proj_mean(g.projected_mean, other_cols),
        g_proj_var(g.projected_variance, other_cols);
    ParallelRange(ctx, shards.count, 12.0 * shards.rows_per_shard * cols, [&](int64_t b,
                                                                             int64_t e) {
      Vector<T> variance(cols), g_sq(cols);
      for (int64_t s = b; s < e; ++s) {
        T* sums = partial_p + s * 2 * cols;
        const int64_t row_end = std::min(rows, (s + 1) * shards.rows_per_shard);
        for (int64_t r = s * shards.rows_per_shard; r < row_end; ++r) {
          const ConstVectorMap<T> mean(in.mean + r * cols, cols);
          const ConstVectorMap<T> log_std(in.log_std + r * cols, cols);
          const ConstVectorMap<T> g_variance(g.variance + r * cols, cols);
          VectorMap<T> d_mean(d.mean + r * cols, cols);
          variance = (T(2) * log_std.max(in.min_log_std).min(in.log_max)).exp();
          if (in.z_rows) {
            g_sq = g_variance + g.variance_sum[r] + in.variance_weights[r] * g_proj_var;
            d_mean = T(2) * g.mean_sq_sum[r] * mean + g.mean_sum[r] +
                     in.mean_weights[r] * g_proj_mean;
            d.mean_weights[r] = (mean * g_proj_mean).sum();
            d.variance_weights[r] = (variance * g_proj_var).sum();
          } else {
            g_sq = g_variance + g_var_sum + v_cols * g.projected_variance[r];
            d_mean = T(2) * g_sq_sum * mean + g_sum + u_cols * g.projected_mean[r];
            VectorMap<T>(sums, cols) += g.projected_mean[r] * mean;
            VectorMap<T>(sums + cols, cols) += g.projected_variance[r] * variance;
          }
          // MomentsLogStdGrad on packets, ClipLogStdMask as the select.
          VectorMap<T>(d.log_std + r * cols, cols) =
              (log_std >= in.min_log_std && log_std <= in.log_max)
                  .select(T(2) * variance * g_sq + g_log_std_sum, T(0));
        }
      }
    });
    if (!in.z_rows) {
      AddPartials<T>(partial, 0, cols, d.mean_weights);
      AddPartials<T>(partial, 1, cols, d.variance_weights);
    }
    return tensorflow::OkStatus();
  }
};

namespace {

MNF_REGISTER_MOMENTS_KERNELS(MNF_REGISTER_CPU, float);
MNF_REGISTER_MOMENTS_KERNELS(MNF_REGISTER_CPU, double);

}  // namespace
}  // namespace mnf
