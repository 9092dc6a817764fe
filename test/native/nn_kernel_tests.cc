// Training-kernel tests without Node: GEMM, conv2d, pooling, activations,
// softmax cross-entropy and optimizer steps for every runnable ISA against
// float64 references. Runs natively and, for NEON, under qemu-aarch64.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "check.h"
#include "threadpool.h"

using namespace bnkit;
using testing::check;

namespace {


std::mt19937 rng(4321);

std::vector<float> random(size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

template <class A, class B>
double maxRelError(const A& got, const B& want) {
  if (got.size() != want.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(err <= worst)) worst = err;
  }
  return worst;
}

template <class... Args>
std::string fmt(const char* f, Args... args) {
  char buf[200];
  std::snprintf(buf, sizeof buf, f, static_cast<long long>(args)...);
  return buf;
}

void testGemm(const KernelTable& k) {
  const int64_t mr = k.gemm.mr, nr = k.gemm.nr;
  const std::vector<int64_t> ms = {1, mr - 1, mr, mr + 1, 2 * mr + 1, 64};
  const std::vector<int64_t> ns = {1, nr - 1, nr, nr + 1, 3 * nr - 1, 196};
  const std::vector<int64_t> ks = {1, 7, 320, 321, 700};
  for (int64_t M : ms)
    for (int64_t N : ns)
      for (int64_t K : ks) {
        if (M < 1 || N < 1 || (M * N * K > 3000000)) continue;
        for (int t = 0; t < 4; ++t) {
          const bool ta = t & 1, tb = t & 2;
          const float alpha = t == 3 ? -0.5f : 1.0f, beta = t == 0 ? 0.0f : 0.75f;
          const auto A = random(M * K), B = random(K * N), C0 = random(M * N), rb = random(M), cb = random(N);
          std::vector<float> C = C0;
          if (beta == 0.0f) std::fill(C.begin(), C.end(), NAN);
          GemmArgs g;
          g.transA = ta; g.transB = tb; g.M = M; g.N = N; g.K = K; g.alpha = alpha; g.beta = beta;
          g.A = A.data(); g.lda = ta ? M : K; g.B = B.data(); g.ldb = tb ? K : N; g.C = C.data(); g.ldc = N;
          const bool bias = t == 2;
          if (bias) { g.rowBias = rb.data(); g.colBias = cb.data(); }
          k.gemm.sgemm(g);
          std::vector<double> want(M * N);
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              double s = 0;
              for (int64_t kk = 0; kk < K; ++kk)
                s += double(ta ? A[kk * M + i] : A[i * K + kk]) * double(tb ? B[j * K + kk] : B[kk * N + j]);
              want[i * N + j] = alpha * s + (beta == 0 ? 0.0 : beta * double(C0[i * N + j])) +
                                (bias ? double(rb[i]) + cb[j] : 0.0);
            }
          check(maxRelError(C, want) < 2e-6 * std::sqrt(double(K)),
                std::string(isaName(k.isa)) + fmt(" gemm M=%lld N=%lld K=%lld", M, N, K) + " trans=" + std::to_string(t));
        }
      }
}

