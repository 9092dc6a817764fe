// BatchNorm2d (+ ReLU) followed by MaxPool2d(2), fused on the planar layout.
// The unfused pair writes the full-size normalized tensor, reads it back to
// pool, and in backward writes and re-reads a full-size gradient that is
// three-quarters zeros. Here forward reads x twice (statistics, then
// normalize + pool) and writes only pooled-size arrays: the output, a byte per
// window, and the input value each window picked. Backward takes its
// per-channel sums from those pooled-size arrays alone, then reads x once more
// to write dx. The statistics follow the plain batch norm's plan for the
// shape (so they are its bits); the pooling passes go in memory order, a
// piece of several planes at a time, when planes are small (smallPoolPlanes),
// plane by plane for long planes (usesFlatPlanes), and otherwise channel by
// channel, each still in L2 from its first pass.
//
// The saving is memory traffic: when the full-size tensors would stay in the
// last-level cache anyway (MNIST's 6.4 MB on a 32 MB L3, hot), the fused pass
// costs about what the two layers do; it wins once other layers evict them.
//
// Exactness: the normalized values are computed with the same expression as
// planarNormalize (affine() then max(0, v)) and pooled by the same window rule
// as the standalone 2x2 pooling (maxpool2x2.h), so the forward output equals
// BatchNorm -> MaxPool bit for bit on every ISA. Backward only differs from the
// unfused pair in the order of its per-channel sums.
#pragma once
#include <cstdint>
#include <type_traits>

#include "../elementwise/maxpool2x2.h"
#include "../simd/vector_loop.h"
#include "../threadpool.h"
#include "batchnorm_planar.h"
#include "batchnorm_shared.h"

