// Weight gradient of the 3x3 stride-1 layers Winograd handles forward
// (winogradFits), as F(3x3, 2x2): with the forward's 2x2 output tiles,
//   dW[oc][ic] = G^T [ sum over tiles (A dy A^T)[oc] (.) (B^T d B)[ic] ] G
// (the transposition of Y = A^T [(G g G^T) (.) (B^T d B)] A; A = (A^T)^T is
// 4x2, B^T and G as in conv_winograd.h). The 16 positions xi are 16 GEMMs
//   M_xi[oc][ic] += sum_t Dy_xi[t][oc] * X_xi[t][ic]
// with the tiles as the depth: 2.25x fewer multiply-adds than the direct sum
// and no junk columns. Each image is first transposed (L x L blocks in
// registers, V::zip) into a zero-bordered channels-last copy, so the
// transforms run on vectors of channels and write
// both operands as [tile][channel] rows: X is the GEMM's B in place, Dy its A
// read with a row step of the channel count (gemmMicroKernel's aStep).
// Images are cut into fixed chunks (a function of the shape only), each
// summed by one thread in image order; chunk sums are added in chunk order
// and transformed back to 3x3 in double, so results do not depend on the
// thread count. The bias gradient is summed from the channels-last dy copies
// the same way. Rounding: the transforms only add, subtract and halve; on
// conv2 the result is within ~1e-6 (relative to the largest entry) of the
// direct float sums (the tests check it against the float64 reference).
#pragma once
#include <cstdint>

#include "../gemm/gemm_body.h"
#include "conv.h"
#include "conv_winograd.h"

namespace bnkit {
namespace {

struct WinogradWgradGeometry {
  int64_t tH, tW;      // tile rows / columns
  int64_t xH, xW, cx;  // channels-last input copy: rows, columns, channel pitch
  int64_t dH, dW, cy;  // channels-last dy copy (2*tH x 2*tW, zeros past outH/outW)
  int64_t tiles;       // per image
  int64_t blockImages; // images transformed together, one GEMM
  int64_t xStride, yStride;  // floats between xi planes of X and Dy
};

template <class V>
WinogradWgradGeometry winogradWgradGeometry(const ConvShape& s) {
  constexpr int64_t MR = GemmTile<V>::kMR, L = V::kLanes;
  WinogradWgradGeometry g;
  g.tH = (s.outH() + 1) / 2;
  g.tW = (s.outW() + 1) / 2;
  // Tile (ty, tx) reads copy rows 2ty..2ty+3 and columns 2tx..2tx+3; copy
  // pixel (r, c) is input pixel (r - padH, c - padW).
  g.xH = 2 * g.tH + 2;
  g.xW = 2 * g.tW + 2;
  g.dH = 2 * g.tH;
  g.dW = 2 * g.tW;
  // Whole vectors of channels; Dy rows also cover the last MR-row panel.
  g.cx = roundUp(s.inC, L);
  g.cy = roundUp(roundUp(s.outC, MR), L);
  g.tiles = g.tH * g.tW;
  // Whole images per GEMM, at least ~96 tiles deep: fewer passes over the sums.
  g.blockImages = minI(s.batch, maxI(1, ceilDiv(96, g.tiles)));
  // A cache line more than the plane size, so the 16 streams of a transform
  // do not share L1 sets when the planes are 4 KiB multiples.
  g.xStride = g.blockImages * g.tiles * g.cx + 16;
  g.yStride = g.blockImages * g.tiles * g.cy + 16;
  return g;
}

// Images per chunk: about 1024 tiles, a power of two (chunks spread evenly
// over threads), a function of the shape only. At most 8 chunks, as each
// keeps 16 * outC * inC sums (big layers would otherwise need gigabytes).
inline int64_t winogradWgradChunkImages(const ConvShape& s, int64_t tilesPerImage) {
  int64_t images = 1;
  while (images * 2 <= s.batch && images * 2 * tilesPerImage <= 1024) images *= 2;
  while (ceilDiv(s.batch, images) > 8) images *= 2;
  return images;
}

// dst[offsets[p] + ch] = src[ch][p] for the planes of `channels` channels
// (`plane` pixels each), written as whole vectors of channels (zeros past
// `channels`, so the copy's padding channels stay zero). L x L blocks go
// through registers (transposeBlock, gemm_body.h): unit-stride loads and
// stores only.
template <class V>
void toChannelsLast(const float* src, int64_t channels, int64_t plane, const int64_t* offsets, float* dst) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  for (int64_t ch = 0; ch < channels; ch += L) {
    const int64_t nch = minI(L, channels - ch);
    const float* block = src + ch * plane;
    for (int64_t p = 0; p < plane; p += L) {
      const int64_t np = minI(L, plane - p);
      Reg r[L];
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i)
        r[i] = i >= nch ? V::zero() : np == L ? V::load(block + i * plane + p) : V::loadPartial(block + i * plane + p, np, 0.0f);
      transposeBlock<V>(r);
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i)
        if (i < np) V::store(dst + offsets[p + i] + ch, r[i]);
    }
  }
}

