// Winograd F(m x m, 3x3), m = 2 or 4, for stride-1 3x3 convolutions with
// enough channels (conv2 of the MNIST models: its forward pass with m = 2,
// its data gradient with the m of winogradOutputTile): every m x m output
// tile is
//   Y = A^T [ sum_ic (G g G^T) (.) (B^T d B) ] A
// so the n*n positions xi (n = m + 2) of the transformed input tiles become
// n*n independent GEMMs  M_xi[oc][tile] = U_xi[oc][ic] * V_xi[ic][tile].
// F(2x2) does 2.25x fewer multiply-adds than the direct convolution, F(4x4)
// 4x fewer (on 14x14, where 4x4 tiles cover 16x16, 26% fewer than F(2x2)).
// Tiles are numbered over the whole batch and cut into fixed blocks of
// winogradBlockTiles (a function of the ISA, m and K only); a block's V stays in
// L2 while its GEMMs run one MR-channel panel of outputs at a time, each
// panel's M (n*n x MR x block floats) output-transformed straight after its
// GEMMs. Threads take whole blocks and every tile is computed the same way in
// any block, so results do not depend on the thread count. The transforms work
// on vectors of tiles: the input transform along a block's tiles of one image,
// across tile rows (from input rows split into tap streams, see
// winogradInputTransform), the output transform along the block. The weight
// transform writes the GEMM's packed A panels directly. The weight gradient of
// the same layers is in conv_wgrad_winograd.h.
// Rounding: F(2x2)'s transforms only add and subtract and its G has entries 1
// and 1/2, so its error stays within a small multiple of the direct sum's.
// F(4x4)'s transforms scale by up to 8 and its G has entries 1/6 and 1/24 that
// float rounds, so its error is up to ~10x larger (~4e-6 relative per
// sqrt(term) on unit data, largest at a tile's bottom-right output; the tests
// bound each tiling separately). It is used
// only where it saves GEMM work (winogradOutputTile), and not in the forward
// pass (see convForward in conv_body.h).
#pragma once
#include <cstdint>
#include <type_traits>

#include "../gemm/gemm_body.h"
#include "conv.h"
#include "conv_padded.h"

namespace bnkit {
namespace {

// V::Lanes where the wrapper has two-register permutes (a placeholder type
// elsewhere, never used).
template <class V, bool = V::kHasPermute2>
struct SimdLanes {
  using Type = int;
};
template <class V>
struct SimdLanes<V, true> {
  using Type = typename V::Lanes;
};

// Weights as the convolution sees them: for the data gradient the kernel is
// flipped and its channel axes swapped (see FlippedWeightA in conv_pack.h).
struct WinogradWeights {
  const float* w;
  bool flipped;  // w is stored [inC][outC][3][3] of the convolution computed

