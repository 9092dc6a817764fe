#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNKIT_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define BNKIT_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define BNKIT_CPU_RELAX() ((void)0)
#endif

namespace bnkit {
namespace {

// The caller spins while workers finish: kernels on small tensors take a few
// microseconds, far less than a condition-variable wake-up.
constexpr int kSpinIterations = 1 << 14;
constexpr int kAckSpinIterations = 1 << 10;

// Workers keep spinning this long after their last job before they sleep. A
// training step calls dozens of kernels with JavaScript in between, gaps of a
// few microseconds up to a millisecond or so (batch gather, loss, optimizer);
// a worker asleep when a job arrives needs a futex wake-up (slower still on a
// VM whose idle vCPU has halted) while the caller already runs the blocks
// alone. The previous fixed 16K pauses lasted ~0.4 ms here; with 2 ms the
// MNIST benchmark's step measured 3-6 % shorter (alternating runs on a noisy
// machine). The cost is one core busy for at most this long after bnkit's
// last call. BNKIT_SPIN_US overrides it (0: sleep at once, as a shared server
// may want).
std::chrono::microseconds workerSpinWindow() {
  const char* text = std::getenv("BNKIT_SPIN_US");
  if (text != nullptr && *text != '\0') {
    char* end = nullptr;
    const long value = std::strtol(text, &end, 10);
    if (*end == '\0' && value >= 0) return std::chrono::microseconds(std::min(value, 1000000L));
  }
  return std::chrono::microseconds(2000);
}

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stopWorkers(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> dispatch(dispatchMutex_);
    stopWorkers();
    stopping_ = false;
    pending_.store(0, std::memory_order_relaxed);
    // The starting generation is read here, under the dispatch lock, not by
    // the new thread: a job dispatched before the thread first runs would
    // otherwise look already seen, and run() would wait for it forever.
    const uint64_t start = generation_.load(std::memory_order_relaxed);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, start] { workerLoop(start); });
  }

  void run(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* context) {
    const int64_t total = end - begin;
    if (total <= 0) return;
    const int64_t blocksByGrain = (total + std::max<int64_t>(grain, 1) - 1) / std::max<int64_t>(grain, 1);
    const int blocks = static_cast<int>(std::min<int64_t>(size(), blocksByGrain));
    // Nested calls (from a worker) and concurrent callers (worker_threads)
    // run inline rather than wait for a pool that is busy with them.
    if (blocks <= 1 || insideWorker_ || !dispatchMutex_.try_lock()) {
      fn(context, begin, end);
      return;
    }
    std::lock_guard<std::mutex> dispatch(dispatchMutex_, std::adopt_lock);
    // A worker that has not yet acknowledged the previous job may still read
    // job_. Usually it is a few instructions from doing so; if it is not
    // (descheduled on a busy machine), run this job on the calling thread
    // rather than wait for it.
    for (int spin = 0; spin < kAckSpinIterations && pending_.load(std::memory_order_acquire) != 0; ++spin) {
      BNKIT_CPU_RELAX();
    }
    if (pending_.load(std::memory_order_acquire) != 0) {
      fn(context, begin, end);
      return;
    }
    job_ = Job{begin, end, blocks, fn, context};
    nextBlock_.store(0, std::memory_order_relaxed);
    finishedBlocks_.store(0, std::memory_order_relaxed);
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(wakeMutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    // Blocks are claimed, not assigned: if a worker is slow to wake, the
    // caller takes its blocks, so a busy machine costs at worst serial time.
    // Which thread runs a block never changes the block boundaries.
    runClaimedBlocks();
    for (int spin = 0; finishedBlocks_.load(std::memory_order_acquire) != blocks; ++spin) {
      if (spin < kSpinIterations) {
        BNKIT_CPU_RELAX();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  struct Job {
    int64_t begin = 0, end = 0;
    int blocks = 0;
    RangeFn fn = nullptr;
    void* context = nullptr;
  };

  void runBlock(int index) {
    const int64_t total = job_.end - job_.begin;
    const int64_t lo = job_.begin + total * index / job_.blocks;
    const int64_t hi = job_.begin + total * (index + 1) / job_.blocks;
    if (lo < hi) job_.fn(job_.context, lo, hi);
  }

  void runClaimedBlocks() {
    for (int block; (block = nextBlock_.fetch_add(1, std::memory_order_acq_rel)) < job_.blocks;) {
      runBlock(block);
      finishedBlocks_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

 public:
  // Workers that have finished the latest job stop spinning rather than at
  // the end of their window (and one still running it stops once it is done):
  // the request names that job, so a job dispatched later cancels it.
  void park() { parkedGeneration_.store(generation_.load(std::memory_order_acquire), std::memory_order_release); }

 private:
  void workerLoop(uint64_t seen) {
    insideWorker_ = true;
    for (;;) {
      uint64_t now = generation_.load(std::memory_order_acquire);
      const auto spinUntil = std::chrono::steady_clock::now() + spinWindow_;
      for (int spin = 1; now == seen; ++spin) {
        BNKIT_CPU_RELAX();
        now = generation_.load(std::memory_order_acquire);
        // The clock costs ~20 ns: read it once per 64 relaxes.
        if (spin % 64 == 0 && (std::chrono::steady_clock::now() >= spinUntil ||
                               parkedGeneration_.load(std::memory_order_acquire) == seen)) {
          break;
        }
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(wakeMutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_.load(std::memory_order_acquire) != seen; });
        if (stopping_) return;
        now = generation_.load(std::memory_order_acquire);
      }
      seen = now;
      runClaimedBlocks();
      // Acknowledged: from here on this worker no longer reads job_.
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void stopWorkers() {
    {
      std::lock_guard<std::mutex> lock(wakeMutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex dispatchMutex_;
  std::mutex wakeMutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> nextBlock_{0};
  std::atomic<int> finishedBlocks_{0};
  // The job generation park() was called after; none before the first call.
  std::atomic<uint64_t> parkedGeneration_{~uint64_t{0}};
  bool stopping_ = false;
  const std::chrono::microseconds spinWindow_ = workerSpinWindow();
  Job job_;
  static thread_local bool insideWorker_;
};

thread_local bool ThreadPool::insideWorker_ = false;

ThreadPool& pool() {
  // Leaked on purpose: joining threads from a static destructor at process
  // exit can deadlock when Node tears the addon down.
  static ThreadPool* instance = new ThreadPool(hardwareThreads());
  return *instance;
}

}  // namespace

int hardwareThreads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(std::min(n, 256u));
}

void parallelFor(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* context) {
  pool().run(begin, end, grain, fn, context);
}

void setNumThreads(int threads) { pool().resize(std::max(1, threads)); }

void parkWorkers() { pool().park(); }

int numThreads() { return pool().size(); }

}  // namespace bnkit
