"""A scripted upstream replaying failure patterns from other gateways' and engines' bug
trackers: what the engine says must reach the user as it said it — errors as errors with
their status, param and code; a cut stream never as a clean [DONE]; unknown usage as
null, never a false zero; reasoning text relayed; 429 kept as 429 with Retry-After;
lone surrogate escapes as U+FFFD. Each scenario is a model name of one fake backend."""
from __future__ import annotations

import collections
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from integration_support import MAX_BODY, NodeProcess, NodeStartError, assert_openai_error, sse_data

SCENARIOS = ["error-before-content", "error-after-content", "empty-finish-cut", "no-usage", "bad-request",
             "rate-limited", "surrogate", "reasoning", "hold", "slow-tokens", "hold-nohead"]


def _chunk(delta, finish=None):
    return {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


class ScriptedUpstream:
    def __init__(self):
        self.closed_at: list[float] = []   # when the node closed a held connection
        self.hits = collections.Counter()   # POSTs per scenario
        upstream = self
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._json(200, {"status": "ok", "object": "list", "data": []})

            def _hold(self, seconds: float, token_every: float | None = None):
                """Keeps the connection for `seconds`, writing a token every `token_every`
                seconds if given; records in `closed_at` when the node closes it."""
                sock = self.connection
                deadline = time.monotonic() + seconds
                next_token = time.monotonic() + (token_every or 0)
                while time.monotonic() < deadline:
                    r, _, _ = select.select([sock], [], [], 0.05)
                    if r and not sock.recv(1, socket.MSG_PEEK):
                        upstream.closed_at.append(time.monotonic())
                        return
                    if token_every and time.monotonic() >= next_token:
                        next_token += token_every
                        try:
                            self.wfile.write(data(_chunk({"content": "tok "})).encode())
                            self.wfile.flush()
                        except OSError:
                            upstream.closed_at.append(time.monotonic())
                            return

            def _sse(self, events: list[str]):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for e in events:
                    self.wfile.write(e.encode())
                    self.wfile.flush()
                    time.sleep(0.01)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                s = body.get("model")
                upstream.hits[s] += 1
                data = lambda obj: "data: " + json.dumps(obj) + "\n\n"
                if s == "error-before-content":
                    return self._sse([data(_chunk({"role": "assistant"})),
                                      data({"error": {"message": "engine exploded", "type": "server_error", "code": 500}})])
                if s == "error-after-content":
                    return self._sse([data(_chunk({"content": "Hel"})),
                                      data({"error": {"message": "out of memory", "type": "server_error", "code": 500}}),
                                      "data: [DONE]\n\n"])
                if s == "empty-finish-cut":
                    return self._sse([data(_chunk({"content": "Hello"})), data(_chunk({}, ""))])
                if s == "no-usage":
                    return self._sse([data(_chunk({"content": "Hi"})), data(_chunk({}, "stop")), "data: [DONE]\n\n"])
                if s == "bad-request":
                    return self._json(400, {"error": {"message": "This model's maximum context length is 2048 tokens.",
                                                      "type": "invalid_request_error", "param": "messages",
                                                      "code": "context_length_exceeded"}})
                if s == "rate-limited":
                    return self._json(429, {"error": {"message": "slow down", "type": "rate_limit_error"}},
                                      {"retry-after-ms": "2500"})
                if s == "surrogate":
                    return self._sse(['data: {"choices":[{"index":0,"delta":{"content":"a\\ud83d b"}}]}\n\n',
                                      data(_chunk({}, "stop")), "data: [DONE]\n\n"])
                if s == "hold-nohead":
                    # Not even a response head for 10 s (llama.cpp before a non-streaming
                    # answer, an engine's queue): record when the node closes the connection.
                    return self._hold(10)
                if s in ("hold", "slow-tokens"):
                    # "hold": headers at once, then nothing for 10 s (an engine queueing or
                    # reading a long prompt); "slow-tokens": one token, then one every 3 s.
                    # Either way, record when the node closes the connection.
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if s == "slow-tokens":
                        self.wfile.write(data(_chunk({"content": "slow "})).encode())
                    self.wfile.flush()
                    return self._hold(10, token_every=3 if s == "slow-tokens" else None)
                if s == "reasoning":
                    return self._sse([data(_chunk({"reasoning_content": "Let me think."})),
                                      data(_chunk({"content": "42"})), data(_chunk({}, "stop")), "data: [DONE]\n\n"])
                self._json(404, {"error": {"message": "unknown scenario"}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def upstream():
    up = ScriptedUpstream()
    yield up
    up.close()


@pytest.fixture(scope="module")
def faulty(workdir, upstream):
    up = upstream
    config = {"node": {"max_body_bytes": MAX_BODY, "request_timeout_s": 30},
              "backends": [{"name": "scripted", "kind": "openai", "base_url": up.base_url, "capacity": 4,
                            "models": [{"name": s} for s in SCENARIOS] + [{"name": "shared", "upstream_name": "rate-limited"}]},
                           # The same model on a second engine that answers (for failover).
                           {"name": "scripted-b", "kind": "openai", "base_url": up.base_url, "capacity": 4,
                            "models": [{"name": "shared", "upstream_name": "no-usage"}]}]}
    node = NodeProcess("faulty", config, workdir)
    try:
        node.start()
    except NodeStartError as e:
        up.close()
        pytest.fail(str(e), pytrace=False)
    yield node
    node.stop()


def chat(node, model, stream, **kw):
    return requests.post(node.url + "/v1/chat/completions", timeout=30, stream=stream,
                         json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}], **kw})


