// Batch norm for the avx512 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx512.h"
#include "batchnorm_body.h"

namespace bnkit {
const BatchNormKernels kBatchNormAvx512 = batchNormKernels<simd::Avx512>();
}  // namespace bnkit
