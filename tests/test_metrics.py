"""Prometheus metrics on /metrics and structured JSON logs."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from jansamvad.logs import JsonFormatter
from jansamvad.models import Status
from jansamvad.server import RunningServer
from tests.helpers import Session, joined, make_hall

pytestmark = pytest.mark.anyio


async def scrape(server: RunningServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_metrics_count_sessions_messages_errors_and_fanout(server: RunningServer) -> None:
    hall = await make_hall(server)
    await server.node.store.set_status(hall.th, Status.LIVE)
    leader = await joined(server, hall.leader)
    citizen = await joined(server, hall.citizen_token())
    await leader.request({"t": "speech", "text": "मापो"})
    await citizen.recv_until(lambda m: m["t"] == "speech")
    await citizen.request({"t": "speech", "text": "x"})  # forbidden
    metrics = await scrape(server)
    assert metrics["jansamvad_connections"][()] == 2
    assert metrics["jansamvad_joins_total"][(("role", "citizen"),)] == 1
    assert metrics["jansamvad_joins_total"][(("role", "leader"),)] == 1
    assert metrics["jansamvad_messages_in_total"][(("type", "speech"),)] == 2
    assert metrics["jansamvad_errors_sent_total"][(("code", "forbidden"),)] == 1
    assert metrics["jansamvad_viewers"][(("townhall", hall.th),)] == 2
    assert metrics["jansamvad_fanout_seconds_count"][()] >= 1
    assert metrics["jansamvad_broker_publish_seconds_count"][()] >= 1
    assert metrics["jansamvad_frames_built_total"][()] >= 1
    assert metrics["jansamvad_broker_healthy"][()] == 1
    out = metrics["jansamvad_messages_out_total"]
    # The speech was broadcast to both members of the room (leader and citizen); each got its welcome; the leader
    # its ack; the citizen the error for its forbidden speech.
    assert out[(("type", "speech"),)] == 2
    assert out[(("type", "welcome"),)] == 2
    assert out[(("type", "ack"),)] >= 1 and out[(("type", "error"),)] == 1


async def test_metrics_count_rejected_handshakes_by_reason(make_server: Any) -> None:
    server = await make_server(max_connections=1)
    await Session.open(server)
    with pytest.raises(InvalidStatus):
        await Session.open(server)
    metrics = await scrape(server)
    assert metrics["jansamvad_handshakes_rejected_total"][(("reason", "max_connections"),)] == 1


def test_logs_json_lines_carry_node_and_townhall() -> None:
    record = logging.LogRecord("jansamvad.node", logging.WARNING, __file__, 1, "gap in %s", ("th:x",), None)
    record.th = "abc123"
    line = json.loads(JsonFormatter("node-7").format(record))
    assert line["node"] == "node-7" and line["th"] == "abc123" and line["msg"] == "gap in th:x"
    assert line["level"] == "warning" and line["ts"].endswith("Z")
