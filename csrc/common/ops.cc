// Registrations and shape functions of every fused MNF op, by family (the kernels are in
// dense/, conv/, moments/ and noise/).
//
// Dense: the layer out = (x * z) M + b + sqrt(x^2 sigma^2 + sigma_b^2) * eps runs as
//   MnfDenseScaledInputs: (x, z) -> (x * z, x^2), reading x once;
//   the two products (x * z) M and x^2 sigma^2 as tf.matmul (oneDNN / cuBLAS);
//   MnfDenseEpilogue: (mu, var, b, bias_log_var, seed) -> mu + b + sqrt(var + sigma_b^2) * eps
//     with sigma_b^2 = exp(min(bias_log_var, 2 log max_std)) and
//     eps = tf.random.stateless_normal([B, N], seed); its second output, stddev, is the
//     sqrt(var + sigma_b^2) that the gradient op reuses (eps is regenerated from the seed).
// Conv:
//   MnfConvLocalReparamEpilogue, the conv epilogue: out = mu * z[b, c] + sqrt(var) * eps,
//     channels-last;
//   MnfConv2DLocalReparam: the whole sampling step of a 2-D conv layer, mean = conv(x, M)
//     and variance = conv(x^2, sigma^2) from one gathering of x's patches, NHWC with
//     Conv2D's strides, padding and dilations, plus the biases and the epilogue's sampling;
//     the gradients of its two convolutions are two ops, the kernels' and x's, so that a
//     graph that needs no input gradient (the first layer) never computes it.
// Moments: MnfKernelMoments, one pass over a layer's [rows, cols] kernel giving the clipped
//   variances sigma^2 of the forward pass and the kernel sums of the KL bound
//   (moments/moments.h).
// Noise: MnfStatelessNormal, tf.random.stateless_normal's stream from the vectorized
//   generator, for the layers' z_0 and r(z | W) noise.
// Reference: Louizos & Welling (2017), arXiv:1703.01961, Algorithm 1 and eq. 15.
#include <vector>

