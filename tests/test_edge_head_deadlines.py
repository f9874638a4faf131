"""The edge's head deadlines (edge.py, `HeadDeadlines`): one timer per node cuts off the sockets whose head is late,
never one that was handed on, and keeps cutting off sockets opened after its last turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jansamvad.edge import HEAD_DEADLINE_GRAIN_S, EdgeProtocol, edge_protocol_class

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

TIMEOUT_S = 0.4  # the margins below are a quarter to a half of it: a loaded machine oversleeps


class Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class ServerState:
    def __init__(self) -> None:
        self.connections: set[Any] = set()


def opened(cls: type[EdgeProtocol], state: ServerState) -> tuple[EdgeProtocol, Transport]:
    protocol = cls(config=None, server_state=state, app_state=None)
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_head_deadlines_cut_off_only_the_sockets_still_waiting() -> None:
    cls = edge_protocol_class(TIMEOUT_S)
    assert cls.event_loop is asyncio.get_running_loop()  # no loop lookup per socket
    state = ServerState()
    before = EdgeProtocol.head_timeouts
    waiting = [opened(cls, state) for _ in range(3)]
    handed_on = [opened(cls, state) for _ in range(3)]
    for protocol, _ in handed_on:
        due = protocol._release()  # what an upgrade or the hand-over to uvicorn does
        assert due == protocol.due and protocol.transport is None
    assert state.connections == {protocol for protocol, _ in waiting}
    await asyncio.sleep(TIMEOUT_S + HEAD_DEADLINE_GRAIN_S + 0.1)
    assert all(transport.closed for _, transport in waiting)
    assert not any(transport.closed for _, transport in handed_on)
    assert EdgeProtocol.head_timeouts == before + 3

    # A later socket is cut off too: the timer is armed again after a turn that left the queue empty.
    late, transport = opened(cls, state)
    await asyncio.sleep(TIMEOUT_S / 2)
    assert not transport.closed
    await asyncio.sleep(TIMEOUT_S / 2 + HEAD_DEADLINE_GRAIN_S + 0.1)
    assert transport.closed and EdgeProtocol.head_timeouts == before + 4


async def test_head_deadlines_are_not_early() -> None:
    cls = edge_protocol_class(TIMEOUT_S)
    state = ServerState()
    first, first_transport = opened(cls, state)
    await asyncio.sleep(TIMEOUT_S * 0.75)
    second, second_transport = opened(cls, state)  # due later than the first, in the same queue
    await asyncio.sleep(TIMEOUT_S * 0.25 + HEAD_DEADLINE_GRAIN_S + 0.05)
    assert first_transport.closed and not second_transport.closed
    await asyncio.sleep(TIMEOUT_S * 0.75)
    assert second_transport.closed
