"""A real multi-node wwwserve network on 127.0.0.1: gossip membership, offloading with
stake-weighted executor choice, the signed credit ledger, an executor SIGKILLed
mid-stream, a late joiner, and the victim's restart from its own data_dir.

Topology (one genesis, fixed from the start, 100 credits to each of A, B, C, D):
  A  pure requester (no backends, offload_frequency 1.0), the seed
  B  provider, capacity 1, stake 60
  C  provider, capacity 1, stake 30
  D  provider, capacity 1, stake 40, started later (test 4), joins through A

The tests run in file order and share the module-scoped `net` state: the victim of
test 3 (whichever provider executes the in-flight stream) is restarted in test 5.
Model text is never asserted. At most three llama.cpp engines run at once.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from integration_support import (pin_binary, LIVE_NODES, LOCAL_MODEL, NodeProcess, NodeStartError,
                                 llamacpp_backend, node_binary)

GOSSIP_MS = 300
GRANT = 100                    # credits per genesis grant
PRICE_MICRO = 1_000_000        # pricePerJob (1 credit), the genesis default
MEMBERSHIP_BOUND_S = 20        # all nodes see each other alive
CONVERGE_BOUND_S = 20          # ledgers agree (eventSetHash)
DEAD_BOUND_S = 15              # a SIGKILLed node is marked dead by the survivors
STREAM_BOUND_S = 45            # the interrupted stream must end within this
ENGINE_EXIT_BOUND_S = 10       # an engine dies with its node
TOMBSTONE_S = 60               # dead/left records expire this long after
SMALL = {"model": LOCAL_MODEL, "max_tokens": 8, "temperature": 0.7,
         "messages": [{"role": "user", "content": "Say hello."}]}


# --------------------------------------------------------------------------- helpers

class NetNode(NodeProcess):
    """A NodeProcess whose data_dir (and key) are chosen by the test, whose restarts
    log to a fresh file, and whose failure dump covers every run's log."""

    def __init__(self, name, config, workdir, data_dir: Path):
        super().__init__(name, config, workdir)
        self.data_dir = data_dir
        self.runs = 0
        self.logs: list[Path] = []
        self.engine_pids: set[int] = set()

    def start(self, timeout_s: float = 90) -> "NetNode":
        self.runs += 1
        self.log_path = self.dir / f"node.run{self.runs}.log"
        self.logs.append(self.log_path)
        while self in LIVE_NODES:
            LIVE_NODES.remove(self)
        if self.config.get("backends"):
            super().start(timeout_s)
        else:
            self._start_requester(timeout_s)
        for b in self.ready().get("backends", []):
            if isinstance(b.get("pid"), int):
                self.engine_pids.add(b["pid"])
        return self

    def _start_requester(self, timeout_s):
        """A pure requester is ready only once peers that serve models are alive (see
        test_requester_ready_once_peers_serve), and it may be the first node up, so
        wait for /health and /p2p/v1/peers instead."""
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(node_binary()), "node", "--config", str(self.config_path)],
            cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        LIVE_NODES.append(self)
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeStartError(f"node {self.name} exited with {self.proc.returncode}"
                                     f"\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200 and \
                        requests.get(self.url + "/p2p/v1/peers", timeout=2).status_code == 200:
                    return
            except requests.RequestException as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)
        self.stop()
        raise NodeStartError(f"node {self.name} not up within {timeout_s}s ({last})\n{self.log_tail()}")

    def sigkill(self):
        self.proc.kill()
        self.proc.wait(10)
        try:
            self._log.close()
        except Exception:
            pass

    def log_tail(self, max_lines: int = 150) -> str:
        out = []
        for p in self.logs:
            try:
                lines = p.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                lines = ["(no log)"]
            out.append(f"=== {p} ===")
            out.extend(lines[-max_lines:])
        return "\n".join(out) + "\n"

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def keygen(key_file: Path) -> str:
    out = subprocess.run([str(node_binary()), "keygen", "--key-file", str(key_file)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"keygen failed: {out.stdout}{out.stderr}"
    node_id = out.stdout.strip().split()[-1]
    assert len(node_id) == 64 and all(c in "0123456789abcdef" for c in node_id), out.stdout
    assert key_file.stat().st_mode & 0o777 == 0o600, oct(key_file.stat().st_mode)
    return node_id


def get_json(node: NodeProcess, path: str):
    r = requests.get(node.url + path, timeout=5)
    assert r.status_code == 200, f"{node.name} GET {path}: {r.status_code} {r.text[:300]}"
    return r.json()


def peers(node: NodeProcess) -> dict[str, dict]:
    return {p["node"]: p for p in get_json(node, "/p2p/v1/peers")}


def credits(node: NodeProcess) -> dict:
    return get_json(node, "/p2p/v1/credits")


def balance_micro(view: dict, node_id: str) -> int:
    for row in view["rows"]:
        if row["node"] == node_id:
            return row["balanceMicro"]
    raise AssertionError(f"{node_id[:12]} missing from credit rows of {view['me'][:12]}")


def wait_until(what: str, bound_s: float, probe, period_s: float = 0.2):
    """Calls probe() until it returns a truthy value (returned); fails after bound_s
    with the last value / error probe gave."""
    deadline = time.monotonic() + bound_s
    last = None
    for _ in range(int(bound_s / period_s) + 50):
        try:
            v = probe()
            if v:
                return v
            last = v
        except (AssertionError, requests.RequestException, ValueError, KeyError) as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            break
        time.sleep(period_s)
    raise AssertionError(f"{what}: not within {bound_s}s (last: {last})")


def chat(node: NodeProcess, payload=None, headers=None, timeout=60) -> requests.Response:
    return requests.post(node.url + "/v1/chat/completions", json=payload or SMALL,
                         headers=headers or {}, timeout=timeout)


def statuses(observer: NodeProcess, ids: dict[str, str]) -> dict[str, str]:
    """name -> status of each node in ids, as observer sees it ('absent' if unknown)."""
    view = peers(observer)
    return {name: (view[i]["status"] if i in view else "absent") for name, i in ids.items()}


def all_alive(observers, members) -> bool:
    """Every observer sees every member alive (including itself)."""
    ids = {m.name: m.node_id for m in members}
    for o in observers:
        s = statuses(o, ids)
        if any(v != "alive" for v in s.values()):
            raise AssertionError(f"{o.name} sees {s}")
    return True


def converged(nodes) -> dict:
    """All nodes hold the same event set; returns name -> credits view."""
    views = {n.name: credits(n) for n in nodes}
    hashes = {name: (v["eventSetHash"][:12], v["events"]) for name, v in views.items()}
    if len({h for h, _ in hashes.values()}) != 1:
        raise AssertionError(f"eventSetHash / events differ: {hashes}")
    return views


# --------------------------------------------------------------------------- fixture

@pytest.fixture(scope="module")
def net(workdir):
    """Starts A (seed, requester), B and C (providers); D and the restarts happen in the
    tests. Tears everything down (SIGTERM, then SIGKILL) and checks no engine survives."""
    root = workdir / "network"
    root.mkdir(exist_ok=True)
    restore_bin = pin_binary(root)
    genesis = root / "genesis.json"
    ids, data = {}, {}
    for name in "ABCD":
        data[name] = root / f"data-{name}"
        data[name].mkdir()
        ids[name] = keygen(data[name] / "node.key")
    assert len(set(ids.values())) == 4

    def config(name, backends, stake, join):
        net_section = {"genesis": str(genesis), "gossip_period_ms": GOSSIP_MS}
        if join:
            net_section["join"] = join
        return {"node": {"data_dir": str(data[name]), "log_level": "info", "request_timeout_s": 60},
                "backends": backends,
                "network": net_section,
                "policy": {"offload_frequency": 1.0, "accept_frequency": 1.0, "stake": stake,
                           "load_target": 2.0}}

    nodes: list[NetNode] = []
    state = {"ids": ids, "data": data, "genesis": genesis, "nodes": nodes}
    try:
        a = NetNode("A", config("A", [], 0, []), root, data["A"])
        seed = f"127.0.0.1:{a.port}"
        out = subprocess.run(
            [str(node_binary()), "genesis", "--seed", seed, "--out", str(genesis)]
            + [x for n in "ABCD" for x in ("--grant", f"{ids[n]}={GRANT}")],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"genesis failed: {out.stdout}{out.stderr}"
        g = json.loads(genesis.read_text())
        assert sorted(g["grants"]) == sorted(ids.values()) and g["seeds"] == [seed], g
        assert g["parameters"]["pricePerJob"] == PRICE_MICRO, g["parameters"]

        def make(name, stake):
            backends = [llamacpp_backend("local", capacity=1)]
            return NetNode(name, config(name, backends, stake, [seed]), root, data[name])

        b, c = make("B", 60), make("C", 30)
        state["make_d"] = lambda: make("D", 40)
        for n in (a, b, c):
            n.node_id = ids[n.name]
            nodes.append(n)
            try:
                n.start()
            except NodeStartError as e:
                pytest.fail(str(e), pytrace=False)
        state.update(A=a, B=b, C=c)
        yield state
    finally:
        engines = set()
        for n in nodes:
            engines |= n.engine_pids
            n.stop()
        for n in nodes:
            if n in LIVE_NODES:
                LIVE_NODES.remove(n)
        deadline = time.monotonic() + ENGINE_EXIT_BOUND_S
        left = engines
        while time.monotonic() < deadline:
            left = {p for p in engines if not pid_gone(p)}
            if not left:
                break
            time.sleep(0.1)
        for p in left:  # never leave engines behind, but report it
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        restore_bin()
        assert not left, f"llama.cpp engines outlived their nodes: {sorted(left)}"


# --------------------------------------------------------------------------- tests

def test_1_membership_three_alive(net):
    a, b, c = net["A"], net["B"], net["C"]
    wait_until("every node sees A, B, C alive", MEMBERSHIP_BOUND_S,
               lambda: all_alive([a, b, c], [a, b, c]))
    view = peers(a)
    assert view[a.node_id]["self"] is True
    assert view[b.node_id]["self"] is False
    # A advertises no models; B and C serve the model, accept, and show capacity 1.
    for p in (b, c):
        rec = view[p.node_id]
        assert LOCAL_MODEL in rec["models"], rec
        assert rec["capacity"] == 1 and rec["accepting"] is True, rec
        assert rec["address"] == f"127.0.0.1:{p.port}", rec
    assert view[a.node_id]["models"] == [] and view[a.node_id]["accepting"] is False
    # Declared stakes (under the 100-credit balances) are what everyone sees.
    wait_until("stakes visible at A", 5,
               lambda: float(peers(a)[b.node_id]["stake"]) == 60
               and float(peers(a)[c.node_id]["stake"]) == 30)
    # The CLI views agree with the HTTP ones.
    out = subprocess.run([str(node_binary()), "peers", "--node", a.url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    for n in (a, b, c):
        assert n.node_id[:8] in out.stdout, out.stdout
    out = subprocess.run([str(node_binary()), "credits", "--node", a.url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_requester_ready_once_peers_serve(net):
    # A pure requester has no backend: it is ready because alive peers serve models.
    r = requests.get(net["A"].url + "/ready", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ready", f"{r.status_code} {r.text[:300]}"
    assert r.json()["backends"] == [] and r.json()["serving_peers"] >= 2, r.text[:300]


def test_2_offload_stake_weighted_and_ledger(net):
    a, b, c = net["A"], net["B"], net["C"]
    ids = net["ids"]
    start = converged([a, b, c])
    before = {n: balance_micro(start["A"], ids[n]) for n in "ABC"}
    total = sum(r["balanceMicro"] for r in start["A"]["rows"])
    assert total == 4 * GRANT * PRICE_MICRO, start["A"]["rows"]

    executed = {ids["B"]: 0, ids["C"]: 0}
    sent = 0
    for i in range(20):
        r = chat(a)
        sent += 1
        assert r.status_code == 200, f"request {i}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("X-WWWServe-Offloaded") == "true", dict(r.headers)
        ex = r.headers.get("X-WWWServe-Executor")
        assert ex in executed, f"executor {ex!r} is not a provider ({dict(r.headers)})"
        body = r.json()
        assert body["object"] == "chat.completion" and body["usage"]["completion_tokens"] > 0
        assert body["model"] == LOCAL_MODEL and body["choices"][0]["finish_reason"] in ("stop", "length")
        executed[ex] += 1
        if i >= 9 and all(executed.values()):
            break
    print(f"executors over {sent} requests: B={executed[ids['B']]} C={executed[ids['C']]}")
    assert all(executed.values()), f"executors did not vary over {sent} requests: {executed}"

    # An offloaded stream is relayed whole: one id, finish reason, usage, [DONE].
    payload = {**SMALL, "stream": True, "stream_options": {"include_usage": True}}
    with requests.post(a.url + "/v1/chat/completions", json=payload, stream=True,
                       timeout=(5, 30)) as r:
        assert r.status_code == 200, r.text[:300]
        assert r.headers.get("content-type", "").startswith("text/event-stream")
        assert r.headers.get("X-WWWServe-Offloaded") == "true"
        assert r.headers.get("X-WWWServe-Executor") in executed
        chunks, done, errors = _read_stream(r, lambda n: None, 30)
    sent += 1
    assert done and not errors, (done, errors)
    assert len({ch["id"] for ch in chunks}) == 1, "chunk ids differ"
    assert all(ch["model"] == LOCAL_MODEL for ch in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0, chunks[-1]
    finishes = [ch["choices"][0]["finish_reason"] for ch in chunks[:-1] if ch["choices"][0].get("finish_reason")]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length"), finishes
    executed[r.headers["X-WWWServe-Executor"]] += 1

    # A request that forbids offloading cannot run on a pure requester.
    r = chat(a, headers={"X-WWWServe-Allow-Offload": "false"})
    print(f"offload forbidden on a pure requester: {r.status_code} {r.text[:200]}")
    # Not retryable: the model is not served here and the request may not leave.
    assert r.status_code == 404, f"{r.status_code} {r.text[:300]}"
    assert r.json()["error"]["code"] == "model_not_found", r.text
    assert r.headers.get("X-WWWServe-Offloaded") != "true"

    views = wait_until("ledgers converge after offloads", CONVERGE_BOUND_S,
                       lambda: (lambda v: v if v["A"]["events"] - start["A"]["events"] >= sent else None)(
                           converged([a, b, c])))
    for name, v in views.items():
        assert v["events"] - start[name]["events"] == sent, \
            f"{name} holds {v['events']} events, expected {start[name]['events']} + {sent} receipts"
        assert sum(r["balanceMicro"] for r in v["rows"]) == total, f"{name}: supply not conserved"
        assert balance_micro(v, ids["A"]) == before["A"] - sent * PRICE_MICRO, name
        assert balance_micro(v, ids["B"]) == before["B"] + executed[ids["B"]] * PRICE_MICRO, name
        assert balance_micro(v, ids["C"]) == before["C"] + executed[ids["C"]] * PRICE_MICRO, name
    net["paid"] = sent


def _read_stream(resp, on_chunk, bound_s):
    """Reads SSE data lines until EOF; returns (chunks, done, errors)."""
    chunks, errors, done = [], [], False
    deadline = time.monotonic() + bound_s
    for raw in resp.iter_lines():
        assert time.monotonic() < deadline, f"stream still open after {bound_s}s"
        line = raw.decode("utf-8", errors="replace")
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        obj = json.loads(data)
        if "error" in obj:
            errors.append(obj["error"])
        else:
            chunks.append(obj)
            on_chunk(len(chunks))
    return chunks, done, errors


def test_3_executor_killed_mid_stream(net):
    a = net["A"]
    ids = net["ids"]
    providers = {ids["B"]: net["B"], ids["C"]: net["C"]}
    pre = converged([a, net["B"], net["C"]])

    payload = {"model": LOCAL_MODEL, "stream": True, "max_tokens": 300, "temperature": 0.9,
               "messages": [{"role": "user",
                             "content": "Write a very long, detailed story about a dragon and a knight."}]}
    killed = {}
    t0 = time.monotonic()
    with requests.post(a.url + "/v1/chat/completions", json=payload, stream=True,
                       timeout=(5, 20)) as resp:
        assert resp.status_code == 200, resp.text[:300]
        assert resp.headers.get("X-WWWServe-Offloaded") == "true"
        victim = providers[resp.headers["X-WWWServe-Executor"]]
        survivor = net["B"] if victim is net["C"] else net["C"]
        engine_pid = victim.backend("local")["pid"]
        inc_before = peers(a)[victim.node_id]["incarnation"]
        # Survivor ledgers before the kill (for "never decreases").
        counts = {n.name: credits(n)["events"] for n in (a, survivor)}
        victim_events = credits(victim)["events"]

        def on_chunk(n):
            if n == 3 and not killed:
                victim.sigkill()
                killed["at"] = time.monotonic()

        try:
            chunks, done, errors = _read_stream(resp, on_chunk, STREAM_BOUND_S)
            transport_error = None
        except (requests.RequestException, ValueError) as e:
            # A broken chunked body is a clear error too (but not a hang: bounded).
            chunks, done, errors, transport_error = [], False, [], e
    took = time.monotonic() - t0
    print(f"victim={victim.name} survivor={survivor.name}: {len(chunks)} chunks, done={done}, "
          f"errors={errors}, transport_error={transport_error!r}, {took:.1f}s")
    assert killed, f"the stream ended before 3 chunks: {len(chunks)} chunks, errors={errors}"
    net.update(victim=victim, survivor=survivor, victim_events=victim_events,
               victim_incarnation=inc_before)

    finishes = [ch["choices"][0].get("finish_reason") for ch in chunks if ch.get("choices")]
    if done:
        # Only acceptable if the answer really finished (a finish reason, no error).
        assert not errors, f"[DONE] after an error event: {errors}"
        assert finishes and finishes[-1] in ("stop", "length"), \
            f"clean [DONE] on a truncated stream ({len(chunks)} chunks, finishes={finishes})"
    else:
        assert errors or transport_error, \
            f"stream ended without [DONE] and without an error event ({len(chunks)} chunks)"
        for e in errors:
            assert isinstance(e.get("message"), str) and e["message"], e

    # While the victim is only suspected, A's offers to it fail (connection refused)
    # and A must fail over to the survivor: no user-visible error.
    for i in range(2):
        r = chat(a)
        assert r.status_code == 200, \
            f"request {i} right after the kill: {r.status_code} {r.text[:300]}"
        assert r.headers.get("X-WWWServe-Executor") == survivor.node_id, dict(r.headers)
        net["paid"] += 1
    print(f"2 requests right after the kill ok; victim seen as "
          f"{statuses(a, {victim.name: victim.node_id})} by A")

    # The victim's engine dies with it.
    wait_until(f"engine {engine_pid} of SIGKILLed {victim.name} exits", ENGINE_EXIT_BOUND_S,
               lambda: pid_gone(engine_pid))

    # Survivors mark the victim dead; their ledgers never lose an event.
    def victim_dead():
        for n in (a, survivor):
            c = credits(n)["events"]
            assert c >= counts[n.name], f"{n.name}'s event count dropped {counts[n.name]} -> {c}"
            counts[n.name] = c
        s = {n.name: statuses(n, {victim.name: victim.node_id})[victim.name] for n in (a, survivor)}
        if not seen_states or seen_states[-1] != s:
            seen_states.append(s)
        return all(v == "dead" for v in s.values())
    seen_states: list[dict] = []
    wait_until(f"{victim.name} marked dead by A and {survivor.name}", DEAD_BOUND_S, victim_dead)
    print(f"{victim.name} dead everywhere {time.monotonic() - killed['at']:.1f}s after SIGKILL "
          f"(states seen: {seen_states})")
    assert "peer down" in a.log_text(), "A logged no 'peer down'"

    # New requests to A still succeed, executed by the survivor.
    for i in range(3):
        r = chat(a)
        assert r.status_code == 200, f"after the kill, request {i}: {r.status_code} {r.text[:300]}"
        assert r.headers.get("X-WWWServe-Executor") == survivor.node_id, dict(r.headers)
    net["paid"] += 3
    if done:
        net["paid"] += 1

    views = wait_until("A and the survivor agree after the kill", CONVERGE_BOUND_S,
                       lambda: converged([a, survivor]))
    for n in (a, survivor):
        assert views[n.name]["events"] >= counts[n.name]
        assert views[n.name]["events"] >= pre[n.name]["events"] + 3
    # No receipt for the interrupted job unless it was delivered: A paid exactly for
    # what it got.
    assert balance_micro(views["A"], ids["A"]) == (GRANT - net["paid"]) * PRICE_MICRO, \
        f"A paid {GRANT - balance_micro(views['A'], ids['A']) / PRICE_MICRO} credits for {net['paid']} answers"
    assert sum(r["balanceMicro"] for r in views["A"]["rows"]) == 4 * GRANT * PRICE_MICRO


def test_4_late_joiner_gets_offloads(net):
    a, survivor = net["A"], net["survivor"]
    d = net["make_d"]()
    d.node_id = net["ids"]["D"]
    net["nodes"].append(d)
    try:
        d.start()
    except NodeStartError as e:
        pytest.fail(str(e), pytrace=False)
    net["D"] = d
    wait_until("D alive everywhere", MEMBERSHIP_BOUND_S,
               lambda: all_alive([a, survivor, d], [a, survivor, d]))
    wait_until("D's stake visible at A", 5, lambda: float(peers(a)[d.node_id]["stake"]) == 40)

    seen = {}
    for i in range(20):
        r = chat(a)
        assert r.status_code == 200, f"request {i}: {r.status_code} {r.text[:300]}"
        ex = r.headers.get("X-WWWServe-Executor")
        assert ex in (survivor.node_id, d.node_id), f"unexpected executor {ex}"
        seen[ex] = seen.get(ex, 0) + 1
        net["paid"] += 1
        if ex == d.node_id:
            break
    print(f"executors until D: {seen}")
    assert seen.get(d.node_id), f"D executed none of {sum(seen.values())} requests: {seen}"
    views = wait_until("A, survivor and D agree", CONVERGE_BOUND_S,
                       lambda: converged([a, survivor, d]))
    assert balance_micro(views["D"], d.node_id) == (GRANT + seen[d.node_id]) * PRICE_MICRO

    # D leaves gracefully (SIGTERM): the others see it `left` (not dead), its engine
    # stops, and no request goes to it afterwards. (Also keeps engines at <= 3 for
    # test 5, even next to the session's main node.)
    engine = d.backend("local")["pid"]
    d.stop()
    net["d_left_at"] = time.monotonic()
    wait_until(f"D's engine {engine} exits", ENGINE_EXIT_BOUND_S, lambda: pid_gone(engine))
    wait_until("A and the survivor see D left", 10,
               lambda: all(statuses(n, {"D": d.node_id})["D"] == "left" for n in (a, survivor)))
    r = chat(a)
    assert r.status_code == 200 and r.headers.get("X-WWWServe-Executor") == survivor.node_id, \
        f"{r.status_code} {dict(r.headers)} {r.text[:300]}"
    net["paid"] += 1


def test_5_victim_restarts_and_catches_up(net):
    a, survivor, d, victim = net["A"], net["survivor"], net["D"], net["victim"]
    try:
        victim.start()
    except NodeStartError as e:
        pytest.fail(str(e), pytrace=False)
    view = credits(victim)
    assert view["me"] == victim.node_id, "the restarted node has a new identity"
    assert view["events"] >= net["victim_events"], \
        f"{victim.name} lost events across the restart: {net['victim_events']} -> {view['events']}"
    # What it loaded from its own SQLite before any sync (the start-up log line).
    restored = re.findall(r"restored_events=(\d+)", victim.logs[-1].read_text(errors="replace"))
    assert restored, "no 'network identity ... restored_events=' line in the restart log"
    assert int(restored[0]) >= net["victim_events"], \
        f"{victim.name} restored {restored[0]} events from disk, held {net['victim_events']} before the kill"
    print(f"restart: restored {restored[0]} events from disk (held {net['victim_events']})")

    everyone = [a, survivor, victim]

    def rejoined():
        all_alive(everyone, everyone)
        incs = {o.name: peers(o)[victim.node_id]["incarnation"] for o in everyone}
        assert all(i > net["victim_incarnation"] for i in incs.values()), \
            f"incarnation not raised above {net['victim_incarnation']}: {incs}"
        return True
    wait_until(f"{victim.name} alive everywhere with a higher incarnation", MEMBERSHIP_BOUND_S,
               rejoined)
    views = wait_until(f"{victim.name} catches up", CONVERGE_BOUND_S, lambda: converged(everyone))
    # D (left) is known to the restarted node's ledger with what it earned.
    assert balance_micro(views[victim.name], d.node_id) > GRANT * PRICE_MICRO

    # The restarted node executes offloads again.
    seen = {}
    for i in range(15):
        r = chat(a)
        assert r.status_code == 200, f"request {i}: {r.status_code} {r.text[:300]}"
        ex = r.headers.get("X-WWWServe-Executor")
        seen[ex] = seen.get(ex, 0) + 1
        net["paid"] += 1
        if ex == victim.node_id:
            break
    assert seen.get(victim.node_id), f"restarted {victim.name} executed none of {seen}"
    views = wait_until("ledgers agree after the restart's offloads", CONVERGE_BOUND_S,
                       lambda: converged(everyone))
    for name, v in views.items():
        assert sum(r["balanceMicro"] for r in v["rows"]) == 4 * GRANT * PRICE_MICRO, name
        assert balance_micro(v, a.node_id) == (GRANT - net["paid"]) * PRICE_MICRO, name


def test_6_left_record_expires(net):
    """Dead/left records are tombstones that expire 60 s later (and stay gone)."""
    a, survivor, victim, d = net["A"], net["survivor"], net["victim"], net["D"]
    remaining = TOMBSTONE_S + 20 - (time.monotonic() - net["d_left_at"])
    observers = [a, survivor] + ([victim] if victim.proc.poll() is None else [])

    def gone():
        for n in observers:
            s = statuses(n, {"D": d.node_id})["D"]
            assert s in ("left", "absent"), f"{n.name} sees the departed D as {s}"
        return all(statuses(n, {"D": d.node_id})["D"] == "absent" for n in observers)
    wait_until("D's `left` record expires everywhere", remaining, gone, period_s=1.0)
    took = time.monotonic() - net["d_left_at"]
    print(f"D's record gone everywhere {took:.0f}s after it left")
    assert took >= TOMBSTONE_S - 5, f"tombstone expired after {took:.0f}s, before ~{TOMBSTONE_S}s"
    # It does not come back through gossip.
    for _ in range(5):
        time.sleep(GOSSIP_MS / 1000 * 2)
        assert gone(), "D's expired record came back"
    all_alive(observers, observers)
