// CUDA kernels of MnfKernelMoments and its gradient (moments.h). The kernel is
// processed in tiles of kTileRows rows, one block per tile and a thread per column: sums
// along a row are block reductions (one write per row), sums down the columns are added up
// over the tile's rows per thread and then once per tile with atomicAdd, as is the log-sigma
// sum. Element-wise maths of common/local_reparam_math.h, shared with the CPU kernels.
#include "moments/moments_kernels.h"

#include "common/cuda_launch.h"
#include "common/local_reparam_math.h"

namespace mnf {
namespace cuda {
namespace {

constexpr int kTileRows = 16;

// Sums `values[0, count)` over the block's threads; the result is valid in thread 0.
// `shared` holds kThreads * count elements.
template <typename T, int count>
__device__ void BlockSum(T (&values)[count], T* shared) {
  for (int k = 0; k < count; ++k) shared[k * kThreads + threadIdx.x] = values[k];
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      for (int k = 0; k < count; ++k) {
        shared[k * kThreads + threadIdx.x] += shared[k * kThreads + threadIdx.x + stride];
      }
    }
    __syncthreads();
  }
  for (int k = 0; k < count; ++k) values[k] = shared[k * kThreads];
  __syncthreads();
}

// One tile of rows per block. z along the rows: variance_sum, mean_sq_sum, mean_sum per row
// (block sums), the projections down the columns; z along the columns: the projections per
// row, the three z sums down the columns. log_std_sum: every block adds its part.
template <typename T>
__global__ void MomentsKernel(MomentsInputs<T> in, MomentsTensors<T*> out) {
  __shared__ T shared[3 * kThreads];
  const int64_t row0 = blockIdx.x * int64_t{kTileRows};
  const int64_t row_end = row0 + kTileRows < in.rows ? row0 + kTileRows : in.rows;
  T log_std_part[1] = {T(0)};
  for (int64_t c0 = 0; c0 < in.cols; c0 += kThreads) {
    const int64_t col = c0 + threadIdx.x;
    const bool active = col < in.cols;
    T down[3] = {T(0), T(0), T(0)};  // sums down this column over the tile's rows
    for (int64_t r = row0; r < row_end; ++r) {
      const int64_t i = r * in.cols + col;
      T along[3] = {T(0), T(0), T(0)};  // this element's part of the row's sums
      if (active) {
        const T m = in.mean[i];
        const T log_std = ClipLogStd<T>(in.log_std[i], in.min_log_std, in.log_max);
        const T v = exp(T(2) * log_std);
        out.variance[i] = v;
        log_std_part[0] += log_std;
        if (in.z_rows) {
          along[0] = v;
          along[1] = m * m;
          along[2] = m;
          down[0] += in.mean_weights[r] * m;
          down[1] += in.variance_weights[r] * v;
        } else {
          along[0] = in.mean_weights[col] * m;
          along[1] = in.variance_weights[col] * v;
          down[0] += v;
          down[1] += m * m;
          down[2] += m;
        }
      }
      BlockSum<T, 3>(along, shared);
      if (threadIdx.x == 0) {
        // The row sums of this column chunk; the first chunk writes, the others add.
        T* targets[3] = {in.z_rows ? out.variance_sum : out.projected_mean,
                         in.z_rows ? out.mean_sq_sum : out.projected_variance,
                         in.z_rows ? out.mean_sum : nullptr};
        for (int k = 0; k < 3; ++k) {
          if (targets[k] != nullptr) targets[k][r] = (c0 == 0 ? T(0) : targets[k][r]) + along[k];
        }
      }
    }
    if (active) {
      T* targets[3] = {in.z_rows ? out.projected_mean : out.variance_sum,
                       in.z_rows ? out.projected_variance : out.mean_sq_sum,
                       in.z_rows ? nullptr : out.mean_sum};
      for (int k = 0; k < 3; ++k) {
        if (targets[k] != nullptr) atomicAdd(targets[k] + col, down[k]);
      }
    }
  }
  BlockSum<T, 1>(log_std_part, shared);
  if (threadIdx.x == 0) atomicAdd(out.log_std_sum, log_std_part[0]);
}

// The gradient, tiled like MomentsKernel: d mean and d log_std element-wise, d u and d v as
// row sums (z along the rows) or sums down the columns (z along the columns).
template <typename T>
__global__ void MomentsGradKernel(MomentsInputs<T> in, MomentsTensors<const T*> g,
                                  MomentsInputGrads<T> d) {
  __shared__ T shared[2 * kThreads];
  const int64_t row0 = blockIdx.x * int64_t{kTileRows};
  const int64_t row_end = row0 + kTileRows < in.rows ? row0 + kTileRows : in.rows;
  const T g_log_std_sum = *g.log_std_sum;
  for (int64_t c0 = 0; c0 < in.cols; c0 += kThreads) {
    const int64_t col = c0 + threadIdx.x;
    const bool active = col < in.cols;
    T down[2] = {T(0), T(0)};
    for (int64_t r = row0; r < row_end; ++r) {
      const int64_t i = r * in.cols + col;
      T along[2] = {T(0), T(0)};
      if (active) {
        const T m = in.mean[i];
        const T raw = in.log_std[i];
        const T v = exp(T(2) * ClipLogStd<T>(raw, in.min_log_std, in.log_max));
        const int64_t zi = in.z_rows ? r : col;  // index along z
        const int64_t oi = in.z_rows ? col : r;  // index along the other axis
        const T g_sq = g.variance[i] + g.variance_sum[zi] +
                       in.variance_weights[zi] * g.projected_variance[oi];
        d.log_std[i] = MomentsLogStdGrad<T>(ClipLogStdMask<T>(raw, in.min_log_std, in.log_max),
                                            v, g_sq, g_log_std_sum);
        d.mean[i] = T(2) * g.mean_sq_sum[zi] * m + g.mean_sum[zi] +
                    in.mean_weights[zi] * g.projected_mean[oi];
        const T du = m * g.projected_mean[oi];
        const T dv = v * g.projected_variance[oi];
        if (in.z_rows) {
          along[0] = du;
          along[1] = dv;
        } else {
          down[0] += du;
          down[1] += dv;
        }
      }
      if (in.z_rows) {
        BlockSum<T, 2>(along, shared);
        if (threadIdx.x == 0) {
          d.mean_weights[r] = (c0 == 0 ? T(0) : d.mean_weights[r]) + along[0];
          d.variance_weights[r] = (c0 == 0 ? T(0) : d.variance_weights[r]) + along[1];
        }
      }
    }
    if (active && !in.z_rows) {
      atomicAdd(d.mean_weights + col, down[0]);
      atomicAdd(d.variance_weights + col, down[1]);
    }
  }
}

int TileBlocks(int64_t rows) {
  return static_cast<int>((rows + kTileRows - 1) / kTileRows);
}

}  // namespace

