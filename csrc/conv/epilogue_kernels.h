// TensorFlow-free launchers of the CUDA kernels of the conv epilogue (epilogue_kernels.cu.cc),
// used by the GPU functors (epilogue_gpu.cc) and by the CUDA harness.
#ifndef TFP_MNF_CSRC_CONV_EPILOGUE_KERNELS_H_
#define TFP_MNF_CSRC_CONV_EPILOGUE_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "common/local_reparam_math.h"

namespace mnf {
namespace cuda {

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

}  // namespace cuda
}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_EPILOGUE_KERNELS_H_
