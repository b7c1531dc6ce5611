// CPU kernels of MnfConv2DMeanVariance and its two gradients (float32, float64): the two
// convolutions of an MNF conv layer's local reparameterization, mean = conv(x, M) and
// variance = conv(x^2, sigma^2) (Louizos & Welling 2017, Algorithm 1), NHWC input, HWIO
// kernels. Each example's patches P_b [positions, depth] are gathered once (im2col) into a
// packed GEMM operand (cpu_gemm.h) and squared in one pass for the x^2 products:
//   forward:      mean_b = P_b M,  variance_b = P_b^2 S;
//   kernel grads: d M = sum_b P_b^T g_mean_b,  d S = sum_b (P_b^2)^T g_variance_b;
//   input grad:   d x_b = col2im(g_mean_b M^T) + 2 x_b col2im(g_variance_b S^T).
// The forward products and the kernel gradients run transposed (mean_b^T = M^T P_b^T,
// d M^T = sum_b g_mean_b^T P_b), so that the output channels are the GEMM's rows.
// MnfConv2DLocalReparam adds the biases and samples each example's outputs (the epilogue of
// conv_epilogue_cpu.h) right after its two products.
// The kernel gradients sum the batch in a fixed number of chunks, added in order, so the
// result does not depend on the thread pool's scheduling.
#define EIGEN_USE_THREADS

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "conv2d_attrs.h"
#include "conv_epilogue_cpu.h"
#include "cpu_gemm.h"
#include "cpu_kernel_utils.h"
#include "op_utils.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace mnf {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Status;
using tensorflow::Tensor;
using tensorflow::TensorShape;

constexpr int64_t kKernelGradChunks = 16;

// The sizes of one call: x [B, H, W, C], kernels [KH, KW, C, N], outputs [B, OH, OW, N].
struct Conv2DGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, in_c = 0, k_h = 0, k_w = 0, out_c = 0;
  int64_t out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  Conv2DAttrs attrs;

  Status Init(const Conv2DAttrs& a, const Tensor& x, int64_t kh, int64_t kw, int64_t n) {
    attrs = a;
    if (x.dims() != 4) {
      return tensorflow::errors::InvalidArgument("x must be rank 4 [batch, height, width, "
                                                 "channels], got ",
                                                 x.shape().DebugString());
    }
    batch = x.dim_size(0);
    in_h = x.dim_size(1);
    in_w = x.dim_size(2);
    in_c = x.dim_size(3);
    k_h = kh;
    k_w = kw;
    out_c = n;
    WindowedSize(in_h, k_h, a.stride_h, a.dilation_h, a.same, &out_h, &pad_top);
    WindowedSize(in_w, k_w, a.stride_w, a.dilation_w, a.same, &out_w, &pad_left);
    return tensorflow::OkStatus();
  }

  Status InitFromKernel(const Conv2DAttrs& a, const Tensor& x, const Tensor& kernel) {
    if (kernel.dims() != 4) {
      return tensorflow::errors::InvalidArgument(
          "kernel_mean must be rank 4 [height, width, in_channels, out_channels], got ",
          kernel.shape().DebugString());
    }
    TF_RETURN_IF_ERROR(Init(a, x, kernel.dim_size(0), kernel.dim_size(1), kernel.dim_size(3)));
    if (kernel.dim_size(2) != in_c) {
      return tensorflow::errors::InvalidArgument("kernel_mean must have in_channels ", in_c,
                                                 " of x, got shape ",
                                                 kernel.shape().DebugString());
    }
    return tensorflow::OkStatus();
  }

  int64_t rows() const { return out_h * out_w; }             // patches per example
  int64_t depth() const { return k_h * k_w * in_c; }         // entries per patch
  int64_t in_size() const { return in_h * in_w * in_c; }     // x per example
  int64_t out_size() const { return rows() * out_c; }        // outputs per example
  TensorShape out_shape() const { return TensorShape({batch, out_h, out_w, out_c}); }
  double cycles_per_example() const {
    return 0.3 * static_cast<double>(rows()) * depth() * out_c + 4.0 * rows() * depth();
  }

  // Calls fn(patch row, patch column of the first channel, x offset of the first channel)
  // for every in-bounds (output position, kernel tap); out-of-bounds taps are zero padding.
  template <typename Fn>
  void ForEachTap(Fn fn) const {
    for (int64_t oh = 0; oh < out_h; ++oh) {
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t row = oh * out_w + ow;
        for (int64_t kh = 0; kh < k_h; ++kh) {
          const int64_t ih = oh * attrs.stride_h - pad_top + kh * attrs.dilation_h;
          if (ih < 0 || ih >= in_h) continue;
          for (int64_t kw = 0; kw < k_w; ++kw) {
            const int64_t iw = ow * attrs.stride_w - pad_left + kw * attrs.dilation_w;
            if (iw < 0 || iw >= in_w) continue;
            fn(row, (kh * k_w + kw) * in_c, (ih * in_w + iw) * in_c);
          }
        }
      }
    }
  }
};

