#!/usr/bin/env node
// Ties each prebuilt addon to the sources it was built from. scripts/prebuild.cjs
// writes prebuilds/linux-<arch>/sources.sha256 next to the binary; `npm pack`
// (prepack) runs this file to refuse a tarball whose binaries are missing or
// were built from other sources: prebuilds/ is not in git, so a stale one
// left in a working tree would otherwise ship silently, and fail at run time
// with "... is not a function" when the JavaScript expects a newer addon.
//
//   node scripts/prebuild-sources.cjs            check both arches (exit 1 if not current)
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const repoRoot = path.resolve(__dirname, '..');
const ARCHS = ['x64', 'arm64'];
const STAMP = 'sources.sha256';

function filesUnder(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : [full];
  });
}

/** sha256 over every file that goes into the addon, by sorted relative path. */
function sourcesDigest(root = repoRoot) {
  const files = [path.join(root, 'CMakeLists.txt'), ...filesUnder(path.join(root, 'cmake')), ...filesUnder(path.join(root, 'binding'))]
    .map((f) => path.relative(root, f).split(path.sep).join('/'))
    .sort();
  const hash = crypto.createHash('sha256');
  for (const f of files) {
    hash.update(`${f}\0`);
    hash.update(fs.readFileSync(path.join(root, f)));
    hash.update('\0');
  }
  return hash.digest('hex');
}

function writeStamp(arch, root = repoRoot) {
  fs.writeFileSync(path.join(root, 'prebuilds', `linux-${arch}`, STAMP), `${sourcesDigest(root)}\n`);
}

/** Problems with the prebuilds as they stand (empty: current). */
function problems(root = repoRoot) {
  const digest = sourcesDigest(root);
  return ARCHS.flatMap((arch) => {
    const dir = path.join(root, 'prebuilds', `linux-${arch}`);
    const where = `prebuilds/linux-${arch}`;
    if (!fs.existsSync(dir) || !fs.readdirSync(dir).some((f) => f.endsWith('.node'))) return [`${where} has no addon`];
    const stampPath = path.join(dir, STAMP);
    if (!fs.existsSync(stampPath)) return [`${where} has no ${STAMP} (built by an older script?)`];
    return fs.readFileSync(stampPath, 'utf8').trim() === digest ? [] : [`${where} was built from other sources than binding/, cmake/ and CMakeLists.txt hold now`];
  });
}

module.exports = { sourcesDigest, writeStamp, problems };

if (require.main === module) {
  const found = problems();
  if (found.length) {
    for (const p of found) console.error(`prebuilds: ${p}`);
    console.error('prebuilds: run `npm run prebuild` before packing (it rebuilds both arches).');
    process.exit(1);
  }
  // stderr: `npm pack --json` prints its JSON on stdout, after this script's output.
  console.error('prebuilds: current for linux-x64 and linux-arm64');
}
