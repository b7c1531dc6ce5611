// The Conv2D-style attributes (strides, padding, dilations; NHWC) of the fused 2-D conv ops
// and TensorFlow's SAME / VALID output-size rule, shared by their OpKernels (conv2d_ops.h)
// and their shape functions (common/ops.cc).
#ifndef TFP_MNF_CSRC_CONV_CONV2D_ATTRS_H_
#define TFP_MNF_CSRC_CONV_CONV2D_ATTRS_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "tensorflow/core/platform/errors.h"
#include "tensorflow/core/platform/status.h"

namespace mnf {

// The strides / dilations / padding attributes, NHWC.
struct Conv2DAttrs {
  int64_t stride_h = 1, stride_w = 1, dilation_h = 1, dilation_w = 1;
  bool same = false;

  // Reads and checks the attributes from an OpKernelConstruction or a shape function's
  // InferenceContext.
  template <typename Context>
  tensorflow::Status Read(Context* ctx) {
    std::vector<int32_t> strides, dilations;
    std::string padding;
    TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &strides));
    TF_RETURN_IF_ERROR(ctx->GetAttr("dilations", &dilations));
    TF_RETURN_IF_ERROR(ctx->GetAttr("padding", &padding));
    for (const auto* attr : {&strides, &dilations}) {
      const auto& v = *attr;
      if (v.size() != 4 || v[0] != 1 || v[3] != 1 || v[1] < 1 || v[2] < 1) {
        return tensorflow::errors::InvalidArgument(
            attr == &strides ? "strides" : "dilations",
            " must be [1, height, width, 1] with positive entries");
      }
    }
    stride_h = strides[1];
    stride_w = strides[2];
    dilation_h = dilations[1];
    dilation_w = dilations[2];
    same = padding == "SAME";
    return tensorflow::OkStatus();
  }
};

// One spatial axis: output size and padding before, TensorFlow's SAME / VALID rule.
inline void WindowedSize(int64_t in, int64_t kernel, int64_t stride, int64_t dilation,
                         bool same, int64_t* out, int64_t* pad_before) {
  const int64_t span = (kernel - 1) * dilation + 1;
  if (same) {
    *out = (in + stride - 1) / stride;
    *pad_before = std::max<int64_t>((*out - 1) * stride + span - in, 0) / 2;
  } else {
    *out = in >= span ? (in - span) / stride + 1 : 0;
    *pad_before = 0;
  }
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_CONV2D_ATTRS_H_
