// Planar layout (NCHW, NCL): one thread owns a run of channels. A channel's
// statistics come from chunks of <= kChunkElements values that stay in L1 for
// a two-pass (sum, then centred squares) estimate merged with Chan's formula
// in double; the channel is then normalized while it is still in L2 (or, for
// large channels, L3: see forwardTrainOverlapped), so DRAM sees one read of x
// and one write of y. Backward does the same with (x, dy) -> dx. Tensors of
// long planes and cache-sized channels take flat passes in memory order
// instead (see usesFlatPlanes).
#pragma once
#include <cstdint>
#include <type_traits>

#include "../scratch.h"

#include "../simd/vector_loop.h"
#include "../threadpool.h"
#include "batchnorm_shared.h"

namespace bnkit {
namespace {

using simd::loadN;
using simd::vectorLoop;

// Chunks of one planar channel: either several whole segments (small spatial
// size) or one segment cut into near-equal pieces. The plan depends only on the
// shape, never on the thread count.
struct PlanarChunks {
  int64_t batch, spatial, segmentsPerChunk, piecesPerSegment, pieceLength;

  PlanarChunks(int64_t batchSize, int64_t spatialSize) : batch(batchSize), spatial(spatialSize) {
    if (spatial >= kChunkElements) {
      segmentsPerChunk = 1;
      const int64_t pieces = (spatial + kChunkElements - 1) / kChunkElements;
      pieceLength = (spatial + pieces - 1) / pieces;
      // Rounding the length up can leave fewer pieces than planned (huge planes).
      piecesPerSegment = (spatial + pieceLength - 1) / pieceLength;
    } else {
      segmentsPerChunk = kChunkElements / spatial;
      piecesPerSegment = 1;
      pieceLength = spatial;
    }
  }

  struct Chunk {
    int64_t n0, n1, s0, s1;  // segments [n0, n1), offsets [s0, s1) in each
  };

  int64_t count() const { return (batch + segmentsPerChunk - 1) / segmentsPerChunk * piecesPerSegment; }

  Chunk operator[](int64_t index) const {
    const int64_t n0 = index / piecesPerSegment * segmentsPerChunk, s0 = index % piecesPerSegment * pieceLength;
    return Chunk{n0, n0 + segmentsPerChunk < batch ? n0 + segmentsPerChunk : batch, s0,
                 s0 + pieceLength < spatial ? s0 + pieceLength : spatial};
  }

