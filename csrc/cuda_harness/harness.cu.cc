// Standalone check of the CUDA kernels (the conv epilogue, the dense element-wise ops and the
// kernel moments) against the scalar CPU maths of common/local_reparam_math.h and
// moments/moments.h on random data (float and double). Exit status 0 when every output and
// gradient agrees within tolerance; prints the worst differences.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "conv/epilogue_kernels.h"
#include "dense/dense_kernels.h"
#include "moments/moments_kernels.h"

namespace {

#define CHECK_CUDA(expr)                                                         \
  do {                                                                           \
    const cudaError_t err = (expr);                                              \
    if (err != cudaSuccess) {                                                    \
      std::fprintf(stderr, "%s failed: %s\n", #expr, cudaGetErrorString(err));   \
      std::exit(2);                                                              \
    }                                                                            \
  } while (0)

template <typename T>
T* ToDevice(const std::vector<T>& host) {
  T* dev = nullptr;
  CHECK_CUDA(cudaMalloc(&dev, sizeof(T) * (host.size() + 1)));
  CHECK_CUDA(cudaMemcpy(dev, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice));
  return dev;
}

template <typename T>
std::vector<T> ToHost(const T* dev, size_t n) {
  std::vector<T> host(n);
  CHECK_CUDA(cudaMemcpy(host.data(), dev, sizeof(T) * n, cudaMemcpyDeviceToHost));
  return host;
}

// A device buffer of n NaNs, for outputs: an element a kernel leaves unwritten fails MaxDiff.
template <typename T>
T* Poisoned(size_t n) {
  return ToDevice(std::vector<T>(n, std::numeric_limits<T>::quiet_NaN()));
}

// Largest |a - b|; infinity when any difference is NaN.
template <typename T>
double MaxDiff(const std::vector<T>& a, const std::vector<T>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    worst = std::fmax(worst, d);
  }
  return worst;
}

// Runs forward and gradient on [batch, positions, channels]; returns true when they match.
template <typename T>
bool Check(int64_t batch, int64_t positions, int64_t channels, double tol) {
  const int64_t n = batch * positions * channels;
  const int64_t per_example = positions * channels;
  std::mt19937 gen(42);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(0.1, 2.0);
  std::vector<T> mu(n), var(n), g(n), z(batch * channels);
  for (int64_t i = 0; i < n; ++i) {
    mu[i] = T(normal(gen));
    var[i] = T(uniform(gen));
    g[i] = T(normal(gen));
  }
  for (auto& v : z) v = T(normal(gen));
  const mnf::NormalStream noise = mnf::StreamFromSeed(7, 11);

  std::vector<T> out(n), dmu(n), dvar(n), dz(batch * channels, T(0));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t zi = (i / per_example) * channels + i % channels;
    const T eps = mnf::NormalAt<T>(noise, i);
    out[i] = mnf::Sample<T>(mu[i] * z[zi], std::sqrt(var[i]), eps);
    dmu[i] = g[i] * z[zi];
    dvar[i] = mnf::VarGrad<T>(g[i], std::sqrt(var[i]), eps);
    dz[zi] += g[i] * mu[i];
  }

  T *d_mu = ToDevice(mu), *d_var = ToDevice(var), *d_g = ToDevice(g), *d_z = ToDevice(z);
  T *d_out = Poisoned<T>(n), *d_dmu = Poisoned<T>(n), *d_dvar = Poisoned<T>(n);
  T* d_dz = Poisoned<T>(batch * channels);
  CHECK_CUDA(mnf::cuda::LaunchConvEpilogue<T>(nullptr, n, per_example, channels, d_mu, d_var, d_z,
                                              noise, d_out));
  CHECK_CUDA(mnf::cuda::LaunchConvEpilogueGrad<T>(nullptr, n, per_example, channels, d_g, d_mu,
                                                  d_var, d_z, noise, d_dmu, d_dvar, d_dz));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double errs[4] = {MaxDiff(ToHost(d_out, n), out), MaxDiff(ToHost(d_dmu, n), dmu),
                          MaxDiff(ToHost(d_dvar, n), dvar),
                          MaxDiff(ToHost(d_dz, batch * channels), dz)};
  for (T* p : {d_mu, d_var, d_g, d_z, d_out, d_dmu, d_dvar, d_dz}) CHECK_CUDA(cudaFree(p));
  const bool ok = errs[0] <= tol && errs[1] <= tol && errs[2] <= tol && errs[3] <= tol * positions;
  std::printf("%s %s [%lld, %lld, %lld]: out %.3g dmu %.3g dvar %.3g dz %.3g\n",
              ok ? "OK  " : "FAIL", sizeof(T) == 4 ? "float " : "double", (long long)batch,
              (long long)positions, (long long)channels, errs[0], errs[1], errs[2], errs[3]);
  return ok;
}

