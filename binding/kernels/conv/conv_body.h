// Convolution written once over a vector wrapper V (conv_<isa>.cc instantiates
// it), as GEMMs whose operands are packed straight from the tensors:
//  - forward, stride 1 with a shallow patch (conv1): direct, directConv;
//  - 3x3 stride-1 layers with several channels (forward and data gradient):
//    Winograd F(2x2, 3x3), conv_winograd.h (the data gradient F(4x4, 3x3)
//    where that does less work); their weight gradient as F(3x3, 2x2) or
//    F(3x3, 4x4), conv_wgrad_winograd.h;
//  - forward, per image: y_n[outC, P] = W[outC, K] * col(x_n)[K, P], the
//    im2col values written directly into the GEMM's B sliver (no column
//    matrix); stride 1 reads them from a zero-padded copy (conv_padded.h);
//  - data gradient, per image: for stride 1 a forward convolution of dy with
//    the flipped, channel-swapped kernel (same GEMM, no scatter); otherwise
//    dcol[K, P] = W^T * dy_n followed by col2im;
//  - weight gradient: dW[outC, K] += sum over images of dy_n * col(x_n)^T,
//    for shallow stride-1 patches (conv1) as dot products of dy read in place
//    with shifted copies of x (conv_wgrad_shifted.h), as vector dot products
//    on padded copies for other stride-1 layers (conv_wgrad.h), else
//    as a GEMM over a packed col^T. Images are cut into fixed chunks whose
//    partial results are added in chunk order, so the result does not depend
//    on the thread count.
// Images are spread over threads; each image's output belongs to one thread.
// (P = outH * outW, K = inC * kh * kw.)
#pragma once
#include <cstdint>

#include "../gemm/gemm_body.h"
#include "../simd/vector_loop.h"
#include "conv.h"
#include "conv_pack.h"
#include "conv_padded.h"
#include "conv_wgrad.h"
#include "conv_wgrad_shifted.h"
#include "conv_wgrad_winograd.h"
#include "conv_winograd.h"

namespace bnkit {
namespace {

// Images per weight-gradient chunk: a function of the shape only (never of
// the thread count), large enough that each chunk is a sizeable GEMM.
inline int64_t weightChunkImages(const ConvShape& s) {
  const int64_t P = s.outH() * s.outW();
  const int64_t g = ceilDiv(2048, P);
  return g < s.batch ? g : s.batch;
}

// y_n = A * col(input_n) + bias for every image, A packed once and shared.
template <class V, class PackA>
void implicitGemmConv(const ConvShape& s, const PackA& packA, const float* input, const float* bias, float* out) {
  constexpr int NR = GemmTile<V>::kNR, MR = GemmTile<V>::kMR;
  const int64_t M = s.outC, K = s.patch(), outW = s.outW(), P = s.outH() * outW;
  const int64_t imageSize = s.inC * s.H * s.W;
  const int64_t threads = minI(numThreads(), s.batch), sliverFloats = kcBlock<V>(K) * NR;
  float* packedA = static_cast<float*>(scratchBytes(sizeof(float) * (packedASize<V>(M, K) + threads * sliverFloats)));
  float* slivers = packedA + packedASize<V>(M, K);
  packAPanels<V>(packA, M, K, 0, ceilDiv(M, MR), packedA);
  GemmEpilogue e;
  e.rowBias = bias;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      for (int64_t n = s.batch * t / threads; n < s.batch * (t + 1) / threads; ++n) {
        const ImplicitColB<V> packB{input + n * imageSize, &s, outW, P};
        gemmTiles<V>(M, P, K, packedA, packB, 0, ceilDiv(M, MR), 0, ceilDiv(P, NR), out + n * M * P, P, e,
                     slivers + t * sliverFloats);
      }
    }
  });
}