  float at(int64_t outC, int64_t inC, int64_t o, int64_t i, int ky, int kx) const {
    return flipped ? w[((i * outC + o) * 3 + (2 - ky)) * 3 + (2 - kx)] : w[((o * inC + i) * 3 + ky) * 3 + kx];
  }
};

// The one-dimensional pieces of F(m, 3) on vectors of independent tiles: B^T
// (n inputs -> n points, `input`) and A^T (n points -> m outputs, `output`);
// G (3 taps -> n points, `weights`) in double for the weights; and for the
// weight gradient A (m output gradients -> n points, `gradient`) and G^T (n
// points -> 3 taps, `weightGradient`, in double). Each 2-D transform applies
// one of them down the columns of a tile, then along the rows
// (separableTransform).
template <int m>
struct WinogradF;

template <>
struct WinogradF<2> {
  // G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
  static void weights(const double g[3], double u[4]) {
    const double outer = 0.5 * (g[0] + g[2]);
    u[0] = g[0];
    u[1] = outer + 0.5 * g[1];
    u[2] = outer - 0.5 * g[1];
    u[3] = g[2];
  }
  // B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
  template <class V>
  static void input(const typename V::Reg d[4], typename V::Reg out[4]) {
    out[0] = V::sub(d[0], d[2]);
    out[1] = V::add(d[1], d[2]);
    out[2] = V::sub(d[2], d[1]);
    out[3] = V::sub(d[1], d[3]);
  }
  // A^T = [1 1 1 0; 0 1 -1 -1]
  template <class V>
  static void output(const typename V::Reg v[4], typename V::Reg y[2]) {
    y[0] = V::add(V::add(v[0], v[1]), v[2]);
    y[1] = V::sub(V::sub(v[1], v[2]), v[3]);
  }
  // A = [1 0; 1 1; 1 -1; 0 -1]
  template <class V>
  static void gradient(const typename V::Reg e[2], typename V::Reg out[4]) {
    out[0] = e[0];
    out[1] = V::add(e[0], e[1]);
    out[2] = V::sub(e[0], e[1]);
    out[3] = V::sub(V::zero(), e[1]);
  }
  // G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1]
  static void weightGradient(const double v[4], double taps[3]) {
    const double inner = 0.5 * (v[1] + v[2]);
    taps[0] = v[0] + inner;
    taps[1] = 0.5 * (v[1] - v[2]);
    taps[2] = inner + v[3];
  }
};

// Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, 2016).
template <>
struct WinogradF<4> {
  // G rows: [1/4 0 0], [-1/6 -1/6 -1/6], [-1/6 1/6 -1/6], [1/24 1/12 1/6],
  // [1/24 -1/12 1/6], [0 0 1].
  // (Reciprocal products, not divisions: a division costs ~10x more and this
  // runs 9 times per weight pair; the double rounding is far below float's.)
  static void weights(const double g[3], double u[6]) {
    constexpr double sixth = 1.0 / 6, twelfth = 1.0 / 12, twentyFourth = 1.0 / 24;
    const double outer = g[0] + g[2], outerNear = g[0] * twentyFourth + g[2] * sixth;
    u[0] = g[0] * 0.25;
    u[1] = -(outer + g[1]) * sixth;
    u[2] = -(outer - g[1]) * sixth;
    u[3] = outerNear + g[1] * twelfth;
    u[4] = outerNear - g[1] * twelfth;
    u[5] = g[2];
  }
  // B^T rows: [4 0 -5 0 1 0], [0 -4 -4 1 1 0], [0 4 -4 -1 1 0], [0 -2 -1 2 1 0],
  // [0 2 -1 -2 1 0], [0 4 0 -5 0 1]; shared partial sums, 12 operations.
  template <class V>
  static void input(const typename V::Reg d[6], typename V::Reg out[6]) {
    using Reg = typename V::Reg;
    const Reg four = V::set1(4.0f), minusFour = V::set1(-4.0f);
    const Reg a = V::fma(minusFour, d[2], d[4]), b = V::fma(minusFour, d[1], d[3]);
    const Reg c = V::sub(d[4], d[2]), e = V::sub(d[3], d[1]), e2 = V::add(e, e);
    out[0] = V::fma(four, V::sub(d[0], d[2]), c);
    out[1] = V::add(a, b);
    out[2] = V::sub(a, b);
    out[3] = V::add(c, e2);
    out[4] = V::sub(c, e2);
    out[5] = V::fma(four, V::sub(d[1], d[3]), V::sub(d[5], d[3]));
  }
  // A^T rows: [1 1 1 1 1 0], [0 1 -1 2 -2 0], [0 1 1 4 4 0], [0 1 -1 8 -8 1].
  template <class V>
  static void output(const typename V::Reg v[6], typename V::Reg y[4]) {
    using Reg = typename V::Reg;
    const Reg s12 = V::add(v[1], v[2]), d12 = V::sub(v[1], v[2]);
    const Reg s34 = V::add(v[3], v[4]), d34 = V::sub(v[3], v[4]);
    y[0] = V::add(V::add(v[0], s12), s34);
    y[1] = V::fma(V::set1(2.0f), d34, d12);
    y[2] = V::fma(V::set1(4.0f), s34, s12);
    y[3] = V::add(V::fma(V::set1(8.0f), d34, d12), v[5]);
  }
  // A (columns of A^T): [1 0 0 0], [1 1 1 1], [1 -1 1 -1], [1 2 4 8], [1 -2 4 -8], [0 0 0 1].
  template <class V>
  static void gradient(const typename V::Reg e[4], typename V::Reg out[6]) {
    using Reg = typename V::Reg;
    const Reg even = V::add(e[0], e[2]), odd = V::add(e[1], e[3]);
    const Reg evenScaled = V::fma(V::set1(4.0f), e[2], e[0]);
    const Reg oddScaled = V::fma(V::set1(8.0f), e[3], V::add(e[1], e[1]));
    out[0] = e[0];
    out[1] = V::add(even, odd);
    out[2] = V::sub(even, odd);
    out[3] = V::add(evenScaled, oddScaled);
    out[4] = V::sub(evenScaled, oddScaled);
    out[5] = e[3];
  }
  // G^T rows: [1/4 -1/6 -1/6 1/24 1/24 0], [0 -1/6 1/6 1/12 -1/12 0], [0 -1/6 -1/6 1/6 1/6 1].
  static void weightGradient(const double v[6], double taps[3]) {
    constexpr double sixth = 1.0 / 6, twelfth = 1.0 / 12, twentyFourth = 1.0 / 24;
    const double near = v[1] + v[2], far = v[3] + v[4];
    taps[0] = 0.25 * v[0] - near * sixth + far * twentyFourth;
    taps[1] = (v[2] - v[1]) * sixth + (v[3] - v[4]) * twelfth;
    taps[2] = (far - near) * sixth + v[5];
  }
};

// out = F T F^T for the In x In tile T whose element (r, c) is load(r, c),
// with `transform` mapping In values to Out (F's rows): down every column
// first, then along every row of the result. Every Winograd tile transform has
// this form: B^T d B, A^T M A, A e A^T, G^T M G. Lanes of a vector T are
// independent tiles or channels.
template <int In, int Out, class Load, class Transform, class T>
inline void separableTransform(Load load, Transform transform, T (&out)[Out][Out]) {
  T columns[Out][In];
#pragma GCC unroll 6
  for (int c = 0; c < In; ++c) {
    T column[In], mapped[Out];
#pragma GCC unroll 6
    for (int r = 0; r < In; ++r) column[r] = load(r, c);
    transform(column, mapped);
#pragma GCC unroll 6
    for (int r = 0; r < Out; ++r) columns[r][c] = mapped[r];
  }
#pragma GCC unroll 6
  for (int r = 0; r < Out; ++r) transform(columns[r], out[r]);
}

// Worth it (and exact enough) for 3x3 stride-1 layers with several channels
// on both sides; the padding may be 0..2 as every tile read is bounds-checked.
inline bool winogradFits(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.strideH == 1 && s.strideW == 1 && s.padH <= 2 && s.padW <= 2 &&
         s.inC >= 8 && s.outC >= 8 && s.outH() >= 2 && s.outW() >= 2;
}

// The output tile size m for the data and weight gradients: 4 where its
// GEMMs (tiles x 36 points) are smaller than F(2x2)'s (tiles x 16 points), 2
// on a tie (the smaller rounding error). The forward pass always uses 2 (see
// convForward in conv_body.h).
inline int winogradOutputTile(const ConvShape& s) {
  const auto gemmColumns = [&](int64_t m) {
    return ceilDiv(s.outH(), m) * ceilDiv(s.outW(), m) * (m + 2) * (m + 2);
  };
  return gemmColumns(4) < gemmColumns(2) ? 4 : 2;
}

// U_xi[o][i] = (G g G^T)[xi], in double, for output channels [o0, o1),
// written straight into the packed GEMM A panels of each xi (packAPanels'
// layout: K blocks, MR-row panels, [k][MR]), panelFloats apart.
template <class V, int m>
void winogradWeightTransform(const WinogradWeights& wt, int64_t outC, int64_t inC, int64_t o0, int64_t o1,
                             int64_t panelFloats, float* packed) {
  constexpr int MR = GemmTile<V>::kMR, n = m + 2;
  // Input channels in chunks, each stage a loop over the chunk the compiler
  // vectorizes (one pair at a time this took ~8% of conv2's forward pass).
  constexpr int64_t kChunk = 32;
  const int64_t kc = kcBlock<V>(inC), mPad = roundUp(outC, MR);
  // Where U_0[o][i] goes; U_xi is xi * panelFloats further.
  const auto slot = [&](int64_t o, int64_t i) {
    const int64_t k0 = i / kc * kc;
    return packed + k0 * mPad + (o / MR) * MR * minI(kc, inC - k0) + (i - k0) * MR + o % MR;
  };
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t i0 = 0; i0 < inC; i0 += kChunk) {
      const int64_t count = minI(kChunk, inC - i0);
      double g[9][kChunk], t[3][n][kChunk], u[n * n][kChunk];
      for (int64_t l = 0; l < count; ++l)
        for (int k = 0; k < 9; ++k) g[k][l] = wt.at(outC, inC, o, i0 + l, k / 3, k % 3);
      // G g column by column, then G (G g)^T row by row.
      for (int kx = 0; kx < 3; ++kx)
        for (int64_t l = 0; l < count; ++l) {
          const double column[3] = {g[kx][l], g[3 + kx][l], g[6 + kx][l]};
          double points[n];
          WinogradF<m>::weights(column, points);
          for (int r = 0; r < n; ++r) t[kx][r][l] = points[r];
        }
      for (int r = 0; r < n; ++r)
        for (int64_t l = 0; l < count; ++l) {
          const double row[3] = {t[0][r][l], t[1][r][l], t[2][r][l]};
          double points[n];
          WinogradF<m>::weights(row, points);
          for (int c = 0; c < n; ++c) u[r * n + c][l] = points[c];
        }
      for (int64_t l = 0; l < count; ++l) {
        float* dst = slot(o, i0 + l);
        for (int xi = 0; xi < n * n; ++xi) dst[xi * panelFloats] = static_cast<float>(u[xi][l]);
      }
    }
  // Rows of the last panel past outC multiply nothing but must be finite.
  if (o1 == outC)
    for (int64_t o = outC; o < mPad; ++o)
      for (int64_t i = 0; i < inC; ++i) {
        float* dst = slot(o, i);
        for (int xi = 0; xi < n * n; ++xi) dst[xi * panelFloats] = 0.0f;
      }
}

// A run of a block's tiles on one tile row: tiles [tx0, tx0 + len) of row ty
// of image n, block positions [j, j + len) (the output transform's unit).
struct WinogradRun {
  int64_t out;  // offset of the run's first output in output channel 0
  int64_t ty, tx0, len, j;
};

inline int64_t winogradRuns(const ConvShape& s, int m, int64_t first, int64_t count, WinogradRun* runs) {
  const int64_t outH = s.outH(), outW = s.outW(), tH = ceilDiv(outH, m), tW = ceilDiv(outW, m);
  int64_t count_ = 0;
  for (int64_t g = first; g < first + count; ++count_) {
    const int64_t tx = g % tW, len = minI(tW - tx, first + count - g);
    const int64_t n = g / (tH * tW), ty = (g / tW) % tH;
    runs[count_] = WinogradRun{n * s.outC * outH * outW + m * ty * outW + m * tx, ty, tx, len, g - first};
    g += len;
  }
  return count_;
}

// A block's tiles within one image (the input transform's unit): tiles
// [j, j + len) of the block, the first at tile row ty0, column tx0. Its input
// rows y = m*ty0 - padH + i, i in [0, rows), are split into tap streams
// starting at `base` (see winogradInputTransform).
struct WinogradSegment {
  int64_t image;  // offset of image n (input channel 0)
  int64_t ty0, tx0, len, j, rows, base;
};

inline int64_t winogradSegments(const ConvShape& s, int m, int64_t first, int64_t count, WinogradSegment* segs) {
  const int64_t tH = ceilDiv(s.outH(), m), tW = ceilDiv(s.outW(), m), perImage = tH * tW;
  int64_t n = 0, base = 0;
  for (int64_t g = first; g < first + count; ++n) {
    const int64_t image = g / perImage, end = minI(first + count, (image + 1) * perImage);
    const int64_t ty0 = (g / tW) % tH, ty1 = ((end - 1) / tW) % tH;
    segs[n] = WinogradSegment{image * s.inC * s.H * s.W, ty0, g % tW, end - g, g - first,
                              m * (ty1 - ty0) + m + 2, base};
    // Tap rows reach one tile row past the last (r / m <= 1), one more for the vector tail.
    base += (ty1 - ty0 + 2) * tW;
    g = end;
  }
  return n;
}

// Most segments a block of Tb tiles can have, and the stream positions they need.
inline int64_t winogradMaxSegments(const ConvShape& s, int m, int64_t Tb) {
  return Tb / (ceilDiv(s.outH(), m) * ceilDiv(s.outW(), m)) + 2;
}

template <class V>
int64_t winogradStreamFloats(const ConvShape& s, int m, int64_t Tb) {
  const int64_t tW = ceilDiv(s.outW(), m);
  // Tile rows touched <= Tb / tW + 2 per segment; one extra row pair each; vector slack.
  return roundUp(Tb + 4 * winogradMaxSegments(s, m, Tb) * tW + 2 * V::kLanes, V::kLanes);
}

// A zero-padded copy of one input row: column x at padW + x, zeros around,
// long enough for the deinterleaves at offsets 0 and m.
template <class V>
int64_t winogradRowFloats(const ConvShape& s, int m) {
  const int64_t tW = ceilDiv(s.outW(), m);
  return roundUp(m + m * roundUp(tW, V::kLanes) + m * V::kLanes + s.W + s.padW, V::kLanes);
}

// out[a][k] = src[m*k + a] for a in [0, m), k in [0, L): m vectors of src split
// into m strided streams.
template <class V, int m>
inline void deinterleave(const float* src, typename V::Reg out[m]) {
  constexpr int L = V::kLanes;
  if constexpr (m == 2) {
    V::unzip(V::load(src), V::load(src + L), out[0], out[1]);
  } else {
    static_assert(m == 4, "F(2x2) and F(4x4) only");
    typename V::Reg even0, odd0, even1, odd1;
    V::unzip(V::load(src), V::load(src + L), even0, odd0);
    V::unzip(V::load(src + 2 * L), V::load(src + 3 * L), even1, odd1);
    V::unzip(even0, even1, out[0], out[2]);
    V::unzip(odd0, odd1, out[1], out[3]);
  }
}

// V_xi[ic][j] = (B^T d B)[xi] for the block's tiles, xi planes `xiStride`
// floats apart. Tap column c of tile tx is input column m*tx + c - padW. Each
// input row of a segment is split once (deinterleaves of a zero-padded copy)
// into n streams, the columns m*tx + c of the copy for tx in [0, tW), and row
// i of the segment is stored at position base + (i/m)*tW of stream phase i%m.
// Then tap row r of the segment's tiles, in block order, is the contiguous
// range starting at base + (r/m)*tW + tx0 of phase r%m: the transform runs on
// whole vectors of tiles across tile rows. Lanes past a segment's end read
// other rows or what the buffers held before (zeroed once per call, so always
// finite) and are never stored; a row's whole-vector stores spill onto the
// next rows' places, which are written afterwards.
template <class V, int m>
void winogradInputTransform(const ConvShape& s, const float* input, const WinogradSegment* segs, int64_t segCount,
                            int64_t count, int64_t ld, int64_t xiStride, int64_t streamFloats, int64_t rowFloats,
                            float* rowCopies, float* streams, float* Vb) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes, n = m + 2;
  const int64_t plane = s.H * s.W, W = s.W, K = s.inC, tW = ceilDiv(s.outW(), m);
  // streams: [buffer][phase][n streams][streamFloats]. Channel ic + 1 is split
  // (into the other buffer) before channel ic is transformed, so its loads
  // never wait on the stores just made.
  const int64_t phaseFloats = n * streamFloats, bufferFloats = m * phaseFloats;
  // Narrow images (two tile rows fit one vector, a whole input row fits one
  // vector with a zero lane to spare: MNIST's 14x14 on AVX-512) split two
  // rows of a phase at once, straight from the input: one two-register
  // permute per stream puts row i's taps in lanes [0, tW) and row i + m's in
  // [tW, 2 tW), their stream positions being consecutive. Columns outside the
  // image pick the zero lane. Same stream contents as the copy and
  // deinterleave below, a fraction of the work.
  [[maybe_unused]] const bool pairRows = 2 * tW <= L && W < L;
  [[maybe_unused]] typename SimdLanes<V>::Type streamLanes[n];
  if constexpr (V::kHasPermute2) {
    if (pairRows) {
      for (int a = 0; a < n; ++a) {
        int32_t index[L];
        for (int64_t j = 0; j < L; ++j) {
          const int64_t half = j / tW, col = m * (j % tW) + a - s.padW;
          // Lane L - 1 of either row is zero (the row has at most L - 1 floats).
          index[j] = static_cast<int32_t>(half > 1 || col < 0 || col >= W ? L - 1 : half * L + col);
        }
        streamLanes[a] = V::lanes(index);
      }
    }
  }
  // Copies first (all rows), deinterleaves second: a deinterleave's loads
  // would otherwise wait on the partial store of the copy just made.
  const auto splitChannel = [&](int64_t ic, float* dst) {
    if constexpr (V::kHasPermute2) {
      if (pairRows) {
        for (int64_t q = 0; q < segCount; ++q) {
          const WinogradSegment& seg = segs[q];
          const float* planeIn = input + seg.image + ic * plane;
          const auto row = [&](int64_t i) {
            const int64_t y = m * seg.ty0 - s.padH + i;
            return i < seg.rows && y >= 0 && y < s.H ? V::loadPartial(planeIn + y * W, W, 0.0f) : V::zero();
          };
          // Rows i and i + m of phase i % m, in increasing position: each
          // store's lanes past 2 tW land where later pairs (or the slack) go.
          for (int64_t i0 = 0; i0 < seg.rows; i0 += 2 * m)
            for (int64_t i = i0; i < i0 + m && i < seg.rows; ++i) {
              const Reg upper = row(i), lower = row(i + m);
              float* e0 = dst + (i % m) * phaseFloats + seg.base + (i / m) * tW;
              for (int a = 0; a < n; ++a) V::store(e0 + a * streamFloats, V::permute2(upper, streamLanes[a], lower));
            }
        }
        return;
      }
    }
    float* copy = rowCopies;
    for (int64_t q = 0; q < segCount; ++q) {
      const WinogradSegment& seg = segs[q];
      const float* planeIn = input + seg.image + ic * plane;
      for (int64_t i = 0; i < seg.rows; ++i, copy += rowFloats) {
        const int64_t y = m * seg.ty0 - s.padH + i;
        if (y >= 0 && y < s.H) copyFloats<V>(copy + s.padW, planeIn + y * W, W);
      }
    }
    copy = rowCopies;
    for (int64_t q = 0; q < segCount; ++q) {
      const WinogradSegment& seg = segs[q];
      for (int64_t i = 0; i < seg.rows; ++i, copy += rowFloats) {
        float* __restrict e0 = dst + (i % m) * phaseFloats + seg.base + (i / m) * tW;
        const int64_t y = m * seg.ty0 - s.padH + i;
        if (y < 0 || y >= s.H) {
          for (int64_t k = 0; k < tW; k += L)
            for (int a = 0; a < n; ++a) V::store(e0 + a * streamFloats + k, V::zero());
          continue;
        }
        for (int64_t k = 0; k < tW; k += L) {
          // Streams [0, m) from the copy at m*k, streams m and m + 1 (the
          // next tile's first two columns) from m floats further.
          Reg first[m], next[m];
          deinterleave<V, m>(copy + m * k, first);
          deinterleave<V, m>(copy + m + m * k, next);
#pragma GCC unroll 4
          for (int a = 0; a < m; ++a) V::store(e0 + a * streamFloats + k, first[a]);
          V::store(e0 + m * streamFloats + k, next[0]);
          V::store(e0 + (m + 1) * streamFloats + k, next[1]);
        }
      }
    }
  };
  splitChannel(0, streams);
  for (int64_t ic = 0; ic < K; ++ic) {
    const float* cur = streams + (ic & 1) * bufferFloats;
    if (ic + 1 < K) splitChannel(ic + 1, streams + ((ic + 1) & 1) * bufferFloats);
    for (int64_t q = 0; q < segCount; ++q) {
      const WinogradSegment& seg = segs[q];
      for (int64_t c = 0; c < seg.len; c += L) {
        const float* first = cur + seg.base + seg.tx0 + c;
        Reg v[n][n];
        separableTransform<n, n>(
            [&](int r, int col) { return V::load(first + (r % m) * phaseFloats + (r / m) * tW + col * streamFloats); },
            [](const Reg* in, Reg* out) { WinogradF<m>::template input<V>(in, out); }, v);
        float* dst = Vb + ic * ld + seg.j + c;
        const int64_t lanes = minI(L, seg.len - c);
#pragma GCC unroll 6
        for (int i = 0; i < n; ++i) {
#pragma GCC unroll 6
          for (int col = 0; col < n; ++col) {
            if (lanes == L) {
              V::store(dst + (i * n + col) * xiStride, v[i][col]);
            } else {
              V::storePartial(dst + (i * n + col) * xiStride, v[i][col], lanes);
            }
          }
        }
      }
    }
    // Lanes past the block's last tile are read by the GEMM's last vector.
    for (int64_t j = count; j < roundUp(count, L); ++j)
      for (int xi = 0; xi < n * n; ++xi) Vb[xi * xiStride + ic * ld + j] = 0.0f;
  }
}

