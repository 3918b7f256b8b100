"""Fixtures for the wwwserve integration tests.

These drive the real `wwwserve` binary (WWWSERVE_BIN, default
<repo>/.build/debug/wwwserve) with the official `openai` client, against the
managed llama.cpp engine (SmolLM2-135M, threads: 1) and fake OpenAI upstreams.
"""
from __future__ import annotations

import sys
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from integration_support import (  # noqa: E402
    API_KEY, BUSY_MODEL, FAKE_MODEL, FAKE_UPSTREAM_NAME, LOCAL_MODEL, MAX_BODY, SLOW_MODEL,
    LIVE_NODES, FakeUpstream, NodeProcess, NodeStartError, llamacpp_backend,
    openai_backend)



@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for node in list(LIVE_NODES):
            rep.sections.append((f"wwwserve node {node.name} log ({node.log_path})",
                                 node.log_tail()))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wwwserve-it")


def _start(name, config, workdir) -> NodeProcess:
    node = NodeProcess(name, config, workdir)
    try:
        return node.start()
    except NodeStartError as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def fake_ok():
    f = FakeUpstream("ok")
    yield f
    f.close()


@pytest.fixture(scope="session")
def fake_slow():
    f = FakeUpstream("slow", delay_s=6.0)
    yield f
    f.close()


@pytest.fixture(scope="session")
def fake_busy():
    f = FakeUpstream("busy")
    yield f
    f.close()


@pytest.fixture(scope="session")
def node(workdir, fake_ok, fake_slow, fake_busy):
    """The main node: managed llama.cpp + three fake openai-kind upstreams, no auth."""
    config = {
        "node": {"max_body_bytes": MAX_BODY, "request_timeout_s": 120},
        "backends": [
            llamacpp_backend("local"),
            openai_backend("up", fake_ok, FAKE_MODEL, FAKE_UPSTREAM_NAME),
            openai_backend("up-slow", fake_slow, SLOW_MODEL, read_timeout_s=2),
            openai_backend("up-busy", fake_busy, BUSY_MODEL),
        ],
    }
    n = _start("main", config, workdir)
    yield n
    n.stop()


@pytest.fixture(scope="session")
def auth_node(workdir, fake_ok):
    """A node that requires Bearer keys on /v1/* (fake upstream only)."""
    config = {
        "node": {"max_body_bytes": MAX_BODY, "request_timeout_s": 60,
                 "api_keys": [{"key": API_KEY, "name": "alice"}]},
        "backends": [openai_backend("up", fake_ok, FAKE_MODEL, FAKE_UPSTREAM_NAME)],
    }
    n = _start("auth", config, workdir)
    yield n
    n.stop()


@pytest.fixture(scope="module")
def restart_node(workdir):
    """A node whose only backend is a managed engine, for kill/restart tests."""
    config = {"node": {"request_timeout_s": 60}, "backends": [llamacpp_backend("local")]}
    n = _start("restart", config, workdir)
    yield n
    n.stop()


@pytest.fixture(scope="session")
def client(node) -> openai.OpenAI:
    # The node has no api_keys: it must ignore the Authorization header the
    # client always sends.
    return openai.OpenAI(base_url=node.url + "/v1", api_key="unused", max_retries=0,
                         timeout=120)
