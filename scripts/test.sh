#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (redis-server,
# PostgreSQL, Chromium, Python's openai and anthropic SDKs, Playwright and pytest), builds, runs the Rust
# tests, the SDK compatibility tests and the dashboard's browser tests (Python tools in
# a virtual environment, .venv). Tests start their own redis-server and PostgreSQL on free loopback
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
# The Python tools live in a virtual environment (system Pythons may refuse global pip
# installs, PEP 668).
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python SDKs (openai, anthropic) for the compatibility tests, Playwright for the dashboard tests (it drives
# the Chromium installed above; no browser download). From PyPI into a virtual
# environment (WARDEN_VENV, default .venv in the repository); quiet when installed.
venv="${WARDEN_VENV:-$PWD/.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c 'import openai, anthropic, pytest, playwright' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check openai anthropic pytest playwright
fi

cargo build --bins
cargo test --all-targets

WARDEN_BIN="$PWD/target/debug/warden" MOCK_BIN="$PWD/target/debug/warden-mock-llm" \
  "$venv/bin/python" -m pytest -q tests/sdk tests/dashboard