// out[q] = lanes [q L/m, (q + 1) L/m) of the m tiles interleaved:
// out[q][m*l + c] = columns[c][q L/m + l] (zips).
template <class V, int m>
inline void interleaveTiles(const typename V::Reg columns[m], typename V::Reg out[m]) {
  if constexpr (m == 2) {
    V::zip(columns[0], columns[1], out[0], out[1]);
  } else {
    static_assert(m == 4, "F(2x2) and F(4x4) only");
    typename V::Reg lo02, hi02, lo13, hi13;
    V::zip(columns[0], columns[2], lo02, hi02);
    V::zip(columns[1], columns[3], lo13, hi13);
    V::zip(lo02, lo13, out[0], out[1]);
    V::zip(hi02, hi13, out[2], out[3]);
  }
}

// y tile = A^T M A (+ bias), with full vectors along the block: output row r
// of the block's tiles goes, its m columns interleaved in registers, to
// rows[r][m*j + c] for tile j, column c (each row m*ld floats). Then each run
// copies its stretch of every row into the output, clipped at the
// bottom/right edge. Mb holds output channels [o0, o1) only; yAll has room
// for two slots of m*m*ld + 16 floats.
template <class V, int m>
void winogradOutputTransform(const ConvShape& s, const float* Mb, int64_t ld, int64_t xiStride, int64_t o0,
                             int64_t o1, const WinogradRun* runs, int64_t runCount, int64_t count, const float* bias,
                             float* yAll, float* out) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes, n = m + 2;
  const int64_t outH = s.outH(), outW = s.outW(), plane = outH * outW;
  // Two slots of rows, a cache line more than their size apart; channel oc's
  // rows are copied out after channel oc + 1's are computed, so the copies'
  // unaligned loads do not wait on the stores just made.
  const int64_t slotFloats = m * m * ld + 16;
  const auto computeRows = [&](int64_t oc, float* rows) {
    const Reg b = bias != nullptr ? V::set1(bias[oc]) : V::zero();
    for (int64_t j = 0; j < count; j += L) {
      const float* src = Mb + (oc - o0) * ld + j;
      Reg tile[m][m];
      separableTransform<n, m>([&](int r, int col) { return V::load(src + (r * n + col) * xiStride); },
                               [](const Reg* in, Reg* out) { WinogradF<m>::template output<V>(in, out); }, tile);
#pragma GCC unroll 4
      for (int r = 0; r < m; ++r) {
        Reg interleaved[m];
#pragma GCC unroll 4
        for (int c = 0; c < m; ++c) tile[r][c] = V::add(tile[r][c], b);
        interleaveTiles<V, m>(tile[r], interleaved);
#pragma GCC unroll 4
        for (int q = 0; q < m; ++q) V::store(rows + r * m * ld + m * j + q * L, interleaved[q]);
      }
    }
  };
  const auto copyRows = [&](int64_t oc, const float* rows) {
    for (int64_t q = 0; q < runCount; ++q) {
      const WinogradRun& run = runs[q];
      // The row's last tile is cut at the right edge.
      const int64_t width = minI(m * run.len, outW - m * run.tx0);
      float* dst = out + run.out + oc * plane;
      for (int r = 0; r < m && m * run.ty + r < outH; ++r)
        copyFloats<V>(dst + r * outW, rows + r * m * ld + m * run.j, width);
    }
  };
  for (int64_t oc = o0; oc < o1; ++oc) {
    computeRows(oc, yAll + (oc & 1) * slotFloats);
    if (oc > o0) copyRows(oc - 1, yAll + ((oc - 1) & 1) * slotFloats);
  }
  copyRows(o1 - 1, yAll + ((o1 - 1) & 1) * slotFloats);
}

