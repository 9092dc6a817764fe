// Kernel tests without Node: every runnable ISA against a float64 reference.
// This is what runs under qemu-aarch64 for NEON (no arm64 Node needed), and
// on x86-64 it doubles as a sanitizer-friendly harness.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "check.h"
#include "threadpool.h"

using namespace bnkit;
using testing::check;

namespace {


size_t indexOf(const BnLayout& l, int64_t n, int64_t c, int64_t s) {
  return l.channelsLast ? static_cast<size_t>((n * l.spatial + s) * l.channels + c)
                        : static_cast<size_t>((n * l.channels + c) * l.spatial + s);
}

struct FloatView {
  float* ptr;
  size_t n;
  float* data() const { return ptr; }
  size_t size() const { return n; }
  float& operator[](size_t i) const { return ptr[i]; }
};

template <class Floats>
double maxRelError(const Floats& got, const std::vector<double>& want) {
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(err <= worst)) worst = err;  // NaN-propagating max
  }
  return worst;
}

// misalign shifts the outputs off 64-byte alignment by that many floats, as
// V8's 16-byte-aligned typed arrays may be: the streaming-store paths must
// handle a masked head and tail.
void testShape(const KernelTable& k, BnLayout l, bool relu, float offset, std::mt19937& rng, int misalign = 0) {
  const int64_t C = l.channels, M = l.perChannel();
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(l.elements()), dy(l.elements()), gamma(C), beta(C);
  for (auto& v : x) v = offset + normal(rng);
  for (auto& v : dy) v = normal(rng);
  for (int64_t c = 0; c < C; ++c) {
    gamma[c] = 0.5f + 0.1f * c;
    beta[c] = 0.1f * c - 0.3f;
  }
  // Outputs 64-byte aligned, as large typed arrays usually are, so the
  // non-temporal store paths for big tensors run too.
  std::vector<float> yBuffer(x.size() + 32), dxBuffer(x.size() + 32);
  auto aligned = [misalign](std::vector<float>& v) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
    return reinterpret_cast<float*>((p + 63) / 64 * 64) + misalign;
  };
  FloatView y{aligned(yBuffer), x.size()}, dx{aligned(dxBuffer), x.size()};
  std::vector<float> mean(C), invstd(C), dgamma(C), dbeta(C);
  std::vector<double> var(C);
  BnForwardTrainArgs f;
  f.layout = l; f.x = x.data(); f.y = y.data(); f.gamma = gamma.data(); f.beta = beta.data();
  f.relu = relu; f.saveMean = mean.data(); f.saveInvstd = invstd.data(); f.batchVariance = var.data();
  k.batchNorm.forwardTrain(f);
  BnBackwardArgs b;
  b.layout = l; b.x = x.data(); b.dy = dy.data(); b.dx = dx.data(); b.mean = mean.data();
  b.invstd = invstd.data(); b.gamma = gamma.data(); b.beta = beta.data(); b.relu = relu;
  b.dgamma = dgamma.data(); b.dbeta = dbeta.data();
  k.batchNorm.backward(b);

  std::vector<double> yRef(x.size()), dxRef(x.size()), varRef(C), meanRef(C), dgRef(C), dbRef(C);
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t n = 0; n < l.batch; ++n)
      for (int64_t i = 0; i < l.spatial; ++i) s += x[indexOf(l, n, c, i)];
    const double mu = s / M;
    double q = 0;
    for (int64_t n = 0; n < l.batch; ++n)
      for (int64_t i = 0; i < l.spatial; ++i) q += (x[indexOf(l, n, c, i)] - mu) * (x[indexOf(l, n, c, i)] - mu);
    const double v = q / M, is = 1.0 / std::sqrt(v + 1e-5);
    meanRef[c] = mu;
    varRef[c] = v;
    double sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < l.batch; ++n)
      for (int64_t i = 0; i < l.spatial; ++i) {
        const size_t j = indexOf(l, n, c, i);
        const double xh = (x[j] - mu) * is, pre = gamma[c] * xh + beta[c];
        yRef[j] = relu && pre <= 0 ? 0 : pre;
        // The mask follows the kernel's own output, as autograd would: a value
        // within rounding of zero may fall on either side.
        const double g = relu && y[j] <= 0 ? 0 : dy[j];
        sdy += g;
        sdyx += g * xh;
      }
    dbRef[c] = sdy;
    dgRef[c] = sdyx;
    for (int64_t n = 0; n < l.batch; ++n)
      for (int64_t i = 0; i < l.spatial; ++i) {
        const size_t j = indexOf(l, n, c, i);
        const double xh = (x[j] - mu) * is;
        const double g = relu && y[j] <= 0 ? 0 : dy[j];
        dxRef[j] = gamma[c] * is * (g - sdy / M - xh * sdyx / M);
      }
  }
  char name[200];
  std::snprintf(name, sizeof name, "%s N=%lld C=%lld S=%lld %s relu=%d offset=%g misalign=%d", isaName(k.isa),
                (long long)l.batch, (long long)C, (long long)l.spatial, l.channelsLast ? "NHWC" : "NCHW", relu,
                offset, misalign);
  double varErr = 0;
  for (int64_t c = 0; c < C; ++c) varErr = std::fmax(varErr, std::fabs(var[c] - varRef[c]) / varRef[c]);
  check(varErr < 1e-3, std::string(name) + " variance");
  if (offset == 0.0f) {
    check(maxRelError(y, yRef) < 1e-4, std::string(name) + " y");
    check(maxRelError(dx, dxRef) < 1e-3, std::string(name) + " dx");
    std::vector<double> dgamma64(dgamma.begin(), dgamma.end()), dbeta64(dbeta.begin(), dbeta.end());
    check(maxRelError(dgamma, dgRef) < 1e-3 * std::sqrt((double)M), std::string(name) + " dgamma");
    check(maxRelError(dbeta, dbRef) < 1e-3 * std::sqrt((double)M), std::string(name) + " dbeta");
  }
}

