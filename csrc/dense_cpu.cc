// CPU kernels (float32, float64) of the element-wise dense ops around the two tf.matmul of
// the dense MNF layer: MnfDenseScaledInputs, MnfClippedVariance, MnfDenseEpilogue and their
// gradients. Each is one pass, split over the thread pool when large; the epilogue generates
// eps row by row in chunks and its gradient regenerates it from the seed (Louizos & Welling
// 2017, Algorithm 1). The maths are the functions of local_reparam_math.h, written as Eigen
// packet expressions where the scalar form would not vectorize (exp, sqrt).
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cmath>

#include "cpu_noise.h"
#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace mnf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using CPUDevice = Eigen::ThreadPoolDevice;
using Index = Eigen::DenseIndex;
template <typename T>
using Vector = Eigen::Array<T, Eigen::Dynamic, 1>;
template <typename T>
using VectorMap = Eigen::Map<Vector<T>>;
template <typename T>
using ConstVectorMap = Eigen::Map<const Vector<T>>;

// Below this many estimated cycles a pass runs on the calling thread: waking pool threads
// costs more than it saves (measured on the 2-core machine, where other work competes).
constexpr double kMinParallelCycles = 4e5;

// Runs fn(begin, end) over [0, n), an item costing `cycles` (compute and memory traffic): on
// the calling thread when the pass is small, else split over the thread pool.
template <typename Fn>
void ParallelRange(OpKernelContext* ctx, int64_t n, double cycles, Fn fn) {
  if (n * cycles < kMinParallelCycles) {
    fn(0, n);
    return;
  }
  ctx->eigen_device<CPUDevice>().parallelFor(n, Eigen::TensorOpCost(0, 0, cycles),
                                             [&](Index begin, Index end) { fn(begin, end); });
}

// Calls fn(first, j0, count, eps) for the pieces of row `row` of a [B, n] tensor, eps of flat
// elements [first, first + count) (columns [j0, j0 + count)) in a buffer.
template <typename T, typename Fn>
void ForRowPieces(const NormalStream& stream, int64_t row, int64_t n, Fn fn) {
  alignas(64) T eps[kChunk];
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    const int64_t count = std::min(kChunk, n - j0);
    const int64_t first = row * n + j0;
    FillNormal<T>(stream, first, count, eps);
    fn(first, j0, count, ConstVectorMap<T>(eps, count));
  }
}

// sigma_b^2 = exp(min(bias_log_var, 2 log max_std)) for the N outputs.
template <typename T>
Vector<T> BiasVariance(const Tensor& bias_log_var, T two_log_max) {
  const auto blv = bias_log_var.flat<T>();
  Vector<T> bv(blv.size());
  for (Index j = 0; j < blv.size(); ++j) bv(j) = ClippedBiasVar<T>(blv(j), two_log_max);
  return bv;
}

// (x, z) -> (x * z, x^2), reading x once.
template <typename T>
class DenseScaledInputsOp : public OpKernel {
 public:
  explicit DenseScaledInputsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ScaledInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 0));
    Tensor *xz, *x_sq;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &xz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &x_sq));
    const T* x = in.x.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    T* xz_p = xz->flat<T>().data();
    T* x2_p = x_sq->flat<T>().data();
    ParallelRange(ctx, in.x.NumElements(), 2, [&](int64_t begin, int64_t end) {
      const ConstVectorMap<T> x_part(x + begin, end - begin);
      VectorMap<T>(xz_p + begin, end - begin) = x_part * ConstVectorMap<T>(z + begin, end - begin);
      VectorMap<T>(x2_p + begin, end - begin) = x_part.square();
    });
  }
};

// d x = g_xz z + 2 x g_xsq, d z = g_xz x.
template <typename T>
class DenseScaledInputsGradOp : public OpKernel {
 public:
  explicit DenseScaledInputsGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    ScaledInputs in;
    OP_REQUIRES_OK(ctx, in.Read(ctx, 2));
    OP_REQUIRES_OK(ctx, CheckShape("grad_x_z", ctx->input(0), in.x.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_x_sq", ctx->input(1), in.x.shape()));
    Tensor *dx, *dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, in.x.shape(), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, in.x.shape(), &dz));
    const T* g_xz = ctx->input(0).flat<T>().data();
    const T* g_x2 = ctx->input(1).flat<T>().data();
    const T* x = in.x.flat<T>().data();
    const T* z = in.z.flat<T>().data();
    T* dx_p = dx->flat<T>().data();
    T* dz_p = dz->flat<T>().data();
    ParallelRange(ctx, in.x.NumElements(), 3, [&](int64_t begin, int64_t end) {
      const int64_t count = end - begin;
      const ConstVectorMap<T> g_xz_part(g_xz + begin, count);
      const ConstVectorMap<T> x_part(x + begin, count);
      VectorMap<T>(dx_p + begin, count) =
          g_xz_part * ConstVectorMap<T>(z + begin, count) +
          T(2) * x_part * ConstVectorMap<T>(g_x2 + begin, count);
      VectorMap<T>(dz_p + begin, count) = g_xz_part * x_part;
    });
  }
};