namespace bnkit {
namespace {

inline int64_t poolChannelGrain(int64_t perChannel) {
  const int64_t grain = kMinElementsPerThread / (perChannel > 0 ? perChannel : 1);
  return grain > 1 ? grain : 1;
}

// Where a one-plane piece of channel c lands in the pooled-size arrays (a
// channel's pooled planes sit C planes apart).
struct ChannelPlanes {
  int64_t channels, channel, outPlane, oW;
  int64_t offset(const PoolPiece& p) const {
    return (p.plane * channels + channel) * outPlane + p.oy * oW + p.ox;
  }
};

// The pooled-size arrays of one plane: a channel's planes are short segments
// C planes apart, which the hardware prefetcher hardly follows.
template <class F, class B, class P>
inline void prefetchPooledPlane(F* values, B* codes, P* picked, int64_t at, int64_t length) {
  constexpr int ForWrite = std::is_const<F>::value ? 0 : 1;
  for (int64_t i = 0; i < length; i += 16) {
    __builtin_prefetch(values + at + i, ForWrite, 3);
    __builtin_prefetch(picked + at + i, ForWrite, 3);
  }
  for (int64_t i = 0; i < length; i += 64) __builtin_prefetch(codes + at + i, ForWrite, 3);
}

// Pools n windows of compact rows (see poolWindows), each input normalized
// (and clipped) in registers exactly as planarNormalize does, so the pooled
// values equal BatchNorm -> MaxPool's.
template <class V>
inline void normalizeAndPoolWindows(const float* top, const float* bottom, int64_t n, float mean, float scale,
                                    float beta, bool relu, float* pooled, uint8_t* window, float* picked) {
  using Reg = typename V::Reg;
  const Reg meanV = V::set1(mean), scaleV = V::set1(scale), betaV = V::set1(beta), zero = V::zero();
  if (relu) {
    const auto normalizeClipped = [&](Reg v) { return V::max(zero, affine<V>(v, meanV, scaleV, betaV)); };
    poolWindows<V, true>(top, bottom, n, normalizeClipped, pooled, window, picked);
  } else {
    const auto normalize = [&](Reg v) { return affine<V>(v, meanV, scaleV, betaV); };
    poolWindows<V, false>(top, bottom, n, normalize, pooled, window, picked);
  }
}

// Planes small enough that a piece of work holds several: these go in memory
// order rather than channel by channel.
inline bool smallPoolPlanes(const BnPoolShape& s) { return s.outH() * s.outW() <= kPoolBlock / 2; }

// Calls visit(piece) for the pieces of channel planes [0, batch), each within
// one plane (small planes that could share a piece go through
// normalizeAndPoolPlanes / backwardPoolSmallPlanes instead).
template <class Visit>
inline void forEachPlanePiece(int64_t batch, const BnPoolShape& s, Visit&& visit) {
  for (int64_t n = 0; n < batch; ++n) {
    forEachPoolPiece(1, s.outH(), s.outW(), [&](const PoolPiece& p) {
      visit(PoolPiece{n, 1, p.oy, p.rows, p.ox, p.cols});
    });
  }
}

// Pools channel c of x (all batch planes) with the per-channel affine map.
template <class V>
void normalizeAndPoolChannel(const BnLayout& l, const BnPoolShape& s, int64_t c, const float* x, float mean,
                             float scale, float beta, bool relu, float* pooled, uint8_t* window, float* picked) {
  const ChannelPlanes at{l.channels, c, s.outH() * s.outW(), s.outW()};
  const int64_t stride = l.channels * l.spatial;
  const float* xc = x + c * l.spatial;
  // The raw rows are kept: backward needs x at each maximum (picked).
  float xTop[2 * kPoolBlock], xBottom[2 * kPoolBlock];
  forEachPlanePiece(l.batch, s, [&](const PoolPiece& p) {
    gatherPoolRows<V>(xc, stride, s.W, p, xTop, xBottom);
    const int64_t o = at.offset(p);
    normalizeAndPoolWindows<V>(xTop, xBottom, p.outputs(), mean, scale, beta, relu, pooled + o, window + o,
                               picked + o);
  });
}

// Planes [q0, q1) of a tensor of small planes (several fit one piece), in
// memory order: plane q is channel q % C of image q / C.
template <class V, class Constants>
void normalizeAndPoolPlanes(const BnLayout& l, const BnPoolShape& s, const float* x, bool relu, float* pooled,
                            uint8_t* window, float* picked, int64_t q0, int64_t q1, Constants& constants) {
  const int64_t outPlane = s.outH() * s.outW();
  float xTop[2 * kPoolBlock], xBottom[2 * kPoolBlock];
  forEachPoolPiece(q1 - q0, s.outH(), s.outW(), [&](const PoolPiece& p) {
    gatherPoolRows<V>(x + q0 * l.spatial, l.spatial, s.W, p, xTop, xBottom);
    for (int64_t j = 0; j < p.planes; ++j) {
      const int64_t q = q0 + p.plane + j;
      float mean, scale, beta;
      constants(q % l.channels, &mean, &scale, &beta);
      normalizeAndPoolWindows<V>(xTop + 2 * j * outPlane, xBottom + 2 * j * outPlane, outPlane, mean, scale, beta,
                                 relu, pooled + q * outPlane, window + q * outPlane, picked + q * outPlane);
    }
  });
}

// Normalizes and pools every channel; constants(c, &mean, &scale, &beta).
// Small planes go in memory order, a piece of several planes at a time: reads
// and writes are sequential, and each thread takes the images that the layer
// before (a convolution splits by image) most likely left in its own cache.
// Flat-planes tensors (usesFlatPlanes) go plane by plane in memory order too,
// as their statistics pass read them; the others channel by channel, each
// channel still in L2 from its statistics.
template <class V, class Constants>
void normalizeAndPoolAll(const BnLayout& l, const BnPoolShape& s, const float* x, bool relu, float* pooled,
                         uint8_t* window, float* picked, Constants&& constants) {
  const int64_t outPlane = s.outH() * s.outW(), planes = l.batch * l.channels;
  if (smallPoolPlanes(s)) {
    parallelForEach(0, planes, kMinElementsPerThread / l.spatial + 1, [&](int64_t q0, int64_t q1) {
      normalizeAndPoolPlanes<V>(l, s, x, relu, pooled, window, picked, q0, q1, constants);
    });
    return;
  }
  if (usesFlatPlanes(l)) {
    const BnLayout plane{1, l.channels, l.spatial, false};
    parallelForEach(0, planes, kMinElementsPerThread / l.spatial + 1, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t n = q / l.channels, c = q % l.channels, out = n * l.channels * outPlane;
        float mean, scale, beta;
        constants(c, &mean, &scale, &beta);
        normalizeAndPoolChannel<V>(plane, s, c, x + n * l.channels * l.spatial, mean, scale, beta, relu,
                                   pooled + out, window + out, picked + out);
      }
    });
    return;
  }
  parallelForEach(0, l.channels, poolChannelGrain(l.perChannel()), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float mean, scale, beta;
      constants(c, &mean, &scale, &beta);
      normalizeAndPoolChannel<V>(l, s, c, x, mean, scale, beta, relu, pooled, window, picked);
    }
  });
}

