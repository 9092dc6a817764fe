// Conv kernels for the neon path: the shared body instantiated with this unit's flags.
#include "../simd/vec_neon.h"
#include "conv_body.h"

namespace bnkit {
const ConvKernels kConvNeon = convKernels<simd::Neon>();
}  // namespace bnkit
