// GPU functors of MnfKernelMoments and its gradient: the OpKernels of moments_ops.h (input
// validation, output allocation) call the TensorFlow-free CUDA launchers
// (moments_kernels.cu.cc) on the op's stream.
#define EIGEN_USE_GPU

#include "cuda/gpu_kernel_utils.h"
#include "cuda/local_reparam_kernels.h"
#include "moments_ops.h"

namespace mnf {

using tensorflow::OpKernelContext;
using GPUDevice = Eigen::GpuDevice;

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

#define REGISTER_GPU(name, Kernel, T) \
  REGISTER_KERNEL_BUILDER(            \
      Name(name).Device(tensorflow::DEVICE_GPU).TypeConstraint<T>("T"), Kernel<GPUDevice, T>);

MNF_REGISTER_MOMENTS_KERNELS(REGISTER_GPU, float);

}  // namespace
}  // namespace mnf
