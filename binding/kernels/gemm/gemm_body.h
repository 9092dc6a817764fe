// Packed SGEMM written once over a vector wrapper V (gemm_<isa>.cc instantiates
// it). The layout follows the usual three-level scheme:
//  - op(A) is read in place when its layout allows (the microkernel only needs
//    MR floats per k, either MR rows of a row-major A or MR contiguous floats
//    of a transposed one); a large transposed A is packed once per call into
//    MR-row panels, k-major ([k][MR]), shared by all threads (read-only).
//  - op(B) is packed one NR-column sliver at a time ([k][NR]) just before the
//    MR x NR register tiles that use it, so the sliver stays in L1 while the
//    A panels stream from L2.
//  - The microkernel keeps MR x NV vector accumulators in registers and does
//    one broadcast of A and NV vector loads of B per k.
// Every C element is produced by exactly one thread, summing k in the same
// order whatever the split, so results do not depend on the thread count.
// Operands come through "packers", so conv can feed im2col data straight into
// the B sliver without materializing the column matrix, or (OffsetRows) let
// the microkernel read B rows in place when they already lie contiguously.
// Tile sizes were measured on Zen 4-class cores (32 KiB L1D, 1 MiB L2, one
// 512-bit or two 256-bit FMAs per cycle).
#pragma once
#include <cstdint>

#include "../scratch.h"
#include "../threadpool.h"
#include "gemm.h"

