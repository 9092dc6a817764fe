// Batch norm for the avx2 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx2.h"
#include "batchnorm_body.h"

namespace bnkit {
const BatchNormKernels kBatchNormAvx2 = batchNormKernels<simd::Avx2>();
}  // namespace bnkit
