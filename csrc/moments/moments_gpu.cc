// GPU functors of MnfKernelMoments and its gradient: the OpKernels of moments_ops.h (input
// validation, output allocation) call the TensorFlow-free CUDA launchers
// (moments_kernels.h) on the op's stream.
#define EIGEN_USE_GPU

#include "common/gpu_utils.h"
#include "moments/moments_kernels.h"
#include "moments/moments_ops.h"

namespace mnf {

using tensorflow::OpKernelContext;

template <typename T>
struct KernelMomentsFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const MomentsInputs<T>& in,
                                const MomentsTensors<T*>& out) const {
    return CudaStatus(cuda::LaunchKernelMoments<T>(Stream(ctx), in, out));
  }
};

template <typename T>
struct KernelMomentsGradFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const MomentsInputs<T>& in,
                                const MomentsTensors<const T*>& g,
                                const MomentsInputGrads<T>& d) const {
    return CudaStatus(cuda::LaunchKernelMomentsGrad<T>(Stream(ctx), in, g, d));
  }
};

namespace {

MNF_REGISTER_MOMENTS_KERNELS(MNF_REGISTER_GPU, float);

}  // namespace
}  // namespace mnf
