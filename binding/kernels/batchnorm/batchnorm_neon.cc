// Batch norm for the neon path: the shared body instantiated with this unit's flags.
#include "../simd/vec_neon.h"
#include "batchnorm_body.h"

namespace bnkit {
const BatchNormKernels kBatchNormNeon = batchNormKernels<simd::Neon>();
}  // namespace bnkit
