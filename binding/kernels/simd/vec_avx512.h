// 16-lane AVX-512 vector (F/BW/VL/DQ). Include only from translation units
// compiled with the AVX-512 flags; tails use k-masks, so no scalar epilogues.
#pragma once
#include <immintrin.h>
#include <cstdint>

namespace bnkit::simd {

struct Avx512 {
  using Reg = __m512;
  static constexpr int kLanes = 16;
  static constexpr const char* kName = "avx512";

  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static __mmask16 tailMask(int64_t n) {
    return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
  }
  static Reg loadPartial(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), tailMask(n), p);
  }
  static void storePartial(float* p, Reg v, int64_t n) { _mm512_mask_storeu_ps(p, tailMask(n), v); }
  // Non-temporal store (p 64-byte aligned): no read-for-ownership of the line.
  static void storeStream(float* p, Reg v) { _mm512_stream_ps(p, v); }
  static void streamFence() { _mm_sfence(); }
  static Reg set1(float v) { return _mm512_set1_ps(v); }
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg min(Reg a, Reg b) { return _mm512_min_ps(a, b); }
  static Reg selectPositive(Reg mask, Reg v) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(mask, _mm512_setzero_ps(), _CMP_GT_OQ), v);
  }
  static float reduceAdd(Reg v) { return _mm512_reduce_add_ps(v); }
  static float reduceMax(Reg v) { return _mm512_reduce_max_ps(v); }
  // Lane masks for branch-free selection.
  using Mask = __mmask16;
  // !(candidate <= best) while best is not NaN: see Scalar::replaces.
  static Mask replaces(Reg candidate, Reg best) {
    return _mm512_mask_cmp_ps_mask(_mm512_cmp_ps_mask(best, best, _CMP_ORD_Q), candidate, best, _CMP_NLE_UQ);
  }
  static Mask greater(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static Mask equal(Reg a, Reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static Reg select(Mask m, Reg ifTrue, Reg ifFalse) { return _mm512_mask_blend_ps(m, ifFalse, ifTrue); }
  // The first n lanes of v, whole numbers in [0, 255], as bytes.
  static void storeBytes(uint8_t* p, Reg v, int64_t n) {
    // Narrowed in a register: the store form of vpmovdb is microcoded on AMD.
    _mm_mask_storeu_epi8(p, tailMask(n), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
  }
  // n bytes (n <= kLanes) as whole-number lanes; lanes past n are 0.
  static Reg loadBytes(const uint8_t* p, int64_t n) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(tailMask(n), p)));
  }
  // Any lanes of two registers: out[j] = index[j] < 16 ? a[index[j]] : b[index[j] - 16].
  // One instruction here; the other wrappers have no such permute (kHasPermute2 = false).
  static constexpr bool kHasPermute2 = true;
  using Lanes = __m512i;
  static Lanes lanes(const int32_t* index) { return _mm512_loadu_si512(index); }
  static Reg permute2(Reg a, Lanes index, Reg b) { return _mm512_permutex2var_ps(a, index, b); }
  // lo = a0 b0 a1 b1 ... a7 b7, hi = a8 b8 ... a15 b15 (the halves interleaved).
  static void zip(Reg a, Reg b, Reg& lo, Reg& hi) {
    const __m512i l = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i h = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    lo = _mm512_permutex2var_ps(a, l, b);
    hi = _mm512_permutex2var_ps(a, h, b);
  }
  // The inverse of zip: even = a0 a2 ... a14 b0 b2 ... b14, odd = a1 a3 ... b15.
  static void unzip(Reg a, Reg b, Reg& even, Reg& odd) {
    const __m512i e = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i o = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    even = _mm512_permutex2var_ps(a, e, b);
    odd = _mm512_permutex2var_ps(a, o, b);
  }
};

}  // namespace bnkit::simd
