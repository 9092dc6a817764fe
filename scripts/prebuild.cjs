#!/usr/bin/env node
// Builds the prebuilt addons shipped in the npm package:
//   prebuilds/linux-x64/bnkit.glibc.node    (any x86-64 CPU; AVX2/AVX-512 picked at run time)
//   prebuilds/linux-arm64/bnkit.glibc.node  (cross-compiled with g++-aarch64-linux-gnu)
//
// prebuildify does the naming, tagging and stripping, so node-gyp-build's
// matching rules and ours can never drift apart. prebuildify 6 can only drive
// node-gyp, so it is handed a `--node-gyp` shim (written into the build
// folder, it re-enters this file with --shim) that runs cmake-js in a private
// build folder and drops the result where prebuildify looks for it. The
// developer's build/ is never touched: prebuildify runs in a staging folder.
//
// Usage: node scripts/prebuild.cjs [--arch x64] [--arch arm64]   (default: both)
// Exit status is non-zero if a build or a check fails; the last line is
// "N passed, N failed".
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { writeStamp } = require('./prebuild-sources.cjs');

const root = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

// Oldest runtime a prebuild may require. Debian 12 / Ubuntu 22.04 level: the
// GCC 12 libstdc++ that node itself loads, glibc 2.34 (pthread in libc).
// A newer build host raises these silently; the check turns that into a failure.
const MAX_GLIBC = [2, 34];
const MAX_GLIBCXX = [3, 4, 30];

const TARGETS = {
  x64: {
    buildDir: 'build-prebuild-x64',
    elfMachine: 62, // EM_X86_64
    strip: 'strip',
    compiler: 'g++',
    cmakeArgs: [],
  },
  arm64: {
    buildDir: 'build-prebuild-arm64',
    elfMachine: 183, // EM_AARCH64
    strip: 'aarch64-linux-gnu-strip',
    compiler: 'aarch64-linux-gnu-g++',
    cmakeArgs: ['--arch', 'arm64', `--CDCMAKE_TOOLCHAIN_FILE=${path.join(root, 'cmake', 'toolchain-aarch64-linux-gnu.cmake')}`],
  },
};

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { stdio: 'inherit', ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

function capture(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, ...options });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${result.stderr}`);
  return result.stdout;
}

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

// ---------------------------------------------------------------------------
// Shim mode: prebuildify runs `<shim> rebuild --target=.. --arch=.. --release`
// in the staging folder and then takes <staging>/build/Release/*.node.
function shim(argv) {
  const arch = (argv.find((a) => a.startsWith('--arch=')) ?? `--arch=${os.arch()}`).slice('--arch='.length);
  const target = TARGETS[arch];
  if (!target) throw new Error(`prebuild shim: no cross-compile setup for arch ${arch}`);
  const config = argv.includes('--debug') ? 'Debug' : 'Release';
  const buildDir = path.join(root, target.buildDir);
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  const status = run(process.execPath,
    [cmakeJs, 'compile', '--directory', root, '--out', buildDir, '--config', config, ...target.cmakeArgs],
    { cwd: root });
  if (status !== 0) process.exit(status);
  const produced = path.join(buildDir, config, `${pkg.name}.node`);
  const dest = path.join(process.cwd(), 'build', config);
  fs.mkdirSync(dest, { recursive: true });
  fs.copyFileSync(produced, path.join(dest, `${pkg.name}.node`));
}

// ---------------------------------------------------------------------------
// Tools: CI may start from a bare Debian/Ubuntu image.
function ensureTools(archs) {
  const wanted = [
    ['cmake', 'cmake'],
    ['g++', 'g++'],
    ['ninja', 'ninja-build'],
    ['readelf', 'binutils'],
  ];
  if (archs.includes('arm64')) {
    wanted.push(['aarch64-linux-gnu-g++', 'g++-aarch64-linux-gnu'], ['aarch64-linux-gnu-strip', 'binutils-aarch64-linux-gnu']);
  }
  const missing = wanted.filter(([cmd]) => !onPath(cmd)).map(([, apt]) => apt);
  if (missing.length === 0) return;
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  console.log(`prebuild: installing ${missing.join(' ')}`);
  const aptCmd = (args) => (sudo.length ? run('sudo', ['apt-get', ...args]) : run('apt-get', args));
  if (aptCmd(['update']) !== 0 || aptCmd(['install', '-y', '--no-install-recommends', ...missing]) !== 0) {
    throw new Error(`prebuild: could not install ${missing.join(' ')} with apt-get`);
  }
}

function ensureDevDependencies() {
  try {
    for (const m of ['prebuildify', 'cmake-js/bin/cmake-js', 'node-addon-api', 'node-api-headers']) {
      require.resolve(m, { paths: [root] });
    }
  } catch {
    console.log('prebuild: node_modules incomplete, running npm ci --ignore-scripts');
    if (run('npm', ['ci', '--ignore-scripts'], { cwd: root }) !== 0) throw new Error('npm ci failed');
  }
}

// ---------------------------------------------------------------------------
// Checks on the produced binary. A check passes when fn returns true or a
// detail string, and fails when it returns anything else or throws.
const checks = { passed: 0, failed: 0 };
function check(name, fn) {
  let detail = '';
  let ok = false;
  try {
    const r = fn();
    ok = r === true || (typeof r === 'string' && (detail = r, true));
  } catch (err) {
    detail = err.message;
  }
  if (ok) checks.passed++;
  else checks.failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} - ${name}${detail ? `: ${detail}` : ''}`);
  return ok;
}