// sgemmBatch: every product bit-identical to sgemm alone (any thread count)
// and to a float64 reference; padded leading dimensions, partial panels,
// transposed A both read in place and packed (past kInPlaceTransABytes), and
// A B^T products with few rows of A, computed as (B A^T)^T (swapPays).
void testGemmBatch(const KernelTable& k) {
  struct Case {
    bool ta, tb;
    int64_t M, N, K, pad;
    float alpha, beta;
    int bias;  // 1: row bias, 2: column bias, 3: both
  };
  // Pairs: a linear layer's weight and data gradients (odd sizes), then a
  // large transposed A next to a row-major one with padded rows, then linear
  // forwards (A B^T, beta 0) with one bias, none, or both.
  const std::vector<std::array<Case, 2>> pairs = {
      {{{true, false, 37, 100, 19, 0, 1.0f, 1.0f, 0}, {false, false, 19, 100, 37, 0, 1.0f, 0.0f, 0}}},
      {{{true, false, 129, 45, 600, 3, -0.5f, 0.75f, 0}, {false, true, 70, 33, 301, 5, 1.0f, 0.0f, 0}}},
      {{{false, false, 1, 1, 1, 1, 1.0f, 0.0f, 0}, {true, true, 9, 200, 40, 2, 2.0f, 0.5f, 3}}},
      {{{false, true, 7, 100, 301, 2, 1.0f, 0.0f, 2}, {false, true, 37, 150, 70, 1, -0.5f, 0.0f, 1}}},
      {{{false, true, 5, 33, 64, 0, 1.0f, 0.0f, 0}, {false, true, 20, 90, 100, 0, 1.0f, 0.0f, 3}}},
  };
  const int initial = numThreads();
  for (const auto& pair : pairs) {
    std::vector<std::vector<float>> As, Bs, C0s, singles, rowBiases, colBiases;
    std::vector<GemmArgs> gs;
    for (const Case& c : pair) {
      GemmArgs g;
      g.transA = c.ta; g.transB = c.tb; g.M = c.M; g.N = c.N; g.K = c.K; g.alpha = c.alpha; g.beta = c.beta;
      g.lda = (c.ta ? c.M : c.K) + c.pad; g.ldb = (c.tb ? c.K : c.N) + c.pad; g.ldc = c.N + c.pad;
      As.push_back(random((c.ta ? c.K : c.M) * g.lda));
      Bs.push_back(random((c.tb ? c.N : c.K) * g.ldb));
      C0s.push_back(random(c.M * g.ldc));
      rowBiases.push_back(random(c.M));
      colBiases.push_back(random(c.N));
      gs.push_back(g);
    }
    for (size_t i = 0; i < gs.size(); ++i) {
      GemmArgs& g = gs[i];
      g.A = As[i].data(); g.B = Bs[i].data();
      if (pair[i].bias & 1) g.rowBias = rowBiases[i].data();
      if (pair[i].bias & 2) g.colBias = colBiases[i].data();
      singles.push_back(C0s[i]);
      g.C = singles[i].data();
      setNumThreads(1);
      k.gemm.sgemm(g);
      std::vector<double> want(C0s[i].begin(), C0s[i].end());
      std::vector<float> got(singles[i]);
      for (int64_t r = 0; r < g.M; ++r)
        for (int64_t j = 0; j < g.N; ++j) {
          double acc = 0;
          for (int64_t kk = 0; kk < g.K; ++kk)
            acc += double(g.transA ? g.A[kk * g.lda + r] : g.A[r * g.lda + kk]) *
                   double(g.transB ? g.B[j * g.ldb + kk] : g.B[kk * g.ldb + j]);
          want[r * g.ldc + j] = g.alpha * acc + g.beta * double(C0s[i][r * g.ldc + j]) +
                                (g.rowBias ? double(g.rowBias[r]) : 0.0) + (g.colBias ? double(g.colBias[j]) : 0.0);
        }
      check(maxRelError(got, want) < 2e-6 * std::sqrt(double(g.K)),
            std::string(isaName(k.isa)) + fmt(" sgemm M=%lld N=%lld K=%lld", g.M, g.N, g.K) + " vs reference");
    }
    for (int threads : {1, 2, 3}) {
      setNumThreads(threads);
      std::vector<std::vector<float>> Cs = C0s;
      std::vector<GemmArgs> batch = gs;
      for (size_t i = 0; i < batch.size(); ++i) batch[i].C = Cs[i].data();
      k.gemm.sgemmBatch(batch.data(), static_cast<int>(batch.size()));
      for (size_t i = 0; i < batch.size(); ++i)
        check(std::memcmp(Cs[i].data(), singles[i].data(), Cs[i].size() * sizeof(float)) == 0,
              std::string(isaName(k.isa)) + fmt(" sgemmBatch product %lld, %lld threads", int64_t(i), threads) +
                  " = sgemm alone");
    }
  }
  setNumThreads(initial);
}

// Independent restatement of the kernels' choice for the data and weight
// gradients (conv_winograd.h): 3x3 stride 1, padding <= 2, >= 8 channels on
// both sides, outputs >= 2x2, and 4x4 tiles when their 36-point GEMMs are
// smaller than 2x2 tiles' 16-point ones.
bool winogradF4(const ConvShape& s) {
  if (s.kh != 3 || s.kw != 3 || s.strideH != 1 || s.strideW != 1 || s.padH > 2 || s.padW > 2 || s.inC < 8 ||
      s.outC < 8 || s.outH() < 2 || s.outW() < 2)
    return false;
  const auto columns = [&](int64_t m) { return (s.outH() + m - 1) / m * ((s.outW() + m - 1) / m) * (m + 2) * (m + 2); };
  return columns(4) < columns(2);
}

