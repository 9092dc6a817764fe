#!/usr/bin/env bash
# Builds a throw-away arm64 root holding Debian bookworm's own Node.js and the
# libraries it links (glibc, libstdc++, ICU, OpenSSL...), so that
#   qemu-aarch64 -L <root> <root>/usr/bin/node
# runs a real arm64 node against real arm64 system libraries. Nothing is
# installed into /: the .deb files are fetched with `apt-get download` and
# unpacked with `dpkg -x` into the cache folder (gitignored).
#
# Usage: bash scripts/arm64-node.sh [--refresh]
#   BNKIT_ARM64_ROOT  where to unpack (default: <repo>/.cache/arm64-root)
# Prints the root path on the last line of stdout before the check summary.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${BNKIT_ARM64_ROOT:-$repo/.cache/arm64-root}"
debs="$(dirname "$root")/arm64-debs"
stamp="$root/.bnkit-complete"
passed=0
failed=0

check() { # check <description> <command...>
  local what="$1"
  shift
  if "$@"; then
    echo "ok   - $what"
    passed=$((passed + 1))
  else
    echo "FAIL - $what"
    failed=$((failed + 1))
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# qemu-user is the only host tool needed; CI machines may not have it.
if ! command -v qemu-aarch64 >/dev/null; then
  as_root apt-get update
  as_root apt-get install -y --no-install-recommends qemu-user
fi

# "arm64 v18.x" when the root's node runs under qemu (one start: ~5 s).
node_version() {
  [ -x "$root/usr/bin/node" ] &&
    qemu-aarch64 -L "$root" "$root/usr/bin/node" -p 'process.arch + " " + process.version' 2>&1
}

version=""
if [ "${1:-}" != "--refresh" ] && [ -f "$stamp" ] && version="$(node_version)" && [ "${version%% *}" = arm64 ]; then
  echo "arm64 root already complete: $root ($(wc -l <"$stamp") packages)"
else
  # Package lists for arm64 exist only after the architecture is added.
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    as_root dpkg --add-architecture arm64
    as_root apt-get update
  elif ! apt-cache show --no-all-versions nodejs:arm64 >/dev/null 2>&1; then
    as_root apt-get update
  fi

  # Resolves the Depends/Pre-Depends closure of the two roots, one dependency
  # level per apt-cache call (each call costs ~2 s where apt's package cache
  # is disabled, as in Docker images). Architecture-dependent packages are
  # taken as :arm64; Architecture: all ones (node-acorn, node-undici, ...) by
  # their plain name. Of "a | b" only a is followed, and a virtual package is
  # replaced by its arm64 provider, so the closure stays the ~20 packages node
  # needs instead of apt's full recursive tree (~95, with perl and python).
  qualify() { # qualify <name[:arch]>... -> name:arm64 or name (arch all), one a line
    local -a bases=() missing=()
    local name
    for name in "$@"; do bases+=("${name%%:*}"); done
    declare -A arch=()
    while read -r name a; do arch[$name]=$a; done < <(
      apt-cache show --no-all-versions "${bases[@]/%/:arm64}" 2>/dev/null |
        awk '/^Package:/ {p = $2} /^Architecture:/ {print p, $2}')
    for name in "${bases[@]}"; do [ -z "${arch[$name]:-}" ] && missing+=("$name"); done
    if [ "${#missing[@]}" -gt 0 ]; then
      while read -r name a; do arch[$name]=$a; done < <(
        apt-cache show --no-all-versions "${missing[@]}" 2>/dev/null |
          awk '/^Package:/ {p = $2} /^Architecture:/ {print p, $2}')
    fi
    for name in "${bases[@]}"; do
      case "${arch[$name]:-}" in
        all) echo "$name" ;;
        arm64) echo "$name:arm64" ;;
        *) echo "no arm64 or arch-all candidate for $name" >&2; return 1 ;;
      esac
    done
  }
  direct_deps() { # prints the first alternative of each dependency of each argument
    apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "$@" | awk '
        function flush() { if (pending != "") print pending; pending = ""; virtual = 0 }
        /^[^ ]/ { flush(); in_alt = 0; next }
        /^ *\|?(Pre)?Depends:/ {
          flush()
          take = !in_alt
          in_alt = ($1 ~ /^\|/)
          if (!take) next
          if ($2 ~ /^</) virtual = 1; else print $2
          next
        }
        virtual && /^    [^ ]/ {
          # Providers of a virtual package: the arm64 one wins, else the first.
          if ($1 ~ /:arm64$/) { pending = $1; flush() } else if (pending == "") pending = $1
          next
        }
        END { flush() }' | sort -u
  }

  declare -A seen=()
  level=(nodejs:arm64 libnode108:arm64)
  packages=()
  while [ "${#level[@]}" -gt 0 ]; do
    fresh=()
    while read -r pkg; do
      [ -n "${seen[$pkg]:-}" ] && continue
      seen[$pkg]=1
      fresh+=("$pkg")
    done < <(qualify "${level[@]}")
    [ "${#fresh[@]}" -eq 0 ] && break
    packages+=("${fresh[@]}")
    mapfile -t level < <(direct_deps "${fresh[@]}")
  done
  echo "arm64 closure (${#packages[@]} packages): ${packages[*]}"

  rm -rf "$debs" "$root"
  mkdir -p "$debs" "$root"
  # apt's _apt user cannot write into a root-owned cache; downloading
  # unsandboxed is fine for a user-owned scratch folder.
  (cd "$debs" && apt-get download -o APT::Sandbox::User=root "${packages[@]}")
  for deb in "$debs"/*.deb; do
    dpkg -x "$deb" "$root"
  done
  # Debian's dynamic loader is /lib/ld-linux-aarch64.so.1; make sure it exists
  # even if a package only shipped it under /usr/lib (merged-/usr layouts).
  if [ ! -e "$root/lib/ld-linux-aarch64.so.1" ] && [ -e "$root/usr/lib/ld-linux-aarch64.so.1" ]; then
    mkdir -p "$root/lib"
    ln -s ../usr/lib/ld-linux-aarch64.so.1 "$root/lib/ld-linux-aarch64.so.1"
  fi
  (cd "$debs" && ls -1 *.deb) >"$stamp"
fi

# The root's own C and C++ runtimes must be there: with -L, qemu resolves the
# guest's /lib and /usr/lib inside the root, never against the cross
# toolchain's /usr/aarch64-linux-gnu.
check "arm64 glibc unpacked" test -e "$root/lib/aarch64-linux-gnu/libc.so.6"
check "arm64 libstdc++ unpacked" test -e "$root/usr/lib/aarch64-linux-gnu/libstdc++.so.6"
check "arm64 libnode unpacked" test -e "$root/usr/lib/aarch64-linux-gnu/libnode.so.108"
elf_machine() { od -An -tx1 -j18 -N2 "$1" | tr -d ' \n'; } # b700 = EM_AARCH64
check "node binary is aarch64" test "$(elf_machine "$root/usr/bin/node")" = b700
[ "${version%% *}" = arm64 ] || version="$(node_version || true)"
echo "qemu-aarch64 node: $version"
check "qemu-aarch64 runs the arm64 node" test "${version%% *}" = arm64
echo "$root"
finish
