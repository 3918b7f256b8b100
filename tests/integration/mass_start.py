#!/usr/bin/env python3
"""Mass start of a real wwwserve network on 127.0.0.1: N node processes started at once
(no backends: membership and ledger only), two genesis seeds. Measures how long until
every node sees every node alive, then watches the views for false deaths (a live node
seen suspect or dead by anyone), and samples each process's CPU and RSS.

Used by tests/integration/test_mass_start.py (a few dozen nodes, bounded in time) and
by hand for the 100-process figure of docs/operations.md:

    python3 tests/integration/mass_start.py --nodes 100 --watch 300 \\
        --binary .build/release/wwwserve

Prints one JSON report at the end (and a progress line per sample on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.request import urlopen

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / (1 << 20)


class Net:
    """N node processes under `root`; `start()` launches them all at once."""

    def __init__(self, binary: Path, root: Path, n: int, gossip_ms: int, seeds: int = 2):
        self.root, self.n, self.gossip_ms = root, n, gossip_ms
        root.mkdir(parents=True, exist_ok=True)
        self.binary = root / "wwwserve"
        shutil.copy2(binary, self.binary)   # one build for the whole run
        self.ports = free_ports(n)
        self.ids: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.logs = []
        seed_addrs = [f"127.0.0.1:{p}" for p in self.ports[:seeds]]
        with ThreadPoolExecutor(8) as pool:
            self.ids = list(pool.map(self._keygen, range(n)))
        genesis = root / "genesis.json"
        grants = [x for i in self.ids for x in ("--grant", f"{i}=100")]
        args = [str(self.binary), "genesis", "--out", str(genesis)]
        for s in seed_addrs:
            args += ["--seed", s]
        out = subprocess.run(args + grants, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"genesis failed: {out.stdout}{out.stderr}")
        for i in range(n):
            (root / f"n{i}" / "node.yaml").write_text(
                f"node:\n  host: 127.0.0.1\n  port: {self.ports[i]}\n  data_dir: {root / f'n{i}'}\n"
                f"  log_level: warning\n"
                f"backends: []\n"
                f"network:\n  genesis: {genesis}\n  gossip_period_ms: {gossip_ms}\n  seed: {i + 1}\n")

    def _keygen(self, i: int) -> str:
        d = self.root / f"n{i}"
        d.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([str(self.binary), "keygen", "--key-file", str(d / "node.key")],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"keygen failed: {out.stdout}{out.stderr}")
        return out.stdout.strip().split()[-1]

    def start(self):
        for i in range(self.n):
            log = open(self.root / f"n{i}" / "node.log", "wb")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                [str(self.binary), "node", "--config", str(self.root / f"n{i}" / "node.yaml")],
                cwd=str(self.root / f"n{i}"), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))

    def views(self) -> list[dict[str, str] | None]:
        """Each node's view, node id -> status (None where the node did not answer)."""
        def one(i):
            try:
                with urlopen(f"http://127.0.0.1:{self.ports[i]}/p2p/v1/peers", timeout=5) as r:
                    return {p["node"]: p["status"] for p in json.load(r)}
            except Exception:
                return None
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, range(self.n)))

    def exited(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p.poll() is not None]

    def cpu(self) -> list[float]:
        return [cpu_seconds(p.pid) for p in self.procs]

    def rss(self) -> list[float]:
        return [rss_mib(p.pid) for p in self.procs]

    def metric_sum(self, name: str) -> float:
        """Sum of a Prometheus counter over all nodes (all label sets)."""
        total = 0.0
        for port in self.ports:
            try:
                with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    for line in r.read().decode().splitlines():
                        if line.startswith(name) and not line.startswith("#"):
                            total += float(line.rsplit(" ", 1)[1])
            except Exception:
                pass
        return total

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for log in self.logs:
            log.close()


def alive_counts(net: Net, views) -> list[int]:
    """Per node: how many of the N (itself included) it sees alive; -1 if no answer."""
    ids = set(net.ids)
    return [-1 if v is None else sum(1 for k, s in v.items() if k in ids and s == "alive")
            for v in views]


