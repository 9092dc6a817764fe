// Channels-last layout (NHWC, NLC, and NC with no spatial axis).
//
// Reductions: rows are cut into fixed groups (their boundaries depend on the
// shape only), each group summing in double into its own per-channel record;
// records are merged in group order, so results do not depend on the number
// of threads. Element-wise passes treat the tensor as one flat stream whose
// channel index repeats with period C, so they need no per-row tail handling
// and every store lands on a vector boundary (which non-temporal stores need).
#pragma once
#include <atomic>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#include <cstdint>
#include <thread>
#include <type_traits>

#include "../scratch.h"
#include "../simd/vector_loop.h"
#include "../threadpool.h"
#include "batchnorm_shared.h"

namespace bnkit {
namespace {

using simd::loadN;

// Reductions walk a group in sub-blocks of rows, each sub-block once per
// channel block; a sub-block (about 16 KiB) stays in L1 while its channel
// blocks take turns. Float sums never run over more than one sub-block;
// groups accumulate in double. Groups are big enough to amortize their record
// and few enough that merging the records is cheap next to the tensor itself.
struct RowGroups {
  static constexpr int64_t kMinGroupElements = 16384;
  static constexpr int64_t kMaxGroups = 128;
  int64_t rows, subRows, groupRows, count;
  RowGroups(int64_t rowCount, int64_t channels) : rows(rowCount) {
    subRows = channels >= 64 ? 64 : kChunkElements / 64 / channels * 64;
    const int64_t subBlocks = (rows + subRows - 1) / subRows;
    int64_t perGroup = kMinGroupElements / (subRows * channels);
    const int64_t forCount = (subBlocks + kMaxGroups - 1) / kMaxGroups;
    if (perGroup < forCount) perGroup = forCount;
    if (perGroup < 1) perGroup = 1;
    groupRows = subRows * perGroup;
    count = (rows + groupRows - 1) / groupRows;
  }
  int64_t begin(int64_t group) const { return group * groupRows; }
  int64_t end(int64_t group) const {
    const int64_t e = (group + 1) * groupRows;
    return e < rows ? e : rows;
  }
  // Enough groups per thread that waking one pays.
  int64_t grain(int64_t channels) const { return kMinElementsPerThread / (groupRows * channels) + 1; }
};

// Calls visit(r0, r1) for the sub-blocks of rows [begin, end).
template <class Visit>
inline void forEachSubBlock(const RowGroups& groups, int64_t begin, int64_t end, Visit&& visit) {
  for (int64_t r0 = begin; r0 < end; r0 += groups.subRows) {
    visit(r0, r0 + groups.subRows < end ? r0 + groups.subRows : end);
  }
}

template <int N>
using VectorCount = std::integral_constant<int, N>;

// Walks channels in blocks of up to four vectors so per-channel accumulators
// live in registers while the rows of a sub-block stream past. The vector
// count is a compile-time constant: with a runtime count the accumulator
// arrays spill to memory and every row waits on a store-to-load round trip.
// visit(firstChannel, VectorCount<n>, validLanesInLastVector)
template <class V, class Visit>
inline void forEachChannelBlock(int64_t channels, Visit&& visit) {
  constexpr int64_t L = V::kLanes;
  for (int64_t c0 = 0; c0 < channels; c0 += 4 * L) {
    const int64_t width = channels - c0 < 4 * L ? channels - c0 : 4 * L;
    const int64_t lastValid = width - ((width - 1) / L) * L;
    switch ((width + L - 1) / L) {
      case 1: visit(c0, VectorCount<1>{}, lastValid); break;
      case 2: visit(c0, VectorCount<2>{}, lastValid); break;
      case 3: visit(c0, VectorCount<3>{}, lastValid); break;
      default: visit(c0, VectorCount<4>{}, lastValid); break;
    }
  }
}

// Narrow channel blocks (one or two vectors) give too few independent
// accumulator chains to hide the adder's latency, so their rows alternate
// between two sets of accumulators: visit(phase, row) for rows [r0, r1), the
// phase a compile-time index (a run-time one puts the accumulators in memory).
template <int vectors>
constexpr int kRowPhases = vectors <= 2 ? 2 : 1;

template <int vectors, class Visit>
inline void forEachRowPhased(int64_t r0, int64_t r1, Visit&& visit) {
  using First = std::integral_constant<int, 0>;
  int64_t r = r0;
  if constexpr (kRowPhases<vectors> == 2) {
    for (; r + 2 <= r1; r += 2) {
      visit(First{}, r);
      visit(std::integral_constant<int, 1>{}, r + 1);
    }
  }
  for (; r < r1; ++r) visit(First{}, r);
}

template <class V>
inline typename V::Reg loadLane(const float* p, int k, int vectors, int64_t lastValid, float fill) {
  return k + 1 < vectors ? V::load(p + k * V::kLanes) : V::loadPartial(p + k * V::kLanes, lastValid, fill);
}

// ----------------------------------------------------------- flat streaming

// Element-wise passes place vectors on the output's alignment grid: `head`
// elements up to the first vector boundary, then whole vectors.
template <class V>
inline int64_t gridHead(const float* out) {
  constexpr uintptr_t kAlign = V::kLanes * sizeof(float);
  const uintptr_t misalign = reinterpret_cast<uintptr_t>(out) % kAlign;
  return misalign % sizeof(float) != 0 || misalign == 0 ? 0 : static_cast<int64_t>((kAlign - misalign) / sizeof(float));
}

// A per-channel constant repeated past the last channel: periodic[j] =
// value(j % C) for j < C + L, so the constants of a vector starting at any
// channel are one load, whatever C is. The array is shifted within its slot
// so that, when C is a multiple of L, the channels the output grid visits are
// vector-aligned too: loads that split cache lines cost double.
struct PeriodicSlots {
  float* base;
  int64_t stride;  // floats per slot, a multiple of 16 (64 bytes)
  int64_t shift;
  float* slot(int index) const { return base + index * stride + shift; }
};

template <class V>
inline int64_t periodicSlotFloats(int64_t channels) {
  return (channels + 2 * V::kLanes + 15) / 16 * 16;
}

template <class V>
inline PeriodicSlots periodicSlots(float* scratch, int64_t channels, const float* out) {
  constexpr int64_t L = V::kLanes;
  return PeriodicSlots{scratch, periodicSlotFloats<V>(channels), (L - gridHead<V>(out) % L) % L};
}

template <class V, class Value>
inline void fillPeriodic(float* out, int64_t channels, Value&& value) {
  for (int64_t c = 0; c < channels; ++c) out[c] = value(c);
  for (int64_t j = channels; j < channels + V::kLanes; ++j) out[j] = out[j - channels];
}

// An element-wise pass over a channels-last tensor comes in two parts:
// at(channel) gathers the per-channel constants of the vector starting at
// `channel` into registers (a ChannelRegs, loaded from periodic arrays), and
// apply(isFull, flatOffset, validLanes, constants) -> V::Reg computes the
// output vector.
template <class V, int N>
struct ChannelRegs {
  typename V::Reg v[N];
};

template <class V, class Stream>
inline void storeGrid(Stream, float* p, typename V::Reg value) {
  if constexpr (Stream::value) {
    V::storeStream(p, value);
  } else {
    V::store(p, value);
  }
}

// Vectors [v0, v1) of the output grid, last first (see mapChannelsLast), with
// the constants gathered for every vector. Everything the loop reads is a
// local copy, the lambdas included (so their captures must be by value): a
// vector store may alias any memory, and values behind references would be
// reloaded for every vector.
template <class V, class Stream, class At, class Apply>
inline void walkGridBackwards(Stream stream, float* out, int64_t head, int64_t channels, int64_t v0, int64_t v1,
                              At at, Apply apply) {
  constexpr int64_t L = V::kLanes;
  const int64_t stepBack = L % channels;
  int64_t i = head + (v1 - 1) * L;
  int64_t channel = i % channels;
  for (int64_t v = v1; v > v0; --v) {
    storeGrid<V>(stream, out + i, apply(simd::Full{}, i, L, at(channel)));
    i -= L;
    channel -= stepBack;
    if (channel < 0) channel += channels;
  }
}

// The same when C is `period` vectors: vector v's channels depend on v modulo
// the period only, so each position's constants are gathered once and stay in
// registers, and the loop body is loads of the tensors, arithmetic and stores.
template <int period, class V, class Stream, class At, class Apply>
inline void walkPeriodicGridBackwards(Stream stream, float* out, int64_t head, int64_t channels, int64_t v0,
                                      int64_t v1, At at, Apply apply) {
  constexpr int64_t L = V::kLanes;
  const int64_t whole = v0 + (v1 - v0) / period * period;
  walkGridBackwards<V>(stream, out, head, channels, whole, v1, at, apply);
  if (whole == v0) return;
  decltype(at(0)) consts[period];
  for (int k = 0; k < period; ++k) consts[k] = at((head + (v0 + k) * L) % channels);
  for (int64_t base = whole - period; base >= v0; base -= period) {
    for (int k = period - 1; k >= 0; --k) {
      const int64_t i = head + (base + k) * L;
      storeGrid<V>(stream, out + i, apply(simd::Full{}, i, L, consts[k]));
    }
  }
}

// The same when C is a multiple of L but too many vectors for every
// position's constants to stay in registers: vector v shares its channels
// with v + C / L, so each position's constants are gathered once for `rows`
// rows instead of once per vector.
template <int rows, class V, class Stream, class At, class Apply>
inline void walkRowsGridBackwards(Stream stream, float* out, int64_t head, int64_t channels, int64_t v0, int64_t v1,
                                  At at, Apply apply) {
  constexpr int64_t L = V::kLanes;
  const int64_t period = channels / L, chunk = period * rows;
  const int64_t whole = v0 + (v1 - v0) / chunk * chunk;
  walkGridBackwards<V>(stream, out, head, channels, whole, v1, at, apply);
  for (int64_t base = whole - chunk; base >= v0; base -= chunk) {
    for (int64_t k = period - 1; k >= 0; --k) {
      const auto consts = at((head + (base + k) * L) % channels);
      for (int r = rows - 1; r >= 0; --r) {
        const int64_t i = head + (base + r * period + k) * L;
        storeGrid<V>(stream, out + i, apply(simd::Full{}, i, L, consts));
      }
    }
  }
}

// Where the alignment grid of out[0, length) starts and how many whole vectors it holds.
struct Grid {
  int64_t head, vectors, tailStart;
  bool stream;
};

template <class V>
inline Grid gridOf(const float* out, int64_t length, bool stream) {
  Grid g;
  g.head = gridHead<V>(out);
  g.stream = stream && reinterpret_cast<uintptr_t>(out) % sizeof(float) == 0;
  if (g.head > length) g.head = length;
  g.vectors = (length - g.head) / V::kLanes;
  g.tailStart = g.head + g.vectors * V::kLanes;
  return g;
}

// Vectors [v0, v1) of the grid, walked backwards, and the masked head and
// tail when asked for. Streaming stores are fenced here.
template <class V, bool shareAcrossRows = false, class At, class Apply>
inline void mapGridRange(float* out, int64_t length, int64_t channels, const Grid& grid, int64_t v0, int64_t v1,
                         bool withHead, bool withTail, const At& at, const Apply& apply) {
  constexpr int64_t L = V::kLanes;
  const int64_t head = grid.head;
  const int64_t period = channels % L == 0 ? channels / L : 0;
  if (v0 < v1) {
    withFlag(grid.stream, [&](auto s) {
      switch (period) {
        case 1: walkPeriodicGridBackwards<1, V>(s, out, head, channels, v0, v1, at, apply); break;
        case 2: walkPeriodicGridBackwards<2, V>(s, out, head, channels, v0, v1, at, apply); break;
        case 3: walkPeriodicGridBackwards<3, V>(s, out, head, channels, v0, v1, at, apply); break;
        case 4: walkPeriodicGridBackwards<4, V>(s, out, head, channels, v0, v1, at, apply); break;
        default:
          if (shareAcrossRows && period > 4) {
            walkRowsGridBackwards<4, V>(s, out, head, channels, v0, v1, at, apply);
          } else {
            walkGridBackwards<V>(s, out, head, channels, v0, v1, at, apply);
          }
          break;
      }
    });
  }
  if (withHead && head > 0) V::storePartial(out, apply(simd::Tail{}, 0, head, at(0)), head);
  if (withTail && grid.tailStart < length) {
    const int64_t t = grid.tailStart;
    V::storePartial(out + t, apply(simd::Tail{}, t, length - t, at(t % channels)), length - t);
  }
  if (grid.stream) V::streamFence();
}

// Writes out[0, length) of a channels-last tensor (at and apply: see
// ChannelRegs). Vectors are placed on out's alignment grid (one masked head and
// tail), so stores never split cache lines and, with `stream`, go out
// non-temporal. Each thread walks its range backwards: the reduction pass
// before this one read the same ranges forwards, so their ends are still in
// the last-level cache when a tensor does not fit in it whole.
template <class V, class At, class Apply>
inline void mapChannelsLast(float* out, int64_t length, int64_t channels, bool stream, const At& at,
                            const Apply& apply) {
  constexpr int64_t L = V::kLanes;
  const Grid grid = gridOf<V>(out, length, stream);
  if (grid.vectors == 0) {
    mapGridRange<V>(out, length, channels, grid, 0, 0, true, true, at, apply);
    return;
  }
  parallelForEach(0, grid.vectors, kMinElementsPerThread / L + 1, [&](int64_t v0, int64_t v1) {
    mapGridRange<V>(out, length, channels, grid, v0, v1, v0 == 0, v1 == grid.vectors, at, apply);
  });
}

// Output streaming pays only for tensors beyond the last-level cache.
inline bool streamRows(const BnLayout& l) { return streamOutput(l); }

// Periodic copies of the affine map's constants.
struct PeriodicAffine {
  float* mean;
  float* scale;
  float* beta;
};

inline PeriodicAffine periodicAffine(const PeriodicSlots& slots) {
  return PeriodicAffine{slots.slot(0), slots.slot(1), slots.slot(2)};
}

// Scratch for `doubles` doubles, then `slots` periodic constant slots.
template <class V>
inline PeriodicSlots scratchWithSlots(int64_t doubles, int slots, int64_t channels, const float* out,
                                      double** records) {
  const int64_t recordBytes = (static_cast<int64_t>(sizeof(double)) * doubles + 63) / 64 * 64;
  auto* base = static_cast<char*>(
      scratchBytes(recordBytes + sizeof(float) * slots * periodicSlotFloats<V>(channels)));
  *records = reinterpret_cast<double*>(base);
  return periodicSlots<V>(reinterpret_cast<float*>(base + recordBytes), channels, out);
}

template <class V>
inline ChannelRegs<V, 3> affineAt(const PeriodicAffine& a, int64_t channel) {
  return {{V::load(a.mean + channel), V::load(a.scale + channel), V::load(a.beta + channel)}};
}

template <class V>
void rowsNormalize(const float* x, float* y, int64_t length, int64_t channels, const PeriodicAffine& a, bool relu,
                   bool stream) {
  withFlag(relu, [&](auto reluFlag) {
    mapChannelsLast<V>(
        y, length, channels, stream, [=](int64_t channel) { return affineAt<V>(a, channel); },
        [=](auto full, int64_t i, int64_t valid, const ChannelRegs<V, 3>& k) {
          const typename V::Reg v = affine<V>(loadN<V>(full, x + i, valid, 0.0f), k.v[0], k.v[1], k.v[2]);
          return decltype(reluFlag)::value ? V::max(V::zero(), v) : v;
        });
  });
}

// ------------------------------------------------------------ forward train

// A group's statistics per channel, in double, around a reference (its
// first row): sum(x - ref) and sum((x - ref)^2). Around a value of the data,
// E[(x - ref)^2] - E[x - ref]^2 is exact enough in double (the same bound as
// in blockMoments, with double's epsilon); each sub-block's float sums are
// taken around its own first row.
struct GroupMoments {
  double* ref;
  double* s1;
  double* s2;
};

inline GroupMoments groupMoments(double* records, int64_t channels, int64_t group) {
  double* base = records + 3 * channels * group;
  return GroupMoments{base, base + channels, base + 2 * channels};
}

// sum(x - pivot) and sum((x - pivot)^2) over rows [r0, r1) of `vectors`
// vectors of channels from c0, in float, one pass. The pivot is the first
// row: any value of the sub-block keeps the float sums accurate, because
// every (x - pivot)^2 is at most the sub-block's range squared, which is at
// most twice its sum of squared deviations from its mean: the rounding error
// stays a small multiple of float epsilon relative to the channel's M2,
// whatever the data's mean (the 1e4 / 1e6 + N(0, 1) tests). Plain values only
// (see blockGradientSums).
template <class V, int vectors>
inline void blockMoments(const float* x, int64_t channels, int64_t r0, int64_t r1, int64_t c0, int64_t lastValid,
                         float* pivot, float* dev, float* sq) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  constexpr int phases = kRowPhases<vectors>;
  Reg pivotV[vectors], devV[phases][vectors], sqV[phases][vectors];
  for (int k = 0; k < vectors; ++k) {
    pivotV[k] = loadLane<V>(x + r0 * channels + c0, k, vectors, lastValid, 0.0f);
    for (int p = 0; p < phases; ++p) devV[p][k] = sqV[p][k] = V::zero();
  }
  forEachRowPhased<vectors>(r0 + 1, r1, [&](auto p, int64_t r) {
    const float* row = x + r * channels + c0;
    for (int k = 0; k < vectors; ++k) {
      const Reg t = V::sub(loadLane<V>(row, k, vectors, lastValid, 0.0f), pivotV[k]);
      devV[p][k] = V::add(devV[p][k], t);
      sqV[p][k] = V::fma(t, t, sqV[p][k]);
    }
  });
  for (int k = 0; k < vectors; ++k) {
    for (int p = 1; p < phases; ++p) {
      devV[0][k] = V::add(devV[0][k], devV[p][k]);
      sqV[0][k] = V::add(sqV[0][k], sqV[p][k]);
    }
    V::store(pivot + k * L, pivotV[k]);
    V::store(dev + k * L, devV[0][k]);
    V::store(sq + k * L, sqV[0][k]);
  }
}

template <class V>
void groupStatistics(const float* x, int64_t channels, const RowGroups& groups, int64_t group, GroupMoments out) {
  constexpr int64_t L = V::kLanes;
  const int64_t first = groups.begin(group);
  forEachSubBlock(groups, first, groups.end(group), [&](int64_t r0, int64_t r1) {
    const double count = static_cast<double>(r1 - r0);
    forEachChannelBlock<V>(channels, [&](int64_t c0, auto vectorCount, int64_t lastValid) {
      constexpr int vectors = decltype(vectorCount)::value;
      alignas(64) float pivot[4 * L], devs[4 * L], sqs[4 * L];
      blockMoments<V, vectors>(x, channels, r0, r1, c0, lastValid, pivot, devs, sqs);
      const int64_t width = (vectors - 1) * L + lastValid;
      double* ref = out.ref + c0;
      double* s1 = out.s1 + c0;
      double* s2 = out.s2 + c0;
      if (r0 == first) {
        for (int64_t j = 0; j < width; ++j) {
          ref[j] = pivot[j];
          s1[j] = devs[j];
          s2[j] = sqs[j];
        }
        return;
      }
      // Shift the sub-block's sums from its pivot to the group's reference.
      for (int64_t j = 0; j < width; ++j) {
        const double delta = pivot[j] - ref[j];
        const double d = devs[j];
        s1[j] += d + count * delta;
        s2[j] += sqs[j] + delta * (2.0 * d + count * delta);
      }
    });
  });
}

template <class V>
void forwardTrainRows(const BnForwardTrainArgs& a) {
  const BnLayout& l = a.layout;
  const int64_t rows = l.perChannel(), channels = l.channels;
  const RowGroups groups(rows, channels);
  double* records;
  const PeriodicAffine consts =
      periodicAffine(scratchWithSlots<V>(3 * channels * groups.count, 3, channels, a.y, &records));
  parallelForEach(0, groups.count, groups.grain(channels), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) groupStatistics<V>(a.x, channels, groups, g, groupMoments(records, channels, g));
  });
  // Merged in group order around group 0's reference: the same for any thread count.
  const GroupMoments total = groupMoments(records, channels, 0);
  for (int64_t g = 1; g < groups.count; ++g) {
    const GroupMoments part = groupMoments(records, channels, g);
    const double count = static_cast<double>(groups.end(g) - groups.begin(g));
    for (int64_t c = 0; c < channels; ++c) {
      const double delta = part.ref[c] - total.ref[c];
      total.s1[c] += part.s1[c] + count * delta;
      total.s2[c] += part.s2[c] + delta * (2.0 * part.s1[c] + count * delta);
    }
  }
  const double count = static_cast<double>(rows);
  for (int64_t c = 0; c < channels; ++c) {
    Moments m;
    m.count = count;
    m.mean = total.ref[c] + total.s1[c] / count;
    m.m2 = total.s2[c] - total.s1[c] * total.s1[c] / count;
    if (m.m2 < 0) m.m2 = 0;
    finishChannelStats<V>(a, c, m);
  }
  fillPeriodic<V>(consts.mean, channels, [&](int64_t c) { return a.saveMean[c]; });
  fillPeriodic<V>(consts.scale, channels, [&](int64_t c) { return channelScale(a.gamma, c, a.saveInvstd[c]); });
  fillPeriodic<V>(consts.beta, channels, [&](int64_t c) { return channelBeta(a.beta, c); });
  rowsNormalize<V>(a.x, a.y, l.elements(), channels, consts, a.relu, streamRows(l));
}

