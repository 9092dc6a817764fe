#!/usr/bin/env bash
# Proves the prebuilt binaries on CPUs this machine is not:
#   - qemu-x86_64 -cpu Nehalem (SSE4.2, no AVX): the x64 prebuild must load,
#     choose the scalar path, compute correctly, and never die of SIGILL, even
#     when BNKIT_ISA asks for an ISA the CPU lacks;
#   - qemu-x86_64 -cpu Haswell (AVX2+FMA, no AVX-512): avx2 is chosen;
#   - qemu-aarch64 with Debian bookworm's arm64 node (scripts/arm64-node.sh):
#     the arm64 prebuild loads and chooses neon.
# Each run loads the package from dist/ with PREBUILDS_ONLY=1, so
# node-gyp-build must pick prebuilds/<platform>-<arch>/ and never a
# build/Release left by a developer build, then runs test/package/smoke.cjs.
#
# Usage: bash scripts/qemu-tests.sh     (last line: "N passed, N failed")
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
node_bin="$(command -v node)"
passed=0
failed=0
started=$SECONDS
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

# A clean clone has no node_modules; --ignore-scripts keeps npm from running
# this package's own install/prepare steps here.
ensure_node_modules() {
  [ -d node_modules/typescript ] && [ -d node_modules/node-gyp-build ] && return 0
  npm ci --ignore-scripts --no-audit --no-fund
}

pass() { echo "ok   - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
stage() { echo; echo "== $1 (t=$((SECONDS - started)) s)"; }
finish() {
  echo
  echo "qemu stage took $((SECONDS - started)) s"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Describes an exit status the way a reader needs it: a guest SIGILL shows up
# as qemu dying of signal 4 (status 132).
describe_status() {
  case "$1" in
    0) echo "exit 0" ;;
    132) echo "SIGILL (illegal instruction)" ;;
    *) if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128))"; else echo "exit $1"; fi ;;
  esac
}

# run_guest <name> <command...>: runs it, keeps output in $log/<name>, prints
# it indented without qemu's "TCG doesn't support requested feature" noise
# (the Haswell model names a few features TCG leaves out: pcid, x2apic...).
run_guest() {
  local name="$1"
  shift
  local t0=$SECONDS
  "$@" >"$log/$name" 2>&1
  local rc=$?
  grep -v "TCG doesn't support requested feature" "$log/$name" | sed 's/^/    /'
  echo "    [$name: $(describe_status "$rc"), $((SECONDS - t0)) s]"
  return $rc
}

# ---------------------------------------------------------------------------
stage "tools"
if ! command -v qemu-x86_64 >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  as_root apt-get update && as_root apt-get install -y --no-install-recommends qemu-user
fi
command -v qemu-x86_64 >/dev/null && command -v qemu-aarch64 >/dev/null && pass "qemu-user installed" ||
  { fail "qemu-user installed"; finish; }

ensure_node_modules >"$log/npm-ci" 2>&1 || { cat "$log/npm-ci"; fail "npm ci"; finish; }
# The package as a user loads it: dist/ (TypeScript output) plus prebuilds/.
if [ ! -f dist/index.js ]; then
  npm run build:ts >"$log/build-ts" 2>&1 || { cat "$log/build-ts"; fail "npm run build:ts"; finish; }
fi
if ! ls prebuilds/linux-x64/*.node prebuilds/linux-arm64/*.node >/dev/null 2>&1; then
  echo "prebuilds missing: running scripts/prebuild.cjs"
  node scripts/prebuild.cjs >"$log/prebuild" 2>&1 || { tail -30 "$log/prebuild"; fail "npm run prebuild"; finish; }
fi
ls prebuilds/linux-x64/*.node >/dev/null 2>&1 && pass "x64 prebuild present" || fail "x64 prebuild present"
ls prebuilds/linux-arm64/*.node >/dev/null 2>&1 && pass "arm64 prebuild present" || fail "arm64 prebuild present"

export PREBUILDS_ONLY=1
# The loader and the smoke test; BNKIT_ISA probes need only the load.
load_probe='const b = require(process.argv[1]); console.log("isa() = " + b.isa() + ", available = " + b.availableIsas().join(","))'

# expect_isa_error <name> <isa> <runner...>: BNKIT_ISA=<isa> must make
# loading fail with a JavaScript error naming the variable, not a signal.
expect_isa_error() {
  local name="$1" isa="$2"
  shift 2
  BNKIT_ISA="$isa" run_guest "$name" "$@" -e "$load_probe" "$repo"
  local rc=$?
  if [ "$rc" -ge 1 ] && [ "$rc" -lt 128 ] && grep -q "BNKIT_ISA=$isa is not supported on this CPU or build" "$log/$name"; then
    pass "$name: BNKIT_ISA=$isa refused with a clear error ($(describe_status $rc))"
  else
    fail "$name: BNKIT_ISA=$isa should fail with 'BNKIT_ISA=$isa is not supported on this CPU or build', got $(describe_status $rc)"
  fi
}

# expect_smoke <name> <isa> <available> <runner...>
expect_smoke() {
  local name="$1" isa="$2" available="$3"
  shift 3
  SMOKE_EXPECT_ISA="$isa" SMOKE_EXPECT_AVAILABLE="$available" run_guest "$name" "$@" test/package/smoke.cjs "$repo"
  local rc=$?
  local summary
  summary="$(grep -o 'smoke: [0-9]* passed, [0-9]* failed' "$log/$name" | tail -1)"
  if [ "$rc" -eq 0 ]; then
    pass "$name: isa() = $isa, batch norm matches the float64 reference (${summary#smoke: })"
  else
    fail "$name: smoke test $(describe_status $rc) (${summary:-no summary})"
  fi
}

# ---------------------------------------------------------------------------
stage "x86-64 without AVX: qemu-x86_64 -cpu Nehalem"
nehalem=(qemu-x86_64 -cpu Nehalem "$node_bin")
expect_smoke nehalem-smoke scalar scalar "${nehalem[@]}"
expect_isa_error nehalem-force-avx512 avx512 "${nehalem[@]}"
expect_isa_error nehalem-force-avx2 avx2 "${nehalem[@]}"

# ---------------------------------------------------------------------------
stage "x86-64 with AVX2, no AVX-512: qemu-x86_64 -cpu Haswell"
haswell=(qemu-x86_64 -cpu Haswell "$node_bin")
# Both paths this CPU can run are checked (the smoke test walks availableIsas()).
expect_smoke haswell-smoke avx2 scalar,avx2 "${haswell[@]}"
expect_isa_error haswell-force-avx512 avx512 "${haswell[@]}"
BNKIT_ISA=scalar run_guest haswell-force-scalar "${haswell[@]}" -e "$load_probe" "$repo"
grep -q '^isa() = scalar,' "$log/haswell-force-scalar" && pass "haswell: BNKIT_ISA=scalar is honoured" ||
  fail "haswell: BNKIT_ISA=scalar is honoured"

# ---------------------------------------------------------------------------
stage "linux-arm64: qemu-aarch64 with Debian bookworm's node"
if run_guest arm64-root bash scripts/arm64-node.sh; then
  pass "arm64 node root ready (scripts/arm64-node.sh)"
  arm64_root="$(tail -2 "$log/arm64-root" | head -1)"
  aarch64=(qemu-aarch64 -L "$arm64_root" "$arm64_root/usr/bin/node")
  expect_smoke arm64-smoke neon scalar,neon "${aarch64[@]}"
  expect_isa_error arm64-force-avx2 avx2 "${aarch64[@]}"
else
  fail "arm64 node root ready (scripts/arm64-node.sh)"
fi

finish
