"""Duel-and-judge on real processes (DESIGN.md §6 step 5): a requester duels every
offloaded job, two honest providers run the real bundled model, a third provider is a
junk responder (`experiment.cheat: junk`), and a panel of three judges that can tell
junk from text decides. The junk responder's credits must fall while the honest ones
rise, every ledger must agree, and Σ balances = Σ grants on every node.

Topology (one genesis, every job a duel, three judges per duel, 100 credits each):
  A  requester (no backend, duel.run_duels), the seed
  B  honest provider, llama.cpp (SmolLM2-135M), stake 40, judges
  C  honest provider, llama.cpp (SmolLM2-135M), stake 40, judges
  J  junk responder: a fake engine whose text its cheat replaces with random letters,
     stake 40, judges (honestly: the judge is not the cheat)
  D  judge only (no backend), stake 20
  E  judge only (no backend), stake 20

Judges: `reference` with MT-Bench's references and the `lexical` fallback when the
shared data is there (prompts: MT-Bench questions that carry a reference), else
`scripted` `lexical` on fixed prompts. Model text is never asserted.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from integration_support import (LIVE_NODES, LOCAL_MODEL, REPO_ROOT, FakeUpstream, NodeStartError,
                                 llamacpp_backend, node_binary, openai_backend, pin_binary)
from test_network import NetNode, balance_micro, credits, keygen, wait_until

GOSSIP_MS = 300
GRANT = 100
REQUESTS = 16
MEMBERSHIP_BOUND_S = 30
SETTLE_BOUND_S = 60
ENGLISH = ["The answer ", "is that ", "it is ", "one of ", "the best ", "ways to ", "do this, ", "and you ",
           "can see ", "it in ", "the result."]


def shared_data() -> Path | None:
    for p in (os.environ.get("WWWSERVE_SHARED_DATA"), REPO_ROOT.parent / "shared" / "data"):
        if p and (Path(p) / "prompts" / "mt_bench_questions.jsonl").is_file():
            return Path(p)
    return None


def prompts_and_judge():
    data = shared_data()
    if data is None:
        fixed = ["Explain in two sentences why the sky is blue.", "Describe in two sentences what a spider eats.",
                 "Tell me in two sentences how bread is made."]
        return fixed, {"kind": "scripted", "rule": "lexical"}
    path = data / "prompts" / "mt_bench_questions.jsonl"
    qs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with_ref = [q["turns"][0] for q in qs if q.get("reference")]
    assert len(with_ref) >= 10, "MT-Bench has questions with references"
    return with_ref, {"kind": "reference", "references": str(path), "fallback": "lexical"}


def duel_metric(node, outcome_prefix: str) -> float:
    return sum(v for name, labels, v in node.metrics().samples
               if name == "wwwserve_duels_total" and labels.get("outcome", "").startswith(outcome_prefix))


@pytest.fixture(scope="module")
def duelnet(workdir):
    root = workdir / "duels"
    root.mkdir(exist_ok=True)
    restore_bin = pin_binary(root)
    names = "ABCJDE"
    genesis = root / "genesis.json"
    data, ids = {}, {}
    for n in names:
        data[n] = root / f"data-{n}"
        data[n].mkdir()
        ids[n] = keygen(data[n] / "node.key")
    prompts, judge = prompts_and_judge()
    junk_engine = FakeUpstream(model=LOCAL_MODEL, pieces=ENGLISH)

    def config(n, backends, stake, join, **extra):
        net_section = {"genesis": str(genesis), "gossip_period_ms": GOSSIP_MS}
        if join:
            net_section["join"] = join
        cfg = {"node": {"data_dir": str(data[n]), "log_level": "info", "request_timeout_s": 90},
               "backends": backends, "network": net_section,
               "policy": {"offload_frequency": 1.0, "accept_frequency": 1.0, "stake": stake, "load_target": 2.0},
               "duel": {"run_duels": n == "A", "judging_timeout_s": 20,
                        "judge": judge if n != "A" else {"kind": "none"}}}
        cfg.update(extra)
        return cfg

    nodes: list[NetNode] = []
    try:
        a = NetNode("A", config("A", [], 0, []), root, data["A"])
        seed = f"127.0.0.1:{a.port}"
        out = subprocess.run(
            [str(node_binary()), "genesis", "--seed", seed, "--out", str(genesis), "--duel-probability", "1",
             "--judges-per-duel", "3"] + [x for n in names for x in ("--grant", f"{ids[n]}={GRANT}")],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"genesis failed: {out.stdout}{out.stderr}"
        g = json.loads(genesis.read_text())
        assert g["parameters"]["duelProbability"] == 1_000_000 and g["parameters"]["judgesPerDuel"] == 3, g
        specs = {
            "B": ([llamacpp_backend("local", capacity=1)], 40, {}),
            "C": ([llamacpp_backend("local", capacity=1)], 40, {}),
            "J": ([openai_backend("local", junk_engine, LOCAL_MODEL, capacity=1)], 40, {"experiment": {"cheat": "junk"}}),
            "D": ([], 20, {}),
            "E": ([], 20, {}),
        }
        procs = {"A": a}
        for n, (backends, stake, extra) in specs.items():
            procs[n] = NetNode(n, config(n, backends, stake, [seed], **extra), root, data[n])
        for n in names:
            procs[n].node_id = ids[n]
            nodes.append(procs[n])
            try:
                procs[n].start()
            except NodeStartError as e:
                pytest.fail(str(e), pytrace=False)
        yield {"nodes": procs, "ids": ids, "prompts": prompts, "judge": judge["kind"], "junk_engine": junk_engine}
    finally:
        for n in nodes:
            n.stop()
            if n in LIVE_NODES:
                LIVE_NODES.remove(n)
        junk_engine.close()
        restore_bin()


def all_see_everyone(procs, ids) -> bool:
    want = set(ids.values())
    for p in procs.values():
        view = requests.get(p.url + "/p2p/v1/peers", timeout=5).json()
        alive = {r["node"] for r in view if r["status"] == "alive"}
        judging = {r["node"] for r in view if r.get("judging")}
        if alive != want or judging != {ids[n] for n in "BCJDE"}:
            raise AssertionError(f"{p.name} sees alive {len(alive)}, judging {len(judging)}")
    return True


def test_junk_responder_loses_its_duels(duelnet):
    procs, ids = duelnet["nodes"], duelnet["ids"]
    a = procs["A"]
    wait_until("every node sees all six alive, five judging", MEMBERSHIP_BOUND_S, lambda: all_see_everyone(procs, ids))
    before = {n: balance_micro(credits(a), ids[n]) for n in ids}

    executors = {}
    for i in range(REQUESTS):
        prompt = duelnet["prompts"][i % len(duelnet["prompts"])]
        r = requests.post(a.url + "/v1/chat/completions", timeout=120, json={
            "model": LOCAL_MODEL, "max_tokens": 48, "temperature": 0.7, "stream": i % 2 == 0,
            "messages": [{"role": "user", "content": prompt}]})
        assert r.status_code == 200, f"request {i}: {r.status_code} {r.text[:300]}"
        executors[i] = r.headers.get("X-WWWServe-Executor")
    assert set(executors.values()) <= {ids["B"], ids["C"], ids["J"]}, executors

    started = duel_metric(a, "started")
    skipped = {labels["outcome"]: v for name, labels, v in a.metrics().samples
               if name == "wwwserve_duels_total" and labels.get("outcome", "").startswith("skipped")}
    # Every job is drawn for a duel (probability 1): it starts one, or says why not. Once the
    # junk responder is broke (stake 0) it no longer judges, so a duel between B and C can
    # lack a third judge (skipped_too_few_judges).
    assert started + sum(skipped.values()) >= REQUESTS, (started, skipped)
    assert started >= 5, (started, skipped)

    def duels_over():
        over = duel_metric(a, "settled") + duel_metric(a, "abandoned")
        return over >= started or None
    wait_until("every duel settled or abandoned", SETTLE_BOUND_S, duels_over, period_s=1)
    settled = duel_metric(a, "settled")
    decided = duel_metric(a, "settled_first") + duel_metric(a, "settled_second")
    assert decided >= 3, f"judges that tell junk from text decide the duels with the junk responder: {decided} of {settled}"

    def agree():
        views = {n: credits(p) for n, p in procs.items()}
        hashes = {v["eventSetHash"] for v in views.values()}
        return views if len(hashes) == 1 else None
    views = wait_until("all six ledgers agree", 30, agree, period_s=0.5)
    for n, v in views.items():
        total = sum(row["balanceMicro"] for row in v["rows"])
        assert total == GRANT * 1_000_000 * len(ids), f"{n}: Σ balances {total} != Σ grants"
    after = {n: balance_micro(views["A"], ids[n]) for n in ids}
    change = {n: after[n] - before[n] for n in ids}
    rows = {r["node"]: r for r in views["A"]["rows"]}
    junk = rows[ids["J"]]
    assert change["J"] < 0, f"the junk responder's credits must fall: {change}"
    # The honest providers together gain; each does better than the junk responder. (One of
    # them can lose a bond to the other when the judges find its answer worse: that is the
    # quality incentive, not a failure.)
    assert change["B"] + change["C"] > 0, f"the honest providers' credits must rise: {change}"
    assert min(change["B"], change["C"]) > change["J"], change
    assert (junk.get("duelLosses") or 0) >= 1 and (junk.get("duelWins") or 0) == 0, junk
    # Every duel the junk responder lost, an honest provider won (B and C may also decide
    # duels between themselves when the reference judge finds one of them right).
    honest_wins = sum(rows[ids[n]].get("duelWins") or 0 for n in "BC")
    assert honest_wins >= junk["duelLosses"], (rows[ids["B"]], rows[ids["C"]], junk)
    # Judges were paid fees and sent verdicts.
    verdicts = sum(v for p in procs.values() for name, labels, v in p.metrics().samples
                   if name == "wwwserve_judge_verdicts_total" and labels.get("outcome") in ("first", "second", "tie"))
    assert verdicts >= 3 * decided, f"each decided duel has verdicts: {verdicts}"
    abandoned = {labels["outcome"]: v for name, labels, v in a.metrics().samples
                 if name == "wwwserve_duels_total" and labels.get("outcome", "").startswith("abandoned")}
    print(f"\nduels: started {started:.0f}, settled {settled:.0f}, decided {decided:.0f}, abandoned {abandoned}; judge {duelnet['judge']}; "
          f"credit change (credits): " + ", ".join(f"{n} {c / 1e6:+.1f}" for n, c in change.items())
          + "; W/L/T: " + ", ".join(f"{n} {rows[ids[n]].get('duelWins') or 0}/{rows[ids[n]].get('duelLosses') or 0}/"
                                   f"{rows[ids[n]].get('duelTies') or 0}" for n in "BCJ"))
