#!/usr/bin/env bash
# Profile-guided release build of warden: target/pgo/warden.
#
#   1. builds warden instrumented (-Cprofile-generate) in target/pgo-gen;
#   2. runs it under a mixed workload in front of the bundled mock upstream
#      (benches/pgo_train.py: everything off, everything on, everything on with Redis;
#      short, streamed, 32 KB and long-conversation requests, refusals, admin calls);
#   3. merges the profiles with llvm-profdata and builds warden again with
#      -Cprofile-use in target/pgo.
#
# Both builds name the host as --target, so that RUSTFLAGS reach warden and its
# dependencies but not build scripts and proc macros (which would otherwise be
# instrumented too, and write profiles of their own while the crates compile).
#
# The plain `cargo build --release` binaries are built too (target/release: the training
# run uses its mock upstream; the benchmark compares the plain warden with this one). On
# this 2-core machine: ~13 min from nothing, ~7 min after a change to warden's own code.
#
# llvm-profdata must come from the same LLVM major version as rustc's. It is taken from
# rustup's llvm-tools component, else llvm-profdata-N / /usr/lib/llvm-N (Debian's llvm-N
# package), and installed if missing (rustup component add llvm-tools, or apt-get).
# Exits 3 if none can be had: the caller can fall back to the plain build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
host=$(rustc -vV | sed -n 's/^host: //p')

find_profdata() {
    local c
    for c in "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
        "$(command -v "llvm-profdata-$major" || true)" "/usr/lib/llvm-$major/bin/llvm-profdata"; do
        if [ -n "$c" ] && [ -x "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    c=$(command -v llvm-profdata || true)
    if [ -n "$c" ] && "$c" --version 2>/dev/null | grep -q "LLVM version $major\."; then
        echo "$c"
        return 0
    fi
    return 1
}

if ! profdata=$(find_profdata); then
    echo "build-pgo: installing llvm-profdata for LLVM $major ..." >&2
    apt_llvm() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$major" >/dev/null 2>&1; }
    rustup component add llvm-tools >/dev/null 2>&1 ||
        { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
            { apt_llvm || { apt-get update -qq >/dev/null 2>&1 && apt_llvm; }; }; } || true
    if ! profdata=$(find_profdata); then
        echo "build-pgo: no llvm-profdata for LLVM $major (rustup component llvm-tools, or Debian's llvm-$major)" >&2
        exit 3
    fi
fi

profiles="$ROOT/target/pgo-profiles"
rm -rf "$profiles"
mkdir -p "$profiles"

echo "build-pgo: plain release build (target/release)" >&2
cargo build --release --bins

echo "build-pgo: instrumented build (target/pgo-gen)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$profiles" CARGO_TARGET_DIR="$ROOT/target/pgo-gen" \
    cargo build --release --target "$host" --bin warden

echo "build-pgo: training run" >&2
rm -f "$profiles"/*.profraw
python3 benches/pgo_train.py "$ROOT/target/pgo-gen/$host/release/warden"
"$profdata" merge -o "$profiles/warden.profdata" "$profiles"/*.profraw

echo "build-pgo: optimized build (target/pgo)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$profiles/warden.profdata" CARGO_TARGET_DIR="$ROOT/target/pgo" \
    cargo build --release --target "$host" --bin warden
cp "$ROOT/target/pgo/$host/release/warden" "$ROOT/target/pgo/warden"
echo "build-pgo: target/pgo/warden" >&2