// The channel-wise plan's statistics when its chunks are runs of whole
// images (small planes), computed chunk by chunk instead of channel by
// channel: a thread then reads a run of images, those the layer before most
// likely left in its cache, rather than every image of half the channels.
// Each channel merges the same chunk moments in the same order as
// planarChannelMoments, so the bits are the channel-wise plan's. The threads
// split the planes, not the (chunk, channel) items: a block takes the items
// that start among its planes, so a short last chunk does not unbalance it.
template <class V>
void imageMajorStatistics(const BnForwardTrainArgs& a, const PlanarChunks& plan) {
  const BnLayout& l = a.layout;
  const int64_t chunks = plan.count(), channels = l.channels, stride = channels * l.spatial;
  auto* records = static_cast<Moments*>(scratchBytes(sizeof(Moments) * chunks * channels));
  parallelForEach(0, l.batch * channels, kMinElementsPerThread / l.spatial + 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = 0; k < chunks; ++k) {
      const PlanarChunks::Chunk ck = plan[k];
      // Item (k, c) starts at plane ck.n0 * channels + c * images.
      const int64_t images = ck.n1 - ck.n0, start = ck.n0 * channels;
      const auto firstAtOrAfter = [&](int64_t plane) {
        const int64_t c = plane <= start ? 0 : (plane - start + images - 1) / images;
        return c < channels ? c : channels;
      };
      for (int64_t c = firstAtOrAfter(lo); c < firstAtOrAfter(hi); ++c) {
        records[k * channels + c] =
            planarChunkMoments<V>(a.x + c * l.spatial, stride, l.batch, ck.n0, ck.n1, ck.s0, ck.s1);
      }
    }
  });
  for (int64_t c = 0; c < channels; ++c) {
    Moments total;
    for (int64_t k = 0; k < chunks; ++k) total = mergeMoments(total, records[k * channels + c]);
    finishChannelStats<V>(a, c, total);
  }
}

template <class V>
void forwardTrainPool(const BnPoolForwardTrainArgs& p) {
  const BnForwardTrainArgs& a = p.bn;
  const BnLayout& l = a.layout;
  // The statistics must be those of the unfused kernel, bit for bit.
  const PlanarChunks plan(l.batch, l.spatial);
  if (usesFlatPlanes(l)) {
    flatPlaneStatistics<V>(a);
  } else if (plan.piecesPerSegment == 1 && plan.segmentsPerChunk > 1) {
    imageMajorStatistics<V>(a, plan);
  } else {
    parallelForEach(0, l.channels, poolChannelGrain(l.perChannel()), [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        finishChannelStats<V>(a, c, planarChannelMoments<V>(a.x + c * l.spatial, l.channels * l.spatial, plan));
      }
    });
  }
  normalizeAndPoolAll<V>(l, p.shape, a.x, a.relu, p.pooled, p.window, p.picked,
                         [&](int64_t c, float* mean, float* scale, float* beta) {
                           *mean = a.saveMean[c];
                           *scale = channelScale(a.gamma, c, a.saveInvstd[c]);
                           *beta = channelBeta(a.beta, c);
                         });
}

template <class V>
void forwardEvalPool(const BnPoolForwardEvalArgs& p) {
  const BnForwardEvalArgs& a = p.bn;
  // The constants exactly as forwardEval computes them.
  normalizeAndPoolAll<V>(a.layout, p.shape, a.x, a.relu, p.pooled, p.window, p.picked,
                         [&](int64_t c, float* mean, float* scale, float* beta) {
                           *mean = a.mean[c];
                           *scale = channelScale(a.gamma, c, invstdFromVariance(a.variance[c], a.eps));
                           *beta = channelBeta(a.beta, c);
                         });
}