// ----------------------------------------------------------------- backward

// sum(dy') and sum(dy' * (x - mean)) over rows [r0, r1) of `vectors` vectors
// of channels from c0, in float. Plain values and a compile-time ReLU flag:
// with the flag or the pointers behind references, GCC keeps the
// accumulators in memory and the loop runs several times slower.
template <class V, int vectors, class Relu>
inline void blockGradientSums(Relu, const float* x, const float* dy, int64_t channels, int64_t r0, int64_t r1,
                              int64_t c0, int64_t lastValid, const PeriodicAffine consts, float* sumDy,
                              float* sumDyXc) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  constexpr int phases = kRowPhases<vectors>;
  Reg meanV[vectors], scaleV[vectors], betaV[vectors], accDy[phases][vectors], accDyXc[phases][vectors];
  for (int j = 0; j < vectors; ++j) {
    meanV[j] = V::load(consts.mean + c0 + j * L);
    scaleV[j] = V::load(consts.scale + c0 + j * L);
    betaV[j] = V::load(consts.beta + c0 + j * L);
    for (int p = 0; p < phases; ++p) accDy[p][j] = accDyXc[p][j] = V::zero();
  }
  forEachRowPhased<vectors>(r0, r1, [&](auto p, int64_t r) {
    const float* xr = x + r * channels + c0;
    const float* dyr = dy + r * channels + c0;
    for (int j = 0; j < vectors; ++j) {
      const Reg xv = loadLane<V>(xr, j, vectors, lastValid, 0.0f);
      const Reg dyv = maskedDy<V>(Relu::value, xv, loadLane<V>(dyr, j, vectors, lastValid, 0.0f), meanV[j],
                                  scaleV[j], betaV[j]);
      accDy[p][j] = V::add(accDy[p][j], dyv);
      accDyXc[p][j] = V::fma(dyv, V::sub(xv, meanV[j]), accDyXc[p][j]);
    }
  });
  for (int j = 0; j < vectors; ++j) {
    for (int p = 1; p < phases; ++p) {
      accDy[0][j] = V::add(accDy[0][j], accDy[p][j]);
      accDyXc[0][j] = V::add(accDyXc[0][j], accDyXc[p][j]);
    }
    V::store(sumDy + j * L, accDy[0][j]);
    V::store(sumDyXc + j * L, accDyXc[0][j]);
  }
}

