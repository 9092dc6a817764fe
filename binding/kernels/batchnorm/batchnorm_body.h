// The batch-norm algorithm, written once over a vector wrapper V and
// instantiated by each ISA's translation unit (batchnorm_<isa>.cc).
//
// Memory traffic is the design constraint (DESIGN.md section 3):
//  - Planar (NCHW): one thread owns a channel. Its statistics come from chunks
//    of <= kChunkElements values that stay in L1 for a two-pass (sum, then
//    centred squares) estimate merged with Chan's formula in double; the
//    channel is then normalized while it is still in L2, so DRAM sees one read
//    of x and one write of y. Backward does the same with (x, dy) -> dx.
//  - Channels-last (NHWC, and NC with no spatial axis): rows are cut into
//    fixed chunks, each yielding per-channel partials that are merged in chunk
//    order, so results do not depend on the number of threads.
#pragma once
#include <cstdint>

#include "../scratch.h"
#include "../simd/vector_loop.h"
#include "../threadpool.h"
#include "batchnorm.h"
#include "moments.h"

namespace bnkit {
namespace {

using simd::loadN;
using simd::storeN;
using simd::vectorLoop;

// 16 KiB of floats: two passes over a chunk hit L1 on every target core.
constexpr int64_t kChunkElements = 4096;
// Below this much work per thread, waking another thread costs more than it saves.
constexpr int64_t kMinElementsPerThread = 16384;

// Chunks of one planar channel: either several whole segments (small spatial
// size) or one segment cut into near-equal pieces. The plan depends only on the
// shape, never on the thread count.
struct PlanarChunks {
  int64_t batch, spatial, segmentsPerChunk, piecesPerSegment, pieceLength;

  PlanarChunks(int64_t batchSize, int64_t spatialSize) : batch(batchSize), spatial(spatialSize) {
    if (spatial >= kChunkElements) {
      segmentsPerChunk = 1;
      piecesPerSegment = (spatial + kChunkElements - 1) / kChunkElements;
      pieceLength = (spatial + piecesPerSegment - 1) / piecesPerSegment;
    } else {
      segmentsPerChunk = kChunkElements / spatial;
      piecesPerSegment = 1;
      pieceLength = spatial;
    }
  }

