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
