// Winograd F(2x2, 3x3) for stride-1 3x3 convolutions with enough channels
// (conv2 of the MNIST models and its data gradient): every 2x2 output tile is
//   Y = A^T [ sum_ic (G g G^T) (.) (B^T d B) ] A
// so the 16 positions xi of the transformed 4x4 tiles become 16 independent
// GEMMs  M_xi[oc][tile] = U_xi[oc][ic] * V_xi[ic][tile]  with 2.25x fewer
// multiply-adds than the direct convolution, and no junk columns.
// Tiles are numbered over the whole batch and cut into fixed blocks of
// winogradBlockTiles (a function of the ISA only); a block's V stays in L2
// while its GEMMs run one MR-channel panel of outputs at a time, each panel's
// M (16 x MR x block floats) output-transformed straight after its GEMMs.
// Threads take whole blocks and every tile is computed the same way in any
// block, so results do not depend on the thread count. The transforms work on
// vectors of tiles: the input transform along a block's tiles of one image,
// across tile rows (from input rows split into tap streams, see
// winogradInputTransform), the output transform along the block. The weight transform writes the GEMM's packed A
// panels directly. The weight gradient of the same layers is in
// conv_wgrad_winograd.h.
// Rounding: the input/output transforms only add and subtract, and G has
// entries 1 and 1/2, so the error stays within a small multiple of the direct
// sum's (checked against the float64 reference by the tests).
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

template <class V>
constexpr int64_t winogradBlockTiles() {
  // About 128 tiles (measured: 64 and 192 are slower on conv2), a whole number of GEMM slivers.
  return (128 + GemmTile<V>::kNR - 1) / GemmTile<V>::kNR * GemmTile<V>::kNR;
}

// B^T d B of F(2x2, 3x3), B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], on a
// 4x4 input tile of vectors (lanes are independent tiles or channels):
// out[i][j] is element (i, j) of the transformed tile. Shared by the forward /
// data-gradient path and the weight gradient, which transform the same tiles.
template <class V>
inline void winogradInputTile(const typename V::Reg d[4][4], typename V::Reg out[4][4]) {
  typename V::Reg t[4][4];
#pragma GCC unroll 4
  for (int col = 0; col < 4; ++col) {
    t[0][col] = V::sub(d[0][col], d[2][col]);
    t[1][col] = V::add(d[1][col], d[2][col]);
    t[2][col] = V::sub(d[2][col], d[1][col]);
    t[3][col] = V::sub(d[1][col], d[3][col]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    out[i][0] = V::sub(t[i][0], t[i][2]);
    out[i][1] = V::add(t[i][1], t[i][2]);
    out[i][2] = V::sub(t[i][2], t[i][1]);
    out[i][3] = V::sub(t[i][1], t[i][3]);
  }
}

// Worth it (and exact enough) for 3x3 stride-1 layers with several channels
// on both sides; the padding may be 0..2 as every tile read is bounds-checked.
inline bool winogradFits(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.strideH == 1 && s.strideW == 1 && s.padH <= 2 && s.padW <= 2 &&
         s.inC >= 8 && s.outC >= 8 && s.outH() >= 2 && s.outW() >= 2;
}

// U_xi[o][i] = (G g G^T)[xi] with G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], in
// double, for output channels [o0, o1), written straight into the packed GEMM
// A panels of each xi (packAPanels' layout: K blocks, MR-row panels, [k][MR]).
template <class V>
void winogradWeightTransform(const WinogradWeights& wt, int64_t outC, int64_t inC, int64_t o0, int64_t o1,
                             int64_t panelFloats, float* packed) {
  constexpr int MR = GemmTile<V>::kMR;
  const int64_t kc = kcBlock<V>(inC), mPad = roundUp(outC, MR);
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t i = 0; i < inC; ++i) {
      const int64_t k0 = i / kc * kc;
      float* dst = packed + k0 * mPad + (o / MR) * MR * minI(kc, inC - k0) + (i - k0) * MR + o % MR;
      double g[3][3], t[4][3];
      for (int ky = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 3; ++kx) g[ky][kx] = wt.at(outC, inC, o, i, ky, kx);
      for (int c = 0; c < 3; ++c) {
        t[0][c] = g[0][c];
        t[1][c] = 0.5 * (g[0][c] + g[1][c] + g[2][c]);
        t[2][c] = 0.5 * (g[0][c] - g[1][c] + g[2][c]);
        t[3][c] = g[2][c];
      }
      for (int r = 0; r < 4; ++r) {
        const double u[4] = {t[r][0], 0.5 * (t[r][0] + t[r][1] + t[r][2]), 0.5 * (t[r][0] - t[r][1] + t[r][2]),
                             t[r][2]};
        for (int c = 0; c < 4; ++c) dst[(r * 4 + c) * panelFloats] = static_cast<float>(u[c]);
      }
    }
  // Rows of the last panel past outC multiply nothing but must be finite.
  if (o1 == outC)
    for (int64_t o = outC; o < mPad; ++o)
      for (int64_t i = 0; i < inC; ++i) {
        const int64_t k0 = i / kc * kc;
        float* dst = packed + k0 * mPad + (o / MR) * MR * minI(kc, inC - k0) + (i - k0) * MR + o % MR;
        for (int xi = 0; xi < 16; ++xi) dst[xi * panelFloats] = 0.0f;
      }
}