// Stride 1: y_n = A * col(pad(input_n)) + bias on the padded output grid
// (conv_padded.h), then the junk columns are dropped while copying out.
template <class V, class PackA>
void paddedGemmConv(const ConvShape& s, const PackA& packA, const float* input, const float* bias, float* out) {
  constexpr int NR = GemmTile<V>::kNR, MR = GemmTile<V>::kMR;
  const PaddedGeometry g = paddedGeometry<V>(s);
  const int64_t M = s.outC, K = s.patch(), outH = s.outH(), outW = s.outW(), P = outH * outW;
  const int64_t imageSize = s.inC * s.H * s.W;
  const int64_t threads = minI(numThreads(), s.batch);
  const int64_t perThread = s.inC * g.pitch + M * g.grid;
  const int64_t offsetFloats = roundUp(K, 16);  // int32 row offsets, kept 64-byte aligned
  float* packedA = static_cast<float*>(
      scratchBytes(sizeof(float) * (packedASize<V>(M, K) + offsetFloats + threads * perThread)));
  int32_t* rowOffsets = reinterpret_cast<int32_t*>(packedA + packedASize<V>(M, K));
  float* work = packedA + packedASize<V>(M, K) + offsetFloats;
  packAPanels<V>(packA, M, K, 0, ceilDiv(M, MR), packedA);
  paddedRowOffsets(s, g, rowOffsets);
  GemmEpilogue e;
  e.rowBias = bias;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* padded = work + t * perThread;
      float* grid = padded + s.inC * g.pitch;
      for (int64_t n = s.batch * t / threads; n < s.batch * (t + 1) / threads; ++n) {
        padPlanes<V>(input + n * imageSize, s.inC, s.H, s.W, s.padH, s.padW, g, padded);
        const PaddedColB packB{padded, rowOffsets};
        gemmTiles<V>(M, g.grid, K, packedA, packB, 0, ceilDiv(M, MR), 0, ceilDiv(g.grid, NR), grid, g.grid, e, nullptr);
        float* y = out + n * M * P;
        for (int64_t oc = 0; oc < M; ++oc)
          for (int64_t oy = 0; oy < outH; ++oy) {
            const float* src = grid + oc * g.grid + oy * g.Wp;
            float* dst = y + oc * P + oy * outW;
            copyFloats<V>(dst, src, outW);
          }
      }
    }
  });
}

// Stride 1 with a shallow patch (conv1: one input channel, 9 taps): a GEMM
// with K = 9 spends its time storing its tiles and copying them out of the
// padded grid (37% of conv1 forward). Directly: each output row segment of two
// vectors accumulates kDirectRows output channels in registers over every tap,
// reading the padded input (in L1) with unaligned vector loads; y is written
// once. Deeper patches keep the GEMM (its register blocking reuses each
// input load across more channels; the cut-off at 27 taps is not tuned).
constexpr int kDirectRows = 8;

inline bool directFits(const ConvShape& s) {
  return s.strideH == 1 && s.strideW == 1 && s.patch() <= 27;
}

