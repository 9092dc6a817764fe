// GEMM operand packers that read convolution tensors in place (implicit
// im2col): they write the sliver/panel formats of gemm_body.h directly, so no
// column matrix is ever materialized.
#pragma once
#include <cstdint>

#include "../gemm/gemm_body.h"
#include "conv.h"

namespace bnkit {
namespace {

// im2col of one image as a GEMM B operand: row k = (ic, ky, kx), column
// p = (oy, ox). A sliver's NR columns are cut into runs that stay on one output
// row; with strideW == 1 each run is one contiguous copy of an input row,
// clipped against the zero padding.
template <class V>
struct ImplicitColB {
  const float* image;  // [inC, H, W]
  const ConvShape* s;
  int64_t outW, P;

  PackedRows operator()(float* dst, int64_t j0, int64_t k0, int64_t kc) const {
    constexpr int NR = GemmTile<V>::kNR;
    const int64_t cols = minI(NR, P - j0), H = s->H, W = s->W, kw = s->kw, sw = s->strideW;
    int64_t runStart[NR + 1], runOy[NR], runOx[NR];
    int runs = 0;
    for (int64_t c = 0, p = j0; c < cols; ++runs) {
      const int64_t oy = p / outW, ox = p % outW, len = minI(cols - c, outW - ox);
      runStart[runs] = c;
      runOy[runs] = oy * s->strideH - s->padH;
      runOx[runs] = ox * sw - s->padW;
      c += len;
      p += len;
    }
    runStart[runs] = cols;
    int64_t ic = k0 / (s->kh * kw), ky = (k0 / kw) % s->kh, kx = k0 % kw;
    for (int64_t k = 0; k < kc; ++k) {
      const float* plane = image + ic * H * W;
      float* d = dst + k * NR;
      for (int r = 0; r < runs; ++r) {
        const int64_t c0 = runStart[r], len = runStart[r + 1] - c0, iy = runOy[r] + ky, ix0 = runOx[r] + kx;
        float* out = d + c0;
        if (iy < 0 || iy >= H) {
          for (int64_t c = 0; c < len; ++c) out[c] = 0.0f;
        } else if (sw == 1) {
          // Columns c with 0 <= ix0 + c < W come from the row, the rest is padding.
          const int64_t lo = ix0 < 0 ? minI(-ix0, len) : 0, hi = W - ix0 < len ? (W - ix0 > lo ? W - ix0 : lo) : len;
          const float* row = plane + iy * W;
          for (int64_t c = 0; c < lo; ++c) out[c] = 0.0f;
          for (int64_t c = lo; c < hi; ++c) out[c] = row[ix0 + c];
          for (int64_t c = hi; c < len; ++c) out[c] = 0.0f;
        } else {
          const float* row = plane + iy * W;
          for (int64_t c = 0; c < len; ++c) {
            const int64_t ix = ix0 + c * sw;
            out[c] = ix >= 0 && ix < W ? row[ix] : 0.0f;
          }
        }
      }
      for (int64_t c = cols; c < NR; ++c) d[c] = 0.0f;
      if (++kx == kw) {
        kx = 0;
        if (++ky == s->kh) {
          ky = 0;
          ++ic;
        }
      }
    }
    return PackedRows{dst};
  }
};

// The data gradient of a stride-1 convolution is a stride-1 convolution of dy
// with the kernel flipped and its channel axes swapped:
// A'[ic][(oc, ky, kx)] = W[oc][ic][kh-1-ky][kw-1-kx].
template <class V>
struct FlippedWeightA {
  const float* weight;  // [outC, inC, kh, kw]
  const ConvShape* s;

  void operator()(float* dst, int64_t i0, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmTile<V>::kMR;
    const int64_t rows = minI(MR, s->inC - i0), taps = s->kh * s->kw;
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t kk = k0 + k, oc = kk / taps, tap = kk % taps;
      const int64_t flipped = (s->kh - 1 - tap / s->kw) * s->kw + (s->kw - 1 - tap % s->kw);
      const float* src = weight + (oc * s->inC + i0) * taps + flipped;
      float* d = dst + k * MR;
      for (int64_t r = 0; r < rows; ++r) d[r] = src[r * taps];
      for (int64_t r = rows; r < MR; ++r) d[r] = 0.0f;
    }
  }
};

// col(x)^T over a chunk of images as a GEMM B operand: row k = (image g, pixel p),
// column j = (ic, ky, kx). The general (any stride) weight-gradient path.
template <class V>
struct ImplicitColTB {
  const float* images;  // first image of the chunk
  const ConvShape* s;
  int64_t outW, P;

  PackedRows operator()(float* dst, int64_t j0, int64_t k0, int64_t kc) const {
    constexpr int NR = GemmTile<V>::kNR;
    const int64_t H = s->H, W = s->W, taps = s->kh * s->kw, cols = minI(NR, s->patch() - j0);
    const int64_t imageSize = s->inC * H * W;
    int64_t planeOffset[NR], ky[NR], kx[NR];
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t j = j0 + c, tap = j % taps;
      planeOffset[c] = (j / taps) * H * W;
      ky[c] = tap / s->kw;
      kx[c] = tap % s->kw;
    }
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t kk = k0 + k, g = kk / P, p = kk % P;
      const int64_t iyBase = (p / outW) * s->strideH - s->padH, ixBase = (p % outW) * s->strideW - s->padW;
      const float* image = images + g * imageSize;
      float* d = dst + k * NR;
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t iy = iyBase + ky[c], ix = ixBase + kx[c];
        d[c] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? image[planeOffset[c] + iy * W + ix] : 0.0f;
      }
      for (int64_t c = cols; c < NR; ++c) d[c] = 0.0f;
    }
    return PackedRows{dst};
  }
};

// dy over a chunk of images as a GEMM A operand [outC, images * P].
template <class V>
struct ChunkDyA {
  const float* dy;  // first image of the chunk
  int64_t outC, P;

  void operator()(float* dst, int64_t i0, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmTile<V>::kMR;
    const int64_t rows = minI(MR, outC - i0);
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t kk = k0 + k, g = kk / P, p = kk % P;
      const float* src = dy + (g * outC + i0) * P + p;
      float* d = dst + k * MR;
      for (int64_t r = 0; r < rows; ++r) d[r] = src[r * P];
      for (int64_t r = rows; r < MR; ++r) d[r] = 0.0f;
    }
  }
};

}  // namespace
}  // namespace bnkit