template <class V, class Relu>
void groupGradientSums(Relu relu, const BnBackwardArgs& a, const PeriodicAffine& consts, const RowGroups& groups,
                       int64_t group, double* sumDy, double* sumDyXc) {
  constexpr int64_t L = V::kLanes;
  const int64_t channels = a.layout.channels, first = groups.begin(group);
  forEachSubBlock(groups, first, groups.end(group), [&](int64_t r0, int64_t r1) {
    forEachChannelBlock<V>(channels, [&](int64_t c0, auto vectorCount, int64_t lastValid) {
      constexpr int vectors = decltype(vectorCount)::value;
      alignas(64) float sums[2][4 * L];
      blockGradientSums<V, vectors>(relu, a.x, a.dy, channels, r0, r1, c0, lastValid, consts, sums[0], sums[1]);
      double* dy = sumDy + c0;
      double* dyXc = sumDyXc + c0;
      // With a compile-time width (full blocks) these loops become a few
      // vector conversions and adds instead of one scalar step per channel.
      auto add = [&](auto width) {
        if (r0 == first) {
          for (int64_t j = 0; j < width; ++j) {
            dy[j] = 0.0 + sums[0][j];  // as the sums below: -0.0 becomes +0.0
            dyXc[j] = 0.0 + sums[1][j];
          }
        } else {
          for (int64_t j = 0; j < width; ++j) {
            dy[j] += sums[0][j];
            dyXc[j] += sums[1][j];
          }
        }
      };
      if (lastValid == L) {
        add(std::integral_constant<int64_t, vectors * L>{});
      } else {
        add((vectors - 1) * L + lastValid);
      }
    });
  });
}