namespace bnkit {
namespace {

// Register tile per vector width: MR rows of broadcast A times NV vectors of B.
// AVX-512 (32 zmm): 8 x 2 vectors = 16 accumulators; MR = 8 divides the
// 32/64-channel layers exactly. AVX2 (16 ymm): 4 x 3 = 12 accumulators + 3 B.
// NEON (32 q): 8 x 3 = 24. Scalar: 4 x 4 floats the compiler keeps in registers.
template <class V>
struct GemmTile {
  static constexpr int kLanes = V::kLanes;
  static constexpr int kMR = kLanes == 16 ? 8 : kLanes == 8 ? 4 : kLanes == 4 ? 8 : 4;
  static constexpr int kNV = kLanes == 16 ? 2 : kLanes == 8 ? 3 : kLanes == 4 ? 3 : 4;
  static constexpr int kNR = kNV * kLanes;
};

// Depth of one K block: the B sliver (kc x NR floats) must stay in L1 next to
// the streaming A panels; 24 KiB leaves room in a 32 KiB L1D.
template <class V>
inline int64_t kcBlock(int64_t K) {
  constexpr int64_t kSliverBytes = 48 * 1024;
  constexpr int64_t kMaxKc = kSliverBytes / (4 * GemmTile<V>::kNR) < 512 ? kSliverBytes / (4 * GemmTile<V>::kNR) : 512;
  if (K <= kMaxKc) return K;
  const int64_t blocks = (K + kMaxKc - 1) / kMaxKc;
  return (K + blocks - 1) / blocks;
}

inline int64_t roundUp(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
inline int64_t ceilDiv(int64_t v, int64_t m) { return (v + m - 1) / m; }
inline int64_t minI(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t maxI(int64_t a, int64_t b) { return a > b ? a : b; }

// How the microkernel finds row k (NR floats) of op(B) inside a K block:
// packed slivers advance by NR; conv operands that already lie contiguously in
// memory are read in place through a table of row offsets, skipping the copy.
struct PackedRows {
  const float* data;
  const float* row(int64_t k, int64_t nr) const { return data + k * nr; }
};

struct OffsetRows {
  const float* base;
  const int32_t* offsets;
  const float* row(int64_t k, int64_t) const { return base + offsets[k]; }
};

// B rows a fixed stride apart, read in place (operands already laid out as [k][columns]).
struct StridedRows {
  const float* base;
  int64_t ld;
  const float* row(int64_t k, int64_t) const { return base + k * ld; }
};

struct InPlaceB {
  const float* B;
  int64_t ld;
  StridedRows operator()(float*, int64_t j0, int64_t k0, int64_t) const { return StridedRows{B + k0 * ld + j0, ld}; }
};

struct GemmEpilogue {
  float alpha = 1.0f;
  float beta = 0.0f;
  const float* rowBias = nullptr;
  const float* colBias = nullptr;
  // Prefetch C ahead even when it is only written (beta == 0, first K
  // block): a store to a line in no cache waits for the line's read.
  bool prefetchC = false;
};

// One MR x (NV vectors) tile: acc = sum_k a[k][r] * b[k][c], row k of A
// starting aStep floats after row k-1 (MR in a packed panel); then on the first K block
// C = alpha*acc + beta*C + biases, on later blocks C += alpha*acc.
// Kept out of line: inlined into the tile loops, its accumulators compete with
// the loop's own registers and spill (seen with AVX2's 16 registers).
// With RowA, A is instead a row-major matrix read in place: row r of the tile
// starts aLd floats after row r-1 and k advances by one float.
template <class V, int NV, class Rows, bool RowA = false>
__attribute__((noinline)) void gemmMicroKernel(int64_t kc, const float* __restrict a, const Rows& b, float* c,
                            int64_t ldc, int64_t rows, int64_t cols, const GemmEpilogue& e, bool first,
                            int64_t i0, int64_t j0, int64_t aStep, int64_t aLd = 0) {
  using Reg = typename V::Reg;
  constexpr int MR = GemmTile<V>::kMR, L = V::kLanes, NR = GemmTile<V>::kNR;
  Reg acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  for (int64_t k = 0; k < kc; ++k) {
    const float* __restrict bk = b.row(k, NR);
    Reg bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = V::load(bk + v * L);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const Reg av = V::set1(RowA ? a[r * aLd] : a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(av, bv[v], acc[r][v]);
    }
    a += RowA ? 1 : aStep;
  }
  // Every index into acc is a constant (unrolled loops, tests instead of
  // early exits), so the accumulators stay in registers: a loop with a
  // variable bound would park them on the stack, zeroing and storing them on
  // each call (a tenth of a call with the 32-deep sums of Winograd conv2).
  if (rows >= MR && cols >= NV * L && e.alpha == 1.0f &&
      (!first || (e.beta == 0.0f && e.rowBias == nullptr && e.colBias == nullptr))) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* p = c + r * ldc + v * L;
        V::store(p, first ? acc[r][v] : V::add(V::load(p), acc[r][v]));
      }
    return;
  }
  const Reg alpha = V::set1(e.alpha), beta = V::set1(e.beta);
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (r >= rows) continue;
    float* row = c + r * ldc;
    const Reg rowBias = e.rowBias != nullptr && first ? V::set1(e.rowBias[i0 + r]) : V::zero();
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const int64_t valid = cols - v * L;
      if (valid <= 0) continue;
      Reg out = e.alpha == 1.0f ? acc[r][v] : V::mul(acc[r][v], alpha);
      if (first) {
        if (e.beta != 0.0f) out = V::fma(beta, valid >= L ? V::load(row + v * L) : V::loadPartial(row + v * L, valid, 0.0f), out);
        if (e.rowBias != nullptr) out = V::add(out, rowBias);
        if (e.colBias != nullptr) {
          const float* cb = e.colBias + j0 + v * L;
          out = V::add(out, valid >= L ? V::load(cb) : V::loadPartial(cb, valid, 0.0f));
        }
      } else {
        out = V::add(valid >= L ? V::load(row + v * L) : V::loadPartial(row + v * L, valid, 0.0f), out);
      }
      if (valid >= L) {
        V::store(row + v * L, out);
      } else {
        V::storePartial(row + v * L, out, valid);
      }
    }
  }
}

// Narrow right-edge tiles use fewer B vectors (same sliver stride), so a
// 196-column image wastes a fraction of one vector instead of one tile.
template <class V, class Rows, int NV = GemmTile<V>::kNV, bool RowA = false>
inline void gemmTile(int64_t kc, const float* a, const Rows& b, float* c, int64_t ldc, int64_t rows, int64_t cols,
                     const GemmEpilogue& e, bool first, int64_t i0, int64_t j0,
                     int64_t aStep = GemmTile<V>::kMR, int64_t aLd = 0) {
  if constexpr (NV > 1) {
    if (cols <= (NV - 1) * V::kLanes) {
      gemmTile<V, Rows, NV - 1, RowA>(kc, a, b, c, ldc, rows, cols, e, first, i0, j0, aStep, aLd);
      return;
    }
  }
  gemmMicroKernel<V, NV, Rows, RowA>(kc, a, b, c, ldc, rows, cols, e, first, i0, j0, aStep, aLd);
}