  // visit(firstSegment, endSegment, firstOffset, endOffset)
  template <class Visit>
  void forEach(Visit&& visit) const {
    for (int64_t n0 = 0; n0 < batch; n0 += segmentsPerChunk) {
      const int64_t n1 = n0 + segmentsPerChunk < batch ? n0 + segmentsPerChunk : batch;
      for (int64_t s0 = 0; s0 < spatial; s0 += pieceLength) {
        const int64_t s1 = s0 + pieceLength < spatial ? s0 + pieceLength : spatial;
        visit(n0, n1, s0, s1);
      }
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

// The normalized value (before ReLU): one expression shared by forward and by
// backward's ReLU mask so both see exactly the same sign.
template <class V>
inline typename V::Reg affine(typename V::Reg x, typename V::Reg mean, typename V::Reg scale,
                              typename V::Reg beta) {
  return V::fma(V::sub(x, mean), scale, beta);
}

template <class V>
Moments planarChannelMoments(const float* channel, int64_t segmentStride, const PlanarChunks& plan) {
  using Reg = typename V::Reg;
  Moments total;
  plan.forEach([&](int64_t n0, int64_t n1, int64_t s0, int64_t s1) {
    const int64_t length = s1 - s0;
    Reg acc[4];
    simd::zero4<V>(acc);
    for (int64_t n = n0; n < n1; ++n) {
      const float* p = channel + n * segmentStride + s0;
      if (n + 1 < plan.batch) prefetchSegment<0>(p + segmentStride, length);
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
    total = mergeMoments(total, momentsAroundPivot(count, pivot, simd::reduceAdd4<V>(dev),
                                                   simd::reduceAdd4<V>(sq)));
  });
  return total;
}

template <class V>
void planarNormalize(const float* x, float* y, int64_t batch, int64_t segmentStride, int64_t spatial,
                     float mean, float scale, float beta, bool relu, bool stream) {
  using Reg = typename V::Reg;
  const Reg meanV = V::set1(mean), scaleV = V::set1(scale), betaV = V::set1(beta), zeroV = V::zero();
  for (int64_t n = 0; n < batch; ++n) {
    const float* xs = x + n * segmentStride;
    float* ys = y + n * segmentStride;
    if (n + 1 < batch) {
      prefetchSegment<0>(xs + segmentStride, spatial);
      if (!stream) prefetchSegment<1>(ys + segmentStride, spatial);
    }
    simd::mapStore<V>(ys, spatial, stream, [&](auto full, int64_t i, int64_t valid) {
      const Reg v = affine<V>(loadN<V>(full, xs + i, valid, 0.0f), meanV, scaleV, betaV);
      return relu ? V::max(v, zeroV) : v;
    });
  }
}

// Outputs this large cannot stay in the last-level cache for the next layer
// anyway, so they are written with non-temporal stores.
constexpr int64_t kStreamingBytes = int64_t{48} << 20;
inline bool streamOutput(const BnLayout& l) {
  return l.elements() * static_cast<int64_t>(sizeof(float)) >= kStreamingBytes;
}

// Rows are short: streaming pays only when every row starts on a vector
// boundary, otherwise masked and non-temporal stores share cache lines.
template <class V>
inline bool streamRows(const BnLayout& l, const float* out) {
  constexpr uintptr_t kAlign = V::kLanes * sizeof(float);
  return streamOutput(l) && l.channels % V::kLanes == 0 && reinterpret_cast<uintptr_t>(out) % kAlign == 0;
}

inline int64_t channelGrain(int64_t perChannel) {
  const int64_t grain = kMinElementsPerThread / (perChannel > 0 ? perChannel : 1);
  return grain > 1 ? grain : 1;
}

inline bool usesRows(const BnLayout& layout) { return layout.channelsLast || layout.spatial == 1; }

// ---- channels-last helpers -------------------------------------------------

// A chunk is a fixed number of rows: channel blocks walk it twice, and one
// block's share (rows x 4 vectors) stays in L1 whatever C is. Few channels get
// taller chunks so each chunk still carries enough work.
struct RowChunks {
  int64_t rows, rowsPerChunk, count;
  RowChunks(int64_t rowCount, int64_t channels) : rows(rowCount) {
    rowsPerChunk = channels >= 64 ? 64 : kChunkElements / 64 / channels * 64;
    count = (rows + rowsPerChunk - 1) / rowsPerChunk;
  }
  int64_t begin(int64_t chunk) const { return chunk * rowsPerChunk; }
  int64_t end(int64_t chunk) const {
    const int64_t e = (chunk + 1) * rowsPerChunk;
    return e < rows ? e : rows;
  }
};

template <int N>
using VectorCount = std::integral_constant<int, N>;

// Walks channels in blocks of up to four vectors so per-channel accumulators
// live in registers while the rows of a chunk stream past. The vector count
// is a compile-time constant: with a runtime count the accumulator arrays
// spill to memory and every row waits on a store-to-load round trip.
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

template <class V>
inline typename V::Reg loadLane(const float* p, int k, int vectors, int64_t lastValid, float fill) {
  return k + 1 < vectors ? V::load(p + k * V::kLanes) : V::loadPartial(p + k * V::kLanes, lastValid, fill);
}

// Per-chunk, per-channel moments of channels-last data: records[chunk * C + c].
template <class V>
void rowChunkMoments(const float* x, int64_t channels, const RowChunks& chunks, int64_t chunk,
                     Moments* records) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  const int64_t r0 = chunks.begin(chunk), r1 = chunks.end(chunk);
  const double count = static_cast<double>(r1 - r0);
  forEachChannelBlock<V>(channels, [&](int64_t c0, auto vectorCount, int64_t lastValid) {
    constexpr int vectors = decltype(vectorCount)::value;
    Reg acc[vectors];
    for (auto& a : acc) a = V::zero();
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * channels + c0;
      for (int k = 0; k < vectors; ++k) acc[k] = V::add(acc[k], loadLane<V>(row, k, vectors, lastValid, 0.0f));
    }
    alignas(64) float pivot[4 * L];
    const Reg inverseCount = V::set1(static_cast<float>(1.0 / count));
    for (int k = 0; k < vectors; ++k) V::store(pivot + k * L, V::mul(acc[k], inverseCount));
    Reg pivotV[vectors], dev[vectors], sq[vectors];
    for (int k = 0; k < vectors; ++k) {
      pivotV[k] = V::load(pivot + k * L);
      dev[k] = V::zero();
      sq[k] = V::zero();
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = x + r * channels + c0;
      for (int k = 0; k < vectors; ++k) {
        const Reg t = V::sub(loadLane<V>(row, k, vectors, lastValid, 0.0f), pivotV[k]);
        dev[k] = V::add(dev[k], t);
        sq[k] = V::fma(t, t, sq[k]);
      }
    }
    alignas(64) float devs[4 * L], sqs[4 * L];
    for (int k = 0; k < vectors; ++k) {
      V::store(devs + k * L, dev[k]);
      V::store(sqs + k * L, sq[k]);
    }
    const int64_t width = (vectors - 1) * L + lastValid;
    Moments* out = records + chunk * channels + c0;
    for (int64_t j = 0; j < width; ++j) out[j] = momentsAroundPivot(count, pivot[j], devs[j], sqs[j]);
  });
}

// Per-channel constants of the affine map, laid out for vector loads.
struct ChannelAffine {
  float* mean;
  float* scale;
  float* beta;
};

inline ChannelAffine channelAffineScratch(float* base, int64_t channels) {
  return ChannelAffine{base, base + channels, base + 2 * channels};
}

template <class V>
void rowsNormalize(const float* x, float* y, int64_t rows, int64_t channels, const ChannelAffine& a,
                   bool relu, bool stream) {
  using Reg = typename V::Reg;
  const int64_t grain = kMinElementsPerThread / channels + 1;
  parallelForEach(0, rows, grain, [&](int64_t r0, int64_t r1) {
    const Reg zeroV = V::zero();
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * channels;
      simd::mapStore<V>(y + r * channels, channels, stream, [&](auto full, int64_t c, int64_t valid) {
        const Reg v = affine<V>(loadN<V>(full, xr + c, valid, 0.0f), loadN<V>(full, a.mean + c, valid, 0.0f),
                                loadN<V>(full, a.scale + c, valid, 0.0f), loadN<V>(full, a.beta + c, valid, 0.0f));
        return relu ? V::max(v, zeroV) : v;
      });
    }
    if (stream) V::streamFence();
  });
}

// ---- forward, training -----------------------------------------------------

template <class V>
void finishChannelStats(const BnForwardTrainArgs& a, int64_t c, const Moments& m) {
  const double variance = m.count > 0 ? m.m2 / m.count : 0.0;
  a.saveMean[c] = static_cast<float>(m.mean);
  a.saveInvstd[c] = invstdFromVariance(variance, a.eps);
  if (a.batchVariance) a.batchVariance[c] = variance;
}

template <class V>
void forwardTrainPlanar(const BnForwardTrainArgs& a) {
  const BnLayout& l = a.layout;
  const PlanarChunks plan(l.batch, l.spatial);
  const int64_t stride = l.channels * l.spatial;
  const bool stream = streamOutput(l);
  parallelForEach(0, l.channels, channelGrain(l.perChannel()), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const float* xc = a.x + c * l.spatial;
      finishChannelStats<V>(a, c, planarChannelMoments<V>(xc, stride, plan));
      const float scale = channelScale(a.gamma, c, a.saveInvstd[c]);
      planarNormalize<V>(xc, a.y + c * l.spatial, l.batch, stride, l.spatial, a.saveMean[c], scale,
                         channelBeta(a.beta, c), a.relu, stream);
    }
    if (stream) V::streamFence();
  });
}

template <class V>
void forwardTrainRows(const BnForwardTrainArgs& a) {
  const BnLayout& l = a.layout;
  const int64_t rows = l.perChannel(), channels = l.channels;
  const RowChunks chunks(rows, channels);
  // Scratch: chunk records, then two doubles per channel, then the floats.
  auto* records = static_cast<Moments*>(scratchBytes(sizeof(Moments) * chunks.count * channels +
                                                    sizeof(double) * 2 * channels + sizeof(float) * 3 * channels));
  double* sums = reinterpret_cast<double*>(records + chunks.count * channels);
  float* affineBase = reinterpret_cast<float*>(sums + 2 * channels);
  const ChannelAffine affineConsts = channelAffineScratch(affineBase, channels);
  parallelForEach(0, chunks.count, kMinElementsPerThread / (chunks.rowsPerChunk * channels) + 1,
                  [&](int64_t k0, int64_t k1) {
                    for (int64_t k = k0; k < k1; ++k) rowChunkMoments<V>(a.x, channels, chunks, k, records);
                  });
  // Chunk summaries are combined in two passes (mean of means, then the
  // spread of the chunk means), in chunk order: exact in double, no division
  // per record, and the same for any thread count.
  double* mean = sums;
  double* m2 = sums + channels;
  parallelForEach(0, channels, 8, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) mean[c] = m2[c] = 0;
    for (int64_t k = 0; k < chunks.count; ++k) {
      const Moments* row = records + k * channels;
      for (int64_t c = c0; c < c1; ++c) mean[c] += row[c].count * row[c].mean;
    }
    for (int64_t c = c0; c < c1; ++c) mean[c] /= static_cast<double>(rows);
    for (int64_t k = 0; k < chunks.count; ++k) {
      const Moments* row = records + k * channels;
      for (int64_t c = c0; c < c1; ++c) {
        const double d = row[c].mean - mean[c];
        m2[c] += row[c].m2 + row[c].count * d * d;
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      Moments m;
      m.count = static_cast<double>(rows);
      m.mean = mean[c];
      m.m2 = m2[c];
      finishChannelStats<V>(a, c, m);
      affineConsts.mean[c] = a.saveMean[c];
      affineConsts.scale[c] = channelScale(a.gamma, c, a.saveInvstd[c]);
      affineConsts.beta[c] = channelBeta(a.beta, c);
    }
  });
  rowsNormalize<V>(a.x, a.y, rows, channels, affineConsts, a.relu, streamRows<V>(l, a.y));
}