// Forward training and backward on planar channels large enough for the
// overlapped (software-pipelined) paths: several channels per thread and a
// ragged last piece per plane. Results must not depend on the thread count,
// bit for bit, and backward's parameter gradients must equal those of the
// plain channel-by-channel pass (taken when dx is not asked for).
void testPlanarThreadInvariance(const KernelTable& k, std::mt19937& rng) {
  const BnLayout l{5, 7, 52429, false};
  std::normal_distribution<float> normal(3.0f, 2.0f);
  std::vector<float> x(l.elements()), dy(l.elements()), gamma(l.channels, 1.5f), beta(l.channels, -0.25f);
  for (auto& v : x) v = normal(rng);
  for (auto& v : dy) v = normal(rng) - 3.0f;
  std::vector<float> y[3], mean[3], invstd[3], dx[3], dgamma[4], dbeta[4];
  for (int t = 0; t < 4; ++t) {
    dgamma[t].assign(l.channels, 0.0f);
    dbeta[t].assign(l.channels, 0.0f);
    if (t == 3) {  // parameter gradients only, on the plain path
      BnBackwardArgs b;
      b.layout = l; b.x = x.data(); b.dy = dy.data(); b.dx = nullptr; b.mean = mean[0].data();
      b.invstd = invstd[0].data(); b.gamma = gamma.data(); b.beta = beta.data(); b.relu = true;
      b.dgamma = dgamma[t].data(); b.dbeta = dbeta[t].data();
      k.batchNorm.backward(b);
      continue;
    }
    y[t].assign(x.size(), 0.0f);
    dx[t].assign(x.size(), 0.0f);
    mean[t].assign(l.channels, 0.0f);
    invstd[t].assign(l.channels, 0.0f);
    setNumThreads(t + 1);
    BnForwardTrainArgs f;
    f.layout = l; f.x = x.data(); f.y = y[t].data(); f.gamma = gamma.data(); f.beta = beta.data();
    f.relu = true; f.saveMean = mean[t].data(); f.saveInvstd = invstd[t].data();
    k.batchNorm.forwardTrain(f);
    BnBackwardArgs b;
    b.layout = l; b.x = x.data(); b.dy = dy.data(); b.dx = dx[t].data(); b.mean = mean[t].data();
    b.invstd = invstd[t].data(); b.gamma = gamma.data(); b.beta = beta.data(); b.relu = true;
    b.dgamma = dgamma[t].data(); b.dbeta = dbeta[t].data();
    k.batchNorm.backward(b);
  }
  for (int t = 1; t < 3; ++t) {
    const std::string name = std::string(isaName(k.isa)) + " planar, threads=" + std::to_string(t + 1);
    check(mean[t] == mean[0] && invstd[t] == invstd[0], name + ": statistics equal 1 thread's");
    check(y[t] == y[0], name + ": output equals 1 thread's");
    check(dx[t] == dx[0] && dgamma[t] == dgamma[0] && dbeta[t] == dbeta[0], name + ": gradients equal 1 thread's");
  }
  check(dgamma[3] == dgamma[0] && dbeta[3] == dbeta[0],
        std::string(isaName(k.isa)) + " planar backward: parameter gradients without dx equal those with it");
}


