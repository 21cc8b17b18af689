#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (redis-server,
# PostgreSQL, Chromium, Python's openai SDK, Playwright and pytest), builds, runs the Rust
# tests, the SDK compatibility tests and the dashboard's browser tests. Tests start their own redis-server and PostgreSQL on free loopback
# ports and stop them after.
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server for the shared-limits tests and PostgreSQL for the replica tests (Debian
# packages; not started here: each test starts its own on a free loopback port and stops
# it afterwards).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# Chromium for the dashboard's browser tests (driven by Playwright, below).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python SDK for the compatibility tests, Playwright for the dashboard tests (it drives
# the Chromium installed above; no browser download). From PyPI; quiet when installed.
if ! python3 -c 'import openai, pytest, playwright' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai pytest playwright
fi

cargo build --bins
cargo test --all-targets

WARDEN_BIN="$PWD/target/debug/warden" MOCK_BIN="$PWD/target/debug/warden-mock-llm" \
  python3 -m pytest -q tests/sdk tests/dashboard
