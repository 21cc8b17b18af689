"""Compatibility: the official `openai` Python SDK, unchanged, through warden.

Each call is made twice, once through warden and once straight to the mock upstream,
and the results must be identical (ids and timestamps aside, which the upstream makes
fresh on every call). Runs the real binaries: WARDEN_BIN and MOCK_BIN name them
(`scripts/test.sh` sets both after `cargo build`).
"""

import openai
import pytest

# The `stack` fixture (warden and the mock, as binaries) is in conftest.py.


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


def test_reasoning_is_stripped_and_the_sdk_still_parses(stack):
    """A tier with `reasoning = "strip"`: a reasoning server's `reasoning_content` never
    reaches the client, streamed or not, and the SDK parses what does."""
    via = openai.OpenAI(base_url=f"http://{stack['proxy']}/v1", api_key=stack["strip_key"], max_retries=0)
    ask = [{"role": "user", "content": "Is 91 prime?"}]
    b = stack["direct"].chat.completions.create(model="mock-reasoner", messages=ask)
    assert b.model_dump()["choices"][0]["message"].get("reasoning_content")
    a = via.chat.completions.create(model="mock-reasoner", messages=ask)
    assert "reasoning_content" not in a.model_dump()["choices"][0]["message"]
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens == b.usage.completion_tokens
    chunks = list(via.chat.completions.create(model="mock-reasoner", messages=ask, stream=True))
    assert not any("reasoning_content" in c.choices[0].delta.model_dump() for c in chunks if c.choices)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == b.choices[0].message.content
    r = via.responses.create(model="mock-reasoner", input="Is 91 prime?", reasoning={"effort": "high", "summary": "detailed"})
    assert [o.type for o in r.output] == ["message"]
    with via.responses.stream(model="mock-reasoner", input="Is 91 prime?", reasoning={"summary": "auto"}) as s:
        final = s.get_final_response()
    assert [o.type for o in final.output] == ["message"] and final.output_text