// sums[ch] += sum of the `pixels` channel vectors of a channels-last copy (the
// bias gradient, from the dy copy while it is in cache; its zero border adds
// nothing). Four accumulators per vector of channels, combined in a fixed order.
template <class V>
void addPixelSums(const float* copy, int64_t pixels, int64_t channels, float* sums) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  for (int64_t ch = 0; ch < channels; ch += L) {
    Reg acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
    int64_t p = 0;
    for (; p + 4 <= pixels; p += 4)
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i] = V::add(acc[i], V::load(copy + (p + i) * channels + ch));
    for (; p < pixels; ++p) acc[0] = V::add(acc[0], V::load(copy + p * channels + ch));
    V::store(sums + ch, V::add(V::load(sums + ch), V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3]))));
  }
}

// X_xi[t][ic] = (B^T d B)[xi] for every tile of one image, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
template <class V>
void wgradInputTransform(const WinogradWgradGeometry& g, const float* xc, float* X) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t rowPitch = g.xW * g.cx;
  for (int64_t ty = 0; ty < g.tH; ++ty)
    for (int64_t tx = 0; tx < g.tW; ++tx) {
      const float* base = xc + 2 * ty * rowPitch + 2 * tx * g.cx;
      float* dst = X + (ty * g.tW + tx) * g.cx;
      for (int64_t c = 0; c < g.cx; c += L) {
        Reg d[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r)
#pragma GCC unroll 4
          for (int col = 0; col < 4; ++col) d[r][col] = V::load(base + r * rowPitch + col * g.cx + c);
        Reg v[4][4];
        winogradInputTile<V, 2>(d, v);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
#pragma GCC unroll 4
          for (int col = 0; col < 4; ++col) V::store(dst + (i * 4 + col) * g.xStride + c, v[i][col]);
        }
      }
    }
}

// Dy_xi[t][oc] = (A e A^T)[xi] for every 2x2 dy tile e of one image, A = [1 0; 1 1; 1 -1; 0 -1].
template <class V>
void wgradDyTransform(const WinogradWgradGeometry& g, const float* dyc, float* Dy) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t rowPitch = g.dW * g.cy;
  const Reg zero = V::zero();
  for (int64_t ty = 0; ty < g.tH; ++ty)
    for (int64_t tx = 0; tx < g.tW; ++tx) {
      const float* base = dyc + 2 * ty * rowPitch + 2 * tx * g.cy;
      float* dst = Dy + (ty * g.tW + tx) * g.cy;
      for (int64_t c = 0; c < g.cy; c += L) {
        const Reg e00 = V::load(base + c), e01 = V::load(base + g.cy + c);
        const Reg e10 = V::load(base + rowPitch + c), e11 = V::load(base + rowPitch + g.cy + c);
        // Rows: A e (4 x 2).
        const Reg r[4][2] = {{e00, e01},
                             {V::add(e00, e10), V::add(e01, e11)},
                             {V::sub(e00, e10), V::sub(e01, e11)},
                             {V::sub(zero, e10), V::sub(zero, e11)}};
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
          V::store(dst + (i * 4 + 0) * g.yStride + c, r[i][0]);
          V::store(dst + (i * 4 + 1) * g.yStride + c, V::add(r[i][0], r[i][1]));
          V::store(dst + (i * 4 + 2) * g.yStride + c, V::sub(r[i][0], r[i][1]));
          V::store(dst + (i * 4 + 3) * g.yStride + c, V::sub(zero, r[i][1]));
        }
      }
    }
}

