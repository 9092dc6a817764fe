export { Tensor, shapeSize } from './tensor';
export { Module, type Parameter, type BufferState } from './module';
export { BatchNorm1d, BatchNorm2d, type BatchNormOptions } from './batchnorm';
export {
  batchNormForward,
  batchNormBackward,
  batchNormLayout,
  invstdFromVariance,
  type BatchNormLayout,
  type BatchNormForwardOptions,
  type BatchNormForwardResult,
  type BatchNormBackwardOptions,
  type BatchNormBackwardResult,
} from './functional';
export { isa, availableIsas, setIsa, setNumThreads, getNumThreads, type IsaName } from './runtime';
export { Rng, manualSeed, defaultRng, kaimingUniform, xavierUniform, fanInUniform, uniform, normal } from './init';
export { Linear, Conv2d, ReLU, Sigmoid, MaxPool2d, Flatten, Dropout, type LinearOptions, type Conv2dOptions, type DropoutOptions, type LayerConfig } from './layers';
export { Sequential, type StateDict, type TensorLike } from './sequential';
export { ModelFileError, type ModelFileErrorCode } from './model-file';
export { CrossEntropyLoss, type Labels } from './loss';
export { Optimizer, SGD, Adam, type SGDOptions, type AdamOptions } from './optim';
export { parseIdx, readIdx, loadMnist, defaultMnistDir, meanStd, type IdxArray, type IdxType, type Dataset, type Mnist, type MnistOptions, type Normalization } from './data';
export { fit, evaluate, predict, argmax, type FitOptions, type FitResult, type BatchInfo, type EpochInfo, type EvaluateOptions, type EvaluateResult } from './train';
export { buildModel, MODEL_NAMES, type ModelName, type ModelOptions } from './models';
