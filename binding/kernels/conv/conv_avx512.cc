// Conv kernels for the avx512 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx512.h"
#include "conv_body.h"

namespace bnkit {
const ConvKernels kConvAvx512 = convKernels<simd::Avx512>();
}  // namespace bnkit