// dw[oc][ic][3x3] += G^T m G, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1], for output channels [o0, o1).
inline void wgradOutputTransform(const float* m, int64_t M, int64_t N, int64_t o0, int64_t o1, float* dw) {
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t i = 0; i < N; ++i) {
      double t[3][4];
      for (int c = 0; c < 4; ++c) {
        const double m0 = m[(0 + c) * M * N + o * N + i], m1 = m[(4 + c) * M * N + o * N + i];
        const double m2 = m[(8 + c) * M * N + o * N + i], m3 = m[(12 + c) * M * N + o * N + i];
        t[0][c] = m0 + 0.5 * (m1 + m2);
        t[1][c] = 0.5 * (m1 - m2);
        t[2][c] = 0.5 * (m1 + m2) + m3;
      }
      float* d = dw + (o * N + i) * 9;
      for (int r = 0; r < 3; ++r) {
        d[r * 3 + 0] += static_cast<float>(t[r][0] + 0.5 * (t[r][1] + t[r][2]));
        d[r * 3 + 1] += static_cast<float>(0.5 * (t[r][1] - t[r][2]));
        d[r * 3 + 2] += static_cast<float>(0.5 * (t[r][1] + t[r][2]) + t[r][3]);
      }
    }
}

template <class V>
void winogradWeightGrad(const ConvBackwardArgs& a) {
  constexpr int MR = GemmTile<V>::kMR, NR = GemmTile<V>::kNR;
  const ConvShape& s = a.s;
  const WinogradWgradGeometry g = winogradWgradGeometry<V>(s);
  const int64_t M = s.outC, N = s.inC, P = s.outH() * s.outW(), imageFloats = s.inC * s.H * s.W;
  const int64_t chunkImages = winogradWgradChunkImages(s, g.tiles), chunks = ceilDiv(s.batch, chunkImages);
  const int64_t threads = minI(numThreads(), chunks), sums = 16 * M * N;
  const int64_t xCopy = roundUp(g.xH * g.xW * g.cx, 16), dyCopy = roundUp(g.dH * g.dW * g.cy, 16);
  const int64_t perThread = xCopy + dyCopy + 16 * (g.xStride + g.yStride);
  const int64_t xPixels = s.H * s.W, tableFloats = roundUp(2 * (xPixels + P), 16);
  const int64_t biasFloats = a.dbias != nullptr ? roundUp(chunks * g.cy, 16) : 0;
  float* partials = static_cast<float*>(
      scratchBytes(sizeof(float) * ((chunks + 1) * sums + biasFloats + tableFloats + threads * perThread)));
  float* total = partials + chunks * sums;
  float* biasPartials = total + sums;  // [chunk][cy]
  // Where each input / dy pixel lands in its channels-last copy.
  int64_t* xOffsets = reinterpret_cast<int64_t*>(biasPartials + biasFloats);
  int64_t* dyOffsets = xOffsets + xPixels;
  float* work = biasPartials + biasFloats + tableFloats;
  for (int64_t p = 0; p < xPixels; ++p) xOffsets[p] = ((p / s.W + s.padH) * g.xW + p % s.W + s.padW) * g.cx;
  for (int64_t p = 0; p < P; ++p) dyOffsets[p] = (p / s.outW() * g.dW + p % s.outW()) * g.cy;
  GemmEpilogue e;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* xc = work + t * perThread;
      float* dyc = xc + xCopy;
      float* X = dyc + dyCopy;
      float* Dy = X + 16 * g.xStride;
      // Borders and padding channels stay zero; interiors are overwritten per image.
      for (int64_t i = 0; i < xCopy + dyCopy; ++i) xc[i] = 0.0f;
      for (int64_t c = chunks * t / threads; c < chunks * (t + 1) / threads; ++c) {
        float* sum = partials + c * sums;
        float* biasSum = biasPartials + c * g.cy;
        const int64_t n0 = c * chunkImages, n1 = minI(s.batch, n0 + chunkImages);
        if (a.dbias != nullptr)
          for (int64_t ch = 0; ch < g.cy; ++ch) biasSum[ch] = 0.0f;
        for (int64_t b0 = n0; b0 < n1; b0 += g.blockImages) {
          const int64_t b1 = minI(n1, b0 + g.blockImages), depth = (b1 - b0) * g.tiles;
          for (int64_t n = b0; n < b1; ++n) {
            toChannelsLast<V>(a.x + n * imageFloats, s.inC, xPixels, xOffsets, xc);
            toChannelsLast<V>(a.dy + n * M * P, M, P, dyOffsets, dyc);
            if (a.dbias != nullptr) addPixelSums<V>(dyc, g.dH * g.dW, g.cy, biasSum);
            wgradInputTransform<V>(g, xc, X + (n - b0) * g.tiles * g.cx);
            wgradDyTransform<V>(g, dyc, Dy + (n - b0) * g.tiles * g.cy);
          }
          // The next block's x and dy, fetched into L2 a sixteenth per xi
          // while these GEMMs run: the channels-last copies above otherwise
          // wait on L3 with an L2 full of the GEMMs' dirty lines (they took
          // ~30% of this pass; ~3x slower than with the lines in L2).
          const int64_t nextEnd = minI(n1, b1 + g.blockImages);
          const float* xNext = a.x + b1 * imageFloats;
          const float* dyNext = a.dy + b1 * M * P;
          const int64_t xLines = (nextEnd - b1) * imageFloats / 16, dyLines = (nextEnd - b1) * M * P / 16;
          for (int xi = 0; xi < 16; ++xi) {
            for (int64_t l = xLines * xi / 16; l < xLines * (xi + 1) / 16; ++l) __builtin_prefetch(xNext + 16 * l, 0, 2);
            for (int64_t l = dyLines * xi / 16; l < dyLines * (xi + 1) / 16; ++l) __builtin_prefetch(dyNext + 16 * l, 0, 2);
            for (int64_t j0 = 0; j0 < N; j0 += NR)
              for (int64_t i0 = 0; i0 < M; i0 += MR)
                gemmTile<V>(depth, Dy + xi * g.yStride + i0, StridedRows{X + xi * g.xStride + j0, g.cx},
                            sum + xi * M * N + i0 * N + j0, N, M - i0, N - j0, e, b0 == n0, i0, j0, g.cy);
          }
        }
      }
    }
  });
  parallelForEach(0, sums, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float v = partials[i];
      for (int64_t c = 1; c < chunks; ++c) v += partials[c * sums + i];
      total[i] = v;
    }
  });
  parallelForEach(0, M, ceilDiv(M, numThreads()),
                  [&](int64_t lo, int64_t hi) { wgradOutputTransform(total, M, N, lo, hi, a.dweight); });
  if (a.dbias != nullptr)
    for (int64_t oc = 0; oc < M; ++oc) {
      float v = biasPartials[oc];
      for (int64_t c = 1; c < chunks; ++c) v += biasPartials[c * g.cy + oc];
      a.dbias[oc] += v;
    }
}

}  // namespace
}  // namespace bnkit
