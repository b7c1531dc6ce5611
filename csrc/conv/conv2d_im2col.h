// im2col on the CPU: the patches of one example x_b [H, W, C] gathered straight into the
// packed GEMM operands of gemm_cpu.h, as the transposed patch matrix of the forward products
// (PackPatchPanels) or the patch matrix of the kernel gradients (PackPatchColumns), and the
// squared patches of the x^2 products (Square).
#ifndef TFP_MNF_CSRC_CONV_CONV2D_IM2COL_H_
#define TFP_MNF_CSRC_CONV_CONV2D_IM2COL_H_

#include <algorithm>
#include <cstdint>

#include "conv/conv2d_geometry.h"
#include "conv/gemm_cpu.h"

namespace mnf {

// Packs the patches of one example x_b [H, W, C] as the forward pass's GEMM operand B
// (gemm_cpu.h): the transposed patch matrix P^T [depth, rows] (im2col), in panels of kPanel
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

// squared[i] = packed[i]^2 over a packed operand (the x^2 patches of the variance
// convolution; one vectorized pass).
template <typename T>
void Square(const T* packed, int64_t size, T* squared) {
  for (int64_t i = 0; i < size; ++i) squared[i] = packed[i] * packed[i];
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_CONV2D_IM2COL_H_