// A run of a block's tiles on one tile row: tiles [tx0, tx0 + len) of row ty
// of image n, block positions [j, j + len) (the output transform's unit).
struct WinogradRun {
  int64_t out;  // offset of the run's first output in output channel 0
  int64_t ty, tx0, len, j;
};

inline int64_t winogradRuns(const ConvShape& s, int64_t first, int64_t count, WinogradRun* runs) {
  const int64_t outH = s.outH(), outW = s.outW(), tH = (outH + 1) / 2, tW = (outW + 1) / 2;
  int64_t count_ = 0;
  for (int64_t g = first; g < first + count; ++count_) {
    const int64_t tx = g % tW, len = minI(tW - tx, first + count - g);
    const int64_t n = g / (tH * tW), ty = (g / tW) % tH;
    runs[count_] = WinogradRun{n * s.outC * outH * outW + 2 * ty * outW + 2 * tx, ty, tx, len, g - first};
    g += len;
  }
  return count_;
}

// A block's tiles within one image (the input transform's unit): tiles
// [j, j + len) of the block, the first at tile row ty0, column tx0. Its input
// rows y = 2*ty0 - padH + i, i in [0, rows), are split into tap streams
// starting at `base` (see winogradInputTransform).
struct WinogradSegment {
  int64_t image;  // offset of image n (input channel 0)
  int64_t ty0, tx0, len, j, rows, base;
};

inline int64_t winogradSegments(const ConvShape& s, int64_t first, int64_t count, WinogradSegment* segs) {
  const int64_t tH = (s.outH() + 1) / 2, tW = (s.outW() + 1) / 2, perImage = tH * tW;
  int64_t n = 0, base = 0;
  for (int64_t g = first; g < first + count; ++n) {
    const int64_t image = g / perImage, end = minI(first + count, (image + 1) * perImage);
    const int64_t ty0 = (g / tW) % tH, ty1 = ((end - 1) / tW) % tH;
    segs[n] = WinogradSegment{image * s.inC * s.H * s.W, ty0, g % tW, end - g, g - first, 2 * (ty1 - ty0) + 4, base};
    base += (ty1 - ty0 + 2) * tW;
    g = end;
  }
  return n;
}

// Most segments a block of Tb tiles can have, and the stream positions they need.
inline int64_t winogradMaxSegments(const ConvShape& s, int64_t Tb) {
  return Tb / (((s.outH() + 1) / 2) * ((s.outW() + 1) / 2)) + 2;
}

