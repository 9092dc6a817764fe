#!/usr/bin/env node
// Install step. Never runs node-gyp (this project has no binding.gyp) and
// never downloads anything: a matching prebuild is used as is; otherwise the
// addon is compiled with cmake-js when it is available.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

function hasPrebuild() {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  return fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.endsWith('.node'));
}

function findCmakeJs() {
  try {
    return require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  } catch {
    return null;
  }
}

if (process.env.BNKIT_SKIP_BUILD === '1') process.exit(0);
const forceBuild = process.env.BNKIT_BUILD_FROM_SOURCE === '1';
if (!forceBuild && hasPrebuild()) process.exit(0);

const cmakeJs = findCmakeJs();
if (!cmakeJs) {
  console.warn(
    `bnkit: no prebuilt binary for ${process.platform}-${process.arch} and cmake-js is not installed.\n` +
      `To build from source: cd ${root} && npm install cmake-js node-addon-api && npx cmake-js compile --out build`,
  );
  process.exit(0);
}
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('bnkit: building the native addon failed (needs cmake >= 3.16 and a C++17 compiler).');
  process.exit(result.status ?? 1);
}