// Runs the dense element-wise ops and their gradients on [batch, in] inputs and [batch, out]
// products; returns true when every output matches the scalar maths.
template <typename T>
bool CheckDense(int64_t batch, int64_t in, int64_t out, double tol) {
  const T two_log_max = T(0);  // max_std = 1
  std::mt19937 gen(7);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-3.0, 0.5);
  auto draw = [&](int64_t n, bool log_scale) {
    std::vector<T> v(n);
    for (auto& e : v) e = T(log_scale ? uniform(gen) : normal(gen));
    return v;
  };
  const int64_t nx = batch * in, ny = batch * out;
  const std::vector<T> x = draw(nx, false), z = draw(nx, false), g_xz = draw(nx, false),
                       g_x2 = draw(nx, false), mu = draw(ny, false), g = draw(ny, false),
                       b = draw(out, false), blv = draw(out, true);
  std::vector<T> var(ny);
  for (auto& v : var) v = T(std::fabs(normal(gen)));
  const mnf::NormalStream noise = mnf::StreamFromSeed(3, 5);

  std::vector<T> xz(nx), x2(nx), dx(nx), dz(nx), o(ny), sd(ny), dv(ny);
  std::vector<T> db(out, T(0)), dblv(out, T(0));
  for (int64_t i = 0; i < nx; ++i) {
    xz[i] = x[i] * z[i];
    x2[i] = x[i] * x[i];
    dx[i] = g_xz[i] * z[i] + T(2) * x[i] * g_x2[i];
    dz[i] = g_xz[i] * x[i];
  }
  for (int64_t i = 0; i < ny; ++i) {
    const int64_t j = i % out;
    const T eps = mnf::NormalAt<T>(noise, i);
    sd[i] = std::sqrt(var[i] + mnf::ClippedBiasVar<T>(blv[j], two_log_max));
    o[i] = mnf::Sample<T>(mu[i] + b[j], sd[i], eps);
    dv[i] = mnf::VarGrad<T>(g[i], sd[i], eps);
    db[j] += g[i];
    dblv[j] += dv[i];
  }
  for (int64_t j = 0; j < out; ++j) {
    dblv[j] *= mnf::ClippedBiasVar<T>(blv[j], two_log_max) * mnf::ClipMask<T>(blv[j], two_log_max);
  }

  T *d_x = ToDevice(x), *d_z = ToDevice(z), *d_gxz = ToDevice(g_xz), *d_gx2 = ToDevice(g_x2);
  T *d_mu = ToDevice(mu), *d_var = ToDevice(var);
  T *d_g = ToDevice(g), *d_b = ToDevice(b), *d_blv = ToDevice(blv);
  T *r_xz = Poisoned<T>(nx), *r_x2 = Poisoned<T>(nx), *r_dx = Poisoned<T>(nx);
  T* r_dz = Poisoned<T>(nx);
  T *r_o = Poisoned<T>(ny), *r_sd = Poisoned<T>(ny), *r_dv = Poisoned<T>(ny);
  T *r_db = Poisoned<T>(out), *r_dblv = Poisoned<T>(out);
  using namespace mnf::cuda;
  CHECK_CUDA(LaunchDenseScaledInputs<T>(nullptr, nx, d_x, d_z, r_xz, r_x2));
  CHECK_CUDA(LaunchDenseScaledInputsGrad<T>(nullptr, nx, d_gxz, d_gx2, d_x, d_z, r_dx, r_dz));
  CHECK_CUDA(LaunchDenseEpilogue<T>(nullptr, batch, out, d_mu, d_var, d_b, d_blv, two_log_max,
                                    noise, r_o, r_sd));
  CHECK_CUDA(LaunchDenseEpilogueGrad<T>(nullptr, batch, out, d_g, r_sd, d_blv, two_log_max, noise,
                                        r_dv, r_db, r_dblv));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double errs[] = {
      MaxDiff(ToHost(r_xz, nx), xz), MaxDiff(ToHost(r_x2, nx), x2),
      MaxDiff(ToHost(r_dx, nx), dx), MaxDiff(ToHost(r_dz, nx), dz),
      MaxDiff(ToHost(r_o, ny), o),   MaxDiff(ToHost(r_sd, ny), sd),
      MaxDiff(ToHost(r_dv, ny), dv),
      MaxDiff(ToHost(r_db, out), db) / batch, MaxDiff(ToHost(r_dblv, out), dblv) / batch};
  for (T* p : {d_x, d_z, d_gxz, d_gx2, d_mu, d_var, d_g, d_b, d_blv, r_xz, r_x2, r_dx, r_dz, r_o,
               r_sd, r_dv, r_db, r_dblv}) {
    CHECK_CUDA(cudaFree(p));
  }
  double worst = 0;
  for (double e : errs) worst = std::fmax(worst, e);  // errs are never NaN (MaxDiff)
  const bool ok = worst <= tol;
  std::printf("%s %s dense [%lld, %lld, %lld]: worst %.3g\n", ok ? "OK  " : "FAIL",
              sizeof(T) == 4 ? "float " : "double", (long long)batch, (long long)in,
              (long long)out, worst);
  return ok;
}

