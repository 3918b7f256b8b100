"""A mass start over real processes (issue: no metastable collapse when many nodes start
at once, e.g. after a power cut or a release roll-out): a few dozen membership-only nodes
with two genesis seeds, all started in the same instant, must all see each other alive
within a bound and then stay converged with no false suspicion or death.

The 100-process figure is measured by hand with the same harness
(`python3 tests/integration/mass_start.py --nodes 100`, see docs/operations.md).
"""
from __future__ import annotations

import os

from integration_support import node_binary
from mass_start import alive_counts, run

NODES = int(os.environ.get("WWWSERVE_MASS_START_NODES", "32"))
CONVERGE_BOUND_S = 60
WATCH_S = 30


def test_a_mass_start_converges_and_stays_converged(tmp_path):
    report = run(node_binary().resolve(), NODES, CONVERGE_BOUND_S, WATCH_S, gossip_ms=1000,
                 root=tmp_path / "mass")
    print(report)
    assert report["exited"] == [], f"nodes exited: {report['exited']} (logs under {report['root']})"
    assert report["converged_s"] is not None, \
        f"{NODES} nodes did not all see each other alive within {CONVERGE_BOUND_S}s: {report}"
    assert report["false_death_samples"] == 0, \
        f"live nodes were seen suspect or dead after convergence: {report}"


def test_a_slow_body_flood_on_the_peer_port_does_not_get_a_node_suspected(tmp_path):
    """70 connections trickle peer-message bodies into one node (a stranger needs no key
    for that). They must not take the slots its real gossip needs: the node stays alive in
    every view and sheds nothing."""
    import socket
    import time
    from mass_start import Net
    net = Net(node_binary().resolve(), tmp_path / "slow", 4, 200)
    socks: list[socket.socket] = []
    try:
        net.start()
        deadline = time.monotonic() + 30
        while min(alive_counts(net, net.views())) < 4:
            assert time.monotonic() < deadline, "4 nodes did not converge within 30 s"
            time.sleep(0.5)
        port = net.ports[3]
        end = time.monotonic() + 15
        while time.monotonic() < end:
            kept = []
            for s in socks:
                try:
                    s.send(b"a")
                    kept.append(s)
                except OSError:
                    s.close()
            socks = kept
            while len(socks) < 70:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.send(b"POST /p2p/v1/message HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000\r\n\r\n{")
                socks.append(s)
            time.sleep(0.3)
        views = net.views()
        victim = net.ids[3]
        seen = [v.get(victim) if v else None for v in views]
        assert all(s == "alive" for s in seen), f"node 3 under a slow-body flood is seen as {seen}"
        assert net.metric_sum('wwwserve_peer_messages_total{kind="membership_or_ledger",outcome="shed"') == 0
    finally:
        for s in socks:
            s.close()
        net.stop()
