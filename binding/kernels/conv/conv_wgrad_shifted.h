// Weight (and bias) gradient of a stride-1 convolution with a shallow patch
// (conv1: one input channel, 9 taps), where dy is by far the largest operand
// and the padded-grid path (conv_wgrad.h) copied it before reading it again.
// Here dy is read once, in place, as flat planes of P = outH * outW floats:
//   dW[oc][ic,ky,kx] += sum over (n, q) of dy[n][oc][q] * S[n][ic][kx][q + ky*outW]
// where S[ic][kx] is the input plane shifted by kx - padW columns (zeros where
// the tap falls off the plane) with padH zero rows above: row r is input row
// r - padH. Only these small shifted copies of x are made. The bias gradient
// rides along as one more "tap" reading a plane of ones (fma(d, 1, acc) is
// exactly acc + d), so the inner loop has no branches. A register tile holds
// SR output channels x SJ taps of vector accumulators over one image's plane.
// Measured on conv1 (2 threads): about half the time of the padded path.
#pragma once
#include <cstdint>

#include "../gemm/gemm_body.h"
#include "conv.h"
#include "conv_padded.h"

namespace bnkit {
namespace {

template <class V>
struct ShiftedTile {
  // 32 registers: 2 x 10 accumulators + 2 dy + 1 x; 16 registers: 2 x 5.
  static constexpr int kRows = 2;
  static constexpr int kTaps = V::kLanes == 8 || V::kLanes == 1 ? 5 : 10;
};

inline bool shiftedWgradFits(const ConvShape& s) {
  return s.strideH == 1 && s.strideW == 1 && s.patch() <= 27 && s.padH <= s.kh - 1 && s.padW <= s.kw - 1;
}

// Images per chunk: a function of the shape only.
inline int64_t shiftedChunkImages(const ConvShape& s) { return minI(8, s.batch); }

// Floats of one image's shifted planes: inC * kw planes of (outH + kh - 1) rows.
inline int64_t shiftedImageFloats(const ConvShape& s) {
  return s.inC * s.kw * (s.outH() + s.kh - 1) * s.outW();
}

template <class V>
void buildShifted(const ConvShape& s, const float* image, float* dst) {
  const int64_t outW = s.outW(), rows = s.outH() + s.kh - 1;
  for (int64_t ic = 0; ic < s.inC; ++ic) {
    const float* plane = image + ic * s.H * s.W;
    for (int64_t kx = 0; kx < s.kw; ++kx) {
      float* out = dst + (ic * s.kw + kx) * rows * outW;
      const int64_t shift = kx - s.padW;
      // Columns ox with 0 <= ox + shift < W come from the row.
      const int64_t lo = minI(outW, shift < 0 ? -shift : 0), hi = maxI(lo, minI(outW, s.W - shift));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t iy = r - s.padH;
        float* row = out + r * outW;
        if (iy < 0 || iy >= s.H) {
          zeroFloats<V>(row, outW);
          continue;
        }
        for (int64_t ox = 0; ox < lo; ++ox) row[ox] = 0.0f;
        copyFloats<V>(row + lo, plane + iy * s.W + lo + shift, hi - lo);
        for (int64_t ox = hi; ox < outW; ++ox) row[ox] = 0.0f;
      }
    }
  }
}

// Vector accumulators a chunk keeps in memory (floats): SR x SJ per tile.
template <class V>
int64_t shiftedAccFloats(const ConvShape& s) {
  constexpr int SR = ShiftedTile<V>::kRows, SJ = ShiftedTile<V>::kTaps;
  return ceilDiv(s.outC, SR) * ceilDiv(s.patch() + 1, SJ) * SR * SJ * V::kLanes;
}

// One chunk of images: partial[oc][j] (and biasPartial[oc] when set) = its
// sums, overwritten. `ones` holds P ones; `shifted` has room for one image's
// shifted planes, `accs` for shiftedAccFloats. Images are the outer loop so
// that dy streams through once in memory order (one image's planes, 100 KB on
// conv1, are contiguous); each tile's accumulators wait in `accs` (L1) between
// images. Every accumulator still sums images, then positions, in order.
template <class V>
void shiftedChunk(const ConvShape& s, const float* x, const float* dy, const float* ones, int64_t images,
                  float* shifted, float* accs, float* partial, float* biasPartial) {
  using Reg = typename V::Reg;
  constexpr int SR = ShiftedTile<V>::kRows, SJ = ShiftedTile<V>::kTaps, L = V::kLanes;
  const int64_t M = s.outC, N = s.patch(), taps = s.kh * s.kw, outW = s.outW(), P = s.outH() * outW;
  const int64_t rows = s.outH() + s.kh - 1, imageSize = s.inC * s.H * s.W;
  const int64_t columns = N + (biasPartial != nullptr ? 1 : 0);  // column N: the bias
  const int64_t full = P / L * L, accCount = shiftedAccFloats<V>(s);
  for (int64_t i = 0; i < accCount; i += L) V::store(accs + i, V::zero());
  for (int64_t n = 0; n < images; ++n) {
    buildShifted<V>(s, x + n * imageSize, shifted);
    float* tileAcc = accs;
    for (int64_t oc0 = 0; oc0 < M; oc0 += SR) {
      // Rows/columns past the edge repeat the first one; their sums are dropped.
      const float* dyp[SR];
      // dy comes from memory in short runs per plane that the hardware
      // prefetchers pick up late: fetch the planes two tiles ahead (past the
      // image's last tile, the next image's; within the chunk).
      const float* ahead[SR];
      for (int r = 0; r < SR; ++r) {
        dyp[r] = dy + (n * M + (oc0 + r < M ? oc0 + r : oc0)) * P;
        const int64_t plane = n * M + oc0 + 2 * SR + r;
        ahead[r] = plane < images * M ? dy + plane * P : dyp[r];
      }
      for (int64_t j0 = 0; j0 < columns; j0 += SJ, tileAcc += SR * SJ * L) {
        const float* xp[SJ];
        for (int t = 0; t < SJ; ++t) {
          const int64_t j = j0 + t < columns ? j0 + t : j0, tap = j % taps;
          xp[t] = j == N ? ones : shifted + ((j / taps) * s.kw + tap % s.kw) * rows * outW + (tap / s.kw) * outW;
        }
        Reg acc[SR][SJ];
#pragma GCC unroll 10
        for (int r = 0; r < SR; ++r)
#pragma GCC unroll 10
          for (int t = 0; t < SJ; ++t) acc[r][t] = V::load(tileAcc + (r * SJ + t) * L);
        const auto step = [&](int64_t q, int64_t valid) {
          Reg d[SR];
#pragma GCC unroll 10
          for (int r = 0; r < SR; ++r) {
            d[r] = valid == L ? V::load(dyp[r] + q) : V::loadPartial(dyp[r] + q, valid, 0.0f);
            __builtin_prefetch(ahead[r] + q);
          }
#pragma GCC unroll 10
          for (int t = 0; t < SJ; ++t) {
            const Reg xv = valid == L ? V::load(xp[t] + q) : V::loadPartial(xp[t] + q, valid, 0.0f);
#pragma GCC unroll 10
            for (int r = 0; r < SR; ++r) acc[r][t] = V::fma(d[r], xv, acc[r][t]);
          }
        };
        for (int64_t q = 0; q < full; q += L) step(q, L);
        if (full < P) step(full, P - full);
#pragma GCC unroll 10
        for (int r = 0; r < SR; ++r)
#pragma GCC unroll 10
          for (int t = 0; t < SJ; ++t) V::store(tileAcc + (r * SJ + t) * L, acc[r][t]);
      }
    }
  }
  const float* tileAcc = accs;
  for (int64_t oc0 = 0; oc0 < M; oc0 += SR)
    for (int64_t j0 = 0; j0 < columns; j0 += SJ, tileAcc += SR * SJ * L)
      for (int r = 0; r < SR && oc0 + r < M; ++r)
        for (int t = 0; t < SJ && j0 + t < columns; ++t) {
          const float sum = V::reduceAdd(V::load(tileAcc + (r * SJ + t) * L));
          if (j0 + t == N) {
            biasPartial[oc0 + r] = sum;
          } else {
            partial[(oc0 + r) * N + j0 + t] = sum;
          }
        }
}

}  // namespace
}  // namespace bnkit