@pytest.mark.parametrize("stream", [False, True])
def test_an_error_event_before_content_is_an_http_error(faulty, stream):
    r = chat(faulty, "error-before-content", stream)
    err = assert_openai_error(r, 502)
    assert "engine exploded" in err["message"]


def test_an_error_event_after_content_ends_the_stream_with_an_error_and_no_done(faulty):
    with chat(faulty, "error-after-content", True) as r:
        assert r.status_code == 200
        data = sse_data(r)
    assert "[DONE]" not in data
    assert "error" in json.loads(data[-1])
    assert "out of memory" in data[-1]


def test_an_error_event_after_content_is_an_error_without_streaming(faulty):
    r = chat(faulty, "error-after-content", False)
    err = assert_openai_error(r, 502)
    assert "out of memory" in err["message"]


def test_an_empty_finish_reason_does_not_end_a_cut_stream_cleanly(faulty):
    with chat(faulty, "empty-finish-cut", True) as r:
        data = sse_data(r)
    assert "[DONE]" not in data
    assert "error" in json.loads(data[-1])


def test_unknown_usage_is_null_not_zero(faulty):
    r = chat(faulty, "no-usage", False)
    assert r.status_code == 200, r.text
    assert r.json()["usage"] is None
    with chat(faulty, "no-usage", True, stream_options={"include_usage": True}) as s:
        data = sse_data(s)
    assert data[-1] == "[DONE]"
    last = json.loads(data[-2])
    assert last["choices"] == [] and last["usage"] is None


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_400_keeps_param_and_code(faulty, stream):
    err = assert_openai_error(chat(faulty, "bad-request", stream), 400)
    assert err["param"] == "messages"
    assert err["code"] == "context_length_exceeded"
    assert "maximum context length" in err["message"]


def test_a_rate_limit_stays_429_with_retry_after(faulty):
    r = chat(faulty, "rate-limited", False)
    assert_openai_error(r, 429)
    assert r.headers.get("Retry-After") == "3"


def test_a_rate_limited_engine_cools_down_for_its_retry_after(workdir, upstream):
    # A node of its own: the cooldown must not leak into the other tests' timing.
    config = {"backends": [{"name": "limited", "kind": "openai", "base_url": upstream.base_url, "capacity": 4,
                            "models": [{"name": "rate-limited"}, {"name": "no-usage"}]}]}
    node = NodeProcess("cooldown", config, workdir)
    node.start()
    try:
        n0 = upstream.hits["rate-limited"]
        first = chat(node, "rate-limited", False)
        assert_openai_error(first, 429)
        assert upstream.hits["rate-limited"] == n0 + 1
        # Inside the engine's retry-after-ms (2.5 s, 3 s in whole seconds) the node answers for it.
        again = chat(node, "rate-limited", True)
        err = assert_openai_error(again, 429)
        assert err["code"] == "rate_limit_exceeded"
        assert 1 <= int(again.headers["Retry-After"]) <= 3
        assert upstream.hits["rate-limited"] == n0 + 1, "the request went to the engine during its cooldown"
        # The engine's other models are not affected.
        assert chat(node, "no-usage", False).status_code == 200
        time.sleep(3.3)   # 2500 ms, rounded up to whole seconds like the Retry-After the user sees
        assert_openai_error(chat(node, "rate-limited", False), 429)
        assert upstream.hits["rate-limited"] == n0 + 2, "the cooldown never ended"
    finally:
        node.stop()


