// Elementwise kernels for the scalar path: the shared body instantiated with this unit's flags.
#include "../simd/vec_scalar.h"
#include "elementwise_body.h"

namespace bnkit {
const ElementwiseKernels kElementwiseScalar = elementwiseKernels<simd::Scalar>();
}  // namespace bnkit