// dx = k * dy' + b * (x - mean) + c0 over one stretch (dy' == nullptr: zero),
// the expression backwardPlanar uses.
template <class V>
inline void poolGradRow(const float* x, const float* dyPrime, float* dx, int64_t length, typename V::Reg mean,
                        typename V::Reg k, typename V::Reg b, typename V::Reg c0) {
  simd::vectorLoop<V>(length, [&](auto full, int, int64_t i, int64_t valid) {
    const typename V::Reg g = dyPrime ? simd::loadN<V>(full, dyPrime + i, valid, 0.0f) : V::zero();
    const typename V::Reg xv = simd::loadN<V>(full, x + i, valid, 0.0f);
    simd::storeN<V>(full, dx + i, V::fma(k, g, V::fma(b, V::sub(xv, mean), c0)), valid);
  });
}

// What backward reads and writes for some batch planes: the whole tensor, or
// one plane of it (batch 1) in the flat-planes plan.
struct PoolBackwardView {
  BnLayout l;
  const float* x;
  const float* dy;  // pooled-size gradient
  float* dx;        // nullptr: parameter gradients only
  const uint8_t* window;
  const float* picked;
};

// sum(dy') and sum(dy' * (x - mean)) over one plane's n windows, in vectors
// of windows: a gradient passes where its code is < kNoGradient. Float
// partial sums go to double every kChunkElements windows, as elsewhere.
template <class V>
PlanarGradSums planeGradientSums(const float* dy, const uint8_t* code, const float* picked, int64_t n, float mean) {
  using Reg = typename V::Reg;
  constexpr int64_t L = V::kLanes;
  const Reg meanV = V::set1(mean), passes = V::set1(static_cast<float>(kNoGradient)), zero = V::zero();
  PlanarGradSums sums;
  for (int64_t c0 = 0; c0 < n; c0 += kChunkElements) {
    const int64_t c1 = n - c0 < kChunkElements ? n : c0 + kChunkElements;
    Reg accDy = zero, accDyXc = zero;
    for (int64_t i = c0; i < c1; i += L) {
      const int64_t valid = c1 - i < L ? c1 - i : L;
      // Lanes past the end load a zero gradient and x = mean: they add nothing.
      const Reg g = V::select(V::greater(passes, V::loadBytes(code + i, valid)),
                              valid == L ? V::load(dy + i) : V::loadPartial(dy + i, valid, 0.0f), zero);
      const Reg x = valid == L ? V::load(picked + i) : V::loadPartial(picked + i, valid, mean);
      accDy = V::add(accDy, g);
      accDyXc = V::fma(g, V::sub(x, meanV), accDyXc);
    }
    sums.dy += V::reduceAdd(accDy);
    sums.dyXc += V::reduceAdd(accDyXc);
  }
  return sums;
}

// sum(dy') and sum(dy' * (x - mean)) of channel c over the view: only the
// windows' chosen inputs carry gradient, so the sums run over the
// pooled-size arrays, plane by plane in batch order (a fixed plan: the result
// does not depend on the threads).
template <class V>
PlanarGradSums poolGradientSums(const PoolBackwardView& v, const BnPoolShape& s, int64_t c, float mean) {
  const int64_t outPlane = s.outH() * s.outW();
  PlanarGradSums sums;
  for (int64_t n = 0; n < v.l.batch; ++n) {
    const int64_t plane = (n * v.l.channels + c) * outPlane;
    if (n + 2 < v.l.batch) prefetchPooledPlane(v.dy, v.window, v.picked, plane + 2 * v.l.channels * outPlane, outPlane);
    const PlanarGradSums part = planeGradientSums<V>(v.dy + plane, v.window + plane, v.picked + plane, outPlane, mean);
    sums.dy += part.dy;
    sums.dyXc += part.dyXc;
  }
  return sums;
}

