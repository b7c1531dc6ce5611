// Vectorized CPU generation of the stateless normal stream of local_reparam_math.h.
//
// FillNormal<T> writes eps of any range of flat elements. The Philox blocks are generated in
// structure-of-arrays form (AVX-512 or AVX2 intrinsics, whichever the compiler targets, else
// a loop the compiler vectorizes), and the float Box-Muller transform runs as branch-free
// polynomials (log, sin and cos on the ranges Box-Muller needs) that vectorize, instead of
// libm calls. The scalar NormalAt of local_reparam_math.h (bit-equal to
// tf.random.stateless_normal) is the reference: float results agree to ~1e-7 relative.
// Building needs -fno-math-errno -fno-trapping-math (setup.py, BUILD) for the loops to
// vectorize.
#ifndef TFP_MNF_CSRC_COMMON_CPU_NOISE_H_
#define TFP_MNF_CSRC_COMMON_CPU_NOISE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "Eigen/Core"
#include "common/local_reparam_math.h"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace mnf {

// Elements per chunk of the CPU kernels: eps of one chunk lives in a stack buffer.
constexpr int64_t kChunk = 1024;

// Philox blocks are generated in groups of kBlockGroup (the SIMD loop's width), a chunk's
// blocks rounded up: a double chunk needs kChunk / 2 + 1 blocks, a float chunk a quarter.
constexpr int kBlockGroup = 32;
constexpr int kMaxBlocks = (kChunk / 2 + 1 + kBlockGroup - 1) / kBlockGroup * kBlockGroup;

// Philox blocks of one chunk, word w of block l in words[w][l] (structure of arrays).
struct PhiloxWords {
  alignas(64) uint32_t w[4][kMaxBlocks];
};

#if defined(__AVX512F__)
// One Philox round (PhiloxRound) on 16 blocks: the 32 x 32 -> 64-bit products as even/odd
// lane multiplies (high words) and a low multiply.
inline void PhiloxRound16(__m512i& c0, __m512i& c1, __m512i& c2, __m512i& c3, __m512i k0,
                          __m512i k1) {
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m512i hi0 = _mm512_mask_blend_epi32(
      0xAAAA, _mm512_srli_epi64(_mm512_mul_epu32(c0, m0), 32),
      _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0));
  const __m512i hi1 = _mm512_mask_blend_epi32(
      0xAAAA, _mm512_srli_epi64(_mm512_mul_epu32(c2, m1), 32),
      _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1));
  const __m512i lo0 = _mm512_mullo_epi32(c0, m0);
  const __m512i lo1 = _mm512_mullo_epi32(c2, m1);
  c0 = _mm512_ternarylogic_epi32(hi1, c1, k0, 0x96);  // hi1 ^ c1 ^ k0
  c2 = _mm512_ternarylogic_epi32(hi0, c3, k1, 0x96);
  c1 = lo1;
  c3 = lo0;
}
#elif defined(__AVX2__)
// One Philox round (PhiloxRound) on 8 blocks, as PhiloxRound16 with AVX2 (blend, xor).
inline void PhiloxRound8(__m256i& c0, __m256i& c1, __m256i& c2, __m256i& c3, __m256i k0,
                         __m256i k1) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(_mm256_mul_epu32(c0, m0), 32),
                                         _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0), 0xAA);
  const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(_mm256_mul_epu32(c2, m1), 32),
                                         _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1), 0xAA);
  const __m256i lo0 = _mm256_mullo_epi32(c0, m0);
  const __m256i lo1 = _mm256_mullo_epi32(c2, m1);
  c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), k0);
  c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), k1);
  c1 = lo1;
  c3 = lo0;
}
#endif

