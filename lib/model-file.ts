// The .bnk model file: a fixed binary preamble, a JSON header (architecture,
// tensor table, metadata), the float32 payload and a CRC-32 of everything
// before it. Every field is checked on load so a truncated or corrupted file
// is reported as such instead of becoming a silently wrong model.
//
//   0   8 bytes  magic 89 'B' 'N' 'K' 0D 0A 1A 0A (PNG-style: catches text-mode
//                and line-ending mangling, and is not valid UTF-8)
//   8   u32 LE   format version (1)
//   12  u32 LE   header length H (UTF-8 JSON)
//   16  u64 LE   payload length P
//   24  H bytes  header JSON, then zero padding to a multiple of 8
//   ..  P bytes  tensors, float32 little-endian, at the offsets the header gives
//   ..  u32 LE   CRC-32 (IEEE) of all preceding bytes
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatShape } from './tensor';

export const MODEL_FILE_MAGIC = Uint8Array.from([0x89, 0x42, 0x4e, 0x4b, 0x0d, 0x0a, 0x1a, 0x0a]);
export const MODEL_FILE_VERSION = 1;
const PREAMBLE = 24;
const FORMAT = 'bnkit-model';

export type ModelFileErrorCode = 'BAD_MAGIC' | 'BAD_VERSION' | 'TRUNCATED' | 'TRAILING_DATA' | 'CHECKSUM' | 'BAD_HEADER';

/** A model file that cannot be trusted; `code` says why. */
export class ModelFileError extends Error {
  readonly code: ModelFileErrorCode;
  constructor(code: ModelFileErrorCode, message: string) {
    super(message);
    this.name = 'ModelFileError';
    this.code = code;
  }
}

export interface StoredTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export interface ModelFileContents {
  architecture: unknown[];
  tensors: StoredTensor[];
  metadata: Record<string, unknown>;
}

let crcTable: Int32Array | null = null;

