// CPU kernels of MnfDenseLocalReparam and its gradient (float32, float64).
//
// The two products run as Eigen contractions on TensorFlow's intra-op thread pool; every
// element-wise pass (x * z, x^2, the clipped exp, bias, sqrt, the noise and the sample) is
// fused into as few threaded passes as possible, with eps generated chunk by chunk.
#define EIGEN_USE_THREADS

#include <cmath>

#include "cpu_noise.h"
#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_types.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace mnf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::TTypes;
using CPUDevice = Eigen::ThreadPoolDevice;
using Index = Eigen::DenseIndex;
using Dims = Eigen::array<Eigen::IndexPair<Index>, 1>;

constexpr Dims kAB = {Eigen::IndexPair<Index>(1, 0)};   // A B
constexpr Dims kABt = {Eigen::IndexPair<Index>(1, 1)};  // A B^T
constexpr Dims kAtB = {Eigen::IndexPair<Index>(0, 0)};  // A^T B

// Runs fn(first, count) over [0, n) in kChunk pieces on the thread pool.
template <typename Fn>
void ParallelChunks(const CPUDevice& d, int64_t n, double cycles_per_element, Fn fn) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  d.parallelFor(chunks, Eigen::TensorOpCost(0, 0, cycles_per_element * kChunk),
                [&](Index begin, Index end) {
                  for (Index c = begin; c < end; ++c) {
                    const int64_t first = c * kChunk;
                    fn(first, std::min<int64_t>(kChunk, n - first));
                  }
                });
}

// The inputs shared by the forward and backward kernels, validated.
struct DenseInputs {
  Tensor x, z, kernel_mean, kernel_log_std, bias_mean, bias_log_var;
  NormalStream stream;
  int64_t batch = 0, in = 0, out = 0;

  tensorflow::Status Read(OpKernelContext* ctx, int first) {
    x = ctx->input(first);
    z = ctx->input(first + 1);
    kernel_mean = ctx->input(first + 2);
    kernel_log_std = ctx->input(first + 3);
    bias_mean = ctx->input(first + 4);
    bias_log_var = ctx->input(first + 5);
    if (x.dims() != 2) {
      return tensorflow::errors::InvalidArgument("x must be rank 2 [batch, in_features], got ",
                                                 x.shape().DebugString());
    }
    if (kernel_mean.dims() != 2) {
      return tensorflow::errors::InvalidArgument(
          "kernel_mean must be rank 2 [in_features, out_features], got ",
          kernel_mean.shape().DebugString());
    }
    batch = x.dim_size(0);
    in = x.dim_size(1);
    out = kernel_mean.dim_size(1);
    TF_RETURN_IF_ERROR(CheckShape("z", z, x.shape()));
    TF_RETURN_IF_ERROR(CheckShape("kernel_mean", kernel_mean, TensorShape({in, out})));
    TF_RETURN_IF_ERROR(CheckShape("kernel_log_std", kernel_log_std, kernel_mean.shape()));
    TF_RETURN_IF_ERROR(CheckShape("bias_mean", bias_mean, TensorShape({out})));
    TF_RETURN_IF_ERROR(CheckShape("bias_log_var", bias_log_var, TensorShape({out})));
    return StreamFromSeedTensor(ctx->input(first + 6), &stream);
  }
};

// sigma^2 = exp(2 min(log_std, log max_std)) into a [K, N] temporary.
template <typename T>
tensorflow::Status ClippedVariance(OpKernelContext* ctx, const Tensor& log_std, T log_max,
                                   Tensor* sigma_sq) {
  TF_RETURN_IF_ERROR(
      ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, log_std.shape(), sigma_sq));
  const CPUDevice& d = ctx->eigen_device<CPUDevice>();
  sigma_sq->flat<T>().device(d) = (log_std.flat<T>().cwiseMin(log_max) * T(2)).exp();
  return tensorflow::OkStatus();
}

// x * z and x^2 into two [B, K] temporaries, reading x once.
template <typename T>
tensorflow::Status ScaledInputs(OpKernelContext* ctx, const Tensor& x, const Tensor& z,
                                Tensor* xz, Tensor* x_sq) {
  const auto dtype = tensorflow::DataTypeToEnum<T>::value;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(dtype, x.shape(), xz));
  TF_RETURN_IF_ERROR(ctx->allocate_temp(dtype, x.shape(), x_sq));
  const T* xp = x.flat<T>().data();
  const T* zp = z.flat<T>().data();
  T* xzp = xz->flat<T>().data();
  T* x2p = x_sq->flat<T>().data();
  ParallelChunks(ctx->eigen_device<CPUDevice>(), x.NumElements(), 2,
                 [&](int64_t first, int64_t count) {
                   for (int64_t i = first; i < first + count; ++i) {
                     xzp[i] = xp[i] * zp[i];
                     x2p[i] = xp[i] * xp[i];
                   }
                 });
  return tensorflow::OkStatus();
}

