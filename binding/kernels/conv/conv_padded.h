// Stride-1 convolutions on zero-padded copies of the input planes. With row
// pitch Wp = W + 2*padW, the tap (ky, kx) of output position q = oy*Wp + ox is
// input position q + ky*Wp + kx: every im2col row becomes one contiguous slice
// of the padded plane. Outputs are computed on the padded grid (columns
// ox >= outW are junk and dropped), trading Wp/outW extra work for packing
// with plain vector copies and dot products without masks.
#pragma once
#include <cstdint>

#include "../gemm/gemm_body.h"
#include "../simd/vector_loop.h"
#include "conv.h"

namespace bnkit {
namespace {

struct PaddedGeometry {
  int64_t Hp = 0, Wp = 0;
  int64_t pitch = 0;  // floats per padded plane, with slack for vector over-reads
  int64_t grid = 0;   // outH * Wp: output positions on the padded grid
};

template <class V>
PaddedGeometry paddedGeometry(const ConvShape& s) {
  PaddedGeometry g;
  g.Hp = s.H + 2 * s.padH;
  g.Wp = s.W + 2 * s.padW;
  g.grid = s.outH() * g.Wp;
  // Reads reach at most roundUp(grid, NR) + (kh-1)*Wp + kw-1 < Hp*Wp + NR + kw.
  g.pitch = roundUp(g.Hp * g.Wp + GemmTile<V>::kNR + V::kLanes + s.kw, V::kLanes);
  return g;
}

template <class V>
inline void copyFloats(float* dst, const float* src, int64_t n) {
  simd::vectorLoop<V>(n, [&](auto full, int, int64_t i, int64_t valid) {
    simd::storeN<V>(full, dst + i, simd::loadN<V>(full, src + i, valid, 0.0f), valid);
  });
}

template <class V>
inline void zeroFloats(float* dst, int64_t n) {
  simd::vectorLoop<V>(n, [&](auto full, int, int64_t i, int64_t valid) { simd::storeN<V>(full, dst + i, V::zero(), valid); });
}

// Copies `channels` planes of H x W into padded planes (zeros around and in the slack).
template <class V>
void padPlanes(const float* src, int64_t channels, int64_t H, int64_t W, int64_t padH, int64_t padW,
               const PaddedGeometry& g, float* dst) {
  for (int64_t c = 0; c < channels; ++c) {
    const float* plane = src + c * H * W;
    float* out = dst + c * g.pitch;
    zeroFloats<V>(out, padH * g.Wp + padW);
    for (int64_t y = 0; y < H; ++y) {
      float* row = out + (y + padH) * g.Wp + padW;
      copyFloats<V>(row, plane + y * W, W);
      // right padding of this row + left padding of the next one
      zeroFloats<V>(row + W, 2 * padW);
    }
    zeroFloats<V>(out + (H + padH) * g.Wp + padW, g.pitch - ((H + padH) * g.Wp + padW));
  }
}

// im2col of a padded image as a GEMM B operand over the padded output grid:
// row k = (ic, ky, kx) is the slice starting at ic*pitch + ky*Wp + kx, read in
// place (no sliver copy) through a table of those offsets.
struct PaddedColB {
  const float* padded;
  const int32_t* rowOffsets;  // [K]

  OffsetRows operator()(float*, int64_t j0, int64_t k0, int64_t) const {
    return OffsetRows{padded + j0, rowOffsets + k0};
  }
};

inline void paddedRowOffsets(const ConvShape& s, const PaddedGeometry& g, int32_t* offsets) {
  for (int64_t ic = 0, k = 0; ic < s.inC; ++ic)
    for (int64_t ky = 0; ky < s.kh; ++ky)
      for (int64_t kx = 0; kx < s.kw; ++kx) offsets[k++] = static_cast<int32_t>(ic * g.pitch + ky * g.Wp + kx);
}

}  // namespace
}  // namespace bnkit