// Whether every tap of the output position with top-left input pixel (top, left) falls
// inside the input (no padding to fill).
inline bool Interior(const Conv2DGeometry& g, int64_t top, int64_t left) {
  return top >= 0 && left >= 0 && top + (g.k_h - 1) * g.attrs.dilation_h < g.in_h &&
         left + (g.k_w - 1) * g.attrs.dilation_w < g.in_w;
}

// Packs the patches of one example x_b [H, W, C] as the forward pass's GEMM operand B
// (cpu_gemm.h): the transposed patch matrix P^T [depth, rows] (im2col), in panels of kPanel
// output positions, zero where a tap falls on the padding. Each panel is written in order;
// a panel whose taps all fall inside the input is copied without bounds checks.
template <typename T, int kPanel>
void PackPatchPanels(const Conv2DGeometry& g, const T* x_b, T* packed) {
  const int64_t rows = g.rows(), depth = g.depth(), c_in = g.in_c;
  for (int64_t t = 0; t < gemm::Tiles(rows, kPanel); ++t) {
    const int valid_rows = static_cast<int>(std::min<int64_t>(kPanel, rows - t * kPanel));
    int64_t top[kPanel], left[kPanel];
    bool interior = valid_rows == kPanel;
    for (int i = 0; i < kPanel; ++i) {
      const int64_t row = std::min(t * kPanel + i, rows - 1);
      top[i] = row / g.out_w * g.attrs.stride_h - g.pad_top;
      left[i] = row % g.out_w * g.attrs.stride_w - g.pad_left;
      interior = interior && Interior(g, top[i], left[i]);
    }
    T* panel = packed + t * depth * kPanel;
    if (interior) {
      const T* base[kPanel];
      for (int i = 0; i < kPanel; ++i) base[i] = x_b + (top[i] * g.in_w + left[i]) * c_in;
      for (int64_t kh = 0; kh < g.k_h; ++kh) {
        for (int64_t kw = 0; kw < g.k_w; ++kw) {
          const int64_t off = (kh * g.attrs.dilation_h * g.in_w + kw * g.attrs.dilation_w) * c_in;
          T* dst = panel + (kh * g.k_w + kw) * c_in * kPanel;
          for (int64_t c = 0; c < c_in; ++c) {
#pragma GCC unroll 16
            for (int i = 0; i < kPanel; ++i) dst[c * kPanel + i] = base[i][off + c];
          }
        }
      }
      continue;
    }
    for (int64_t kh = 0; kh < g.k_h; ++kh) {
      for (int64_t kw = 0; kw < g.k_w; ++kw) {
        T* dst = panel + (kh * g.k_w + kw) * c_in * kPanel;
        for (int i = 0; i < valid_rows; ++i) {
          const int64_t ih = top[i] + kh * g.attrs.dilation_h;
          const int64_t iw = left[i] + kw * g.attrs.dilation_w;
          const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
          const T* src = x_b + (ih * g.in_w + iw) * c_in;
          for (int64_t c = 0; c < c_in; ++c) dst[c * kPanel + i] = inside ? src[c] : T(0);
        }
      }
    }
  }
}

