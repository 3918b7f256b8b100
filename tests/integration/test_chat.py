"""Chat completions through the node to the managed llama.cpp engine, using the
official openai client. Model text is never asserted, only shape and accounting."""
import json
import time

import requests

from integration_support import LOCAL_MODEL, sse_lines


def _check_usage(usage):
    assert usage is not None, "usage missing"
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_non_streaming_completion(client):
    t0 = int(time.time())
    r = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "Name three colours."}],
        max_tokens=40, temperature=0.2)
    assert r.object == "chat.completion"
    assert isinstance(r.id, str) and r.id
    assert r.model == LOCAL_MODEL
    assert abs(r.created - t0) < 300
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.message.role == "assistant"
    assert isinstance(c.message.content, str) and c.message.content.strip()
    assert c.finish_reason in ("stop", "length")
    _check_usage(r.usage)
    assert r.usage.completion_tokens <= 40
    if c.finish_reason == "length":
        assert r.usage.completion_tokens == 40


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "user", "content": "Write one sentence about the sea."}],
        max_tokens=48, temperature=0.5, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert len(chunks) >= 3, chunks
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and next(iter(ids)), f"chunk ids differ: {ids}"
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == LOCAL_MODEL
    body, final = chunks[:-1], chunks[-1]
    # Final chunk: usage with empty choices.
    assert final.choices == []
    _check_usage(final.usage)
    assert final.usage.completion_tokens <= 48
    # Every other chunk: exactly one choice, no usage.
    for c in body:
        assert len(c.choices) == 1 and c.choices[0].index == 0
        assert c.usage is None
    content = "".join(c.choices[0].delta.content or "" for c in body)
    assert content.strip(), "streamed content is empty"
    roles = [c.choices[0].delta.role for c in body if c.choices[0].delta.role]
    assert roles and set(roles) == {"assistant"}
    finishes = [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length"), finishes
    assert body[-1].choices[0].finish_reason is not None, "finish_reason must be on the last choice chunk"


def test_streaming_wire_format(node):
    """Raw SSE: content type, `data: ` framing, JSON chunks, `data: [DONE]` last."""
    payload = {"model": LOCAL_MODEL, "stream": True, "max_tokens": 8,
               "messages": [{"role": "user", "content": "Say hi."}]}
    with requests.post(node.url + "/v1/chat/completions", json=payload, stream=True,
                       timeout=60) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = list(sse_lines(r))
    data = [ln[len("data:"):].strip() for ln in lines if ln.startswith("data:")]
    assert data and data[-1] == "[DONE]", lines[-5:]
    assert data.count("[DONE]") == 1
    for d in data[:-1]:
        obj = json.loads(d)
        assert obj["object"] == "chat.completion.chunk"
    # Without include_usage there is no usage-only chunk.
    assert all(json.loads(d).get("choices") for d in data[:-1])


def test_stop_sequence(client):
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    control = client.chat.completions.create(
        model=LOCAL_MODEL, messages=messages, max_tokens=60, temperature=0)
    assert "5" in (control.choices[0].message.content or ""), (
        "precondition: without a stop sequence the model should count past 5 "
        f"(got {control.choices[0].message.content!r}); the stop test cannot discriminate")
    r = client.chat.completions.create(
        model=LOCAL_MODEL, messages=messages, max_tokens=60, temperature=0, stop=["5"])
    text = r.choices[0].message.content or ""
    assert "5" not in text, text
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens < control.usage.completion_tokens


def test_stop_sequence_streaming(client):
    stream = client.chat.completions.create(
        model=LOCAL_MODEL, messages=[{"role": "user",
                                      "content": "Count from 1 to 20, separated by commas."}],
        max_tokens=60, temperature=0, stop=["5", "never-used"], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "5" not in text, text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_content_as_text_parts(client):
    r = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Say hello"},
            {"type": "text", "text": " in French."}]}],
        max_tokens=16)
    assert r.choices[0].message.content.strip()
    _check_usage(r.usage)


def test_max_tokens_length(client):
    r = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert 0 < r.usage.completion_tokens <= 5


def test_max_tokens_length_streaming(client):
    stream = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 5


def test_multi_turn_conversation(client):
    r = client.chat.completions.create(
        model=LOCAL_MODEL,
        messages=[{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "And 3+3?"}],
        max_tokens=10)
    assert r.choices[0].message.content.strip()
    _check_usage(r.usage)