#include "conv/conv2d_attrs.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace mnf {
namespace {

using tensorflow::Status;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// Requires input `index` to have rank `rank`, naming it in the error.
Status NamedRank(InferenceContext* c, int index, const char* name, int rank, const char* dims,
                 ShapeHandle* out) {
  if (!c->WithRank(c->input(index), rank, out).ok()) {
    return tensorflow::errors::InvalidArgument(name, " must be rank ", rank, " ", dims,
                                               ", got shape ", c->DebugString(c->input(index)));
  }
  return tensorflow::OkStatus();
}

// Requires input `index` to be compatible with `expected`, naming both in the error.
Status NamedMerge(InferenceContext* c, int index, const char* name, ShapeHandle expected,
                  const char* expected_name, ShapeHandle* out) {
  if (!c->Merge(c->input(index), expected, out).ok()) {
    return tensorflow::errors::InvalidArgument(name, " must have the shape of ", expected_name,
                                               " ", c->DebugString(expected), ", got ",
                                               c->DebugString(c->input(index)));
  }
  return tensorflow::OkStatus();
}

Status SeedShape(InferenceContext* c, int index) {
  ShapeHandle seed;
  DimensionHandle two;
  if (!c->WithRank(c->input(index), 1, &seed).ok() ||
      !c->WithValue(c->Dim(seed, 0), 2, &two).ok()) {
    return tensorflow::errors::InvalidArgument("seed must have shape [2], got ",
                                               c->DebugString(c->input(index)));
  }
  return tensorflow::OkStatus();
}

// Validates (x, z) starting at input `first`: both [B, K].
Status ScaledInputShapes(InferenceContext* c, int first, ShapeHandle* x_out) {
  ShapeHandle x;
  TF_RETURN_IF_ERROR(NamedRank(c, first, "x", 2, "[batch, in_features]", &x));
  TF_RETURN_IF_ERROR(NamedMerge(c, first + 1, "z", x, "x", &x));
  *x_out = x;
  return tensorflow::OkStatus();
}

// Validates a [B, N] input `mu_index` and a [N] input `bias_index`.
Status EpilogueShapes(InferenceContext* c, int mu_index, const char* mu_name, int bias_index,
                      const char* bias_name, ShapeHandle* mu_out, ShapeHandle* bias_out) {
  ShapeHandle mu, bias;
  TF_RETURN_IF_ERROR(NamedRank(c, mu_index, mu_name, 2, "[batch, out_features]", &mu));
  TF_RETURN_IF_ERROR(NamedRank(c, bias_index, bias_name, 1, "[out_features]", &bias));
  DimensionHandle n;
  if (!c->Merge(c->Dim(mu, 1), c->Dim(bias, 0), &n).ok()) {
    return tensorflow::errors::InvalidArgument(bias_name, " must have shape [out_features] of ",
                                               mu_name, " ", c->DebugString(mu), ", got ",
                                               c->DebugString(bias));
  }
  *mu_out = c->Matrix(c->Dim(mu, 0), n);
  *bias_out = c->Vector(n);
  return tensorflow::OkStatus();
}

// Validates (mu, var, z) starting at input `first`: mu [B, ..., C], var like mu, z [B, C].
Status ConvShapes(InferenceContext* c, int first, ShapeHandle* mu_out, ShapeHandle* z_out) {
  ShapeHandle mu, z;
  if (!c->WithRankAtLeast(c->input(first), 2, &mu).ok()) {
    return tensorflow::errors::InvalidArgument("mu must be rank >= 2 [batch, ..., channels], got ",
                                               c->DebugString(c->input(first)));
  }
  TF_RETURN_IF_ERROR(NamedMerge(c, first + 1, "var", mu, "mu", &mu));
  TF_RETURN_IF_ERROR(NamedRank(c, first + 2, "z", 2, "[batch, channels]", &z));
  ShapeHandle expected_z = c->Matrix(c->Dim(mu, 0), c->Dim(mu, -1));
  if (!c->Merge(z, expected_z, &z).ok()) {
    return tensorflow::errors::InvalidArgument("z must have shape [batch, channels] of mu ",
                                               c->DebugString(mu), ", got ", c->DebugString(z));
  }
  *mu_out = mu;
  *z_out = z;
  return tensorflow::OkStatus();
}

// Validates the four inputs of the kernel moments starting at input `first`: kernel_mean and
// kernel_log_std [rows, cols], mean_weights and variance_weights [Z], Z = dim(z_axis).
// Sets `kernel` to [rows, cols], `z` to [Z] and `other` to [the other dimension].
Status MomentsShapes(InferenceContext* c, int first, ShapeHandle* kernel, ShapeHandle* z,
                     ShapeHandle* other) {
  int z_axis;
  TF_RETURN_IF_ERROR(c->GetAttr("z_axis", &z_axis));
  if (z_axis != 0 && z_axis != 1) {
    return tensorflow::errors::InvalidArgument("z_axis must be 0 or 1, got ", z_axis);
  }
  ShapeHandle mean;
  TF_RETURN_IF_ERROR(NamedRank(c, first, "kernel_mean", 2, "[rows, cols]", &mean));
  TF_RETURN_IF_ERROR(NamedMerge(c, first + 1, "kernel_log_std", mean, "kernel_mean", &mean));
  ShapeHandle expected_z = c->Vector(c->Dim(mean, z_axis));
  for (int k = 2; k < 4; ++k) {
    const char* name = k == 2 ? "mean_weights" : "variance_weights";
    ShapeHandle weights;
    if (!c->Merge(c->input(first + k), expected_z, &weights).ok()) {
      return tensorflow::errors::InvalidArgument(
          name, " must have shape [kernel_mean.shape[z_axis]] ", c->DebugString(expected_z),
          ", got ", c->DebugString(c->input(first + k)));
    }
  }
  *kernel = mean;
  *z = expected_z;
  *other = c->Vector(c->Dim(mean, 1 - z_axis));
  return tensorflow::OkStatus();
}

// One spatial output size of a convolution, unknown when the input size is.
DimensionHandle WindowedDim(InferenceContext* c, DimensionHandle in, int64_t kernel,
                            int64_t stride, int64_t dilation, bool same) {
  if (!c->ValueKnown(in)) return c->UnknownDim();
  int64_t out, pad_before;
  WindowedSize(c->Value(in), kernel, stride, dilation, same, &out, &pad_before);
  return c->MakeDim(out);
}

// Validates x [B, H, W, C] at input `x_index` and sets `out` to the convolution's output
// [B, OH, OW, out_channels] for a [kernel_h, kernel_w, C, out_channels] kernel.
Status Conv2DOutputShape(InferenceContext* c, int x_index, int64_t kernel_h, int64_t kernel_w,
                         DimensionHandle out_channels, ShapeHandle* out) {
  Conv2DAttrs attrs;
  TF_RETURN_IF_ERROR(attrs.Read(c));
  ShapeHandle x;
  TF_RETURN_IF_ERROR(NamedRank(c, x_index, "x", 4, "[batch, height, width, channels]", &x));
  *out = c->MakeShape(
      {c->Dim(x, 0),
       WindowedDim(c, c->Dim(x, 1), kernel_h, attrs.stride_h, attrs.dilation_h, attrs.same),
       WindowedDim(c, c->Dim(x, 2), kernel_w, attrs.stride_w, attrs.dilation_w, attrs.same),
       out_channels});
  return tensorflow::OkStatus();
}

// Validates the inputs of the two convolutions (x, kernel_mean, kernel_variance) starting at
// input 0: x [B, H, W, C], the kernels [KH, KW, C, N] with static KH, KW; sets `kernel` and
// the output shape `out`.
Status ConvolvePairShapes(InferenceContext* c, ShapeHandle* kernel, ShapeHandle* out) {
  ShapeHandle k;
  TF_RETURN_IF_ERROR(NamedRank(c, 1, "kernel_mean", 4,
                               "[height, width, in_channels, out_channels]", &k));
  TF_RETURN_IF_ERROR(NamedMerge(c, 2, "kernel_variance", k, "kernel_mean", &k));
  if (!c->ValueKnown(c->Dim(k, 0)) || !c->ValueKnown(c->Dim(k, 1))) {
    return tensorflow::errors::InvalidArgument(
        "kernel_mean must have a static height and width, got ", c->DebugString(k));
  }
  TF_RETURN_IF_ERROR(Conv2DOutputShape(c, 0, c->Value(c->Dim(k, 0)), c->Value(c->Dim(k, 1)),
                                       c->Dim(k, 3), out));
  DimensionHandle channels;
  if (!c->Merge(c->Dim(c->input(0), 3), c->Dim(k, 2), &channels).ok()) {
    return tensorflow::errors::InvalidArgument(
        "kernel_mean must have in_channels of x ", c->DebugString(c->input(0)), ", got ",
        c->DebugString(k));
  }
  *kernel = k;
  return tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("MnfDenseScaledInputs")
    .Input("x: T")
    .Input("z: T")
    .Output("x_z: T")
    .Output("x_sq: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(ScaledInputShapes(c, 0, &x));
      c->set_output(0, x);
      c->set_output(1, x);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfDenseScaledInputsGrad")
    .Input("grad_x_z: T")
    .Input("grad_x_sq: T")
    .Input("x: T")
    .Input("z: T")
    .Output("grad_x: T")
    .Output("grad_z: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(ScaledInputShapes(c, 2, &x));
      TF_RETURN_IF_ERROR(NamedMerge(c, 0, "grad_x_z", x, "x", &x));
      TF_RETURN_IF_ERROR(NamedMerge(c, 1, "grad_x_sq", x, "x", &x));
      c->set_output(0, x);
      c->set_output(1, x);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfDenseEpilogue")
    .Input("mu: T")
    .Input("var: T")
    .Input("bias_mean: T")
    .Input("bias_log_var: T")
    .Input("seed: Tseed")
    .Output("output: T")
    .Output("stddev: T")
    .Attr("max_std: float")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle mu, bias;
      TF_RETURN_IF_ERROR(EpilogueShapes(c, 0, "mu", 2, "bias_mean", &mu, &bias));
      TF_RETURN_IF_ERROR(NamedMerge(c, 1, "var", mu, "mu", &mu));
      TF_RETURN_IF_ERROR(NamedMerge(c, 3, "bias_log_var", bias, "bias_mean", &bias));
      TF_RETURN_IF_ERROR(SeedShape(c, 4));
      c->set_output(0, mu);
      c->set_output(1, mu);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfDenseEpilogueGrad")
    .Input("grad: T")
    .Input("stddev: T")
    .Input("bias_log_var: T")
    .Input("seed: Tseed")
    .Output("grad_var: T")
    .Output("grad_bias_mean: T")
    .Output("grad_bias_log_var: T")
    .Attr("max_std: float")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle g, bias;
      TF_RETURN_IF_ERROR(EpilogueShapes(c, 0, "grad", 2, "bias_log_var", &g, &bias));
      TF_RETURN_IF_ERROR(NamedMerge(c, 1, "stddev", g, "grad", &g));
      TF_RETURN_IF_ERROR(SeedShape(c, 3));
      c->set_output(0, g);
      c->set_output(1, bias);
      c->set_output(2, bias);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfConvLocalReparamEpilogue")
    .Input("mu: T")
    .Input("var: T")
    .Input("z: T")
    .Input("seed: Tseed")
    .Output("output: T")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle mu, z;
      TF_RETURN_IF_ERROR(ConvShapes(c, 0, &mu, &z));
      TF_RETURN_IF_ERROR(SeedShape(c, 3));
      c->set_output(0, mu);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfConvLocalReparamEpilogueGrad")
    .Input("grad: T")
    .Input("mu: T")
    .Input("var: T")
    .Input("z: T")
    .Input("seed: Tseed")
    .Output("grad_mu: T")
    .Output("grad_var: T")
    .Output("grad_z: T")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle mu, z;
      TF_RETURN_IF_ERROR(ConvShapes(c, 1, &mu, &z));
      TF_RETURN_IF_ERROR(SeedShape(c, 4));
      TF_RETURN_IF_ERROR(NamedMerge(c, 0, "grad", mu, "mu", &mu));
      c->set_output(0, mu);
      c->set_output(1, mu);
      c->set_output(2, z);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfKernelMoments")
    .Input("kernel_mean: T")
    .Input("kernel_log_std: T")
    .Input("mean_weights: T")
    .Input("variance_weights: T")
    .Output("variance: T")
    .Output("log_std_sum: T")
    .Output("variance_sum: T")
    .Output("mean_sq_sum: T")
    .Output("mean_sum: T")
    .Output("projected_mean: T")
    .Output("projected_variance: T")
    .Attr("z_axis: int")
    .Attr("min_log_std: float")
    .Attr("max_std: float")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle kernel, z, other;
      TF_RETURN_IF_ERROR(MomentsShapes(c, 0, &kernel, &z, &other));
      c->set_output(0, kernel);
      c->set_output(1, c->Scalar());
      for (int k = 2; k < 5; ++k) c->set_output(k, z);
      c->set_output(5, other);
      c->set_output(6, other);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfKernelMomentsGrad")
    .Input("grad_variance: T")
    .Input("grad_log_std_sum: T")
    .Input("grad_variance_sum: T")
    .Input("grad_mean_sq_sum: T")
    .Input("grad_mean_sum: T")
    .Input("grad_projected_mean: T")
    .Input("grad_projected_variance: T")
    .Input("kernel_mean: T")
    .Input("kernel_log_std: T")
    .Input("mean_weights: T")
    .Input("variance_weights: T")
    .Output("grad_kernel_mean: T")
    .Output("grad_kernel_log_std: T")
    .Output("grad_mean_weights: T")
    .Output("grad_variance_weights: T")
    .Attr("z_axis: int")
    .Attr("min_log_std: float")
    .Attr("max_std: float")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle kernel, z, other;
      TF_RETURN_IF_ERROR(MomentsShapes(c, 7, &kernel, &z, &other));
      TF_RETURN_IF_ERROR(NamedMerge(c, 0, "grad_variance", kernel, "kernel_mean", &kernel));
      ShapeHandle unused;
      TF_RETURN_IF_ERROR(NamedRank(c, 1, "grad_log_std_sum", 0, "[]", &unused));
      c->set_output(0, kernel);
      c->set_output(1, kernel);
      c->set_output(2, z);
      c->set_output(3, z);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfStatelessNormal")
    .Input("shape: Tshape")
    .Input("seed: Tseed")
    .Output("output: dtype")
    .Attr("dtype: {float, double}")
    .Attr("Tshape: {int32, int64} = DT_INT32")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle shape;
      TF_RETURN_IF_ERROR(NamedRank(c, 0, "shape", 1, "[rank]", &shape));
      TF_RETURN_IF_ERROR(SeedShape(c, 1));
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(0, &shape));
      c->set_output(0, shape);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfConv2DLocalReparam")
    .Input("x: T")
    .Input("kernel_mean: T")
    .Input("kernel_variance: T")
    .Input("bias_mean: T")
    .Input("bias_variance: T")
    .Input("z: T")
    .Input("seed: Tseed")
    .Output("output: T")
    .Output("mean: T")
    .Output("variance: T")
    .Attr("strides: list(int)")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("dilations: list(int) = [1, 1, 1, 1]")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle kernel, out;
      TF_RETURN_IF_ERROR(ConvolvePairShapes(c, &kernel, &out));
      ShapeHandle channels = c->Vector(c->Dim(kernel, 3)), bias;
      TF_RETURN_IF_ERROR(NamedMerge(c, 3, "bias_mean", channels, "[out_channels]", &bias));
      TF_RETURN_IF_ERROR(NamedMerge(c, 4, "bias_variance", bias, "bias_mean", &bias));
      ShapeHandle z;
      TF_RETURN_IF_ERROR(NamedMerge(c, 5, "z", c->Matrix(c->Dim(out, 0), c->Dim(bias, 0)),
                                    "[batch, out_channels]", &z));
      TF_RETURN_IF_ERROR(SeedShape(c, 6));
      out = c->MakeShape({c->Dim(z, 0), c->Dim(out, 1), c->Dim(out, 2), c->Dim(z, 1)});
      for (int k = 0; k < 3; ++k) c->set_output(k, out);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfConv2DLocalReparamKernelGrad")
    .Input("x: T")
    .Input("grad_mean: T")
    .Input("grad_variance: T")
    .Output("grad_kernel_mean: T")
    .Output("grad_kernel_variance: T")
    .Attr("kernel_size: list(int)")
    .Attr("strides: list(int)")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("dilations: list(int) = [1, 1, 1, 1]")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      std::vector<int32_t> size;
      TF_RETURN_IF_ERROR(c->GetAttr("kernel_size", &size));
      if (size.size() != 2 || size[0] < 1 || size[1] < 1) {
        return tensorflow::errors::InvalidArgument(
            "kernel_size must be [height, width] with positive entries");
      }
      ShapeHandle grad;
      TF_RETURN_IF_ERROR(NamedRank(c, 1, "grad_mean", 4,
                                   "[batch, out_height, out_width, out_channels]", &grad));
      ShapeHandle out;
      TF_RETURN_IF_ERROR(Conv2DOutputShape(c, 0, size[0], size[1], c->Dim(grad, 3), &out));
      TF_RETURN_IF_ERROR(NamedMerge(c, 1, "grad_mean", out, "the convolution output", &grad));
      TF_RETURN_IF_ERROR(NamedMerge(c, 2, "grad_variance", grad, "grad_mean", &grad));
      ShapeHandle kernel = c->MakeShape(
          {c->MakeDim(size[0]), c->MakeDim(size[1]), c->Dim(c->input(0), 3), c->Dim(grad, 3)});
      c->set_output(0, kernel);
      c->set_output(1, kernel);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfConv2DLocalReparamInputGrad")
    .Input("x: T")
    .Input("kernel_mean: T")
    .Input("kernel_variance: T")
    .Input("grad_mean: T")
    .Input("grad_variance: T")
    .Output("grad_x: T")
    .Attr("strides: list(int)")
    .Attr("padding: {'SAME', 'VALID'}")
    .Attr("dilations: list(int) = [1, 1, 1, 1]")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle kernel, out, grad;
      TF_RETURN_IF_ERROR(ConvolvePairShapes(c, &kernel, &out));
      TF_RETURN_IF_ERROR(NamedMerge(c, 3, "grad_mean", out, "the convolution output", &grad));
      TF_RETURN_IF_ERROR(NamedMerge(c, 4, "grad_variance", grad, "grad_mean", &grad));
      c->set_output(0, c->input(0));
      return tensorflow::OkStatus();
    });

}  // namespace mnf