// Packs the patch matrix P [rows, depth] of one example as the kernel gradients' GEMM
// operand B: element (row, d) at row * row_stride + depth_offsets[d] (gemm::OffsetB), zero
// where a tap falls on the padding; entries the layout pads are left as they are (zero).
template <typename T>
void PackPatchColumns(const Conv2DGeometry& g, const T* x_b, int64_t row_stride,
                      const int64_t* depth_offsets, T* packed) {
  const int64_t c_in = g.in_c;
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const int64_t top = oh * g.attrs.stride_h - g.pad_top;
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const int64_t left = ow * g.attrs.stride_w - g.pad_left;
      T* dst = packed + (oh * g.out_w + ow) * row_stride;
      if (Interior(g, top, left)) {
        const T* base = x_b + (top * g.in_w + left) * c_in;
        for (int64_t kh = 0; kh < g.k_h; ++kh) {
          for (int64_t kw = 0; kw < g.k_w; ++kw) {
            const T* src =
                base + (kh * g.attrs.dilation_h * g.in_w + kw * g.attrs.dilation_w) * c_in;
            const int64_t* offsets = depth_offsets + (kh * g.k_w + kw) * c_in;
            for (int64_t c = 0; c < c_in; ++c) dst[offsets[c]] = src[c];
          }
        }
        continue;
      }
      for (int64_t kh = 0; kh < g.k_h; ++kh) {
        const int64_t ih = top + kh * g.attrs.dilation_h;
        for (int64_t kw = 0; kw < g.k_w; ++kw) {
          const int64_t iw = left + kw * g.attrs.dilation_w;
          const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
          const T* src = x_b + (ih * g.in_w + iw) * c_in;
          const int64_t* offsets = depth_offsets + (kh * g.k_w + kw) * c_in;
          for (int64_t c = 0; c < c_in; ++c) dst[offsets[c]] = inside ? src[c] : T(0);
        }
      }
    }
  }
}

// dst [cols, rows] = src [rows, cols] transposed; dst is written in order (src has few rows,
// whose lines stay in cache).
template <typename T>
void Transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) dst[c * rows + r] = src[r * cols + c];
  }
}

// squared[i] = packed[i]^2 over a packed operand (the x^2 patches of the variance
// convolution; one vectorized pass).
template <typename T>
void Square(const T* packed, int64_t size, T* squared) {
  for (int64_t i = 0; i < size; ++i) squared[i] = packed[i] * packed[i];
}

// dx_b [H, W, C] += the patch gradients of both products summed onto their pixels (col2im):
// d x = g_mean-patches + 2 x g_variance-patches, the x^2 product's chain rule per tap.
template <typename T>
void ScatterPatchPair(const Conv2DGeometry& g, const T* mean_patches, const T* var_patches,
                      const T* x_b, T* dx_b) {
  const int64_t depth = g.depth();
  g.ForEachTap([&](int64_t row, int64_t col, int64_t x_off) {
    const T* mean_src = mean_patches + row * depth + col;
    const T* var_src = var_patches + row * depth + col;
    const T* x_src = x_b + x_off;
    T* dst = dx_b + x_off;
    for (int64_t c = 0; c < g.in_c; ++c) dst[c] += mean_src[c] + T(2) * x_src[c] * var_src[c];
  });
}

// mean = conv(x, M) and variance = conv(x^2, S) of every example, split over the pool; after
// example b's two products, calls after_example(b) (with its outputs still in cache). The
// products run transposed, mean_b^T = M^T P_b^T: the output channels, few and rarely a
// multiple of the micro-kernel's width, are the GEMM's rows, whose tile is narrower.
template <typename T, typename Fn>
void ConvolvePair(OpKernelContext* ctx, const Conv2DGeometry& g, const T* x,
                  const T* kernel_mean, const T* kernel_variance, T* mean, T* variance,
                  double extra_cycles, Fn after_example) {
  const int64_t rows = g.rows(), depth = g.depth(), n = g.out_c;
  const int64_t a_size = gemm::PackedSizeA<T>(n, depth);
  std::vector<T> kernels(2 * a_size);
  gemm::PackA<T>(n, depth, kernel_mean, n, true, kernels.data());
  gemm::PackA<T>(n, depth, kernel_variance, n, true, kernels.data() + a_size);
  const double cycles = g.cycles_per_example() + extra_cycles;
  ParallelRange(ctx, g.batch, cycles, [&](int64_t begin, int64_t end) {
    const int64_t size = gemm::PackedSizeB<T>(depth, rows);
    std::vector<T> patches(2 * size);  // the zero padding of the last panel stays zero
    std::vector<T> product(n * rows);
    for (int64_t b = begin; b < end; ++b) {
      PackPatchPanels<T, gemm::kTileCols<T>>(g, x + b * g.in_size(), patches.data());
      Square(patches.data(), size, patches.data() + size);
      gemm::MultiplyPacked<T>(n, rows, depth, kernels.data(), patches.data(), product.data(),
                              rows, false);
      Transpose(product.data(), n, rows, mean + b * g.out_size());
      gemm::MultiplyPacked<T>(n, rows, depth, kernels.data() + a_size, patches.data() + size,
                              product.data(), rows, false);
      Transpose(product.data(), n, rows, variance + b * g.out_size());
      after_example(b);
    }
  });
}

