#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Python's openai
# SDK and pytest), builds, runs the Rust tests and the SDK compatibility tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python SDK for the compatibility tests (pip from PyPI; quiet when already installed).
if ! python3 -c 'import openai, pytest' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai pytest
fi

cargo build --bins
cargo test --all-targets

WARDEN_BIN="$PWD/target/debug/warden" MOCK_BIN="$PWD/target/debug/warden-mock-llm" \
  python3 -m pytest -q tests/sdk
