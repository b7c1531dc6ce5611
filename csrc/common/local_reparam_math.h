// Element-wise maths of the MNF local-reparameterization ops, shared by the CPU and CUDA
// kernels and by the standalone CUDA harness (so: no TensorFlow include here).
//
// Noise: Philox 4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3")
// followed by the Box-Muller transform, arranged exactly like TensorFlow's CPU kernel of
// StatelessRandomNormalV2 behind tf.random.stateless_normal(shape, seed): the [2] seed is
// mixed into a Philox key and counter, element i of the flattened output belongs to Philox
// block i / kGroup (kGroup = 4 for float, 2 for double), so any element can be regenerated
// from its flat index alone.
//
// Reference for the sampling step: Louizos & Welling (2017), arXiv:1703.01961, Algorithm 1.
#ifndef TFP_MNF_CSRC_COMMON_LOCAL_REPARAM_MATH_H_
#define TFP_MNF_CSRC_COMMON_LOCAL_REPARAM_MATH_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MNF_HD __host__ __device__ __forceinline__
#else
#define MNF_HD inline
#endif

namespace mnf {

struct PhiloxKey {
  uint32_t k[2];
};

struct PhiloxBlock {
  uint32_t v[4];
};

// The counter-based stream of one seed: block g of the stream is Philox10(counter + g, key).
struct NormalStream {
  PhiloxKey key;
  PhiloxBlock counter;
};

// One Philox round on the counter words (c0, c1, c2, c3) with key (k0, k1).
MNF_HD void PhiloxRound(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                        uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
  const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
  c0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
  c1 = static_cast<uint32_t>(p1);
  c2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c3 = static_cast<uint32_t>(p0);
}

// The key schedule between rounds (Weyl sequence).
MNF_HD void PhiloxBumpKey(uint32_t& k0, uint32_t& k1) {
  k0 += 0x9E3779B9u;
  k1 += 0xBB67AE85u;
}

MNF_HD PhiloxBlock Philox10(PhiloxBlock c, PhiloxKey key) {
  for (int round = 0; round < 10; ++round) {
    PhiloxRound(c.v[0], c.v[1], c.v[2], c.v[3], key.k[0], key.k[1]);
    PhiloxBumpKey(key.k[0], key.k[1]);
  }
  return c;
}

// Mixes a [2] seed into the key and counter, as TensorFlow's stateless-RNG key derivation.
MNF_HD NormalStream StreamFromSeed(int64_t seed0, int64_t seed1) {
  const uint64_t s0 = static_cast<uint64_t>(seed0);
  const uint64_t s1 = static_cast<uint64_t>(seed1);
  PhiloxBlock c;
  c.v[0] = static_cast<uint32_t>(s0);
  c.v[1] = static_cast<uint32_t>(s0 >> 32);
  c.v[2] = static_cast<uint32_t>(s1);
  c.v[3] = static_cast<uint32_t>(s1 >> 32);
  PhiloxKey k;
  k.k[0] = 0x3ec8f720u;
  k.k[1] = 0x02461e29u;
  const PhiloxBlock mix = Philox10(c, k);
  NormalStream s;
  s.key.k[0] = mix.v[0];
  s.key.k[1] = mix.v[1];
  s.counter.v[0] = 0;
  s.counter.v[1] = 0;
  s.counter.v[2] = mix.v[2];
  s.counter.v[3] = mix.v[3];
  return s;
}

// Counter of block `group` of the stream (a 128-bit addition of `group`).
MNF_HD PhiloxBlock StreamCounter(const NormalStream& s, uint64_t group) {
  PhiloxBlock c = s.counter;
  const uint32_t lo = static_cast<uint32_t>(group);
  uint32_t hi = static_cast<uint32_t>(group >> 32);
  c.v[0] += lo;
  if (c.v[0] < lo) ++hi;
  c.v[1] += hi;
  if (c.v[1] < hi && ++c.v[2] == 0) ++c.v[3];
  return c;
}

// Block `group` of the stream.
MNF_HD PhiloxBlock StreamBlock(const NormalStream& s, uint64_t group) {
  return Philox10(StreamCounter(s, group), s.key);
}

// Uniform [0, 1) from the low 23 bits of x.
MNF_HD float UnitFloat(uint32_t x) {
  const uint32_t bits = (127u << 23) | (x & 0x7fffffu);
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f - 1.0f;
}

// Uniform [0, 1) from 52 bits: the low 20 bits of hi and all of lo.
MNF_HD double UnitDouble(uint32_t hi, uint32_t lo) {
  const uint64_t bits = (static_cast<uint64_t>(1023) << 52) |
                        (static_cast<uint64_t>(hi & 0xfffffu) << 32) | lo;
  double d;
  memcpy(&d, &bits, sizeof(d));
  return d - 1.0;
}

// Box-Muller works on pairs: pair p fills flat elements 2p (radius * sin) and 2p + 1
// (radius * cos). BoxMullerPair gives the pair's (u, angle): u clipped below at 1e-7.
template <typename T>
struct NormalTraits;

template <>
struct NormalTraits<float> {
  static constexpr int kGroup = 4;  // elements per Philox block
  MNF_HD static void Pair(const PhiloxBlock& b, int half, float* u, float* angle) {
    float uu = UnitFloat(b.v[2 * half]);
    if (uu < 1.0e-7f) uu = 1.0e-7f;
    *u = uu;
    *angle = static_cast<float>(2.0 * M_PI * static_cast<double>(UnitFloat(b.v[2 * half + 1])));
  }
};

template <>
struct NormalTraits<double> {
  static constexpr int kGroup = 2;
  MNF_HD static void Pair(const PhiloxBlock& b, int /*half*/, double* u, double* angle) {
    double uu = UnitDouble(b.v[0], b.v[1]);
    if (uu < 1.0e-7) uu = 1.0e-7;
    *u = uu;
    *angle = 2.0 * M_PI * UnitDouble(b.v[2], b.v[3]);
  }
};

// (u, angle) of Box-Muller pair p of the stream.
template <typename T>
MNF_HD void PairInputs(const NormalStream& s, uint64_t pair, T* u, T* angle) {
  constexpr int kPairsPerBlock = NormalTraits<T>::kGroup / 2;
  const PhiloxBlock b = StreamBlock(s, pair / kPairsPerBlock);
  NormalTraits<T>::Pair(b, static_cast<int>(pair % kPairsPerBlock), u, angle);
}

// Box-Muller: radius sqrt(-2 log u); element 2p = radius sin(angle), 2p + 1 = radius cos.
template <typename T>
MNF_HD void BoxMuller(T u, T angle, T* even, T* odd) {
  using std::cos;
  using std::log;
  using std::sin;
  using std::sqrt;
  const T radius = sqrt(T(-2) * log(u));
  *even = radius * sin(angle);
  *odd = radius * cos(angle);
}

// eps of flat elements 2p and 2p + 1 (Box-Muller pair p), as one CUDA thread computes them.
template <typename T>
MNF_HD void NormalPair(const NormalStream& s, uint64_t pair, T* even, T* odd) {
  T u, angle;
  PairInputs<T>(s, pair, &u, &angle);
  BoxMuller<T>(u, angle, even, odd);
}

// eps of flat element i, scalar reference (the CPU kernels vectorize the same maths).
template <typename T>
MNF_HD T NormalAt(const NormalStream& s, uint64_t i) {
  T even, odd;
  NormalPair<T>(s, i / 2, &even, &odd);
  return (i % 2 == 0) ? even : odd;
}

// sigma_b^2 = exp(min(bias_log_var, 2 log max_std)).
template <typename T>
MNF_HD T ClippedBiasVar(T bias_log_var, T two_log_max_std) {
  using std::exp;
  return exp(bias_log_var < two_log_max_std ? bias_log_var : two_log_max_std);
}

// Gradient mask of min(v, clip): it flows to v where v <= clip, as in tf.minimum.
template <typename T>
MNF_HD T ClipMask(T v, T clip) {
  return v <= clip ? T(1) : T(0);
}

// log sigma clipped to [lo, hi] (the kernel moments: forward pass and KL alike).
template <typename T>
MNF_HD T ClipLogStd(T log_std, T lo, T hi) {
  return log_std < lo ? lo : (log_std > hi ? hi : log_std);
}

// Gradient mask of ClipLogStd: it flows where lo <= log_std <= hi, as in tf.clip_by_value.
template <typename T>
MNF_HD T ClipLogStdMask(T log_std, T lo, T hi) {
  return (log_std >= lo && log_std <= hi) ? T(1) : T(0);
}

// d log sigma of the kernel moments (moments/moments.h): the gradient g_sq reaching
// sigma^2 = exp(2 log sigma) and g_sum reaching sum(log sigma), through the clip's mask.
template <typename T>
MNF_HD T MomentsLogStdGrad(T mask, T variance, T g_sq, T g_sum) {
  return mask * (T(2) * variance * g_sq + g_sum);
}

// out = mu + sqrt(var) eps, written as mu + std eps (Algorithm 1, local reparameterization).
template <typename T>
MNF_HD T Sample(T mu, T std, T eps) {
  return mu + std * eps;
}

// d out / d var = eps / (2 std).
template <typename T>
MNF_HD T VarGrad(T grad, T std, T eps) {
  return grad * eps / (T(2) * std);
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_COMMON_LOCAL_REPARAM_MATH_H_
