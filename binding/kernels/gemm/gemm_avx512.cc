// SGEMM for the avx512 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx512.h"
#include "gemm_body.h"

namespace bnkit {
const GemmKernels kGemmAvx512 = gemmKernels<simd::Avx512>();
}  // namespace bnkit