function compareVersions(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

// Highest version of each versioned dependency (GLIBC_, GLIBCXX_, ...) the
// dynamic linker will demand. readelf reads any ELF, whatever the host.
function requiredVersions(file) {
  const out = capture('readelf', ['-V', '--wide', file]);
  const max = {};
  for (const m of out.matchAll(/Name: ([A-Z]+)_([0-9.]+)/g)) {
    const v = m[2].split('.').map(Number);
    if (!max[m[1]] || compareVersions(v, max[m[1]]) > 0) max[m[1]] = v;
  }
  return max;
}

function objectFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.o')) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

const isaObject = (file) => /_(avx2|avx512)\.cc\.o$/.test(file);

// The binary must run on a CPU without AVX: only the per-ISA translation units
// may contain VEX/EVEX code, and none of their code may be shared with the
// rest through a COMDAT (an inline function or template instantiated in both
// an AVX-512 unit and a baseline unit: the linker keeps either copy).
function checkX86Baseline(buildDir) {
  const objects = objectFiles(buildDir);
  if (objects.length === 0) throw new Error(`no object files under ${buildDir}`);
  check(`baseline x86-64 objects contain no VEX/EVEX instructions (${objects.filter((o) => !isaObject(o)).length} objects)`, () => {
    const offenders = [];
    for (const o of objects.filter((f) => !isaObject(f))) {
      const asm = capture('objdump', ['-d', '--no-show-raw-insn', o]);
      const hits = asm.split('\n').filter((l) => /%[yz]mm\d|%k[0-7]\b|^\s+[0-9a-f]+:\s+v(?!err|erw)[a-z0-9]+\s/.test(l));
      if (hits.length) offenders.push(`${path.relative(buildDir, o)} (${hits.length}, e.g. ${hits[0].trim()})`);
    }
    if (offenders.length) throw new Error(offenders.join('; '));
    return true;
  });
  // A dynamic initializer in an AVX unit runs at dlopen on every CPU; GCC
  // happily fills a table of function pointers with zmm stores (seen: SIGILL
  // on load under qemu -cpu Haswell). Tables must be constant-initialized
  // (constexpr factory), which leaves no .init_array in the object.
  check('AVX2/AVX-512 units run no code at load (no .init_array/.ctors)', () => {
    const withInit = objects.filter(isaObject)
      .filter((o) => /\s\.(init_array|ctors)\b/.test(capture('readelf', ['-S', '--wide', o])))
      .map((o) => path.basename(o, '.o'));
    if (withInit.length) {
      throw new Error(`static initializers in ${withInit.join(', ')} (make the kernel-table factory constexpr)`);
    }
    return true;
  });
  check('no weak/COMDAT symbol of an AVX2/AVX-512 unit is shared with baseline code', () => {
    const symbols = (o) => capture('nm', ['--format=posix', o]).split('\n').filter(Boolean).map((l) => l.split(' '));
    const elsewhere = new Set();
    for (const o of objects.filter((f) => !isaObject(f))) for (const [name] of symbols(o)) elsewhere.add(name);
    const shared = [];
    for (const o of objects.filter(isaObject)) {
      for (const [name, type] of symbols(o)) {
        if (/^[WVuiv]$/.test(type) && elsewhere.has(name)) shared.push(`${name} (${path.basename(o)})`);
      }
    }
    if (shared.length) throw new Error(`shared: ${shared.slice(0, 5).join(', ')}${shared.length > 5 ? ', ...' : ''}`);
    return true;
  });
}

function verify(arch, target) {
  const dir = path.join(root, 'prebuilds', `linux-${arch}`);
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.node')) : [];
  const one = check(`prebuilds/linux-${arch} holds exactly one addon`, () => {
    if (files.length !== 1) throw new Error(`found [${files.join(', ')}]`);
    return files[0];
  });
  if (!one) return;
  const file = path.join(dir, files[0]);
  const bytes = fs.readFileSync(file);
  console.log(`prebuilds/linux-${arch}/${files[0]}: ${bytes.length} bytes`);
  check(`${arch}: ELF machine is ${target.elfMachine}`, () => bytes.readUInt32BE(0) === 0x7f454c46 && bytes.readUInt16LE(18) === target.elfMachine);
  check(`${arch}: stripped (no .symtab / .debug_*)`, () => !/\s\.(symtab|debug_\w+)\s/.test(capture('readelf', ['-S', '--wide', file])));
  check(`${arch}: needs at most GLIBC_${MAX_GLIBC.join('.')} and GLIBCXX_${MAX_GLIBCXX.join('.')}`, () => {
    const v = requiredVersions(file);
    const text = Object.entries(v).map(([k, x]) => `${k}_${x.join('.')}`).join(' ');
    if (v.GLIBC && compareVersions(v.GLIBC, MAX_GLIBC) > 0) throw new Error(`needs ${text}`);
    if (v.GLIBCXX && compareVersions(v.GLIBCXX, MAX_GLIBCXX) > 0) throw new Error(`needs ${text}`);
    return text;
  });
  // A shared object links with undefined symbols, so a glue function declared
  // but never compiled only fails at load time, which for arm64 is far away
  // under qemu. Everything unresolved must be Node-API (provided by node) or
  // versioned (libc, libstdc++, libgcc).
  check(`${arch}: every undefined symbol is Node-API or versioned libc/libstdc++`, () => {
    const unresolved = capture('readelf', ['--dyn-syms', '--wide', file]).split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[6] === 'UND' && f[7] && f[4] === 'GLOBAL' && !f[7].includes('@'))
      .map((f) => f[7])
      .filter((name) => !/^(napi_|node_api_)/.test(name));
    if (unresolved.length) throw new Error(`unresolved: ${unresolved.slice(0, 8).join(', ')}`);
    return true;
  });
  // node-gyp-build's own resolver must pick this file for a glibc node of
  // that arch, even with a build/Release present (PREBUILDS_ONLY skips it).
  check(`${arch}: node-gyp-build resolves it (PREBUILDS_ONLY=1, npm_config_arch=${arch})`, () => {
    const out = capture(process.execPath, ['-p', `require('node-gyp-build').resolve(${JSON.stringify(root)})`], {
      cwd: root,
      env: { ...process.env, PREBUILDS_ONLY: '1', npm_config_arch: arch, npm_config_platform: 'linux' },
    }).trim();
    if (out !== file) throw new Error(`resolved ${out}`);
    return true;
  });
  if (arch === 'x64') checkX86Baseline(path.join(root, target.buildDir));
  if (arch === os.arch()) {
    check(`${arch}: loads in this node and reports an ISA`, () => {
      const out = capture(process.execPath, ['-p', `const a = require(${JSON.stringify(file)}); a.isa() + ' of ' + a.availableIsas().join(',')`]).trim();
      return out;
    });
  }
}

