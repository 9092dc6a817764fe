// Inputs a fuzzing pass over the public API turned up that gave wrong numbers
// or confusing errors instead of a clear TypeError/RangeError (each case
// failed before its fix): aliasing between a layer's reused buffers and its
// input, a layer used twice, values that only fail once rounded to float32,
// tensors whose data no longer matches their shape, and unchecked helpers.
import { describe, expect, it } from 'vitest';
import {
  BatchNorm1d,
  Conv2d,
  CrossEntropyLoss,
  Dropout,
  Flatten,
  Linear,
  Rng,
  Sequential,
  Tensor,
  argmax,
  batchNormBackward,
  batchNormForward,
  batchNormLayout,
  invstdFromVariance,
  meanStd,
  normal,
  setNumThreads,
  uniform,
} from '../lib/index';
import { native } from '../lib/native';
import { randomArray } from './reference/util';

const tensor = (shape: number[], seed = 1) => new Tensor(randomArray(shape.reduce((a, b) => a * b, 1), new Rng(seed)), shape);
const copy = (t: Tensor) => new Tensor(Float32Array.from(t.data), t.shape);

describe("a layer handed its own output or gradient buffer", () => {
  it('Linear: forward(forward(x)) and backward(backward(dy)) equal the same calls on copies', () => {
    const layer = new Linear(64, 64, { rng: new Rng(3) });
    const twin = new Linear(64, 64, { rng: new Rng(3) });
    const x = tensor([32, 64]);
    const y1 = layer.forward(x);
    const expected = Float32Array.from(twin.forward(copy(twin.forward(x))).data);
    const y2 = layer.forward(y1);
    expect(y2.data).not.toBe(y1.data);
    expect(y2.data).toEqual(expected);
    const dy = tensor([32, 64], 2);
    const g1 = layer.backward(dy);
    const g2 = layer.backward(g1);
    const t1 = twin.backward(dy);
    expect(g2.data).toEqual(twin.backward(copy(t1)).data);
  });

  it('Conv2d with as many output as input channels: forward(forward(x)) equals the calls on copies', () => {
    const layer = new Conv2d(8, 8, 3, { padding: 1, rng: new Rng(4) });
    const twin = new Conv2d(8, 8, 3, { padding: 1, rng: new Rng(4) });
    const x = tensor([4, 8, 12, 12]);
    const expected = Float32Array.from(twin.forward(copy(twin.forward(x))).data);
    expect(layer.forward(layer.forward(x)).data).toEqual(expected);
  });

  it('BatchNorm: backward after forward(forward(x)) equals the calls on copies (x is not overwritten)', () => {
    const bn = new BatchNorm1d(3), twin = new BatchNorm1d(3);
    for (const layer of [bn, twin]) {
      layer.weight!.data.set([2, -1, 0.5]);
      layer.bias!.data.set([1, 0, -3]);
    }
    const x = tensor([6, 3]);
    const y1 = bn.forward(x);
    const y2 = bn.forward(y1);
    expect(y2.data).not.toBe(y1.data);
    const expected = twin.forward(copy(twin.forward(x)));
    expect(y2.data).toEqual(expected.data);
    const dy = tensor([6, 3], 5);
    expect(bn.backward(dy).data).toEqual(twin.backward(dy).data);
  });

  it('the GEMM, linear and convolution entry points refuse any output sharing memory with an input', () => {
    const f = (n: number) => new Float32Array(n);
    const x = f(4 * 8);
    expect(() => native.linearForward(x, 4, 8, f(8 * 8), null, 8, x)).toThrow(/y overlaps x: this kernel cannot write in place/);
    expect(() => native.linearBackward(x, 4, 8, f(8 * 8), 8, x, x.subarray(0, 32), f(64), null)).toThrow(/dx overlaps dy/);
    expect(() => native.gemm(false, false, 4, 4, 4, 1, x.subarray(0, 16), x.subarray(16, 32), 0, x.subarray(8, 24)))
      .toThrow(/C overlaps A/);
    const image = f(2 * 3 * 5 * 5);
    expect(() => native.conv2dForward(image, 2, 3, 5, 5, f(3 * 3 * 9), null, 3, 3, 3, 1, 1, 1, 1, image))
      .toThrow(/y overlaps x/);
    native.linearForward(x, 4, 8, f(8 * 8), null, 8, f(32));  // separate memory is fine
  });

  it('batch norm writes in place when out is x, and refuses an out that overlaps x elsewhere', () => {
    const x = tensor([4, 3, 5]);
    const reference = batchNormForward(copy(x), { training: true }).y.data;
    const inPlace = copy(x);
    batchNormForward(inPlace, { training: true, out: inPlace.data });
    expect(inPlace.data).toEqual(reference);
    const backing = new Float32Array(61);
    backing.set(x.data);
    const shifted = backing.subarray(1, 61);
    expect(() => batchNormForward(new Tensor(backing.subarray(0, 60), x.shape), { training: true, out: shifted }))
      .toThrow(/overlaps x without being the same array/);
  });
});

