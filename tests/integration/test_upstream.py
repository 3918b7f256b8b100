"""openai-kind backends against fake Python upstreams: lenient SSE parsing,
upstream_name mapping, upstream timeout -> 504, upstream 503 -> 503 + Retry-After."""
import time

import requests
import openai
import pytest

from integration_support import (BUSY_MODEL, FAKE_MODEL, FAKE_PIECES, FAKE_TEXT,
                                 FAKE_UPSTREAM_NAME, SLOW_MODEL, assert_openai_error,
                                 assert_retry_after, sse_data)

USER = [{"role": "user", "content": "hi"}]


def test_non_streaming_passthrough(client, fake_ok):
    n0 = len(fake_ok.chat_requests())
    r = client.chat.completions.create(model=FAKE_MODEL, messages=USER, max_tokens=20)
    assert r.object == "chat.completion"
    assert r.model == FAKE_MODEL  # the user-facing name, not the upstream's
    assert r.choices[0].message.content == FAKE_TEXT
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    reqs = fake_ok.chat_requests()[n0:]
    assert len(reqs) == 1
    sent = reqs[0]["body"]
    assert sent["model"] == FAKE_UPSTREAM_NAME, "upstream_name must be sent upstream"
    assert sent["messages"][-1]["content"] == "hi"
    assert sent.get("max_tokens") == 20 or sent.get("max_completion_tokens") == 20


def test_lenient_sse_stream(client):
    """The fake writes `data:` without a space, CRLF line ends, a comment line,
    and splits events (and multi-byte UTF-8) across TCP writes."""
    stream = client.chat.completions.create(model=FAKE_MODEL, messages=USER, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == FAKE_MODEL
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == FAKE_TEXT
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.total_tokens == \
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens


def test_lenient_sse_stream_raw_done(node):
    with requests.post(node.url + "/v1/chat/completions", timeout=30, stream=True,
                       json={"model": FAKE_MODEL, "messages": USER, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = sse_data(r)
    assert data[-1] == "[DONE]"
    assert len(data) >= len(FAKE_PIECES) + 1


def test_upstream_timeout_504(node, fake_slow):
    n0 = len(fake_slow.chat_requests())
    t0 = time.monotonic()
    r = requests.post(node.url + "/v1/chat/completions", timeout=30,
                   json={"model": SLOW_MODEL, "messages": USER})
    took = time.monotonic() - t0
    assert_openai_error(r, 504)
    assert len(fake_slow.chat_requests()) > n0, "the node never called the upstream"
    # read_timeout_s is 2; the fake answers after 6 s.
    assert took < fake_slow.delay_s - 0.5, f"504 took {took:.1f}s: read_timeout_s not applied"


def test_upstream_timeout_504_openai_client(client):
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(model=SLOW_MODEL, messages=USER)
    assert ei.value.status_code == 504


def test_upstream_503_retry_after(node, fake_busy):
    n0 = len(fake_busy.chat_requests())
    r = requests.post(node.url + "/v1/chat/completions", timeout=30,
                   json={"model": BUSY_MODEL, "messages": USER})
    assert_openai_error(r, 503)
    assert_retry_after(r)
    assert len(fake_busy.chat_requests()) > n0, "the node never called the upstream"


def test_upstream_503_retry_after_streaming(node):
    r = requests.post(node.url + "/v1/chat/completions", timeout=30,
                   json={"model": BUSY_MODEL, "messages": USER, "stream": True})
    assert_openai_error(r, 503)
    assert_retry_after(r)


def test_ok_backend_unaffected(client):
    """A busy / slow sibling backend must not poison the healthy one."""
    r = client.chat.completions.create(model=FAKE_MODEL, messages=USER)
    assert r.choices[0].message.content == FAKE_TEXT