// log_std -> sigma^2 = exp(2 min(log_std, log max_std)) (ClippedSquare on packets).
template <typename T>
class ClippedVarianceOp : public OpKernel {
 public:
  explicit ClippedVarianceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& log_std = ctx->input(0);
    Tensor* variance = nullptr;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, log_std.shape(), &variance));
    const T* ls = log_std.flat<T>().data();
    T* v = variance->flat<T>().data();
    ParallelRange(ctx, log_std.NumElements(), 3, [&](int64_t begin, int64_t end) {
      VectorMap<T>(v + begin, end - begin) =
          (ConstVectorMap<T>(ls + begin, end - begin).min(log_max_) * T(2)).exp();
    });
  }

 private:
  T log_max_;
};

// d log_std = 2 sigma^2 g where log_std <= log max_std, else 0 (ClipMask on packets).
template <typename T>
class ClippedVarianceGradOp : public OpKernel {
 public:
  explicit ClippedVarianceGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& log_std = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckShape("grad", ctx->input(0), log_std.shape()));
    OP_REQUIRES_OK(ctx, CheckShape("variance", ctx->input(2), log_std.shape()));
    Tensor* grad_log_std = nullptr;
    OP_REQUIRES_OK(ctx,
                   ctx->forward_input_or_allocate_output({0}, 0, log_std.shape(), &grad_log_std));
    const T* g = ctx->input(0).flat<T>().data();
    const T* ls = log_std.flat<T>().data();
    const T* v = ctx->input(2).flat<T>().data();
    T* d_ls = grad_log_std->flat<T>().data();
    ParallelRange(ctx, log_std.NumElements(), 2, [&](int64_t begin, int64_t end) {
      const int64_t count = end - begin;
      const ConstVectorMap<T> g_part(g + begin, count);
      const ConstVectorMap<T> v_part(v + begin, count);
      VectorMap<T>(d_ls + begin, count) =
          (ConstVectorMap<T>(ls + begin, count) <= log_max_).select(T(2) * g_part * v_part, T(0));
    });
  }

 private:
  T log_max_;
};

// (mu, var, b, bias_log_var, seed) -> (mu + b + std eps, std), std = sqrt(var + sigma_b^2).
template <typename T>
class DenseEpilogueOp : public OpKernel {
 public:
  explicit DenseEpilogueOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    DenseEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.ReadForward(ctx));
    const TensorShape& shape = in.first.shape();
    Tensor *out, *stddev;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({0}, 0, shape, &out));
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 1, shape, &stddev));
    if (shape.num_elements() == 0) return;
    const int64_t n = in.out;
    const Vector<T> bias_var = BiasVariance<T>(in.bias_log_var, T(2) * log_max_);
    const ConstVectorMap<T> bias(in.bias_mean.flat<T>().data(), n);
    const T* mu = in.first.flat<T>().data();
    const T* var = in.second.flat<T>().data();
    T* out_p = out->flat<T>().data();
    T* std_p = stddev->flat<T>().data();
    ParallelRange(ctx, in.batch, 8.0 * n, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        ForRowPieces<T>(in.stream, row, n, [&](int64_t first, int64_t j0, int64_t count,
                                               const ConstVectorMap<T>& eps) {
          VectorMap<T> std_row(std_p + first, count);
          std_row = (ConstVectorMap<T>(var + first, count) + bias_var.segment(j0, count)).sqrt();
          // out = mu + sqrt(var) eps (Sample on packets; Algorithm 1, local reparameterization).
          VectorMap<T>(out_p + first, count) =
              ConstVectorMap<T>(mu + first, count) + bias.segment(j0, count) + std_row * eps;
        });
      }
    });
  }

 private:
  T log_max_;
};

