// Elementwise kernels for the neon path: the shared body instantiated with this unit's flags.
#include "../simd/vec_neon.h"
#include "elementwise_body.h"

namespace bnkit {
const ElementwiseKernels kElementwiseNeon = elementwiseKernels<simd::Neon>();
}  // namespace bnkit
