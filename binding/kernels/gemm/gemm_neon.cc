// SGEMM for the neon path: the shared body instantiated with this unit's flags.
#include "../simd/vec_neon.h"
#include "gemm_body.h"

namespace bnkit {
const GemmKernels kGemmNeon = gemmKernels<simd::Neon>();
}  // namespace bnkit
