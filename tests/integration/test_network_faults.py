"""A real network whose links misbehave, with nothing lost: every request ends in an
answer or a clear error, the ledgers converge after the heal (and account for exactly the
answers users got), the dead stay dead and the living stay alive.

All peer traffic passes through a fault-injecting proxy in front of each node
(fault_proxy.py; the kernel has no netem): delay and loss in one phase, a partition
{A, B} | {C, D} in the next, during which D is SIGKILLed for good.

  A  pure requester, the seed
  B  provider on the real model (llama.cpp, 1 thread)
  C  provider on a scripted OpenAI-compatible upstream
  D  provider on the scripted upstream; killed during the partition

The tests run in file order and share the module-scoped state.
"""
from __future__ import annotations

import concurrent.futures
import subprocess
import time

import pytest
import requests

from fault_proxy import FaultNet, FaultProxy
from integration_support import (pin_binary, FakeUpstream, LOCAL_MODEL, NodeStartError, llamacpp_backend,
                                 node_binary, openai_backend, to_yaml)
from test_network import NetNode, converged, keygen, peers, wait_until

GOSSIP_MS = 300
GRANT = 100
PRICE_MICRO = 1_000_000
REQUEST_TIMEOUT_S = 30
BOUND_S = 30
SMALL = {"model": LOCAL_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}]}
RETRYABLE = {429, 502, 503, 504}


def statuses(observer, nodes) -> dict[str, str]:
    view = peers(observer)
    return {n.name: (view[n.node_id]["status"] if n.node_id in view else "absent") for n in nodes}


def sees(observers, members, ok) -> bool:
    for o in observers:
        s = statuses(o, members)
        if not all(ok(v) for v in s.values()):
            raise AssertionError(f"{o.name} sees {s}")
    return True


def ask(node, n: int, workers: int = 4) -> list[tuple[int, float, dict]]:
    """n chat requests to `node`, `workers` at a time: (status, seconds, body) each."""
    def one(_):
        t0 = time.monotonic()
        try:
            r = requests.post(node.url + "/v1/chat/completions", json=SMALL, timeout=REQUEST_TIMEOUT_S + 15)
            body = r.json()
            return r.status_code, time.monotonic() - t0, body
        except (requests.RequestException, ValueError) as e:
            return -1, time.monotonic() - t0, {"exception": repr(e)}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


def check_answers(results, what: str) -> int:
    """Every request ended, within its deadline, in an answer or a clear retryable
    OpenAI error; returns how many were answered."""
    ok = 0
    for status, took, body in results:
        assert took < REQUEST_TIMEOUT_S + 5, f"{what}: a request took {took:.1f}s ({status} {body})"
        if status == 200:
            assert body["choices"][0]["message"]["content"] is not None, body
            ok += 1
        else:
            assert status in RETRYABLE, f"{what}: unexpected {status}: {body}"
            assert isinstance(body.get("error", {}).get("message"), str), f"{what}: not an OpenAI error: {body}"
    return ok