// Transposes an L x L block in registers: log2(L) rounds of zips of row i
// with row i + L/2 (a perfect shuffle each round) leave r[i][j] = old r[j][i].
template <class V>
inline void transposeBlock(typename V::Reg (&r)[V::kLanes]) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
#pragma GCC unroll 4
  for (int step = 1; step < L; step *= 2) {
    Reg n[L];
#pragma GCC unroll 16
    for (int i = 0; i < L / 2; ++i) V::zip(r[i], r[i + L / 2], n[2 * i], n[2 * i + 1]);
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) r[i] = n[i];
  }
}

// Packs `count` rows of src (row stride ld) transposed: dst[k * width + r] =
// src[r * ld + k] for k < kc, rows count..width-1 zero. L x L blocks go
// through registers (transposeBlock), so loads and stores are whole vectors;
// the rows lie far apart, too many streams for the hardware prefetcher,
// hence the explicit prefetch.
template <class V>
inline void packTransposed(float* dst, const float* src, int64_t ld, int64_t count, int width, int64_t kc) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes;
  for (int64_t kb = 0; kb < kc; kb += L) {
    const int64_t nk = minI(L, kc - kb);
    for (int r0 = 0; r0 < width; r0 += L) {
      const int64_t stored = minI(L, width - r0);  // rows per k this block writes
      Reg v[L];
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i) {
        const int64_t r = r0 + i;
        if (r >= count) {
          v[i] = V::zero();
          continue;
        }
        const float* row = src + r * ld + kb;
        __builtin_prefetch(row + 64);
        v[i] = nk == L ? V::load(row) : V::loadPartial(row, nk, 0.0f);
      }
      transposeBlock<V>(v);
#pragma GCC unroll 16
      for (int i = 0; i < L; ++i) {
        if (i >= nk) break;
        float* d = dst + (kb + i) * width + r0;
        if (stored == L) {
          V::store(d, v[i]);
        } else {
          V::storePartial(d, v[i], stored);
        }
      }
    }
  }
}

// Plain strided op(A): writes rows [i0, i0+MR) x k [k0, k0+kc) as dst[k*MR + r].
template <class V>
struct StridedA {
  const float* A;
  int64_t lda, M;
  bool trans;

  void operator()(float* dst, int64_t i0, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmTile<V>::kMR;
    const int64_t rows = minI(MR, M - i0);
    if (trans) {  // op(A)[i][k] = A[k][i]: MR contiguous floats per k
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (k0 + k) * lda + i0;
        float* d = dst + k * MR;
        for (int64_t r = 0; r < rows; ++r) d[r] = src[r];
        for (int64_t r = rows; r < MR; ++r) d[r] = 0.0f;
      }
    } else {
      packTransposed<V>(dst, A + i0 * lda + k0, lda, rows, MR, kc);
    }
  }
};

// Plain strided op(B): writes k [k0, k0+kc) x columns [j0, j0+NR) as dst[k*NR + c].
template <class V>
struct StridedB {
  const float* B;
  int64_t ldb, N;
  bool trans;

  PackedRows operator()(float* dst, int64_t j0, int64_t k0, int64_t kc) const {
    constexpr int NR = GemmTile<V>::kNR, NV = GemmTile<V>::kNV, L = V::kLanes;
    const int64_t cols = minI(NR, N - j0);
    if (!trans) {  // NR contiguous floats per k
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = B + (k0 + k) * ldb + j0;
        float* d = dst + k * NR;
        for (int v = 0; v < NV; ++v) {
          const int64_t valid = cols - v * L;
          V::store(d + v * L, valid >= L ? V::load(src + v * L)
                                         : (valid > 0 ? V::loadPartial(src + v * L, valid, 0.0f) : V::zero()));
        }
      }
    } else {  // op(B)[k][j] = B[j][k]
      packTransposed<V>(dst, B + j0 * ldb + k0, ldb, cols, NR, kc);
    }
    return PackedRows{dst};
  }
};

// Floats needed for op(A) packed over all K blocks.
template <class V>
inline int64_t packedASize(int64_t M, int64_t K) {
  return roundUp(M, GemmTile<V>::kMR) * K;
}

// Packs MR-row panels [ip0, ip1) of op(A), every K block. Block starting at k0
// lives at dst + k0 * Mpad, its panel ip at + ip * MR * kc.
template <class V, class PackA>
inline void packAPanels(const PackA& packA, int64_t M, int64_t K, int64_t ip0, int64_t ip1, float* dst) {
  constexpr int MR = GemmTile<V>::kMR;
  const int64_t kc = kcBlock<V>(K), mPad = roundUp(M, MR);
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t kcp = minI(kc, K - k0);
    for (int64_t ip = ip0; ip < ip1; ++ip) packA(dst + k0 * mPad + ip * MR * kcp, ip * MR, k0, kcp);
  }
}

