// Arguments of the kernel-moments computation (MnfKernelMoments and its gradient), shared by
// the CPU kernels, the CUDA launchers and the CUDA harness (so: no TensorFlow include here).
//
// The kernel is a row-major [rows, cols] view of a layer's weights with z along the rows
// (dense [K, N]: z_rows) or along the columns (conv [kh * kw * C_in, C_out]); i indexes z and
// j the other axis. With log sigma clipped to [min_log_std, log_max], sigma^2 = exp(2 log
// sigma) and the weights u = c * z_T, v = c^2 of r(z | W) (Louizos & Welling 2017, eqs. 9
// and 15), one pass gives
//   variance[i, j] = sigma_ij^2,            log_std_sum = sum_ij log sigma_ij,
//   variance_sum[i] = sum_j sigma_ij^2,     mean_sq_sum[i] = sum_j M_ij^2,
//   mean_sum[i] = sum_j M_ij,
//   projected_mean[j] = sum_i u_i M_ij,     projected_variance[j] = sum_i v_i sigma_ij^2.
// The gradient maps the upstream gradients g_* of those outputs to
//   d log sigma_ij = mask_ij (2 sigma_ij^2 (g_variance_ij + g_variance_sum_i
//                    + v_i g_projected_variance_j) + g_log_std_sum)   (MomentsLogStdGrad),
//   d M_ij = 2 g_mean_sq_sum_i M_ij + g_mean_sum_i + u_i g_projected_mean_j,
//   d u_i = sum_j M_ij g_projected_mean_j,   d v_i = sum_j sigma_ij^2 g_projected_variance_j,
// mask_ij = 1 where min_log_std <= log sigma_ij <= log_max (the clip passes the gradient).
#ifndef TFP_MNF_CSRC_MOMENTS_MOMENTS_H_
#define TFP_MNF_CSRC_MOMENTS_MOMENTS_H_

#include <cstdint>

namespace mnf {

// The inputs: the [rows, cols] kernel means and log sigma, the [Z] weights u and v.
template <typename T>
struct MomentsInputs {
  int64_t rows = 0, cols = 0;
  bool z_rows = true;  // z along the rows (Z = rows, other = cols), else along the columns
  T min_log_std = 0, log_max = 0;
  const T* mean = nullptr;
  const T* log_std = nullptr;
  const T* mean_weights = nullptr;
  const T* variance_weights = nullptr;

  int64_t z_size() const { return z_rows ? rows : cols; }
  int64_t other_size() const { return z_rows ? cols : rows; }
};

// The seven outputs (forward), or the upstream gradients of the seven outputs (gradient).
template <typename P>
struct MomentsTensors {
  P variance = nullptr;            // [rows, cols]
  P log_std_sum = nullptr;         // scalar
  P variance_sum = nullptr;        // [Z]
  P mean_sq_sum = nullptr;         // [Z]
  P mean_sum = nullptr;            // [Z]
  P projected_mean = nullptr;      // [other]
  P projected_variance = nullptr;  // [other]
};

// The gradients of the four inputs.
template <typename T>
struct MomentsInputGrads {
  T* mean = nullptr;              // [rows, cols]
  T* log_std = nullptr;           // [rows, cols]
  T* mean_weights = nullptr;      // [Z]
  T* variance_weights = nullptr;  // [Z]
};

}  // namespace mnf

#endif  // TFP_MNF_CSRC_MOMENTS_MOMENTS_H_