// Backward runs as one parallel region. Block b of the region owns a fixed
// run of groups (the same split every call, so a thread tends to meet the
// lines it touched last time in its own cache): it reduces them in order,
// then helps the other blocks with theirs. Whoever finishes the last group
// merges the records (in group order, as before) and derives the
// coefficients; then each block writes dx for its own groups, last first,
// while they are still in its cache, and then for groups nobody has taken
// yet. Threads only ever wait for work a running thread has already claimed,
// so the region cannot deadlock when the pool runs its blocks one after
// another on a single thread.
struct BackwardSchedule {
  static constexpr int64_t kMaxBlocks = RowGroups::kMaxGroups;
  int64_t blocks, groupCount;
  std::atomic<int64_t> next[kMaxBlocks];
  std::atomic<int64_t> reducedGroups{0};
  std::atomic<bool> ready{false};
  std::atomic<bool> written[RowGroups::kMaxGroups];
  BackwardSchedule(int64_t blockCount, int64_t groups) : blocks(blockCount), groupCount(groups) {
    for (int64_t b = 0; b < blocks; ++b) next[b].store(first(b), std::memory_order_relaxed);
    for (int64_t g = 0; g < groupCount; ++g) written[g].store(false, std::memory_order_relaxed);
  }
  int64_t first(int64_t block) const { return groupCount * block / blocks; }
  // The next unreduced group of `block`'s run, or -1.
  int64_t claim(int64_t block) {
    const int64_t g = next[block].fetch_add(1, std::memory_order_relaxed);
    return g < first(block + 1) ? g : -1;
  }
  bool claimWrite(int64_t group) { return !written[group].exchange(true, std::memory_order_relaxed); }
};