@pytest.fixture(scope="module")
def faults(workdir):
    root = workdir / "faults"
    root.mkdir(exist_ok=True)
    restore_bin = pin_binary(root)
    genesis = root / "genesis.json"
    fnet = FaultNet(seed=11)
    upstream = FakeUpstream(model=LOCAL_MODEL)
    ids, data, nodes, proxies = {}, {}, {}, {}
    for name in "ABCD":
        data[name] = root / f"data-{name}"
        data[name].mkdir()
        ids[name] = keygen(data[name] / "node.key")
    backends = {"A": [], "B": [llamacpp_backend("local", capacity=1)],
                "C": [openai_backend("scripted", upstream, LOCAL_MODEL)],
                "D": [openai_backend("scripted", upstream, LOCAL_MODEL)]}
    try:
        for name in "ABCD":
            config = {"node": {"data_dir": str(data[name]), "request_timeout_s": REQUEST_TIMEOUT_S},
                      "backends": backends[name],
                      "network": {"genesis": str(genesis), "gossip_period_ms": GOSSIP_MS},
                      "policy": {"offload_frequency": 1.0, "accept_frequency": 1.0, "stake": 10, "load_target": 2.0}}
            node = NetNode(name, config, root, data[name])
            node.node_id = ids[name]
            proxies[name] = FaultProxy(fnet, ids[name], node.port)
            node.config["network"]["advertise"] = proxies[name].address
            node.config_path.write_text(to_yaml(node.config) + "\n")
            nodes[name] = node
        out = subprocess.run(
            [str(node_binary()), "genesis", "--seed", proxies["A"].address, "--out", str(genesis)]
            + [x for n in "ABCD" for x in ("--grant", f"{ids[n]}={GRANT}")],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"genesis failed: {out.stdout}{out.stderr}"
        for name in "ABCD":
            try:
                nodes[name].start()
            except NodeStartError as e:
                pytest.fail(str(e), pytrace=False)
        yield {"net": fnet, "nodes": nodes, "proxies": proxies, "answered": 0}
    finally:
        for n in nodes.values():
            n.stop()
        for p in proxies.values():
            p.close()
        upstream.close()
        restore_bin()


def test_1_all_alive_through_the_proxies(faults):
    n, px = faults["nodes"], faults["proxies"]
    everyone = list(n.values())
    wait_until("every node sees every node alive", BOUND_S, lambda: sees(everyone, everyone, lambda s: s == "alive"))
    view = peers(n["A"])
    for name in "BCD":
        assert view[n[name].node_id]["address"] == px[name].address


def test_2_delay_and_loss_lose_nothing(faults):
    fnet, n = faults["net"], faults["nodes"]
    fnet.delay, fnet.loss = (0.02, 0.2), 0.1
    results = ask(n["A"], 16)
    fnet.delay, fnet.loss = (0.0, 0.0), 0.0
    answered = check_answers(results, "delay and loss")
    print(f"delay 20-200 ms, 10 % loss: {answered}/16 answered; proxy: {fnet.counts}")
    assert fnet.counts["dropped"] > 0, "the proxy dropped nothing: the test tested nothing"
    assert answered >= 12, f"only {answered}/16 answered under 10 % loss: {[r[0] for r in results]}"
    faults["answered"] += answered
    everyone = list(n.values())
    wait_until("the living stay (or are again) alive", BOUND_S, lambda: sees(everyone, everyone, lambda s: s == "alive"))


def test_3_partition_death_and_heal(faults):
    fnet, n = faults["net"], faults["nodes"]
    a, b, c, d = n["A"], n["B"], n["C"], n["D"]
    fnet.sides = {a.node_id: 0, b.node_id: 0, c.node_id: 1, d.node_id: 1}
    wait_until("A and B stop seeing C and D alive", BOUND_S, lambda: sees([a, b], [c, d], lambda s: s != "alive"))
    results = ask(a, 6, workers=2)
    answered = check_answers(results, "partition")
    assert answered == 6, f"B alone should answer everything on A's side: {[r[0] for r in results]}"
    faults["answered"] += answered
    d.sigkill()
    time.sleep(2)
    fnet.sides = {}
    living = [a, b, c]
    wait_until("after the heal A, B and C see each other alive", BOUND_S,
               lambda: sees(living, living, lambda s: s == "alive"))
    wait_until("D is dead (or forgotten) everywhere", BOUND_S, lambda: sees(living, [d], lambda s: s in ("dead", "absent")))
    time.sleep(3)
    assert sees(living, [d], lambda s: s in ("dead", "absent")), "the dead came back"
    assert sees(living, living, lambda s: s == "alive")


def test_4_ledgers_converge_and_account_for_every_answer(faults):
    n = faults["nodes"]
    a = n["A"]
    living = [a, n["B"], n["C"]]
    views = wait_until("ledgers converge after the heal", BOUND_S, lambda: converged(living))
    rows = {r["node"]: r["balanceMicro"] for r in views["A"]["rows"]}
    spent = GRANT * PRICE_MICRO - rows[a.node_id]
    assert spent == faults["answered"] * PRICE_MICRO, \
        f"A paid for {spent / PRICE_MICRO} jobs but its users got {faults['answered']} answers"
    assert sum(rows.values()) == 4 * GRANT * PRICE_MICRO, rows
    print(f"ledgers agree on {views['A']['events']} events; A paid {spent // PRICE_MICRO} jobs for "
          f"{faults['answered']} answers")
