"""Scenarios 2 and 3: single broadcasts (one speech, wait until it reached everyone, repeat) and bursts (many
speeches in one tick). Server CPU from /proc per delivery; publish -> receipt latency from the speech timestamps."""

from __future__ import annotations

import time
from typing import Any

from ..harness import Stage
from ..stats import percentiles
from .common import check_delivery, cpu_summary, idle_cpu_rate, latency_summary

IDLE_BASELINE_S = 2.0
PRESENCE_SETTLE_S = 1.5  # the node's presence interval is 1 s


async def measure(stage: Stage, *, rounds: int, per_round: int, text_bytes: int) -> dict[str, Any]:
    """`rounds` rounds of `per_round` speeches sent in one write; each round waits until every citizen has it all."""
    leaders = stage.leaders
    await leaders.reserve(per_round, rounds)  # every leader handshake happens before the measured window
    # A new leader changes the viewer count, and the next presence tick sends `viewers` to everyone: let it pass.
    await stage.settle(PRESENCE_SETTLE_S)
    await stage.collect()  # drop receipts of earlier phases
    leaders.recorder.reset()
    citizens = stage.citizens
    idle_rate = await idle_cpu_rate(stage, IDLE_BASELINE_S)

    stats_before = await stage.server.stats()
    cpu_before, clients_before, t0 = stage.server.cpu(), stage.pool.cpu(), time.monotonic()
    seqs: list[int] = []
    errors: list[dict[str, Any]] = []
    ack_ms: list[float] = []
    incomplete = 0
    for r in range(rounds):
        sent = time.monotonic()
        got, errs = await leaders.speak(per_round, f"r{r}", text_bytes)
        ack_ms.append((time.monotonic() - sent) * 1000)
        seqs += got
        errors += errs
        if got and not await stage.wait_delivered(got[-1]):
            incomplete += 1
    wall = time.monotonic() - t0
    cpu_delta = stage.server.cpu() - cpu_before
    clients_delta = stage.pool.cpu() - clients_before
    stats_after = await stage.server.stats()

    receipts = await stage.collect()
    leader_deliveries = sum(leaders.recorder.counts.values())
    citizen_deliveries = sum(receipts.counts.get(seq, 0) for seq in seqs)
    deliveries = citizen_deliveries + leader_deliveries
    return {
        "scenario": "broadcast" if per_round == 1 else "burst",
        "n": citizens,
        "rounds": rounds,
        "messages_per_round": per_round,
        "messages": len(seqs),
        "rejected": len(errors),
        "rejections": errors[:3],
        "incomplete_rounds": incomplete,
        "receivers": citizens + len(leaders),
        "deliveries": deliveries,
        "check": check_delivery(receipts, seqs, citizens),
        "server_writes": stats_after["broadcast_writes"] - stats_before["broadcast_writes"],
        "server_slow_consumer_drops": stats_after["slow_consumer_drops"] - stats_before["slow_consumer_drops"],
        "cpu": cpu_summary(cpu_delta, wall, idle_rate, deliveries),
        # The client processes' own CPU per receipt: with them all on one core, this bounds the last receiver's latency.
        "client_cpu": {
            **clients_delta.as_dict(),
            "us_per_receipt": round(clients_delta.seconds * 1e6 / max(1, citizen_deliveries), 3),
        },
        "latency": latency_summary(receipts, seqs),
        "publish_to_ack_ms": percentiles(ack_ms, (50, 99)),
    }