// The ten rounds of Philox10 on blocks [begin, end) of `words`, key (k0, k1).
inline void PhiloxRounds(PhiloxWords& words, int begin, int end, uint32_t k0, uint32_t k1) {
  uint32_t* __restrict c0 = words.w[0];
  uint32_t* __restrict c1 = words.w[1];
  uint32_t* __restrict c2 = words.w[2];
  uint32_t* __restrict c3 = words.w[3];
#if defined(__AVX512F__)
  // Two vectors of 16 at a time (kBlockGroup): independent multiplies in flight.
  for (; begin + kBlockGroup <= end; begin += kBlockGroup) {
    __m512i a[4], b[4];
    for (int w = 0; w < 4; ++w) {
      a[w] = _mm512_loadu_si512(words.w[w] + begin);
      b[w] = _mm512_loadu_si512(words.w[w] + begin + 16);
    }
    uint32_t r0 = k0, r1 = k1;
    for (int round = 0; round < 10; ++round) {
      const __m512i key0 = _mm512_set1_epi32(static_cast<int>(r0));
      const __m512i key1 = _mm512_set1_epi32(static_cast<int>(r1));
      PhiloxRound16(a[0], a[1], a[2], a[3], key0, key1);
      PhiloxRound16(b[0], b[1], b[2], b[3], key0, key1);
      PhiloxBumpKey(r0, r1);
    }
    for (int w = 0; w < 4; ++w) {
      _mm512_storeu_si512(words.w[w] + begin, a[w]);
      _mm512_storeu_si512(words.w[w] + begin + 16, b[w]);
    }
  }
#elif defined(__AVX2__)
  // Four vectors of 8 at a time (kBlockGroup): independent multiplies in flight.
  for (; begin + kBlockGroup <= end; begin += kBlockGroup) {
    __m256i v[4][4];
    for (int w = 0; w < 4; ++w) {
      for (int q = 0; q < 4; ++q) {
        v[q][w] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words.w[w] + begin + 8 * q));
      }
    }
    uint32_t r0 = k0, r1 = k1;
    for (int round = 0; round < 10; ++round) {
      const __m256i key0 = _mm256_set1_epi32(static_cast<int>(r0));
      const __m256i key1 = _mm256_set1_epi32(static_cast<int>(r1));
      for (int q = 0; q < 4; ++q) PhiloxRound8(v[q][0], v[q][1], v[q][2], v[q][3], key0, key1);
      PhiloxBumpKey(r0, r1);
    }
    for (int w = 0; w < 4; ++w) {
      for (int q = 0; q < 4; ++q) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(words.w[w] + begin + 8 * q), v[q][w]);
      }
    }
  }
#endif
  for (int round = 0; round < 10; ++round) {
    for (int l = begin; l < end; ++l) PhiloxRound(c0[l], c1[l], c2[l], c3[l], k0, k1);
    PhiloxBumpKey(k0, k1);
  }
}

// Philox blocks [group0, group0 + count) of the stream into `words` (bit-equal to
// StreamBlock), count rounded up to whole groups of kBlockGroup. The counters are
// consecutive in their low word unless it wraps in the range.
inline void StreamBlocks(const NormalStream& s, uint64_t group0, int count, PhiloxWords& words) {
  count = (count + kBlockGroup - 1) / kBlockGroup * kBlockGroup;
  const PhiloxBlock base = StreamCounter(s, group0);
  if (base.v[0] <= UINT32_MAX - static_cast<uint32_t>(count)) {
    for (int l = 0; l < count; ++l) {
      words.w[0][l] = base.v[0] + static_cast<uint32_t>(l);
      words.w[1][l] = base.v[1];
      words.w[2][l] = base.v[2];
      words.w[3][l] = base.v[3];
    }
  } else {
    for (int l = 0; l < count; ++l) {
      const PhiloxBlock c = StreamCounter(s, group0 + l);
      for (int w = 0; w < 4; ++w) words.w[w][l] = c.v[w];
    }
  }
  PhiloxRounds(words, 0, count, s.key.k[0], s.key.k[1]);
}

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint32_t FloatToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// log(u) for a normal float u > 0 (Box-Muller's u in [1e-7, 1)): u = m 2^e with
// m in [sqrt(1/2), sqrt(2)), log(m) = log(1 + x) by the minimax polynomial of Cephes' logf.
inline float VectorLog(float u) {
  const uint32_t bits = FloatToBits(u);
  const float mantissa = BitsToFloat((bits & 0x007fffffu) | 0x3f000000u);  // [1/2, 1)
  const bool below = mantissa < 0.707106781186547524f;
  const float e = static_cast<float>(static_cast<int>(bits >> 23) - 126 - (below ? 1 : 0));
  const float x = (below ? mantissa + mantissa : mantissa) - 1.0f;
  const float x2 = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  const float y = p * x * x2 - 2.12194440e-4f * e - 0.5f * x2;
  return x + y + 0.693359375f * e;
}

