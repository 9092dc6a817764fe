// 2x2 / stride-2 max pooling on "window codes": one byte per output, 2*ky + kx
// of the maximum, instead of a 32-bit flat index. Shared by the standalone
// pooling kernels (elementwise_body.h) and the fused BatchNorm + ReLU + pool
// (batchnorm/batchnorm_pool.h), so both break ties identically.
//
// Rows of a pooled plane are short (14 or 7 outputs in MNIST), too short to
// vectorize one at a time. A block of output rows is therefore first copied
// into two compact buffers, `top` holding the upper input row of every window
// and `bottom` the lower one, so window i reads top[2i], top[2i+1], bottom[2i],
// bottom[2i+1]: a vector unzip splits even and odd columns and a vector of
// windows is pooled at once (poolWindows).
#pragma once
#include <cstdint>
#include <cstring>

#include "../simd/vector_loop.h"

namespace bnkit {
namespace {

// Window code of an output that passes no gradient (the fused ReLU clipped
// its maximum to 0). Backward treats every code >= 4 this way.
constexpr uint8_t kNoGradient = 4;

// Outputs per piece of work: top and bottom then hold 2 * 1024 floats each
// (16 KiB together), which stays in L1 next to the data being streamed.
constexpr int64_t kPoolBlock = 1024;

// A piece of pooling work: several whole planes when they are small (MNIST's
// 7x7 outputs: a loop over one plane would be mostly prologue and epilogue),
// otherwise a block of output rows (or a piece of one long row) of one plane.
// Within a piece, output (q, r, i) is window q * rows * cols + r * cols + i of
// the compact buffers; for a single plane the outputs are also contiguous in
// the output plane, at oy * oW + ox.
struct PoolPiece {
  int64_t plane, planes, oy, rows, ox, cols;
  int64_t outputs() const { return planes * rows * cols; }
};

// visit(piece) over planeCount planes of oH x oW outputs; depends only on the shape.
template <class Visit>
inline void forEachPoolPiece(int64_t planeCount, int64_t oH, int64_t oW, Visit&& visit) {
  const int64_t outPlane = oH * oW;
  if (outPlane <= kPoolBlock) {
    const int64_t group = kPoolBlock / outPlane;
    for (int64_t p = 0; p < planeCount; p += group) {
      visit(PoolPiece{p, p + group <= planeCount ? group : planeCount - p, 0, oH, 0, oW});
    }
    return;
  }
  const int64_t cols = oW < kPoolBlock ? oW : kPoolBlock;
  const int64_t rows = cols == oW ? kPoolBlock / oW : 1;
  for (int64_t p = 0; p < planeCount; ++p) {
    for (int64_t oy = 0; oy < oH; oy += rows) {
      const int64_t r = oy + rows <= oH ? rows : oH - oy;
      for (int64_t ox = 0; ox < oW; ox += cols) visit(PoolPiece{p, 1, oy, r, ox, ox + cols <= oW ? cols : oW - ox});
    }
  }
}

// visit(inputRowOffset, compactOffset, length) for every input row segment of
// a piece (planeStride floats between planes, rows W floats long): the upper
// row of a window row goes to top + compactOffset, the lower one (W floats on)
// to bottom + compactOffset.
template <class Visit>
inline void forEachPieceRow(const PoolPiece& piece, int64_t planeStride, int64_t W, Visit&& visit) {
  for (int64_t q = 0; q < piece.planes; ++q) {
    for (int64_t r = 0; r < piece.rows; ++r) {
      visit((piece.plane + q) * planeStride + 2 * (piece.oy + r) * W + 2 * piece.ox,
            2 * (q * piece.rows + r) * piece.cols, 2 * piece.cols);
    }
  }
}

// Pools windows [0, n) of compact rows, window i being top[2i], top[2i + 1],
// bottom[2i], bottom[2i + 1], a vector of windows at a time: y[i] is the
// first maximum in row-major order (a, b, c, d) of map(input), a NaN beating
// numbers (the rule of poolTakes() in elementwise_body.h), and code[i] its
// position 2 * ky + kx. `map` is applied to every input first: the fused batch
// norm's affine map and ReLU, or the identity. With picked != nullptr the raw
// input at each maximum is stored too (backward of the fused batch norm needs
// it). With Gate (a ReLU in front), an output whose maximum is not > 0 gets
// kNoGradient: the ReLU passed no gradient through any of its inputs.
// Selection is by lane masks only, so every ISA gives the same bits.
template <class V, bool Gate, class Map>
inline void poolWindows(const float* top, const float* bottom, int64_t n, Map&& map, float* y, uint8_t* code,
                        float* picked) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  const Reg codes[4] = {V::zero(), V::set1(1.0f), V::set1(2.0f), V::set1(3.0f)};
  for (int64_t i = 0; i < n; i += L) {
    // A ragged end of a run of at least L windows is pooled as the last L
    // windows (some done twice, same values): cheaper than masked tails.
    if (i + L > n && n >= L) i = n - L;
    const int64_t valid = n - i < L ? n - i : L;
    Reg t0, t1, b0, b1;
    if (valid == L) {
      t0 = V::load(top + 2 * i);
      t1 = V::load(top + 2 * i + L);
      b0 = V::load(bottom + 2 * i);
      b1 = V::load(bottom + 2 * i + L);
    } else {
      const int64_t first = 2 * valid < L ? 2 * valid : L, second = 2 * valid - first;
      t0 = V::loadPartial(top + 2 * i, first, 0.0f);
      t1 = V::loadPartial(top + 2 * i + L, second, 0.0f);
      b0 = V::loadPartial(bottom + 2 * i, first, 0.0f);
      b1 = V::loadPartial(bottom + 2 * i + L, second, 0.0f);
    }
    Reg raw[4];
    V::unzip(t0, t1, raw[0], raw[1]);
    V::unzip(b0, b1, raw[2], raw[3]);
    Reg best = map(raw[0]), bestRaw = raw[0], at = codes[0];
#pragma GCC unroll 3
    for (int k = 1; k < 4; ++k) {
      const Reg candidate = map(raw[k]);
      const typename V::Mask takes = V::replaces(candidate, best);
      best = V::select(takes, candidate, best);
      bestRaw = V::select(takes, raw[k], bestRaw);
      at = V::select(takes, codes[k], at);
    }
    if (Gate) at = V::select(V::greater(best, V::zero()), at, V::set1(static_cast<float>(kNoGradient)));
    if (valid == L) {
      V::store(y + i, best);
      if (picked) V::store(picked + i, bestRaw);
    } else {
      V::storePartial(y + i, best, valid);
      if (picked) V::storePartial(picked + i, bestRaw, valid);
    }
    V::storeBytes(code + i, at, valid);
  }
}

// The inverse scatter: g[i] goes to the position its code names, zeros
// elsewhere (a code >= kNoGradient passes nothing); the layout of poolWindows.
template <class V>
inline void unpoolWindows(const float* g, const uint8_t* code, int64_t n, float* top, float* bottom) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  const Reg zero = V::zero();
  for (int64_t i = 0; i < n; i += L) {
    if (i + L > n && n >= L) i = n - L;  // as in poolWindows
    const int64_t valid = n - i < L ? n - i : L;
    const Reg v = valid == L ? V::load(g + i) : V::loadPartial(g + i, valid, 0.0f);
    const Reg c = V::loadBytes(code + i, valid);
    Reg at[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) at[k] = V::select(V::equal(c, V::set1(static_cast<float>(k))), v, zero);
    Reg top0, top1, bottom0, bottom1;
    V::zip(at[0], at[1], top0, top1);
    V::zip(at[2], at[3], bottom0, bottom1);
    if (valid == L) {
      V::store(top + 2 * i, top0);
      V::store(top + 2 * i + L, top1);
      V::store(bottom + 2 * i, bottom0);
      V::store(bottom + 2 * i + L, bottom1);
    } else {
      const int64_t first = 2 * valid < L ? 2 * valid : L, second = 2 * valid - first;
      V::storePartial(top + 2 * i, top0, first);
      V::storePartial(top + 2 * i + L, top1, second);
      V::storePartial(bottom + 2 * i, bottom0, first);
      V::storePartial(bottom + 2 * i + L, bottom1, second);
    }
  }
}

