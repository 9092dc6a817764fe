#include "batchnorm.h"

namespace bnkit {

void updateRunningStats(const BnForwardTrainArgs& args, float factor, float* runningMean, float* runningVar) {
  const double n = static_cast<double>(args.layout.perChannel());
  // Unbiased as in PyTorch; n > 1 is guaranteed by the glue in training mode.
  const double bessel = n > 1 ? n / (n - 1) : 1.0;
  const double keep = 1.0 - factor;
  for (int64_t c = 0; c < args.layout.channels; ++c) {
    if (runningMean) runningMean[c] = static_cast<float>(keep * runningMean[c] + factor * args.saveMean[c]);
    if (runningVar) {
      runningVar[c] = static_cast<float>(keep * runningVar[c] + factor * args.batchVariance[c] * bessel);
    }
  }
}

}  // namespace bnkit