template <class V>
void directConv(const ConvShape& s, const float* weight, const float* input, const float* bias, float* out) {
  using Reg = typename V::Reg;
  constexpr int L = V::kLanes, R = kDirectRows;
  const PaddedGeometry g = paddedGeometry<V>(s);
  const int64_t M = s.outC, K = s.patch(), outH = s.outH(), outW = s.outW(), P = outH * outW;
  const int64_t imageSize = s.inC * s.H * s.W, threads = minI(numThreads(), s.batch);
  const int64_t perThread = s.inC * g.pitch;
  const int64_t offsetFloats = roundUp(K, 16);
  float* work = static_cast<float*>(scratchBytes(sizeof(float) * (offsetFloats + threads * perThread)));
  int32_t* tapOffsets = reinterpret_cast<int32_t*>(work);
  paddedRowOffsets(s, g, tapOffsets);
  work += offsetFloats;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* padded = work + t * perThread;
      for (int64_t n = s.batch * t / threads; n < s.batch * (t + 1) / threads; ++n) {
        padPlanes<V>(input + n * imageSize, s.inC, s.H, s.W, s.padH, s.padW, g, padded);
        float* y = out + n * M * P;
        for (int64_t oc0 = 0; oc0 < M; oc0 += R) {
          const int64_t rows = minI(R, M - oc0);
          // Channels past M repeat the last one; their sums are dropped.
          const float* w[R];
          Reg b[R];
          for (int r = 0; r < R; ++r) {
            const int64_t oc = oc0 + (r < rows ? r : rows - 1);
            w[r] = weight + oc * K;
            b[r] = V::set1(bias != nullptr ? bias[oc] : 0.0f);
          }
          for (int64_t oy = 0; oy < outH; ++oy) {
            const float* src = padded + oy * g.Wp;
            // y leaves in R plane streams at once, which the hardware
            // prefetchers follow late: claim the next channel group's row
            // (past the image's last group, the next image's) ~25% faster.
            for (int64_t r = 0; r < R; ++r) {
              const int64_t plane = n * M + oc0 + R + r;
              if (plane < s.batch * M)
                for (int64_t c = 0; c < outW; c += 16) __builtin_prefetch(out + plane * P + oy * outW + c, 1);
            }
            // Two vectors of the row per pass share each weight broadcast; a
            // second vector past the row reads padding slack and is dropped.
            for (int64_t x = 0; x < outW; x += 2 * L) {
              Reg acc[R][2];
#pragma GCC unroll 8
              for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = b[r];
              for (int64_t k = 0; k < K; ++k) {
                const Reg v0 = V::load(src + tapOffsets[k] + x), v1 = V::load(src + tapOffsets[k] + x + L);
#pragma GCC unroll 8
                for (int r = 0; r < R; ++r) {
                  const Reg wk = V::set1(w[r][k]);
                  acc[r][0] = V::fma(wk, v0, acc[r][0]);
                  acc[r][1] = V::fma(wk, v1, acc[r][1]);
                }
              }
              float* dst = y + oc0 * P + oy * outW + x;
              const int64_t valid = outW - x;
#pragma GCC unroll 8
              for (int r = 0; r < R; ++r) {
                if (r >= rows) break;
                if (valid >= 2 * L) {
                  V::store(dst + r * P, acc[r][0]);
                  V::store(dst + r * P + L, acc[r][1]);
                } else if (valid > L) {
                  V::store(dst + r * P, acc[r][0]);
                  V::storePartial(dst + r * P + L, acc[r][1], valid - L);
                } else {
                  V::storePartial(dst + r * P, acc[r][0], valid);
                }
              }
            }
          }
        }
      }
    }
  });
}

// The padded path addresses an image with int32 row offsets.
template <class V>
bool paddedFits(const ConvShape& s) {
  return s.inC * paddedGeometry<V>(s).pitch < (int64_t(1) << 31);
}

template <class V, class PackA>
void gemmConv(const ConvShape& s, const PackA& packA, const float* input, const float* bias, float* out) {
  if (s.strideH == 1 && s.strideW == 1 && paddedFits<V>(s)) {
    paddedGemmConv<V>(s, packA, input, bias, out);
  } else {
    implicitGemmConv<V>(s, packA, input, bias, out);
  }
}

template <class V>
void convForward(const ConvForwardArgs& a) {
  if (directFits(a.s) && paddedFits<V>(a.s)) {
    directConv<V>(a.s, a.weight, a.x, a.bias, a.y);
    return;
  }
  if (winogradFits(a.s)) {
    // F(2x2) even where F(4x4) would do less work: a 2x2 tile is a 2x2
    // pooling window, and equal inputs over a window's receptive field (the
    // blank areas of MNIST: 28% of conv2's windows) then give bit-equal
    // outputs, so max pooling picks the first maximum as a direct
    // convolution (and PyTorch) does. F(4x4) rounds each of a tile's 16
    // positions differently and broke 18% of those ties, which sent their
    // gradients elsewhere (measured against PyTorch: conv2's weight gradient
    // off by 1.7e-2 instead of 3e-5).
    winogradConv<V>(a.s, WinogradWeights{a.weight, false}, a.x, a.bias, a.y, 2);
    return;
  }
  gemmConv<V>(a.s, StridedA<V>{a.weight, a.s.patch(), a.s.outC, false}, a.x, a.bias, a.y);
}

