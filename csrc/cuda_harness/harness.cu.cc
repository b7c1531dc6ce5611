// Standalone check of the CUDA kernels (conv epilogue and the dense element-wise ops) against
// the scalar CPU maths of local_reparam_math.h on random data (float and double). Exit status
// 0 when every output and gradient agrees within tolerance; prints the worst differences.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "cuda/local_reparam_kernels.h"

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
  const T log_max = T(0), two_log_max = T(0);  // max_std = 1
  std::mt19937 gen(7);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-3.0, 0.5);
  auto draw = [&](int64_t n, bool log_scale) {
    std::vector<T> v(n);
    for (auto& e : v) e = T(log_scale ? uniform(gen) : normal(gen));
    return v;
  };
  const int64_t nx = batch * in, nk = in * out, ny = batch * out;
  const std::vector<T> x = draw(nx, false), z = draw(nx, false), g_xz = draw(nx, false),
                       g_x2 = draw(nx, false), ls = draw(nk, true), g_k = draw(nk, false),
                       mu = draw(ny, false), g = draw(ny, false), b = draw(out, false),
                       blv = draw(out, true);
  std::vector<T> var(ny);
  for (auto& v : var) v = T(std::fabs(normal(gen)));
  const mnf::NormalStream noise = mnf::StreamFromSeed(3, 5);

  std::vector<T> xz(nx), x2(nx), dx(nx), dz(nx), sq(nk), dls(nk), o(ny), sd(ny), dv(ny);
  std::vector<T> db(out, T(0)), dblv(out, T(0));
  for (int64_t i = 0; i < nx; ++i) {
    xz[i] = x[i] * z[i];
    x2[i] = x[i] * x[i];
    dx[i] = g_xz[i] * z[i] + T(2) * x[i] * g_x2[i];
    dz[i] = g_xz[i] * x[i];
  }
  for (int64_t i = 0; i < nk; ++i) {
    sq[i] = mnf::ClippedSquare<T>(ls[i], log_max);
    dls[i] = T(2) * g_k[i] * sq[i] * mnf::ClipMask<T>(ls[i], log_max);
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
  T *d_ls = ToDevice(ls), *d_gk = ToDevice(g_k), *d_mu = ToDevice(mu), *d_var = ToDevice(var);
  T *d_g = ToDevice(g), *d_b = ToDevice(b), *d_blv = ToDevice(blv);
  T *r_xz = Poisoned<T>(nx), *r_x2 = Poisoned<T>(nx), *r_dx = Poisoned<T>(nx);
  T *r_dz = Poisoned<T>(nx), *r_sq = Poisoned<T>(nk), *r_dls = Poisoned<T>(nk);
  T *r_o = Poisoned<T>(ny), *r_sd = Poisoned<T>(ny), *r_dv = Poisoned<T>(ny);
  T *r_db = Poisoned<T>(out), *r_dblv = Poisoned<T>(out);
  using namespace mnf::cuda;
  CHECK_CUDA(LaunchDenseScaledInputs<T>(nullptr, nx, d_x, d_z, r_xz, r_x2));
  CHECK_CUDA(LaunchDenseScaledInputsGrad<T>(nullptr, nx, d_gxz, d_gx2, d_x, d_z, r_dx, r_dz));
  CHECK_CUDA(LaunchClippedVariance<T>(nullptr, nk, d_ls, log_max, r_sq));
  CHECK_CUDA(LaunchClippedVarianceGrad<T>(nullptr, nk, d_gk, d_ls, r_sq, log_max, r_dls));
  CHECK_CUDA(LaunchDenseEpilogue<T>(nullptr, batch, out, d_mu, d_var, d_b, d_blv, two_log_max,
                                    noise, r_o, r_sd));
  CHECK_CUDA(LaunchDenseEpilogueGrad<T>(nullptr, batch, out, d_g, r_sd, d_blv, two_log_max, noise,
                                        r_dv, r_db, r_dblv));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double errs[] = {
      MaxDiff(ToHost(r_xz, nx), xz), MaxDiff(ToHost(r_x2, nx), x2),
      MaxDiff(ToHost(r_dx, nx), dx), MaxDiff(ToHost(r_dz, nx), dz),
      MaxDiff(ToHost(r_sq, nk), sq), MaxDiff(ToHost(r_dls, nk), dls),
      MaxDiff(ToHost(r_o, ny), o),   MaxDiff(ToHost(r_sd, ny), sd),
      MaxDiff(ToHost(r_dv, ny), dv),
      MaxDiff(ToHost(r_db, out), db) / batch, MaxDiff(ToHost(r_dblv, out), dblv) / batch};
  for (T* p : {d_x, d_z, d_gxz, d_gx2, d_ls, d_gk, d_mu, d_var, d_g, d_b, d_blv, r_xz, r_x2, r_dx,
               r_dz, r_sq, r_dls, r_o, r_sd, r_dv, r_db, r_dblv}) {
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
  return ok ? 0 : 1;
}