// The convolution the data gradient runs for a stride-1 layer: dy (outC
// channels, outH x outW) with the flipped kernel and padding k - 1 - p.
ConvShape dataGradientShape(const ConvShape& s) {
  ConvShape t = s;
  t.inC = s.outC;
  t.outC = s.inC;
  t.H = s.outH();
  t.W = s.outW();
  t.padH = s.kh - 1 - s.padH;
  t.padW = s.kw - 1 - s.padW;
  return t;
}

void testConv(const KernelTable& k, const ConvShape& s) {
  const int64_t oH = s.outH(), oW = s.outW(), P = oH * oW, K = s.patch();
  const auto x = random(s.batch * s.inC * s.H * s.W), w = random(s.outC * K), b = random(s.outC);
  const auto dy = random(s.batch * s.outC * P);
  std::vector<float> y(dy.size(), NAN), dx(x.size(), NAN), dw = random(w.size()), db = random(b.size());
  const std::vector<float> dw0 = dw, db0 = db;
  ConvForwardArgs f;
  f.s = s; f.x = x.data(); f.weight = w.data(); f.bias = b.data(); f.y = y.data();
  k.conv.forward(f);
  ConvBackwardArgs bw;
  bw.s = s; bw.x = x.data(); bw.weight = w.data(); bw.dy = dy.data(); bw.dx = dx.data(); bw.dweight = dw.data();
  bw.dbias = db.data();
  k.conv.backward(bw);

  std::vector<double> yRef(y.size()), dxRef(x.size()), dwRef(dw0.begin(), dw0.end()), dbRef(db0.begin(), db0.end());
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t oc = 0; oc < s.outC; ++oc)
      for (int64_t oy = 0; oy < oH; ++oy)
        for (int64_t ox = 0; ox < oW; ++ox) {
          const int64_t yi = ((n * s.outC + oc) * oH + oy) * oW + ox;
          double acc = b[oc];
          dbRef[oc] += dy[yi];
          for (int64_t ic = 0; ic < s.inC; ++ic)
            for (int64_t ky = 0; ky < s.kh; ++ky)
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t iy = oy * s.strideH - s.padH + ky, ix = ox * s.strideW - s.padW + kx;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                const int64_t xi = ((n * s.inC + ic) * s.H + iy) * s.W + ix, wi = ((oc * s.inC + ic) * s.kh + ky) * s.kw + kx;
                acc += double(x[xi]) * w[wi];
                dxRef[xi] += double(dy[yi]) * w[wi];
                dwRef[wi] += double(dy[yi]) * x[xi];
              }
          yRef[yi] = acc;
        }
  const std::string name =
      std::string(isaName(k.isa)) +
      fmt(" conv N=%lld C=%lld->%lld %lldx%lld k%lldx%lld s%lldx%lld p%lldx%lld", s.batch, s.inC, s.outC, s.H, s.W,
          s.kh, s.kw, s.strideH, s.strideW, s.padH, s.padW);
  // Rounding grows with the length of each sum (K block splits add a step).
  // The data gradient may run Winograd F(4x4, 3x3), which scales its terms by
  // up to 8 per axis in the output transform and rounds 1/6 and 1/24 in the
  // weights: ~10x the error of the direct sum (largest at a tile's
  // bottom-right output). The forward pass stays on F(2x2) (conv_body.h).
  const double yTol = 2e-6 * std::sqrt(double(K)) + 1e-6;
  const double dxTol = winogradF4(dataGradientShape(s)) ? 2e-5 * std::sqrt(double(s.outC * s.kh * s.kw)) + 1e-6
                                                        : 2e-6 * std::sqrt(double(s.outC * s.kh * s.kw)) + 1e-6;
  check(maxRelError(y, yRef) < yTol, name + " y");
  check(maxRelError(dx, dxRef) < dxTol, name + " dx");
  // The weight gradient uses the forward's tiles; F(4x4)'s dy transform scales by up to 64.
  check(maxRelError(dw, dwRef) < (winogradF4(s) ? 4e-4 : 1e-4), name + " dweight");
  check(maxRelError(db, dbRef) < 1e-4, name + " dbias");
}