// Where gemmTiles finds op(A): panels packed by packAPanels, shared by all threads.
struct PackedPanels {
  const float* data;
  int64_t mPad;
  const float* tile(int64_t ip, int64_t k0, int64_t kc, int64_t mr) const { return data + k0 * mPad + ip * mr * kc; }
};

// op(A) read where it lies, for every full MR-row panel: rows of a row-major
// A (aLd = lda apart, k contiguous), or, transposed, MR contiguous floats per
// k (lda apart). A partial last panel would read past the matrix, so that one
// comes from `tail`, packed (packAPanels' layout, M padded to one panel).
struct InPlaceA {
  const float* A;
  int64_t lda;
  bool trans;
  int64_t fullPanels;
  const float* tail;
};

template <class V, class Rows>
inline void gemmTileFrom(const PackedPanels& a, int64_t ip, int64_t k0, int64_t kc, const Rows& rows, float* c,
                         int64_t ldc, int64_t m, int64_t n, const GemmEpilogue& e, int64_t i0, int64_t j0) {
  gemmTile<V>(kc, a.tile(ip, k0, kc, GemmTile<V>::kMR), rows, c, ldc, m, n, e, k0 == 0, i0, j0);
}

template <class V, class Rows>
inline void gemmTileFrom(const InPlaceA& a, int64_t ip, int64_t k0, int64_t kc, const Rows& rows, float* c,
                         int64_t ldc, int64_t m, int64_t n, const GemmEpilogue& e, int64_t i0, int64_t j0) {
  constexpr int MR = GemmTile<V>::kMR;
  if (ip >= a.fullPanels) {
    gemmTile<V>(kc, a.tail + k0 * MR, rows, c, ldc, m, n, e, k0 == 0, i0, j0);
  } else if (a.trans) {
    gemmTile<V>(kc, a.A + k0 * a.lda + i0, rows, c, ldc, m, n, e, k0 == 0, i0, j0, a.lda);
  } else {
    gemmTile<V, Rows, GemmTile<V>::kNV, true>(kc, a.A + i0 * a.lda + k0, rows, c, ldc, m, n, e, k0 == 0, i0, j0, 1,
                                              a.lda);
  }
}

// C tiles [ip0, ip1) x [jp0, jp1) (in MR / NR panels) from op(A) (packed
// panels or InPlaceA) and a B packer, which fills `sliver` (kcBlock<V>(K)
// * NR floats owned by the calling thread) or points into memory that
// already has the layout.
template <class V, class PackB, class ASource>
inline void gemmTilesFrom(int64_t M, int64_t N, int64_t K, const ASource& a, const PackB& packB, int64_t ip0,
                          int64_t ip1, int64_t jp0, int64_t jp1, float* C, int64_t ldc, const GemmEpilogue& e,
                          float* sliver) {
  constexpr int MR = GemmTile<V>::kMR, NR = GemmTile<V>::kNR;
  const int64_t kc = kcBlock<V>(K);
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t kcp = minI(kc, K - k0);
    for (int64_t jp = jp0; jp < jp1; ++jp) {
      const int64_t j0 = jp * NR;
      const auto rows = packB(sliver, j0, k0, kcp);
      for (int64_t ip = ip0; ip < ip1; ++ip) {
        const int64_t i0 = ip * MR;
        // A tile reads C (beta != 0 or a later K block) from MR rows far
        // apart, more streams than the hardware prefetchers track: fetch the
        // next sliver's part of these rows (fc1's weight gradient: ~15%; its
        // data gradient, write-only but cold, ~15% too).
        if ((e.beta != 0.0f || k0 > 0 || e.prefetchC) && jp + 1 < jp1)
          for (int64_t r = i0; r < minI(M, i0 + MR); ++r)
            for (int64_t c = j0 + NR; c < minI(N, j0 + 2 * NR); c += 16) __builtin_prefetch(C + r * ldc + c, 1);
        gemmTileFrom<V>(a, ip, k0, kcp, rows, C + i0 * ldc + j0, ldc, M - i0, N - j0, e, i0, j0);
      }
    }
  }
}

