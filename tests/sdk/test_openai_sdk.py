"""Compatibility: the official `openai` Python SDK, unchanged, through warden.

Each call is made twice, once through warden and once straight to the mock upstream,
and the results must be identical (ids and timestamps aside, which the upstream makes
fresh on every call). Runs the real binaries: WARDEN_BIN and MOCK_BIN name them
(`.ci/run` sets both after `cargo build`).
"""

import json
import os
import subprocess
import tempfile
import urllib.request

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


@pytest.fixture(scope="module")
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
        via = openai.OpenAI(base_url=f"http://{proxy}/v1", api_key=key, max_retries=0)
        direct = openai.OpenAI(base_url=f"{mock_url}/v1", api_key="sk-direct", max_retries=0)
        yield {"via": via, "direct": direct, "proxy": proxy, "admin_call": admin_call}
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        tmp.cleanup()


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three rivers in Europe."},
]


def _strip(obj, keys=("id", "created", "created_at")):
    """The response as a dict without the fields the upstream makes fresh per call."""
    if isinstance(obj, dict):
        return {k: _strip(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_strip(v, keys) for v in obj]
    return obj


def test_chat_completion(stack):
    a = stack["via"].chat.completions.create(model="mock-small", messages=MESSAGES)
    b = stack["direct"].chat.completions.create(model="mock-small", messages=MESSAGES)
    assert a.choices[0].message.content
    assert _strip(a.model_dump()) == _strip(b.model_dump())
    assert a.usage.completion_tokens > 0


def test_chat_completion_streamed(stack):
    def run(client, **kw):
        chunks = list(client.chat.completions.create(model="mock-small", messages=MESSAGES, stream=True, **kw))
        return chunks, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    a_chunks, a_text = run(stack["via"])
    b_chunks, b_text = run(stack["direct"])
    assert a_text and a_text == b_text
    assert [_strip(c.model_dump()) for c in a_chunks] == [_strip(c.model_dump()) for c in b_chunks]
    # A client that asks for usage gets exactly one usage chunk, as from the upstream.
    a_chunks, _ = run(stack["via"], stream_options={"include_usage": True})
    b_chunks, _ = run(stack["direct"], stream_options={"include_usage": True})
    assert [_strip(c.model_dump()) for c in a_chunks] == [_strip(c.model_dump()) for c in b_chunks]
    assert a_chunks[-1].usage is not None and a_chunks[-1].usage.completion_tokens > 0


def test_completions(stack):
    a = stack["via"].completions.create(model="mock-small", prompt="Once upon a time", max_tokens=5)
    b = stack["direct"].completions.create(model="mock-small", prompt="Once upon a time", max_tokens=5)
    assert _strip(a.model_dump()) == _strip(b.model_dump())
    assert a.usage.completion_tokens == 5


def test_embeddings(stack):
    a = stack["via"].embeddings.create(model="mock-embed", input=["alpha", "beta"])
    b = stack["direct"].embeddings.create(model="mock-embed", input=["alpha", "beta"])
    assert len(a.data) == 2 and len(a.data[0].embedding) > 0
    assert a.model_dump() == b.model_dump()


def test_models(stack):
    a = [m.id for m in stack["via"].models.list()]
    b = [m.id for m in stack["direct"].models.list()]
    assert a and a == b
    assert stack["via"].models.retrieve(a[0]).id == a[0]


def test_responses(stack):
    a = stack["via"].responses.create(model="mock-small", input="Say hello.")
    b = stack["direct"].responses.create(model="mock-small", input="Say hello.")
    assert a.output_text and a.output_text == b.output_text
    assert a.usage.output_tokens == b.usage.output_tokens
    events = [e.type for e in stack["via"].responses.create(model="mock-small", input="Say hello.", stream=True)]
    assert events[0] == "response.created" and events[-1] == "response.completed"


def test_errors_are_openai_errors(stack):
    bad = openai.OpenAI(base_url=f"http://{stack['proxy']}/v1", api_key="wk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="mock-small", messages=MESSAGES)
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    assert "wk-wrong" not in str(e.value)


def test_usage_reaches_the_account(stack):
    account = stack["admin_call"]("GET", "/admin/v1/accounts/sdk-user")
    assert account["usage"]["requests"] > 0
    assert account["usage"]["completion_tokens"] > 0