void testElementwise(const KernelTable& k) {
  const std::string isa = isaName(k.isa);
  const auto& e = k.elementwise;
  for (int64_t n : {1, 5, 16, 17, 100003}) {
    const auto x = random(n, -5, 5), dy = random(n);
    std::vector<float> y(n), dx(n);
    e.reluForward(x.data(), y.data(), n);
    bool ok = true;
    for (int64_t i = 0; i < n; ++i) ok &= y[i] == (x[i] > 0 ? x[i] : 0.0f);
    e.reluBackward(y.data(), dy.data(), dx.data(), n);
    for (int64_t i = 0; i < n; ++i) ok &= dx[i] == (y[i] > 0 ? dy[i] : 0.0f);
    check(ok, isa + " relu n=" + std::to_string(n));
    e.sigmoidForward(x.data(), y.data(), n);
    std::vector<double> yRef(n), dxRef(n);
    for (int64_t i = 0; i < n; ++i) yRef[i] = 1.0 / (1.0 + std::exp(-double(x[i])));
    e.sigmoidBackward(y.data(), dy.data(), dx.data(), n);
    for (int64_t i = 0; i < n; ++i) dxRef[i] = double(dy[i]) * y[i] * (1.0 - y[i]);
    check(maxRelError(y, yRef) < 1e-6 && maxRelError(dx, dxRef) < 1e-6, isa + " sigmoid n=" + std::to_string(n));
  }
  {  // max pooling 2x2/2 and 3x3/2 on odd sizes; distinct values
    for (int64_t kern : {2, 3}) {
      MaxPoolShape s;
      s.planes = 6; s.H = 9; s.W = 8; s.kernel = kern; s.stride = 2;
      const auto x = random(s.planes * s.H * s.W);
      const int64_t outN = s.planes * s.outH() * s.outW();
      std::vector<float> y(outN), dx(x.size(), NAN);
      std::vector<int32_t> arg(outN);
      e.maxPool2dForward(s, x.data(), y.data(), arg.data());
      const auto dy = random(outN);
      e.maxPool2dBackward(dy.data(), arg.data(), outN, dx.data(), int64_t(x.size()));
      std::vector<double> dxRef(x.size(), 0.0);
      bool ok = true;
      for (int64_t p = 0; p < s.planes; ++p)
        for (int64_t oy = 0; oy < s.outH(); ++oy)
          for (int64_t ox = 0; ox < s.outW(); ++ox) {
            int64_t best = -1;
            for (int64_t ky = 0; ky < kern; ++ky)
              for (int64_t kx = 0; kx < kern; ++kx) {
                const int64_t i = (p * s.H + oy * 2 + ky) * s.W + ox * 2 + kx;
                if (best < 0 || x[i] > x[best]) best = i;
              }
            const int64_t o = (p * s.outH() + oy) * s.outW() + ox;
            ok &= arg[o] == best && y[o] == x[best];
            dxRef[best] += dy[o];
          }
      check(ok && maxRelError(dx, dxRef) < 1e-6, isa + " maxpool k=" + std::to_string(kern));
    }
  }
  {  // 2x2 pooling: ties keep the first element in row-major order, NaN wins, infinities are values
    MaxPoolShape s;
    s.planes = 1; s.H = 2; s.W = 12; s.kernel = 2; s.stride = 2;
    const float inf = INFINITY;
    const std::vector<float> x = {1, 5, 2, 2, 0, NAN, 7, 7, -inf, -inf, 3, 1,
                                  5, 0, 2, 9, NAN, 1, 8, 8, -inf, 4, inf, 1};
    std::vector<float> y(6);
    std::vector<int32_t> arg(6);
    e.maxPool2dForward(s, x.data(), y.data(), arg.data());
    const std::vector<int32_t> want = {1, 15, 5, 18, 21, 22};
    bool ok = arg == want && std::isnan(y[2]) && y[0] == 5 && y[1] == 9 && y[3] == 8 && y[4] == 4 && y[5] == inf;
    check(ok, isa + " maxpool 2x2 ties, NaN and infinities");
  }
  {  // softmax cross-entropy with large logits
    const int64_t batch = 7, classes = 10;
    const auto logits = random(batch * classes, -300, 300);
    std::vector<int32_t> labels(batch);
    for (int64_t b = 0; b < batch; ++b) labels[b] = int32_t((b * 3) % classes);
    Labels l;
    l.i32 = labels.data();
    std::vector<float> probs(logits.size()), d(logits.size());
    const double loss = e.softmaxCrossEntropyForward(logits.data(), batch, classes, l, probs.data());
    e.softmaxCrossEntropyBackward(probs.data(), batch, classes, l, d.data());
    double lossRef = 0;
    std::vector<double> pRef(logits.size()), dRef(logits.size());
    for (int64_t b = 0; b < batch; ++b) {
      double mx = -INFINITY, sum = 0;
      for (int64_t c = 0; c < classes; ++c) mx = std::fmax(mx, logits[b * classes + c]);
      for (int64_t c = 0; c < classes; ++c) sum += std::exp(logits[b * classes + c] - mx);
      for (int64_t c = 0; c < classes; ++c) {
        pRef[b * classes + c] = std::exp(logits[b * classes + c] - mx) / sum;
        dRef[b * classes + c] = (pRef[b * classes + c] - (c == labels[b])) / batch;
      }
      lossRef += std::log(sum) + mx - logits[b * classes + labels[b]];
    }
    lossRef /= batch;
    check(std::fabs(loss - lossRef) < 1e-5 * (1 + std::fabs(lossRef)) && maxRelError(probs, pRef) < 1e-6 &&
              maxRelError(d, dRef) < 1e-6,
          isa + " softmax cross-entropy");
  }
  {  // SGD with momentum + nesterov + weight decay over 3 steps, Adam over 3 steps
    const int64_t n = 1001;
    const auto p0 = random(n);
    std::vector<std::vector<float>> grads = {random(n), random(n), random(n)};
    std::vector<float> p = p0, vel(n, 0.0f);
    std::vector<double> pr(p0.begin(), p0.end()), buf(n);
    for (size_t t = 0; t < grads.size(); ++t) {
      SgdArgs a;
      a.param = p.data(); a.grad = grads[t].data(); a.velocity = vel.data(); a.length = n;
      a.lr = 0.1f; a.momentum = 0.9f; a.weightDecay = 0.01f; a.nesterov = true; a.firstStep = t == 0;
      e.sgdStep(a);
      for (int64_t i = 0; i < n; ++i) {
        const double d = double(grads[t][i]) + double(0.01f) * pr[i];
        buf[i] = t == 0 ? d : double(0.9f) * buf[i] + d;
        pr[i] -= double(0.1f) * (d + double(0.9f) * buf[i]);
      }
    }
    check(maxRelError(p, pr) < 1e-5, isa + " sgd");
    std::vector<float> q = p0, m(n, 0.0f), v(n, 0.0f);
    std::vector<double> qr(p0.begin(), p0.end()), mr(n), vr(n);
    for (size_t t = 0; t < grads.size(); ++t) {
      AdamArgs a;
      a.param = q.data(); a.grad = grads[t].data(); a.m = m.data(); a.v = v.data(); a.length = n;
      a.lr = 1e-2f; a.beta1 = 0.9f; a.beta2 = 0.999f; a.eps = 1e-8f; a.weightDecay = 0.0f;
      a.biasCorrection1 = float(1 - std::pow(double(0.9f), double(t + 1)));
      a.biasCorrection2 = float(1 - std::pow(double(0.999f), double(t + 1)));
      e.adamStep(a);
      for (int64_t i = 0; i < n; ++i) {
        const double g = grads[t][i];
        mr[i] = double(0.9f) * mr[i] + (1 - double(0.9f)) * g;
        vr[i] = double(0.999f) * vr[i] + (1 - double(0.999f)) * g * g;
        qr[i] -= double(1e-2f) / a.biasCorrection1 * mr[i] / (std::sqrt(vr[i] / a.biasCorrection2) + double(1e-8f));
      }
    }
    check(maxRelError(q, qr) < 1e-5, isa + " adam");
  }
}

