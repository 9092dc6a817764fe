// 8-lane AVX2+FMA vector. Include only from translation units compiled with
// -mavx2 -mfma: the dispatcher calls them only after CPUID+XGETBV said so.
#pragma once
#include <immintrin.h>
#include <cstdint>
#include <cstring>

namespace bnkit::simd {

struct Avx2 {
  using Reg = __m256;
  static constexpr int kLanes = 8;
  static constexpr const char* kName = "avx2";

  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static __m256i tailMask(int64_t n) {
    // Lane i is active when i < n; maskload never touches inactive lanes, so a
    // tail at the end of an allocation cannot fault.
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane);
  }
  static Reg loadPartial(const float* p, int64_t n, float fill) {
    const __m256i m = tailMask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void storePartial(float* p, Reg v, int64_t n) { _mm256_maskstore_ps(p, tailMask(n), v); }
  // Non-temporal store (p 32-byte aligned): no read-for-ownership of the line.
  static void storeStream(float* p, Reg v) { _mm256_stream_ps(p, v); }
  static void streamFence() { _mm_sfence(); }
  static Reg set1(float v) { return _mm256_set1_ps(v); }
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm256_min_ps(a, b); }
  static Reg selectPositive(Reg mask, Reg v) {
    return _mm256_and_ps(_mm256_cmp_ps(mask, _mm256_setzero_ps(), _CMP_GT_OQ), v);
  }
  static float reduceAdd(Reg v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduceMax(Reg v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // Lane masks (all-ones / all-zeros lanes) for branch-free selection.
  using Mask = __m256;
  // !(candidate <= best) while best is not NaN: see Scalar::replaces.
  static Mask replaces(Reg candidate, Reg best) {
    return _mm256_and_ps(_mm256_cmp_ps(candidate, best, _CMP_NLE_UQ), _mm256_cmp_ps(best, best, _CMP_ORD_Q));
  }
  static Mask greater(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static Mask equal(Reg a, Reg b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static Reg select(Mask m, Reg ifTrue, Reg ifFalse) { return _mm256_blendv_ps(ifFalse, ifTrue, m); }
  // The first n lanes of v, whole numbers in [0, 255], as bytes.
  static void storeBytes(uint8_t* p, Reg v, int64_t n) {
    const __m256i w = _mm256_cvttps_epi32(v);
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    const __m128i bytes = _mm_packus_epi16(words, words);
    if (n >= 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(p), bytes);
      return;
    }
    alignas(16) uint8_t buf[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(buf), bytes);
    for (int64_t i = 0; i < n; ++i) p[i] = buf[i];
  }
  // n bytes (n <= kLanes) as whole-number lanes; lanes past n are 0.
  static Reg loadBytes(const uint8_t* p, int64_t n) {
    int64_t bits = 0;
    if (n >= 8) {
      std::memcpy(&bits, p, 8);
    } else if (n > 0) {
      std::memcpy(&bits, p, static_cast<size_t>(n));
    }
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bits)));
  }
  static constexpr bool kHasPermute2 = false;  // see Avx512::permute2
  // lo = a0 b0 a1 b1 a2 b2 a3 b3, hi = a4 b4 ... a7 b7 (the halves interleaved).
  static void zip(Reg a, Reg b, Reg& lo, Reg& hi) {
    const Reg l = _mm256_unpacklo_ps(a, b), h = _mm256_unpackhi_ps(a, b);  // per 128-bit lane
    lo = _mm256_permute2f128_ps(l, h, 0x20);
    hi = _mm256_permute2f128_ps(l, h, 0x31);
  }
  // The inverse of zip: even = a0 a2 a4 a6 b0 b2 b4 b6, odd = a1 a3 a5 a7 b1 b3 b5 b7.
  static void unzip(Reg a, Reg b, Reg& even, Reg& odd) {
    // shuffle_ps picks per 128-bit lane (a0 a2 b0 b2 | a4 a6 b4 b6); permute4x64 restores the order.
    even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  }
};

}  // namespace bnkit::simd
