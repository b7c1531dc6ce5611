// CUDA kernels of the conv epilogue and its gradient: one thread per Box-Muller pair (two
// output elements), the maths of common/local_reparam_math.h shared with the CPU kernels.
#include "conv/epilogue_kernels.h"

#include "common/cuda_launch.h"

namespace mnf {
namespace cuda {
namespace {

template <typename T>
__global__ void ConvEpilogueKernel(int64_t n, int64_t per_example, int64_t c, const T* mu,
                                   const T* var, const T* z, NormalStream noise, T* out) {
  MNF_GRID_STRIDE(p, (n + 1) / 2) {
    T eps[2];
    NormalPair<T>(noise, p, &eps[0], &eps[1]);
    for (int k = 0; k < 2 && 2 * p + k < n; ++k) {
      const int64_t i = 2 * p + k;
      const T zi = z[(i / per_example) * c + i % c];
      out[i] = Sample<T>(mu[i] * zi, sqrt(var[i]), eps[k]);
    }
  }
}

template <typename T>
__global__ void ConvEpilogueGradKernel(int64_t n, int64_t per_example, int64_t c, const T* g,
                                       const T* mu, const T* var, const T* z, NormalStream noise,
                                       T* dmu, T* dvar, T* dz) {
  MNF_GRID_STRIDE(p, (n + 1) / 2) {
    T eps[2];
    NormalPair<T>(noise, p, &eps[0], &eps[1]);
    for (int k = 0; k < 2 && 2 * p + k < n; ++k) {
      const int64_t i = 2 * p + k;
      const int64_t zi = (i / per_example) * c + i % c;
      dmu[i] = g[i] * z[zi];
      dvar[i] = VarGrad<T>(g[i], sqrt(var[i]), eps[k]);
      atomicAdd(dz + zi, g[i] * mu[i]);
    }
  }
}

}  // namespace

template <typename T>
cudaError_t LaunchConvEpilogue(cudaStream_t stream, int64_t n, int64_t per_example, int64_t c,
                               const T* mu, const T* var, const T* z, NormalStream noise,
                               T* out) {
  if (n == 0) return cudaSuccess;
  ConvEpilogueKernel<T><<<Blocks((n + 1) / 2), kThreads, 0, stream>>>(n, per_example, c, mu, var,
                                                                      z, noise, out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t LaunchConvEpilogueGrad(cudaStream_t stream, int64_t n, int64_t per_example,
                                   int64_t c, const T* g, const T* mu, const T* var, const T* z,
                                   NormalStream noise, T* dmu, T* dvar, T* dz) {
  const int64_t batch = per_example == 0 ? 0 : n / per_example;
  cudaError_t err = cudaMemsetAsync(dz, 0, sizeof(T) * batch * c, stream);
  if (err != cudaSuccess || n == 0) return err;
  ConvEpilogueGradKernel<T><<<Blocks((n + 1) / 2), kThreads, 0, stream>>>(
      n, per_example, c, g, mu, var, z, noise, dmu, dvar, dz);
  return cudaGetLastError();
}

#define INSTANTIATE(T)                                                                        \
  template cudaError_t LaunchConvEpilogue<T>(cudaStream_t, int64_t, int64_t, int64_t, const T*, \
                                             const T*, const T*, NormalStream, T*);             \
  template cudaError_t LaunchConvEpilogueGrad<T>(cudaStream_t, int64_t, int64_t, int64_t,       \
                                                 const T*, const T*, const T*, const T*,        \
                                                 NormalStream, T*, T*, T*);
INSTANTIATE(float)
INSTANTIATE(double)

}  // namespace cuda
}  // namespace mnf