template <class V>
int64_t winogradStreamFloats(const ConvShape& s, int64_t Tb) {
  const int64_t tW = (s.outW() + 1) / 2;
  // Tile rows touched <= Tb / tW + 2 per segment; one extra row pair each; vector slack.
  return roundUp(Tb + 4 * winogradMaxSegments(s, Tb) * tW + 2 * V::kLanes, V::kLanes);
}

// A zero-padded copy of one input row: column x at padW + x, zeros around,
// long enough for the unzips of both tap pairs.
template <class V>
int64_t winogradRowFloats(const ConvShape& s) {
  const int64_t tW = (s.outW() + 1) / 2;
  return roundUp(2 + 2 * roundUp(tW, V::kLanes) + 2 * V::kLanes + s.W + s.padW, V::kLanes);
}

// V_xi[ic][j] = (B^T d B)[xi] for the block's tiles, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
// xi planes `xiStride` floats apart. Tap column c of tile tx is input column
// 2*tx + c - padW. Each input row of a segment is split once (unzips of a
// zero-padded copy) into four streams, the columns 2tx, 2tx+1, 2tx+2, 2tx+3
// of the copy for tx in [0, tW), and row i of the segment is stored at
// position base + (i/2)*tW of stream parity i%2. Then tap row r of the
// segment's tiles, in block order, is the contiguous range starting at
// base + (r/2)*tW + tx0 of parity r%2: the transform runs on whole vectors of
// tiles across tile rows. Lanes past a segment's end read other rows or what
// the buffers held before (zeroed once per call, so always finite) and are
// never stored; a row's whole-vector stores spill onto the next rows' places,
// which are written afterwards.
template <class V>
void winogradInputTransform(const ConvShape& s, const float* input, const WinogradSegment* segs, int64_t segCount,
                            int64_t count, int64_t ld, int64_t xiStride, int64_t streamFloats, int64_t rowFloats, float* rowCopies,
                            float* streams, float* Vb) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t plane = s.H * s.W, W = s.W, K = s.inC, tW = (s.outW() + 1) / 2;
  // streams: [buffer][parity][E0, O0, E1, O1][streamFloats]. Channel ic + 1
  // is split (into the other buffer) before channel ic is transformed, so its
  // loads never wait on the stores just made.
  const int64_t parityFloats = 4 * streamFloats, bufferFloats = 2 * parityFloats;
  // Narrow images (two tile rows fit one vector, a whole input row fits one
  // vector with a zero lane to spare: MNIST's 14x14 on AVX-512) split two
  // rows of a parity at once, straight from the input: one two-register
  // permute per stream puts row i's taps in lanes [0, tW) and row i + 2's in
  // [tW, 2 tW), their stream positions being consecutive. Columns outside the
  // image pick the zero lane. Same stream contents as the copy-and-unzip
  // below, a third of the work.
  [[maybe_unused]] const bool pairRows = 2 * tW <= L && W < L;
  [[maybe_unused]] typename SimdLanes<V>::Type streamLanes[4];
  if constexpr (V::kHasPermute2) {
    if (pairRows) {
      for (int a = 0; a < 4; ++a) {
        int32_t index[L];
        for (int64_t j = 0; j < L; ++j) {
          const int64_t half = j / tW, col = 2 * (j % tW) + a - s.padW;
          // Lane L - 1 of either row is zero (the row has at most L - 1 floats).
          index[j] = static_cast<int32_t>(half > 1 || col < 0 || col >= W ? L - 1 : half * L + col);
        }
        streamLanes[a] = V::lanes(index);
      }
    }
  }
  // Copies first (all rows), unzips second: an unzip's loads would otherwise
  // wait on the partial store of the copy just made.
  const auto splitChannel = [&](int64_t ic, float* dst) {
    if constexpr (V::kHasPermute2) {
      if (pairRows) {
        for (int64_t q = 0; q < segCount; ++q) {
          const WinogradSegment& seg = segs[q];
          const float* planeIn = input + seg.image + ic * plane;
          const auto row = [&](int64_t i) {
            const int64_t y = 2 * seg.ty0 - s.padH + i;
            return i < seg.rows && y >= 0 && y < s.H ? V::loadPartial(planeIn + y * W, W, 0.0f) : V::zero();
          };
          // Rows i and i + 2 of parity i % 2, in increasing position: each
          // store's lanes past 2 tW land where later pairs (or the slack) go.
          for (int64_t i0 = 0; i0 < seg.rows; i0 += 4)
            for (int64_t i = i0; i < i0 + 2 && i < seg.rows; ++i) {
              const Reg upper = row(i), lower = row(i + 2);
              float* e0 = dst + (i & 1) * parityFloats + seg.base + (i >> 1) * tW;
              for (int a = 0; a < 4; ++a) V::store(e0 + a * streamFloats, V::permute2(upper, streamLanes[a], lower));
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
        const int64_t y = 2 * seg.ty0 - s.padH + i;
        if (y >= 0 && y < s.H) copyFloats<V>(copy + s.padW, planeIn + y * W, W);
      }
    }
    copy = rowCopies;
    for (int64_t q = 0; q < segCount; ++q) {
      const WinogradSegment& seg = segs[q];
      for (int64_t i = 0; i < seg.rows; ++i, copy += rowFloats) {
        float* __restrict e0 = dst + (i & 1) * parityFloats + seg.base + (i >> 1) * tW;
        const int64_t y = 2 * seg.ty0 - s.padH + i;
        if (y < 0 || y >= s.H) {
          for (int64_t k = 0; k < tW; k += L)
            for (int a = 0; a < 4; ++a) V::store(e0 + a * streamFloats + k, V::zero());
          continue;
        }
        for (int64_t k = 0; k < tW; k += L) {
          Reg even, odd;
          V::unzip(V::load(copy + 2 * k), V::load(copy + 2 * k + L), even, odd);
          V::store(e0 + k, even);
          V::store(e0 + streamFloats + k, odd);
          V::unzip(V::load(copy + 2 + 2 * k), V::load(copy + 2 + 2 * k + L), even, odd);
          V::store(e0 + 2 * streamFloats + k, even);
          V::store(e0 + 3 * streamFloats + k, odd);
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
        Reg d[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; ++r) {
          const float* e = cur + (r & 1) * parityFloats + seg.base + (r >> 1) * tW + seg.tx0 + c;
#pragma GCC unroll 4
          for (int col = 0; col < 4; ++col) d[r][col] = V::load(e + col * streamFloats);
        }
        Reg v[4][4];
        winogradInputTile<V>(d, v);
        float* dst = Vb + ic * ld + seg.j + c;
        const int64_t lanes = minI(L, seg.len - c);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
#pragma GCC unroll 4
          for (int col = 0; col < 4; ++col) {
            if (lanes == L) {
              V::store(dst + (i * 4 + col) * xiStride, v[i][col]);
            } else {
              V::storePartial(dst + (i * 4 + col) * xiStride, v[i][col], lanes);
            }
          }
        }
      }
    }
    // Lanes past the block's last tile are read by the GEMM's last vector.
    for (int64_t j = count; j < roundUp(count, L); ++j)
      for (int xi = 0; xi < 16; ++xi) Vb[xi * xiStride + ic * ld + j] = 0.0f;
  }
}

// dst[2l] = even[l], dst[2l + 1] = odd[l] for the first n floats of dst.
// Reads whole vectors of even and odd (up to L - 1 floats past the pairs).
template <class V>
inline void interleaveRow(const float* even, const float* odd, int64_t n, float* dst) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  for (int64_t i = 0; i < n; i += 2 * L) {
    Reg lo, hi;
    V::zip(V::load(even + i / 2), V::load(odd + i / 2), lo, hi);
    const int64_t left = n - i;
    if (left >= 2 * L) {
      V::store(dst + i, lo);
      V::store(dst + i + L, hi);
    } else if (left > L) {
      V::store(dst + i, lo);
      V::storePartial(dst + i + L, hi, left - L);
    } else {
      V::storePartial(dst + i, lo, left);
    }
  }
}