  // visit(firstSegment, endSegment, firstOffset, endOffset), in plan order
  template <class Visit>
  void forEach(Visit&& visit) const {
    for (int64_t k = 0, chunks = count(); k < chunks; ++k) {
      const Chunk ck = (*this)[k];
      visit(ck.n0, ck.n1, ck.s0, ck.s1);
    }
  }
};

// A planar channel's segments sit C * spatial floats apart, so each one is a
// short stream the hardware prefetcher hardly gets going on. Requesting the
// next segment while this one is processed keeps many DRAM reads in flight.
// Long segments stream well on their own and are left alone.
constexpr int64_t kPrefetchMaxSegment = 4096;

template <int ForWrite>
inline void prefetchSegment(const float* p, int64_t length) {
  if (length > kPrefetchMaxSegment) return;
  for (int64_t i = 0; i < length; i += 16) __builtin_prefetch(p + i, ForWrite, 3);
}

// The moments of one chunk (segments [n0, n1), offsets [s0, s1)).
template <class V>
Moments planarChunkMoments(const float* channel, int64_t segmentStride, int64_t batch, int64_t n0, int64_t n1,
                           int64_t s0, int64_t s1) {
  using Reg = typename V::Reg;
  const int64_t length = s1 - s0;
  Reg acc[4];
  simd::zero4<V>(acc);
  for (int64_t n = n0; n < n1; ++n) {
    const float* p = channel + n * segmentStride + s0;
    if (n + 1 < batch) prefetchSegment<0>(p + segmentStride, length);
    vectorLoop<V>(length, [&](auto full, int slot, int64_t i, int64_t valid) {
      acc[slot] = V::add(acc[slot], loadN<V>(full, p + i, valid, 0.0f));
    });
  }
  const double count = static_cast<double>((n1 - n0) * length);
  const float pivot = static_cast<float>(simd::reduceAdd4<V>(acc) / count);
  const Reg pivotV = V::set1(pivot);
  Reg dev[4], sq[4];
  simd::zero4<V>(dev);
  simd::zero4<V>(sq);
  for (int64_t n = n0; n < n1; ++n) {
    const float* p = channel + n * segmentStride + s0;
    vectorLoop<V>(length, [&](auto full, int slot, int64_t i, int64_t valid) {
      const Reg t = V::sub(loadN<V>(full, p + i, valid, pivot), pivotV);
      dev[slot] = V::add(dev[slot], t);
      sq[slot] = V::fma(t, t, sq[slot]);
    });
  }
  return momentsAroundPivot(count, pivot, simd::reduceAdd4<V>(dev), simd::reduceAdd4<V>(sq));
}

template <class V>
Moments planarChannelMoments(const float* channel, int64_t segmentStride, const PlanarChunks& plan) {
  Moments total;
  plan.forEach([&](int64_t n0, int64_t n1, int64_t s0, int64_t s1) {
    total = mergeMoments(total, planarChunkMoments<V>(channel, segmentStride, plan.batch, n0, n1, s0, s1));
  });
  return total;
}

// The chunk the reading pass visits next, fetched a cache line per step():
// the writing pass steps once per vector it writes, so these DRAM reads stay
// in flight while its stores stream out (see forwardTrainOverlapped).
class ChunkPrefetch {
 public:
  ChunkPrefetch() = default;  // nothing to fetch
  ChunkPrefetch(int lanes, const float* channel, int64_t stride, const PlanarChunks::Chunk& chunk)
      : next_(channel + chunk.n0 * stride + chunk.s0),
        stride_(stride),
        length_(chunk.s1 - chunk.s0),
        segmentsLeft_(chunk.n1 - chunk.n0),
        vectorsPerLine_(lanes < kLineFloats ? kLineFloats / lanes : 1),
        countdown_(1) {}

  inline void step() {
    if (--countdown_ == 0) fetchLine();
  }

 private:
  static constexpr int kLineFloats = 16;

  void fetchLine() {
    if (segmentsLeft_ == 0) {
      countdown_ = -1;  // done: counts down harmlessly for the rest of the pass
      return;
    }
    countdown_ = vectorsPerLine_;
    __builtin_prefetch(next_ + offset_, 0, 3);
    offset_ += kLineFloats;
    if (offset_ >= length_) {
      offset_ = 0;
      next_ += stride_;
      --segmentsLeft_;
    }
  }

