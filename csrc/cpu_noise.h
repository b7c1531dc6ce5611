// Vectorized CPU generation of the stateless normal stream of local_reparam_math.h.
#ifndef TFP_MNF_CSRC_CPU_NOISE_H_
#define TFP_MNF_CSRC_CPU_NOISE_H_

#include <algorithm>
#include <cstdint>

#include "Eigen/Core"
#include "local_reparam_math.h"

namespace mnf {

// Elements per chunk of the CPU kernels: eps of one chunk lives in a stack buffer.
constexpr int64_t kChunk = 1024;

// Writes eps of flat elements [first, first + count) (count <= kChunk) to eps[0, count).
// Philox runs scalar; log, sqrt, sin and cos run on Eigen packets (float-tolerance equal to
// the scalar NormalAt, which is bit-equal to tf.random.stateless_normal).
template <typename T>
void FillNormal(const NormalStream& s, int64_t first, int64_t count, T* eps) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  constexpr int kPairsPerBlock = NormalTraits<T>::kGroup / 2;
  alignas(64) T u[kChunk / 2 + 1];
  alignas(64) T angle[kChunk / 2 + 1];
  alignas(64) T sin_part[kChunk / 2 + 1];
  alignas(64) T cos_part[kChunk / 2 + 1];
  const int64_t pair0 = first / 2;
  const int64_t npairs = (first + count - 1) / 2 - pair0 + 1;
  uint64_t block_index = ~uint64_t{0};
  PhiloxBlock block{};
  for (int64_t j = 0; j < npairs; ++j) {
    const uint64_t p = static_cast<uint64_t>(pair0 + j);
    const uint64_t g = p / kPairsPerBlock;
    if (g != block_index) {
      block = StreamBlock(s, g);
      block_index = g;
    }
    NormalTraits<T>::Pair(block, static_cast<int>(p % kPairsPerBlock), &u[j], &angle[j]);
  }
  // Box-Muller on contiguous packets, then interleaved: element 2p = sin, 2p + 1 = cos.
  const Eigen::Map<const Array> u_map(u, npairs);
  const Eigen::Map<const Array> angle_map(angle, npairs);
  Eigen::Map<Array> sin_map(sin_part, npairs);
  Eigen::Map<Array> cos_map(cos_part, npairs);
  sin_map = (T(-2) * u_map.log()).sqrt();
  cos_map = sin_map * angle_map.cos();
  sin_map *= angle_map.sin();
  for (int64_t k = 0; k < count; ++k) {
    const int64_t e = first + k - 2 * pair0;
    eps[k] = (e & 1) ? cos_part[e >> 1] : sin_part[e >> 1];
  }
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CPU_NOISE_H_