def false_deaths(net: Net, views) -> int:
    """(observer, subject) pairs where a running node is seen suspect or dead."""
    running = {net.ids[i] for i, p in enumerate(net.procs) if p.poll() is None}
    return sum(1 for v in views if v is not None
               for k, s in v.items() if k in running and s in ("suspect", "dead"))


def run(binary: Path, n: int, converge_bound_s: float, watch_s: float, gossip_ms: int,
        sample_s: float = 2.0, root: Path | None = None, log=sys.stderr) -> dict:
    own_root = root is None
    root = root or Path(tempfile.mkdtemp(prefix="wwwserve-mass-"))
    root.mkdir(parents=True, exist_ok=True)
    net = Net(binary, root, n, gossip_ms)
    report = {"nodes": n, "gossip_period_ms": gossip_ms, "converged_s": None,
              "false_death_samples": 0, "max_false_deaths": 0, "exited": [], "root": str(root)}
    try:
        t0 = time.monotonic()
        net.start()
        cpu0 = None
        while time.monotonic() - t0 < converge_bound_s:
            time.sleep(sample_s / 2)
            counts = alive_counts(net, net.views())
            elapsed = time.monotonic() - t0
            print(f"[{elapsed:6.1f}s] alive seen: min {min(counts)} max {max(counts)} of {n}",
                  file=log, flush=True)
            if min(counts) == n:
                report["converged_s"] = round(elapsed, 1)
                break
        if report["converged_s"] is None:
            report["final_alive_counts"] = counts
        else:
            cpu0, w0 = net.cpu(), time.monotonic()
            while time.monotonic() - w0 < watch_s:
                time.sleep(sample_s)
                views = net.views()
                fd = false_deaths(net, views)
                counts = alive_counts(net, views)
                if fd:
                    report["false_death_samples"] += 1
                    report["max_false_deaths"] = max(report["max_false_deaths"], fd)
                print(f"[{time.monotonic() - t0:6.1f}s] watching: false deaths {fd}, "
                      f"alive seen min {min(counts)}", file=log, flush=True)
            dt = time.monotonic() - w0
            cpu1 = net.cpu()
            per_node = sorted((b - a) / dt for a, b in zip(cpu0, cpu1))
            report["watch_s"] = round(dt, 1)
            report["idle_cpu_per_node_pct"] = {
                "mean": round(100 * sum(per_node) / n, 2), "p50": round(100 * per_node[n // 2], 2),
                "max": round(100 * per_node[-1], 2)}
            report["total_cpu_cores"] = round(sum(per_node), 3)
        rss = sorted(net.rss())
        report["rss_mib"] = {"p50": round(rss[n // 2], 1), "max": round(rss[-1], 1)}
        report["exited"] = net.exited()
        report["membership_dropped_sends"] = net.metric_sum('wwwserve_peer_messages_total{kind="membership",outcome="dropped"')
        report["membership_stale_rejected"] = net.metric_sum('wwwserve_peer_messages_total{kind="membership",outcome="rejected_stale"')
        report["membership_shed"] = net.metric_sum('wwwserve_peer_messages_total{kind="membership_or_ledger",outcome="shed"')
        return report
    finally:
        net.stop()
        if own_root and report.get("converged_s") is not None and report["false_death_samples"] == 0:
            shutil.rmtree(root, ignore_errors=True)


def _raise_on_sigterm(*_):
    raise KeyboardInterrupt("SIGTERM")


def main():
    signal.signal(signal.SIGTERM, _raise_on_sigterm)   # `timeout` still stops every node
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--binary", type=Path, default=Path(".build/release/wwwserve"))
    ap.add_argument("--converge-bound", type=float, default=120, help="seconds to wait for convergence")
    ap.add_argument("--watch", type=float, default=300, help="seconds to watch after convergence")
    ap.add_argument("--gossip-ms", type=int, default=1000)
    args = ap.parse_args()
    print(json.dumps(run(args.binary.resolve(), args.nodes, args.converge_bound, args.watch, args.gossip_ms), indent=2))


if __name__ == "__main__":
    main()