// The fused stem (conv 3x3 of one channel + batch norm + ReLU + 2x2 pooling)
// against the same computation by the unfused kernels: conv forward, batch
// norm, int32 pooling, and back through them. The conv output differs from
// the fused recomputation only by rounding, hence tolerances.
void testStem(const KernelTable& k, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto randomVector = [&](size_t n, float scale, float offset) {
    std::vector<float> v(n);
    for (auto& x : v) x = offset + scale * normal(rng);
    return v;
  };
  // {N, C, H, W, padH, padW, smooth}: MNIST's stem, odd sizes, asymmetric padding, the smallest
  // output; smooth images under differencing filters (outputs varying ~1e-3 as much as pixels).
  for (const auto& g : std::vector<std::vector<int64_t>>{{2, 32, 28, 28, 1, 1, 0},
                                                         {3, 3, 5, 7, 0, 2, 0},
                                                         {1, 16, 13, 11, 2, 1, 0},
                                                         {2, 1, 4, 4, 0, 0, 0},
                                                         {4, 5, 9, 6, 2, 2, 0},
                                                         {2, 3, 28, 28, 0, 0, 1}}) {
    const int64_t N = g[0], C = g[1];
    const bool smooth = g[6] != 0;
    ConvShape cs;
    cs.batch = N; cs.inC = 1; cs.H = g[2]; cs.W = g[3]; cs.outC = C; cs.kh = 3; cs.kw = 3; cs.padH = g[4]; cs.padW = g[5];
    const int64_t oH = cs.outH(), oW = cs.outW(), convN = N * C * oH * oW;
    MaxPoolShape ps;
    ps.planes = N * C; ps.H = oH; ps.W = oW; ps.kernel = 2; ps.stride = 2;
    const int64_t outN = ps.planes * ps.outH() * ps.outW(), inN = N * cs.H * cs.W;
    auto x = randomVector(inN, 1.0f, 0.0f), weight = randomVector(9 * C, 0.5f, 0.0f);
    if (smooth) {
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < cs.H; ++i)
          for (int64_t j = 0; j < cs.W; ++j) {
            float& v = x[(n * cs.H + i) * cs.W + j];
            v = static_cast<float>(std::sin(0.05 * i + n) + std::cos(0.07 * j) + 0.01 * v);
          }
      const float filters[3][9] = {{0, 0, 0, 0, 1, -1, 0, 0, 0}, {0, 0, 0, 0, 1, 0, 0, -1, 0}, {0, 0, 0, 1, -2, 1, 0, 0, 0}};
      for (int64_t c = 0; c < C; ++c)
        for (int t = 0; t < 9; ++t) weight[c * 9 + t] = filters[c % 3][t];
    }
    const auto bias = randomVector(C, 0.5f, 0.0f), gamma = randomVector(C, 0.3f, 1.0f), beta = randomVector(C, 0.5f, 0.0f);
    const auto dp = randomVector(outN, 1.0f, 0.0f), runMean = randomVector(C, 0.3f, 0.0f);
    std::vector<float> runVar = randomVector(C, 0.2f, 1.0f);
    for (auto& v : runVar) v = std::fabs(v);
    StemConv conv;
    conv.input = x.data(); conv.weight = weight.data(); conv.bias = bias.data();
    conv.inH = cs.H; conv.inW = cs.W; conv.padH = cs.padH; conv.padW = cs.padW;
    const BnLayout l{N, C, oH * oW, false};
    for (bool train : {true, false}) {
      for (bool relu : {true, false}) {
        const std::string name = std::string(isaName(k.isa)) + " stem " + std::to_string(N) + "x" + std::to_string(C) +
                                 "x" + std::to_string(cs.H) + "x" + std::to_string(cs.W) + " pad " +
                                 std::to_string(cs.padH) + "x" + std::to_string(cs.padW) + (train ? " train" : " eval") +
                                 (relu ? " relu" : "") + (smooth ? " smooth" : "") +
                                 " threads=" + std::to_string(numThreads());
        // Fused.
        std::vector<float> pooled(outN, NAN), picked(outN, NAN), mean(C), invstd(C);
        std::vector<double> moments(kStemMomentsLength, NAN);
        std::vector<double> variance(C);
        std::vector<uint8_t> window(outN);
        if (train) {
          StemForwardTrainArgs f;
          f.conv = conv;
          f.pool.bn.layout = l; f.pool.bn.gamma = gamma.data(); f.pool.bn.beta = beta.data(); f.pool.bn.relu = relu;
          f.pool.bn.saveMean = mean.data(); f.pool.bn.saveInvstd = invstd.data(); f.pool.bn.batchVariance = variance.data();
          f.pool.shape.H = oH; f.pool.shape.W = oW;
          f.pool.pooled = pooled.data(); f.pool.window = window.data(); f.pool.picked = picked.data();
          f.patchMoments = moments.data();
          k.batchNorm.stemForwardTrain(f);
        } else {
          StemForwardEvalArgs f;
          f.conv = conv;
          f.pool.bn.layout = l; f.pool.bn.mean = runMean.data(); f.pool.bn.variance = runVar.data();
          f.pool.bn.gamma = gamma.data(); f.pool.bn.beta = beta.data(); f.pool.bn.relu = relu;
          f.pool.shape.H = oH; f.pool.shape.W = oW;
          f.pool.pooled = pooled.data(); f.pool.window = window.data(); f.pool.picked = picked.data();
          k.batchNorm.stemForwardEval(f);
          for (int64_t c = 0; c < C; ++c) {
            mean[c] = runMean[c];
            invstd[c] = static_cast<float>(1.0 / std::sqrt(double(runVar[c]) + double(1e-5f)));
          }
        }
        std::vector<float> dWeight(9 * C, 0.0f), dBias(C, 0.0f), dInput(inN, NAN), dgamma(C, NAN), dbeta(C, NAN);
        StemBackwardArgs b;
        b.conv = conv;
        b.pool.bn.layout = l; b.pool.bn.dy = dp.data(); b.pool.bn.mean = mean.data(); b.pool.bn.invstd = invstd.data();
        b.pool.bn.gamma = gamma.data(); b.pool.bn.beta = beta.data(); b.pool.bn.relu = relu;
        b.pool.bn.batchStatistics = train; b.pool.bn.dgamma = dgamma.data(); b.pool.bn.dbeta = dbeta.data();
        b.pool.shape.H = oH; b.pool.shape.W = oW; b.pool.window = window.data(); b.pool.picked = picked.data();
        b.dWeight = dWeight.data(); b.dBias = dBias.data(); b.dInput = dInput.data();
        k.batchNorm.stemBackward(b);
        if (train) {
          // Backward reusing the forward's patch moments: the same bits as recomputing them.
          std::vector<float> dWeightKept(9 * C, 0.0f), dBiasKept(C, 0.0f);
          StemBackwardArgs kept = b;
          kept.patchMoments = moments.data();
          kept.dWeight = dWeightKept.data();
          kept.dBias = dBiasKept.data();
          kept.dInput = nullptr;
          k.batchNorm.stemBackward(kept);
          check(dWeightKept == dWeight && dBiasKept == dBias, name + " patch moments reused");
        }

        // Unfused.
        std::vector<float> y(convN), z(convN), pooledU(outN), meanU(C), invstdU(C);
        std::vector<double> varianceU(C);
        std::vector<int32_t> arg(outN);
        ConvForwardArgs cf;
        cf.s = cs; cf.x = x.data(); cf.weight = weight.data(); cf.bias = bias.data(); cf.y = y.data();
        k.conv.forward(cf);
        if (train) {
          BnForwardTrainArgs f;
          f.layout = l; f.x = y.data(); f.y = z.data(); f.gamma = gamma.data(); f.beta = beta.data(); f.relu = relu;
          f.saveMean = meanU.data(); f.saveInvstd = invstdU.data(); f.batchVariance = varianceU.data();
          k.batchNorm.forwardTrain(f);
        } else {
          BnForwardEvalArgs f;
          f.layout = l; f.x = y.data(); f.y = z.data(); f.mean = runMean.data(); f.variance = runVar.data();
          f.gamma = gamma.data(); f.beta = beta.data(); f.relu = relu;
          k.batchNorm.forwardEval(f);
          meanU = mean;
          invstdU = invstd;
        }
        k.elementwise.maxPool2dForward(ps, z.data(), pooledU.data(), arg.data());
        std::vector<float> dz(convN, 0.0f), dy(convN), dWeightU(9 * C, 0.0f), dBiasU(C, 0.0f), dInputU(inN);
        std::vector<float> dgammaU(C), dbetaU(C);
        k.elementwise.maxPool2dBackward(dp.data(), arg.data(), outN, dz.data(), convN);
        BnBackwardArgs bb;
        bb.layout = l; bb.x = y.data(); bb.dy = dz.data(); bb.dx = dy.data(); bb.mean = meanU.data();
        bb.invstd = invstdU.data(); bb.gamma = gamma.data(); bb.beta = beta.data(); bb.relu = relu;
        bb.batchStatistics = train; bb.dgamma = dgammaU.data(); bb.dbeta = dbetaU.data();
        k.batchNorm.backward(bb);
        ConvBackwardArgs cb;
        cb.s = cs; cb.x = x.data(); cb.weight = weight.data(); cb.dy = dy.data(); cb.dx = dInputU.data();
        cb.dweight = dWeightU.data(); cb.dbias = dBiasU.data();
        k.conv.backward(cb);
        // In training the bias gradient is a sum cancelling to ~0: its rounding scales with sum |dy|.
        bool biasOk = true;
        for (int64_t c = 0; c < C; ++c) {
          double terms = 0;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t i = 0; i < oH * oW; ++i) terms += std::fabs(dy[(n * C + c) * oH * oW + i]);
          biasOk &= std::fabs(dBias[c] - dBiasU[c]) <= 2e-5 * (1 + terms);
        }
        const auto doubles = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
        check(maxRelError(pooled, doubles(pooledU)) < 1e-5, name + " pooled");
        if (train) check(maxRelError(mean, doubles(meanU)) < 1e-6 && maxRelError(invstd, doubles(invstdU)) < 2e-6, name + " stats");
        // Under differencing filters on smooth images the weight-gradient sums
        // cancel, and the unfused float kernels round at ~1e-4 there (the fused
        // result is checked against float64 in test/fused-stem.test.ts).
        check(maxRelError(dWeight, doubles(dWeightU)) < (smooth ? 5e-4 : 1e-4), name + " dWeight");
        check(biasOk, name + " dBias");
        check(maxRelError(dgamma, doubles(dgammaU)) < 1e-4 && maxRelError(dbeta, doubles(dbetaU)) < 1e-4, name + " dgamma, dbeta");
        check(maxRelError(dInput, doubles(dInputU)) < 1e-4, name + " dInput");
      }
    }
  }
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  int tables = 0;
  for (int i = 0; i < kIsaCount; ++i) {
    const KernelTable* k = kernelTableFor(static_cast<Isa>(i));
    if (!k) continue;
    ++tables;
    std::printf("testing %s\n", isaName(k->isa));
    testPlanarThreadInvariance(*k, rng);
    for (int threads : {1, 2}) {
      setNumThreads(threads);
      testStem(*k, rng);
      for (bool cl : {false, true})
        for (int64_t C : {1, 3, 16, 17, 64})
          for (int64_t S : {1, 7, 15, 16, 17, 784})
            for (int64_t N : {2, 3, 64}) {
              if (N * C * S > 2000000) continue;
              for (bool relu : {false, true}) testShape(*k, BnLayout{N, C, S, cl}, relu, 0.0f, rng);
            }
      // Larger than the streaming-store threshold (48 MiB), both layouts; only
      // the x86 SIMD paths have non-temporal stores.
      if (threads == 2 && (k->isa == Isa::Avx2 || k->isa == Isa::Avx512)) {
        testShape(*k, BnLayout{4, 3, 1100000, false}, true, 0.0f, rng);
        testShape(*k, BnLayout{8192, 64, 25, true}, false, 0.0f, rng);
        // Channels-last streams whatever the alignment: a masked head and tail.
        testShape(*k, BnLayout{8192, 64, 25, true}, true, 0.0f, rng, 1);
        testShape(*k, BnLayout{25000, 17, 31, true}, false, 0.0f, rng, 3);
        testShape(*k, BnLayout{4, 3, 1100000, false}, false, 0.0f, rng, 4);
      }
      for (float offset : {1e4f, 1e6f}) {
        testShape(*k, BnLayout{32, 4, 4096 + 17, false}, false, offset, rng);
        testShape(*k, BnLayout{5, 3, 65536 + 17, false}, true, offset, rng);
        testShape(*k, BnLayout{4096 + 17, 19, 1, true}, false, offset, rng);
      }
    }
  }
  check(tables >= 2, "at least a scalar and one SIMD table are runnable");
  return testing::finish();
}