// Adds the column matrix of one image back onto its pixels (the adjoint of im2col).
inline void col2imAdd(const float* col, const ConvShape& s, int64_t outH, int64_t outW, float* image) {
  const int64_t H = s.H, W = s.W, P = outH * outW;
  for (int64_t i = 0; i < s.inC * H * W; ++i) image[i] = 0.0f;
  for (int64_t ic = 0; ic < s.inC; ++ic) {
    float* plane = image + ic * H * W;
    for (int64_t ky = 0; ky < s.kh; ++ky)
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const float* row = col + ((ic * s.kh + ky) * s.kw + kx) * P;
        for (int64_t oy = 0; oy < outH; ++oy) {
          const int64_t iy = oy * s.strideH - s.padH + ky;
          if (iy < 0 || iy >= H) continue;
          for (int64_t ox = 0; ox < outW; ++ox) {
            const int64_t ix = ox * s.strideW - s.padW + kx;
            if (ix >= 0 && ix < W) plane[iy * W + ix] += row[oy * outW + ox];
          }
        }
      }
  }
}

template <class V>
void convBackwardDataGeneral(const ConvBackwardArgs& a) {
  constexpr int NR = GemmTile<V>::kNR, MR = GemmTile<V>::kMR;
  const ConvShape& s = a.s;
  const int64_t M = s.patch(), K = s.outC, outH = s.outH(), outW = s.outW(), P = outH * outW;
  const int64_t imageSize = s.inC * s.H * s.W;
  const int64_t threads = minI(numThreads(), s.batch), perThread = kcBlock<V>(K) * NR + M * P;
  float* packedA = static_cast<float*>(scratchBytes(sizeof(float) * (packedASize<V>(M, K) + threads * perThread)));
  float* work = packedA + packedASize<V>(M, K);
  // op(A) = W^T: W is stored [outC, patch], i.e. [K, M].
  packAPanels<V>(StridedA<V>{a.weight, M, M, true}, M, K, 0, ceilDiv(M, MR), packedA);
  const GemmEpilogue e;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* sliver = work + t * perThread;
      float* col = sliver + kcBlock<V>(K) * NR;
      for (int64_t n = s.batch * t / threads; n < s.batch * (t + 1) / threads; ++n) {
        const StridedB<V> packB{a.dy + n * K * P, P, P, false};
        gemmTiles<V>(M, P, K, packedA, packB, 0, ceilDiv(M, MR), 0, ceilDiv(P, NR), col, P, e, sliver);
        col2imAdd(col, s, outH, outW, a.dx + n * imageSize);
      }
    }
  });
}

// dw += partials[0] + partials[1] + ... in chunk order, split by element.
inline void addPartials(const float* partials, int64_t chunks, int64_t size, float* dw) {
  parallelForEach(0, size, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float sum = partials[i];
      for (int64_t c = 1; c < chunks; ++c) sum += partials[c * size + i];
      dw[i] += sum;
    }
  });
}