  const float* next_ = nullptr;
  int64_t stride_ = 0, length_ = 0, segmentsLeft_ = 0, offset_ = 0;
  int64_t vectorsPerLine_ = 1, countdown_ = -1;
};

// Stands in for ChunkPrefetch where a normalize pass is not overlapped; that
// pass prefetches its own next segment instead (see prefetchSegment).
struct NoPrefetch {
  inline void step() {}
};

// Flattened: left to itself GCC keeps mapStore out of line, and the affine
// constants the per-vector body reads through the closure then get reloaded
// after every store (vector types may alias float), a third of the time on
// short segments.
template <class V, class Ahead = NoPrefetch>
__attribute__((flatten)) void planarNormalize(const float* x, float* y, int64_t batch, int64_t segmentStride,
                                              int64_t spatial, float mean, float scale, float beta, bool relu,
                                              bool stream, Ahead ahead = Ahead()) {
  using Reg = typename V::Reg;
  const Reg meanV = V::set1(mean), scaleV = V::set1(scale), betaV = V::set1(beta), zeroV = V::zero();
  for (int64_t n = 0; n < batch; ++n) {
    const float* xs = x + n * segmentStride;
    float* ys = y + n * segmentStride;
    if (std::is_same<Ahead, NoPrefetch>::value && n + 1 < batch) {
      prefetchSegment<0>(xs + segmentStride, spatial);
      if (!stream) prefetchSegment<1>(ys + segmentStride, spatial);
    }
    simd::mapStore<V>(ys, spatial, stream, [&](auto full, int64_t i, int64_t valid) {
      ahead.step();
      const Reg v = affine<V>(loadN<V>(full, xs + i, valid, 0.0f), meanV, scaleV, betaV);
      return relu ? V::max(zeroV, v) : v;
    });
  }
}

inline int64_t channelGrain(int64_t perChannel) {
  const int64_t grain = kMinElementsPerThread / (perChannel > 0 ? perChannel : 1);
  return grain > 1 ? grain : 1;
}

// Channels of at least this many floats take forwardTrainOverlapped: their
// second read comes from L3 anyway and DRAM is the limit. Smaller ones stay in
// L2, where the overlap only adds work.
constexpr int64_t kOverlapMinChannel = int64_t{1} << 18;  // 1 MiB

// Planes at least this long take the flat passes (forwardTrainFlat,
// backwardFlat) unless the channel is big enough for the overlapped path:
// a channel's 3 KiB segments one plane apart stream about 1.2-1.7x slower than
// the tensor read front to back (measured on [64, 32, 28, 28]), while planes
// of a few hundred floats or less make the per-plane bookkeeping cost more
// than it saves ([64, 64, 14, 14] forward: 0.55x).
constexpr int64_t kFlatMinPlane = 512;
inline bool usesFlatPlanes(const BnLayout& l) {
  return l.spatial >= kFlatMinPlane && l.perChannel() < kOverlapMinChannel;
}

// Channels [c0, c1) of one thread, software-pipelined: the statistics pass of
// channel c + 1 runs chunk by chunk interleaved with the normalize pass of
// channel c, and each normalize chunk prefetches the chunk the statistics pass
// reads next. Run one after the other, the statistics pass is DRAM reads only
// and the normalize pass DRAM writes only (its input comes back from L3), and
// one core cannot keep enough reads in flight to use the bandwidth alone;
// interleaved, each core's traffic looks like a copy, what DRAM does best. The
// price is a second channel held in cache. Each channel still sees its chunks
// in plan order, so its statistics equal planarChannelMoments' bit for bit.
template <class V>
void forwardTrainOverlapped(const BnForwardTrainArgs& a, const PlanarChunks& plan, bool stream, int64_t c0,
                            int64_t c1) {
  const BnLayout& l = a.layout;
  const int64_t stride = l.channels * l.spatial, chunks = plan.count();
  Moments moments;
  auto gather = [&](int64_t c, int64_t k) {
    const PlanarChunks::Chunk ck = plan[k];
    moments = mergeMoments(
        moments, planarChunkMoments<V>(a.x + c * l.spatial, stride, l.batch, ck.n0, ck.n1, ck.s0, ck.s1));
  };
  auto finish = [&](int64_t c) {
    finishChannelStats<V>(a, c, moments);
    moments = Moments();
  };
  auto normalize = [&](int64_t c, int64_t k, const ChunkPrefetch& ahead) {
    const PlanarChunks::Chunk ck = plan[k];
    const int64_t offset = c * l.spatial + ck.n0 * stride + ck.s0;
    planarNormalize<V>(a.x + offset, a.y + offset, ck.n1 - ck.n0, stride, ck.s1 - ck.s0, a.saveMean[c],
                       channelScale(a.gamma, c, a.saveInvstd[c]), channelBeta(a.beta, c), a.relu, stream, ahead);
  };
  auto chunkOf = [&](int64_t c, int64_t k) {
    return ChunkPrefetch(V::kLanes, a.x + c * l.spatial, stride, plan[k]);
  };
  for (int64_t k = 0; k < chunks; ++k) gather(c0, k);
  finish(c0);
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t k = 0; k < chunks; ++k) {
      if (c + 1 < c1) gather(c + 1, k);
      // The statistics pass reads chunk k + 1 of channel c + 1 next, or
      // after the last chunk, chunk 0 of channel c + 2.
      if (k + 1 < chunks) {
        normalize(c, k, c + 1 < c1 ? chunkOf(c + 1, k + 1) : ChunkPrefetch());
      } else {
        normalize(c, k, c + 2 < c1 ? chunkOf(c + 2, 0) : ChunkPrefetch());
      }
    }
    if (c + 1 < c1) finish(c + 1);
  }
}

