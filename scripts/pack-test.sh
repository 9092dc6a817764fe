#!/usr/bin/env bash
# Tests the package as users get it: `npm pack`, then install the tarball into
# an empty project with --ignore-scripts (no install step at all), with
# PREBUILDS_ONLY=1 and with a PATH holding nothing but node and npm (no cc,
# g++, cmake, make), and use it from CommonJS and from ESM.
# Then the source-build path of an unsupported platform: with prebuilds/
# removed, loading must fail with an actionable error whose build command
# works, and BNKIT_BUILD_ON_LOAD=1 must build on load.
#
# Usage: bash scripts/pack-test.sh
#   PACK_TEST_SKIP_SOURCE_BUILD=1  skip the (slower) source-build stage
#   PACK_TEST_KEEP=1               keep the temporary folder
# Last line: "N passed, N failed".
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
passed=0
failed=0
started=$SECONDS
tmp="$(mktemp -d "${TMPDIR:-/tmp}/bnkit-pack-test.XXXXXX")"
[ "${PACK_TEST_KEEP:-0}" = 1 ] || trap 'rm -rf "$tmp"' EXIT

# A clean clone has no node_modules; --ignore-scripts keeps npm from running
# this package's own install/prepare steps here.
ensure_node_modules() {
  [ -d node_modules/typescript ] && [ -d node_modules/node-gyp-build ] && return 0
  npm ci --ignore-scripts --no-audit --no-fund
}