template <class V>
void convBackwardWeightGemm(const ConvBackwardArgs& a) {
  constexpr int NR = GemmTile<V>::kNR, MR = GemmTile<V>::kMR;
  const ConvShape& s = a.s;
  const int64_t M = s.outC, N = s.patch(), outW = s.outW(), P = s.outH() * outW;
  const int64_t imageSize = s.inC * s.H * s.W;
  const int64_t chunkImages = weightChunkImages(s), chunks = ceilDiv(s.batch, chunkImages);
  const int64_t maxK = chunkImages * P;
  const int64_t threads = minI(numThreads(), chunks);
  const int64_t perThread = packedASize<V>(M, maxK) + kcBlock<V>(maxK) * NR;
  float* partials = static_cast<float*>(scratchBytes(sizeof(float) * (chunks * M * N + threads * perThread)));
  float* work = partials + chunks * M * N;
  const GemmEpilogue e;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* packedA = work + t * perThread;
      for (int64_t c = chunks * t / threads; c < chunks * (t + 1) / threads; ++c) {
        const int64_t n0 = c * chunkImages, K = minI(chunkImages, s.batch - n0) * P;
        float* sliver = packedA + packedASize<V>(M, K);
        packAPanels<V>(ChunkDyA<V>{a.dy + n0 * M * P, M, P}, M, K, 0, ceilDiv(M, MR), packedA);
        const ImplicitColTB<V> packB{a.x + n0 * imageSize, &s, outW, P};
        gemmTiles<V>(M, N, K, packedA, packB, 0, ceilDiv(M, MR), 0, ceilDiv(N, NR), partials + c * M * N, N, e,
                     sliver);
      }
    }
  });
  addPartials(partials, chunks, M * N, a.dweight);
}

template <class V>
void convBackwardBias(const ConvBackwardArgs& a) {
  using Reg = typename V::Reg;
  const ConvShape& s = a.s;
  const int64_t M = s.outC, P = s.outH() * s.outW();
  parallelForEach(0, M, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t oc = lo; oc < hi; ++oc) {
      Reg acc[4];
      simd::zero4<V>(acc);
      for (int64_t n = 0; n < s.batch; ++n) {
        const float* plane = a.dy + (n * M + oc) * P;
        simd::vectorLoop<V>(P, [&](auto full, int slot, int64_t i, int64_t valid) {
          acc[slot] = V::add(acc[slot], simd::loadN<V>(full, plane + i, valid, 0.0f));
        });
      }
      a.dbias[oc] += simd::reduceAdd4<V>(acc);
    }
  });
}

template <class V>
void convBackwardData(const ConvBackwardArgs& a) {
  const ConvShape& s = a.s;
  if (s.strideH != 1 || s.strideW != 1 || s.padH > s.kh - 1 || s.padW > s.kw - 1) {
    convBackwardDataGeneral<V>(a);
    return;
  }
  // dx = conv(dy, flipped W) with padding k-1-p: output size H x W again.
  ConvShape t = s;
  t.inC = s.outC;
  t.outC = s.inC;
  t.H = s.outH();
  t.W = s.outW();
  t.padH = s.kh - 1 - s.padH;
  t.padW = s.kw - 1 - s.padW;
  if (winogradFits(t)) {
    winogradConv<V>(t, WinogradWeights{a.weight, true}, a.dy, nullptr, a.dx, winogradOutputTile(t));
    return;
  }
  gemmConv<V>(t, FlippedWeightA<V>{a.weight, &s}, a.dy, nullptr, a.dx);
}

// Also the bias gradient (when dbias is set), from the padded dy copies.
template <class V>
void convBackwardWeightDot(const ConvBackwardArgs& a) {
  const ConvShape& s = a.s;
  const int64_t M = s.outC, N = s.patch(), outH = s.outH(), outW = s.outW(), P = outH * outW;
  const int64_t imageSize = s.inC * s.H * s.W;
  const PaddedGeometry g = paddedGeometry<V>(s);
  const int64_t dyPitch = paddedDyPitch<V>(g);
  const int64_t chunkImages = wgradChunkImages<V>(s), chunks = ceilDiv(s.batch, chunkImages);
  const int64_t threads = minI(numThreads(), chunks);
  const int64_t perThread = chunkImages * (M * dyPitch + s.inC * g.pitch);
  const int64_t sumFloats = roundUp(s.batch * M, 16);
  float* partials = static_cast<float*>(scratchBytes(sizeof(float) * (chunks * M * N + sumFloats + threads * perThread)));
  float* planeSums = partials + chunks * M * N;  // [batch][outC]
  float* work = planeSums + sumFloats;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* dyPad = work + t * perThread;
      float* xPad = dyPad + chunkImages * M * dyPitch;
      for (int64_t c = chunks * t / threads; c < chunks * (t + 1) / threads; ++c) {
        const int64_t n0 = c * chunkImages, images = minI(chunkImages, s.batch - n0);
        padDy<V>(a.dy + n0 * M * P, images * M, outH, outW, g, dyPitch, dyPad, planeSums + n0 * M);
        padPlanes<V>(a.x + n0 * imageSize, images * s.inC, s.H, s.W, s.padH, s.padW, g, xPad);
        wgradChunk<V>(s, g, dyPad, xPad, images, partials + c * M * N);
      }
    }
  });
  addPartials(partials, chunks, M * N, a.dweight);
  if (a.dbias != nullptr) {
    // Image order, whatever the thread count.
    for (int64_t oc = 0; oc < M; ++oc) {
      float sum = 0.0f;
      for (int64_t n = 0; n < s.batch; ++n) sum += planeSums[n * M + oc];
      a.dbias[oc] += sum;
    }
  }
}

