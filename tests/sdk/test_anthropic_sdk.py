"""Compatibility: the official `anthropic` Python SDK, unchanged, through warden.

As for the `openai` SDK, each call is made through warden and straight to the mock
upstream, and the results must be the same (ids aside). With `reasoning = "strip"` no
thinking content reaches the client and the SDK still parses what does. The `stack`
fixture is in conftest.py.
"""

import time

import anthropic
import pytest

ASK = [{"role": "user", "content": "Name three rivers in Europe."}]
THINK = {"type": "enabled", "budget_tokens": 1024}


def _strip(obj, keys=("id",)):
    if isinstance(obj, dict):
        return {k: _strip(v, keys) for k, v in obj.items() if k not in keys}
    if isinstance(obj, list):
        return [_strip(v, keys) for v in obj]
    return obj


def test_create(stack):
    a = stack["anthropic_via"].messages.create(model="mock-small", max_tokens=64, system="Be terse.", messages=ASK)
    b = stack["anthropic_direct"].messages.create(model="mock-small", max_tokens=64, system="Be terse.", messages=ASK)
    assert a.content[0].type == "text" and a.content[0].text
    assert _strip(a.model_dump()) == _strip(b.model_dump())
    assert a.usage.output_tokens > 0 and a.usage.input_tokens > 0
    # warden's request id, where the SDK looks for Anthropic's.
    assert a._request_id and a._request_id.startswith("req")


def test_stream_text_usage_and_first_delta_unbuffered(stack):
    def run(client, **headers):
        started, first = time.monotonic(), None
        with client.messages.stream(
            model="mock-small", max_tokens=64, messages=ASK, extra_headers=headers or None
        ) as s:
            parts = []
            for t in s.text_stream:
                if first is None:
                    first = time.monotonic() - started
                parts.append(t)
            final = s.get_final_message()
        return "".join(parts), final, first

    a_text, a_final, first = run(stack["anthropic_via"], **{"x-mock-pause-after-first-ms": "1500"})
    b_text, b_final, _ = run(stack["anthropic_direct"])
    assert a_text and a_text == b_text
    assert first < 1.0, f"the first delta took {first:.2f} s: held back"
    assert a_final.usage.output_tokens == b_final.usage.output_tokens > 0
    assert a_final.usage.input_tokens == b_final.usage.input_tokens > 0


def test_tool_use(stack):
    tools = [{"name": "get_weather", "description": "Weather of a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    a = stack["anthropic_via"].messages.create(model="mock-small", max_tokens=64, tools=tools, messages=ask)
    b = stack["anthropic_direct"].messages.create(model="mock-small", max_tokens=64, tools=tools, messages=ask)
    assert a.stop_reason == "tool_use"
    use = next(c for c in a.content if c.type == "tool_use")
    assert use.name == "get_weather"
    assert _strip(a.model_dump()) == _strip(b.model_dump())
    # The result goes back; the answer is text.
    follow = ask + [
        {"role": "assistant", "content": [c.model_dump() for c in a.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}]},
    ]
    c = stack["anthropic_via"].messages.create(model="mock-small", max_tokens=64, tools=tools, messages=follow)
    assert c.stop_reason != "tool_use" and c.content[-1].type == "text"
    with stack["anthropic_via"].messages.stream(model="mock-small", max_tokens=64, tools=tools, messages=ask) as s:
        final = s.get_final_message()
    assert [x.type for x in final.content][-1] == "tool_use"


def test_count_tokens(stack):
    a = stack["anthropic_via"].messages.count_tokens(model="mock-small", messages=ASK)
    b = stack["anthropic_direct"].messages.count_tokens(model="mock-small", messages=ASK)
    assert a.input_tokens == b.input_tokens > 0


def test_errors_are_anthropic_errors(stack):
    bad = anthropic.Anthropic(base_url=f"http://{stack['proxy']}", api_key="wk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="mock-small", max_tokens=8, messages=ASK)
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"
    assert "wk-wrong" not in str(e.value)
    with pytest.raises(anthropic.BadRequestError) as e:
        stack["anthropic_via"].messages.create(model="mock-small", max_tokens=-1, messages=ASK)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"


def test_thinking_is_stripped_and_the_sdk_parses_what_is_left(stack):
    via = anthropic.Anthropic(base_url=f"http://{stack['proxy']}", api_key=stack["strip_key"], max_retries=0)
    b = stack["anthropic_direct"].messages.create(model="mock-small", max_tokens=2048, thinking=THINK, messages=ASK)
    assert b.content[0].type == "thinking"
    a = via.messages.create(model="mock-small", max_tokens=2048, thinking=THINK, messages=ASK)
    assert [c.type for c in a.content] == ["text"]
    assert a.content[0].text == b.content[-1].text
    assert a.usage.output_tokens == b.usage.output_tokens, "usage counted in full"
    # Streamed: no thinking event reaches the SDK; its accumulated message is the text.
    seen = []
    with via.messages.stream(model="mock-small", max_tokens=2048, thinking=THINK, messages=ASK) as s:
        for event in s:
            seen.append(event.type)
            if event.type == "content_block_delta":
                assert event.delta.type == "text_delta"
        final = s.get_final_message()
    assert "thinking" not in seen
    assert [c.type for c in final.content] == ["text"]
    assert final.content[0].text == b.content[-1].text
    # The default tier keeps its thinking.
    full = stack["anthropic_via"].messages.create(model="mock-small", max_tokens=2048, thinking=THINK, messages=ASK)
    assert full.content[0].type == "thinking" and full.content[0].thinking