// Bit-identical results for 1 and 2 threads (the split must never reach a sum).
// Shapes: a Winograd layer, and a conv1-like one (shallow-patch weight
// gradient, chunks spread over threads).
void testDeterminism(const KernelTable& k, int64_t batch, int64_t inC, int64_t H, int64_t outC) {
  ConvShape s;
  s.batch = batch; s.inC = inC; s.H = H; s.W = H; s.outC = outC; s.kh = 3; s.kw = 3; s.padH = 1; s.padW = 1;
  const auto x = random(s.batch * s.inC * s.H * s.W), w = random(s.outC * s.patch());
  const auto dy = random(s.batch * s.outC * s.outH() * s.outW());
  const auto A = random(77 * 555), B = random(555 * 333);
  std::vector<float> results[2];
  for (int threads : {1, 2}) {
    setNumThreads(threads);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size(), 0.0f), db(s.outC, 0.0f), C(77 * 333);
    ConvForwardArgs f;
    f.s = s; f.x = x.data(); f.weight = w.data(); f.y = y.data();
    k.conv.forward(f);
    ConvBackwardArgs b;
    b.s = s; b.x = x.data(); b.weight = w.data(); b.dy = dy.data(); b.dx = dx.data(); b.dweight = dw.data(); b.dbias = db.data();
    k.conv.backward(b);
    GemmArgs g;
    g.M = 77; g.N = 333; g.K = 555; g.A = A.data(); g.lda = 555; g.B = B.data(); g.ldb = 333; g.C = C.data(); g.ldc = 333;
    k.gemm.sgemm(g);
    auto& r = results[threads - 1];
    for (auto* v : {&y, &dx, &dw, &db, &C}) r.insert(r.end(), v->begin(), v->end());
  }
  check(results[0].size() == results[1].size() &&
            std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0,
        std::string(isaName(k.isa)) + " conv and gemm results identical for 1 and 2 threads");
}

}  // namespace

