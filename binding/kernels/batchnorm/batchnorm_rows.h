// Channels-last layout (NHWC, NLC, and NC with no spatial axis): rows are
// cut into fixed chunks, each yielding per-channel partials that are merged in
// chunk order, so results do not depend on the number of threads.
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

// Rows are short: streaming pays only when every row starts on a vector
// boundary, otherwise masked and non-temporal stores share cache lines.
template <class V>
inline bool streamRows(const BnLayout& l, const float* out) {
  constexpr uintptr_t kAlign = V::kLanes * sizeof(float);
  return streamOutput(l) && l.channels % V::kLanes == 0 && reinterpret_cast<uintptr_t>(out) % kAlign == 0;
}

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
void forwardEvalRows(const BnForwardEvalArgs& a, const ChannelAffine& consts) {
  const BnLayout& l = a.layout;
  rowsNormalize<V>(a.x, a.y, l.perChannel(), l.channels, consts, a.relu, streamRows<V>(l, a.y));
}

}  // namespace
}  // namespace bnkit