// Zeroes `count` elements at each non-null pointer of `buffers`.
template <typename T, int n>
cudaError_t Zero(cudaStream_t stream, T* const (&buffers)[n], int64_t count) {
  for (int k = 0; k < n; ++k) {
    if (buffers[k] == nullptr || count == 0) continue;
    const cudaError_t err = cudaMemsetAsync(buffers[k], 0, sizeof(T) * count, stream);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename T>
cudaError_t LaunchKernelMoments(cudaStream_t stream, const MomentsInputs<T>& in,
                                const MomentsTensors<T*>& out) {
  // Zero first: what is summed with atomics (the log-sigma sum and the sums down the
  // columns) and, for a kernel without columns, the row sums that no block writes.
  T* const scalar[1] = {out.log_std_sum};
  T* const z_sums[3] = {out.variance_sum, out.mean_sq_sum, out.mean_sum};
  T* const projections[2] = {out.projected_mean, out.projected_variance};
  cudaError_t err = Zero(stream, scalar, 1);
  if (err == cudaSuccess) {
    err = in.z_rows ? Zero(stream, projections, in.cols) : Zero(stream, z_sums, in.cols);
  }
  if (err == cudaSuccess && in.cols == 0) {
    err = in.z_rows ? Zero(stream, z_sums, in.rows) : Zero(stream, projections, in.rows);
  }
  if (err != cudaSuccess || in.rows == 0 || in.cols == 0) return err;
  MomentsKernel<T><<<TileBlocks(in.rows), kThreads, 0, stream>>>(in, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchKernelMomentsGrad(cudaStream_t stream, const MomentsInputs<T>& in,
                                    const MomentsTensors<const T*>& g,
                                    const MomentsInputGrads<T>& d) {
  // d u and d v start at zero where they are summed with atomics, or have no columns to sum.
  T* const weights[2] = {d.mean_weights, d.variance_weights};
  const cudaError_t err =
      (!in.z_rows || in.cols == 0) ? Zero(stream, weights, in.z_size()) : cudaSuccess;
  if (err != cudaSuccess || in.rows == 0 || in.cols == 0) return err;
  MomentsGradKernel<T><<<TileBlocks(in.rows), kThreads, 0, stream>>>(in, g, d);
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                      \
  template cudaError_t LaunchKernelMoments<T>(cudaStream_t, const MomentsInputs<T>&,        \
                                              const MomentsTensors<T*>&);                   \
  template cudaError_t LaunchKernelMomentsGrad<T>(cudaStream_t, const MomentsInputs<T>&,    \
                                                  const MomentsTensors<const T*>&,          \
                                                  const MomentsInputGrads<T>&);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace cuda
}  // namespace mnf