// (g, std, bias_log_var, seed) -> (d var = g eps / (2 std), d b = sum_rows g,
// d bias_log_var = sum_rows(d var) sigma_b^2, zero above the clip); d mu = g needs no op.
template <typename T>
class DenseEpilogueGradOp : public OpKernel {
 public:
  explicit DenseEpilogueGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, LogMaxStd(ctx, &log_max_));
  }

  void Compute(OpKernelContext* ctx) override {
    DenseEpilogueInputs in;
    OP_REQUIRES_OK(ctx, in.ReadGrad(ctx));
    const int64_t n = in.out;
    Tensor *grad_var, *grad_bias, *grad_blv;
    OP_REQUIRES_OK(ctx, ctx->forward_input_or_allocate_output({1}, 0, in.first.shape(),
                                                              &grad_var));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n}), &grad_bias));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({n}), &grad_blv));
    VectorMap<T> d_bias(grad_bias->flat<T>().data(), n);
    VectorMap<T> d_blv(grad_blv->flat<T>().data(), n);
    d_bias.setZero();
    d_blv.setZero();
    if (in.batch == 0 || n == 0) return;
    // Row shards, each summing its rows' g and d var into its own [2, N] slice.
    const int64_t threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
    const int64_t shards = std::min<int64_t>(in.batch, 4 * threads);
    const int64_t rows_per_shard = (in.batch + shards - 1) / shards;
    Tensor partial;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                           TensorShape({shards, 2, n}), &partial));
    const T* g = in.first.flat<T>().data();
    const T* std_p = in.second.flat<T>().data();
    T* gv = grad_var->flat<T>().data();
    T* partial_p = partial.flat<T>().data();
    ParallelRange(ctx, shards, 9.0 * rows_per_shard * n, [&](int64_t begin, int64_t end) {
      for (int64_t shard = begin; shard < end; ++shard) {
        VectorMap<T> sum_g(partial_p + shard * 2 * n, n);
        VectorMap<T> sum_gv(partial_p + (shard * 2 + 1) * n, n);
        sum_g.setZero();
        sum_gv.setZero();
        const int64_t row_end = std::min(in.batch, (shard + 1) * rows_per_shard);
        for (int64_t row = shard * rows_per_shard; row < row_end; ++row) {
          ForRowPieces<T>(in.stream, row, n, [&](int64_t first, int64_t j0, int64_t count,
                                                 const ConstVectorMap<T>& eps) {
            const ConstVectorMap<T> g_row(g + first, count);
            VectorMap<T> gv_row(gv + first, count);
            // d out / d var = g eps / (2 std) (VarGrad on packets).
            gv_row = g_row * eps / (T(2) * ConstVectorMap<T>(std_p + first, count));
            sum_g.segment(j0, count) += g_row;
            sum_gv.segment(j0, count) += gv_row;
          });
        }
      }
    });
    for (int64_t shard = 0; shard < shards; ++shard) {
      d_bias += ConstVectorMap<T>(partial_p + shard * 2 * n, n);
      d_blv += ConstVectorMap<T>(partial_p + (shard * 2 + 1) * n, n);
    }
    // d bias_log_var = d sigma_b^2 * sigma_b^2 where bias_log_var <= 2 log max_std.
    const T two_log_max = T(2) * log_max_;
    const auto blv = in.bias_log_var.flat<T>();
    for (int64_t j = 0; j < n; ++j) {
      d_blv(j) *= ClippedBiasVar<T>(blv(j), two_log_max) * ClipMask<T>(blv(j), two_log_max);
    }
  }

 private:
  T log_max_;
};

#define REGISTER_CPU(name, Kernel, T) \
  REGISTER_KERNEL_BUILDER(            \
      Name(name).Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), Kernel<T>);

#define REGISTER_DENSE_CPU(T)                                                \
  REGISTER_CPU("MnfDenseScaledInputs", DenseScaledInputsOp, T)               \
  REGISTER_CPU("MnfDenseScaledInputsGrad", DenseScaledInputsGradOp, T)       \
  REGISTER_CPU("MnfClippedVariance", ClippedVarianceOp, T)                   \
  REGISTER_CPU("MnfClippedVarianceGrad", ClippedVarianceGradOp, T)           \
  REGISTER_CPU("MnfDenseEpilogue", DenseEpilogueOp, T)                       \
  REGISTER_CPU("MnfDenseEpilogueGrad", DenseEpilogueGradOp, T)

REGISTER_DENSE_CPU(float);
REGISTER_DENSE_CPU(double);

}  // namespace
}  // namespace mnf