template <class V>
void forwardTrain(const BnForwardTrainArgs& a) {
  if (usesRows(a.layout)) {
    forwardTrainRows<V>(a);
  } else {
    forwardTrainPlanar<V>(a);
  }
}

// ---- forward, eval ---------------------------------------------------------

template <class V>
void forwardEval(const BnForwardEvalArgs& a) {
  const BnLayout& l = a.layout;
  const int64_t channels = l.channels;
  const ChannelAffine consts = channelAffineScratch(static_cast<float*>(scratchBytes(sizeof(float) * 3 * channels)), channels);
  for (int64_t c = 0; c < channels; ++c) {
    consts.mean[c] = a.mean[c];
    consts.scale[c] = channelScale(a.gamma, c, invstdFromVariance(a.variance[c], a.eps));
    consts.beta[c] = channelBeta(a.beta, c);
  }
  if (usesRows(l)) {
    rowsNormalize<V>(a.x, a.y, l.perChannel(), channels, consts, a.relu, streamRows<V>(l, a.y));
    return;
  }
  const int64_t segments = l.batch * channels;
  const int64_t grain = kMinElementsPerThread / l.spatial + 1;
  const bool stream = streamOutput(l);
  parallelForEach(0, segments, grain, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t c = s % channels;
      planarNormalize<V>(a.x + s * l.spatial, a.y + s * l.spatial, 1, 0, l.spatial, consts.mean[c],
                         consts.scale[c], consts.beta[c], a.relu, stream);
    }
    if (stream) V::streamFence();
  });
}

