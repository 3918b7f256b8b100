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
from mass_start import run

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
