// A small single-threaded GEMM for the CPU convolution functors (conv2d_cpu.cc): C (+)= A B
// on packed operands, BLIS-style. A [m, k] is packed in panels of kTileRows rows (panel t
// holds rows t * kTileRows ..., k-major: element (i, kk) at (i / kTileRows) * k * kTileRows
// + kk * kTileRows + i % kTileRows), B [k, n] in panels of kTileCols<T> columns (element
// (kk, j) at (j / kTileCols) * k * kTileCols + kk * kTileCols + j % kTileCols), both
// zero-padded. Callers may pack straight from their own layout (the convolution gathers its
// patches into B's panels, conv2d_im2col.h) or use PackA / PackB; Transpose turns a product
// back. One micro-kernel of kTileRows x 2 vector accumulators serves every shape; the
// vectors are GCC / Clang vector extensions of 32 bytes (AVX2 + FMA with -march=native,
// pairs of SSE registers otherwise). Callers split the work over the thread pool; each call
// touches only its own buffers.
#ifndef TFP_MNF_CSRC_CONV_GEMM_CPU_H_
#define TFP_MNF_CSRC_CONV_GEMM_CPU_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace mnf {
namespace gemm {

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(32)));
};

constexpr int kTileRows = 6;
template <typename T>
constexpr int kLanes = static_cast<int>(32 / sizeof(T));
template <typename T>
constexpr int kTileCols = 2 * kLanes<T>;
constexpr int64_t kDepthBlock = 256;  // k per pass of the micro-kernel: panels stay in L1/L2

inline int64_t Tiles(int64_t size, int64_t tile) { return (size + tile - 1) / tile; }

// Sizes of the packed buffers of A [m, k] and B [k, n].
template <typename T>
int64_t PackedSizeA(int64_t m, int64_t k) {
  return Tiles(m, kTileRows) * kTileRows * k;
}
template <typename T>
int64_t PackedSizeB(int64_t k, int64_t n) {
  return Tiles(n, kTileCols<T>) * kTileCols<T> * k;
}

// Offsets of element (i, kk) of packed A and (kk, j) of packed B.
inline int64_t OffsetA(int64_t i, int64_t kk, int64_t k) {
  return (i / kTileRows) * k * kTileRows + kk * kTileRows + i % kTileRows;
}
template <typename T>
int64_t OffsetB(int64_t kk, int64_t j, int64_t k) {
  return (j / kTileCols<T>)*k * kTileCols<T> + kk * kTileCols<T> + j % kTileCols<T>;
}

// Packs A [m, k]: a[i * lda + kk], or a[kk * lda + i] when `transposed` (a holds A^T).
template <typename T>
void PackA(int64_t m, int64_t k, const T* a, int64_t lda, bool transposed, T* packed) {
  std::fill(packed, packed + PackedSizeA<T>(m, k), T(0));
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = 0; kk < k; ++kk) {
      packed[OffsetA(i, kk, k)] = transposed ? a[kk * lda + i] : a[i * lda + kk];
    }
  }
}

// Packs B [k, n]: b[kk * ldb + j], or b[j * ldb + kk] when `transposed` (b holds B^T).
template <typename T>
void PackB(int64_t k, int64_t n, const T* b, int64_t ldb, bool transposed, T* packed) {
  constexpr int kC = kTileCols<T>;
  std::fill(packed, packed + PackedSizeB<T>(k, n), T(0));
  for (int64_t t = 0; t < Tiles(n, kC); ++t) {
    const int64_t cols = std::min<int64_t>(kC, n - t * kC);
    T* panel = packed + t * k * kC;
    for (int64_t kk = 0; kk < k; ++kk) {
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t col = t * kC + j;
        panel[kk * kC + j] = transposed ? b[col * ldb + kk] : b[kk * ldb + col];
      }
    }
  }
}

