"""The edge-path bench (loadtest/bench/edge_path.py) runs and reports the node's CPU per connection, in each mode."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

HAS_PICOWS = importlib.util.find_spec("picows") is not None
MODES = [
    ["--mode", "upgrade"],
    # The join mode's outside client is picows' (loadtest/join_client.py), which comes with the bench extra only.
    pytest.param(["--mode", "join"], marks=pytest.mark.skipif(not HAS_PICOWS, reason="picows: the bench extra")),
    ["--mode", "upgrade", "--floor"],
]


@pytest.mark.parametrize("args", MODES)
def test_bench_edge_path_reports_cpu_per_connection(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["server", "."])}
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.bench.edge_path", *args, "--n", "40", "--concurrency", "10"],
        capture_output=True,
        env=env,
        timeout=100,
        check=True,
    )
    result = json.loads(run.stdout.decode().strip().splitlines()[-1])
    assert result["joined"] == result["connections"] == 40
    assert result["cpu_us_per_connection"] > 0
    assert result["mode"] == ("floor" if "--floor" in args else args[1])