// ---- backward --------------------------------------------------------------

// dx = k * dy' + b * (x - mean) + c0, where dy' is dy under the ReLU mask.
struct GradCoefficients {
  float k, b, c0;
};

inline GradCoefficients gradCoefficients(const BnBackwardArgs& a, int64_t c, double sumDy, double sumDyXc,
                                         double count) {
  const double invstd = a.invstd[c];
  if (a.dbeta) a.dbeta[c] = static_cast<float>(sumDy);
  if (a.dgamma) a.dgamma[c] = static_cast<float>(sumDyXc * invstd);
  const double k = channelScale(a.gamma, c, a.invstd[c]);
  if (!a.batchStatistics) return GradCoefficients{static_cast<float>(k), 0.0f, 0.0f};
  return GradCoefficients{static_cast<float>(k), static_cast<float>(-k * invstd * invstd * sumDyXc / count),
                          static_cast<float>(-k * sumDy / count)};
}

template <class V>
inline typename V::Reg maskedDy(bool relu, typename V::Reg x, typename V::Reg dy, typename V::Reg mean,
                                typename V::Reg scale, typename V::Reg beta) {
  return relu ? V::selectPositive(affine<V>(x, mean, scale, beta), dy) : dy;
}

template <class V>
void backwardPlanar(const BnBackwardArgs& a) {
  using Reg = typename V::Reg;
  const BnLayout& l = a.layout;
  const PlanarChunks plan(l.batch, l.spatial);
  const int64_t stride = l.channels * l.spatial;
  const double count = static_cast<double>(l.perChannel());
  const bool stream = streamOutput(l);
  parallelForEach(0, l.channels, channelGrain(l.perChannel()), [&](int64_t ca, int64_t cb) {
    for (int64_t c = ca; c < cb; ++c) {
      const int64_t offset = c * l.spatial;
      const float mean = a.mean[c];
      const Reg meanV = V::set1(mean);
      const Reg scaleV = V::set1(channelScale(a.gamma, c, a.invstd[c]));
      const Reg betaV = V::set1(channelBeta(a.beta, c));
      double sumDy = 0, sumDyXc = 0;
      plan.forEach([&](int64_t n0, int64_t n1, int64_t s0, int64_t s1) {
        Reg accDy[4], accDyXc[4];
        simd::zero4<V>(accDy);
        simd::zero4<V>(accDyXc);
        for (int64_t n = n0; n < n1; ++n) {
          const float* xs = a.x + offset + n * stride + s0;
          const float* dys = a.dy + offset + n * stride + s0;
          if (n + 1 < l.batch) {
            prefetchSegment<0>(xs + stride, s1 - s0);
            prefetchSegment<0>(dys + stride, s1 - s0);
          }
          vectorLoop<V>(s1 - s0, [&](auto full, int slot, int64_t i, int64_t valid) {
            const Reg xv = loadN<V>(full, xs + i, valid, mean);
            const Reg dyv = maskedDy<V>(a.relu, xv, loadN<V>(full, dys + i, valid, 0.0f), meanV, scaleV, betaV);
            accDy[slot] = V::add(accDy[slot], dyv);
            accDyXc[slot] = V::fma(dyv, V::sub(xv, meanV), accDyXc[slot]);
          });
        }
        sumDy += simd::reduceAdd4<V>(accDy);
        sumDyXc += simd::reduceAdd4<V>(accDyXc);
      });
      const GradCoefficients g = gradCoefficients(a, c, sumDy, sumDyXc, count);
      if (!a.dx) continue;
      const Reg kV = V::set1(g.k), bV = V::set1(g.b), c0V = V::set1(g.c0);
      for (int64_t n = 0; n < l.batch; ++n) {
        const float* xs = a.x + offset + n * stride;
        const float* dys = a.dy + offset + n * stride;
        float* dxs = a.dx + offset + n * stride;
        if (n + 1 < l.batch) {
          prefetchSegment<0>(xs + stride, l.spatial);
          prefetchSegment<0>(dys + stride, l.spatial);
          if (!stream) prefetchSegment<1>(dxs + stride, l.spatial);
        }
        simd::mapStore<V>(dxs, l.spatial, stream, [&](auto full, int64_t i, int64_t valid) {
          const Reg xv = loadN<V>(full, xs + i, valid, 0.0f);
          const Reg dyv = maskedDy<V>(a.relu, xv, loadN<V>(full, dys + i, valid, 0.0f), meanV, scaleV, betaV);
          return V::fma(kV, dyv, V::fma(bV, V::sub(xv, meanV), c0V));
        });
      }
    }
    if (stream) V::streamFence();
  });
}

