// The one kernel table per ISA, and which one is active. Selection happens
// once, on first use, from BNKIT_ISA or the best path the CPU runs; tests and
// benchmarks may switch it with selectIsa().
#pragma once
#include <string>

#include "batchnorm/batchnorm.h"
#include "conv/conv.h"
#include "elementwise/elementwise.h"
#include "gemm/gemm.h"
#include "isa.h"

namespace bnkit {

struct KernelTable {
  Isa isa;
  BatchNormKernels batchNorm;
  GemmKernels gemm;
  ConvKernels conv;
  ElementwiseKernels elementwise;
};

// nullptr when this binary lacks the path or the CPU cannot run it.
const KernelTable* kernelTableFor(Isa isa);
const KernelTable& activeKernels();
// Empty string on success, otherwise why the ISA cannot be used.
std::string selectIsa(const char* name);
// Set when BNKIT_ISA named an unusable path; the addon reports it at load.
const std::string& isaSelectionError();

}  // namespace bnkit