// y tile = A^T m A (+ bias), A^T = [1 1 1 0; 0 1 -1 -1]: computed with full
// vectors along the block into y[4][ld], then interleaved run by run into the
// two output rows (zips), clipped at the bottom/right edge.
// Mb holds output channels [o0, o1) only; yAll has room for 4 rows of each.
template <class V>
void winogradOutputTransform(const ConvShape& s, const float* Mb, int64_t ld, int64_t xiStride, int64_t o0,
                             int64_t o1, const WinogradRun* runs, int64_t runCount, int64_t count, const float* bias,
                             float* yAll, float* out) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  const int64_t outH = s.outH(), outW = s.outW(), plane = outH * outW, tW = (outW + 1) / 2;
  // All channels' y first: the interleaving loads below then read stores
  // that have left the store buffer (unaligned loads overlapping recent
  // stores wait for them).
  for (int64_t oc = o0; oc < o1; ++oc) {
    const Reg b = bias != nullptr ? V::set1(bias[oc]) : V::zero();
    float* y = yAll + (oc - o0) * 4 * ld;
    for (int64_t j = 0; j < count; j += L) {
      const float* src = Mb + (oc - o0) * ld + j;
      Reg sRow[2][4];
#pragma GCC unroll 4
      for (int col = 0; col < 4; ++col) {
        const Reg m0 = V::load(src + col * xiStride), m1 = V::load(src + (4 + col) * xiStride);
        const Reg m2 = V::load(src + (8 + col) * xiStride), m3 = V::load(src + (12 + col) * xiStride);
        sRow[0][col] = V::add(V::add(m0, m1), m2);
        sRow[1][col] = V::sub(V::sub(m1, m2), m3);
      }
#pragma GCC unroll 2
      for (int r = 0; r < 2; ++r) {
        const Reg* v = sRow[r];
        V::store(y + (r * 2) * ld + j, V::add(V::add(V::add(v[0], v[1]), v[2]), b));
        V::store(y + (r * 2 + 1) * ld + j, V::add(V::sub(V::sub(v[1], v[2]), v[3]), b));
      }
    }
  }
  for (int64_t oc = o0; oc < o1; ++oc) {
    const float* y = yAll + (oc - o0) * 4 * ld;
    for (int64_t q = 0; q < runCount; ++q) {
      const WinogradRun& run = runs[q];
      const float* y0 = y + run.j;
      const float *y1 = y0 + ld, *y2 = y0 + 2 * ld, *y3 = y0 + 3 * ld;
      // The row's last tile has one column when outW is odd.
      const int64_t n = 2 * run.len - ((outW & 1) && run.tx0 + run.len == tW ? 1 : 0);
      float* r0 = out + run.out + oc * plane;
      interleaveRow<V>(y0, y1, n, r0);
      if (2 * run.ty + 1 < outH) interleaveRow<V>(y2, y3, n, r0 + outW);
    }
  }
}

