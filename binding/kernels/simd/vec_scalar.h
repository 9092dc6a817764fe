// One-lane "vector": the portable reference every SIMD path is tested against.
// Its fma is a plain multiply-add on purpose: baseline x86-64 has no FMA
// instruction and std::fma would become a slow libm call.
#pragma once
#include <cstdint>

namespace bnkit::simd {

struct Scalar {
  using Reg = float;
  static constexpr int kLanes = 1;
  static constexpr const char* kName = "scalar";

  static Reg load(const float* p) { return *p; }
  static void store(float* p, Reg v) { *p = v; }
  // With one lane a tail never exists; kept so kernel bodies stay ISA-agnostic.
  static Reg loadPartial(const float* p, int64_t n, float fill) { return n > 0 ? *p : fill; }
  static void storePartial(float* p, Reg v, int64_t n) { if (n > 0) *p = v; }
  // Non-temporal store of an aligned vector; plain store on this path.
  static void storeStream(float* p, Reg v) { *p = v; }
  static void streamFence() {}
  static Reg set1(float v) { return v; }
  static Reg zero() { return 0.0f; }
  static Reg add(Reg a, Reg b) { return a + b; }
  static Reg sub(Reg a, Reg b) { return a - b; }
  static Reg mul(Reg a, Reg b) { return a * b; }
  static Reg fma(Reg a, Reg b, Reg c) { return a * b + c; }  // a*b + c
  // b when either is NaN, as x86's maxps (NEON's returns NaN): a ReLU is
  // max(0, x), so a NaN input stays NaN on every path.
  static Reg max(Reg a, Reg b) { return a > b ? a : b; }
  static Reg min(Reg a, Reg b) { return a < b ? a : b; }
  // Keeps `v` where `mask` > 0, zero elsewhere (ReLU-mask in backward).
  static Reg selectPositive(Reg mask, Reg v) { return mask > 0.0f ? v : 0.0f; }
  static float reduceAdd(Reg v) { return v; }
  static float reduceMax(Reg v) { return v; }
  // Lane masks for branch-free selection (2x2 pooling picks its maximum with them).
  using Mask = bool;
  // Where `candidate` replaces `best` in a first-maximum scan in which a NaN
  // beats every number: !(candidate <= best) while best is not NaN.
  static Mask replaces(Reg candidate, Reg best) { return !(candidate <= best) && best == best; }
  static Mask greater(Reg a, Reg b) { return a > b; }  // false if either is NaN
  static Mask equal(Reg a, Reg b) { return a == b; }
  static Reg select(Mask m, Reg ifTrue, Reg ifFalse) { return m ? ifTrue : ifFalse; }
  // The first n lanes of v, whole numbers in [0, 255], as bytes.
  static void storeBytes(uint8_t* p, Reg v, int64_t n) {
    if (n > 0) *p = static_cast<uint8_t>(v);
  }
  // n bytes (n <= kLanes) as whole-number lanes; lanes past n are 0.
  static Reg loadBytes(const uint8_t* p, int64_t n) { return n > 0 ? static_cast<float>(*p) : 0.0f; }
  static constexpr bool kHasPermute2 = false;  // see Avx512::permute2
  // The halves interleaved; with one lane, a and b themselves.
  static void zip(Reg a, Reg b, Reg& lo, Reg& hi) {
    lo = a;
    hi = b;
  }
  // The inverse of zip; with one lane, a and b themselves.
  static void unzip(Reg a, Reg b, Reg& even, Reg& odd) {
    even = a;
    odd = b;
  }
};

}  // namespace bnkit::simd
