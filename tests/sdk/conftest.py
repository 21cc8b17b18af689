"""The stack the SDK compatibility tests run against: the real warden binary in front of
the real mock upstream binary (WARDEN_BIN and MOCK_BIN name them; `scripts/test.sh` sets
both after `cargo build`), an account on the default tier (`key`) and one on a tier with
`reasoning = "strip"` (`strip_key`), and the official SDKs' clients through warden
(`via`) and straight to the mock (`direct`).
"""

import json
import os
import subprocess
import tempfile
import urllib.request

import anthropic
import openai
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARDEN_BIN = os.environ.get("WARDEN_BIN", os.path.join(ROOT, "target/debug/warden"))
MOCK_BIN = os.environ.get("MOCK_BIN", os.path.join(ROOT, "target/debug/warden-mock-llm"))
ADMIN_TOKEN = "sdk-test-admin-token"


def _read_line_containing(proc, needle):
    for line in proc.stdout:
        if needle in line:
            return line
    raise RuntimeError(f"process exited before printing {needle!r}")


@pytest.fixture(scope="session")
def stack():
    procs = []
    tmp = tempfile.TemporaryDirectory()
    try:
        mock = subprocess.Popen([MOCK_BIN, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        procs.append(mock)
        mock_url = _read_line_containing(mock, "listening on").strip().split("listening on ")[1]
        config = os.path.join(tmp.name, "warden.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
base_url = "{mock_url}"
api_key_env = "SDK_UPSTREAM_KEY"
[admin]
token_env = "SDK_ADMIN_TOKEN"
[storage]
path = "{tmp.name}/warden.db"
[logging]
format = "json"
[[tiers]]
name = "default"
[[tiers]]
name = "no-reasoning"
reasoning = "strip"
""")
        env = dict(os.environ, SDK_UPSTREAM_KEY="sk-upstream", SDK_ADMIN_TOKEN=ADMIN_TOKEN)
        warden = subprocess.Popen([WARDEN_BIN, "serve", "--config", config], stdout=subprocess.PIPE, text=True, env=env)
        procs.append(warden)
        started = json.loads(_read_line_containing(warden, "warden listening"))
        proxy, admin = started["proxy"], started["admin"]

        def admin_call(method, path, body=None):
            req = urllib.request.Request(
                f"http://{admin}{path}",
                method=method,
                data=json.dumps(body).encode() if body is not None else None,
                headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
            )
            with urllib.request.urlopen(req) as r:
                return json.loads(r.read() or b"null")

        admin_call("POST", "/admin/v1/accounts", {"id": "sdk-user"})
        key = admin_call("POST", "/admin/v1/accounts/sdk-user/keys")["key"]
        admin_call("POST", "/admin/v1/accounts", {"id": "sdk-strip", "tier": "no-reasoning"})
        strip_key = admin_call("POST", "/admin/v1/accounts/sdk-strip/keys")["key"]
        yield {
            "via": openai.OpenAI(base_url=f"http://{proxy}/v1", api_key=key, max_retries=0),
            "direct": openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-direct", max_retries=0),
            "anthropic_via": anthropic.Anthropic(base_url=f"http://{proxy}", api_key=key, max_retries=0),
            "anthropic_direct": anthropic.Anthropic(base_url=mock_url, api_key="sk-direct", max_retries=0),
            "proxy": proxy,
            "mock_url": mock_url,
            "key": key,
            "strip_key": strip_key,
            "admin_call": admin_call,
        }
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        tmp.cleanup()
