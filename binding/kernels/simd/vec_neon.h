// 4-lane NEON vector for armv8-a (AdvSIMD is mandatory there, so no runtime
// check is needed). NEON has no masked load: tails go through a small buffer.
#pragma once
#include <arm_neon.h>
#include <cstdint>
#include <cstring>

namespace bnkit::simd {

struct Neon {
  using Reg = float32x4_t;
  static constexpr int kLanes = 4;
  static constexpr const char* kName = "neon";

  static Reg load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, Reg v) { vst1q_f32(p, v); }
  static Reg loadPartial(const float* p, int64_t n, float fill) {
    float buf[4] = {fill, fill, fill, fill};
    for (int64_t i = 0; i < n && i < 4; ++i) buf[i] = p[i];
    return vld1q_f32(buf);
  }
  static void storePartial(float* p, Reg v, int64_t n) {
    float buf[4];
    vst1q_f32(buf, v);
    for (int64_t i = 0; i < n && i < 4; ++i) p[i] = buf[i];
  }
  // AArch64 has STNP, but it is only a hint; a plain store keeps this simple.
  static void storeStream(float* p, Reg v) { vst1q_f32(p, v); }
  static void streamFence() {}
  static Reg set1(float v) { return vdupq_n_f32(v); }
  static Reg zero() { return vdupq_n_f32(0.0f); }
  static Reg add(Reg a, Reg b) { return vaddq_f32(a, b); }
  static Reg sub(Reg a, Reg b) { return vsubq_f32(a, b); }
  static Reg mul(Reg a, Reg b) { return vmulq_f32(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return vfmaq_f32(c, a, b); }
  static Reg max(Reg a, Reg b) { return vmaxq_f32(a, b); }
  static Reg min(Reg a, Reg b) { return vminq_f32(a, b); }
  static Reg selectPositive(Reg mask, Reg v) {
    return vreinterpretq_f32_u32(vandq_u32(vcgtq_f32(mask, vdupq_n_f32(0.0f)), vreinterpretq_u32_f32(v)));
  }
  static float reduceAdd(Reg v) { return vaddvq_f32(v); }
  static float reduceMax(Reg v) { return vmaxvq_f32(v); }
  // Lane masks for branch-free selection.
  using Mask = uint32x4_t;
  // !(candidate <= best) while best is not NaN: see Scalar::replaces.
  static Mask replaces(Reg candidate, Reg best) {
    return vandq_u32(vmvnq_u32(vcleq_f32(candidate, best)), vceqq_f32(best, best));
  }
  static Mask greater(Reg a, Reg b) { return vcgtq_f32(a, b); }
  static Mask equal(Reg a, Reg b) { return vceqq_f32(a, b); }
  static Reg select(Mask m, Reg ifTrue, Reg ifFalse) { return vbslq_f32(m, ifTrue, ifFalse); }
  // The first n lanes of v, whole numbers in [0, 255], as bytes.
  static void storeBytes(uint8_t* p, Reg v, int64_t n) {
    const uint16x4_t words = vmovn_u32(vcvtq_u32_f32(v));
    const uint8x8_t bytes = vmovn_u16(vcombine_u16(words, words));
    uint8_t buf[8];
    vst1_u8(buf, bytes);
    if (n > 0) std::memcpy(p, buf, static_cast<size_t>(n < 4 ? n : 4));
  }
  // n bytes (n <= kLanes) as whole-number lanes; lanes past n are 0.
  static Reg loadBytes(const uint8_t* p, int64_t n) {
    uint8_t buf[8] = {};
    if (n > 0) std::memcpy(buf, p, static_cast<size_t>(n < 4 ? n : 4));
    return vcvtq_f32_u32(vmovl_u16(vget_low_u16(vmovl_u8(vld1_u8(buf)))));
  }
  static constexpr bool kHasPermute2 = false;  // see Avx512::permute2
  // lo = a0 b0 a1 b1, hi = a2 b2 a3 b3 (the halves interleaved).
  static void zip(Reg a, Reg b, Reg& lo, Reg& hi) {
    lo = vzip1q_f32(a, b);
    hi = vzip2q_f32(a, b);
  }
  // The inverse of zip: even = a0 a2 b0 b2, odd = a1 a3 b1 b3.
  static void unzip(Reg a, Reg b, Reg& even, Reg& odd) {
    even = vuzp1q_f32(a, b);
    odd = vuzp2q_f32(a, b);
  }
};

}  // namespace bnkit::simd
