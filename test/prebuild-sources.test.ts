// The prepack guard (scripts/prebuild-sources.cjs): a prebuilt addon is
// shipped only with a stamp of the sources it was built from that matches
// the sources in the tree, on a throw-away copy of the layout it hashes.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const { sourcesDigest, writeStamp, problems } = require('../scripts/prebuild-sources.cjs') as {
  sourcesDigest(root: string): string;
  writeStamp(arch: string, root: string): void;
  problems(root: string): string[];
};

describe('prebuild source stamps', () => {
  it('accept current prebuilds and name missing, unstamped or stale ones', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'bnkit-stamp-'));
    const write = (file: string, text: string) => {
      fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
      fs.writeFileSync(path.join(root, file), text);
    };
    try {
      write('CMakeLists.txt', 'project(x)');
      write('cmake/flags.cmake', '# flags');
      write('binding/addon.cc', 'int x;');
      write('binding/kernels/k.h', '#pragma once');
      expect(problems(root)).toEqual(['prebuilds/linux-x64 has no addon', 'prebuilds/linux-arm64 has no addon']);
      write('prebuilds/linux-x64/bnkit.glibc.node', 'elf');
      write('prebuilds/linux-arm64/bnkit.glibc.node', 'elf');
      expect(problems(root)).toEqual([
        'prebuilds/linux-x64 has no sources.sha256 (built by an older script?)',
        'prebuilds/linux-arm64 has no sources.sha256 (built by an older script?)',
      ]);
      writeStamp('x64', root);
      writeStamp('arm64', root);
      expect(problems(root)).toEqual([]);
      const before = sourcesDigest(root);
      write('binding/kernels/k.h', '#pragma once // edited');
      expect(sourcesDigest(root)).not.toBe(before);
      expect(problems(root)).toEqual([
        'prebuilds/linux-x64 was built from other sources than binding/, cmake/ and CMakeLists.txt hold now',
        'prebuilds/linux-arm64 was built from other sources than binding/, cmake/ and CMakeLists.txt hold now',
      ]);
      // A file added under binding/ counts too, not only edits.
      writeStamp('x64', root);
      writeStamp('arm64', root);
      write('binding/new.cc', '');
      expect(problems(root)).toHaveLength(2);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
