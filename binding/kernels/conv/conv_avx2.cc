// Conv kernels for the avx2 path: the shared body instantiated with this unit's flags.
#include "../simd/vec_avx2.h"
#include "conv_body.h"

namespace bnkit {
const ConvKernels kConvAvx2 = convKernels<simd::Avx2>();
}  // namespace bnkit