function prebuildify(opts) {
  const prebuildifyFn = require(require.resolve('prebuildify', { paths: [root] }));
  return new Promise((resolve, reject) => prebuildifyFn(opts, (err) => (err ? reject(err) : resolve())));
}

async function buildOne(arch) {
  const target = TARGETS[arch];
  const started = Date.now();
  const buildDir = path.join(root, target.buildDir);
  const stage = path.join(buildDir, 'prebuildify-stage');
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage, { recursive: true });
  const shimPath = path.join(stage, 'node-gyp-shim');
  fs.writeFileSync(shimPath, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(__filename)} --shim "$@"\n`, { mode: 0o755 });
  // Old names would be picked up too (node-gyp-build sorts by specificity).
  fs.rmSync(path.join(root, 'prebuilds', `linux-${arch}`), { recursive: true, force: true });
  console.log(`\n== prebuild linux-${arch} (cmake-js in ${target.buildDir})`);
  await prebuildify({
    cwd: stage,
    out: root,
    name: pkg.name,
    napi: true,
    targets: [{ runtime: 'node', target: process.versions.node }],
    platform: 'linux',
    arch,
    libc: 'glibc',
    tagLibc: true,
    strip: true,
    stripBin: target.strip,
    nodeGyp: shimPath,
  });
  console.log(`built linux-${arch} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  writeStamp(arch);
  verify(arch, target);
}

async function main() {
  const argv = process.argv.slice(2);
  const archs = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--arch' && argv[i + 1]) archs.push(argv[++i]);
    else if (argv[i].startsWith('--arch=')) archs.push(argv[i].slice(7));
    else throw new Error(`unknown argument ${argv[i]} (usage: prebuild.cjs [--arch x64|arm64]...)`);
  }
  if (archs.length === 0) archs.push('x64', 'arm64');
  for (const a of archs) if (!TARGETS[a]) throw new Error(`unsupported arch ${a} (x64, arm64)`);
  if (process.platform !== 'linux' || os.arch() !== 'x64') {
    throw new Error('prebuild.cjs cross-compiles from a linux-x64 host only');
  }
  ensureTools(archs);
  ensureDevDependencies();
  for (const a of archs) {
    try {
      await buildOne(a);
    } catch (err) {
      check(`build linux-${a}`, () => { throw err; });
    }
  }
  console.log(`${checks.passed} passed, ${checks.failed} failed`);
  process.exitCode = checks.failed ? 1 : 0;
}

if (process.argv[2] === '--shim') {
  try {
    shim(process.argv.slice(3));
  } catch (err) {
    console.error(err.stack || err.message);
    process.exit(1);
  }
} else main().catch((err) => {
  console.error(err.stack || err.message);
  console.log(`${checks.passed} passed, ${checks.failed + 1} failed`);
  process.exit(1);
});