template <class V>
void forwardEvalPlanar(const BnForwardEvalArgs& a, const ChannelAffine& consts) {
  const BnLayout& l = a.layout;
  const int64_t segments = l.batch * l.channels;
  const int64_t grain = kMinElementsPerThread / l.spatial + 1;
  const bool stream = streamOutput(l);
  parallelForEach(0, segments, grain, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t c = s % l.channels;
      planarNormalize<V>(a.x + s * l.spatial, a.y + s * l.spatial, 1, 0, l.spatial, consts.mean[c],
                         consts.scale[c], consts.beta[c], a.relu, stream);
    }
    if (stream) V::streamFence();
  });
}

// The saved statistics of a flat-planes tensor (see usesFlatPlanes): moments
// plane by plane in memory order, merged per channel in batch order. Shared
// with the fused pooling kernel so both normalize with the same bits.
template <class V>
void flatPlaneStatistics(const BnForwardTrainArgs& a) {
  const BnLayout& l = a.layout;
  const int64_t planes = l.batch * l.channels, channels = l.channels;
  const PlanarChunks plane(1, l.spatial);
  auto* records = static_cast<Moments*>(scratchBytes(sizeof(Moments) * planes));
  parallelForEach(0, planes, kMinElementsPerThread / l.spatial + 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) records[p] = planarChannelMoments<V>(a.x + p * l.spatial, 0, plane);
  });
  for (int64_t c = 0; c < channels; ++c) {
    Moments m;
    for (int64_t n = 0; n < l.batch; ++n) m = mergeMoments(m, records[n * channels + c]);
    finishChannelStats<V>(a, c, m);
  }
}

// Flat-planes forward: the statistics, then a normalize pass in memory order.
template <class V>
void forwardTrainFlat(const BnForwardTrainArgs& a) {
  flatPlaneStatistics<V>(a);
  const int64_t channels = a.layout.channels;
  const ChannelAffine consts =
      channelAffineScratch(static_cast<float*>(scratchBytes(sizeof(float) * 3 * channels)), channels);
  for (int64_t c = 0; c < channels; ++c) {
    consts.mean[c] = a.saveMean[c];
    consts.scale[c] = channelScale(a.gamma, c, a.saveInvstd[c]);
    consts.beta[c] = channelBeta(a.beta, c);
  }
  BnForwardEvalArgs normalize;
  normalize.layout = a.layout;
  normalize.x = a.x;
  normalize.y = a.y;
  normalize.relu = a.relu;
  forwardEvalPlanar<V>(normalize, consts);
}

template <class V>
void forwardTrainPlanar(const BnForwardTrainArgs& a) {
  const BnLayout& l = a.layout;
  if (usesFlatPlanes(l)) return forwardTrainFlat<V>(a);
  const PlanarChunks plan(l.batch, l.spatial);
  const int64_t stride = l.channels * l.spatial;
  const bool stream = streamOutput(l);
  const bool overlap = l.perChannel() >= kOverlapMinChannel;
  parallelForEach(0, l.channels, channelGrain(l.perChannel()), [&](int64_t c0, int64_t c1) {
    if (overlap) {
      forwardTrainOverlapped<V>(a, plan, stream, c0, c1);
    } else {
      for (int64_t c = c0; c < c1; ++c) {
        const float* xc = a.x + c * l.spatial;
        finishChannelStats<V>(a, c, planarChannelMoments<V>(xc, stride, plan));
        planarNormalize<V>(xc, a.y + c * l.spatial, l.batch, stride, l.spatial, a.saveMean[c],
                           channelScale(a.gamma, c, a.saveInvstd[c]), channelBeta(a.beta, c), a.relu, stream);
      }
    }
    if (stream) V::streamFence();
  });
}

// A planar channel's gradient sums, added up chunk by chunk in plan order.
struct PlanarGradSums {
  double dy = 0, dyXc = 0;
};

// One vector of the gradient sums into the accumulators (dy, dyXc).
template <class V, class Relu, class IsFull>
inline void gradientStep(Relu, IsFull full, const float* x, const float* dy, int64_t valid, float mean,
                         typename V::Reg meanV, typename V::Reg scaleV, typename V::Reg betaV,
                         typename V::Reg& accDy, typename V::Reg& accDyXc) {
  const typename V::Reg xv = loadN<V>(full, x, valid, mean);
  const typename V::Reg dyv = maskedDy<V>(Relu::value, xv, loadN<V>(full, dy, valid, 0.0f), meanV, scaleV, betaV);
  accDy = V::add(accDy, dyv);
  accDyXc = V::fma(dyv, V::sub(xv, meanV), accDyXc);
}