describe('layers and state', () => {
  it('Sequential refuses one layer instance at two places', () => {
    const l = new Linear(4, 4);
    expect(() => new Sequential([l, new Linear(4, 4), l])).toThrow(/layers 0 and 2 are the same Linear instance/);
  });

  it('loadStateDict refuses a num_batches_tracked that is not a non-negative integer', () => {
    const model = new Sequential([new BatchNorm1d(3, { momentum: null })]);
    for (const bad of [NaN, -1, 1.5]) {
      const state = model.stateDict();
      state['0.num_batches_tracked'] = new Tensor(Float32Array.of(bad), []);
      expect(() => model.loadStateDict(state)).toThrow(/0\.num_batches_tracked must be a non-negative integer/);
    }
    const state = model.stateDict();
    state['0.num_batches_tracked'] = new Tensor(Float32Array.of(7), []);
    model.loadStateDict(state);
    expect((model.layers[0] as BatchNorm1d).numBatchesTracked).toBe(7);
  });

  it('eps must survive rounding to float32 (neither 0 nor Infinity)', () => {
    for (const eps of [1e-46, 1e39]) {
      expect(() => new BatchNorm1d(2, { eps })).toThrow(/eps must be a finite number > 0 that float32 can hold/);
      expect(() => batchNormForward(tensor([4, 2]), { training: true, eps })).toThrow(RangeError);
      const x = new Float32Array(8), c = new Float32Array(2);
      expect(() => native.batchNormForwardTrain(x, x, 4, 2, 1, false, null, null, eps, false, c, c, null, null, 0.1))
        .toThrow(/eps must be > 0 and within float32's range/);
    }
    expect(new BatchNorm1d(2, { eps: 1e-44 }).eps).toBe(1e-44);
  });

  it("a tensor's data and shape cannot be swapped after construction", () => {
    const x = tensor([4, 3]);
    expect(() => { (x as { data: Float32Array }).data = new Float32Array(12); }).toThrow(TypeError);
    expect(() => { (x as { shape: number[] }).shape = [3, 4]; }).toThrow(TypeError);
    expect(Object.isFrozen(x.shape)).toBe(true);
  });

  it('a tensor over a resized ArrayBuffer is refused, not read past its end', () => {
    const buffer = new (ArrayBuffer as unknown as new (n: number, o: object) => ArrayBuffer & { resize(n: number): void })(48, { maxByteLength: 96 });
    const t = new Tensor(new Float32Array(buffer), [4, 3]);
    buffer.resize(16);
    expect(() => new Dropout(0.5).forward(t)).toThrow(/input\.data has 4 elements but its shape \[4, 3\] needs 12/);
    expect(() => new Flatten().forward(t)).toThrow(/needs 12/);
  });

  it('Dropout.backward checks call order and dy shape in eval mode too', () => {
    expect(() => new Dropout(0.5).backward(tensor([2, 2]))).toThrow(/Dropout\.backward\(\) called before forward\(\)/);
    const d = new Dropout(0.5);
    d.eval();
    d.forward(tensor([2, 2]));
    expect(() => d.backward(tensor([3, 3]))).toThrow(/dy shape \[3, 3\] does not match the last output shape \[2, 2\]/);
  });

  it('labels in a detached buffer are reported by length, not as the wrong type', () => {
    const loss = new CrossEntropyLoss();
    const labels = new Uint8Array([1, 0]);
    loss.forward(tensor([2, 3]), labels);
    structuredClone(labels.buffer, { transfer: [labels.buffer] });
    expect(() => loss.backward()).toThrow(/labels has 0 elements, expected batch = 2/);
  });
});

describe('functional ops and helpers', () => {
  it('batch norm calls without options or saved statistics say what is missing', () => {
    const x = tensor([4, 2]);
    expect(() => (batchNormForward as (x: Tensor) => unknown)(x)).toThrow(/batchNormForward needs options/);
    expect(() => batchNormBackward(x, x, null as unknown as { mean: Float32Array; invstd: Float32Array }))
      .toThrow(/needs the forward pass's saved statistics/);
    expect(() => batchNormLayout([NaN, 3])).toThrow(/shape must be an array of non-negative integers/);
    expect(() => batchNormLayout([2, 3, -1, -1])).toThrow(TypeError);
    expect(batchNormLayout([2, 3, 4, 5])).toEqual({ batch: 2, channels: 3, spatial: 20, channelsLast: false });
  });

  it('invstdFromVariance checks eps and its output buffer', () => {
    const v = Float32Array.of(1, 4);
    expect(() => invstdFromVariance(v, -1)).toThrow(RangeError);
    expect(() => invstdFromVariance(v, 1e-5, new Float32Array(1))).toThrow(/out must be a Float32Array of length 2/);
    expect(Array.from(invstdFromVariance(v, 0.5))).toEqual([Math.fround(1 / Math.sqrt(1.5)), Math.fround(1 / Math.sqrt(Math.fround(4.5)))]);
  });

  it('initializers, meanStd, argmax and setNumThreads refuse values that would give NaN or nothing', () => {
    expect(() => uniform(new Float32Array(3), NaN, 1)).toThrow(/finite bounds/);
    expect(() => uniform(new Float32Array(3), 1, 0)).toThrow(/low <= high/);
    expect(() => normal(new Float32Array(3), 0, -1)).toThrow(/std >= 0/);
    expect(() => normal([0, 0] as unknown as Float32Array, 0, 1)).toThrow(/target must be a Float32Array/);
    expect(() => meanStd(['a', 'b'] as unknown as number[])).toThrow(/must be finite numbers/);
    expect(meanStd([1, 3])).toEqual({ mean: 2, std: 1 });
    expect(() => argmax(new Tensor(new Float32Array(0), [3, 0]))).toThrow(/at least one class/);
    expect(() => setNumThreads('4' as unknown as number)).toThrow(/got string 4/);
  });
});
