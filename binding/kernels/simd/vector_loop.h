// Loop scaffolding shared by every kernel body: a 4-way unrolled pass over
// full vectors, then single vectors, then one masked tail. `step` receives
// std::true_type / std::false_type so loads and stores on full vectors compile
// without masks. Internal linkage: instantiated per ISA translation unit.
#pragma once
#include <cstdint>
#include <type_traits>

namespace bnkit::simd {
namespace {

using Full = std::true_type;
using Tail = std::false_type;

template <class V, class IsFull>
inline typename V::Reg loadN(IsFull, const float* p, int64_t n, float fill) {
  if constexpr (IsFull::value) {
    return V::load(p);
  } else {
    return V::loadPartial(p, n, fill);
  }
}

template <class V, class IsFull>
inline void storeN(IsFull, float* p, typename V::Reg v, int64_t n) {
  if constexpr (IsFull::value) {
    V::store(p, v);
  } else {
    V::storePartial(p, v, n);
  }
}

// step(isFull, accumulatorSlot in 0..3, offset, valid lanes)
template <class V, class Step>
inline void vectorLoop(int64_t length, Step&& step) {
  constexpr int64_t L = V::kLanes;
  int64_t i = 0;
  for (; i + 4 * L <= length; i += 4 * L) {
    step(Full{}, 0, i, L);
    step(Full{}, 1, i + L, L);
    step(Full{}, 2, i + 2 * L, L);
    step(Full{}, 3, i + 3 * L, L);
  }
  for (; i + L <= length; i += L) step(Full{}, 0, i, L);
  if (i < length) step(Tail{}, 1, i, length - i);
}

// Writes out[0, length) from compute(isFull, offset, valid) -> V::Reg. With
// `stream`, full vectors go out as non-temporal stores (aligned after a
// masked head): for outputs larger than the last-level cache this saves the
// read-for-ownership of every line, a third of the traffic. Call
// V::streamFence() before other threads may read the output.
template <class V, class Compute>
inline void mapStore(float* out, int64_t length, bool stream, Compute&& compute) {
  constexpr int64_t L = V::kLanes;
  if (!stream) {
    vectorLoop<V>(length, [&](auto full, int, int64_t i, int64_t valid) {
      storeN<V>(full, out + i, compute(full, i, valid), valid);
    });
    return;
  }
  constexpr uintptr_t kAlign = L * sizeof(float);
  const uintptr_t misalign = reinterpret_cast<uintptr_t>(out) % kAlign;
  int64_t head = misalign == 0 ? 0 : static_cast<int64_t>((kAlign - misalign) / sizeof(float));
  if (misalign % sizeof(float) != 0 || head > length) head = length;
  if (head > 0) V::storePartial(out, compute(Tail{}, 0, head), head);
  int64_t i = head;
  for (; i + L <= length; i += L) V::storeStream(out + i, compute(Full{}, i, L));
  if (i < length) V::storePartial(out + i, compute(Tail{}, i, length - i), length - i);
}

template <class V>
inline float reduceAdd4(const typename V::Reg (&acc)[4]) {
  return V::reduceAdd(V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3])));
}

template <class V>
inline void zero4(typename V::Reg (&acc)[4]) {
  for (auto& a : acc) a = V::zero();
}

}  // namespace
}  // namespace bnkit::simd