pass() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
expect() { # expect <description> <command...>
  local what="$1"
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
stage_start=$SECONDS
stage() {
  [ "$stage_start" -ne "$SECONDS" ] && echo "   ($((SECONDS - stage_start)) s)"
  stage_start=$SECONDS
  echo
  echo "== $1"
}
finish() {
  stage "done"
  echo "pack test took $((SECONDS - started)) s"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

# ---------------------------------------------------------------------------
stage "pack"
ensure_node_modules >"$tmp/npm-ci.log" 2>&1 || { cat "$tmp/npm-ci.log"; fail "npm ci"; finish; }
if ! node scripts/prebuild-sources.cjs >/dev/null 2>&1; then
  echo "prebuilds missing or built from other sources: running scripts/prebuild.cjs"
  node scripts/prebuild.cjs >"$tmp/prebuild.log" 2>&1 || { tail -30 "$tmp/prebuild.log"; fail "npm run prebuild"; finish; }
fi
# `npm pack` runs the prepare script (tsc + ESM wrapper), so dist/ is current.
if ! npm pack --json --pack-destination "$tmp" >"$tmp/pack.json" 2>"$tmp/pack.err"; then
  cat "$tmp/pack.err"
  fail "npm pack"
  finish
fi
tarball="$tmp/$(node -p 'require(process.argv[1])[0].filename' "$tmp/pack.json")"
node -e '
  const [info] = require(process.argv[1]);
  const kb = (n) => (n / 1024).toFixed(1) + " KiB";
  console.log(`tarball ${info.filename}: ${info.size} bytes (${kb(info.size)}), unpacked ${kb(info.unpackedSize)}, ${info.entryCount} files`);
  for (const f of info.files.filter((f) => f.path.endsWith(".node"))) console.log(`  ${f.path}: ${f.size} bytes`);
' "$tmp/pack.json"
node -p 'require(process.argv[1])[0].files.map((f) => f.path).join("\n")' "$tmp/pack.json" >"$tmp/files.txt"
for f in prebuilds/linux-x64/bnkit.glibc.node prebuilds/linux-arm64/bnkit.glibc.node dist/index.js dist/index.mjs \
  dist/index.d.ts dist/native.js CMakeLists.txt cmake/flags.cmake cmake/toolchain-aarch64-linux-gnu.cmake \
  binding/addon.cc scripts/install.cjs package.json LICENSE README.md prebuilds/linux-x64/sources.sha256 \
  prebuilds/linux-arm64/sources.sha256; do
  expect "tarball ships $f" grep -qx "$f" "$tmp/files.txt"
done
unwanted="$(grep -E '^(build|build-[^/]*|test|lib|bench|node_modules|\.cache|\.ci)/|\.map$|\.tgz$|^scripts/(prebuild|pack-test|qemu-tests|arm64-node)' "$tmp/files.txt" || true)"
expect "tarball has no build/, tests, TypeScript sources, source maps or dev scripts${unwanted:+ (found: $(echo $unwanted))}" test -z "$unwanted"

# ---------------------------------------------------------------------------
stage "install into an empty project: --ignore-scripts, PREBUILDS_ONLY=1, no compiler on PATH"
bin="$tmp/bin"
mkdir -p "$bin"
ln -s "$(readlink -f "$(command -v node)")" "$bin/node"
ln -s "$(readlink -f "$(command -v npm)")" "$bin/npm"
export PREBUILDS_ONLY=1
nocc=(env "PATH=$bin" PREBUILDS_ONLY=1)
expect "no compiler or build tool reachable on the test PATH" \
  env PATH="$bin" "$bin/node" -e '
    const fs = require("fs"), path = require("path");
    const tools = ["cc", "gcc", "g++", "c++", "clang", "clang++", "cmake", "make", "ninja"];
    const found = tools.filter((t) => process.env.PATH.split(":").some((d) => fs.existsSync(path.join(d, t))));
    if (found.length) { console.error("found " + found); process.exit(1); }'
app="$tmp/app"
mkdir -p "$app"
echo '{ "name": "bnkit-pack-test", "version": "1.0.0", "private": true }' >"$app/package.json"
if (cd "$app" && "${nocc[@]}" npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$tarball"); then
  pass "npm install --ignore-scripts of the tarball"
else
  fail "npm install --ignore-scripts of the tarball"
  finish
fi
installed="$app/node_modules/bnkit"
expect "installed package has no build/ folder (nothing can shadow prebuilds/)" test ! -e "$installed/build"
cp test/package/smoke.cjs "$app/smoke.cjs"

stage "CommonJS: require('bnkit')"
resolved="$(cd "$app" && "${nocc[@]}" node -p 'require("node-gyp-build").resolve(require("path").dirname(require.resolve("bnkit/package.json")))' 2>&1)"
echo "node-gyp-build picks: $resolved"
expect "the addon comes from the package's prebuilds/linux-$(node -p process.arch)/" \
  test "$resolved" = "$(readlink -f "$installed")/prebuilds/linux-$(node -p process.arch)/bnkit.glibc.node"
(cd "$app" && "${nocc[@]}" node smoke.cjs) | sed 's/^/    /'
expect "CommonJS smoke test (BatchNorm vs float64 reference, every available ISA)" test "${PIPESTATUS[0]}" -eq 0

stage "ESM: import from 'bnkit'"
cat >"$app/esm-test.mjs" <<'EOF'
import * as bnkit from 'bnkit';
import bnkitDefault, { BatchNorm2d, isa } from 'bnkit';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const cjs = require('bnkit');
let failures = 0;
const expect = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} - ${what}`);
  if (!ok) failures++;
};
expect(typeof BatchNorm2d === 'function' && typeof isa === 'function', 'named imports resolve');
expect(bnkitDefault === cjs, 'default import is the CommonJS module object');
expect(bnkit.BatchNorm2d === cjs.BatchNorm2d, 'ESM and CommonJS share one set of classes (one addon instance)');
const { run } = require('./smoke.cjs');
if (!run(bnkit)) failures++;
process.exitCode = failures ? 1 : 0;
EOF
(cd "$app" && "${nocc[@]}" node esm-test.mjs) | sed 's/^/    /'
expect "ESM import + smoke test" test "${PIPESTATUS[0]}" -eq 0

stage "types and install script"
cat >"$app/consumer.ts" <<'EOF'
import { BatchNorm2d, Tensor, isa, type IsaName } from 'bnkit';
const bn = new BatchNorm2d(3, { momentum: 0.1, channelsLast: false });
const y: Tensor = bn.forward(new Tensor(new Float32Array(2 * 3 * 2 * 2), [2, 3, 2, 2]));
const path: IsaName = isa();
console.log(y.shape, path);
EOF
expect "TypeScript consumer type-checks against the shipped .d.ts" \
  node "$repo/node_modules/typescript/bin/tsc" --noEmit --strict --module node16 --moduleResolution node16 \
  --types node --typeRoots "$repo/node_modules/@types" "$app/consumer.ts"
# What `npm install` without --ignore-scripts would run: it must accept the
# prebuild and exit without looking for a compiler or node-gyp.
out="$(cd "$installed" && "${nocc[@]}" node scripts/install.cjs 2>&1)"
rc=$?
[ -n "$out" ] && echo "$out" | sed 's/^/    /'
expect "install script accepts the prebuild (exit 0, silent, no build/ created)" \
  test "$rc" -eq 0 -a -z "$out" -a ! -e "$installed/build"

# ---------------------------------------------------------------------------
if [ "${PACK_TEST_SKIP_SOURCE_BUILD:-0}" = 1 ]; then
  echo "skipping the source-build stage (PACK_TEST_SKIP_SOURCE_BUILD=1)"
  finish
fi
stage "unsupported platform: no prebuild -> actionable error, then build from source"
unset PREBUILDS_ONLY
if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo
  $sudo_ apt-get update && $sudo_ apt-get install -y --no-install-recommends cmake g++ make
fi
src="$tmp/src-app"
mkdir -p "$src"
echo '{ "name": "bnkit-source-test", "version": "1.0.0", "private": true }' >"$src/package.json"
(cd "$src" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error "$tarball") || fail "install for the source build"
rm -rf "$src/node_modules/bnkit/prebuilds"
err="$(cd "$src" && node -e 'require("bnkit")' 2>&1)"
echo "$err" | sed -n '1,8p' | sed 's/^/    /'
expect "load error names platform, arch and libc" \
  grep -q "platform=linux arch=$(node -p process.arch) libc=glibc" <<<"$err"
expect "load error gives the build command and BNKIT_BUILD_ON_LOAD" \
  bash -c 'grep -q "npm install --no-save cmake-js" <<<"$1" && grep -q "BNKIT_BUILD_ON_LOAD=1" <<<"$1"' _ "$err"
cmd="$(grep -A1 '^Build it from source' <<<"$err" | tail -1 | sed 's/^ *//')"
echo "running the suggested command: $cmd"
bash -c "$cmd" >"$tmp/source-build.log" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && [ -f "$src/node_modules/bnkit/build/Release/bnkit.node" ]; then
  pass "the suggested command builds the addon"
else
  tail -40 "$tmp/source-build.log" | sed 's/^/    /'
  fail "the suggested command builds the addon (exit $rc$([ -f "$src/node_modules/bnkit/build/Release/bnkit.node" ] || echo ', no build/Release/bnkit.node'))"
fi
(cd "$src" && node "$repo/test/package/smoke.cjs" bnkit) >"$tmp/source-smoke.log" 2>&1
expect "source-built addon passes the smoke test" test $? -eq 0
rm -rf "$src/node_modules/bnkit/build"
(cd "$src" && BNKIT_BUILD_ON_LOAD=1 SMOKE_ALL_ISAS=0 node "$repo/test/package/smoke.cjs" bnkit) >"$tmp/build-on-load.log" 2>&1
rc=$?
tail -3 "$tmp/build-on-load.log" | sed 's/^/    /'
expect "BNKIT_BUILD_ON_LOAD=1 builds on first load and works" test "$rc" -eq 0

finish
