// TensorFlow-free launchers of the CUDA kernels of the kernel moments (moments_kernels.cu.cc),
// used by the GPU functors (moments_gpu.cc) and by the CUDA harness.
#ifndef TFP_MNF_CSRC_MOMENTS_MOMENTS_KERNELS_H_
#define TFP_MNF_CSRC_MOMENTS_MOMENTS_KERNELS_H_

#include <cuda_runtime.h>

#include "moments/moments.h"

namespace mnf {
namespace cuda {

// The kernel moments of moments.h (every output written).
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

#endif  // TFP_MNF_CSRC_MOMENTS_MOMENTS_KERNELS_H_
