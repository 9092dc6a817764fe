// Weight gradient of a stride-1 convolution,
//   dW[oc][ic,ky,kx] += sum over (n, q) of dyPad[n][oc][q] * xPad[n][ic][q + ky*Wp + kx],
// as dot products along the padded output grid q (conv_padded.h): dy is copied
// into rows of pitch Wp with zeros in the junk columns, so every vector load is
// full and unmasked and nothing needs transposing. A register tile holds
// WR output channels x WJ taps as vector accumulators over a whole chunk of
// images, reduced once at the end of the chunk.
#pragma once
#include <cstdint>

#include "../gemm/gemm_body.h"
#include "../simd/vector_loop.h"
#include "conv.h"
#include "conv_padded.h"

namespace bnkit {
namespace {

template <class V>
struct WgradTile {
  // AVX-512 / NEON (32 registers): 4 x 6 accumulators + 4 dy + 1 x.
  // AVX2 (16): 3 x 3 + 3 + 1. Scalar: 2 x 2.
  static constexpr int kRows = V::kLanes == 8 ? 3 : V::kLanes == 1 ? 2 : 4;
  static constexpr int kTaps = V::kLanes == 8 ? 3 : V::kLanes == 1 ? 2 : 6;
};

// dy planes on the padded grid: rows of pitch Wp, zero beyond outW and up to
// a whole number of vectors.
template <class V>
int64_t paddedDyPitch(const PaddedGeometry& g) {
  return roundUp(g.grid, V::kLanes);
}

// Also returns each plane's sum in planeSums (the bias gradient), taken from
// the copy while it is in L1.
template <class V>
void padDy(const float* dy, int64_t planes, int64_t outH, int64_t outW, const PaddedGeometry& g, int64_t pitch,
           float* dst, float* planeSums) {
  using Reg = typename V::Reg;
  for (int64_t c = 0; c < planes; ++c) {
    const float* src = dy + c * outH * outW;
    float* out = dst + c * pitch;
    for (int64_t y = 0; y < outH; ++y) {
      copyFloats<V>(out + y * g.Wp, src + y * outW, outW);
      zeroFloats<V>(out + y * g.Wp + outW, g.Wp - outW);
    }
    zeroFloats<V>(out + g.grid, pitch - g.grid);
    Reg acc[4];
    simd::zero4<V>(acc);
    simd::vectorLoop<V>(pitch, [&](auto full, int slot, int64_t i, int64_t valid) {
      acc[slot] = V::add(acc[slot], simd::loadN<V>(full, out + i, valid, 0.0f));
    });
    planeSums[c] = simd::reduceAdd4<V>(acc);
  }
}

// Images per chunk: a function of the shape only, a power of two so chunks
// spread evenly over threads. Larger chunks amortize the final reductions of
// the vector accumulators; 2 MiB of padded copies measured best on conv2.
template <class V>
int64_t wgradChunkImages(const ConvShape& s) {
  const PaddedGeometry g = paddedGeometry<V>(s);
  const int64_t perImage = s.outC * paddedDyPitch<V>(g) + s.inC * g.pitch;
  int64_t images = 1;
  while (images * 2 <= s.batch && images * 2 * perImage <= (int64_t(1) << 19)) images *= 2;
  return images;
}

// One chunk: partial[oc][j] = its sum (overwritten).
template <class V>
void wgradChunk(const ConvShape& s, const PaddedGeometry& g, const float* dyPad, const float* xPad, int64_t images,
                float* partial) {
  using Reg = typename V::Reg;
  constexpr int WR = WgradTile<V>::kRows, WJ = WgradTile<V>::kTaps, L = V::kLanes;
  const int64_t taps = s.kh * s.kw, N = s.patch(), dyPitch = paddedDyPitch<V>(g);
  const int64_t dyImage = s.outC * dyPitch, xImage = s.inC * g.pitch;
  for (int64_t oc0 = 0; oc0 < s.outC; oc0 += WR) {
    for (int64_t j0 = 0; j0 < N; j0 += WJ) {
      // Rows/taps past the edge repeat the first one; their sums are dropped.
      int64_t dyOffset[WR], xOffset[WJ];
      for (int r = 0; r < WR; ++r) dyOffset[r] = (oc0 + r < s.outC ? oc0 + r : oc0) * dyPitch;
      for (int t = 0; t < WJ; ++t) {
        const int64_t j = j0 + t < N ? j0 + t : j0, tap = j % taps;
        xOffset[t] = (j / taps) * g.pitch + (tap / s.kw) * g.Wp + tap % s.kw;
      }
      Reg acc[WR][WJ];
#pragma GCC unroll 8
      for (int r = 0; r < WR; ++r)
#pragma GCC unroll 8
        for (int t = 0; t < WJ; ++t) acc[r][t] = V::zero();
      for (int64_t n = 0; n < images; ++n) {
        const float* dyp[WR];
        const float* xp[WJ];
        for (int r = 0; r < WR; ++r) dyp[r] = dyPad + n * dyImage + dyOffset[r];
        for (int t = 0; t < WJ; ++t) xp[t] = xPad + n * xImage + xOffset[t];
        for (int64_t q = 0; q < dyPitch; q += L) {
          Reg d[WR];
#pragma GCC unroll 8
          for (int r = 0; r < WR; ++r) d[r] = V::load(dyp[r] + q);
#pragma GCC unroll 8
          for (int t = 0; t < WJ; ++t) {
            const Reg xv = V::load(xp[t] + q);
#pragma GCC unroll 8
            for (int r = 0; r < WR; ++r) acc[r][t] = V::fma(d[r], xv, acc[r][t]);
          }
        }
      }
      for (int r = 0; r < WR && oc0 + r < s.outC; ++r)
        for (int t = 0; t < WJ && j0 + t < N; ++t) partial[(oc0 + r) * N + j0 + t] = V::reduceAdd(acc[r][t]);
    }
  }
}

}  // namespace
}  // namespace bnkit