template <class V>
void winogradConv(const ConvShape& s, const WinogradWeights& wt, const float* input, const float* bias, float* out) {
  constexpr int MR = GemmTile<V>::kMR, NR = GemmTile<V>::kNR;
  constexpr int64_t Tb = winogradBlockTiles<V>();
  const int64_t M = s.outC, K = s.inC;
  const int64_t tiles = s.batch * ((s.outH() + 1) / 2) * ((s.outW() + 1) / 2), blocks = ceilDiv(tiles, Tb);
  const int64_t threads = minI(numThreads(), blocks);
  const int64_t panelFloats = packedASize<V>(M, K), kc = kcBlock<V>(K), mPad = roundUp(M, MR);
  // The 16 xi planes of V and M, a cache line more than a multiple of 4 KiB
  // apart, so the transforms' 16 streams do not fight over the same L1 sets.
  // M holds one MR-channel panel at a time (64 KiB on conv2): its GEMMs and
  // output transform run back to back while it is cache-hot, and V is the
  // only large buffer a block keeps in L2.
  const int64_t vStride = K * Tb + 16, mStride = MR * Tb + 16;
  // A block has at most Tb runs.
  const int64_t runFloats = roundUp(Tb * int64_t(sizeof(WinogradRun) / sizeof(float)), 16);
  const int64_t maxSegs = winogradMaxSegments(s, Tb);
  const int64_t segFloats = roundUp(maxSegs * int64_t(sizeof(WinogradSegment) / sizeof(float)), 16);
  const int64_t streamFloats = winogradStreamFloats<V>(s, Tb), rowFloats = winogradRowFloats<V>(s);
  const int64_t streamsFloats = 16 * streamFloats;  // 2 buffers x 2 parities x 4 streams
  // Rows split per block: 2 * (tile rows touched + 1) per segment.
  const int64_t rowCopyFloats = (2 * (Tb / ((s.outW() + 1) / 2) + 3 * maxSegs) + 2) * rowFloats;
  const int64_t perThread =
      16 * (vStride + mStride) + runFloats + segFloats + rowCopyFloats + streamsFloats + MR * 4 * Tb + 16;
  float* packedA = static_cast<float*>(scratchBytes(sizeof(float) * (16 * panelFloats + threads * perThread)));
  float* work = packedA + 16 * panelFloats;
  parallelForEach(0, M, ceilDiv(M, threads), [&](int64_t lo, int64_t hi) {
    winogradWeightTransform<V>(wt, M, K, lo, hi, panelFloats, packedA);
  });
  const GemmEpilogue e;
  const int64_t imageFloats = K * s.H * s.W;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* Vb = work + t * perThread;
      float* Mb = Vb + 16 * vStride;
      WinogradRun* runs = reinterpret_cast<WinogradRun*>(Mb + 16 * mStride);
      WinogradSegment* segs = reinterpret_cast<WinogradSegment*>(Mb + 16 * mStride + runFloats);
      float* rowCopies = Mb + 16 * mStride + runFloats + segFloats;
      float* streams = rowCopies + rowCopyFloats;
      float* yBlock = streams + streamsFloats;
      for (int64_t i = 0; i < rowCopyFloats + streamsFloats; ++i) rowCopies[i] = 0.0f;
      for (int64_t b = blocks * t / threads; b < blocks * (t + 1) / threads; ++b) {
        const int64_t first = b * Tb, count = minI(Tb, tiles - first);
        const int64_t runCount = winogradRuns(s, first, count, runs);
        const int64_t segCount = winogradSegments(s, first, count, segs);
        // The split walks the block's images channel by channel, jumping
        // between planes faster than the hardware prefetchers follow: fetch
        // the images up front (~3% on conv2 with cold caches).
        for (const float* p = input + segs[0].image; p < input + segs[segCount - 1].image + imageFloats; p += 16)
          __builtin_prefetch(p, 0, 3);
        winogradInputTransform<V>(s, input, segs, segCount, count, Tb, vStride, streamFloats, rowFloats, rowCopies,
                                  streams, Vb);
        for (int64_t i0 = 0; i0 < M; i0 += MR) {
          for (int xi = 0; xi < 16; ++xi)
            for (int64_t k0 = 0; k0 < K; k0 += kc) {
              const int64_t kcp = minI(kc, K - k0);
              const float* a = packedA + xi * panelFloats + k0 * mPad + i0 * kcp;
              for (int64_t j0 = 0; j0 < count; j0 += NR)
                gemmTile<V>(kcp, a, StridedRows{Vb + xi * vStride + k0 * Tb + j0, Tb}, Mb + xi * mStride + j0, Tb,
                            M - i0, count - j0, e, k0 == 0, i0, j0);
            }
          winogradOutputTransform<V>(s, Mb, Tb, mStride, i0, minI(M, i0 + MR), runs, runCount, count, bias, yBlock,
                                     out);
        }
      }
    }
  });
}

}  // namespace
}  // namespace bnkit
