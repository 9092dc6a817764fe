// The reference MNIST models (DESIGN.md section 6) as Sequential builders.
// Layer indices follow the equivalent torch.nn.Sequential, so state dicts
// exchange with PyTorch by name. BatchNorm layers are created with the fused
// ReLU and the explicit ReLU after them is kept (Sequential skips it): same
// names as PyTorch, one pass less per activation.
import { Module } from './module';
import { Sequential } from './sequential';
import { Conv2d, Linear, ReLU, Sigmoid, MaxPool2d, Flatten } from './layers';
import { BatchNorm1d, BatchNorm2d } from './batchnorm';
import { Rng, defaultRng, checkSeed, normal } from './init';

export const MODEL_NAMES = ['cnn-bn', 'cnn', 'mlp-bn', 'mlp', 'mlp-fig1', 'mlp-fig1-bn'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface ModelOptions {
  /** Seed for the initial weights (default: the global generator, see manualSeed). */
  seed?: number;
}

function cnn(batchNorm: boolean, rng: Rng): Module[] {
  const block = (inC: number, outC: number): Module[] => [
    new Conv2d(inC, outC, 3, { padding: 1, rng }),
    ...(batchNorm ? [new BatchNorm2d(outC, { relu: true })] : []),
    new ReLU(),
    new MaxPool2d(2),
  ];
  return [
    ...block(1, 32),
    ...block(32, 64),
    new Flatten(),
    new Linear(64 * 7 * 7, 128, { rng }),
    ...(batchNorm ? [new BatchNorm1d(128, { relu: true })] : []),
    new ReLU(),
    new Linear(128, 10, { rng }),
  ];
}

/** 784-100-100-100-10 (the network of Ioffe & Szegedy 2015, Fig. 1). */
function mlp(batchNorm: boolean, activation: 'relu' | 'sigmoid', rng: Rng, initStd?: number): Module[] {
  const layers: Module[] = [new Flatten()];
  const linear = (inF: number, outF: number): Linear => {
    const layer = new Linear(inF, outF, { rng });
    if (initStd !== undefined) {
      normal(layer.weight.data, 0, initStd, rng);
      layer.bias!.data.fill(0);
    }
    return layer;
  };
  let width = 28 * 28;
  for (let i = 0; i < 3; i++) {
    layers.push(linear(width, 100));
    if (batchNorm) layers.push(new BatchNorm1d(100, { relu: activation === 'relu' }));
    layers.push(activation === 'relu' ? new ReLU() : new Sigmoid());
    width = 100;
  }
  layers.push(linear(width, 10));
  return layers;
}

/**
 * Builds a reference model for [N, 1, 28, 28] inputs and 10 classes:
 * - 'cnn-bn': Conv(1->32, 3x3, pad 1) BN ReLU MaxPool2, Conv(32->64) BN ReLU
 *   MaxPool2, Flatten, Linear(3136->128) BN1d ReLU, Linear(128->10);
 * - 'cnn': the same without BN;
 * - 'mlp-bn' / 'mlp': 784-100-100-100-10 with ReLU, with / without BN1d;
 * - 'mlp-fig1' / 'mlp-fig1-bn': the same with sigmoid and N(0, 0.1^2)
 *   weights (zero biases), as the Fig. 1 experiment of the BN paper.
 */
export function buildModel(name: ModelName, options: ModelOptions = {}): Sequential {
  const rng = options.seed === undefined ? defaultRng() : new Rng(checkSeed(options.seed));
  let layers: Module[];
  switch (name) {
    case 'cnn-bn': layers = cnn(true, rng); break;
    case 'cnn': layers = cnn(false, rng); break;
    case 'mlp-bn': layers = mlp(true, 'relu', rng); break;
    case 'mlp': layers = mlp(false, 'relu', rng); break;
    case 'mlp-fig1': layers = mlp(false, 'sigmoid', rng, 0.1); break;
    case 'mlp-fig1-bn': layers = mlp(true, 'sigmoid', rng, 0.1); break;
    default:
      throw new RangeError(`unknown model ${JSON.stringify(name)}; expected one of ${MODEL_NAMES.join(', ')}`);
  }
  const model = new Sequential(layers);
  model.metadata = { model: name };
  return model;
}