/** CRC-32 (IEEE 802.3, as zlib/PNG), table-driven. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  const table = crcTable;
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const littleEndian = os.endianness() === 'LE';
const align8 = (n: number): number => (n + 7) & ~7;

export function encodeModelFile(contents: ModelFileContents): Buffer {
  let offset = 0;
  const table = contents.tensors.map((t) => {
    const entry = { name: t.name, shape: t.shape, dtype: 'float32', offset, length: t.data.length };
    offset += t.data.length * 4;
    return entry;
  });
  const header = Buffer.from(JSON.stringify({
    format: FORMAT,
    architecture: contents.architecture,
    tensors: table,
    metadata: contents.metadata,
  }), 'utf8');
  const payloadStart = PREAMBLE + align8(header.length);
  const total = payloadStart + offset + 4;
  const out = Buffer.alloc(total);
  out.set(MODEL_FILE_MAGIC, 0);
  out.writeUInt32LE(MODEL_FILE_VERSION, 8);
  out.writeUInt32LE(header.length, 12);
  out.writeBigUInt64LE(BigInt(offset), 16);
  out.set(header, PREAMBLE);
  contents.tensors.forEach((t, i) => {
    const at = payloadStart + table[i].offset;
    if (littleEndian) out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    else for (let k = 0; k < t.data.length; k++) out.writeFloatLE(t.data[k], at + 4 * k);
  });
  out.writeUInt32LE(crc32(out.subarray(0, total - 4)), total - 4);
  return out;
}

function fail(code: ModelFileErrorCode, source: string, problem: string): never {
  throw new ModelFileError(code, `bnkit model file ${source}: ${problem}`);
}

export function decodeModelFile(bytes: Uint8Array, source: string): ModelFileContents {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length === 0) fail('TRUNCATED', source, 'truncated: the file is empty');
  if (buf.length < MODEL_FILE_MAGIC.length || !MODEL_FILE_MAGIC.every((b, i) => buf[i] === b)) {
    if (buf.length < MODEL_FILE_MAGIC.length && MODEL_FILE_MAGIC.subarray(0, buf.length).every((b, i) => buf[i] === b)) {
      fail('TRUNCATED', source, `truncated: ${buf.length} bytes, too short to hold the ${PREAMBLE}-byte preamble`);
    }
    fail('BAD_MAGIC', source, 'not a bnkit model (wrong magic bytes; expected a file written by Sequential.save)');
  }
  if (buf.length < PREAMBLE) fail('TRUNCATED', source, `truncated: ${buf.length} bytes, too short to hold the ${PREAMBLE}-byte preamble`);
  const version = buf.readUInt32LE(8);
  if (version !== MODEL_FILE_VERSION) {
    fail('BAD_VERSION', source, `unsupported format version ${version} (this bnkit reads version ${MODEL_FILE_VERSION})`);
  }
  const headerLength = buf.readUInt32LE(12);
  const payloadLength = Number(buf.readBigUInt64LE(16));
  const payloadStart = PREAMBLE + align8(headerLength);
  const expected = payloadStart + payloadLength + 4;
  if (!Number.isSafeInteger(expected)) fail('BAD_HEADER', source, `corrupted: impossible payload length ${payloadLength}`);
  if (buf.length < expected) fail('TRUNCATED', source, `truncated: expected ${expected} bytes, the file has ${buf.length}`);
  if (buf.length > expected) fail('TRAILING_DATA', source, `corrupted: ${buf.length - expected} unexpected bytes after the end of the model (expected ${expected} bytes)`);
  const stored = buf.readUInt32LE(expected - 4);
  const actual = crc32(buf.subarray(0, expected - 4));
  if (stored !== actual) {
    fail('CHECKSUM', source, `corrupted: checksum mismatch (stored CRC-32 ${hex(stored)}, computed ${hex(actual)})`);
  }
  let header: { format?: unknown; architecture?: unknown; tensors?: unknown; metadata?: unknown };
  try {
    header = JSON.parse(buf.toString('utf8', PREAMBLE, PREAMBLE + headerLength));
  } catch (e) {
    fail('BAD_HEADER', source, `unreadable header JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || header.format !== FORMAT) fail('BAD_HEADER', source, `header is not a ${FORMAT} header`);
  if (!Array.isArray(header.architecture)) fail('BAD_HEADER', source, 'header has no architecture list');
  if (!Array.isArray(header.tensors)) fail('BAD_HEADER', source, 'header has no tensor table');
  const metadata = header.metadata ?? {};
  if (typeof metadata !== 'object' || Array.isArray(metadata)) fail('BAD_HEADER', source, 'header metadata is not an object');
  const tensors = header.tensors.map((entry: unknown, i: number): StoredTensor => {
    const t = entry as { name?: unknown; shape?: unknown; dtype?: unknown; offset?: unknown; length?: unknown };
    const where = `tensor #${i}${typeof t?.name === 'string' ? ` (${t.name})` : ''}`;
    if (typeof t?.name !== 'string') fail('BAD_HEADER', source, `${where} has no name`);
    if (t.dtype !== 'float32') fail('BAD_HEADER', source, `${where} has unsupported dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) fail('BAD_HEADER', source, `${where} has an invalid shape`);
    const shape = t.shape as number[];
    const length = shape.reduce((a, b) => a * b, 1);
    if (t.length !== length) fail('BAD_HEADER', source, `${where}: length ${String(t.length)} does not match shape ${formatShape(shape)}`);
    const offset = t.offset;
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset % 4 !== 0 || offset + 4 * length > payloadLength) {
      fail('BAD_HEADER', source, `${where} lies outside the payload`);
    }
    const data = new Float32Array(length);
    const at = payloadStart + offset;
    if (littleEndian) new Uint8Array(data.buffer).set(buf.subarray(at, at + 4 * length));
    else for (let k = 0; k < length; k++) data[k] = buf.readFloatLE(at + 4 * k);
    return { name: t.name, shape, data };
  });
  return { architecture: header.architecture, tensors, metadata: metadata as Record<string, unknown> };
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/**
 * Writes `bytes` so that `target` holds either the old or the complete new
 * content, even after a crash: temp file in the same directory, fsync,
 * rename over the target, fsync the directory.
 */
export function writeFileAtomic(target: string, bytes: Uint8Array): void {
  const dir = path.dirname(path.resolve(target));
  const temp = path.join(dir, `.${path.basename(target)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  const fd = fs.openSync(temp, 'wx', 0o644);
  try {
    let written = 0;
    while (written < bytes.length) written += fs.writeSync(fd, bytes, written, bytes.length - written);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  try {
    fs.renameSync(temp, target);
  } catch (e) {
    fs.rmSync(temp, { force: true });
    throw e;
  }
  // Makes the rename itself durable; not possible on every platform (Windows), hence best effort.
  try {
    const dirFd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  } catch {
    /* directory fsync unsupported */
  }
}