// dx of channel c over the view: k * dy' + b * (x - mean) + c0, where dy' is
// the pooled gradient routed back to each window's chosen input.
template <class V>
void poolGradient(const PoolBackwardView& v, const BnPoolShape& s, int64_t c, float mean, GradCoefficients gc) {
  using Reg = typename V::Reg;
  const BnLayout& l = v.l;
  const int64_t stride = l.channels * l.spatial, oH = s.outH(), oW = s.outW();
  // Even H and W with a whole plane per piece (at most 4 * kPoolBlock inputs):
  // no input is left uncovered and the plane fits the dense buffer.
  const bool wholeEvenPlanes = s.H % 2 == 0 && s.W % 2 == 0 && oH * oW <= kPoolBlock;
  float top[2 * kPoolBlock], bottom[2 * kPoolBlock], dense[4 * kPoolBlock];
  const ChannelPlanes at{l.channels, c, oH * oW, oW};
  const float* xc = v.x + c * l.spatial;
  float* dxc = v.dx + c * l.spatial;
  const Reg meanV = V::set1(mean), kV = V::set1(gc.k), bV = V::set1(gc.b), c0V = V::set1(gc.c0);
  forEachPlanePiece(l.batch, s, [&](const PoolPiece& piece) {
    unpoolWindows<V>(v.dy + at.offset(piece), v.window + at.offset(piece), piece.outputs(), top, bottom);
    if (wholeEvenPlanes) {
      // Rebuild the plane's full-size gradient in L1, then one long pass:
      // full vectors and whole cache lines of dx.
      scatterPoolRows<V>(top, bottom, l.spatial, s.W, PoolPiece{0, 1, 0, oH, 0, oW}, dense);
      const int64_t in = piece.plane * stride;
      poolGradRow<V>(xc + in, dense, dxc + in, l.spatial, meanV, kV, bV, c0V);
      return;
    }
    forEachPieceRow(piece, stride, s.W, [&](int64_t in, int64_t t, int64_t n) {
      poolGradRow<V>(xc + in, top + t, dxc + in, n, meanV, kV, bV, c0V);
      poolGradRow<V>(xc + in + s.W, bottom + t, dxc + in + s.W, n, meanV, kV, bV, c0V);
    });
  });
  for (int64_t n = 0; n < l.batch && !wholeEvenPlanes; ++n) {
    forEachUncovered(s.H, s.W, [&](int64_t o, int64_t length) {
      poolGradRow<V>(xc + n * stride + o, nullptr, dxc + n * stride + o, length, meanV, kV, bV, c0V);
    });
  }
}

// Per-plane gradient sums (records[n * C + c] = sumsOf(n * C + c), in
// parallel) merged per channel in batch order into the gradient
// coefficients: shared by the flat-planes plan below and the fused stem.
template <class SumsOf>
void planeGradientCoefficients(const BnBackwardArgs& a, int64_t grain, PlanarGradSums* records,
                               GradCoefficients* coefficients, SumsOf&& sumsOf) {
  const BnLayout& l = a.layout;
  parallelForEach(0, l.batch * l.channels, grain, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) records[q] = sumsOf(q);
  });
  const double count = static_cast<double>(l.perChannel());
  for (int64_t c = 0; c < l.channels; ++c) {
    PlanarGradSums total;
    for (int64_t n = 0; n < l.batch; ++n) {
      total.dy += records[n * l.channels + c].dy;
      total.dyXc += records[n * l.channels + c].dyXc;
    }
    coefficients[c] = gradCoefficients(a, c, total.dy, total.dyXc, count);
  }
}

