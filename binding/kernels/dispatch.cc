#include "dispatch.h"

#include <atomic>
#include <cstdlib>

namespace bnkit {
namespace {

// Function-local statics: built on first use, after every unit's constant
// tables exist, whatever the static-initialization order.
const KernelTable* compiledTable(Isa isa) {
  switch (isa) {
    case Isa::Scalar: {
      static const KernelTable table{Isa::Scalar, kBatchNormScalar, kGemmScalar, kConvScalar, kElementwiseScalar};
      return &table;
    }
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx2: {
      static const KernelTable table{Isa::Avx2, kBatchNormAvx2, kGemmAvx2, kConvAvx2, kElementwiseAvx2};
      return &table;
    }
    case Isa::Avx512: {
      static const KernelTable table{Isa::Avx512, kBatchNormAvx512, kGemmAvx512, kConvAvx512, kElementwiseAvx512};
      return &table;
    }
#endif
#if defined(__aarch64__)
    case Isa::Neon: {
      static const KernelTable table{Isa::Neon, kBatchNormNeon, kGemmNeon, kConvNeon, kElementwiseNeon};
      return &table;
    }
#endif
    default: return nullptr;
  }
}

std::string& selectionError() {
  static std::string error;
  return error;
}

const KernelTable* initialTable() {
  const char* forced = std::getenv("BNKIT_ISA");
  if (forced != nullptr && *forced != '\0') {
    Isa isa;
    if (!parseIsa(forced, &isa)) {
      selectionError() = std::string("BNKIT_ISA=") + forced + " is not one of scalar, avx2, avx512, neon";
    } else if (const KernelTable* table = kernelTableFor(isa)) {
      return table;
    } else {
      selectionError() = std::string("BNKIT_ISA=") + forced + " is not supported on this CPU or build";
    }
  }
  return kernelTableFor(bestIsa());
}

std::atomic<const KernelTable*>& active() {
  static std::atomic<const KernelTable*> table{initialTable()};
  return table;
}

}  // namespace

const KernelTable* kernelTableFor(Isa isa) { return isaRunnable(isa) ? compiledTable(isa) : nullptr; }

const KernelTable& activeKernels() { return *active().load(std::memory_order_acquire); }

std::string selectIsa(const char* name) {
  Isa isa;
  if (!parseIsa(name, &isa)) return std::string("unknown ISA '") + name + "' (expected scalar, avx2, avx512 or neon)";
  const KernelTable* table = kernelTableFor(isa);
  if (!table) return std::string("ISA '") + name + "' is not supported on this CPU or build";
  active().store(table, std::memory_order_release);
  return std::string();
}

const std::string& isaSelectionError() {
  activeKernels();
  return selectionError();
}

}  // namespace bnkit
