// Conv kernels for the scalar path: the shared body instantiated with this unit's flags.
#include "../simd/vec_scalar.h"
#include "conv_body.h"

namespace bnkit {
const ConvKernels kConvScalar = convKernels<simd::Scalar>();
}  // namespace bnkit
