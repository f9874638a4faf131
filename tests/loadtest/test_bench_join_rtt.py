"""The slow-network join bench (loadtest/bench/join_rtt.py) at a small size: through its delaying relay, a join with
the hello in the subprotocol offer waits one round trip less than one that sends it as a message (a round trip here
is 400 ms, so the difference is the round trip count, not the machine's speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RTT_MS = 400


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_join_rtt_the_offer_saves_a_round_trip() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.bench.join_rtt", "--rtt-ms", str(RTT_MS), "--joins", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (row,) = json.loads(run.stdout)["rows"]
    assert row["rtt_ms"] == RTT_MS
    # TCP, the upgrade, the hello: three round trips as a message, two in the offer (the 101 comes with the welcome).
    assert 2 * RTT_MS <= row["offer_p50_ms"] < 3 * RTT_MS <= row["message_p50_ms"] < 4 * RTT_MS, row
