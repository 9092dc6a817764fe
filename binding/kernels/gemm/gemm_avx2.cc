// SGEMM for the avx2 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx2.h"
#include "gemm_body.h"

namespace bnkit {
const GemmKernels kGemmAvx2 = gemmKernels<simd::Avx2>();
}  // namespace bnkit
