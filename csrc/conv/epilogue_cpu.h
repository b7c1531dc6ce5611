// The per-example sampling step of the conv epilogue on the CPU, shared by
// MnfConvLocalReparamEpilogue (epilogue_cpu.cc) and MnfConv2DLocalReparam (conv2d_cpu.cc):
// out = mu * z[c] + sqrt(var) * eps over one example's channels-last [positions, channels]
// block, eps generated piece by piece, each piece whole rows of channels so that z is a tiled
// vector and every pass vectorizes (Louizos & Welling 2017, Algorithm 1).
#ifndef TFP_MNF_CSRC_CONV_EPILOGUE_CPU_H_
#define TFP_MNF_CSRC_CONV_EPILOGUE_CPU_H_

#include <algorithm>
#include <cstdint>

#include "common/cpu_noise.h"
#include "common/cpu_utils.h"

namespace mnf {

// The pieces of one example's [positions, channels] block, each at most kChunk elements and
// aligned to its rows: whole rows when channels <= kChunk (channel 0 first), else pieces of
// one row. Calls fn(offset, count, channel of the first element) in order.
template <typename Fn>
void ForExamplePieces(int64_t per_example, int64_t channels, Fn fn) {
  if (channels <= kChunk) {
    const int64_t step = (kChunk / channels) * channels;
    for (int64_t off = 0; off < per_example; off += step) {
      fn(off, std::min(step, per_example - off), int64_t{0});
    }
    return;
  }
  for (int64_t off = 0; off < per_example;) {
    const int64_t channel = off % channels;
    const int64_t count = std::min(kChunk, channels - channel);
    fn(off, count, channel);
    off += count;
  }
}

// z[b, :] laid out like a piece: rows of `channels` tiled up to kChunk when they fit, so a
// piece's z is `tile + channel` either way.
template <typename T>
struct ZRow {
  alignas(64) T tile[kChunk];
  const T* row = nullptr;

  ZRow(const T* z_b, int64_t channels) {
    if (channels > kChunk) {
      row = z_b;
      return;
    }
    for (int64_t k = 0; k < (kChunk / channels) * channels; ++k) tile[k] = z_b[k % channels];
    row = tile;
  }
};

// out_b = mu_b * z_b + sqrt(var_b) * eps over one example's [positions, channels] block of
// `per_example` elements, eps the stream's elements from flat index `first` on.
template <typename T>
void SampleExample(const NormalStream& stream, int64_t first, int64_t per_example,
                   int64_t channels, const T* mu_b, const T* var_b, const T* z_b, T* out_b) {
  alignas(64) T eps[kChunk];
  const ZRow<T> z_row(z_b, channels);
  ForExamplePieces(per_example, channels, [&](int64_t off, int64_t count, int64_t channel) {
    FillNormal<T>(stream, first + off, count, eps);
    // out = mu z + sqrt(var) eps (Sample on packets, Algorithm 1).
    VectorMap<T>(out_b + off, count) =
        ConstVectorMap<T>(mu_b + off, count) * ConstVectorMap<T>(z_row.row + channel, count) +
        ConstVectorMap<T>(var_b + off, count).sqrt() * ConstVectorMap<T>(eps, count);
  });
}

}  // namespace mnf

#endif  // TFP_MNF_CSRC_CONV_EPILOGUE_CPU_H_
