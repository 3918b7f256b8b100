"""/v1/models, /health, /ready and /metrics."""
import os
import time

import requests

from integration_support import BUSY_MODEL, FAKE_MODEL, LOCAL_MODEL, SLOW_MODEL


def test_models_lists_configured_models(node, client):
    r = requests.get(node.url + "/v1/models", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    for name in (LOCAL_MODEL, FAKE_MODEL, SLOW_MODEL, BUSY_MODEL):
        assert name in ids, ids
    assert len(ids) == len(set(ids)), f"duplicate model ids: {ids}"
    for m in body["data"]:
        assert m["object"] == "model"
    # and through the client
    assert LOCAL_MODEL in [m.id for m in client.models.list().data]


def test_health(node):
    r = requests.get(node.url + "/health", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_ready_shape_and_pid(node):
    r = requests.get(node.url + "/ready", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    backends = {b["name"]: b for b in body["backends"]}
    assert set(backends) == {"local", "up", "up-slow", "up-busy"}
    for b in backends.values():
        assert isinstance(b["healthy"], bool)
        load = b["load"]
        for k in ("running", "waiting", "capacity"):
            assert isinstance(load[k], int) and load[k] >= 0, load
    local = backends["local"]
    assert local["kind"] == "llamacpp"
    assert local["healthy"] is True
    assert isinstance(local["pid"], int) and local["pid"] > 1
    os.kill(local["pid"], 0)  # the engine process exists
    assert isinstance(local["url"], str) and local["url"].startswith("http://127.0.0.1:")
    assert local["load"]["capacity"] == 2
    up = backends["up"]
    assert up["kind"] == "openai"
    assert up.get("pid", "MISSING") is None, f"pid must be present and null for openai backends: {up}"
    assert up["load"]["capacity"] == 4


def test_metrics_counters_increase(node, client):
    r = requests.get(node.url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    before = node.metrics()

    client.chat.completions.create(model=LOCAL_MODEL, max_tokens=4,
                                   messages=[{"role": "user", "content": "hi"}])
    list(client.chat.completions.create(model=LOCAL_MODEL, max_tokens=4, stream=True,
                                        messages=[{"role": "user", "content": "hi"}]))
    requests.post(node.url + "/v1/chat/completions", json={"model": LOCAL_MODEL, "messages": []},
               timeout=10)

    after = node.metrics()
    for name in ("wwwserve_requests_total", "wwwserve_errors_total",
                 "wwwserve_request_duration_seconds", "wwwserve_ttft_seconds",
                 "wwwserve_tokens_total", "wwwserve_in_flight_requests"):
        assert after.has(name), f"{name} missing from /metrics:\n{after.text[:3000]}"
    assert all(n.startswith("wwwserve_") for n in after.names()), \
        sorted(n for n in after.names() if not n.startswith("wwwserve_"))

    # 2 successful requests at least (whether the 400 counts here is the node's choice)
    assert after.sum("wwwserve_requests_total") >= before.sum("wwwserve_requests_total") + 2
    assert after.sum("wwwserve_errors_total") >= before.sum("wwwserve_errors_total") + 1
    assert after.sum("wwwserve_tokens_total", direction="out") >= \
        before.sum("wwwserve_tokens_total", direction="out") + 2
    assert after.sum("wwwserve_tokens_total", direction="in") > \
        before.sum("wwwserve_tokens_total", direction="in")
    assert after.sum("wwwserve_request_duration_seconds_count") >= \
        before.sum("wwwserve_request_duration_seconds_count") + 2
    assert after.sum("wwwserve_ttft_seconds_count") >= before.sum("wwwserve_ttft_seconds_count") + 1
    deadline = time.monotonic() + 5
    while node.metrics().sum("wwwserve_in_flight_requests") != 0:
        assert time.monotonic() < deadline, "wwwserve_in_flight_requests did not return to 0"
        time.sleep(0.1)
