// The memory side of S3 (32x64x112x112 floats, 103 MB) on its own, no batch
// norm arithmetic: how close can any NCHW forward-training schedule get to a
// non-temporal copy of the same size on this machine? (Issue 2 asks for 0.85.)
//
//   g++ -O2 -mavx512f -std=c++17 bench/probes/s3_memory_patterns.cc -o /tmp/s3probe -lpthread && /tmp/s3probe
//
// Prints the medians of 15 runs on 2 threads of:
//   read-only        one pass summing x
//   write-only       one pass of non-temporal stores to y
//   copy             x to y with non-temporal stores (the anchor)
//   per-channel      each thread takes whole channels: sum the channel (from
//                    DRAM), then re-read it (from L3) and stream it to y
//   split-channel    both threads take half of every channel (0.8 MB, which
//                    fits in one core's 1 MB L2), meet at a barrier, then
//                    re-read their half and stream it out
//   overlapped       whole channels per thread, but while one channel is
//                    re-read and streamed out the next one is summed, in
//                    alternating 12 KiB pieces, so reads and writes overlap
// and the ratios copy / pattern. Reading and writing in turn cannot beat
// copy / (read-only + write-only): the copy overlaps the two.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr long kImages = 32, kChannels = 64, kPlane = 112 * 112, kElements = kImages * kChannels * kPlane;
constexpr int kThreads = 2;
float* x;
float* y;
std::atomic<int> arrivals{0};
volatile float sink;

void barrier(int& phase) {
  ++phase;
  arrivals.fetch_add(1);
  while (arrivals.load() < phase * kThreads) _mm_pause();
}

__m512 sum(const float* p, long n, __m512 acc) {
  __m512 other = _mm512_setzero_ps();
  for (long i = 0; i + 32 <= n; i += 32) {
    acc = _mm512_add_ps(acc, _mm512_loadu_ps(p + i));
    other = _mm512_add_ps(other, _mm512_loadu_ps(p + i + 16));
  }
  return _mm512_add_ps(acc, other);
}

void scaleOut(const float* p, float* q, long n) {
  const __m512 s = _mm512_set1_ps(1.0001f);
  for (long i = 0; i + 16 <= n; i += 16) _mm512_stream_ps(q + i, _mm512_mul_ps(_mm512_loadu_ps(p + i), s));
}

float* plane(float* base, long image, long channel) { return base + (image * kChannels + channel) * kPlane; }

enum class Pattern { kReadOnly, kWriteOnly, kCopy, kPerChannel, kSplitChannel, kOverlapped };
constexpr int kPatterns = 6;
constexpr long kPiece = 3072;  // floats: 12 KiB

void work(Pattern pattern, int t) {
  const long begin = kElements * t / kThreads / 16 * 16, end = kElements * (t + 1) / kThreads / 16 * 16;
  __m512 acc = _mm512_setzero_ps();
  int phase = 0;
  switch (pattern) {
    case Pattern::kReadOnly:
      acc = sum(x + begin, end - begin, acc);
      break;
    case Pattern::kWriteOnly:
      for (long i = begin; i < end; i += 16) _mm512_stream_ps(y + i, _mm512_set1_ps(1.5f));
      break;
    case Pattern::kCopy:
      for (long i = begin; i < end; i += 16) _mm512_stream_ps(y + i, _mm512_loadu_ps(x + i));
      break;
    case Pattern::kPerChannel:
      for (long c = t; c < kChannels; c += kThreads) {
        for (long n = 0; n < kImages; ++n) acc = sum(plane(x, n, c), kPlane, acc);
        for (long n = 0; n < kImages; ++n) scaleOut(plane(x, n, c), plane(y, n, c), kPlane);
      }
      break;
    case Pattern::kOverlapped: {
      long c = t;
      for (long n = 0; n < kImages; ++n) acc = sum(plane(x, n, c), kPlane, acc);
      for (; c < kChannels; c += kThreads) {
        const long next = c + kThreads;
        for (long n = 0; n < kImages; ++n) {
          for (long i = 0; i < kPlane; i += kPiece) {
            const long len = std::min(kPiece, kPlane - i);
            if (next < kChannels) acc = sum(plane(x, n, next) + i, len, acc);
            scaleOut(plane(x, n, c) + i, plane(y, n, c) + i, len);
          }
        }
      }
      break;
    }
    case Pattern::kSplitChannel: {
      const long n0 = kImages * t / kThreads, n1 = kImages * (t + 1) / kThreads;
      for (long c = 0; c < kChannels; ++c) {
        for (long n = n0; n < n1; ++n) acc = sum(plane(x, n, c), kPlane, acc);
        barrier(phase);
        for (long n = n1 - 1; n >= n0; --n) scaleOut(plane(x, n, c), plane(y, n, c), kPlane);
      }
      break;
    }
  }
  _mm_sfence();
  sink = _mm512_reduce_add_ps(acc);
}

double milliseconds(Pattern pattern) {
  arrivals = 0;
  const auto start = std::chrono::steady_clock::now();
  std::thread helper(work, pattern, 1);
  work(pattern, 0);
  helper.join();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main() {
  x = static_cast<float*>(std::aligned_alloc(64, kElements * sizeof(float)));
  y = static_cast<float*>(std::aligned_alloc(64, kElements * sizeof(float)));
  for (long i = 0; i < kElements; ++i) x[i] = static_cast<float>(i & 7), y[i] = 0;
  const Pattern patterns[kPatterns] = {Pattern::kReadOnly,   Pattern::kWriteOnly,    Pattern::kCopy,
                                       Pattern::kPerChannel, Pattern::kSplitChannel, Pattern::kOverlapped};
  const char* names[kPatterns] = {"read-only", "write-only", "copy", "per-channel", "split-channel", "overlapped"};
  std::vector<double> times[kPatterns];
  for (int run = 0; run < 15; ++run) {
    for (int p = 0; p < kPatterns; ++p) times[p].push_back(milliseconds(patterns[p]));  // interleaved
  }
  double median[kPatterns];
  for (int p = 0; p < kPatterns; ++p) {
    std::sort(times[p].begin(), times[p].end());
    median[p] = times[p][7];
  }
  for (int p = 0; p < kPatterns; ++p) std::printf("%-14s %7.2f ms  copy / this = %.2f\n", names[p], median[p], median[2] / median[p]);
  std::printf("read then write at best: copy / (read-only + write-only) = %.2f\n", median[2] / (median[0] + median[1]));
  return 0;
}