template <class V, class PackB>
inline void gemmTiles(int64_t M, int64_t N, int64_t K, const float* packedA, const PackB& packB, int64_t ip0,
                      int64_t ip1, int64_t jp0, int64_t jp1, float* C, int64_t ldc, const GemmEpilogue& e,
                      float* sliver) {
  gemmTilesFrom<V>(M, N, K, PackedPanels{packedA, roundUp(M, GemmTile<V>::kMR)}, packB, ip0, ip1, jp0, jp1, C, ldc,
                   e, sliver);
}

// Below this many multiply-adds a second thread costs more than it saves.
constexpr int64_t kMinMacsPerThread = 1 << 17;

// A transposed op(A) is read in place while it stays cache-resident (a
// linear layer's dy); larger ones are packed once, contiguous panels being
// kinder to the cache when every sliver sweeps them again.
constexpr int64_t kInPlaceTransABytes = 256 * 1024;

// How one product of a batch is cut into work units: N slivers (each thread
// then packs only its own B) or, when N has too few slivers to go round, M
// panels.
struct GemmPlan {
  GemmArgs g;  // the product as computed (transposed when `swapped`)
  int64_t panelsM = 0, panelsN = 0;
  bool splitN = true;
  int64_t units = 0;
  bool packed = false;
  float* packedA = nullptr;  // all panels when packed, else the tail panel
  bool swapped = false;
  float* C = nullptr;  // the caller's C when swapped (g.C is then scratch)
  int64_t ldc = 0;
};

// C = A B^T with row-major A (M x K) and B (N x K) needs one of them
// transposed into k-major panels. Computing C^T = B A^T instead packs A and
// reads B in place: when A is a batch of a few slivers and B a linear layer's
// weight, every thread then streams the weight once, straight from memory (in
// rows, which prefetch well even when cold) instead of transposing it (fc1
// forward: ~15%). With more slivers the weight would be swept once per
// sliver, so A must fit in about one sliver per thread. Each element sums the
// same products in the same order, so the result is unchanged; C^T goes
// through scratch, hence only without beta and with at most one bias, whose
// addition order the swap would change.
template <class V>
inline bool swapPays(const GemmArgs& g) {
  return g.transB && !g.transA && g.beta == 0.0f && (g.rowBias == nullptr || g.colBias == nullptr) && g.N > g.M &&
         g.K >= 64 && ceilDiv(g.M, GemmTile<V>::kNR) <= maxI(2, numThreads());
}

// dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols, in small
// blocks so both sides stay within a few cache lines.
inline void transposeCopy(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  constexpr int64_t kBlock = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock)
      for (int64_t c = c0; c < minI(cols, c0 + kBlock); ++c)
        for (int64_t r = r0; r < minI(rows, r0 + kBlock); ++r) dst[c * ldd + r] = src[r * lds + c];
}