namespace internal {

// The tile C[rows, cols] (+)= sum over `depth` of a_panel[kk][i] * b_panel[kk][j].
template <typename T>
inline void MicroKernel(int64_t depth, const T* __restrict a_panel, const T* __restrict b_panel,
                        T* __restrict c, int64_t ldc, int64_t rows, int64_t cols, bool add) {
  using V = typename Vec<T>::type;
  constexpr int kL = kLanes<T>;
  constexpr int kC = kTileCols<T>;
  V acc[kTileRows][2];
#pragma GCC unroll 6
  for (int i = 0; i < kTileRows; ++i) acc[i][0] = acc[i][1] = V{};
  for (int64_t kk = 0; kk < depth; ++kk) {
    V b0, b1;
    std::memcpy(&b0, b_panel + kk * kC, sizeof(V));
    std::memcpy(&b1, b_panel + kk * kC + kL, sizeof(V));
    const T* a = a_panel + kk * kTileRows;
#pragma GCC unroll 6
    for (int i = 0; i < kTileRows; ++i) {
      acc[i][0] += a[i] * b0;
      acc[i][1] += a[i] * b1;
    }
  }
  if (rows == kTileRows && cols == kC) {
#pragma GCC unroll 6
    for (int i = 0; i < kTileRows; ++i) {
      T* dst = c + i * ldc;
      if (add) {
        V c0, c1;
        std::memcpy(&c0, dst, sizeof(V));
        std::memcpy(&c1, dst + kL, sizeof(V));
        acc[i][0] += c0;
        acc[i][1] += c1;
      }
      std::memcpy(dst, &acc[i][0], sizeof(V));
      std::memcpy(dst + kL, &acc[i][1], sizeof(V));
    }
    return;
  }
  alignas(64) T tile[kTileRows * kC];
  for (int i = 0; i < kTileRows; ++i) {
    std::memcpy(tile + i * kC, &acc[i][0], sizeof(V));
    std::memcpy(tile + i * kC + kL, &acc[i][1], sizeof(V));
  }
  for (int64_t i = 0; i < rows; ++i) {
    T* dst = c + i * ldc;
    const T* src = tile + i * kC;
    for (int64_t j = 0; j < cols; ++j) dst[j] = add ? dst[j] + src[j] : src[j];
  }
}

}  // namespace internal

// C[m, n] = (accumulate ? C : 0) + A B from packed A [m, k] and B [k, n]; C row-major with
// row stride ldc.
template <typename T>
void MultiplyPacked(int64_t m, int64_t n, int64_t k, const T* packed_a, const T* packed_b,
                    T* c, int64_t ldc, bool accumulate) {
  constexpr int kC = kTileCols<T>;
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) {
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    }
    return;
  }
  for (int64_t k0 = 0; k0 < k; k0 += kDepthBlock) {
    const int64_t depth = std::min(kDepthBlock, k - k0);
    const bool add = accumulate || k0 > 0;
    // One panel of B stays in L1 while the panels of A stream past it.
    for (int64_t tj = 0; tj < Tiles(n, kC); ++tj) {
      const T* b_panel = packed_b + tj * k * kC + k0 * kC;
      const int64_t cols = std::min<int64_t>(kC, n - tj * kC);
      for (int64_t ti = 0; ti < Tiles(m, kTileRows); ++ti) {
        internal::MicroKernel<T>(depth, packed_a + ti * k * kTileRows + k0 * kTileRows, b_panel,
                                 c + ti * kTileRows * ldc + tj * kC, ldc,
                                 std::min<int64_t>(kTileRows, m - ti * kTileRows), cols, add);
      }
    }
  }
}

// dst [cols, rows] = src [rows, cols] transposed; dst is written in order (src has few rows,
// whose lines stay in cache).
template <typename T>
void Transpose(const T* src, int64_t rows, int64_t cols, T* dst) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) dst[c * rows + r] = src[r * cols + c];
  }
}

}  // namespace gemm
}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_GEMM_CPU_H_
