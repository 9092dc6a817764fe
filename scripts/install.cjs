#!/usr/bin/env node
// Install step. Never runs node-gyp (this project has no binding.gyp) and
// never downloads anything: a prebuild that node-gyp-build would pick, and
// that actually loads here (glibc new enough, right arch), is used as is;
// otherwise the addon is compiled with cmake-js when it is available.
// With --ignore-scripts this never runs, and the package still loads its
// prebuild at require time.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');

// The prebuild node-gyp-build would load, ignoring any build/ folder, or null.
function matchingPrebuild() {
  const saved = process.env.PREBUILDS_ONLY;
  process.env.PREBUILDS_ONLY = '1'; // read by node-gyp-build when first required
  try {
    return require('node-gyp-build').resolve(root);
  } catch {
    return null;
  } finally {
    if (saved === undefined) delete process.env.PREBUILDS_ONLY;
    else process.env.PREBUILDS_ONLY = saved;
  }
}

// Loads it in a child process, so a broken binary cannot take npm down.
function loads(file) {
  const env = { ...process.env };
  delete env.BNKIT_ISA; // a forced ISA is a runtime choice, not a reason to rebuild
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { env, encoding: 'utf8' });
  if (r.status === 0) return true;
  console.warn(`bnkit: prebuilt ${path.relative(root, file)} does not load here: ${(r.stderr || '').split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status}`}`);
  return false;
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
if (!forceBuild) {
  const prebuild = matchingPrebuild();
  if (prebuild && loads(prebuild)) process.exit(0);
}

const cmakeJs = findCmakeJs();
if (!cmakeJs) {
  console.warn(
    `bnkit: no usable prebuilt binary for ${process.platform}-${process.arch} and cmake-js is not installed.\n` +
      `To build from source (needs cmake >= 3.16 and a C++17 compiler), in your project folder:\n` +
      `  npm install --no-save cmake-js@^8 node-addon-api@^8 && BNKIT_BUILD_FROM_SOURCE=1 node ${path.join(root, 'scripts', 'install.cjs')}`,
  );
  process.exit(0);
}
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('bnkit: building the native addon failed (needs cmake >= 3.16 and a C++17 compiler).');
  process.exit(result.status ?? 1);
}
