// Registrations and shape functions of the fused MNF local-reparameterization ops.
//
// MnfDenseLocalReparam: out = (x * z) M + b + sqrt(x^2 sigma^2 + sigma_b^2) * eps, with
//   sigma = exp(min(log_std, log max_std)), sigma_b^2 = exp(min(bias_log_var, 2 log max_std))
//   and eps = tf.random.stateless_normal([B, N], seed); the second output, stddev, is the
//   sqrt(var) that the gradient op reuses (eps itself is regenerated from the seed).
// MnfConvLocalReparamEpilogue: out = mu * z[b, c] + sqrt(var) * eps, channels-last.
// Reference: Louizos & Welling (2017), arXiv:1703.01961, Algorithm 1.
#include "tensorflow/core/framework/common_shape_fns.h"
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

// Validates (x, z, kernel_mean, kernel_log_std, bias_mean, bias_log_var) starting at input
// `first` and sets *batch_out = [B, N], *x_out = [B, K], *m_out = [K, N], *n_out = [N].
Status DenseShapes(InferenceContext* c, int first, ShapeHandle* x_out, ShapeHandle* m_out,
                   ShapeHandle* n_out, ShapeHandle* batch_out) {
  ShapeHandle x, m, b;
  TF_RETURN_IF_ERROR(NamedRank(c, first, "x", 2, "[batch, in_features]", &x));
  TF_RETURN_IF_ERROR(NamedMerge(c, first + 1, "z", x, "x", &x));
  TF_RETURN_IF_ERROR(NamedRank(c, first + 2, "kernel_mean", 2, "[in_features, out_features]", &m));
  DimensionHandle k;
  if (!c->Merge(c->Dim(x, 1), c->Dim(m, 0), &k).ok()) {
    return tensorflow::errors::InvalidArgument(
        "kernel_mean must have as many rows as x has columns: x ", c->DebugString(x),
        ", kernel_mean ", c->DebugString(m));
  }
  TF_RETURN_IF_ERROR(NamedMerge(c, first + 3, "kernel_log_std", m, "kernel_mean", &m));
  TF_RETURN_IF_ERROR(NamedRank(c, first + 4, "bias_mean", 1, "[out_features]", &b));
  DimensionHandle n;
  if (!c->Merge(c->Dim(m, 1), c->Dim(b, 0), &n).ok()) {
    return tensorflow::errors::InvalidArgument(
        "bias_mean must have kernel_mean's column count: kernel_mean ", c->DebugString(m),
        ", bias_mean ", c->DebugString(b));
  }
  TF_RETURN_IF_ERROR(NamedMerge(c, first + 5, "bias_log_var", b, "bias_mean", &b));
  *x_out = x;
  *m_out = m;
  *n_out = b;
  *batch_out = c->Matrix(c->Dim(x, 0), n);
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

}  // namespace

REGISTER_OP("MnfDenseLocalReparam")
    .Input("x: T")
    .Input("z: T")
    .Input("kernel_mean: T")
    .Input("kernel_log_std: T")
    .Input("bias_mean: T")
    .Input("bias_log_var: T")
    .Input("seed: Tseed")
    .Output("output: T")
    .Output("stddev: T")
    .Attr("max_std: float")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, m, n, out;
      TF_RETURN_IF_ERROR(DenseShapes(c, 0, &x, &m, &n, &out));
      TF_RETURN_IF_ERROR(SeedShape(c, 6));
      c->set_output(0, out);
      c->set_output(1, out);
      return tensorflow::OkStatus();
    });

REGISTER_OP("MnfDenseLocalReparamGrad")
    .Input("grad: T")
    .Input("x: T")
    .Input("z: T")
    .Input("kernel_mean: T")
    .Input("kernel_log_std: T")
    .Input("bias_mean: T")
    .Input("bias_log_var: T")
    .Input("seed: Tseed")
    .Input("stddev: T")
    .Output("grad_x: T")
    .Output("grad_z: T")
    .Output("grad_kernel_mean: T")
    .Output("grad_kernel_log_std: T")
    .Output("grad_bias_mean: T")
    .Output("grad_bias_log_var: T")
    .Attr("max_std: float")
    .Attr("T: {float, double}")
    .Attr("Tseed: {int32, int64} = DT_INT64")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x, m, n, out;
      TF_RETURN_IF_ERROR(DenseShapes(c, 1, &x, &m, &n, &out));
      TF_RETURN_IF_ERROR(SeedShape(c, 7));
      TF_RETURN_IF_ERROR(NamedMerge(c, 0, "grad", out, "the output", &out));
      TF_RETURN_IF_ERROR(NamedMerge(c, 8, "stddev", out, "the output", &out));
      c->set_output(0, x);
      c->set_output(1, x);
      c->set_output(2, m);
      c->set_output(3, m);
      c->set_output(4, n);
      c->set_output(5, n);
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

}  // namespace mnf
