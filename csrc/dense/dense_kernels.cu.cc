// CUDA kernels of the element-wise dense MNF ops around the two matrix products: scaled
// inputs and the sampling epilogue, with their gradients. Grid-stride loops; the epilogue
// runs one thread per Box-Muller pair (two output elements) and its gradient sums columns
// with atomics. Maths of common/local_reparam_math.h, shared with the CPU.
#include "dense/dense_kernels.h"

#include "common/cuda_launch.h"

namespace mnf {
namespace cuda {
namespace {

template <typename T>
__global__ void ScaledInputsKernel(int64_t n, const T* x, const T* z, T* x_z, T* x_sq) {
  MNF_GRID_STRIDE(i, n) {
    x_z[i] = x[i] * z[i];
    x_sq[i] = x[i] * x[i];
  }
}

template <typename T>
__global__ void ScaledInputsGradKernel(int64_t n, const T* g_xz, const T* g_xsq, const T* x,
                                       const T* z, T* dx, T* dz) {
  MNF_GRID_STRIDE(i, n) {
    dx[i] = g_xz[i] * z[i] + T(2) * x[i] * g_xsq[i];
    dz[i] = g_xz[i] * x[i];
  }
}

template <typename T>
__global__ void DenseEpilogueKernel(int64_t size, int64_t n, const T* mu, const T* var,
                                    const T* bias, const T* bias_log_var, T two_log_max,
                                    NormalStream noise, T* out, T* stddev) {
  MNF_GRID_STRIDE(p, (size + 1) / 2) {
    T eps[2];
    NormalPair<T>(noise, p, &eps[0], &eps[1]);
    for (int k = 0; k < 2 && 2 * p + k < size; ++k) {
      const int64_t i = 2 * p + k;
      const int64_t j = i % n;
      const T std = sqrt(var[i] + ClippedBiasVar<T>(bias_log_var[j], two_log_max));
      const T mean = mu[i] + bias[j];
      stddev[i] = std;
      out[i] = Sample<T>(mean, std, eps[k]);
    }
  }
}

template <typename T>
__global__ void DenseEpilogueGradKernel(int64_t size, int64_t n, const T* g, const T* stddev,
                                        NormalStream noise, T* grad_var, T* grad_bias,
                                        T* sum_grad_var) {
  MNF_GRID_STRIDE(p, (size + 1) / 2) {
    T eps[2];
    NormalPair<T>(noise, p, &eps[0], &eps[1]);
    for (int k = 0; k < 2 && 2 * p + k < size; ++k) {
      const int64_t i = 2 * p + k;
      const int64_t j = i % n;
      const T gv = VarGrad<T>(g[i], stddev[i], eps[k]);
      grad_var[i] = gv;
      atomicAdd(grad_bias + j, g[i]);
      atomicAdd(sum_grad_var + j, gv);
    }
  }
}

// d bias_log_var = (column sum of d var) sigma_b^2, zero above the clip.
template <typename T>
__global__ void BiasLogVarGradKernel(int64_t n, const T* bias_log_var, T two_log_max,
                                     T* grad_bias_log_var) {
  MNF_GRID_STRIDE(j, n) {
    grad_bias_log_var[j] *= ClippedBiasVar<T>(bias_log_var[j], two_log_max) *
                            ClipMask<T>(bias_log_var[j], two_log_max);
  }
}

}  // namespace

template <typename T>
cudaError_t LaunchDenseScaledInputs(cudaStream_t stream, int64_t n, const T* x, const T* z,
                                    T* x_z, T* x_sq) {
  if (n == 0) return cudaSuccess;
  ScaledInputsKernel<T><<<Blocks(n), kThreads, 0, stream>>>(n, x, z, x_z, x_sq);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchDenseScaledInputsGrad(cudaStream_t stream, int64_t n, const T* grad_x_z,
                                        const T* grad_x_sq, const T* x, const T* z, T* dx,
                                        T* dz) {
  if (n == 0) return cudaSuccess;
  ScaledInputsGradKernel<T><<<Blocks(n), kThreads, 0, stream>>>(n, grad_x_z, grad_x_sq, x, z,
                                                                 dx, dz);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchDenseEpilogue(cudaStream_t stream, int64_t batch, int64_t n, const T* mu,
                                const T* var, const T* bias, const T* bias_log_var,
                                T two_log_max, NormalStream noise, T* out, T* stddev) {
  const int64_t size = batch * n;
  if (size == 0) return cudaSuccess;
  DenseEpilogueKernel<T><<<Blocks((size + 1) / 2), kThreads, 0, stream>>>(
      size, n, mu, var, bias, bias_log_var, two_log_max, noise, out, stddev);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchDenseEpilogueGrad(cudaStream_t stream, int64_t batch, int64_t n, const T* g,
                                    const T* stddev, const T* bias_log_var, T two_log_max,
                                    NormalStream noise, T* grad_var, T* grad_bias,
                                    T* grad_bias_log_var) {
  cudaError_t err = cudaMemsetAsync(grad_bias, 0, sizeof(T) * n, stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(grad_bias_log_var, 0, sizeof(T) * n, stream);
  const int64_t size = batch * n;
  if (err != cudaSuccess || size == 0) return err;
  DenseEpilogueGradKernel<T><<<Blocks((size + 1) / 2), kThreads, 0, stream>>>(
      size, n, g, stddev, noise, grad_var, grad_bias, grad_bias_log_var);
  BiasLogVarGradKernel<T><<<Blocks(n), kThreads, 0, stream>>>(n, bias_log_var, two_log_max,
                                                               grad_bias_log_var);
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                           \
  template cudaError_t LaunchDenseScaledInputs<T>(cudaStream_t, int64_t, const T*, const T*, T*, \
                                                  T*);                                           \
  template cudaError_t LaunchDenseScaledInputsGrad<T>(cudaStream_t, int64_t, const T*,           \
                                                      const T*, const T*, const T*, T*, T*);     \
  template cudaError_t LaunchDenseEpilogue<T>(cudaStream_t, int64_t, int64_t, const T*,          \
                                              const T*, const T*, const T*, T, NormalStream,     \
                                              T*, T*);                                           \
  template cudaError_t LaunchDenseEpilogueGrad<T>(cudaStream_t, int64_t, int64_t, const T*,      \
                                                  const T*, const T*, T, NormalStream, T*, T*,   \
                                                  T*);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace cuda
}  // namespace mnf