// Products of a batch share one parallel pass, each split as if alone (every
// thread takes the same share of each), so a linear layer's data and weight
// gradients cost one dispatch and one wait instead of two of each. Which
// thread computes a tile never changes how it is computed, so results do not
// depend on the thread count.
template <class V>
void sgemmBatch(const GemmArgs* gs, int count) {
  constexpr int MR = GemmTile<V>::kMR, NR = GemmTile<V>::kNR;
  constexpr int kMaxBatch = 4;
  GemmPlan plans[kMaxBatch];
  if (count > kMaxBatch) {
    for (int i = 0; i < count; i += kMaxBatch) sgemmBatch<V>(gs + i, minI(kMaxBatch, count - i));
    return;
  }
  int64_t totalMacs = 0, maxUnits = 0, sliverFloats = 0, aFloats = 0;
  for (int i = 0; i < count; ++i) {
    GemmPlan& p = plans[i];
    p.g = gs[i];
    GemmArgs& g = p.g;
    if (g.M <= 0 || g.N <= 0) continue;
    if (swapPays<V>(g)) {
      p.swapped = true;
      p.C = g.C;
      p.ldc = g.ldc;
      GemmArgs t = g;
      t.M = g.N; t.N = g.M;
      t.A = g.B; t.lda = g.ldb; t.transA = false;
      t.B = g.A; t.ldb = g.lda; t.transB = true;
      t.rowBias = g.colBias; t.colBias = g.rowBias;
      t.ldc = g.M;  // t.C: scratch, set below
      g = t;
    }
    p.panelsM = ceilDiv(g.M, MR);
    p.panelsN = ceilDiv(g.N, NR);
    p.splitN = p.panelsN >= numThreads() || p.panelsN >= p.panelsM;
    p.units = p.splitN ? p.panelsN : p.panelsM;
    p.packed = g.transA && g.K * g.lda * int64_t(sizeof(float)) > kInPlaceTransABytes;
    aFloats += p.packed ? packedASize<V>(g.M, g.K) : (g.M % MR != 0 ? MR * g.K : 0);
    if (p.swapped) aFloats += roundUp(g.M * g.N, 16);
    sliverFloats = maxI(sliverFloats, kcBlock<V>(g.K) * NR);
    totalMacs += g.M * g.N * g.K;
    maxUnits = maxI(maxUnits, p.units);
  }
  if (maxUnits == 0) return;
  int64_t threads = minI(numThreads(), maxUnits);
  threads = minI(threads, 1 + totalMacs / kMinMacsPerThread);
  float* scratch = static_cast<float*>(scratchBytes(sizeof(float) * (aFloats + threads * sliverFloats)));
  float* slivers = scratch + aFloats;
  for (int i = 0; i < count; ++i) {
    GemmPlan& p = plans[i];
    const GemmArgs& g = p.g;
    if (p.units == 0) continue;
    if (p.swapped) {
      p.g.C = scratch;
      scratch += roundUp(g.M * g.N, 16);
    }
    p.packedA = scratch;
    const StridedA<V> packA{g.A, g.lda, g.M, g.transA};
    if (p.packed) {
      scratch += packedASize<V>(g.M, g.K);
      parallelForEach(0, p.panelsM, ceilDiv(p.panelsM, threads),
                      [&](int64_t lo, int64_t hi) { packAPanels<V>(packA, g.M, g.K, lo, hi, p.packedA); });
    } else if (g.M % MR != 0) {
      scratch += MR * g.K;
      const int64_t i0 = (g.M / MR) * MR;
      const float* a = g.transA ? g.A + i0 : g.A + i0 * g.lda;
      packAPanels<V>(StridedA<V>{a, g.lda, g.M - i0, g.transA}, g.M - i0, g.K, 0, 1, p.packedA);
    }
  }
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* sliver = slivers + t * sliverFloats;
      for (int i = 0; i < count; ++i) {
        const GemmPlan& p = plans[i];
        const GemmArgs& g = p.g;
        const int64_t u0 = p.units * t / threads, u1 = p.units * (t + 1) / threads;
        if (u0 >= u1) continue;
        GemmEpilogue e;
        e.alpha = g.alpha;
        e.beta = g.beta;
        e.rowBias = g.rowBias;
        e.colBias = g.colBias;
        e.prefetchC = true;
        const StridedB<V> packB{g.B, g.ldb, g.N, g.transB};
        const int64_t ip0 = p.splitN ? 0 : u0, ip1 = p.splitN ? p.panelsM : u1;
        const int64_t jp0 = p.splitN ? u0 : 0, jp1 = p.splitN ? u1 : p.panelsN;
        if (p.packed) {
          gemmTilesFrom<V>(g.M, g.N, g.K, PackedPanels{p.packedA, roundUp(g.M, MR)}, packB, ip0, ip1, jp0, jp1, g.C,
                           g.ldc, e, sliver);
        } else {
          gemmTilesFrom<V>(g.M, g.N, g.K, InPlaceA{g.A, g.lda, g.transA, g.M / MR, p.packedA}, packB, ip0, ip1, jp0,
                           jp1, g.C, g.ldc, e, sliver);
        }
        if (p.swapped) {  // this thread's tiles of C^T, back into C
          const int64_t r0 = ip0 * MR, r1 = minI(g.M, ip1 * MR), c0 = jp0 * NR, c1 = minI(g.N, jp1 * NR);
          transposeCopy(p.C + c0 * p.ldc + r0, p.ldc, g.C + r0 * g.ldc + c0, g.ldc, r1 - r0, c1 - c0);
        }
      }
    }
  });
}

template <class V>
void sgemm(const GemmArgs& g) {
  sgemmBatch<V>(&g, 1);
}

template <class V>
constexpr GemmKernels gemmKernels() {
  return GemmKernels{&sgemm<V>, &sgemmBatch<V>, GemmTile<V>::kMR, GemmTile<V>::kNR};
}

}  // namespace
}  // namespace bnkit
