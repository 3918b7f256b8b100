"""Request validation and error shapes. Raw HTTP where the openai client would
refuse to send the bad input; the client itself where it can."""
import json
import urllib.error
import urllib.request

import requests
import openai
import pytest

from integration_support import LOCAL_MODEL, MAX_BODY, assert_openai_error

USER = [{"role": "user", "content": "hi"}]


def post_raw(node, body: bytes, content_type="application/json", **kw):
    return requests.post(node.url + "/v1/chat/completions", data=body,
                      headers={"Content-Type": content_type}, timeout=30, **kw)


def post_json(node, obj):
    return post_raw(node, json.dumps(obj).encode())


def test_malformed_json(node):
    r = post_raw(node, b'{"model": "smollm2", "messages": [')
    err = assert_openai_error(r, 400)
    assert err["type"] == "invalid_request_error"


def test_body_not_an_object(node):
    assert_openai_error(post_raw(node, b'["model", "smollm2"]'), 400)


def test_empty_body(node):
    assert_openai_error(post_raw(node, b""), 400)


BAD_REQUESTS = {
    "missing_model": {"messages": USER},
    "model_not_string": {"model": 42, "messages": USER},
    "missing_messages": {"model": LOCAL_MODEL},
    "messages_not_list": {"model": LOCAL_MODEL, "messages": "hi"},
    "empty_messages": {"model": LOCAL_MODEL, "messages": []},
    "message_not_object": {"model": LOCAL_MODEL, "messages": ["hi"]},
    "missing_role": {"model": LOCAL_MODEL, "messages": [{"content": "hi"}]},
    "unknown_role": {"model": LOCAL_MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
    "content_ill_typed": {"model": LOCAL_MODEL, "messages": [{"role": "user", "content": 5}]},
    "content_part_bad_type": {"model": LOCAL_MODEL, "messages": [
        {"role": "user", "content": [{"type": "text", "text": 5}]}]},
    "temperature_high": {"model": LOCAL_MODEL, "messages": USER, "temperature": 2.5},
    "temperature_negative": {"model": LOCAL_MODEL, "messages": USER, "temperature": -0.1},
    "temperature_string": {"model": LOCAL_MODEL, "messages": USER, "temperature": "hot"},
    "top_p_high": {"model": LOCAL_MODEL, "messages": USER, "top_p": 1.5},
    "top_p_negative": {"model": LOCAL_MODEL, "messages": USER, "top_p": -0.5},
    "max_tokens_zero": {"model": LOCAL_MODEL, "messages": USER, "max_tokens": 0},
    "max_tokens_negative": {"model": LOCAL_MODEL, "messages": USER, "max_tokens": -3},
    "max_tokens_string": {"model": LOCAL_MODEL, "messages": USER, "max_tokens": "ten"},
    "stream_not_bool": {"model": LOCAL_MODEL, "messages": USER, "stream": "yes"},
    "stop_ill_typed": {"model": LOCAL_MODEL, "messages": USER, "stop": 5},
    "n_greater_than_one": {"model": LOCAL_MODEL, "messages": USER, "n": 2},
    "tools_unsupported": {"model": LOCAL_MODEL, "messages": USER, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_400(node, case):
    r = post_json(node, BAD_REQUESTS[case])
    err = assert_openai_error(r, 400)
    assert err["type"] == "invalid_request_error", err


@pytest.mark.parametrize("field,value", [("temperature", 0.0), ("temperature", 2.0),
                                         ("top_p", 0.0), ("top_p", 1.0), ("max_tokens", 1)])
def test_boundary_values_accepted(node, field, value):
    body = {"model": LOCAL_MODEL, "messages": USER, "max_tokens": 2, field: value}
    r = post_json(node, body)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"


def test_unknown_model_404(node):
    r = post_json(node, {"model": "no-such-model", "messages": USER})
    assert_openai_error(r, 404)


def test_body_too_large_413(node):
    filler = "x" * (MAX_BODY + 1024)
    r = post_json(node, {"model": LOCAL_MODEL, "messages": [{"role": "user", "content": filler}],
                         "max_tokens": 1})
    assert_openai_error(r, 413)


def test_body_too_large_413_chunked(node):
    """Same limit when the client streams the body without Content-Length."""
    filler = b"x" * (MAX_BODY + 1024)

    def gen():
        yield b'{"model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": "'
        for i in range(0, len(filler), 65536):
            yield filler[i:i + 65536]
        yield b'"}]}'
    r = requests.post(node.url + "/v1/chat/completions", data=gen(),
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert_openai_error(r, 413)


def test_a_client_that_writes_its_whole_body_first_reads_the_413(node):
    """urllib sends `Connection: close` and reads only after its last byte: a body far over
    the limit (12 MB, more than the socket buffers hold) must still get the 413, not a
    broken pipe or a stall."""
    body = json.dumps({"model": LOCAL_MODEL, "messages": [{"role": "user", "content": "x" * (12 << 20)}]}).encode()
    req = urllib.request.Request(node.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=30)
    assert ei.value.code == 413
    assert json.loads(ei.value.read())["error"]["code"] == "request_too_large"
    # The node keeps serving.
    assert_openai_error(post_json(node, {"model": "no-such-model", "messages": USER}), 404)


def test_openai_client_sees_bad_request(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=LOCAL_MODEL, messages=[])
    assert ei.value.status_code == 400
    assert isinstance(ei.value.body, dict) and ei.value.body.get("message")


def test_openai_client_sees_not_found(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=USER)
    assert ei.value.status_code == 404


def test_unknown_route_404(node):
    r = requests.get(node.url + "/v1/no-such-route", timeout=10)
    assert r.status_code == 404


def test_get_on_chat_completions_is_405(node):
    r = requests.get(node.url + "/v1/chat/completions", timeout=10)
    assert_openai_error(r, 405)
    assert r.headers.get("Allow") == "POST"


def test_errors_are_counted(node):
    before = node.metrics().sum("wwwserve_errors_total")
    post_json(node, {"model": LOCAL_MODEL, "messages": []})
    after = node.metrics().sum("wwwserve_errors_total")
    assert after >= before + 1, (before, after)


@pytest.fixture(scope="module")
def impatient(workdir, fake_ok):
    """A node whose clients must send their request within 3 s (idle_timeout_s)."""
    from conftest import FAKE_MODEL, FAKE_UPSTREAM_NAME
    from integration_support import NodeProcess, openai_backend
    node = NodeProcess("impatient", {
        "node": {"max_body_bytes": MAX_BODY, "idle_timeout_s": 3},
        "backends": [openai_backend("up", fake_ok, FAKE_MODEL, FAKE_UPSTREAM_NAME)]}, workdir)
    node.start()
    yield node
    node.stop()


def test_a_trickled_body_is_cut_off_at_the_idle_timeout(impatient):
    """Slowloris on the body: the headers arrive, then one byte every 0.5 s. The node
    closes the connection once idle_timeout_s passed, instead of holding the request."""
    import socket
    import time
    host, port = impatient.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n")
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < 12:
        try:
            sock.sendall(b" ")
            sock.settimeout(0.5)
            if sock.recv(4096) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
    took = time.monotonic() - start
    sock.close()
    assert closed, "the node kept a trickling body open for 12 s (idle_timeout_s is 3)"
    assert took < 8, f"closed only after {took:.1f}s"
    # The node still serves.
    assert requests.get(impatient.url + "/health", timeout=5).status_code == 200
