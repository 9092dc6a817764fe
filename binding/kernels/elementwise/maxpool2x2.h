// 2x2 / stride-2 max pooling on "window codes": one byte per output, 2*ky + kx
// of the maximum, instead of a 32-bit flat index. Shared by the standalone
// pooling kernels (elementwise_body.h) and the fused BatchNorm + ReLU + pool
// (batchnorm/batchnorm_pool.h), so both break ties identically.
//
// Rows of a pooled plane are short (14 or 7 outputs in MNIST), too short to
// vectorize one at a time. A block of output rows is therefore first copied
// (or normalized) into two compact buffers, `top` holding the upper input row
// of every window and `bottom` the lower one, so window i reads top[2i],
// top[2i+1], bottom[2i], bottom[2i+1]: one long affine loop that each ISA's
// translation unit vectorizes with its own flags (pure selects, no
// arithmetic, so every ISA gives the same bits).
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

// The first maximum in row-major order (a, b, c, d) wins, and a NaN beats
// numbers: "takes" is !(candidate <= best) while best is not NaN, the same
// rule as poolTakes() in elementwise_body.h. With Gate (a ReLU in front), an
// output whose maximum is not > 0 gets kNoGradient: the ReLU passed no
// gradient through any of its inputs.
template <bool Gate>
inline void poolPairs(const float* __restrict top, const float* __restrict bottom, int64_t n, float* __restrict y,
                      uint8_t* __restrict code) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = top[2 * i], b = top[2 * i + 1], c = bottom[2 * i], d = bottom[2 * i + 1];
    float best = a;
    uint8_t at = 0;
    if (!(b <= best) && best == best) {
      best = b;
      at = 1;
    }
    if (!(c <= best) && best == best) {
      best = c;
      at = 2;
    }
    if (!(d <= best) && best == best) {
      best = d;
      at = 3;
    }
    y[i] = best;
    code[i] = Gate && !(best > 0.0f) ? kNoGradient : at;
  }
}

// poolPairs on normalized values that also records, in picked, the raw input
// (rawTop / rawBottom, same layout) at each maximum: one pass instead of two.
template <bool Gate>
inline void poolPairsPicking(const float* __restrict top, const float* __restrict bottom,
                             const float* __restrict rawTop, const float* __restrict rawBottom, int64_t n,
                             float* __restrict y, uint8_t* __restrict code, float* __restrict picked) {
  for (int64_t i = 0; i < n; ++i) {
    const float a = top[2 * i], b = top[2 * i + 1], c = bottom[2 * i], d = bottom[2 * i + 1];
    const float ra = rawTop[2 * i], rb = rawTop[2 * i + 1], rc = rawBottom[2 * i], rd = rawBottom[2 * i + 1];
    float best = a, raw = ra;
    uint8_t at = 0;
    if (!(b <= best) && best == best) {
      best = b;
      raw = rb;
      at = 1;
    }
    if (!(c <= best) && best == best) {
      best = c;
      raw = rc;
      at = 2;
    }
    if (!(d <= best) && best == best) {
      best = d;
      raw = rd;
      at = 3;
    }
    y[i] = best;
    code[i] = Gate && !(best > 0.0f) ? kNoGradient : at;
    picked[i] = raw;
  }
}

// The inverse scatter: g[i] goes to the position its code names, zeros elsewhere.
inline void unpoolPairs(const float* __restrict g, const uint8_t* __restrict code, int64_t n, float* __restrict top,
                        float* __restrict bottom) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = g[i];
    const uint8_t c = code[i];
    top[2 * i] = c == 0 ? v : 0.0f;
    top[2 * i + 1] = c == 1 ? v : 0.0f;
    bottom[2 * i] = c == 2 ? v : 0.0f;
    bottom[2 * i + 1] = c == 3 ? v : 0.0f;
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
