"""A client written from docs/protocol.md alone, against a real node process (issue 13).

It uses nothing of the server's code: HTTP through urllib, WebSockets through websocket-client (a library the node does
not use), JSON and msgpack encoded here. Every test walks one item of the issue and checks the answer the doc gives.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import websocket

from jansamvad.localredis import free_port
from tests.helpers import ADMIN_KEY, SECRET, stop_process

ENCODINGS = ["json", "msgpack"]
Message = dict[str, Any]


class Node:
    """The node process, seen from outside: a base URL and an admin key."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"

    def http(self, method: str, path: str, body: Message | None = None, *, admin: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def townhall(self, *, live: bool = True) -> str:
        th: str = self.http("POST", "/api/townhalls", {"title": "स्वतंत्र ग्राहक"})["id"]
        if live:
            self.http("POST", f"/api/townhalls/{th}/start")
        return th

    def citizen_token(self, th: str, name: str = "सीता") -> str:
        body = {"name": name, "device_id": uuid.uuid4().hex}
        token: str = self.http("POST", f"/api/townhalls/{th}/join", body, admin=False)["token"]
        return token

    def staff_token(self, th: str, role: str) -> str:
        token: str = self.http("POST", f"/api/townhalls/{th}/tokens", {"role": role})["token"]
        return token


class Client:
    """One WebSocket session speaking the documented subprotocol."""

    def __init__(self, node: Node, encoding: str) -> None:
        self.encoding = encoding
        self.ws = websocket.create_connection(node.ws_url, subprotocols=[f"jansamvad.v1.{encoding}"], timeout=5)
        self.next_id = 1
        self.seen: list[Message] = []

    def send(self, message: Message) -> None:
        if self.encoding == "json":
            self.ws.send(json.dumps(message))
        else:
            self.ws.send_binary(msgpack.packb(message, use_bin_type=True))

    def send_raw(self, payload: bytes) -> None:
        self.ws.send_binary(payload) if self.encoding == "msgpack" else self.ws.send(payload.decode())

    def recv(self, timeout: float = 5.0) -> Message:
        self.ws.settimeout(timeout)
        opcode, data = self.ws.recv_data(control_frame=False)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            raise ConnectionError(f"closed {struct.unpack('!H', data[:2])[0] if data else None}")
        message: Message = json.loads(data) if self.encoding == "json" else msgpack.unpackb(data, raw=False)
        return message

    def recv_until(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.05, deadline - time.monotonic()))
            if predicate(message):
                return message
            self.seen.append(message)

    def quiet(self, seconds: float = 0.5) -> list[Message]:
        """Everything that arrives until nothing has for `seconds`."""
        out = []
        while True:
            try:
                out.append(self.recv(seconds))
            except websocket.WebSocketTimeoutException:
                return out

    def request(self, message: Message) -> Message:
        msg_id, self.next_id = self.next_id, self.next_id + 1
        self.send({**message, "id": msg_id})
        return self.recv_until(lambda m: m.get("re") == msg_id)

    def hello(self, token: str, **extra: Any) -> tuple[Message, Message]:
        self.send({"t": "hello", "token": token, **extra})
        welcome = self.recv()
        assert welcome["t"] == "welcome", welcome
        return welcome, self.recv()

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the node closes; its close code."""
        self.ws.settimeout(timeout)
        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketConnectionClosedException:
                return None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int(struct.unpack("!H", data[:2])[0]) if len(data) >= 2 else None

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        finally:
            self.ws.shutdown()  # closes the socket even when the node closed the connection first


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    port = free_port()
    env = {**os.environ, "JANSAMVAD_SECRET": SECRET, "JANSAMVAD_ADMIN_KEY": ADMIN_KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jansamvad", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        outside = Node(port)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(outside.base + "/readyz", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None, "the node did not start"
                time.sleep(0.1)
        yield outside
    finally:
        stop_process(proc)  # type: ignore[arg-type]


@pytest.fixture
def clients(node: Node) -> Iterator[Callable[[str], Client]]:
    opened: list[Client] = []

    def open_client(encoding: str) -> Client:
        client = Client(node, encoding)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_id_on_fire_and_forget_messages_is_accepted(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    citizen = clients(encoding)
    citizen.hello(node.citizen_token(th))
    for i in range(30):  # a client that tags every message: more than max_errors reactions, over their rate too
        citizen.send({"t": "react", "kind": "clap", "id": 100 + i})
    pong = citizen.request({"t": "ping"})
    assert pong["t"] == "pong"
    assert not [m for m in citizen.seen if m["t"] == "error"], "a reaction with an id was refused"
    leader = clients(encoding)
    leader.hello(node.staff_token(th, "leader"))
    leader.send({"t": "audio", "data": b"\x00" if encoding == "msgpack" else "AA==", "id": 7})
    assert leader.request({"t": "ping"})["t"] == "pong"
    assert not [m for m in leader.seen if m["t"] == "error"], "audio with an id was refused"
    citizen.send({"t": "leave", "id": 99})
    assert citizen.close_code() == 1000


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_rate_limited_never_ends_the_session(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    citizen = clients(encoding)
    citizen.hello(node.citizen_token(th))
    for i in range(1, 61):  # three times the burst of 20, at once
        citizen.send({"t": "ping", "id": i})
    answers = citizen.quiet()
    limited = [m for m in answers if m["t"] == "error"]
    assert limited and all(m["code"] == "rate_limited" and m["retry_ms"] > 0 and "re" in m for m in limited)
    assert len(limited) <= 20  # at most the burst in rate_limited answers a second; beyond, dropped unanswered
    assert 20 <= len([m for m in answers if m["t"] == "pong"]) < 60
    time.sleep(limited[-1]["retry_ms"] / 1000)
    assert citizen.request({"t": "ping"})["t"] == "pong"  # still open, never closed with 4010
    for i in range(100, 140):  # a second flood, seconds later: answered again (the cap is per second)
        citizen.send({"t": "ping", "id": i})
    again = [m for m in citizen.quiet() if m["t"] == "error"]
    assert again and all(m["code"] == "rate_limited" for m in again)
    time.sleep(max(m["retry_ms"] for m in again) / 1000)
    assert citizen.request({"t": "ping"})["t"] == "pong"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_long_speech_burst_is_paced_not_lost(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    listener = clients(encoding)
    listener.hello(node.citizen_token(th))
    leader = clients(encoding)
    leader.hello(node.staff_token(th, "leader"))
    segments = {i: (f"seg-{i:05d}-{uuid.uuid4().hex[:8]}", f"भाग {i}") for i in range(1, 231)}
    for i, (key, text) in segments.items():  # a pasted speech: 230 keyed segments at once
        leader.send({"t": "speech", "id": i, "key": key, "text": text})
    acked: dict[int, int] = {}
    deadline = time.monotonic() + 40
    while len(acked) < len(segments):
        assert time.monotonic() < deadline, f"{len(segments) - len(acked)} segments never acked"
        answer = leader.recv_until(lambda m: m["t"] in ("ack", "error") and m.get("re") in segments, timeout=10)
        if answer["t"] == "ack":
            acked[answer["re"]] = answer["seq"]
        else:  # paced: resend the same segment with the same key after retry_ms
            assert answer["code"] == "rate_limited", answer
            time.sleep(answer["retry_ms"] / 1000)
            key, text = segments[answer["re"]]
            leader.send({"t": "speech", "id": answer["re"], "key": key, "text": text})
    assert len(set(acked.values())) == len(segments)  # each spoken once
    heard = [listener.recv_until(lambda m: m["t"] == "speech", timeout=10) for _ in segments]
    assert sorted(m["text"] for m in heard) == sorted(text for _, text in segments.values())


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_big_map_gets_invalid_field_with_re(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    leader = clients(encoding)
    leader.hello(node.staff_token(th, "leader"))
    big = {"t": "speech", "id": 41, "text": "x", **{f"k{i:04d}": i for i in range(1100)}}
    leader.send_raw(msgpack.packb(big) if encoding == "msgpack" else json.dumps(big).encode())
    answer = leader.recv_until(lambda m: m["t"] == "error")
    assert (answer["code"], answer["re"], answer["field"]) == ("invalid_field", 41, "k0000")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_replay_brings_viewers_and_empty_votes(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    first = clients(encoding)
    _, snapshot = first.hello(node.citizen_token(th))
    token = node.citizen_token(th, "राम")
    again = clients(encoding)
    welcome, viewers = again.hello(token, last_seq=snapshot["seq"])
    assert welcome["recovered"] is True and viewers["t"] == "viewers"
    votes = again.recv()
    assert votes == {"t": "votes", "v": {}, "g": {}}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_second_poll_vote_is_acked_with_the_option_that_counts(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    leader = clients(encoding)
    leader.hello(node.staff_token(th, "leader"))
    pid = leader.request({"t": "poll_create", "question": "पहले क्या?", "options": ["सड़क", "बिजली"]})["pid"]
    leader.request({"t": "poll_open", "pid": pid})
    citizen = clients(encoding)
    citizen.hello(node.citizen_token(th))
    assert citizen.request({"t": "poll_vote", "pid": pid, "option": 0})["option"] == 0
    second = citizen.request({"t": "poll_vote", "pid": pid, "option": 1})
    assert (second["option"], second["dup"]) == (0, True)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_hello_without_token_closes_4001(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    client = clients(encoding)
    client.send({"t": "hello"})
    assert client.close_code() == 4001


@pytest.mark.parametrize("via", ["message", "rest"])
def test_independent_client_end_closes_open_polls_before_status_ended(
    node: Node, clients: Callable[[str], Client], via: str
) -> None:
    th = node.townhall()
    leader = clients("json")
    leader.hello(node.staff_token(th, "leader"))
    pid = leader.request({"t": "poll_create", "question": "ठीक?", "options": ["हाँ", "नहीं"]})["pid"]
    leader.request({"t": "poll_open", "pid": pid})
    citizen = clients("msgpack")
    citizen.hello(node.citizen_token(th))
    citizen.request({"t": "poll_vote", "pid": pid, "option": 1})
    if via == "message":
        leader.request({"t": "end"})
    else:
        node.http("POST", f"/api/townhalls/{th}/end")
    poll = citizen.recv_until(lambda m: m["t"] in ("poll", "status"))
    assert poll["t"] == "poll" and poll["p"]["pid"] == pid
    assert (poll["p"]["state"], poll["p"]["counts"]) == ("closed", [0, 1])
    status = citizen.recv_until(lambda m: m["t"] == "status")
    assert status["status"] == "ended" and status["seq"] == poll["seq"] + 1
    assert citizen.close_code() == 4005
    export = node.http("GET", f"/api/townhalls/{th}/export?format=json")
    assert [p["state"] for p in export["polls"]] == ["closed"]


def test_independent_client_viewers_count_citizens_and_staff_apart(
    node: Node, clients: Callable[[str], Client]
) -> None:
    th = node.townhall()
    watcher = clients("json")
    watcher.hello(node.citizen_token(th))
    clients("msgpack").hello(node.citizen_token(th, "राम"))
    clients("json").hello(node.staff_token(th, "leader"))
    clients("msgpack").hello(node.staff_token(th, "moderator"))
    viewers = watcher.recv_until(lambda m: m["t"] == "viewers" and m["n"] + m["staff"] == 4)
    assert (viewers["n"], viewers["staff"]) == (2, 2)  # "2 दर्शक", not 4


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_independent_client_own_question_vote_is_refused_with_re(
    node: Node, clients: Callable[[str], Client], encoding: str
) -> None:
    th = node.townhall()
    citizen = clients(encoding)
    citizen.hello(node.citizen_token(th))
    qid = citizen.request({"t": "ask", "key": uuid.uuid4().hex, "text": "मेरा प्रश्न?"})["qid"]
    moderator = clients(encoding)
    moderator.hello(node.staff_token(th, "moderator"))
    moderator.request({"t": "moderate", "qid": qid, "action": "approve"})
    answer = citizen.request({"t": "upvote", "qid": qid})
    assert (answer["t"], answer["code"], answer["re"]) == ("error", "own_question", citizen.next_id - 1)
    forbidden = citizen.request({"t": "speech", "text": "मैं भी"})
    assert (forbidden["code"], forbidden["msg"]) == ("forbidden", "a citizen may not speak")
