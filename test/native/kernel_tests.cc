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

// Forward training on planar channels large enough for the overlapped
// (software-pipelined) path: several channels per thread and a ragged last
// piece per plane. Its statistics and output must not depend on the thread
// count, bit for bit.
void testPlanarThreadInvariance(const KernelTable& k, std::mt19937& rng) {
  const BnLayout l{5, 7, 52429, false};
  std::normal_distribution<float> normal(3.0f, 2.0f);
  std::vector<float> x(l.elements()), gamma(l.channels, 1.5f), beta(l.channels, -0.25f);
  for (auto& v : x) v = normal(rng);
  std::vector<float> y[3], mean[3], invstd[3];
  for (int t = 0; t < 3; ++t) {
    y[t].assign(x.size(), 0.0f);
    mean[t].assign(l.channels, 0.0f);
    invstd[t].assign(l.channels, 0.0f);
    setNumThreads(t + 1);
    BnForwardTrainArgs f;
    f.layout = l; f.x = x.data(); f.y = y[t].data(); f.gamma = gamma.data(); f.beta = beta.data();
    f.relu = true; f.saveMean = mean[t].data(); f.saveInvstd = invstd[t].data();
    k.batchNorm.forwardTrain(f);
  }
  for (int t = 1; t < 3; ++t) {
    const std::string name = std::string(isaName(k.isa)) + " planar forward, threads=" + std::to_string(t + 1);
    check(mean[t] == mean[0] && invstd[t] == invstd[0], name + ": statistics equal 1 thread's");
    check(y[t] == y[0], name + ": output equals 1 thread's");
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
