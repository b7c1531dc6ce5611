// col2im on the CPU: the patch gradients of one example summed back onto its pixels, the
// input gradient of both convolutions of a conv layer (conv2d_cpu.cc).
#ifndef TFP_MNF_CSRC_CONV_CONV2D_COL2IM_H_
#define TFP_MNF_CSRC_CONV_CONV2D_COL2IM_H_

#include <cstdint>

#include "conv/conv2d_geometry.h"

namespace mnf {

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

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_CONV2D_COL2IM_H_