// Runs the kernel moments and their gradient on a [rows, cols] kernel, z along the rows or
// the columns, log sigma partly beyond both clips; returns true when every output and
// gradient matches the scalar maths of moments/moments.h (sums relative to their size).
template <typename T>
bool CheckMoments(int64_t rows, int64_t cols, bool z_rows, double tol) {
  const T lo = T(-6), hi = T(std::log(0.5));
  std::mt19937 gen(11);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-8.0, 1.0);
  const int64_t n = rows * cols, nz = z_rows ? rows : cols, no = z_rows ? cols : rows;
  auto draw = [&](int64_t size, bool log_scale) {
    std::vector<T> v(size);
    for (auto& e : v) e = T(log_scale ? uniform(gen) : normal(gen));
    return v;
  };
  const std::vector<T> m = draw(n, false), ls = draw(n, true), u = draw(nz, false),
                       v = draw(nz, false), g_var = draw(n, false), g_l = draw(1, false),
                       g_s = draw(nz, false), g_q = draw(nz, false), g_r = draw(nz, false),
                       g_pm = draw(no, false), g_pv = draw(no, false);
  // The scalar reference, element by element.
  std::vector<T> var(n), s_sum(nz, T(0)), q_sum(nz, T(0)), r_sum(nz, T(0)), pm(no, T(0)),
      pv(no, T(0)), dm(n), dls(n), du(nz, T(0)), dv(nz, T(0));
  double l_sum = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c, zi = z_rows ? r : c, oi = z_rows ? c : r;
      const T clipped = mnf::ClipLogStd<T>(ls[i], lo, hi);
      var[i] = std::exp(T(2) * clipped);
      l_sum += clipped;
      s_sum[zi] += var[i];
      q_sum[zi] += m[i] * m[i];
      r_sum[zi] += m[i];
      pm[oi] += u[zi] * m[i];
      pv[oi] += v[zi] * var[i];
      const T g_sq = g_var[i] + g_s[zi] + v[zi] * g_pv[oi];
      dls[i] = mnf::MomentsLogStdGrad<T>(mnf::ClipLogStdMask<T>(ls[i], lo, hi), var[i], g_sq,
                                         g_l[0]);
      dm[i] = T(2) * g_q[zi] * m[i] + g_r[zi] + u[zi] * g_pm[oi];
      du[zi] += m[i] * g_pm[oi];
      dv[zi] += var[i] * g_pv[oi];
    }
  }
  mnf::MomentsInputs<T> in;
  in.rows = rows;
  in.cols = cols;
  in.z_rows = z_rows;
  in.min_log_std = lo;
  in.log_max = hi;
  in.mean = ToDevice(m);
  in.log_std = ToDevice(ls);
  in.mean_weights = ToDevice(u);
  in.variance_weights = ToDevice(v);
  const mnf::MomentsTensors<T*> out{Poisoned<T>(n),  Poisoned<T>(1),  Poisoned<T>(nz),
                                    Poisoned<T>(nz), Poisoned<T>(nz), Poisoned<T>(no),
                                    Poisoned<T>(no)};
  const mnf::MomentsTensors<const T*> g{ToDevice(g_var), ToDevice(g_l), ToDevice(g_s),
                                        ToDevice(g_q),   ToDevice(g_r), ToDevice(g_pm),
                                        ToDevice(g_pv)};
  const mnf::MomentsInputGrads<T> d{Poisoned<T>(n), Poisoned<T>(n), Poisoned<T>(nz),
                                    Poisoned<T>(nz)};
  CHECK_CUDA(mnf::cuda::LaunchKernelMoments<T>(nullptr, in, out));
  CHECK_CUDA(mnf::cuda::LaunchKernelMomentsGrad<T>(nullptr, in, g, d));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double per_z = double(no), per_o = double(nz);
  const double errs[] = {MaxDiff(ToHost(out.variance, n), var),
                         MaxDiff(ToHost(out.log_std_sum, 1), std::vector<T>{T(l_sum)}) / n,
                         MaxDiff(ToHost(out.variance_sum, nz), s_sum) / per_z,
                         MaxDiff(ToHost(out.mean_sq_sum, nz), q_sum) / per_z,
                         MaxDiff(ToHost(out.mean_sum, nz), r_sum) / per_z,
                         MaxDiff(ToHost(out.projected_mean, no), pm) / per_o,
                         MaxDiff(ToHost(out.projected_variance, no), pv) / per_o,
                         MaxDiff(ToHost(d.mean, n), dm),
                         MaxDiff(ToHost(d.log_std, n), dls),
                         MaxDiff(ToHost(d.mean_weights, nz), du) / per_z,
                         MaxDiff(ToHost(d.variance_weights, nz), dv) / per_z};
  const std::vector<const T*> buffers = {
      in.mean,         in.log_std,      in.mean_weights,     in.variance_weights,
      g.variance,      g.log_std_sum,   g.variance_sum,      g.mean_sq_sum,
      g.mean_sum,      g.projected_mean, g.projected_variance, out.variance,
      out.log_std_sum, out.variance_sum, out.mean_sq_sum,  out.mean_sum,
      out.projected_mean, out.projected_variance, d.mean, d.log_std,
      d.mean_weights,  d.variance_weights};
  for (const T* p : buffers) CHECK_CUDA(cudaFree(const_cast<T*>(p)));
  double worst = 0;
  for (double e : errs) worst = std::fmax(worst, e);
  const bool ok = worst <= tol;
  std::printf("%s %s moments [%lld, %lld] z %s: worst %.3g\n", ok ? "OK  " : "FAIL",
              sizeof(T) == 4 ? "float " : "double", (long long)rows, (long long)cols,
              z_rows ? "rows" : "cols", worst);
  return ok;
}

}  // namespace

int main() {
  bool ok = true;
  ok &= Check<float>(128, 8 * 8, 50, 1e-5);
  ok &= Check<float>(3, 7, 5, 1e-5);
  ok &= Check<float>(1, 1, 1, 1e-5);
  ok &= Check<double>(16, 24 * 24, 20, 1e-12);
  ok &= Check<double>(3, 7, 5, 1e-12);
  ok &= CheckDense<float>(128, 80, 50, 1e-5);
  ok &= CheckDense<float>(3, 5, 7, 1e-5);
  ok &= CheckDense<double>(17, 9, 33, 1e-12);
  ok &= CheckMoments<float>(800, 500, true, 1e-5);
  ok &= CheckMoments<float>(500, 50, false, 1e-5);
  ok &= CheckMoments<float>(3, 300, false, 1e-5);
  ok &= CheckMoments<double>(37, 600, true, 1e-12);
  ok &= CheckMoments<double>(1, 1, false, 1e-12);
  return ok ? 0 : 1;
}
