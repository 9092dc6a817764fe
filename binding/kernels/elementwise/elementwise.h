// Activations, max pooling, softmax cross-entropy and optimizer updates.
// Kernels trust their arguments: the glue validates shapes, labels and
// hyper-parameters once per call.
#pragma once
#include <cstdint>

namespace bnkit {

struct MaxPoolShape {
  int64_t planes = 0;  // batch * channels
  int64_t H = 0, W = 0, kernel = 0, stride = 0;

  int64_t outH() const { return (H - kernel) / stride + 1; }
  int64_t outW() const { return (W - kernel) / stride + 1; }
};

// Class labels as JavaScript hands them over: Uint8Array or Int32Array.
struct Labels {
  const uint8_t* u8 = nullptr;
  const int32_t* i32 = nullptr;
  int64_t at(int64_t i) const { return u8 != nullptr ? u8[i] : i32[i]; }
};

struct SgdArgs {
  float* param = nullptr;
  const float* grad = nullptr;
  float* velocity = nullptr;  // nullptr when momentum == 0
  int64_t length = 0;
  float lr = 0, momentum = 0, dampening = 0, weightDecay = 0;
  bool nesterov = false;
  // PyTorch starts the momentum buffer at the first gradient (no dampening).
  bool firstStep = false;
};

struct AdamArgs {
  float* param = nullptr;
  const float* grad = nullptr;
  float* m = nullptr;
  float* v = nullptr;
  int64_t length = 0;
  float lr = 0, beta1 = 0, beta2 = 0, eps = 0, weightDecay = 0;
  // 1 - beta^step, computed in double by the caller.
  float biasCorrection1 = 1, biasCorrection2 = 1;
};

struct ElementwiseKernels {
  void (*reluForward)(const float* x, float* y, int64_t n);
  // dx = dy where y > 0, else 0; dx may alias dy.
  void (*reluBackward)(const float* y, const float* dy, float* dx, int64_t n);
  void (*sigmoidForward)(const float* x, float* y, int64_t n);
  void (*sigmoidBackward)(const float* y, const float* dy, float* dx, int64_t n);
  // argmax holds flat indices into x (over the whole tensor).
  void (*maxPool2dForward)(const MaxPoolShape& s, const float* x, float* y, int32_t* argmax);
  // dx (dxLength floats) is overwritten: zeros plus dy scattered at argmax.
  void (*maxPool2dBackward)(const float* dy, const int32_t* argmax, int64_t n, float* dx, int64_t dxLength);
  // The common 2x2 / stride 2 case (s.kernel and s.stride are ignored) with a
  // byte per output instead of an index: window[i] = 2 * ky + kx of the
  // maximum, with the same ties and NaN rule as maxPool2dForward.
  void (*maxPool2x2Forward)(const MaxPoolShape& s, const float* x, float* y, uint8_t* window);
  // dx (planes * H * W floats) is overwritten: dy[i] at the input window[i]
  // names, zeros elsewhere. Codes >= 4 pass no gradient.
  void (*maxPool2x2Backward)(const MaxPoolShape& s, const float* dy, const uint8_t* window, float* dx);
  // Returns the mean loss over the batch; probs gets the softmax.
  double (*softmaxCrossEntropyForward)(const float* logits, int64_t batch, int64_t classes, Labels labels,
                                       float* probs);
  void (*softmaxCrossEntropyBackward)(const float* probs, int64_t batch, int64_t classes, Labels labels,
                                      float* dlogits);
  // sums[c] += sum over rows of x[row][c] (the bias gradient of a linear layer).
  void (*addColumnSums)(const float* x, int64_t rows, int64_t cols, float* sums);
  void (*sgdStep)(const SgdArgs& args);
  void (*adamStep)(const AdamArgs& args);
};

extern const ElementwiseKernels kElementwiseScalar;
extern const ElementwiseKernels kElementwiseAvx2;
extern const ElementwiseKernels kElementwiseAvx512;
extern const ElementwiseKernels kElementwiseNeon;

}  // namespace bnkit
