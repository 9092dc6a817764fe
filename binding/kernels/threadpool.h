// A small persistent pool: parallelFor splits [begin, end) into at most
// numThreads() contiguous blocks (the caller runs the first one). The split
// depends only on the range, grain and thread count; kernels that need results
// independent of the thread count must not let partial sums follow the split.
#pragma once
#include <cstdint>
#include <type_traits>

namespace bnkit {

using RangeFn = void (*)(void* context, int64_t begin, int64_t end);

// A plain function pointer keeps this interface free of templates, so SIMD
// translation units never instantiate pool code with their ISA flags.
void parallelFor(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* context);
void setNumThreads(int threads);
int numThreads();
int hardwareThreads();
// Idle workers go to sleep now instead of spinning out their window (see
// workerSpinWindow), leaving the cores to other threads: the benchmark calls
// it before timing another library's threads.
void parkWorkers();

// Adapter for lambdas. F is always a type local to the calling translation
// unit, so each instantiation stays private to that unit's ISA flags.
template <class F>
static inline void parallelForEach(int64_t begin, int64_t end, int64_t grain, F&& body) {
  using Body = typename std::remove_reference<F>::type;
  parallelFor(begin, end, grain,
              [](void* context, int64_t lo, int64_t hi) { (*static_cast<Body*>(context))(lo, hi); },
              const_cast<void*>(static_cast<const void*>(&body)));
}

}  // namespace bnkit