// Backward of small even planes (smallPoolPlanes): sums plane by plane in
// memory order, added per channel in batch order, then dx a piece of several
// planes at a time: their routed gradient is rebuilt in L1 in one go, and
// each plane is one long pass with its channel's coefficients.
template <class V>
void backwardPoolSmallPlanes(const BnPoolBackwardArgs& p) {
  const BnBackwardArgs& a = p.bn;
  const BnLayout& l = a.layout;
  const BnPoolShape& s = p.shape;
  const int64_t planes = l.batch * l.channels, oH = s.outH(), oW = s.outW(), outPlane = oH * oW;
  auto* records = static_cast<PlanarGradSums*>(
      scratchBytes(sizeof(PlanarGradSums) * planes + sizeof(GradCoefficients) * l.channels));
  auto* coefficients = reinterpret_cast<GradCoefficients*>(records + planes);
  const int64_t grain = kMinElementsPerThread / l.spatial + 1;
  planeGradientCoefficients(a, grain, records, coefficients, [&](int64_t q) {
    const int64_t at = q * outPlane;
    return planeGradientSums<V>(a.dy + at, p.window + at, p.picked + at, outPlane, a.mean[q % l.channels]);
  });
  if (!a.dx) return;
  parallelForEach(0, planes, grain, [&](int64_t q0, int64_t q1) {
    float top[2 * kPoolBlock], bottom[2 * kPoolBlock], dense[4 * kPoolBlock];
    forEachPoolPiece(q1 - q0, oH, oW, [&](const PoolPiece& piece) {
      const int64_t first = q0 + piece.plane;
      unpoolWindows<V>(a.dy + first * outPlane, p.window + first * outPlane, piece.outputs(), top, bottom);
      scatterPoolRows<V>(top, bottom, l.spatial, s.W, PoolPiece{0, piece.planes, 0, oH, 0, oW}, dense);
      for (int64_t j = 0; j < piece.planes; ++j) {
        const int64_t q = first + j, c = q % l.channels;
        const GradCoefficients gc = coefficients[c];
        poolGradRow<V>(a.x + q * l.spatial, dense + j * l.spatial, a.dx + q * l.spatial, l.spatial,
                       V::set1(a.mean[c]), V::set1(gc.k), V::set1(gc.b), V::set1(gc.c0));
      }
    });
  });
}

template <class V>
void backwardPool(const BnPoolBackwardArgs& p) {
  const BnBackwardArgs& a = p.bn;
  const BnLayout& l = a.layout;
  const double count = static_cast<double>(l.perChannel());
  const PoolBackwardView whole{l, a.x, a.dy, a.dx, p.window, p.picked};
  // Even sides: every input is in a window, so a plane is its windows' rows.
  if (smallPoolPlanes(p.shape) && p.shape.H % 2 == 0 && p.shape.W % 2 == 0) return backwardPoolSmallPlanes<V>(p);
  if (!usesFlatPlanes(l) && !smallPoolPlanes(p.shape)) {
    parallelForEach(0, l.channels, poolChannelGrain(l.perChannel()), [&](int64_t ca, int64_t cb) {
      for (int64_t c = ca; c < cb; ++c) {
        const PlanarGradSums sums = poolGradientSums<V>(whole, p.shape, c, a.mean[c]);
        const GradCoefficients gc = gradCoefficients(a, c, sums.dy, sums.dyXc, count);
        if (a.dx) poolGradient<V>(whole, p.shape, c, a.mean[c], gc);
      }
    });
    return;
  }
  // Flat planes (see usesFlatPlanes): sums plane by plane in memory order,
  // added per channel in batch order, then dx plane by plane.
  const int64_t planes = l.batch * l.channels, outPlane = p.shape.outH() * p.shape.outW();
  auto* records = static_cast<PlanarGradSums*>(
      scratchBytes(sizeof(PlanarGradSums) * planes + sizeof(GradCoefficients) * l.channels));
  auto* coefficients = reinterpret_cast<GradCoefficients*>(records + planes);
  const auto planeView = [&](int64_t n) {
    return PoolBackwardView{BnLayout{1, l.channels, l.spatial, false}, a.x + n * l.channels * l.spatial,
                            a.dy + n * l.channels * outPlane,
                            a.dx ? a.dx + n * l.channels * l.spatial : nullptr,
                            p.window + n * l.channels * outPlane, p.picked + n * l.channels * outPlane};
  };
  const int64_t grain = kMinElementsPerThread / l.spatial + 1;
  planeGradientCoefficients(a, grain, records, coefficients, [&](int64_t q) {
    const int64_t c = q % l.channels;
    return poolGradientSums<V>(planeView(q / l.channels), p.shape, c, a.mean[c]);
  });
  if (!a.dx) return;
  parallelForEach(0, planes, grain, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t c = q % l.channels;
      poolGradient<V>(planeView(q / l.channels), p.shape, c, a.mean[c], coefficients[c]);
    }
  });
}

}  // namespace
}  // namespace bnkit