// The gradient sums of one chunk (segments [n0, n1), offsets [s0, s1)),
// added to *sums. The accumulators are named locals, not an array a lambda
// indexes: GCC keeps such arrays in memory, and every vector then waits on a
// store-to-load round trip. Same slots and order as vectorLoop.
template <class V, class Relu>
void planarChunkGradientSums(Relu relu, const float* x, const float* dy, int64_t stride, int64_t batch, int64_t n0,
                             int64_t n1, int64_t s0, int64_t s1, float mean, float scale, float beta,
                             PlanarGradSums* sums) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  const int64_t length = s1 - s0;
  const Reg meanV = V::set1(mean), scaleV = V::set1(scale), betaV = V::set1(beta);
  Reg dy0 = V::zero(), dy1 = V::zero(), dy2 = V::zero(), dy3 = V::zero();
  Reg xc0 = V::zero(), xc1 = V::zero(), xc2 = V::zero(), xc3 = V::zero();
  for (int64_t n = n0; n < n1; ++n) {
    const float* xs = x + n * stride + s0;
    const float* dys = dy + n * stride + s0;
    if (n + 1 < batch) {
      prefetchSegment<0>(xs + stride, length);
      prefetchSegment<0>(dys + stride, length);
    }
    const simd::Full full;
    int64_t i = 0;
    for (; i + 4 * L <= length; i += 4 * L) {
      gradientStep<V>(relu, full, xs + i, dys + i, L, mean, meanV, scaleV, betaV, dy0, xc0);
      gradientStep<V>(relu, full, xs + i + L, dys + i + L, L, mean, meanV, scaleV, betaV, dy1, xc1);
      gradientStep<V>(relu, full, xs + i + 2 * L, dys + i + 2 * L, L, mean, meanV, scaleV, betaV, dy2, xc2);
      gradientStep<V>(relu, full, xs + i + 3 * L, dys + i + 3 * L, L, mean, meanV, scaleV, betaV, dy3, xc3);
    }
    for (; i + L <= length; i += L) {
      gradientStep<V>(relu, full, xs + i, dys + i, L, mean, meanV, scaleV, betaV, dy0, xc0);
    }
    if (i < length) {
      gradientStep<V>(relu, simd::Tail{}, xs + i, dys + i, length - i, mean, meanV, scaleV, betaV, dy1, xc1);
    }
  }
  sums->dy += V::reduceAdd(V::add(V::add(dy0, dy1), V::add(dy2, dy3)));
  sums->dyXc += V::reduceAdd(V::add(V::add(xc0, xc1), V::add(xc2, xc3)));
}

// dx = k * dy' + b * (x - mean) + c0 over `batch` segments. The constants
// are plain locals and the ReLU flag a compile-time one, so once GCC inlines
// this into the channel loop (it does: one call site per flag) they stay in
// registers across the stores. Forcing it with flatten, as planarNormalize
// does, measured ~5% slower here. (b * x + (c0 - b * mean) would save the
// subtraction, but rounding b * mean loses the digits of x - mean when
// |mean| >> std.)
template <class V, class Relu>
void planarGradient(Relu, const float* x, const float* dy, float* dx, int64_t batch, int64_t stride,
                    int64_t spatial, float mean, float scale, float beta, GradCoefficients g, bool stream) {
  using Reg = typename V::Reg;
  const Reg meanV = V::set1(mean), scaleV = V::set1(scale), betaV = V::set1(beta);
  const Reg kV = V::set1(g.k), bV = V::set1(g.b), c0V = V::set1(g.c0);
  for (int64_t n = 0; n < batch; ++n) {
    const float* xs = x + n * stride;
    const float* dys = dy + n * stride;
    float* dxs = dx + n * stride;
    if (n + 1 < batch) {
      prefetchSegment<0>(xs + stride, spatial);
      prefetchSegment<0>(dys + stride, spatial);
      if (!stream) prefetchSegment<1>(dxs + stride, spatial);
    }
    simd::mapStore<V>(dxs, spatial, stream, [&](auto full, int64_t i, int64_t valid) {
      const Reg xv = loadN<V>(full, xs + i, valid, 0.0f);
      const Reg dyv = maskedDy<V>(Relu::value, xv, loadN<V>(full, dys + i, valid, 0.0f), meanV, scaleV, betaV);
      return V::fma(kV, dyv, V::fma(bV, V::sub(xv, meanV), c0V));
    });
  }
}

