// TensorFlow-free launchers of the CUDA kernels of the element-wise dense ops
// (dense_kernels.cu.cc), used by the GPU functors (dense_gpu.cc) and by the CUDA harness.
#ifndef TFP_MNF_CSRC_DENSE_DENSE_KERNELS_H_
#define TFP_MNF_CSRC_DENSE_DENSE_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "common/local_reparam_math.h"

namespace mnf {
namespace cuda {

// (x, z) -> (x z, x^2) over n elements.
template <typename T>
cudaError_t LaunchDenseScaledInputs(cudaStream_t stream, int64_t n, const T* x, const T* z,
                                    T* x_z, T* x_sq);

// Gradients of LaunchDenseScaledInputs: dx = g_xz z + 2 x g_xsq, dz = g_xz x.
template <typename T>
cudaError_t LaunchDenseScaledInputsGrad(cudaStream_t stream, int64_t n, const T* grad_x_z,
                                        const T* grad_x_sq, const T* x, const T* z, T* dx, T* dz);

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

}  // namespace cuda
}  // namespace mnf

#endif  // TFP_MNF_CSRC_DENSE_DENSE_KERNELS_H_
