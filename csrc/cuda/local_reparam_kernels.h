// TensorFlow-free launchers of the CUDA kernels of the MNF local-reparameterization ops
// (conv epilogue: local_reparam_kernels.cu.cc; dense element-wise ops: dense_kernels.cu.cc;
// kernel moments: moments_kernels.cu.cc), used by the TF GPU kernels (*_gpu.cc) and by the
// CUDA harness.
#ifndef TFP_MNF_CSRC_CUDA_LOCAL_REPARAM_KERNELS_H_
#define TFP_MNF_CSRC_CUDA_LOCAL_REPARAM_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_moments.h"
#include "local_reparam_math.h"

namespace mnf {
namespace cuda {

// Launch geometry of the grid-stride kernels: kThreads per block, at most 65535 blocks.
constexpr int kThreads = 256;

inline int Blocks(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

// out = mu * z[b, c] + sqrt(var) * eps over n channels-last elements, per_example elements
// per batch row, c channels; eps element i = NormalAt<T>(stream, i).
template <typename T>
cudaError_t LaunchConvEpilogue(cudaStream_t stream, int64_t n, int64_t per_example, int64_t c,
                               const T* mu, const T* var, const T* z, NormalStream noise,
                               T* out);

// Gradients of LaunchConvEpilogue for the upstream gradient g: dmu = g z,
// dvar = g eps / (2 sqrt(var)), dz[b, c] = sum over positions of g mu ([B, C], overwritten).
template <typename T>
cudaError_t LaunchConvEpilogueGrad(cudaStream_t stream, int64_t n, int64_t per_example,
                                   int64_t c, const T* g, const T* mu, const T* var, const T* z,
                                   NormalStream noise, T* dmu, T* dvar, T* dz);

// (x, z) -> (x z, x^2) over n elements.
template <typename T>
cudaError_t LaunchDenseScaledInputs(cudaStream_t stream, int64_t n, const T* x, const T* z,
                                    T* x_z, T* x_sq);

// Gradients of LaunchDenseScaledInputs: dx = g_xz z + 2 x g_xsq, dz = g_xz x.
template <typename T>
cudaError_t LaunchDenseScaledInputsGrad(cudaStream_t stream, int64_t n, const T* grad_x_z,
                                        const T* grad_x_sq, const T* x, const T* z, T* dx, T* dz);

// variance = exp(2 min(log_std, log_max)) over n elements.
template <typename T>
cudaError_t LaunchClippedVariance(cudaStream_t stream, int64_t n, const T* log_std, T log_max,
                                  T* variance);

// d log_std = 2 variance g where log_std <= log_max, else 0.
template <typename T>
cudaError_t LaunchClippedVarianceGrad(cudaStream_t stream, int64_t n, const T* grad,
                                      const T* log_std, const T* variance, T log_max,
                                      T* grad_log_std);

// Over a [batch, n] row-major tensor: stddev = sqrt(var + exp(min(bias_log_var, two_log_max)))
// and out = mu + bias + stddev eps, eps element i = NormalAt<T>(noise, i). out may alias mu
// and stddev may alias var.
template <typename T>
cudaError_t LaunchDenseEpilogue(cudaStream_t stream, int64_t batch, int64_t n, const T* mu,
                                const T* var, const T* bias, const T* bias_log_var,
                                T two_log_max, NormalStream noise, T* out, T* stddev);

// Gradients of LaunchDenseEpilogue for the upstream gradient g: grad_var = g eps / (2 stddev)
// (may alias stddev), grad_bias = column sums of g, grad_bias_log_var = column sums of
// grad_var times exp(min(bias_log_var, two_log_max)), zero where bias_log_var > two_log_max.
template <typename T>
cudaError_t LaunchDenseEpilogueGrad(cudaStream_t stream, int64_t batch, int64_t n, const T* g,
                                    const T* stddev, const T* bias_log_var, T two_log_max,
                                    NormalStream noise, T* grad_var, T* grad_bias,
                                    T* grad_bias_log_var);

// The kernel moments of kernel_moments.h (every output written).
template <typename T>
cudaError_t LaunchKernelMoments(cudaStream_t stream, const MomentsInputs<T>& in,
                                const MomentsTensors<T*>& out);

// The gradients of LaunchKernelMoments for the upstream gradients g (every one given).
template <typename T>
cudaError_t LaunchKernelMomentsGrad(cudaStream_t stream, const MomentsInputs<T>& in,
                                    const MomentsTensors<const T*>& g,
                                    const MomentsInputGrads<T>& d);

}  // namespace cuda
}  // namespace mnf

#endif  // TFP_MNF_CSRC_CUDA_LOCAL_REPARAM_KERNELS_H_
