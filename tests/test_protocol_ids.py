"""protocol_ids: the ids websockets gives its protocol objects come from a counter, not from os.urandom."""

from __future__ import annotations

import os
import uuid

import pytest
from websockets.protocol import State
from websockets.server import ServerProtocol

import jansamvad.connection  # noqa: F401  (installs the ids, as the node does)
from jansamvad.protocol_ids import install


def test_protocol_ids_are_distinct_uuids_without_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(n: int) -> bytes:
        raise AssertionError("os.urandom called for a protocol's id")

    monkeypatch.setattr(os, "urandom", refused)
    ids = [ServerProtocol(state=State.OPEN).id for _ in range(1000)]
    assert all(type(one) is uuid.UUID for one in ids)
    assert len(set(ids)) == len(ids) and len({str(one) for one in ids}) == len(ids)
    assert uuid.UUID(str(ids[0])) == ids[0]  # a proper UUID: it prints and parses back


def test_protocol_ids_install_is_idempotent() -> None:
    first = ServerProtocol().id
    install()
    assert ServerProtocol().id.int == (first.int + 1) % (1 << 128)