// 2x2 pooling with window codes against the int32 kernel (same choices), and
// BatchNorm2d (+ ReLU) + pooling fused against the two unfused kernels: the
// forward bit for bit, gradients to float rounding.
void testPooling2x2(const KernelTable& k) {
  const std::string isa = isaName(k.isa);
  const ElementwiseKernels& e = k.elementwise;
  // {batch, channels, H, W}: MNIST's planes, odd sizes, one long row (pieces of a row).
  for (const auto& g : std::vector<std::array<int64_t, 4>>{
           {4, 8, 28, 28}, {3, 21, 14, 14}, {2, 3, 5, 7}, {1, 2, 2, 2}, {2, 1, 3, 2101}, {1, 1, 70, 70}}) {
    MaxPoolShape s;
    s.planes = g[0] * g[1]; s.H = g[2]; s.W = g[3]; s.kernel = 2; s.stride = 2;
    const int64_t inN = s.planes * s.H * s.W, outN = s.planes * s.outH() * s.outW();
    const std::string name = isa + " pool2x2 " + std::to_string(g[0]) + "x" + std::to_string(g[1]) + "x" +
                             std::to_string(g[2]) + "x" + std::to_string(g[3]);
    auto x = random(inN);
    for (int64_t i = 0; i < inN; i += 5) x[i] = x[i + 1 < inN ? i + 1 : i];  // ties
    for (int64_t i = 3; i < inN; i += 97) x[i] = NAN;
    std::vector<float> y(outN), y32(outN), dy = random(outN), dx(inN, NAN), dx32(inN);
    std::vector<int32_t> arg(outN);
    std::vector<uint8_t> code(outN);
    e.maxPool2x2Forward(s, x.data(), y.data(), code.data());
    e.maxPool2dForward(s, x.data(), y32.data(), arg.data());
    bool ok = true;
    for (int64_t o = 0; o < outN; ++o) {
      const int64_t at = arg[o] % (s.H * s.W);
      ok &= code[o] == 2 * ((at / s.W) % 2) + (at % s.W) % 2;
      ok &= std::memcmp(&y[o], &y32[o], sizeof(float)) == 0;
    }
    check(ok, name + " forward = int32 kernel");
    e.maxPool2x2Backward(s, dy.data(), code.data(), dx.data());
    e.maxPool2dBackward(dy.data(), arg.data(), outN, dx32.data(), inN);
    check(dx == dx32, name + " backward = int32 kernel");

    // Fused batch norm + ReLU + pooling, train and eval, with and without ReLU.
    const int64_t C = g[1];
    BnLayout l;
    l.batch = g[0]; l.channels = C; l.spatial = s.H * s.W;
    const auto xb = random(inN, -2.0f, 3.0f), gamma = random(C, 0.5f, 1.5f), beta = random(C, -0.5f, 0.5f);
    const auto dp = random(outN);
    for (bool train : {true, false}) {
      for (bool relu : {true, false}) {
        if (train && l.perChannel() <= 1) continue;
        std::vector<float> mean(C), invstd(C), full(inN), pooled(outN), pooledRef(outN), picked(outN);
        std::vector<float> runMean = random(C, -0.2f, 0.2f), runVar = random(C, 0.5f, 2.0f);
        std::vector<double> variance(C);
        std::vector<uint8_t> window(outN);
        BnPoolForwardTrainArgs ft;
        ft.bn.layout = l; ft.bn.x = xb.data(); ft.bn.gamma = gamma.data(); ft.bn.beta = beta.data(); ft.bn.relu = relu;
        ft.bn.saveMean = mean.data(); ft.bn.saveInvstd = invstd.data(); ft.bn.batchVariance = variance.data();
        ft.shape.H = s.H; ft.shape.W = s.W; ft.pooled = pooled.data(); ft.window = window.data(); ft.picked = picked.data();
        BnPoolForwardEvalArgs fe;
        fe.bn.layout = l; fe.bn.x = xb.data(); fe.bn.mean = runMean.data(); fe.bn.variance = runVar.data();
        fe.bn.gamma = gamma.data(); fe.bn.beta = beta.data(); fe.bn.relu = relu;
        fe.shape = ft.shape; fe.pooled = pooled.data(); fe.window = window.data(); fe.picked = picked.data();
        if (train) {
          k.batchNorm.forwardTrainPool(ft);
          BnForwardTrainArgs plain = ft.bn;
          std::vector<float> m2(C), i2(C);
          plain.y = full.data(); plain.saveMean = m2.data(); plain.saveInvstd = i2.data();
          k.batchNorm.forwardTrain(plain);
        } else {
          k.batchNorm.forwardEvalPool(fe);
          BnForwardEvalArgs plain = fe.bn;
          plain.y = full.data();
          k.batchNorm.forwardEval(plain);
          for (int64_t c = 0; c < C; ++c) {
            mean[c] = runMean[c];
            invstd[c] = static_cast<float>(1.0 / std::sqrt(double(runVar[c]) + double(1e-5f)));
          }
        }
        e.maxPool2dForward(s, full.data(), pooledRef.data(), arg.data());
        bool same = std::memcmp(pooled.data(), pooledRef.data(), sizeof(float) * outN) == 0;
        for (int64_t o = 0; o < outN; ++o) {
          const bool active = !relu || pooledRef[o] > 0;
          same &= (window[o] < 4) == active;
          if (active) same &= picked[o] == xb[arg[o]];
        }
        const std::string what = name + (train ? " train" : " eval") + (relu ? " relu" : "");
        check(same, what + " fused forward = unfused");

        std::vector<float> dxF(inN, NAN), dxU(inN), dyFull(inN), dgF(C), dbF(C), dgU(C), dbU(C);
        BnPoolBackwardArgs bp;
        bp.bn.layout = l; bp.bn.x = xb.data(); bp.bn.dy = dp.data(); bp.bn.dx = dxF.data(); bp.bn.mean = mean.data();
        bp.bn.invstd = invstd.data(); bp.bn.gamma = gamma.data(); bp.bn.beta = beta.data(); bp.bn.relu = relu;
        bp.bn.batchStatistics = train; bp.bn.dgamma = dgF.data(); bp.bn.dbeta = dbF.data();
        bp.shape = ft.shape; bp.window = window.data(); bp.picked = picked.data();
        k.batchNorm.backwardPool(bp);
        e.maxPool2dBackward(dp.data(), arg.data(), outN, dyFull.data(), inN);
        BnBackwardArgs bu = bp.bn;
        bu.dy = dyFull.data(); bu.dx = dxU.data(); bu.dgamma = dgU.data(); bu.dbeta = dbU.data();
        k.batchNorm.backward(bu);
        check(maxRelError(dxF, dxU) < 1e-5 && maxRelError(dgF, dgU) < 1e-4 && maxRelError(dbF, dbU) < 1e-4,
              what + " fused backward = unfused");
      }
    }
  }
}

