"""End to end: `loadtest/run_locust.py` starts a node, runs the `townhall` scenario in locust and judges it.

locust runs as a subprocess: importing it here would monkey-patch this process with gevent (and its warnings would
meet pytest's filterwarnings = error).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
USERS, DURATION_S = 200, 20


@pytest.mark.slow
@pytest.mark.timeout(DURATION_S + 120)
@pytest.mark.skipif(
    importlib.util.find_spec("locust") is None or importlib.util.find_spec("websocket") is None,
    reason="locust is not installed: pip install -e '.[loadtest]' (make loadtest does it)",
)
def test_townhall_run_has_no_failures_and_loses_no_speech(tmp_path: Path) -> None:
    argv = [sys.executable, str(ROOT / "loadtest" / "run_locust.py"), "--scenario", "townhall"]
    argv += ["--users", str(USERS), "--duration", f"{DURATION_S}s", "--reports", str(tmp_path)]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=DURATION_S + 100)
    output = run.stdout[-6000:] + run.stderr[-3000:]
    assert run.returncode == 0, output

    [report] = [p for p in tmp_path.iterdir() if p.name.endswith("-townhall")]
    summary = json.loads((report / "summary.json").read_text())
    n = summary["numbers"]
    assert summary["passed"], output
    assert n["failures"] == 0 and n["exceptions"] == 0, n["errors"]
    assert n["lost"] == 0 and n["gaps"] == 0 and n["duplicates"] == 0
    assert n["users"] == USERS
    # Speech reached the citizens, questions were acked, and citizens dropped and resumed (so resume was tested).
    assert n["speech"]["count"] > USERS and n["ask_ack"]["count"] > 0 and n["resume"]["count"] > 0
    for name in ("report.html", "locust_stats.csv", "locust_failures.csv", "node.log", "node_stats.json"):
        assert (report / name).is_file(), name
    assert "RESULT: PASS" in run.stdout