// The validated (x, kernel_mean, kernel_variance) inputs and the outputs' geometry.
Status ReadConvolvePairInputs(OpKernelContext* ctx, const Conv2DAttrs& attrs,
                              Conv2DGeometry* g) {
  TF_RETURN_IF_ERROR(g->InitFromKernel(attrs, ctx->input(0), ctx->input(1)));
  return CheckShape("kernel_variance", ctx->input(2), ctx->input(1).shape());
}

// (x, kernel_mean, kernel_variance) -> (mean = conv(x, M), variance = conv(x^2, S)).
template <typename T>
class Conv2DMeanVarianceOp : public OpKernel {
 public:
  explicit Conv2DMeanVarianceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Read(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, ReadConvolvePairInputs(ctx, attrs_, &g));
    Tensor *mean, *variance;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, g.out_shape(), &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, g.out_shape(), &variance));
    if (mean->NumElements() == 0) return;
    ConvolvePair(ctx, g, ctx->input(0).flat<T>().data(), ctx->input(1).flat<T>().data(),
                 ctx->input(2).flat<T>().data(), mean->flat<T>().data(),
                 variance->flat<T>().data(), 0.0, [](int64_t) {});
  }

 private:
  Conv2DAttrs attrs_;
};

// (x, kernel_mean, kernel_variance, bias_mean, bias_variance, z, seed) ->
// (output = mean * z[b, c] + sqrt(variance) * eps, mean = conv(x, M) + bias_mean,
//  variance = conv(x^2, S) + bias_variance): the whole sampling step of a conv layer, each
// example's epilogue run while its products are in cache; eps is the stream of
// MnfConvLocalReparamEpilogue, whose gradient op takes (mean, variance) from here.
template <typename T>
class Conv2DLocalReparamOp : public OpKernel {
 public:
  explicit Conv2DLocalReparamOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Read(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, ReadConvolvePairInputs(ctx, attrs_, &g));
    const TensorShape channels({g.out_c});
    OP_REQUIRES_OK(ctx, CheckShape("bias_mean", ctx->input(3), channels));
    OP_REQUIRES_OK(ctx, CheckShape("bias_variance", ctx->input(4), channels));
    OP_REQUIRES_OK(ctx, CheckShape("z", ctx->input(5), TensorShape({g.batch, g.out_c})));
    NormalStream stream;
    OP_REQUIRES_OK(ctx, StreamFromSeedTensor(ctx->input(6), &stream));
    Tensor *out, *mean, *variance;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, g.out_shape(), &out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, g.out_shape(), &mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, g.out_shape(), &variance));
    if (out->NumElements() == 0) return;
    const T* bias_mean = ctx->input(3).flat<T>().data();
    const T* bias_variance = ctx->input(4).flat<T>().data();
    const T* z = ctx->input(5).flat<T>().data();
    T* out_p = out->flat<T>().data();
    T* mean_p = mean->flat<T>().data();
    T* var_p = variance->flat<T>().data();
    const int64_t per_example = g.out_size(), n = g.out_c;
    ConvolvePair(ctx, g, ctx->input(0).flat<T>().data(), ctx->input(1).flat<T>().data(),
                 ctx->input(2).flat<T>().data(), mean_p, var_p, 16.0 * per_example,
                 [&](int64_t b) {
                   const int64_t first = b * per_example;
                   T* mean_b = mean_p + first;
                   T* var_b = var_p + first;
                   for (int64_t r = 0; r < g.rows(); ++r) {
                     VectorMap<T>(mean_b + r * n, n) += ConstVectorMap<T>(bias_mean, n);
                     VectorMap<T>(var_b + r * n, n) += ConstVectorMap<T>(bias_variance, n);
                   }
                   SampleExample(stream, first, per_example, n, mean_b, var_b, z + b * n,
                                 out_p + first);
                 });
  }

 private:
  Conv2DAttrs attrs_;
};