def test_a_rate_limited_engine_fails_over_and_is_skipped_while_it_cools(faulty, upstream):
    n0, b0 = upstream.hits["rate-limited"], upstream.hits["no-usage"]
    for stream in (False, True):
        r = chat(faulty, "shared", stream)
        assert r.status_code == 200, r.text
        r.close()
    # The first went to the limited engine, then failed over; the second went straight to b.
    assert upstream.hits["rate-limited"] == n0 + 1
    assert upstream.hits["no-usage"] == b0 + 2


def test_a_lone_surrogate_becomes_a_replacement_character(faulty):
    r = chat(faulty, "surrogate", False)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "a\ufffd b"


def test_reasoning_content_is_relayed(faulty):
    r = chat(faulty, "reasoning", False)
    assert r.status_code == 200, r.text
    msg = r.json()["choices"][0]["message"]
    assert msg["content"] == "42" and msg["reasoning_content"] == "Let me think."
    with chat(faulty, "reasoning", True) as s:
        data = sse_data(s)
    deltas = [json.loads(d)["choices"][0]["delta"] for d in data[:-1] if json.loads(d)["choices"]]
    assert deltas[0].get("reasoning_content") == "Let me think."
    assert data[-1] == "[DONE]"


def test_a_malformed_chunked_body_is_a_400(faulty):
    host, port = faulty.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n")
        reply = sock.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 400"), reply[:200]
    assert requests.get(faulty.url + "/health", timeout=5).status_code == 200


def _raw_request(node, model, stream):
    host, port = node.url.removeprefix("http://").split(":")
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("scenario", ["hold", "hold-nohead"])
def test_a_client_that_leaves_before_the_first_byte_cancels_the_engine_request(faulty, upstream, stream, scenario):
    """The engine holds the answer (queue, long prefill), with its response head sent or
    not even that: nothing has been written to the client yet. Its leaving must close the
    node's request to the engine within a second."""
    n0 = len(upstream.closed_at)
    sock = _raw_request(faulty, scenario, stream)
    time.sleep(0.5)
    left = time.monotonic()
    sock.close()
    while len(upstream.closed_at) == n0:
        assert time.monotonic() - left < 1.0, "the node kept the engine request open after its client left"
        time.sleep(0.02)
    print(f"engine request closed {upstream.closed_at[-1] - left:.3f}s after the client left (stream={stream})")


def test_a_client_that_leaves_mid_stream_cancels_before_the_next_token(faulty, upstream):
    """Slow tokens (one every 3 s): the node notices the client leaving from the connection
    itself, not at its next write, and closes the engine request at once."""
    n0 = len(upstream.closed_at)
    sock = _raw_request(faulty, "slow-tokens", True)
    got = b""
    while b"slow" not in got:
        got += sock.recv(4096)
    left = time.monotonic()
    sock.close()
    while len(upstream.closed_at) == n0:
        assert time.monotonic() - left < 1.0, "the node kept the engine request open until the next token"
        time.sleep(0.02)
    print(f"engine request closed {upstream.closed_at[-1] - left:.3f}s after the client left mid-stream")


@pytest.fixture(scope="module")
def hasty(workdir, upstream):
    """A node whose requests must be over within 3 s."""
    config = {"node": {"max_body_bytes": MAX_BODY, "request_timeout_s": 3},
              "backends": [{"name": "scripted", "kind": "openai", "base_url": upstream.base_url, "capacity": 4,
                            "models": [{"name": s} for s in SCENARIOS]}]}
    node = NodeProcess("hasty", config, workdir)
    try:
        node.start()
    except NodeStartError as e:
        pytest.fail(str(e), pytrace=False)
    yield node
    node.stop()


def test_the_deadline_ends_a_committed_stream_with_an_error(hasty, upstream):
    n0 = len(upstream.closed_at)
    t0 = time.monotonic()
    with chat(hasty, "slow-tokens", True) as r:
        assert r.status_code == 200
        data = sse_data(r)
    took = time.monotonic() - t0
    assert took < 5, f"the stream outlived request_timeout_s (3 s) by far: {took:.1f} s"
    assert "[DONE]" not in data
    assert "request_timeout_s" in data[-1]
    deadline = time.monotonic() + 2
    while len(upstream.closed_at) == n0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(upstream.closed_at) > n0, "the engine request was not closed at the deadline"


def test_the_deadline_answers_a_non_streaming_request_with_504(hasty):
    t0 = time.monotonic()
    r = chat(hasty, "slow-tokens", False)
    assert time.monotonic() - t0 < 5
    assert_openai_error(r, 504)
