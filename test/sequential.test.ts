// Sequential: PyTorch naming/order/shapes, state dicts, and the .bnk file
// format (round trip, atomic write, every kind of damaged file).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tensor } from '../lib/tensor';
import { Rng } from '../lib/init';
import { Linear, Conv2d, ReLU, MaxPool2d, Flatten, Dropout, Sigmoid } from '../lib/layers';
import { BatchNorm1d, BatchNorm2d } from '../lib/batchnorm';
import { Sequential } from '../lib/sequential';
import { buildModel } from '../lib/models';
import { ModelFileError, crc32 } from '../lib/model-file';
import { randomArray } from './reference/util';

// named_parameters() / state_dict() of the equivalent torch.nn.Sequential:
// nn.Sequential(Conv2d(1,32,3,padding=1), BatchNorm2d(32), ReLU(), MaxPool2d(2),
//   Conv2d(32,64,3,padding=1), BatchNorm2d(64), ReLU(), MaxPool2d(2), Flatten(),
//   Linear(3136,128), BatchNorm1d(128), ReLU(), Linear(128,10))
const TORCH_CNN_BN_PARAMETERS: Array<[string, number[]]> = [
  ['0.weight', [32, 1, 3, 3]], ['0.bias', [32]], ['1.weight', [32]], ['1.bias', [32]],
  ['4.weight', [64, 32, 3, 3]], ['4.bias', [64]], ['5.weight', [64]], ['5.bias', [64]],
  ['9.weight', [128, 3136]], ['9.bias', [128]], ['10.weight', [128]], ['10.bias', [128]],
  ['12.weight', [10, 128]], ['12.bias', [10]],
];
const TORCH_CNN_BN_STATE_KEYS = [
  '0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked',
  '4.weight', '4.bias', '5.weight', '5.bias', '5.running_mean', '5.running_var', '5.num_batches_tracked',
  '9.weight', '9.bias', '10.weight', '10.bias', '10.running_mean', '10.running_var', '10.num_batches_tracked',
  '12.weight', '12.bias',
];

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-seq-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A model with non-trivial values everywhere, including running statistics. */
function trainedSmallModel(seed = 1): Sequential {
  const rng = new Rng(seed);
  const model = new Sequential([
    new Conv2d(1, 4, 3, { padding: 1, rng }), new BatchNorm2d(4, { relu: true }), new ReLU(), new MaxPool2d(2),
    new Flatten(), new Linear(4 * 4 * 4, 8, { rng }), new BatchNorm1d(8, { momentum: null }), new Sigmoid(), new Dropout(0.2, { rng }),
    new Linear(8, 3, { rng, bias: false }),
  ]);
  for (let step = 0; step < 3; step++) model.forward(new Tensor(randomArray(5 * 64, rng, 2), [5, 1, 8, 8]));
  return model;
}

describe('PyTorch compatibility of names, order and shapes', () => {
  it('cnn-bn parameters() match torch named_parameters()', () => {
    const params = buildModel('cnn-bn', { seed: 0 }).parameters();
    expect(params.map((p) => [p.name, [...p.shape]])).toEqual(TORCH_CNN_BN_PARAMETERS);
    for (const p of params) {
      expect(p.data.length).toBe(p.shape.reduce((a, b) => a * b, 1));
      expect(p.grad.length).toBe(p.data.length);
    }
  });

  it('cnn-bn stateDict() keys match torch state_dict() in order', () => {
    const state = buildModel('cnn-bn', { seed: 0 }).stateDict();
    expect(Object.keys(state)).toEqual(TORCH_CNN_BN_STATE_KEYS);
    expect(state['1.running_var'].shape).toEqual([32]);
    expect(state['1.num_batches_tracked'].shape).toEqual([]);
  });

  it('cnn and mlp-bn follow the same indexing as their torch equivalents', () => {
    expect(buildModel('cnn', { seed: 0 }).parameters().map((p) => p.name)).toEqual(['0.weight', '0.bias', '3.weight', '3.bias', '7.weight', '7.bias', '9.weight', '9.bias']);
    expect(buildModel('mlp-bn', { seed: 0 }).parameters().map((p) => `${p.name}:${p.shape.join('x')}`)).toEqual([
      '1.weight:100x784', '1.bias:100', '2.weight:100', '2.bias:100', '4.weight:100x100', '4.bias:100', '5.weight:100', '5.bias:100',
      '7.weight:100x100', '7.bias:100', '8.weight:100', '8.bias:100', '10.weight:10x100', '10.bias:10',
    ]);
  });

  it('parameters() share memory with the layers (an optimizer updates the model)', () => {
    const model = buildModel('mlp', { seed: 0 });
    const [first] = model.parameters();
    first.data[0] = 42;
    expect((model.layers[1] as Linear).weight.data[0]).toBe(42);
  });

  it('nested Sequential names like PyTorch ("1.0.weight")', () => {
    const inner = new Sequential([new Linear(3, 2), new BatchNorm1d(2)]);
    const outer = new Sequential([new Flatten(), inner, new Linear(2, 1)]);
    expect(Object.keys(outer.stateDict())).toEqual([
      '1.0.weight', '1.0.bias', '1.1.weight', '1.1.bias', '1.1.running_mean', '1.1.running_var', '1.1.num_batches_tracked', '2.weight', '2.bias',
    ]);
  });
});