// (x, grad_mean, grad_variance) -> (d kernel_mean, d kernel_variance).
template <typename T>
class Conv2DMeanVarianceKernelGradOp : public OpKernel {
 public:
  explicit Conv2DMeanVarianceKernelGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Read(ctx));
    std::vector<int32_t> size;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &size));
    OP_REQUIRES(ctx, size.size() == 2 && size[0] >= 1 && size[1] >= 1,
                tensorflow::errors::InvalidArgument(
                    "kernel_size must be [height, width] with positive entries"));
    k_h_ = size[0];
    k_w_ = size[1];
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& grad_mean = ctx->input(1);
    const Tensor& grad_variance = ctx->input(2);
    OP_REQUIRES(ctx, grad_mean.dims() == 4,
                tensorflow::errors::InvalidArgument(
                    "grad_mean must be rank 4 [batch, out_height, out_width, out_channels], got ",
                    grad_mean.shape().DebugString()));
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, g.Init(attrs_, x, k_h_, k_w_, grad_mean.dim_size(3)));
    OP_REQUIRES_OK(ctx, CheckShape("grad_mean", grad_mean, g.out_shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_variance", grad_variance, g.out_shape()));
    const TensorShape kernel_shape({k_h_, k_w_, g.in_c, g.out_c});
    Tensor *d_mean, *d_variance;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, kernel_shape, &d_mean));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, kernel_shape, &d_variance));
    const int64_t rows = g.rows(), depth = g.depth(), n = g.out_c, size = depth * n;
    T* dm = d_mean->flat<T>().data();
    T* ds = d_variance->flat<T>().data();
    if (size == 0 || g.batch * rows == 0) {
      std::fill(dm, dm + size, T(0));
      std::fill(ds, ds + size, T(0));
      return;
    }
    const T* xp = x.flat<T>().data();
    const T* gm = grad_mean.flat<T>().data();
    const T* gv = grad_variance.flat<T>().data();
    const int64_t chunks = std::min(g.batch, kKernelGradChunks);
    std::vector<T> partial(static_cast<size_t>(chunks * 2 * size));
    const double cycles = g.cycles_per_example() * g.batch / chunks;
    std::vector<int64_t> depth_offsets(depth);
    for (int64_t d = 0; d < depth; ++d) depth_offsets[d] = gemm::OffsetB<T>(0, d, rows);
    // The chunks' partial sums, transposed: d M^T = sum_b g_mean_b^T P_b (the output
    // channels are the GEMM's rows, as in the forward pass).
    ParallelRange(ctx, chunks, cycles, [&](int64_t begin, int64_t end) {
      const int64_t a_size = gemm::PackedSizeA<T>(n, rows);
      const int64_t b_size = gemm::PackedSizeB<T>(rows, depth);
      std::vector<T> grads(a_size), patches(2 * b_size);  // padding entries stay zero
      for (int64_t chunk = begin; chunk < end; ++chunk) {
        T* pm = partial.data() + chunk * 2 * size;
        T* ps = pm + size;
        const int64_t first = chunk * g.batch / chunks, last = (chunk + 1) * g.batch / chunks;
        for (int64_t b = first; b < last; ++b) {
          PackPatchColumns(g, xp + b * g.in_size(), gemm::kTileCols<T>, depth_offsets.data(),
                           patches.data());
          Square(patches.data(), b_size, patches.data() + b_size);
          gemm::PackA<T>(n, rows, gm + b * g.out_size(), n, true, grads.data());
          gemm::MultiplyPacked<T>(n, depth, rows, grads.data(), patches.data(), pm, depth,
                                  b > first);
          gemm::PackA<T>(n, rows, gv + b * g.out_size(), n, true, grads.data());
          gemm::MultiplyPacked<T>(n, depth, rows, grads.data(), patches.data() + b_size, ps,
                                  depth, b > first);
        }
      }
    });
    std::vector<T> totals(2 * size, T(0));
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const T* pm = partial.data() + chunk * 2 * size;
      for (int64_t i = 0; i < 2 * size; ++i) totals[i] += pm[i];
    }
    Transpose(totals.data(), n, depth, dm);
    Transpose(totals.data() + size, n, depth, ds);
  }

 private:
  Conv2DAttrs attrs_;
  int64_t k_h_ = 1, k_w_ = 1;
};

