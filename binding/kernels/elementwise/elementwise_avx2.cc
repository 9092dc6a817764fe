// Elementwise kernels for the avx2 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx2.h"
#include "elementwise_body.h"

namespace bnkit {
const ElementwiseKernels kElementwiseAvx2 = elementwiseKernels<simd::Avx2>();
}  // namespace bnkit