template <class V>
void backwardRows(const BnBackwardArgs& a) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  const BnLayout& l = a.layout;
  const int64_t rows = l.perChannel(), channels = l.channels;
  const RowChunks chunks(rows, channels);
  // records[k * C + c] = {sum dy', sum dy' * (x - mean)} of chunk k
  auto* records = static_cast<double*>(
      scratchBytes(sizeof(double) * 2 * chunks.count * channels + sizeof(float) * 6 * channels + 64));
  float* consts = reinterpret_cast<float*>(records + 2 * chunks.count * channels);
  const ChannelAffine affineConsts = channelAffineScratch(consts, channels);
  float* kArr = consts + 3 * channels;
  float* bArr = consts + 4 * channels;
  float* c0Arr = consts + 5 * channels;
  for (int64_t c = 0; c < channels; ++c) {
    affineConsts.mean[c] = a.mean[c];
    affineConsts.scale[c] = channelScale(a.gamma, c, a.invstd[c]);
    affineConsts.beta[c] = channelBeta(a.beta, c);
  }
  parallelForEach(0, chunks.count, kMinElementsPerThread / (chunks.rowsPerChunk * channels) + 1,
                  [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t r0 = chunks.begin(k), r1 = chunks.end(k);
      forEachChannelBlock<V>(channels, [&](int64_t c0, auto vectorCount, int64_t lastValid) {
        constexpr int vectors = decltype(vectorCount)::value;
        Reg meanV[vectors], scaleV[vectors], betaV[vectors], accDy[vectors], accDyXc[vectors];
        for (int j = 0; j < vectors; ++j) {
          meanV[j] = loadLane<V>(affineConsts.mean + c0, j, vectors, lastValid, 0.0f);
          scaleV[j] = loadLane<V>(affineConsts.scale + c0, j, vectors, lastValid, 0.0f);
          betaV[j] = loadLane<V>(affineConsts.beta + c0, j, vectors, lastValid, 0.0f);
          accDy[j] = V::zero();
          accDyXc[j] = V::zero();
        }
        for (int64_t r = r0; r < r1; ++r) {
          const float* xr = a.x + r * channels + c0;
          const float* dyr = a.dy + r * channels + c0;
          for (int j = 0; j < vectors; ++j) {
            const Reg xv = loadLane<V>(xr, j, vectors, lastValid, 0.0f);
            const Reg dyv = maskedDy<V>(a.relu, xv, loadLane<V>(dyr, j, vectors, lastValid, 0.0f), meanV[j],
                                        scaleV[j], betaV[j]);
            accDy[j] = V::add(accDy[j], dyv);
            accDyXc[j] = V::fma(dyv, V::sub(xv, meanV[j]), accDyXc[j]);
          }
        }
        alignas(64) float sums[2][4 * L];
        for (int j = 0; j < vectors; ++j) {
          V::store(sums[0] + j * L, accDy[j]);
          V::store(sums[1] + j * L, accDyXc[j]);
        }
        const int64_t width = (vectors - 1) * L + lastValid;
        double* out = records + 2 * (k * channels + c0);
        for (int64_t j = 0; j < width; ++j) {
          out[2 * j] = sums[0][j];
          out[2 * j + 1] = sums[1][j];
        }
      });
    }
  });
  const double count = static_cast<double>(rows);
  for (int64_t c = 0; c < channels; ++c) {
    double sumDy = 0, sumDyXc = 0;
    for (int64_t k = 0; k < chunks.count; ++k) {
      sumDy += records[2 * (k * channels + c)];
      sumDyXc += records[2 * (k * channels + c) + 1];
    }
    const GradCoefficients g = gradCoefficients(a, c, sumDy, sumDyXc, count);
    kArr[c] = g.k;
    bArr[c] = g.b;
    c0Arr[c] = g.c0;
  }
  if (!a.dx) return;
  const bool stream = streamRows<V>(l, a.dx);
  parallelForEach(0, rows, kMinElementsPerThread / channels + 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = a.x + r * channels;
      const float* dyr = a.dy + r * channels;
      simd::mapStore<V>(a.dx + r * channels, channels, stream, [&](auto full, int64_t c, int64_t valid) {
        const Reg xv = loadN<V>(full, xr + c, valid, 0.0f);
        const Reg meanV = loadN<V>(full, affineConsts.mean + c, valid, 0.0f);
        const Reg dyv = maskedDy<V>(a.relu, xv, loadN<V>(full, dyr + c, valid, 0.0f), meanV,
                                    loadN<V>(full, affineConsts.scale + c, valid, 0.0f),
                                    loadN<V>(full, affineConsts.beta + c, valid, 0.0f));
        return V::fma(loadN<V>(full, kArr + c, valid, 0.0f), dyv,
                      V::fma(loadN<V>(full, bArr + c, valid, 0.0f), V::sub(xv, meanV),
                             loadN<V>(full, c0Arr + c, valid, 0.0f)));
      });
    }
    if (stream) V::streamFence();
  });
}

template <class V>
void backward(const BnBackwardArgs& a) {
  if (usesRows(a.layout)) {
    backwardRows<V>(a);
  } else {
    backwardPlanar<V>(a);
  }
}

template <class V>
constexpr BatchNormKernels batchNormKernels() {
  return BatchNormKernels{&forwardTrain<V>, &forwardEval<V>, &backward<V>};
}

}  // namespace
}  // namespace bnkit
