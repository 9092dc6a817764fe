// Weight gradient of the 3x3 stride-1 layers Winograd handles forward
// (winogradFits), as F(3x3, m x m) on m x m tiles of the layer's output,
// m from winogradOutputTile (as for the data gradient; the forward pass keeps
// m = 2, see convForward in conv_body.h):
//   dW[oc][ic] = G^T [ sum over tiles (A dy A^T)[oc] (.) (B^T d B)[ic] ] G
// (the transposition of Y = A^T [(G g G^T) (.) (B^T d B)] A; A = (A^T)^T is
// n x m, B^T and G as in conv_winograd.h, n = m + 2). The n*n positions xi
// are n*n GEMMs
//   M_xi[oc][ic] += sum_t Dy_xi[t][oc] * X_xi[t][ic]
// with the tiles as the depth: 2.25x (m = 2) or 4x (m = 4, less on edge
// tiles) fewer multiply-adds than the direct sum. Each image is first
// transposed (L x L blocks in registers, V::zip) into a zero-bordered
// channels-last copy, so the transforms run on vectors of channels and write
// both operands as [tile][channel] rows: X is the GEMM's B in place, Dy its A
// read with a row step of the channel count (gemmMicroKernel's aStep).
// Images are cut into fixed chunks (a function of the shape only), each
// summed by one thread in image order; chunk sums are added in chunk order
// and transformed back to 3x3 in double, so results do not depend on the
// thread count. The bias gradient is summed from the channels-last dy copies
// the same way. Rounding: for m = 2 the transforms only add, subtract and
// halve (within ~1e-6 of the direct float sums on conv2, relative to the
// largest entry); m = 4 scales by up to 8 and 1/24, ~10x that (the tests check
// both against the float64 reference).
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
  int64_t dH, dW, cy;  // channels-last dy copy (m*tH x m*tW, zeros past outH/outW)
  int64_t tiles;       // per image
  int64_t blockImages; // images transformed together, one GEMM
  int64_t xStride, yStride;  // floats between xi planes of X and Dy
};

// For m x m output tiles (n*n points each).
template <class V>
WinogradWgradGeometry winogradWgradGeometry(const ConvShape& s, int m) {
  constexpr int64_t MR = GemmTile<V>::kMR, L = V::kLanes;
  const int64_t points = (m + 2) * (m + 2);
  WinogradWgradGeometry g;
  g.tH = ceilDiv(s.outH(), m);
  g.tW = ceilDiv(s.outW(), m);
  // Tile (ty, tx) reads copy rows m*ty..m*ty+n-1 and the same columns; copy
  // pixel (r, c) is input pixel (r - padH, c - padW).
  g.xH = m * g.tH + 2;
  g.xW = m * g.tW + 2;
  g.dH = m * g.tH;
  g.dW = m * g.tW;
  // Whole vectors of channels; Dy rows also cover the last MR-row panel.
  g.cx = roundUp(s.inC, L);
  g.cy = roundUp(roundUp(s.outC, MR), L);
  g.tiles = g.tH * g.tW;
  // Whole images per GEMM, at least ~1536 tile-points deep (96 F(3x3, 2x2)
  // tiles): fewer passes over the sums, while X and Dy (points x depth x
  // channels) and the next block's prefetched input still fit L2 (F(4x4):
  // 48 tiles measured ~8% faster than 96).
  g.blockImages = minI(s.batch, maxI(1, ceilDiv(1536, g.tiles * points)));
  // A cache line more than the plane size, so the n*n streams of a transform
  // do not share L1 sets when the planes are 4 KiB multiples.
  g.xStride = g.blockImages * g.tiles * g.cx + 16;
  g.yStride = g.blockImages * g.tiles * g.cy + 16;
  return g;
}

// Images per chunk: about 16K tile-points (1024 tiles of F(3x3, 2x2)), a
// power of two (chunks spread evenly over threads), a function of the shape
// only. At most 8 chunks, as each keeps n*n * outC * inC sums (big layers
// would otherwise need gigabytes).
inline int64_t winogradWgradChunkImages(const ConvShape& s, int64_t tilePointsPerImage) {
  int64_t images = 1;
  while (images * 2 <= s.batch && images * 2 * tilePointsPerImage <= 16 * 1024) images *= 2;
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

// dst_xi[t][ch] = (F T F^T)[xi] for every tile t of one image's
// channels-last copy (`pitch` pixels a row, `channels` floats a pixel): T is
// the In x In pixels at (m*ty, m*tx), F maps In values to Out (`transform`),
// the Out*Out points go `stride` floats apart. X is the input tiles' B^T d B
// (In = n), Dy the dy tiles' A e A^T (In = m).
template <class V, int m, int In, int Out, class Transform>
void wgradTileTransform(const WinogradWgradGeometry& g, const float* copy, int64_t pitch, int64_t channels,
                        int64_t stride, Transform transform, float* dst) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t rowPitch = pitch * channels;
  for (int64_t ty = 0; ty < g.tH; ++ty)
    for (int64_t tx = 0; tx < g.tW; ++tx) {
      const float* base = copy + m * ty * rowPitch + m * tx * channels;
      float* tile = dst + (ty * g.tW + tx) * channels;
      for (int64_t c = 0; c < channels; c += L) {
        Reg points[Out][Out];
        // Captured by value: by reference the addresses were re-read from
        // the stack for every load (this transform ~20% slower, measured).
        separableTransform<In, Out>(
            [=](int r, int col) { return V::load(base + r * rowPitch + col * channels + c); }, transform, points);
#pragma GCC unroll 6
        for (int i = 0; i < Out; ++i) {
#pragma GCC unroll 6
          for (int j = 0; j < Out; ++j) V::store(tile + (i * Out + j) * stride + c, points[i][j]);
        }
      }
    }
}

