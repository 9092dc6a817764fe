// Benchmark-only entry points. streamCopy is the bandwidth anchor of
// bench/bn.mjs: a memcpy split over the same thread pool as the kernels, so a
// kernel's GB/s can be compared with what these threads can move at all.
// parkWorkers() sends idle pool workers to sleep at once, so another
// library's threads timed next get the cores (bench/bn.mjs --onednn).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "glue.h"
#include "threadpool.h"

namespace bnkit::glue {
namespace {

// Blocks start on 64-byte cache lines so two threads never write the same line.
constexpr int64_t kLineFloats = 16;
// Same minimum work per thread as the kernels (16384 floats), so a copy of a
// tensor is split across as many threads as a kernel on that tensor would be.
constexpr int64_t kGrainLines = 16384 / kLineFloats;

// Copy with non-temporal stores: no read-for-ownership of dst, so DRAM sees
// exactly one read and one write. glibc's memcpy switches to such stores only
// above a threshold derived from its idea of the L3 size, which virtual
// machines can report wrongly (this project's VM: 320 MB), leaving a 100 MB
// memcpy well below what the memory can do.
void streamingCopy(const float* src, float* dst, int64_t n) {
#if defined(__SSE2__)
  int64_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0; ++i) dst[i] = src[i];
  for (; i + 16 <= n; i += 16) {
    const __m128 a = _mm_loadu_ps(src + i), b = _mm_loadu_ps(src + i + 4);
    const __m128 c = _mm_loadu_ps(src + i + 8), d = _mm_loadu_ps(src + i + 12);
    _mm_stream_ps(dst + i, a);
    _mm_stream_ps(dst + i + 4, b);
    _mm_stream_ps(dst + i + 8, c);
    _mm_stream_ps(dst + i + 12, d);
  }
  for (; i < n; ++i) dst[i] = src[i];
  _mm_sfence();
#else
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
#endif
}

void parallelCopy(const float* src, float* dst, int64_t length, bool nonTemporal) {
  const int64_t lines = (length + kLineFloats - 1) / kLineFloats;
  parallelForEach(0, lines, kGrainLines, [&](int64_t lo, int64_t hi) {
    const int64_t begin = lo * kLineFloats;
    const int64_t end = std::min(hi * kLineFloats, length);
    if (nonTemporal) {
      streamingCopy(src + begin, dst + begin, end - begin);
    } else {
      std::memcpy(dst + begin, src + begin, static_cast<size_t>(end - begin) * sizeof(float));
    }
  });
}

// (src, dst, repetitions, nonTemporal = false) -> median seconds of one copy
// of src into dst. nonTemporal only makes sense for arrays far larger than the
// last-level cache; on targets without SSE2 it falls back to memcpy.
Napi::Value StreamCopy(const Napi::CallbackInfo& info) {
  const float* src = floats(info, 0, "src", -1);
  const int64_t length = info[0].As<Napi::Float32Array>().ElementLength();
  float* dst = floats(info, 1, "dst", length);
  const int64_t repetitions = size(info, 2, "repetitions");
  const bool nonTemporal = info.Length() > 3 && !info[3].IsUndefined() && flag(info, 3, "nonTemporal");
  if (repetitions > 1000000) throwRange(info.Env(), "repetitions must be <= 1000000, got " + std::to_string(repetitions));
  if (length == 0) throwRange(info.Env(), "src must not be empty");
  // memcpy on overlapping ranges is undefined, and a copy onto itself would
  // not measure a read plus a write anyway.
  if (src < dst + length && dst < src + length) throwRange(info.Env(), "src and dst must not overlap");

  parallelCopy(src, dst, length, nonTemporal);  // faults in dst's pages and wakes the pool
  std::vector<double> seconds(static_cast<size_t>(repetitions));
  for (auto& s : seconds) {
    const auto start = std::chrono::steady_clock::now();
    parallelCopy(src, dst, length, nonTemporal);
    s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  const size_t mid = seconds.size() / 2;
  std::nth_element(seconds.begin(), seconds.begin() + mid, seconds.end());
  double median = seconds[mid];
  if (seconds.size() % 2 == 0) median = (median + *std::max_element(seconds.begin(), seconds.begin() + mid)) / 2;
  return Napi::Number::New(info.Env(), median);
}

Napi::Value ParkWorkers(const Napi::CallbackInfo& info) {
  parkWorkers();
  return info.Env().Undefined();
}

}  // namespace

void registerBench(Napi::Env env, Napi::Object exports) {
  exportFunction(env, exports, "streamCopy", StreamCopy);
  exportFunction(env, exports, "parkWorkers", ParkWorkers);
}

}  // namespace bnkit::glue