// (x, kernel_mean, kernel_variance, grad_mean, grad_variance) -> d x.
template <typename T>
class Conv2DMeanVarianceInputGradOp : public OpKernel {
 public:
  explicit Conv2DMeanVarianceInputGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, attrs_.Read(ctx));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& kernel_mean = ctx->input(1);
    const Tensor& kernel_variance = ctx->input(2);
    const Tensor& grad_mean = ctx->input(3);
    const Tensor& grad_variance = ctx->input(4);
    Conv2DGeometry g;
    OP_REQUIRES_OK(ctx, ReadConvolvePairInputs(ctx, attrs_, &g));
    OP_REQUIRES_OK(ctx, CheckShape("grad_mean", grad_mean, g.out_shape()));
    OP_REQUIRES_OK(ctx, CheckShape("grad_variance", grad_variance, g.out_shape()));
    Tensor* dx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
    T* dxp = dx->flat<T>().data();
    std::fill(dxp, dxp + dx->NumElements(), T(0));
    if (dx->NumElements() == 0 || g.rows() * g.out_c == 0) return;
    const T* xp = x.flat<T>().data();
    const T* gm = grad_mean.flat<T>().data();
    const T* gv = grad_variance.flat<T>().data();
    const int64_t rows = g.rows(), depth = g.depth(), n = g.out_c, in_size = g.in_size();
    // B = M^T [n, depth]: the [depth, n] kernels read transposed.
    const int64_t b_size = gemm::PackedSizeB<T>(n, depth);
    std::vector<T> kernels(2 * b_size);
    gemm::PackB<T>(n, depth, kernel_mean.flat<T>().data(), n, true, kernels.data());
    gemm::PackB<T>(n, depth, kernel_variance.flat<T>().data(), n, true, kernels.data() + b_size);
    ParallelRange(ctx, g.batch, g.cycles_per_example(), [&](int64_t begin, int64_t end) {
      std::vector<T> grads(gemm::PackedSizeA<T>(rows, n)), mean_patches(rows * depth),
          var_patches(rows * depth);
      for (int64_t b = begin; b < end; ++b) {
        gemm::PackA<T>(rows, n, gm + b * g.out_size(), n, false, grads.data());
        gemm::MultiplyPacked<T>(rows, depth, n, grads.data(), kernels.data(),
                                mean_patches.data(), depth, false);
        gemm::PackA<T>(rows, n, gv + b * g.out_size(), n, false, grads.data());
        gemm::MultiplyPacked<T>(rows, depth, n, grads.data(), kernels.data() + b_size,
                                var_patches.data(), depth, false);
        ScatterPatchPair(g, mean_patches.data(), var_patches.data(), xp + b * in_size,
                         dxp + b * in_size);
      }
    });
  }

 private:
  Conv2DAttrs attrs_;
};

#define REGISTER_CONV2D_CPU(T)                                                              \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("MnfConv2DMeanVariance").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),  \
      Conv2DMeanVarianceOp<T>);                                                             \
  REGISTER_KERNEL_BUILDER(                                                                  \
      Name("MnfConv2DLocalReparam").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),  \
      Conv2DLocalReparamOp<T>);                                                             \
  REGISTER_KERNEL_BUILDER(Name("MnfConv2DMeanVarianceKernelGrad")                           \
                              .Device(tensorflow::DEVICE_CPU)                               \
                              .TypeConstraint<T>("T"),                                      \
                          Conv2DMeanVarianceKernelGradOp<T>);                               \
  REGISTER_KERNEL_BUILDER(Name("MnfConv2DMeanVarianceInputGrad")                            \
                              .Device(tensorflow::DEVICE_CPU)                               \
                              .TypeConstraint<T>("T"),                                      \
                          Conv2DMeanVarianceInputGradOp<T>);

REGISTER_CONV2D_CPU(float);
REGISTER_CONV2D_CPU(double);

}  // namespace
}  // namespace mnf
