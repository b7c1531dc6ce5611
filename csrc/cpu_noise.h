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

// Philox blocks [group0, group0 + count) of the stream, word w of block l in words[w][l].
// Structure-of-arrays loops over the blocks so that the compiler vectorizes the rounds
// (32 x 32 -> 64-bit products on SIMD lanes); bit-equal to StreamBlock.
template <int kMaxBlocks>
void StreamBlocks(const NormalStream& s, uint64_t group0, int count,
                  uint32_t (&words)[4][kMaxBlocks]) {
  uint32_t* __restrict c0 = words[0];
  uint32_t* __restrict c1 = words[1];
  uint32_t* __restrict c2 = words[2];
  uint32_t* __restrict c3 = words[3];
  for (int l = 0; l < count; ++l) {
    const PhiloxBlock c = StreamCounter(s, group0 + l);
    c0[l] = c.v[0];
    c1[l] = c.v[1];
    c2[l] = c.v[2];
    c3[l] = c.v[3];
  }
  uint32_t k0 = s.key.k[0];
  uint32_t k1 = s.key.k[1];
  for (int round = 0; round < 10; ++round) {
    for (int l = 0; l < count; ++l) PhiloxRound(c0[l], c1[l], c2[l], c3[l], k0, k1);
    PhiloxBumpKey(k0, k1);
  }
}

// Writes eps of flat elements [first, first + count) (count <= kChunk) to eps[0, count).
// Whole Philox blocks are generated, from the block holding `first`, on SIMD lanes
// (StreamBlocks), turned into Box-Muller inputs lane by lane and transformed with Eigen
// packets (float-tolerance equal to the scalar NormalAt, which is bit-equal to
// tf.random.stateless_normal).
template <typename T>
void FillNormal(const NormalStream& s, int64_t first, int64_t count, T* eps) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  constexpr int kGroup = NormalTraits<T>::kGroup;
  constexpr int kPairsPerBlock = kGroup / 2;
  constexpr int kMaxBlocks = kChunk / kGroup + 2;
  constexpr int kMaxPairs = kMaxBlocks * kPairsPerBlock;
  alignas(64) uint32_t words[4][kMaxBlocks];
  alignas(64) T u[kMaxPairs];
  alignas(64) T angle[kMaxPairs];
  alignas(64) T sin_part[kMaxPairs];
  alignas(64) T cos_part[kMaxPairs];
  alignas(64) T normal[2 * kMaxPairs];
  const uint64_t group0 = static_cast<uint64_t>(first) / kGroup;
  const int blocks = static_cast<int>((static_cast<uint64_t>(first + count) + kGroup - 1) / kGroup -
                                      group0);
  StreamBlocks(s, group0, blocks, words);
  for (int l = 0; l < blocks; ++l) {
    const PhiloxBlock block{{words[0][l], words[1][l], words[2][l], words[3][l]}};
    for (int h = 0; h < kPairsPerBlock; ++h) {
      NormalTraits<T>::Pair(block, h, &u[l * kPairsPerBlock + h], &angle[l * kPairsPerBlock + h]);
    }
  }
  // Box-Muller on packets: element 2p = radius sin(angle), 2p + 1 = radius cos(angle).
  const int pairs = blocks * kPairsPerBlock;
  const Eigen::Map<const Array> angle_map(angle, pairs);
  Eigen::Map<Array> sin_map(sin_part, pairs);
  Eigen::Map<Array> cos_map(cos_part, pairs);
  sin_map = (T(-2) * Eigen::Map<const Array>(u, pairs).log()).sqrt();
  cos_map = sin_map * angle_map.cos();
  sin_map *= angle_map.sin();
  for (int p = 0; p < pairs; ++p) {
    normal[2 * p] = sin_part[p];
    normal[2 * p + 1] = cos_part[p];
  }
  std::copy_n(normal + (first - static_cast<int64_t>(group0) * kGroup), count, eps);
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CPU_NOISE_H_
