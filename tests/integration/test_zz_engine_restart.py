"""The supervisor restarts a managed engine that dies under the node; while it is
down the node answers 503 with Retry-After. Runs last (own node, own engine)."""
import os
import signal
import time

import requests
import openai

from integration_support import (LOCAL_MODEL, NodeProcess, assert_openai_error,
                                 assert_retry_after, llamacpp_backend)

RESTART_BOUND_S = 60
CHAT = {"model": LOCAL_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


def pid_gone(pid: int) -> bool:
    """True once pid has exited (a zombie awaiting the node's reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_engine_killed_then_restarted(restart_node):
    node = restart_node
    before = node.backend("local")
    old_pid = before["pid"]
    assert before["healthy"] is True and isinstance(old_pid, int)
    assert requests.post(node.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code == 200

    os.kill(old_pid, signal.SIGKILL)
    t0 = time.monotonic()
    while not pid_gone(old_pid):
        assert time.monotonic() - t0 < 5, "SIGKILLed engine still alive"
        time.sleep(0.01)

    # Immediately after the kill the engine cannot be back (Python + model load
    # takes ~0.5 s at best): the node must answer 503 with Retry-After.
    r = requests.post(node.url + "/v1/chat/completions", json=CHAT, timeout=30)
    assert_openai_error(r, 503)
    assert_retry_after(r)

    # Stream requests too get a proper 503 (not a 200 followed by an error).
    # (Skipped only if the supervisor was already back: then it must be a 200.)
    r = requests.post(node.url + "/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30)
    if r.status_code != 200:
        assert_openai_error(r, 503)
        assert_retry_after(r)

    # The supervisor restarts it: a new pid, healthy, and requests succeed again.
    saw_not_ready = False
    deadline = time.monotonic() + RESTART_BOUND_S
    while True:
        rr = requests.get(node.url + "/ready", timeout=5)
        body = rr.json()
        local = next(b for b in body["backends"] if b["name"] == "local")
        if rr.status_code == 503:
            saw_not_ready = True
            assert body["status"] == "not_ready"
            assert local["healthy"] is False
        if local["healthy"] and local["pid"] not in (None, old_pid):
            break
        assert time.monotonic() < deadline, \
            f"engine not restarted within {RESTART_BOUND_S}s: {body}"
        time.sleep(0.1)
    new_pid = local["pid"]
    assert rr.status_code == 200 and body["status"] == "ready"
    os.kill(new_pid, 0)
    print(f"engine restarted: pid {old_pid} -> {new_pid} after "
          f"{RESTART_BOUND_S - (deadline - time.monotonic()):.1f}s; saw not_ready: {saw_not_ready}")

    c = openai.OpenAI(base_url=node.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    r = c.chat.completions.create(**CHAT)
    assert r.object == "chat.completion" and r.usage.completion_tokens > 0


def test_engine_dies_with_node(workdir):
    """Stopping the node (SIGTERM) must not leave its engine running."""
    n = NodeProcess("ephemeral", {"backends": [llamacpp_backend("local")]}, workdir).start()
    pid = n.backend("local")["pid"]
    n.stop()
    t0 = time.monotonic()
    while not pid_gone(pid):
        assert time.monotonic() - t0 < 10, f"engine {pid} outlived its node"
        time.sleep(0.05)


def test_engine_dies_when_node_is_killed(workdir):
    """SIGKILL on the node: the engine notices stdin EOF and exits by itself."""
    n = NodeProcess("killed", {"backends": [llamacpp_backend("local")]}, workdir).start()
    pid = n.backend("local")["pid"]
    n.proc.kill()
    n.proc.wait(10)
    t0 = time.monotonic()
    while not pid_gone(pid):
        assert time.monotonic() - t0 < 10, f"engine {pid} outlived its SIGKILLed node"
        time.sleep(0.05)
    n.stop()
