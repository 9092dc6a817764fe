// Batch norm for the scalar path: the shared body instantiated with this unit's flags.
#include "../simd/vec_scalar.h"
#include "batchnorm_body.h"

namespace bnkit {
const BatchNormKernels kBatchNormScalar = batchNormKernels<simd::Scalar>();
}  // namespace bnkit
