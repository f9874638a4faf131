"""CPU per message on a session's own path, without sockets: decode + validate a frame's payload, dispatch it
(`Client.on_message`: route, rate and role checks, the inline answer) and encode an answer. Measured in this process
with `time.process_time`, best of several repeats, so two source trees can be compared side by side:

    PYTHONPATH=server python loadtest/bench/session_path.py            # this tree
    PYTHONPATH=../other/server python loadtest/bench/session_path.py   # another checkout, the same script

It works with the untyped maps of before issue 15 and with the typed records (protocol/records.py) alike. The node's
join (store, broker, snapshot) and the fan-out are measured by the node benchmarks (`python -m loadtest.bench`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
from collections.abc import Callable
from typing import Any, cast

import msgpack

from jansamvad.auth import Claims
from jansamvad.client import Client
from jansamvad.metrics import NodeMetrics
from jansamvad.protocol.codec import Encoding, decode, frame_message
from jansamvad.protocol.messages import Limits, parse_client_message
from jansamvad.protocol.roles import Role
from jansamvad.settings import Settings

TOKEN = "eyJhbGciOiJIUzI1NiJ9." + "x" * 180 + "." + "y" * 43  # the length of a real citizen token
HELLO = msgpack.packb({"t": "hello", "token": TOKEN, "last_seq": 12}, use_bin_type=True)
ASK = msgpack.packb({"t": "ask", "id": 41, "key": "abcd-1234-efgh", "text": "सड़क कब बनेगी?"}, use_bin_type=True)
PING = msgpack.packb({"t": "ping", "id": 7}, use_bin_type=True)
TYPED = importlib.util.find_spec("jansamvad.protocol.records") is not None
_LIMITS = Limits()


class _Conn:
    encoding = Encoding.MSGPACK
    transport = None
    ip = "127.0.0.1"

    def __init__(self) -> None:
        self.written = 0

    def send_frame(self, frame: bytes) -> None:
        self.written += 1


class _Node:
    def __init__(self) -> None:
        self.settings = Settings()
        self.metrics = NodeMetrics()
        self.clock = 0.0

    def clock_precise(self) -> float:
        self.clock += 1.0  # a second between messages: the rate limit never refuses one
        return self.clock


def _session() -> Client:
    client = Client(cast(Any, _Node()), cast(Any, _Conn()))
    client.claims = Claims(sub="c-1", role=Role.CITIZEN, th="th1", name="", region="", exp=0)
    client.th = "th1"
    return client


def _ack_encoder() -> Callable[[], bytes]:
    if TYPED:
        from jansamvad.protocol.records import Ack, frame_record

        return lambda: frame_record(Ack(re=41, key="abcd-1234-efgh", qid="q123", state="pending"), Encoding.MSGPACK)
    return lambda: frame_message(
        {"t": "ack", "re": 41, "key": "abcd-1234-efgh", "qid": "q123", "state": "pending"}, Encoding.MSGPACK
    )


_QUESTION = {
    "qid": "q123",
    "text": "सड़क कब बनेगी? " * 4,
    "name": "सीता",
    "region": "Patna",
    "votes": 12,
    "state": "approved",
}
_WELCOME = {
    "role": "citizen",
    "sub": "c-1",
    "name": "सीता",
    "th": "th1",
    "title": "टाउन हॉल",
    "status": "live",
    "seq": 40,
}
_SNAPSHOT = {
    "seq": 40,
    "status": "live",
    "polls": [{"pid": "p1", "question": "सबसे ज़रूरी?", "options": ["सड़क", "बिजली", "पानी"], "state": "open"}],
    "slow_mode": 0,
    "reactions": {"clap": 120, "heart": 40},
    "speech": [{"t": "speech", "text": "नमस्ते " * 20, "final": True, "ts": 1, "seq": n} for n in range(5)],
    "questions": [_QUESTION] * 10,
    "viewers": 5000,
    "staff": 3,
}


def _join_encoder() -> Callable[[], bytes]:
    """The welcome and the snapshot a joining citizen gets (5 speeches, 10 questions, a poll), encoded and framed."""
    records = importlib.import_module("jansamvad.protocol.records") if TYPED else None
    if records is not None and hasattr(records, "Snapshot"):
        welcome, snapshot = records.Welcome(**_WELCOME, recovered=False), records.Snapshot(**_SNAPSHOT)
        return lambda: (
            records.frame_record(welcome, Encoding.MSGPACK) + records.frame_record(snapshot, Encoding.MSGPACK)
        )
    welcome_map = {"t": "welcome", **_WELCOME, "recovered": False}
    snapshot_map = {"t": "snapshot", **_SNAPSHOT}
    return lambda: frame_message(welcome_map, Encoding.MSGPACK) + frame_message(snapshot_map, Encoding.MSGPACK)


def _us_per_call(fn: Callable[[], object], n: int = 50_000, repeats: int = 7) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - start)
    return round(best / n * 1e6, 3)


def _parse(data: bytes) -> object:
    return parse_client_message(decode(data, Encoding.MSGPACK), _LIMITS, Encoding.MSGPACK)


def main() -> None:
    client = _session()
    results = {
        "typed_records": TYPED,
        "hello_decode_validate_us": _us_per_call(lambda: _parse(HELLO)),
        "ask_decode_validate_us": _us_per_call(lambda: _parse(ASK)),
        "ping_on_message_to_pong_us": _us_per_call(lambda: client.on_message(PING)),
        "ack_encode_frame_us": _us_per_call(_ack_encoder()),
        "welcome_snapshot_encode_frame_us": _us_per_call(_join_encoder(), n=10_000),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
