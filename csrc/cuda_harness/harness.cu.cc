// Standalone check of the CUDA conv-epilogue kernels against the scalar CPU maths of
// local_reparam_math.h on random data (float and double). Exit status 0 when every output
// and gradient agrees within tolerance; prints the worst differences.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
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

template <typename T>
double MaxDiff(const std::vector<T>& a, const std::vector<T>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::fmax(worst, std::fabs(double(a[i]) - b[i]));
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
  T *d_out = ToDevice(out), *d_dmu = ToDevice(dmu), *d_dvar = ToDevice(dvar), *d_dz = ToDevice(dz);
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

}  // namespace

int main() {
  bool ok = true;
  ok &= Check<float>(128, 8 * 8, 50, 1e-5);
  ok &= Check<float>(3, 7, 5, 1e-5);
  ok &= Check<float>(1, 1, 1, 1e-5);
  ok &= Check<double>(16, 24 * 24, 20, 1e-12);
  ok &= Check<double>(3, 7, 5, 1e-12);
  return ok ? 0 : 1;
}