// sigma_b^2 = exp(min(bias_log_var, 2 log max_std)) for the N outputs.
template <typename T>
Eigen::Array<T, Eigen::Dynamic, 1> BiasVariance(const Tensor& bias_log_var, T two_log_max) {
  const auto blv = bias_log_var.flat<T>();
  Eigen::Array<T, Eigen::Dynamic, 1> bv(blv.size());
  for (Index j = 0; j < blv.size(); ++j) bv(j) = ClippedBiasVar<T>(blv(j), two_log_max);
  return bv;
}

template <typename T>
class DenseLocalReparamOp : public OpKernel {
 public:
  explicit DenseLocalReparamOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float max_std;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_std", &max_std));
    OP_REQUIRES(ctx, max_std > 0,
                tensorflow::errors::InvalidArgument("max_std must be > 0, got ", max_std));
    log_max_ = static_cast<T>(std::log(static_cast<double>(max_std)));
  }

  void Compute(OpKernelContext* ctx) override {
    DenseInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    const TensorShape out_shape({in.batch, in.out});
    Tensor* out = nullptr;
    Tensor* stddev = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, out_shape, &stddev));
    if (out_shape.num_elements() == 0) return;
    const CPUDevice& d = ctx->eigen_device<CPUDevice>();
    auto mu = out->matrix<T>();
    auto var = stddev->matrix<T>();
    if (in.in == 0) {
      mu.setZero();
      var.setZero();
    } else {
      Tensor xz, x_sq, sigma_sq;
      OP_REQUIRES_OK(ctx, ScaledInputs<T>(ctx, in.x, in.z, &xz, &x_sq));
      OP_REQUIRES_OK(ctx, ClippedVariance<T>(ctx, in.kernel_log_std, log_max_, &sigma_sq));
      mu.device(d) = xz.matrix<T>().contract(in.kernel_mean.matrix<T>(), kAB);
      var.device(d) = x_sq.matrix<T>().contract(sigma_sq.matrix<T>(), kAB);
    }
    // out = (x z) M + b + sqrt(x^2 sigma^2 + sigma_b^2) eps (Algorithm 1).
    const auto bv = BiasVariance<T>(in.bias_log_var, T(2) * log_max_);
    const T* b = in.bias_mean.flat<T>().data();
    T* mu_p = mu.data();
    T* var_p = var.data();
    const int64_t n = in.out;
    ParallelChunks(d, out_shape.num_elements(), 60, [&](int64_t first, int64_t count) {
      alignas(64) T eps[kChunk];
      FillNormal<T>(in.stream, first, count, eps);
      int64_t j = first % n;
      for (int64_t k = 0; k < count; ++k, ++j) {
        if (j == n) j = 0;
        const int64_t i = first + k;
        const T std = std::sqrt(var_p[i] + bv(j));
        var_p[i] = std;
        mu_p[i] = Sample<T>(mu_p[i] + b[j], std, eps[k]);
      }
    });
  }

 private:
  T log_max_;
};

