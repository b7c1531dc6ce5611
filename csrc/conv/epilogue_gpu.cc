// GPU functors of the conv epilogue, MnfConvLocalReparamEpilogue and its gradient: the
// OpKernels of epilogue_ops.h (input validation, output allocation) call the TensorFlow-free
// CUDA launchers (epilogue_kernels.h) on the op's stream.
#define EIGEN_USE_GPU

#include "common/gpu_utils.h"
#include "conv/epilogue_kernels.h"
#include "conv/epilogue_ops.h"

namespace mnf {

using tensorflow::OpKernelContext;

template <typename T>
struct ConvEpilogueFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvEpilogueInputs& in, T* out) const {
    return CudaStatus(cuda::LaunchConvEpilogue<T>(
        Stream(ctx), in.mu.NumElements(), in.per_example, in.channels, in.mu.flat<T>().data(),
        in.var.flat<T>().data(), in.z.flat<T>().data(), in.stream, out));
  }
};

template <typename T>
struct ConvEpilogueGradFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, const ConvEpilogueInputs& in, const T* g,
                                T* dmu, T* dvar, T* dz) const {
    return CudaStatus(cuda::LaunchConvEpilogueGrad<T>(
        Stream(ctx), in.mu.NumElements(), in.per_example, in.channels, g,
        in.mu.flat<T>().data(), in.var.flat<T>().data(), in.z.flat<T>().data(), in.stream, dmu,
        dvar, dz));
  }
};

namespace {

MNF_REGISTER_CONV_EPILOGUE_KERNELS(MNF_REGISTER_GPU_SEEDED, float);

}  // namespace
}  // namespace mnf
