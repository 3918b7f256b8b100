"""A client that disconnects mid-stream must cancel the generation upstream."""
import time

import requests

from integration_support import LOCAL_MODEL, sse_lines

# Generating the full answer would take ~10-15 s here (~1000 tokens at ~110 tok/s,
# 2 cores); a cancelled slot goes idle within ~0.1 s of the engine noticing.
IDLE_BOUND_S = 4.0


def engine_url(node, backend="local") -> str:
    url = node.backend(backend)["url"].rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def busy_slots(engine: str) -> list:
    r = requests.get(engine + "/slots", timeout=5)
    assert r.status_code == 200, r.text
    return [s for s in r.json() if s.get("is_processing")]


def eventually_busy(engine: str, tries: int = 5) -> bool:
    for _ in range(tries):
        if busy_slots(engine):
            return True
        time.sleep(0.2)
    return False


def wait_idle(engine: str, bound_s: float) -> float:
    t0 = time.monotonic()
    while busy_slots(engine):
        if time.monotonic() - t0 > bound_s:
            raise AssertionError(f"engine slots still processing {bound_s}s after disconnect: "
                                 f"{busy_slots(engine)}")
        time.sleep(0.05)
    return time.monotonic() - t0


def test_disconnect_mid_stream_cancels_upstream(node):
    engine = engine_url(node)
    wait_idle(engine, 30)  # leftovers from earlier tests
    cancelled_before = node.metrics().sum("wwwserve_upstream_cancelled_total")

    payload = {"model": LOCAL_MODEL, "stream": True, "max_tokens": 1500, "temperature": 0,
               "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    got = 0
    with requests.Session() as http:
        with http.post(node.url + "/v1/chat/completions", json=payload, stream=True,
                       timeout=60) as r:
            assert r.status_code == 200, r.text
            for line in sse_lines(r):
                if line.startswith("data:") and "[DONE]" not in line:
                    got += 1
                    if got >= 3:
                        break
            assert got >= 3, "stream ended before three chunks"
            # The slot list is read over HTTP from a busy engine: look a few times (1 s at most).
            assert eventually_busy(engine), "engine should be generating while the client reads"
        # Closing a response that was not read to the end closes its socket
        # (it is not returned to the pool).
    took = wait_idle(engine, IDLE_BOUND_S)

    deadline = time.monotonic() + 5
    while True:
        after = node.metrics().sum("wwwserve_upstream_cancelled_total")
        if after >= cancelled_before + 1:
            break
        assert time.monotonic() < deadline, \
            f"wwwserve_upstream_cancelled_total did not increase ({cancelled_before} -> {after})"
        time.sleep(0.1)
    print(f"engine idle {took:.2f}s after client disconnect")


def test_node_still_serves_after_disconnects(client):
    r = client.chat.completions.create(model=LOCAL_MODEL, max_tokens=4,
                                       messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content is not None


def test_disconnect_before_a_non_streaming_answer_cancels_upstream(node):
    """Without streaming nothing is written until the end, so only the node's inbound-close
    watch can notice the client leaving; the engine must stop generating."""
    engine = engine_url(node)
    wait_idle(engine, 30)
    payload = {"model": LOCAL_MODEL, "stream": False, "max_tokens": 1500, "temperature": 0,
               "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    try:
        requests.post(node.url + "/v1/chat/completions", json=payload, timeout=1.5)
        raise AssertionError("a 1500-token answer should not finish within 1.5 s here")
    except requests.exceptions.ReadTimeout:
        pass  # requests closes the socket on a read timeout
    took = wait_idle(engine, IDLE_BOUND_S)
    print(f"engine idle {took:.2f}s after a non-streaming client went away")


def test_non_streaming_answers_keep_the_connection(node):
    with requests.Session() as http:
        r = http.post(node.url + "/v1/chat/completions", timeout=60,
                      json={"model": LOCAL_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        assert r.headers.get("connection", "").lower() != "close"
