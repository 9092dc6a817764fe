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
