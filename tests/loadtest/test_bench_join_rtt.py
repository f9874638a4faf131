"""The slow-network join bench (loadtest/bench/join_rtt.py) at a small size: through its delaying relay, a join with
the hello in the subprotocol offer waits one round trip less than one that sends it as a message (a round trip here
is 400 ms, so the difference is the round trip count, not the machine's speed)."""

from __future__ import annotations

import json

import pytest

from tests.loadtest.bench_runs import run_bench

RTT_MS = 400


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_join_rtt_the_offer_saves_a_round_trip() -> None:
    run = run_bench("loadtest.bench.join_rtt", ["--rtt-ms", str(RTT_MS), "--joins", "2"], timeout=100)
    (row,) = json.loads(run.stdout)["rows"]
    assert row["rtt_ms"] == RTT_MS
    # TCP, the upgrade, the hello: three round trips as a message, two in the offer (the 101 comes with the welcome).
    assert 2 * RTT_MS <= row["offer_p50_ms"] < 3 * RTT_MS <= row["message_p50_ms"] < 4 * RTT_MS, row
