"""The spawn benchmark's pure parts (bench/figures.py, cpu.py, hubs.py, phases.py):
turn order, percentiles and spreads, targets, /proc parsing, CPU split by payer,
the pool's metrics, log milestones and phase durations, -X importtime lines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import cpu  # noqa: E402
import figures  # noqa: E402
import phases  # noqa: E402
from hubs import parse_pool_metrics  # noqa: E402


def test_rotated_gives_each_hub_each_place_in_turn():
    hubs = ["plain", "labspace", "warm"]
    orders = [figures.rotated(hubs, r) for r in range(3)]
    assert orders == [
        ["plain", "labspace", "warm"],
        ["labspace", "warm", "plain"],
        ["warm", "plain", "labspace"],
    ]
    for place in range(3):
        assert sorted(o[place] for o in orders) == sorted(hubs)
    assert figures.rotated(hubs, 3) == hubs
    assert figures.rotated([], 2) == []


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 95, 1.0),
        ([1.0, 2.0], 50, 1.0),
        (list(map(float, range(1, 21))), 95, 19.0),
        (list(map(float, range(1, 21))), 100, 20.0),
        ([], 95, None),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert figures.percentile(values, q) == expected


def test_summary_counts_failures_and_quotes_a_spread():
    s = figures.summary([3.0, None, 1.0, 2.0, 4.0])
    assert (s["ready"], s["total"]) == (4, 5)
    assert (s["p50"], s["p95"], s["min"], s["max"]) == (2.5, 4.0, 1.0, 4.0)
    assert (s["q1"], s["q3"]) == (1.75, 3.25)
    assert figures.spread(s) == "1.00–4.00 (IQR 1.75–3.25)"
    empty = figures.summary([None, None])
    assert empty["ready"] == 0 and empty["p50"] is None
    assert figures.spread(empty) == "—"
    one = figures.summary([0.5])
    assert figures.spread(one) == "0.50–0.50"


def test_verdicts_and_ratios():
    assert figures.verdict(0.9, 1.0) == "met"
    assert figures.verdict(1.0, 1.0) == "met"
    assert figures.verdict(1.01, 1.0) == "not met"
    assert figures.verdict(2.0, 8.0, ready_ok=False) == "not met"  # 19/20 ready
    assert figures.verdict(None, 1.0) == "no figure"
    assert figures.verdict(None, 8.0, ready_ok=False) == "not met"  # 0/20 ready
    assert figures.ratio(1.0, 4.0) == 0.25
    assert figures.ratio(None, 4.0) is None
    assert figures.TARGETS[("class of 20 p95 s", "docker")] == 12.0


def test_parse_stat_counts_reaped_children_and_odd_names():
    ticks = cpu.TICK
    fields = ["S", "7", "1", "1", "0", "-1", "0", "0", "0", "0", "0"]
    times = [str(2 * ticks), str(ticks), str(3 * ticks), str(ticks)]  # u s cu cs
    line = f"42 (a (weird) name) {' '.join(fields)} {' '.join(times)} 20 0 1 0 100"
    assert cpu.parse_stat(line) == (42, "a (weird) name", 7, 7.0)


def test_descendants_follow_the_tree_only():
    procs = {1: ("init", 0, 0), 10: ("hub", 1, 0), 11: ("proxy", 10, 0), 12: ("ws", 10, 0)}
    procs |= {13: ("kernel", 12, 0), 20: ("other", 1, 0)}
    assert cpu.descendants(procs, 10) == {10, 11, 12, 13}
    assert cpu.descendants(procs, 99) == set()


def snap(procs, cwd, containers=None, busy=(0.0, 0.0), at=0.0):
    return cpu.Snapshot(at, procs, cwd, containers or {}, busy)


def test_split_by_payer_counts_each_process_once():
    before = snap(
        {10: ("hub", 1, 5.0), 30: ("forkserver", 10, 2.0), 31: ("python", 30, 0.1)},
        {10: "/repo", 30: "/run", 31: "/run"},
        busy=(100.0, 200.0),
    )
    after = snap(
        {
            10: ("hub", 1, 5.4),  # +0.4 hub
            30: ("forkserver", 10, 2.01),  # +0.01 pool
            31: ("python", 30, 0.4),  # the claimed member, now in the user's home
            32: ("python", 30, 0.05),  # the refill
            40: ("kernel", 31, 0.2),  # started in the window
        },
        {10: "/repo", 30: "/run", 31: "/h/ann", 32: "/run", 40: "/h/ann/sub"},
        {"": 9.0, "abc123": 1.5, "pool77": 0.7, "theirs": 5.0},
        busy=(103.0, 204.0),
        at=2.0,
    )
    before.containers = {"": 6.0, "pool77": 0.2, "theirs": 1.0}
    s = cpu.split(before, after, ("/h/ann",), {30, 31, 32}, {"abc"}, {"pool7"})
    assert s.hub == pytest.approx(0.4)
    assert s.user == pytest.approx(0.3 + 0.2 + 1.5)  # member since claim + kernel + container
    assert s.pool == pytest.approx(0.01 + 0.05 + 0.5)
    assert s.critical == pytest.approx(s.hub + s.user)
    assert s.busy == pytest.approx(3.0) and s.seconds == 2.0
    # a pid reused by another program counts from zero
    again = snap({10: ("other", 1, 0.3)}, {10: "/"})
    assert cpu.split(before, again, ()).hub == pytest.approx(0.3)


def test_in_homes_needs_a_whole_folder():
    assert cpu.in_homes("/h/ann", ("/h/ann",))
    assert cpu.in_homes("/h/ann/x", ("/h/bob", "/h/ann"))
    assert not cpu.in_homes("/h/anna", ("/h/ann",))
    assert not cpu.in_homes("", ("/h/ann",))
    assert not cpu.in_homes("/h/ann", ("",))


def test_busy_share():
    assert cpu.busy_share((10.0, 100.0), (15.0, 110.0)) == 0.5
    assert cpu.busy_share((10.0, 100.0), (10.0, 100.0)) is None


METRICS = """
# HELP labspace_hub_warm_pool_members Warm pool members
labspace_hub_warm_pool_members{key="local",state="ready"} 18.0
labspace_hub_warm_pool_members{key="local",state="making"} 2.0
labspace_hub_warm_pool_members{key="img",state="ready"} 1.0
labspace_hub_warm_pool_size{key="local"} 20.0
labspace_hub_warm_pool_size{key="img"} 2.0
labspace_hub_warm_pool_oldest_seconds{key="local"} 12.5
labspace_hub_warm_pool_total{what="claimed"} 41.0
labspace_hub_warm_pool_total{what="empty"} 3.0
labspace_hub_warm_pool_created{what="claimed"} 1.7e9
"""


def test_pool_metrics_sum_keys_and_read_totals():
    p = parse_pool_metrics(METRICS)
    assert (p["ready"], p["making"], p["size"]) == (19, 2, 22)
    assert p["totals"] == {"claimed": 41, "empty": 3}
    assert parse_pool_metrics("") == {"ready": 0, "making": 0, "size": 0, "totals": {}}


HUB_LOG = """\
[I 2026-12-04 12:00:00.500 JupyterHub log:192] 201 POST /hub/api/users/ann (bench@127.0.0.1)
[I 2026-12-04 12:00:01.000 JupyterHub local:460] Starting local workspace for ann in /h/ann
[I 2026-12-04 12:00:01.010 JupyterHub spawner:2153] Spawning /venv/bin/python -m labspace.singleuser
[I 2026-12-04 12:00:02.200 ServerApp] Extension package jupyterlab took 0.1688s to import
[I 2026-12-04 12:00:03.500 ServerApp] Extension package panel took 1.2s to import
[I 2026-12-04 12:00:03.600 ServerApp] jupyter_lsp | extension was successfully linked.
[I 2026-12-04 12:00:04.100 ServerApp] Jupyter Server 2.21.1 is running at:
[I 2026-12-04 12:00:04,300 accounting] a service line with a comma
[I 2026-12-04 12:00:04.400 JupyterHub base:1192] User ann took 3.400 seconds to start
not a log line
"""


def test_log_milestones_and_cold_phases():
    t0 = 1796385601.0  # 2026-12-04 12:00:01 UTC
    lines = phases.log_times(HUB_LOG, t0)
    assert lines[0][0] == pytest.approx(t0) and lines[0][1] == "JupyterHub"
    assert all(at >= t0 - 0.01 for at, _, _ in lines)  # the 12:00:00.5 POST is before
    m = phases.marks(lines, "ann")
    assert m["launch"] == pytest.approx(t0)
    assert m["claimed"] is None
    assert m["imports_done"] == pytest.approx(t0 + 2.5)
    d = phases.phase_durations(t0 - 0.2, m, created=t0 + 0.05, t200=t0 + 3.5)
    assert d["launch"] == pytest.approx(0.2)
    assert d["create"] == pytest.approx(0.05)
    assert d["imports"] == pytest.approx(2.45)
    assert d["init"] == pytest.approx(0.6)
    assert d["noticed"] == pytest.approx(0.3)
    assert d["first_200"] == pytest.approx(0.1)
    assert d["total"] == pytest.approx(3.7)


def test_warm_phases_have_no_imports():
    t0 = 100.0
    m = {"launch": 100.1, "claimed": 100.12, "running": 100.5, "ready": 100.7, "imports_done": 99}
    d = phases.phase_durations(t0, m, created=None, t200=100.8)
    assert d["create"] == pytest.approx(0.02)
    assert d["imports"] == 0.0
    assert d["init"] == pytest.approx(0.38)
    missing = phases.phase_durations(t0, {}, None, None)
    assert set(missing.values()) == {None}


def test_parse_importtime_keeps_nesting():
    err = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       182 |        182 |   _io\n"
        "import time:       294 |        815 | encodings\n"
        "something else\n"
    )
    assert phases.parse_importtime(err) == [("  _io", 182, 182), ("encodings", 294, 815)]
