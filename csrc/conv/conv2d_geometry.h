// The sizes of one call of a fused 2-D conv op (Conv2DGeometry) and the walk over its
// (output position, kernel tap) pairs, shared by the device-independent OpKernels
// (conv2d_ops.h: input validation, output shapes) and the CPU functors (conv2d_cpu.cc).
#ifndef TFP_MNF_CSRC_CONV_CONV2D_GEOMETRY_H_
#define TFP_MNF_CSRC_CONV_CONV2D_GEOMETRY_H_

#include <cstdint>

#include "conv/conv2d_attrs.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/platform/status.h"

namespace mnf {

// The sizes of one call: x [B, H, W, C], kernels [KH, KW, C, N], outputs [B, OH, OW, N].
struct Conv2DGeometry {
  int64_t batch = 0, in_h = 0, in_w = 0, in_c = 0, k_h = 0, k_w = 0, out_c = 0;
  int64_t out_h = 0, out_w = 0, pad_top = 0, pad_left = 0;
  Conv2DAttrs attrs;

  // Reads x [B, H, W, C] for a [kh, kw, C, n] kernel: the sizes, output sizes and padding.
  tensorflow::Status Init(const Conv2DAttrs& a, const tensorflow::Tensor& x, int64_t kh,
                          int64_t kw, int64_t n) {
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

  // Init for x and kernel [KH, KW, C, N], checking that the kernel fits x.
  tensorflow::Status InitFromKernel(const Conv2DAttrs& a, const tensorflow::Tensor& x,
                                    const tensorflow::Tensor& kernel) {
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
  tensorflow::TensorShape out_shape() const {
    return tensorflow::TensorShape({batch, out_h, out_w, out_c});
  }
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

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_CONV2D_GEOMETRY_H_