// Tiles per block: V (n*n points x K channels x block) stays in L2 next to
// the packed weights at about 288 KiB, at most ~128 tiles, rounded up to
// whole GEMM slivers. Measured on conv2: the F(2x2) forward pass (K = 32)
// gets 128, and 64 and 192 were slower; the F(4x4) data gradient (K = 64)
// gets 32, ~8% faster than 64 on 2 threads.
template <class V>
int64_t winogradBlockTiles(int m, int64_t K) {
  constexpr int64_t NR = GemmTile<V>::kNR;
  const int64_t fit = 288 * 1024 / (int64_t(sizeof(float)) * (m + 2) * (m + 2) * K);
  return maxI(NR, ceilDiv(minI(128, fit), NR) * NR);
}

template <class V, int m>
void winogradConvTiled(const ConvShape& s, const WinogradWeights& wt, const float* input, const float* bias,
                       float* out) {
  constexpr int MR = GemmTile<V>::kMR, NR = GemmTile<V>::kNR, n = m + 2, P = n * n;
  const int64_t M = s.outC, K = s.inC, tW = ceilDiv(s.outW(), m), Tb = winogradBlockTiles<V>(m, K);
  const int64_t tiles = s.batch * ceilDiv(s.outH(), m) * tW, blocks = ceilDiv(tiles, Tb);
  const int64_t threads = minI(numThreads(), blocks);
  // The xi panels of packed weights a cache line more than their size apart:
  // conv2's are exactly 8 KiB, and the weight transform's n*n stores per
  // weight pair would otherwise all fall in one L1 set (measured: 80% of its time).
  const int64_t panelFloats = roundUp(packedASize<V>(M, K), 16) + 16, kc = kcBlock<V>(K), mPad = roundUp(M, MR);
  // The P xi planes of V and M, a cache line more than a multiple of 4 KiB
  // apart, so the transforms' P streams do not fight over the same L1 sets.
  // M holds one MR-channel panel at a time (64-74 KiB on conv2): its GEMMs
  // and output transform run back to back while it is cache-hot, and V is
  // the only large buffer a block keeps in L2.
  const int64_t vStride = K * Tb + 16, mStride = MR * Tb + 16;
  // A block has at most Tb runs.
  const int64_t runFloats = roundUp(Tb * int64_t(sizeof(WinogradRun) / sizeof(float)), 16);
  const int64_t maxSegs = winogradMaxSegments(s, m, Tb);
  const int64_t segFloats = roundUp(maxSegs * int64_t(sizeof(WinogradSegment) / sizeof(float)), 16);
  const int64_t streamFloats = winogradStreamFloats<V>(s, m, Tb), rowFloats = winogradRowFloats<V>(s, m);
  const int64_t streamsFloats = 2 * m * n * streamFloats;  // 2 buffers x m phases x n streams
  // Rows split per block: m * (tile rows touched + 1) + 2 per segment.
  const int64_t rowCopyFloats = (m * (Tb / tW + 3 * maxSegs) + 2) * rowFloats;
  const int64_t perThread =
      P * (vStride + mStride) + runFloats + segFloats + rowCopyFloats + streamsFloats + 2 * (m * m * Tb + 16) + 16;
  float* packedA = static_cast<float*>(scratchBytes(sizeof(float) * (P * panelFloats + threads * perThread)));
  float* work = packedA + P * panelFloats;
  parallelForEach(0, M, ceilDiv(M, threads), [&](int64_t lo, int64_t hi) {
    winogradWeightTransform<V, m>(wt, M, K, lo, hi, panelFloats, packedA);
  });
  const GemmEpilogue e;
  const int64_t imageFloats = K * s.H * s.W;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* Vb = work + t * perThread;
      float* Mb = Vb + P * vStride;
      WinogradRun* runs = reinterpret_cast<WinogradRun*>(Mb + P * mStride);
      WinogradSegment* segs = reinterpret_cast<WinogradSegment*>(Mb + P * mStride + runFloats);
      float* rowCopies = Mb + P * mStride + runFloats + segFloats;
      float* streams = rowCopies + rowCopyFloats;
      float* yBlock = streams + streamsFloats;
      for (int64_t i = 0; i < rowCopyFloats + streamsFloats; ++i) rowCopies[i] = 0.0f;
      for (int64_t b = blocks * t / threads; b < blocks * (t + 1) / threads; ++b) {
        const int64_t first = b * Tb, count = minI(Tb, tiles - first);
        const int64_t runCount = winogradRuns(s, m, first, count, runs);
        const int64_t segCount = winogradSegments(s, m, first, count, segs);
        // The split walks the block's images channel by channel, jumping
        // between planes faster than the hardware prefetchers follow: fetch
        // the images up front (~3% on conv2 with cold caches).
        for (const float* p = input + segs[0].image; p < input + segs[segCount - 1].image + imageFloats; p += 16)
          __builtin_prefetch(p, 0, 3);
        winogradInputTransform<V, m>(s, input, segs, segCount, count, Tb, vStride, streamFloats, rowFloats,
                                     rowCopies, streams, Vb);
        for (int64_t i0 = 0; i0 < M; i0 += MR) {
          for (int xi = 0; xi < P; ++xi)
            for (int64_t k0 = 0; k0 < K; k0 += kc) {
              const int64_t kcp = minI(kc, K - k0);
              const float* a = packedA + xi * panelFloats + k0 * mPad + i0 * kcp;
              for (int64_t j0 = 0; j0 < count; j0 += NR)
                gemmTile<V>(kcp, a, StridedRows{Vb + xi * vStride + k0 * Tb + j0, Tb}, Mb + xi * mStride + j0, Tb,
                            M - i0, count - j0, e, k0 == 0, i0, j0);
            }
          winogradOutputTransform<V, m>(s, Mb, Tb, mStride, i0, minI(M, i0 + MR), runs, runCount, count, bias,
                                        yBlock, out);
        }
      }
    }
  });
}

// `tile` is the output tile size m, 2 or 4 (see convForward for why the
// forward pass keeps 2).
template <class V>
void winogradConv(const ConvShape& s, const WinogradWeights& wt, const float* input, const float* bias, float* out,
                  int tile) {
  if (tile == 4) {
    winogradConvTiled<V, 4>(s, wt, input, bias, out);
  } else {
    winogradConvTiled<V, 2>(s, wt, input, bias, out);
  }
}

}  // namespace
}  // namespace bnkit