// The wait is for at most one group per thread (microseconds), so a short
// spin covers it; past that the thread being waited for is most likely not
// running (a busy machine, possibly on this very core), and spinning on would
// only keep it off the core: a pause takes about 25 ns on Zen 5, and the
// pool's idle-worker spin (16K pauses) would burn 400 us.
inline void waitFor(const std::atomic<bool>& flag) {
  for (int spin = 0; !flag.load(std::memory_order_acquire); ++spin) {
    if (spin < 512) {
#if defined(__x86_64__) || defined(_M_X64)
      _mm_pause();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

template <class V>
void backwardRows(const BnBackwardArgs& a) {
  const BnLayout& l = a.layout;
  const int64_t rows = l.perChannel(), channels = l.channels;
  const RowGroups groups(rows, channels);
  // records: group g's sum(dy') at [2g * C], its sum(dy' * (x - mean)) at [(2g + 1) * C].
  double* records;
  const PeriodicSlots slots = scratchWithSlots<V>(2 * channels * groups.count, 6, channels, a.dx, &records);
  const PeriodicAffine consts = periodicAffine(slots);
  float* kArr = slots.slot(3);
  float* bArr = slots.slot(4);
  float* c0Arr = slots.slot(5);
  fillPeriodic<V>(consts.mean, channels, [&](int64_t c) { return a.mean[c]; });
  fillPeriodic<V>(consts.scale, channels, [&](int64_t c) { return channelScale(a.gamma, c, a.invstd[c]); });
  fillPeriodic<V>(consts.beta, channels, [&](int64_t c) { return channelBeta(a.beta, c); });
  // Summed in group order: the same for any thread count.
  auto finish = [&] {
    double* sumDy = records;
    double* sumDyXc = records + channels;
    for (int64_t g = 1; g < groups.count; ++g) {
      const double* dy = records + 2 * g * channels;
      const double* dyXc = dy + channels;
      for (int64_t c = 0; c < channels; ++c) {
        sumDy[c] += dy[c];
        sumDyXc[c] += dyXc[c];
      }
    }
    const double count = static_cast<double>(rows);
    for (int64_t c = 0; c < channels; ++c) {
      const GradCoefficients g = gradCoefficients(a, c, sumDy[c], sumDyXc[c], count);
      kArr[c] = g.k;
      bArr[c] = g.b;
      c0Arr[c] = g.c0;
    }
    if (!a.dx) return;
    float* const gradientConstants[] = {kArr, bArr, c0Arr};
    for (float* arr : gradientConstants) fillPeriodic<V>(arr, channels, [&](int64_t c) { return arr[c]; });
  };
  const int64_t length = l.elements();
  const Grid grid = gridOf<V>(a.dx, length, streamRows(l));
  // The grid vectors of group g: those starting in its rows.
  auto firstVector = [&](int64_t g) {
    if (g >= groups.count) return grid.vectors;
    const int64_t e = groups.begin(g) * channels - grid.head;
    const int64_t v = e <= 0 ? 0 : (e + V::kLanes - 1) / V::kLanes;
    return v < grid.vectors ? v : grid.vectors;
  };
  if (groups.count == 0) {
    finish();
    return;
  }
  const int64_t grain = groups.grain(channels);
  const int64_t wanted = (groups.count + grain - 1) / grain;
  const int64_t workers = wanted < numThreads() ? wanted : numThreads();
  BackwardSchedule schedule(workers, groups.count);
  using Reg = typename V::Reg;
  const float* x = a.x;
  const float* dy = a.dy;
  withFlag(a.relu, [&](auto reluFlag) {
    constexpr bool relu = decltype(reluFlag)::value;
    // Gathered per vector position: k, b, c0, mean, then scale and beta for the ReLU mask.
    using Consts = ChannelRegs<V, relu ? 6 : 4>;
    auto at = [=](int64_t c) {
      Consts k;
      const float* from[] = {kArr, bArr, c0Arr, consts.mean, consts.scale, consts.beta};
      for (int j = 0; j < (relu ? 6 : 4); ++j) k.v[j] = V::load(from[j] + c);
      return k;
    };
    auto apply = [=](auto full, int64_t i, int64_t valid, const Consts& k) {
      const Reg xv = loadN<V>(full, x + i, valid, 0.0f);
      Reg dyv = loadN<V>(full, dy + i, valid, 0.0f);
      if constexpr (relu) dyv = V::selectPositive(affine<V>(xv, k.v[3], k.v[4], k.v[5]), dyv);
      return V::fma(k.v[0], dyv, V::fma(k.v[1], V::sub(xv, k.v[3]), k.v[2]));
    };
    auto writeGroups = [&](int64_t g0, int64_t g1) {
      for (int64_t g = g1 - 1; g >= g0; --g) {
        if (schedule.claimWrite(g)) {
          mapGridRange<V, true>(a.dx, length, channels, grid, firstVector(g), firstVector(g + 1), g == 0,
                                g == groups.count - 1, at, apply);
        }
      }
    };
    parallelForEach(0, workers, 1, [&](int64_t self, int64_t) {
      for (int64_t k = 0; k < workers; ++k) {
        const int64_t block = (self + k) % workers;
        for (int64_t g; (g = schedule.claim(block)) >= 0;) {
          groupGradientSums<V>(reluFlag, a, consts, groups, g, records + 2 * g * channels,
                               records + (2 * g + 1) * channels);
          if (schedule.reducedGroups.fetch_add(1, std::memory_order_acq_rel) + 1 == groups.count) {
            finish();
            schedule.ready.store(true, std::memory_order_release);
          }
        }
      }
      if (!a.dx) return;
      waitFor(schedule.ready);
      writeGroups(schedule.first(self), schedule.first(self + 1));
      writeGroups(0, groups.count);
    });
  });
}

// `consts` (per-channel, from the caller's scratch) is rebuilt here in
// periodic form; asking for scratch again would invalidate it.
template <class V>
void forwardEvalRows(const BnForwardEvalArgs& a, const ChannelAffine&) {
  const BnLayout& l = a.layout;
  const int64_t channels = l.channels;
  double* unused;
  const PeriodicAffine consts = periodicAffine(scratchWithSlots<V>(0, 3, channels, a.y, &unused));
  fillPeriodic<V>(consts.mean, channels, [&](int64_t c) { return a.mean[c]; });
  fillPeriodic<V>(consts.scale, channels,
                  [&](int64_t c) { return channelScale(a.gamma, c, invstdFromVariance(a.variance[c], a.eps)); });
  fillPeriodic<V>(consts.beta, channels, [&](int64_t c) { return channelBeta(a.beta, c); });
  rowsNormalize<V>(a.x, a.y, l.elements(), channels, consts, a.relu, streamRows(l));
}

}  // namespace
}  // namespace bnkit
