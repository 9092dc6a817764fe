#include "isa.h"

#include <cstring>
#include <initializer_list>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define BNKIT_X86 1
#endif

namespace bnkit {
namespace {

#if BNKIT_X86
struct X86Features {
  bool avx2Fma = false;
  bool avx512 = false;
};

unsigned long long readXcr0() {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

X86Features detectX86() {
  X86Features f;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool fma = ecx & (1u << 12);
  const bool osxsave = ecx & (1u << 27);
  const bool avx = ecx & (1u << 28);
  if (!osxsave || !avx) return f;
  // The CPU may have AVX while the OS does not save YMM/ZMM registers on a
  // context switch; only XCR0 tells.
  const unsigned long long xcr0 = readXcr0();
  const bool ymmSaved = (xcr0 & 0x6) == 0x6;
  const bool zmmSaved = (xcr0 & 0xE6) == 0xE6;
  if (!ymmSaved || __get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16);
  const bool avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30);
  const bool avx512vl = ebx & (1u << 31);
  f.avx2Fma = avx2 && fma;
  f.avx512 = f.avx2Fma && zmmSaved && avx512f && avx512dq && avx512bw && avx512vl;
  return f;
}

const X86Features& x86Features() {
  static const X86Features features = detectX86();
  return features;
}
#endif

}  // namespace

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
  }
  return "unknown";
}

bool parseIsa(const char* name, Isa* out) {
  for (int i = 0; i < kIsaCount; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (std::strcmp(name, isaName(isa)) == 0) {
      *out = isa;
      return true;
    }
  }
  return false;
}

bool isaRunnable(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
#if BNKIT_X86
    case Isa::Avx2: return x86Features().avx2Fma;
    case Isa::Avx512: return x86Features().avx512;
#endif
#if defined(__aarch64__)
    case Isa::Neon: return true;  // AdvSIMD is part of every armv8-a core.
#endif
    default: return false;
  }
}

Isa bestIsa() {
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Neon}) {
    if (isaRunnable(isa)) return isa;
  }
  return Isa::Scalar;
}

}  // namespace bnkit