// Rows here are often a few floats long: an inlined vector copy is far cheaper
// than a call to memcpy per row.
// A ragged end is copied as one last full vector overlapping the previous
// one (same values written twice): masked stores across cache lines cost more.
template <class V>
inline void copyRow(const float* src, float* dst, int64_t n) {
  constexpr int64_t L = V::kLanes;
  if (n < L) {
    V::storePartial(dst, V::loadPartial(src, n, 0.0f), n);
    return;
  }
  int64_t i = 0;
  for (; i + L <= n; i += L) V::store(dst + i, V::load(src + i));
  if (i < n) V::store(dst + n - L, V::load(src + n - L));
}

// Copies the window rows of a piece into top / bottom.
template <class V>
inline void gatherPoolRows(const float* planes, int64_t planeStride, int64_t W, const PoolPiece& piece, float* top,
                           float* bottom) {
  forEachPieceRow(piece, planeStride, W, [&](int64_t in, int64_t at, int64_t n) {
    copyRow<V>(planes + in, top + at, n);
    copyRow<V>(planes + in + W, bottom + at, n);
  });
}

// The reverse of gatherPoolRows.
template <class V>
inline void scatterPoolRows(const float* top, const float* bottom, int64_t planeStride, int64_t W,
                            const PoolPiece& piece, float* planes) {
  forEachPieceRow(piece, planeStride, W, [&](int64_t out, int64_t at, int64_t n) {
    copyRow<V>(top + at, planes + out, n);
    copyRow<V>(bottom + at, planes + out + W, n);
  });
}

// Input positions no window covers (the last row / column of an odd H / W):
// visit(offset, length) for each stretch of them in a plane.
template <class Visit>
inline void forEachUncovered(int64_t H, int64_t W, Visit&& visit) {
  const int64_t coveredRows = H & ~int64_t{1}, coveredCols = W & ~int64_t{1};
  if (coveredCols != W) {
    for (int64_t y = 0; y < coveredRows; ++y) visit(y * W + coveredCols, int64_t{1});
  }
  if (coveredRows != H) visit(coveredRows * W, W);
}

}  // namespace
}  // namespace bnkit