// Backward's counterpart of forwardTrainFlat: gradient sums plane by plane in
// memory order, merged per channel in batch order, then a flat dx pass.
template <class V, class Relu>
void backwardFlat(Relu relu, const BnBackwardArgs& a) {
  const BnLayout& l = a.layout;
  const int64_t planes = l.batch * l.channels, channels = l.channels;
  auto* records = static_cast<PlanarGradSums*>(
      scratchBytes(sizeof(PlanarGradSums) * planes + sizeof(GradCoefficients) * channels));
  auto* coefficients = reinterpret_cast<GradCoefficients*>(records + planes);
  const int64_t grain = kMinElementsPerThread / l.spatial + 1;
  const auto channelConstants = [&](int64_t c, float* mean, float* scale, float* beta) {
    *mean = a.mean[c];
    *scale = channelScale(a.gamma, c, a.invstd[c]);
    *beta = channelBeta(a.beta, c);
  };
  parallelForEach(0, planes, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float mean, scale, beta;
      channelConstants(p % channels, &mean, &scale, &beta);
      records[p] = PlanarGradSums();
      planarChunkGradientSums<V>(relu, a.x + p * l.spatial, a.dy + p * l.spatial, 0, 1, 0, 1, 0, l.spatial, mean,
                                 scale, beta, &records[p]);
    }
  });
  for (int64_t c = 0; c < channels; ++c) {
    PlanarGradSums total;
    for (int64_t n = 0; n < l.batch; ++n) {
      total.dy += records[n * channels + c].dy;
      total.dyXc += records[n * channels + c].dyXc;
    }
    coefficients[c] = gradCoefficients(a, c, total.dy, total.dyXc, static_cast<double>(l.perChannel()));
  }
  if (!a.dx) return;
  const bool stream = streamOutput(l);
  parallelForEach(0, planes, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float mean, scale, beta;
      channelConstants(p % channels, &mean, &scale, &beta);
      const int64_t offset = p * l.spatial;
      planarGradient<V>(relu, a.x + offset, a.dy + offset, a.dx + offset, 1, 0, l.spatial, mean, scale, beta,
                        coefficients[p % channels], stream);
    }
    if (stream) V::streamFence();
  });
}

template <class V>
void backwardPlanar(const BnBackwardArgs& a) {
  const BnLayout& l = a.layout;
  if (usesFlatPlanes(l)) return withFlag(a.relu, [&](auto relu) { backwardFlat<V>(relu, a); });
  const PlanarChunks plan(l.batch, l.spatial);
  const int64_t stride = l.channels * l.spatial;
  const double count = static_cast<double>(l.perChannel());
  const bool stream = streamOutput(l);
  withFlag(a.relu, [&](auto relu) {
    parallelForEach(0, l.channels, channelGrain(l.perChannel()), [&](int64_t ca, int64_t cb) {
      for (int64_t c = ca; c < cb; ++c) {
        const int64_t offset = c * l.spatial;
        const float mean = a.mean[c], scale = channelScale(a.gamma, c, a.invstd[c]);
        const float beta = channelBeta(a.beta, c);
        PlanarGradSums sums;
        plan.forEach([&](int64_t n0, int64_t n1, int64_t s0, int64_t s1) {
          planarChunkGradientSums<V>(relu, a.x + offset, a.dy + offset, stride, l.batch, n0, n1, s0, s1, mean,
                                     scale, beta, &sums);
        });
        const GradCoefficients g = gradCoefficients(a, c, sums.dy, sums.dyXc, count);
        if (!a.dx) continue;
        planarGradient<V>(relu, a.x + offset, a.dy + offset, a.dx + offset, l.batch, stride, l.spatial, mean,
                          scale, beta, g, stream);
      }
      if (stream) V::streamFence();
    });
  });
}

}  // namespace
}  // namespace bnkit
