// Instruction-set paths and what this CPU (and its OS) can run.
#pragma once

namespace bnkit {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };
constexpr int kIsaCount = 4;

const char* isaName(Isa isa);
// Parses "scalar" | "avx2" | "avx512" | "neon"; false for anything else.
bool parseIsa(const char* name, Isa* out);
// True when the binary contains the path and the CPU and OS can execute it
// (CPUID feature bits and XGETBV-enabled register state on x86-64).
bool isaRunnable(Isa isa);
// Best runnable path, in order avx512 > avx2 > neon > scalar.
Isa bestIsa();

}  // namespace bnkit