describe('Sequential behaviour', () => {
  it('train()/eval() propagate to every layer', () => {
    const model = trainedSmallModel();
    model.eval();
    expect(model.layers.every((l) => !l.training)).toBe(true);
    model.train();
    expect(model.layers.every((l) => l.training)).toBe(true);
  });

  it('a ReLU after a BatchNorm with fused ReLU is skipped, with identical results', () => {
    const rng = new Rng(3);
    const x = new Tensor(randomArray(4 * 2 * 6 * 6, rng), [4, 2, 6, 6]);
    const conv = new Conv2d(2, 3, 3, { rng: new Rng(1) });
    const fused = new Sequential([conv, new BatchNorm2d(3, { relu: true }), new ReLU()]);
    const conv2 = new Conv2d(2, 3, 3, { rng: new Rng(1) });
    const plain = new Sequential([conv2, new BatchNorm2d(3), new ReLU()]);
    expect(Array.from(fused.forward(x).data)).toEqual(Array.from(plain.forward(x).data));
    expect(String(fused)).toMatch(/ReLU\(\)\s+\[fused into the BatchNorm above\]/);
  });

  it('loadStateDict copies values and checks every name and shape before changing anything', () => {
    const a = trainedSmallModel(1), b = trainedSmallModel(2);
    const before = Object.fromEntries(Object.entries(b.stateDict()).map(([k, t]) => [k, t.data.slice()]));
    const bad = { ...a.stateDict(), '5.weight': new Tensor(new Float32Array(8 * 63), [8, 63]) };
    expect(() => b.loadStateDict(bad)).toThrow(/size mismatch for 5\.weight: got shape \[8, 63\].*model has \[8, 64\]/);
    const missing: Record<string, Tensor> = { ...a.stateDict() };
    delete missing['1.running_var'];
    expect(() => b.loadStateDict({ ...missing, extra: new Tensor(new Float32Array(1), [1]) })).toThrow(/missing 1\.running_var; unexpected extra/);
    for (const [k, t] of Object.entries(b.stateDict())) expect(t.data).toEqual(before[k]);
    b.loadStateDict(a.stateDict());
    for (const [k, t] of Object.entries(b.stateDict())) expect(t.data).toEqual(a.stateDict()[k].data);
    expect((b.layers[6] as BatchNorm1d).numBatchesTracked).toBe(3);
  });
});

