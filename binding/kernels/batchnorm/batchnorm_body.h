// The batch-norm algorithm, written once over a vector wrapper V and
// instantiated by each ISA's translation unit (batchnorm_<isa>.cc). Memory
// traffic is the design constraint (DESIGN.md section 3); each layout has its
// own header with the blocking that suits it.
#pragma once
#include <cstdint>

#include "../scratch.h"
#include "batchnorm_planar.h"
#include "batchnorm_pool.h"
#include "batchnorm_rows.h"
#include "batchnorm_stem.h"

namespace bnkit {
namespace {

template <class V>
void forwardTrain(const BnForwardTrainArgs& a) {
  if (usesRows(a.layout)) {
    forwardTrainRows<V>(a);
  } else {
    forwardTrainPlanar<V>(a);
  }
}

template <class V>
void forwardEval(const BnForwardEvalArgs& a) {
  const int64_t channels = a.layout.channels;
  const ChannelAffine consts =
      channelAffineScratch(static_cast<float*>(scratchBytes(sizeof(float) * 3 * channels)), channels);
  for (int64_t c = 0; c < channels; ++c) {
    consts.mean[c] = a.mean[c];
    consts.scale[c] = channelScale(a.gamma, c, invstdFromVariance(a.variance[c], a.eps));
    consts.beta[c] = channelBeta(a.beta, c);
  }
  if (usesRows(a.layout)) {
    forwardEvalRows<V>(a, consts);
  } else {
    forwardEvalPlanar<V>(a, consts);
  }
}

template <class V>
void backward(const BnBackwardArgs& a) {
  if (usesRows(a.layout)) {
    backwardRows<V>(a);
  } else {
    backwardPlanar<V>(a);
  }
}

template <class V>
constexpr BatchNormKernels batchNormKernels() {
  return BatchNormKernels{&forwardTrain<V>,     &forwardEval<V>,     &backward<V>,
                          &forwardTrainPool<V>, &forwardEvalPool<V>, &backwardPool<V>,
                          &stemForwardTrain<V>, &stemForwardEval<V>, &stemBackward<V>};
}

}  // namespace
}  // namespace bnkit
