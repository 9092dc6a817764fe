// Elementwise kernels for the avx512 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx512.h"
#include "elementwise_body.h"

namespace bnkit {
const ElementwiseKernels kElementwiseAvx512 = elementwiseKernels<simd::Avx512>();
}  // namespace bnkit