describe('save / load', () => {
  it('round trip restores architecture, every parameter and buffer, metadata and outputs', () => {
    const model = trainedSmallModel();
    model.metadata = { model: 'small', normalization: { mean: 0.1, std: 0.3 } };
    const file = path.join(dir, 'small.bnk');
    model.save(file);
    const loaded = Sequential.load(file);
    expect(String(loaded)).toBe(String(model));
    expect(loaded.metadata).toEqual(model.metadata);
    const a = model.stateDict(), b = loaded.stateDict();
    expect(Object.keys(b)).toEqual(Object.keys(a));
    for (const k of Object.keys(a)) {
      expect(b[k].shape).toEqual(a[k].shape);
      expect(b[k].data).toEqual(a[k].data);
    }
    const x = new Tensor(randomArray(3 * 64, new Rng(9)), [3, 1, 8, 8]);
    model.eval();
    loaded.eval();
    expect(Array.from(loaded.forward(x).data)).toEqual(Array.from(model.forward(x).data));
    const bn = loaded.layers[6] as BatchNorm1d;
    expect(bn.momentum).toBeNull();
    expect(bn.numBatchesTracked).toBe(3);
    expect((loaded.layers[1] as BatchNorm2d).relu).toBe(true);
    expect((loaded.layers[9] as Linear).bias).toBeNull();
  });

  it('writes atomically: overwrites in place and leaves no temporary files', () => {
    const file = path.join(dir, 'atomic.bnk');
    fs.writeFileSync(file, 'old content');
    trainedSmallModel().save(file);
    expect(Sequential.load(file)).toBeInstanceOf(Sequential);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
    expect(() => trainedSmallModel().save(path.join(dir, 'no-such-dir', 'x.bnk'))).toThrow(/ENOENT/);
  });

  describe('damaged files are clear errors', () => {
    let good: Buffer;
    const write = (name: string, bytes: Uint8Array): string => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, bytes);
      return file;
    };
    const expectError = (file: string, code: string, message: RegExp): void => {
      let error: unknown;
      try {
        Sequential.load(file);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ModelFileError);
      expect((error as ModelFileError).code).toBe(code);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toContain(file);
    };
    /** Rewrites the trailing CRC so that only the intended damage remains. */
    const resealed = (bytes: Buffer): Buffer => {
      bytes.writeUInt32LE(crc32(bytes.subarray(0, bytes.length - 4)), bytes.length - 4);
      return bytes;
    };

    beforeAll(() => {
      const file = path.join(dir, 'good.bnk');
      trainedSmallModel().save(file);
      good = fs.readFileSync(file);
    });

    it('truncated anywhere', () => {
      for (const keep of [0, 5, 20, 100, Math.floor(good.length / 2), good.length - 1]) {
        const file = write(`cut-${keep}.bnk`, good.subarray(0, keep));
        expectError(file, 'TRUNCATED', keep === 0 ? /truncated: the file is empty/ : /truncated/);
      }
    });

    it('one flipped bit in the payload, the header or the checksum', () => {
      for (const at of [good.length - 40, 30, good.length - 2]) {
        const bad = Buffer.from(good);
        bad[at] ^= 0x10;
        expectError(write(`flip-${at}.bnk`, bad), 'CHECKSUM', /corrupted: checksum mismatch/);
      }
    });

    it('wrong magic, future version, trailing bytes', () => {
      expectError(write('text.bnk', Buffer.from('{"format":"something else"}')), 'BAD_MAGIC', /not a bnkit model \(wrong magic/);
      const future = Buffer.from(good);
      future.writeUInt32LE(2, 8);
      expectError(write('v2.bnk', resealed(future)), 'BAD_VERSION', /unsupported format version 2 \(this bnkit reads version 1\)/);
      expectError(write('trailing.bnk', Buffer.concat([good, Buffer.from([0, 0, 0])])), 'TRAILING_DATA', /3 unexpected bytes/);
    });

    it('a header whose shapes do not match the architecture', () => {
      const headerLength = good.readUInt32LE(12);
      const header = good.toString('utf8', 24, 24 + headerLength);
      // Same byte length, so offsets stay valid: claim the Linear weight is [8, 64] -> [64, 8].
      const tampered = header.replace('"name":"5.weight","shape":[8,64]', '"name":"5.weight","shape":[64,8]');
      expect(tampered).not.toBe(header);
      const bad = Buffer.from(good);
      bad.write(tampered, 24, 'utf8');
      expectError(write('shape.bnk', resealed(bad)), 'BAD_HEADER', /size mismatch for 5\.weight: got shape \[64, 8\]/);
      const unknown = Buffer.from(good);
      unknown.write(header.replace('"type":"Flatten"', '"type":"Flattex"'), 24, 'utf8');
      expectError(write('layer.bnk', resealed(unknown)), 'BAD_HEADER', /unknown layer type "Flattex"/);
    });

    it('a missing file is the usual ENOENT', () => {
      expect(() => Sequential.load(path.join(dir, 'nope.bnk'))).toThrow(/ENOENT/);
    });
  });

  it('crc32 matches the standard check value', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
  });

  it('a saved cnn-bn keeps PyTorch names in the file', () => {
    const file = path.join(dir, 'cnn.bnk');
    buildModel('cnn-bn', { seed: 3 }).save(file);
    const loaded = Sequential.load(file);
    expect(Object.keys(loaded.stateDict())).toEqual(TORCH_CNN_BN_STATE_KEYS);
    expect(loaded.parameters()[0].data).toEqual(buildModel('cnn-bn', { seed: 3 }).parameters()[0].data);
  });
});