template <typename T>
class DenseLocalReparamGradOp : public OpKernel {
 public:
  explicit DenseLocalReparamGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    float max_std;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_std", &max_std));
    OP_REQUIRES(ctx, max_std > 0,
                tensorflow::errors::InvalidArgument("max_std must be > 0, got ", max_std));
    log_max_ = static_cast<T>(std::log(static_cast<double>(max_std)));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& grad = ctx->input(0);
    DenseInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 1));
    const Tensor& stddev = ctx->input(8);
    const TensorShape out_shape({in.batch, in.out});
    OP_REQUIRES_OK(ctx, CheckShape("grad", grad, out_shape));
    OP_REQUIRES_OK(ctx, CheckShape("stddev", stddev, out_shape));
    Tensor *dx, *dz, *dm, *dls, *dbm, *dblv;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &dz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, in.kernel_mean.shape(), &dm));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, in.kernel_mean.shape(), &dls));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, in.bias_mean.shape(), &dbm));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, in.bias_mean.shape(), &dblv));
    const CPUDevice& d = ctx->eigen_device<CPUDevice>();
    if (in.batch == 0 || in.out == 0) {
      dx->flat<T>().device(d) = dx->flat<T>().constant(T(0));
      dz->flat<T>().device(d) = dz->flat<T>().constant(T(0));
      dm->flat<T>().device(d) = dm->flat<T>().constant(T(0));
      dls->flat<T>().device(d) = dls->flat<T>().constant(T(0));
      dbm->flat<T>().device(d) = dbm->flat<T>().constant(T(0));
      dblv->flat<T>().device(d) = dblv->flat<T>().constant(T(0));
      return;
    }
    // d out / d var = g eps / (2 std), eps regenerated from the seed.
    Tensor grad_var;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, out_shape,
                                           &grad_var));
    const T* g = grad.flat<T>().data();
    const T* std_p = stddev.flat<T>().data();
    T* gv = grad_var.flat<T>().data();
    ParallelChunks(d, out_shape.num_elements(), 60, [&](int64_t first, int64_t count) {
      alignas(64) T eps[kChunk];
      FillNormal<T>(in.stream, first, count, eps);
      for (int64_t k = 0; k < count; ++k) {
        gv[first + k] = VarGrad<T>(g[first + k], std_p[first + k], eps[k]);
      }
    });
    const Eigen::array<Index, 1> rows = {0};
    dbm->flat<T>().device(d) = grad.matrix<T>().sum(rows);
    const auto bv = BiasVariance<T>(in.bias_log_var, T(2) * log_max_);
    const auto blv = in.bias_log_var.flat<T>();
    auto dblv_v = dblv->flat<T>();
    dblv_v.device(d) = grad_var.matrix<T>().sum(rows);
    for (int64_t j = 0; j < in.out; ++j) {
      dblv_v(j) *= bv(j) * ClipMask<T>(blv(j), T(2) * log_max_);
    }
    if (in.in == 0) return;

    Tensor sigma_sq, xz, x_sq, grad_xz, grad_xsq;
    OP_REQUIRES_OK(ctx, ClippedVariance<T>(ctx, in.kernel_log_std, log_max_, &sigma_sq));
    OP_REQUIRES_OK(ctx, ScaledInputs<T>(ctx, in.x, in.z, &xz, &x_sq));
    const auto dtype = tensorflow::DataTypeToEnum<T>::value;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dtype, in.x.shape(), &grad_xz));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(dtype, in.x.shape(), &grad_xsq));
    // Products of the chain rule through mu = (x z) M and var = x^2 sigma^2.
    grad_xz.matrix<T>().device(d) = grad.matrix<T>().contract(in.kernel_mean.matrix<T>(), kABt);
    grad_xsq.matrix<T>().device(d) = grad_var.matrix<T>().contract(sigma_sq.matrix<T>(), kABt);
    dm->matrix<T>().device(d) = xz.matrix<T>().contract(grad.matrix<T>(), kAtB);
    dls->matrix<T>().device(d) = x_sq.matrix<T>().contract(grad_var.matrix<T>(), kAtB);
    // dx = (g M^T) z + 2 x (g_var sigma^2^T); dz = (g M^T) x.
    const auto x = in.x.flat<T>();
    const auto z = in.z.flat<T>();
    const auto gxz = grad_xz.flat<T>();
    dx->flat<T>().device(d) = gxz * z + T(2) * x * grad_xsq.flat<T>();
    dz->flat<T>().device(d) = gxz * x;
    // d log_std = d sigma^2 * 2 sigma^2, zero above the clip.
    const auto ls = in.kernel_log_std.flat<T>();
    auto dls_v = dls->flat<T>();
    dls_v.device(d) =
        (ls <= ls.constant(log_max_)).select(dls_v * sigma_sq.flat<T>() * T(2), ls.constant(T(0)));
  }

 private:
  T log_max_;
};

#define REGISTER_DENSE_CPU(T)                                                             \
  REGISTER_KERNEL_BUILDER(                                                                \
      Name("MnfDenseLocalReparam").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
      DenseLocalReparamOp<T>);                                                            \
  REGISTER_KERNEL_BUILDER(Name("MnfDenseLocalReparamGrad")                                \
                              .Device(tensorflow::DEVICE_CPU)                             \
                              .TypeConstraint<T>("T"),                                    \
                          DenseLocalReparamGradOp<T>);

REGISTER_DENSE_CPU(float);
REGISTER_DENSE_CPU(double);

}  // namespace
}  // namespace mnf
