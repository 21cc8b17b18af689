#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (redis-server,
# Python's openai SDK and pytest), builds, runs the Rust tests and the SDK compatibility
# tests. Tests start their own redis-server on free loopback ports and stop it after.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server for the shared-limits tests (Debian package; not started here).
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
fi

# Python SDK for the compatibility tests (pip from PyPI; quiet when already installed).
if ! python3 -c 'import openai, pytest' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai pytest
fi

cargo build --bins
cargo test --all-targets

WARDEN_BIN="$PWD/target/debug/warden" MOCK_BIN="$PWD/target/debug/warden-mock-llm" \
  python3 -m pytest -q tests/sdk