// Shallow stride-1 patches (conv1), dbias too: see conv_wgrad_shifted.h.
template <class V>
void convBackwardWeightShifted(const ConvBackwardArgs& a) {
  const ConvShape& s = a.s;
  const int64_t M = s.outC, N = s.patch(), P = s.outH() * s.outW(), imageSize = s.inC * s.H * s.W;
  const int64_t chunkImages = shiftedChunkImages(s), chunks = ceilDiv(s.batch, chunkImages);
  const int64_t threads = minI(numThreads(), chunks), shiftedFloats = roundUp(shiftedImageFloats(s), 16);
  const int64_t perThread = shiftedFloats + roundUp(shiftedAccFloats<V>(s), 16);
  const int64_t partialFloats = roundUp(chunks * M * N, 16), biasFloats = roundUp(chunks * M, 16);
  float* partials = static_cast<float*>(
      scratchBytes(sizeof(float) * (partialFloats + biasFloats + roundUp(P, 16) + threads * perThread)));
  float* biasPartials = partials + partialFloats;
  float* ones = biasPartials + biasFloats;
  float* work = ones + roundUp(P, 16);
  for (int64_t i = 0; i < P; ++i) ones[i] = 1.0f;
  parallelForEach(0, threads, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      float* shifted = work + t * perThread;
      for (int64_t c = chunks * t / threads; c < chunks * (t + 1) / threads; ++c) {
        const int64_t n0 = c * chunkImages, images = minI(chunkImages, s.batch - n0);
        shiftedChunk<V>(s, a.x + n0 * imageSize, a.dy + n0 * M * P, ones, images, shifted, shifted + shiftedFloats,
                        partials + c * M * N, a.dbias != nullptr ? biasPartials + c * M : nullptr);
      }
    }
  });
  addPartials(partials, chunks, M * N, a.dweight);
  if (a.dbias != nullptr) addPartials(biasPartials, chunks, M, a.dbias);
}

template <class V>
void convBackward(const ConvBackwardArgs& a) {
  if (a.dx != nullptr) convBackwardData<V>(a);
  if (a.dweight != nullptr && winogradFits(a.s)) {
    winogradWeightGrad<V>(a);  // dbias too
    return;
  }
  if (a.dweight != nullptr && shiftedWgradFits(a.s)) {
    convBackwardWeightShifted<V>(a);  // dbias too
    return;
  }
  if (a.dweight != nullptr && a.s.strideH == 1 && a.s.strideW == 1 && paddedFits<V>(a.s)) {
    convBackwardWeightDot<V>(a);  // dbias too
    return;
  }
  if (a.dweight != nullptr) convBackwardWeightGemm<V>(a);
  if (a.dbias != nullptr) convBackwardBias<V>(a);
}

template <class V>
constexpr ConvKernels convKernels() {
  return ConvKernels{&convForward<V>, &convBackward<V>};
}

}  // namespace
}  // namespace bnkit