// sin(v) and cos(v) for v in [0, 2 pi]: v = q pi/2 + r, |r| <= pi/4 (three-part pi/2), the
// minimax polynomials of Cephes' sinf / cosf on r, then the quadrant's swap and signs.
inline void VectorSinCos(float v, float* sin_v, float* cos_v) {
  const int q = static_cast<int>(v * 0.636619772367581f + 0.5f);
  const float fq = static_cast<float>(q);
  const float r = ((v - fq * 1.5703125f) - fq * 4.837512969970703125e-4f) -
                  fq * 7.54978995489188216e-8f;
  const float r2 = r * r;
  const float s =
      ((-1.9515295891e-4f * r2 + 8.3321608736e-3f) * r2 - 1.6666654611e-1f) * r2 * r + r;
  const float c = ((2.443315711809948e-5f * r2 - 1.388731625493765e-3f) * r2 +
                   4.166664568298827e-2f) * r2 * r2 - 0.5f * r2 + 1.0f;
  const bool odd = (q & 1) != 0;
  const float sin_abs = odd ? c : s;
  const float cos_abs = odd ? s : c;
  *sin_v = (q & 2) != 0 ? -sin_abs : sin_abs;
  *cos_v = ((q + 1) & 2) != 0 ? -cos_abs : cos_abs;
}

// Box-Muller on words (w0, w1), as NormalTraits<float>::Pair and BoxMuller with the vector
// log and sin/cos: element 2p = radius sin(angle), 2p + 1 = radius cos(angle).
inline void BoxMullerWords(uint32_t w0, uint32_t w1, float* even, float* odd) {
  float u = UnitFloat(w0);
  u = u < 1.0e-7f ? 1.0e-7f : u;
  const float angle = static_cast<float>(2.0 * M_PI * static_cast<double>(UnitFloat(w1)));
  const float radius = std::sqrt(-2.0f * VectorLog(u));
  float sin_v, cos_v;
  VectorSinCos(angle, &sin_v, &cos_v);
  *even = radius * sin_v;
  *odd = radius * cos_v;
}

// Writes eps of flat elements [first, first + count) (count <= kChunk) to eps[0, count).
template <typename T>
void FillNormal(const NormalStream& s, int64_t first, int64_t count, T* eps);

// float: four elements per block, words (0, 1) and (2, 3) the two Box-Muller pairs.
template <>
inline void FillNormal<float>(const NormalStream& s, int64_t first, int64_t count, float* eps) {
  PhiloxWords words;
  alignas(64) float normal[4 * kMaxBlocks];
  const uint64_t group0 = static_cast<uint64_t>(first) / 4;
  const int blocks =
      static_cast<int>((static_cast<uint64_t>(first + count) + 3) / 4 - group0);
  StreamBlocks(s, group0, blocks, words);
  for (int l = 0; l < blocks; ++l) {
    BoxMullerWords(words.w[0][l], words.w[1][l], &normal[4 * l], &normal[4 * l + 1]);
    BoxMullerWords(words.w[2][l], words.w[3][l], &normal[4 * l + 2], &normal[4 * l + 3]);
  }
  std::copy_n(normal + (first - static_cast<int64_t>(group0) * 4), count, eps);
}

// double: two elements per block (u from words 0-1, the angle from words 2-3), Box-Muller
// on Eigen packets.
template <>
inline void FillNormal<double>(const NormalStream& s, int64_t first, int64_t count,
                               double* eps) {
  using Array = Eigen::Array<double, Eigen::Dynamic, 1>;
  PhiloxWords words;
  alignas(64) double u[kMaxBlocks];
  alignas(64) double angle[kMaxBlocks];
  alignas(64) double radius[kMaxBlocks];
  alignas(64) double cos_part[kMaxBlocks];
  alignas(64) double normal[2 * kMaxBlocks];
  const uint64_t group0 = static_cast<uint64_t>(first) / 2;
  const int blocks =
      static_cast<int>((static_cast<uint64_t>(first + count) + 1) / 2 - group0);
  StreamBlocks(s, group0, blocks, words);
  for (int l = 0; l < blocks; ++l) {
    const PhiloxBlock block{{words.w[0][l], words.w[1][l], words.w[2][l], words.w[3][l]}};
    NormalTraits<double>::Pair(block, 0, &u[l], &angle[l]);
  }
  const Eigen::Map<const Array> angle_map(angle, blocks);
  Eigen::Map<Array> radius_map(radius, blocks);
  radius_map = (-2.0 * Eigen::Map<const Array>(u, blocks).log()).sqrt();
  Eigen::Map<Array>(cos_part, blocks) = radius_map * angle_map.cos();
  radius_map *= angle_map.sin();
  for (int l = 0; l < blocks; ++l) {
    normal[2 * l] = radius[l];
    normal[2 * l + 1] = cos_part[l];
  }
  std::copy_n(normal + (first - static_cast<int64_t>(group0) * 2), count, eps);
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_COMMON_CPU_NOISE_H_
