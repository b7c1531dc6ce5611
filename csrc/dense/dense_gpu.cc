// GPU functors of the element-wise dense ops MnfDenseScaledInputs, MnfDenseEpilogue and their
// gradients: the OpKernels of dense_ops.h (input validation, output allocation) call the
// TensorFlow-free CUDA launchers (dense_kernels.h) on the op's stream. The two products
// between them are tf.matmul (cuBLAS).
#define EIGEN_USE_GPU

#include "common/gpu_utils.h"
#include "dense/dense_kernels.h"
#include "dense/dense_ops.h"

namespace mnf {

using tensorflow::OpKernelContext;

template <typename T>
struct DenseScaledInputsFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t n, const T* x, const T* z, T* x_z,
                                T* x_sq) const {
    return CudaStatus(cuda::LaunchDenseScaledInputs<T>(Stream(ctx), n, x, z, x_z, x_sq));
  }
};

template <typename T>
struct DenseScaledInputsGradFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t n, const T* grad_x_z,
                                const T* grad_x_sq, const T* x, const T* z, T* dx,
                                T* dz) const {
    return CudaStatus(cuda::LaunchDenseScaledInputsGrad<T>(Stream(ctx), n, grad_x_z, grad_x_sq,
                                                           x, z, dx, dz));
  }
};

template <typename T>
struct DenseEpilogueFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t batch, int64_t n, const T* mu,
                                const T* var, const T* bias, const T* bias_log_var,
                                T two_log_max, const NormalStream& noise, T* out,
                                T* stddev) const {
    return CudaStatus(cuda::LaunchDenseEpilogue<T>(Stream(ctx), batch, n, mu, var, bias,
                                                   bias_log_var, two_log_max, noise, out,
                                                   stddev));
  }
};

template <typename T>
struct DenseEpilogueGradFunctor<GPUDevice, T> {
  tensorflow::Status operator()(OpKernelContext* ctx, int64_t batch, int64_t n, const T* g,
                                const T* stddev, const T* bias_log_var, T two_log_max,
                                const NormalStream& noise, T* grad_var, T* grad_bias,
                                T* grad_bias_log_var) const {
    return CudaStatus(cuda::LaunchDenseEpilogueGrad<T>(Stream(ctx), batch, n, g, stddev,
                                                       bias_log_var, two_log_max, noise,
                                                       grad_var, grad_bias, grad_bias_log_var));
  }
};

namespace {

MNF_REGISTER_DENSE_KERNELS(MNF_REGISTER_GPU, MNF_REGISTER_GPU_SEEDED, float);

}  // namespace
}  // namespace mnf