int main() {
  int tables = 0;
  const int initialThreads = numThreads();
  for (int i = 0; i < kIsaCount; ++i) {
    const KernelTable* k = kernelTableFor(static_cast<Isa>(i));
    if (!k) continue;
    ++tables;
    std::printf("testing %s (gemm tile %dx%d)\n", isaName(k->isa), k->gemm.mr, k->gemm.nr);
    for (int threads : {1, 2}) {
      setNumThreads(threads);
      testGemm(*k);
      ConvShape s;
      // {batch, inC, H, W, outC, kh, kw, strideH, strideW, padH, padW}: the MNIST layers, every
      // stride/padding path (padded stride-1, flipped-kernel data gradient, general fallbacks).
      for (const auto& c : std::vector<std::array<int64_t, 11>>{
               {2, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1}, {3, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1},
               {2, 3, 9, 11, 5, 3, 2, 2, 1, 0, 1},   {1, 4, 7, 6, 9, 5, 5, 3, 2, 2, 2},
               {20, 2, 5, 5, 3, 1, 1, 1, 1, 0, 0},   {2, 2, 4, 4, 2, 4, 4, 1, 1, 3, 0},
               {3, 3, 6, 5, 4, 2, 3, 1, 1, 2, 1},    {2, 5, 8, 9, 7, 3, 3, 2, 1, 1, 1},
               {17, 3, 5, 21, 9, 3, 3, 1, 1, 0, 2},  {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0},
               // Winograd: odd outputs, padding 0..2 (dx runs with 2 - p), blocks across images
               {3, 9, 7, 9, 10, 3, 3, 1, 1, 1, 1},   {11, 8, 5, 6, 12, 3, 3, 1, 1, 2, 0},
               {2, 16, 9, 4, 8, 3, 3, 1, 1, 0, 2},   {2, 64, 7, 7, 64, 3, 3, 1, 1, 1, 1},
               {2, 8, 6, 15, 8, 3, 3, 1, 1, 1, 1},   {2, 8, 5, 16, 9, 3, 3, 1, 1, 1, 0},  // widest paired rows, and past
               {2, 8, 4, 20, 8, 3, 3, 1, 1, 1, 1},
               // Gradients on F(2x2) where its GEMMs are no larger than F(4x4)'s: 2-row and 5x5 outputs
               // (paired rows on AVX-512, and past them); their data gradients take F(4x4) or F(2x2) again.
               {3, 8, 4, 12, 8, 3, 3, 1, 1, 0, 1},   {2, 9, 5, 5, 10, 3, 3, 1, 1, 1, 1},
               {2, 8, 4, 40, 8, 3, 3, 1, 1, 0, 1},
               {1, 520, 4, 4, 9, 3, 3, 1, 1, 1, 1},    // inC past one GEMM K block
               {2, 9, 4, 4, 520, 3, 3, 1, 1, 1, 1}}) {  // outC past it: the F(4x4) data gradient splits K
        s.batch = c[0]; s.inC = c[1]; s.H = c[2]; s.W = c[3]; s.outC = c[4]; s.kh = c[5]; s.kw = c[6];
        s.strideH = c[7]; s.strideW = c[8]; s.padH = c[9]; s.padW = c[10];
        testConv(*k, s);
      }
      testElementwise(*k);
      testPooling2x2(*k);
    }
    testGemmBatch(*k);
    testDeterminism(*k, 13, 8, 10, 16);
    testDeterminism(*k, 37, 1, 12, 10);
    testDeterminism(*k, 20, 16, 14, 24);  // 14x14: F(4x4) gradients, two weight-gradient chunks of unequal size
  }
  setNumThreads(initialThreads);
  check(tables >= 2, "at least a scalar and one SIMD table are runnable");
  return testing::finish();
}
