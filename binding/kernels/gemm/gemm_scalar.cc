// SGEMM for the scalar path: the shared body instantiated with this unit's flags.
#include "../simd/vec_scalar.h"
#include "gemm_body.h"

namespace bnkit {
const GemmKernels kGemmScalar = gemmKernels<simd::Scalar>();
}  // namespace bnkit