// dw[oc][ic][3x3] += G^T m G, in double, for output channels [o0, o1).
template <int m>
void wgradOutputTransform(const float* sums, int64_t M, int64_t N, int64_t o0, int64_t o1, float* dw) {
  constexpr int n = m + 2;
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t i = 0; i < N; ++i) {
      double taps[3][3];
      separableTransform<n, 3>([&](int r, int c) { return double(sums[(r * n + c) * M * N + o * N + i]); },
                               [](const double* v, double* t) { WinogradF<m>::weightGradient(v, t); }, taps);
      float* d = dw + (o * N + i) * 9;
      for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) d[r * 3 + k] += static_cast<float>(taps[r][k]);
    }
}

template <class V, int m>
void winogradWeightGradTiled(const ConvBackwardArgs& a) {
  constexpr int MR = GemmTile<V>::kMR, NR = GemmTile<V>::kNR, n = m + 2, Pts = n * n;
  const ConvShape& s = a.s;
  const WinogradWgradGeometry g = winogradWgradGeometry<V>(s, m);
  const int64_t M = s.outC, N = s.inC, P = s.outH() * s.outW(), imageFloats = s.inC * s.H * s.W;
  const int64_t chunkImages = winogradWgradChunkImages(s, g.tiles * Pts), chunks = ceilDiv(s.batch, chunkImages);
  const int64_t threads = minI(numThreads(), chunks), sums = Pts * M * N;
  const int64_t xCopy = roundUp(g.xH * g.xW * g.cx, 16), dyCopy = roundUp(g.dH * g.dW * g.cy, 16);
  const int64_t perThread = xCopy + dyCopy + Pts * (g.xStride + g.yStride);
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
  using Reg = typename V::Reg;
  const auto inputPoints = [](const Reg* in, Reg* out) { WinogradF<m>::template input<V>(in, out); };
  const auto gradientPoints = [](const Reg* in, Reg* out) { WinogradF<m>::template gradient<V>(in, out); };
  // Lines [share * lines / Pts, (share + 1) * lines / Pts) of p, into L2.
  const auto prefetchShare = [&](const float* p, int64_t lines, int share) {
    for (int64_t l = lines * share / Pts; l < lines * (share + 1) / Pts; ++l) __builtin_prefetch(p + 16 * l, 0, 2);
  };
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* xc = work + t * perThread;
      float* dyc = xc + xCopy;
      float* X = dyc + dyCopy;
      float* Dy = X + Pts * g.xStride;
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
          for (int64_t image = b0; image < b1; ++image) {
            toChannelsLast<V>(a.x + image * imageFloats, s.inC, xPixels, xOffsets, xc);
            toChannelsLast<V>(a.dy + image * M * P, M, P, dyOffsets, dyc);
            if (a.dbias != nullptr) addPixelSums<V>(dyc, g.dH * g.dW, g.cy, biasSum);
            wgradTileTransform<V, m, n, n>(g, xc, g.xW, g.cx, g.xStride, inputPoints,
                                           X + (image - b0) * g.tiles * g.cx);
            wgradTileTransform<V, m, m, n>(g, dyc, g.dW, g.cy, g.yStride, gradientPoints,
                                           Dy + (image - b0) * g.tiles * g.cy);
          }
          // The next block's x and dy, fetched into L2 a share per xi
          // while these GEMMs run: the channels-last copies above otherwise
          // wait on L3 with an L2 full of the GEMMs' dirty lines (they took
          // ~30% of this pass; ~3x slower than with the lines in L2).
          const int64_t nextEnd = minI(n1, b1 + g.blockImages);
          const float* xNext = a.x + b1 * imageFloats;
          const float* dyNext = a.dy + b1 * M * P;
          const int64_t xLines = (nextEnd - b1) * imageFloats / 16, dyLines = (nextEnd - b1) * M * P / 16;
          for (int xi = 0; xi < Pts; ++xi) {
            prefetchShare(xNext, xLines, xi);
            prefetchShare(dyNext, dyLines, xi);
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
                  [&](int64_t lo, int64_t hi) { wgradOutputTransform<m>(total, M, N, lo, hi, a.dweight); });
  if (a.dbias != nullptr)
    for (int64_t oc = 0; oc < M; ++oc) {
      float v = biasPartials[oc];
      for (int64_t c = 1; c < chunks; ++c) v += biasPartials[c * g.cy + oc];
      a.dbias[oc] += v;
    }
}

template <class V>
void winogradWeightGrad(const ConvBackwardArgs& a) {
  if (winogradOutputTile(a.s) == 4) {
    winogradWeightGradTiled<V, 4>(a);
  } else {
    winogradWeightGradTiled<V, 2>(a);
  }
}

}  // namespace
}  // namespace bnkit
